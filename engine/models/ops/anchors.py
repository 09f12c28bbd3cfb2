"""Anchor boxes for the RPN: one set of cell anchors per feature level, shifted over its grid."""
import math
from typing import List, Sequence

import numpy as np
import paddle


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> np.ndarray:
    """Anchors centred on (0, 0), size-major: float32 [len(sizes) * len(aspect_ratios), 4].

    An anchor of size s and ratio r (= h / w) has area s^2: w = sqrt(s^2 / r), h = r * w.
    """
    out = []
    for size in sizes:
        for ratio in aspect_ratios:
            w = math.sqrt(size * size / ratio)
            h = ratio * w
            out.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return np.asarray(out, dtype="float32")


class AnchorGenerator:
    """Anchors for every location of every feature level (PaddleDetection's AnchorGenerator, offset 0).

    Args:
        sizes: anchor sizes (input pixels) per level, e.g. [[32], [64], ...] for FPN or
            [[32, 64, 128, 256, 512]] for a single C4 level.
        aspect_ratios: h / w ratios, shared by all levels.
        strides: feature stride of each level, len(strides) == len(sizes).
    """

    def __init__(self, sizes: Sequence[Sequence[float]], aspect_ratios: Sequence[float],
                 strides: Sequence[int]) -> None:
        if len(sizes) != len(strides):
            raise ValueError(f"{len(sizes)} anchor size groups for {len(strides)} feature levels")
        self.strides = list(strides)
        self._cells = [cell_anchors(s, aspect_ratios) for s in sizes]
        counts = {len(c) for c in self._cells}
        if len(counts) != 1:
            raise ValueError("every level needs the same number of anchors (the RPN convs are shared)")

    @property
    def num_anchors(self) -> int:
        """Anchors per feature location (A)."""
        return len(self._cells[0])

    def __call__(self, feats: Sequence[paddle.Tensor]) -> List[paddle.Tensor]:
        """Anchors of each level as float32 [H * W * A, 4], ordered (y, x, anchor) like the RPN outputs."""
        anchors = []
        for feat, stride, cell in zip(feats, self.strides, self._cells):
            shape = paddle.shape(feat)
            xs = paddle.arange(0, shape[3], dtype="float32") * stride
            ys = paddle.arange(0, shape[2], dtype="float32") * stride
            shift_y, shift_x = paddle.meshgrid(ys, xs)
            shifts = paddle.stack([shift_x, shift_y, shift_x, shift_y], axis=-1).reshape([-1, 1, 4])
            anchors.append((shifts + paddle.to_tensor(cell).unsqueeze(0)).reshape([-1, 4]))
        return anchors
