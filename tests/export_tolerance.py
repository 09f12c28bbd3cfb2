"""How far an exported model (Paddle Inference, its own kernels or oneDNN) may drift from the dynamic graph
through float32 rounding alone, and one assertion that applies it to detections.

Why these bounds (not numbers tuned to one CPU):
- u = 2**-24 is float32's unit roundoff. Paddle Inference fuses ops (conv + BN, fc) and oneDNN picks its
  convolution and GEMM algorithms per CPU, so every dot product of length K is summed in another order
  than in the dynamic graph. Two orders differ by about sqrt(K) * u relative (rounding errors add like a
  random walk), and through L accumulating layers by about L * sqrt(K) * u: `float32_rtol`.
- A box coordinate is such an output times a length no larger than the image's longest side S (anchors,
  proposals and boxes all lie in the image), so it may move by rtol * S pixels. A cascade refines a box
  `stages` times, each stage pooling features at the previous stage's (already drifted) box, so the drifts
  add up: rtol grows with `stages`.
- A softmax probability moves by at most half the largest logit change (sum_j |dp_i / dz_j| =
  2 p_i (1 - p_i) <= 1/2), and a logit of magnitude Z by about rtol * Z.
- A mask pixel flips only where the pasted probability lies within float error of the 0.5 threshold: on
  mask edges, so a tiny share of all pixels (`MASK_FLIP_SHARE`), never a whole region.
Example: Cascade-MaskRCNN-ResNet50-FPN at a quarter width (L = 60, K = 32 * 7 * 7) on 80-pixel images may
move a coordinate by 0.034 px; measured drifts were 0.003 px and, on another CPU, 0.0144 px.
"""
import math
from typing import Dict, List

import numpy as np

UNIT_ROUNDOFF = 2.0 ** -24
MASK_FLIP_SHARE = 1e-3  # of all mask pixels, see above
LOGIT_SCALE = 10.0  # |logits| of the tested heads: the class-0 bias the R-CNN tests set, O(1) otherwise


def float32_rtol(depth: int, fan_in: int, stages: int = 1) -> float:
    """Relative drift of a model's outputs from reordered float32 sums: `stages` * L * sqrt(K) * u."""
    return stages * depth * math.sqrt(fan_in) * UNIT_ROUNDOFF


def assert_same_detections(static: Dict[str, np.ndarray], eager: Dict[str, np.ndarray],
                           images: List[np.ndarray], rtol: float, what: str = "") -> None:
    """Same counts and classes; boxes within rtol * S px, scores within rtol * LOGIT_SCALE / 2; at most
    MASK_FLIP_SHARE of the mask pixels differ."""
    assert static["bbox_num"].tolist() == eager["bbox_num"].tolist(), what
    np.testing.assert_array_equal(static["bbox"][:, 0], eager["bbox"][:, 0], err_msg=what)
    longest_side = max(max(image.shape[:2]) for image in images)
    np.testing.assert_allclose(static["bbox"][:, 2:], eager["bbox"][:, 2:], rtol=0, atol=rtol * longest_side,
                               err_msg=f"{what} boxes")
    np.testing.assert_allclose(static["bbox"][:, 1], eager["bbox"][:, 1], rtol=0, atol=rtol * LOGIT_SCALE / 2,
                               err_msg=f"{what} scores")
    assert static["mask"].shape == eager["mask"].shape, what
    assert np.mean(static["mask"] != eager["mask"]) <= MASK_FLIP_SHARE, what
