"""A tiny detector that implements the model protocol's inference half (forward, export_spec,
draw_threshold) with real conv layers and the R-CNN ops (RoIAlign over two levels, batched NMS, mask
pasting), so export and Paddle Inference are tested on the same kinds of ops as the real models."""
from typing import Dict

import paddle
import paddle.nn as nn

from engine.models.ops.mask_paste import paste_masks
from engine.models.ops.nms import multiclass_nms
from engine.models.ops.roi_align import RoIAlign


class StandInDetector(nn.Layer):
    """Dense boxes on a stride-8 grid, scored by a conv; the top `k` per image are classified and masked."""

    def __init__(self, num_classes: int = 3, k: int = 24, box_size: float = 24.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.k = k
        self.box_size = box_size
        self.draw_threshold = 0.5
        self.stem = nn.Sequential(nn.Conv2D(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2D(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2D(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.objectness = nn.Conv2D(8, 1, 1)
        self.roi_align = RoIAlign(7, [1.0 / 4, 1.0 / 8])
        self.cls = nn.Linear(8 * 7 * 7, num_classes)
        self.mask = nn.Conv2D(8, num_classes, 1)

    def forward(self, image: paddle.Tensor, im_shape: paddle.Tensor,
                scale_factor: paddle.Tensor) -> Dict[str, paddle.Tensor]:
        c4 = self.stem(image)
        c8 = self.down(c4)
        n = paddle.shape(image)[0]
        h8, w8 = paddle.shape(c8)[2], paddle.shape(c8)[3]
        ys = (paddle.arange(0, h8, dtype="float32") + 0.5) * 8.0
        xs = (paddle.arange(0, w8, dtype="float32") + 0.5) * 8.0
        cy, cx = paddle.meshgrid(ys, xs)
        half = self.box_size / 2
        grid = paddle.stack([cx - half, cy - half, cx + half, cy + half], axis=-1).reshape([-1, 4])
        scores = self.objectness(c8).reshape([n, -1])
        _, top = paddle.topk(scores, self.k, axis=1)
        rois = paddle.gather(grid, top.flatten())
        # clip to each image's resized size so padded regions never yield boxes
        limit = paddle.tile(im_shape[:, ::-1], [1, 2]).unsqueeze(1).expand([n, self.k, 4]).reshape([-1, 4])
        rois = paddle.minimum(paddle.maximum(rois, paddle.zeros_like(rois)), limit)
        rois_num = paddle.full([n], self.k, dtype="int32")
        pooled = self.roi_align([c4, c8], rois, rois_num)
        probs = nn.functional.softmax(self.cls(pooled.flatten(1)), axis=1)
        dets, det_num = multiclass_nms(rois.unsqueeze(1), probs, rois_num, 0.05, 0.5, 20)
        image_of = paddle.repeat_interleave(paddle.arange(0, n, dtype="int64"), det_num.astype("int64"))
        scale = paddle.gather(paddle.tile(scale_factor[:, ::-1], [1, 2]), image_of)
        boxes = dets[:, 2:] / scale
        original = paddle.floor(im_shape / scale_factor + 0.5).astype("int32")
        size = original.max(axis=0)
        # x10: random weights give probabilities near 0.5 everywhere, unlike a trained mask head
        logits = self.mask(self.roi_align([c4, c8], dets[:, 2:], det_num)) * 10.0
        mask_feat = paddle.nn.functional.sigmoid(logits)
        cls_index = dets[:, 0].astype("int64")
        picked = paddle.take_along_axis(mask_feat, cls_index.reshape([-1, 1, 1, 1]).expand(
            [paddle.shape(cls_index)[0], 1, 7, 7]), axis=1).squeeze(1)
        masks = paste_masks(picked, boxes, size[0], size[1], 0.5)
        return {"bbox": paddle.concat([dets[:, :2], boxes], axis=1), "bbox_num": det_num, "mask": masks}

    def export_spec(self) -> Dict[str, paddle.static.InputSpec]:
        return {
            "image": paddle.static.InputSpec([None, 3, None, None], "float32", "image"),
            "im_shape": paddle.static.InputSpec([None, 2], "float32", "im_shape"),
            "scale_factor": paddle.static.InputSpec([None, 2], "float32", "scale_factor"),
        }
