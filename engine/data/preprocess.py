"""Predict-time preprocessing: BGR ndarrays (cv2.imread / video frames) -> the model's input batch, with
exactly the evaluation transforms of `cfg.EvalReader` (resize, normalise, permute, pad to stride)."""
from typing import Any, Dict, Sequence, Union

import cv2
import numpy as np
import paddle

from ..errors import InstSegError
from .batching import collate
from .transforms import normalize_permute, resize


def preprocess_bgr(images: Union[np.ndarray, Sequence[np.ndarray]], reader: Any) -> Dict[str, paddle.Tensor]:
    """Batch of `image` float32 [N, 3, H, W], `im_shape`, `scale_factor` float32 [N, 2] and `ori_shape`
    int32 [N, 2] (docs/ENGINE.md) from one uint8 BGR [H, W, 3] array or a list of them."""
    if isinstance(images, np.ndarray):
        images = [images]
    samples = []
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InstSegError(f"Input image {i} must be uint8 BGR [H, W, 3], got {image.dtype} "
                               f"{image.shape}")
        sample = {"image": cv2.cvtColor(image, cv2.COLOR_BGR2RGB), "im_id": np.int64(i),
                  "ori_shape": np.array(image.shape[:2], np.int32)}
        sample = resize(sample, int(reader.short_sizes[0]), int(reader.max_size), bool(reader.keep_ratio))
        samples.append(normalize_permute(sample, reader.mean, reader.std))
    batch = collate(samples, int(reader.pad_stride))
    return {key: paddle.to_tensor(batch[key]) for key in ("image", "im_shape", "scale_factor", "ori_shape")}
