"""RoIAlign over one feature map or an FPN pyramid, and RoIAlign of ground-truth bitmaps (mask targets)."""
import math
from typing import Sequence

import paddle
import paddle.vision.ops as vops

from engine.models.ops import roi_align_fast
from engine.models.ops.graph_target import tracing_for_onnx
from engine.models.ops.nms import segment_ids


class RoIAlign:
    """Pool a fixed-size feature for each RoI (PaddleDetection's RoIAlign extractor; no parameters).

    With several levels, each RoI is pooled from one level chosen by its size:
    level = floor(canonical_level + log2(sqrt(area) / canonical_size)), clamped to the given levels.

    Args:
        output_size: side of the pooled feature (7 for box heads, 14 for mask heads and C4).
        spatial_scales: 1 / stride of each feature level passed to `__call__`.
        sampling_ratio: bilinear samples per bin side; <= 0 = adaptive (ceil(bin size)).
        aligned: half-pixel offset. PaddleDetection pools features with False (its trained weights
            expect that), whatever its configs say.
    """

    def __init__(self, output_size: int, spatial_scales: Sequence[float], sampling_ratio: int = 0,
                 aligned: bool = False, canonical_level: int = 4, canonical_size: int = 224) -> None:
        self.output_size = output_size
        self.spatial_scales = list(spatial_scales)
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.canonical_level = canonical_level
        self.canonical_size = canonical_size
        self.min_level = int(round(-math.log2(self.spatial_scales[0])))
        self.max_level = self.min_level + len(self.spatial_scales) - 1

    def __call__(self, feats: Sequence[paddle.Tensor], rois: paddle.Tensor,
                 rois_num: paddle.Tensor) -> paddle.Tensor:
        """Pooled features float32 [R, C, S, S] for rois float32 [R, 4] (input pixels, grouped by image
        with rois_num int32 [N]); only the first len(spatial_scales) feature levels are used."""
        if len(self.spatial_scales) == 1:
            return self._pool(feats[0], rois, rois_num, self.spatial_scales[0])
        if tracing_for_onnx():
            return self._pool_by_gathers(feats, rois, rois_num)
        level_rois, restore, level_num = vops.distribute_fpn_proposals(
            rois, self.min_level, self.max_level, self.canonical_level, self.canonical_size,
            rois_num=rois_num)
        pooled = [self._pool(feat, r, n, scale)
                  for feat, r, n, scale in zip(feats, level_rois, level_num, self.spatial_scales)]
        return paddle.gather(paddle.concat(pooled), restore.flatten())

    def fpn_level(self, rois: paddle.Tensor) -> paddle.Tensor:
        """int64 [R]: the level index (0 = first feature) of each RoI, as distribute_fpn_proposals picks
        it (float32; an inverted box has area 0, i.e. the finest level)."""
        w, h = rois[:, 2] - rois[:, 0], rois[:, 3] - rois[:, 1]
        area = paddle.where(paddle.logical_and(w >= 0, h >= 0), w * h, paddle.zeros_like(w))
        level = paddle.floor(paddle.log2(paddle.sqrt(area) / float(self.canonical_size) + 1e-6)
                             + float(self.canonical_level))
        return level.clip(self.min_level, self.max_level).astype("int64") - self.min_level

    def _pool_by_gathers(self, feats: Sequence[paddle.Tensor], rois: paddle.Tensor,
                         rois_num: paddle.Tensor) -> paddle.Tensor:
        """`__call__` without distribute_fpn_proposals (no ONNX mapping): each level pools the RoIs
        `fpn_level` gives it, in their order, and a gather puts the results back in RoI order."""
        level = self.fpn_level(rois)
        roi_image = segment_ids(rois_num, paddle.shape(rois)[0])
        images = paddle.arange(0, paddle.shape(rois_num)[0], dtype="int64").unsqueeze(1)
        pooled, picked = [], []
        for index, (feat, scale) in enumerate(zip(feats, self.spatial_scales)):
            rows = paddle.nonzero(level == index).flatten()
            counts = (paddle.gather(roi_image, rows).unsqueeze(0) == images).astype("int32").sum(axis=1)
            pooled.append(self._pool(feat, paddle.gather(rois, rows), counts.astype("int32"), scale))
            picked.append(rows)
        restore = paddle.argsort(paddle.concat(picked), stable=True)
        return paddle.gather(paddle.concat(pooled), restore)

    def _pool(self, feat: paddle.Tensor, rois: paddle.Tensor, rois_num: paddle.Tensor,
              scale: float) -> paddle.Tensor:
        # Eager CPU float32 and graphs traced with compiled ops: the compiled operator (same results,
        # much faster backward); portable static graphs and other devices: paddle.vision.ops.roi_align.
        return roi_align_fast.roi_align(feat, rois, rois_num, self.output_size, spatial_scale=scale,
                                        sampling_ratio=self.sampling_ratio, aligned=self.aligned)


def crop_masks(masks: paddle.Tensor, mask_index: paddle.Tensor, rois: paddle.Tensor,
               size: int) -> paddle.Tensor:
    """Mask targets: each RoI's ground-truth bitmap resampled to size x size inside the RoI.

    Args:
        masks: uint8 [G, H, W] 0/1 bitmaps (any images, padded coordinates).
        mask_index: int64 [F] which bitmap each RoI takes.
        rois: float32 [F, 4] boxes in the bitmaps' pixel coordinates.
    Returns:
        float32 [F, size, size] of 0.0 / 1.0 (RoIAlign average >= 0.5).
    """
    num = masks.shape[0]
    if rois.shape[0] == 0:
        return paddle.zeros([0, size, size], dtype="float32")
    # roi_align pools image k for the k-th group of boxes: sort the RoIs by bitmap.
    order = paddle.argsort(mask_index, stable=True)
    counts = paddle.bincount(mask_index, minlength=num).astype("int32")
    bitmaps = masks.astype("float32").unsqueeze(1)
    pooled = vops.roi_align(bitmaps, paddle.gather(rois, order), counts, size, spatial_scale=1.0,
                            sampling_ratio=0, aligned=True)
    pooled = paddle.scatter(paddle.zeros_like(pooled), order, pooled)
    return (pooled[:, 0] >= 0.5).astype("float32")
