"""Golden R-CNN losses: seeded tiny models and one fixed generated batch, shared by
tools/make_rcnn_golden_losses.py (writes tests/fixtures/rcnn_golden_losses.json) and
tests/test_rcnn_golden_losses.py (recomputes and compares).

Everything random is seeded: the weights with `paddle.seed(WEIGHT_SEED)` before the model is built, the
RPN / RoI samplers (engine.models.ops.assigners.random_subset draws from Paddle's stream) with
`paddle.seed(LOSS_SEED)` right before `model.loss`, the batch with its own NumPy generator.
"""
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import paddle

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config.architectures import RCNNArchitecture  # noqa: E402
from engine.models.zoo import build_model  # noqa: E402

FIXTURE = Path(__file__).with_name("fixtures") / "rcnn_golden_losses.json"
CASES = ("MaskRCNN-ResNet50-FPN", "MaskRCNN-ResNet50", "Cascade-MaskRCNN-ResNet50-FPN")
NUM_CLASSES = 3
SIZE = 96
WEIGHT_SEED, LOSS_SEED, BATCH_SEED = 0, 1, 2
# narrow widths, anchors and sample counts for 96 px images (as the learning test's TINY)
ARCH = RCNNArchitecture(base_channels=16, fpn_channels=32, box_head_dim=128, mask_head_channels=32,
                        mask_head_convs=2, anchor_sizes=[16, 32, 64, 128, 256], freeze_at=-1,
                        freeze_norm=False, rpn_batch_size_per_im=64, roi_batch_size_per_im=64)
_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def _shape_mask(rng: np.random.Generator, ellipse: bool) -> np.ndarray:
    """A rectangle or an ellipse of 14-40 px at a random spot of the SIZE x SIZE image (uint8 0/1)."""
    h, w = (int(v) for v in rng.integers(14, 41, size=2))
    y0, x0 = int(rng.integers(0, SIZE - h)), int(rng.integers(0, SIZE - w))
    mask = np.zeros((SIZE, SIZE), np.uint8)
    if not ellipse:
        mask[y0:y0 + h, x0:x0 + w] = 1
        return mask
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    inside = ((yy - y0 - h / 2) / (h / 2)) ** 2 + ((xx - x0 - w / 2) / (w / 2)) ** 2 <= 1
    mask[inside] = 1
    return mask


def golden_batch(num_images: int = 2) -> Dict[str, Any]:
    """`num_images` 96x96 images with 2, 3, ... shapes each (later ones occluding earlier ones), in the
    loader's batch format (docs/ENGINE.md): normalised image [N, 3, 96, 96] float32, gt boxes xyxy in
    pixels fitted to the visible masks, class ids in [0, NUM_CLASSES), the last shape of every second
    image a crowd region."""
    rng = np.random.default_rng(BATCH_SEED)
    images, boxes, classes, masks, crowds = [], [], [], [], []
    for i in range(num_images):
        image = rng.normal(128, 20, size=(SIZE, SIZE, 3)).astype(np.float32)
        inst: List[np.ndarray] = []
        for k in range(2 + i):
            m = _shape_mask(rng, ellipse=bool(k % 2))
            image[m > 0] = rng.integers(0, 256, size=3)
            inst = [prev & (1 - m) for prev in inst] + [m]  # later shapes occlude earlier ones
        inst_masks = np.stack(inst).astype(np.uint8)
        box_rows = []
        for m in inst_masks:
            rows, cols = np.nonzero(m.any(axis=1))[0], np.nonzero(m.any(axis=0))[0]
            box_rows.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
        images.append((image - _MEAN) / _STD)
        boxes.append(np.array(box_rows, np.float32))
        classes.append(rng.integers(0, NUM_CLASSES, size=len(inst)).astype(np.int32))
        masks.append(inst_masks)
        crowds.append(np.array([0] * (len(inst) - 1) + [i % 2], np.int32))
    return {
        "image": paddle.to_tensor(np.stack(images).transpose(0, 3, 1, 2).copy()),
        "im_shape": paddle.to_tensor([[float(SIZE), float(SIZE)]] * num_images),
        "scale_factor": paddle.to_tensor([[1.0, 1.0]] * num_images),
        "gt_bbox": [paddle.to_tensor(b) for b in boxes],
        "gt_class": [paddle.to_tensor(c) for c in classes],
        "gt_mask": [paddle.to_tensor(m) for m in masks],
        "is_crowd": [paddle.to_tensor(c) for c in crowds],
    }


def compute_losses(name: str) -> Dict[str, float]:
    """`model.loss(golden_batch())` of the seeded tiny `name`, in training mode."""
    paddle.seed(WEIGHT_SEED)
    model = build_model(name, ARCH, NUM_CLASSES)
    model.train()
    batch = golden_batch()
    paddle.seed(LOSS_SEED)
    return {key: float(value) for key, value in model.loss(batch).items()}
