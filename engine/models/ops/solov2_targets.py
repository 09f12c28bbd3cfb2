"""SOLOv2 training targets: which grid cells of which level predict which instance.

An instance is learnt by every level whose scale range holds sqrt(box area); on such a level, the cells
of its centre region (the cell of its mass centre and its neighbours, within `coord_sigma` of the box
size around the centre; at most 3 x 3) get its class and its mask (downscaled to the mask features'
stride 4). Vectorised over instances and cells; one pass per image and level (NumPy, float64, as
PaddleDetection's Gt2Solov2Target computes it).
"""
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

MASK_STRIDE = 4  # the mask features' stride
_OFFSETS = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])  # row-major, as ppdet


@dataclass
class SOLOv2Targets:
    """Targets of a batch of N images; cells are numbered level by level (finest first), row-major.

    cate_labels: int64 [N, total_cells] class + 1 of each cell, 0 = background.
    pos_cells: int64 [N, K] the positive cells of each image (padded with 0; K = the most of any image).
    pos_masks: uint8 [N, K, H / 4, W / 4] their instance masks (all-zero rows are padding).
    fg_num: cells with an instance, over the batch (the focal loss normaliser is fg_num + 1).
    """

    cate_labels: np.ndarray
    pos_cells: np.ndarray
    pos_masks: np.ndarray
    fg_num: int


def downscale_mask(masks: np.ndarray) -> np.ndarray:
    """uint8 [M, H, W] 0/1 -> [M, H / 4, W / 4]: cv2.resize(fx=fy=1/4, INTER_LINEAR) exactly (the mean of
    the 2 x 2 pixels at offsets 1, 2 of each 4 x 4 block, 0.5 rounding up)."""
    m = masks.astype(np.int32)
    total = m[:, 1::4, 1::4] + m[:, 2::4, 1::4] + m[:, 1::4, 2::4] + m[:, 2::4, 2::4]
    return (total >= 2).astype(np.uint8)


def _cells_of_level(centres: np.ndarray, half: np.ndarray, size: Tuple[int, int],
                    grid: int) -> Tuple[np.ndarray, np.ndarray]:
    """Centre-region cells of instances on a grid x grid level.

    Args:
        centres: float64 [M, 2] mass centres (y, x) in pixels; half: [M, 2] half region sizes (h, w).
        size: (H, W) of the padded image.
    Returns:
        (instance index [P], cell index row * grid + col [P]) in instance order, each instance's cells
        row-major.
    """
    extent = np.asarray(size, dtype=np.float64)
    step = 1.0 / grid
    centre_cell = np.floor_divide(centres / extent, step).astype(np.int64)
    low = np.maximum(0, np.floor_divide((centres - half) / extent, step).astype(np.int64))
    high = np.minimum(grid - 1, np.floor_divide((centres + half) / extent, step).astype(np.int64))
    low = np.maximum(low, centre_cell - 1)
    high = np.minimum(high, centre_cell + 1)
    cells = centre_cell[:, None, :] + _OFFSETS[None]  # [M, 9, 2]
    inside = np.all((cells >= low[:, None]) & (cells <= high[:, None]), axis=2)
    instance, offset = np.nonzero(inside)
    cell = cells[instance, offset]
    return instance, cell[:, 0] * grid + cell[:, 1]


def _image_targets(boxes: np.ndarray, labels: np.ndarray, masks: np.ndarray, grids: Sequence[int],
                   scale_ranges: Sequence[Sequence[float]], coord_sigma: float
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """One image's (cate labels [total_cells], positive cells [P], their masks [P, H/4, W/4], fg count)."""
    h, w = masks.shape[1:]
    areas = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    pixels = masks.reshape(len(masks), h * w).sum(axis=1).astype(np.float64)
    rows = masks.sum(axis=2, dtype=np.float64) @ np.arange(h, dtype=np.float64)
    cols = masks.sum(axis=1, dtype=np.float64) @ np.arange(w, dtype=np.float64)
    centres = np.stack([rows, cols], axis=1) / np.maximum(pixels, 1.0)[:, None]
    half = 0.5 * coord_sigma * np.stack([boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]], axis=1)
    small = downscale_mask(masks)
    cate_parts, cell_parts, mask_parts = [], [], []
    offset = 0
    for grid, (lower, upper) in zip(grids, scale_ranges):
        cate = np.zeros(grid * grid, dtype=np.int64)
        hit = np.nonzero((areas >= lower) & (areas <= upper) & (pixels > 0))[0]
        instance, cell = _cells_of_level(centres[hit], half[hit], (h, w), grid)
        cate[cell] = labels[hit][instance] + 1  # overlapping regions: the later instance's class
        cate_parts.append(cate)
        cell_parts.append(cell + offset)
        mask_parts.append(small[hit][instance])
        offset += grid * grid
    cate_labels = np.concatenate(cate_parts)
    return cate_labels, np.concatenate(cell_parts), np.concatenate(mask_parts), int((cate_labels > 0).sum())


def solov2_targets(boxes: List[np.ndarray], labels: List[np.ndarray], masks: List[np.ndarray],
                   grids: Sequence[int], scale_ranges: Sequence[Sequence[float]],
                   coord_sigma: float) -> SOLOv2Targets:
    """Targets of a batch.

    Args:
        boxes: per image float32 [M_i, 4] x1, y1, x2, y2 in padded-image pixels (crowd regions removed).
        labels: per image int [M_i] 0-based classes; masks: per image uint8 [M_i, H, W] 0/1 bitmaps
            (H, W multiples of 4).
        grids: S of each level; scale_ranges: [lower, upper] sqrt(box area) of each level.
        coord_sigma: centre region size, as a share of the box size.
    """
    per_image = [_image_targets(b.reshape(-1, 4).astype(np.float64), np.asarray(c).reshape(-1), m,
                                grids, scale_ranges, coord_sigma)
                 for b, c, m in zip(boxes, labels, masks)]
    count = max(1, max(len(cells) for _, cells, _, _ in per_image))
    h, w = masks[0].shape[1] // MASK_STRIDE, masks[0].shape[2] // MASK_STRIDE
    pos_cells = np.zeros((len(per_image), count), dtype=np.int64)
    pos_masks = np.zeros((len(per_image), count, h, w), dtype=np.uint8)
    for i, (_, cells, small, _) in enumerate(per_image):
        pos_cells[i, :len(cells)] = cells
        pos_masks[i, :len(cells)] = small
    cate_labels = np.stack([cate for cate, _, _, _ in per_image])
    return SOLOv2Targets(cate_labels, pos_cells, pos_masks, sum(fg for _, _, _, fg in per_image))


def levels_with_masks(targets: SOLOv2Targets, grids: Sequence[int]) -> List[int]:
    """Levels holding a positive cell with a non-empty mask (the only ones the mask loss reaches); [0]
    when there is none, so the loss still has a kernel to gather."""
    weighted = targets.pos_masks.reshape(targets.pos_masks.shape[:2] + (-1,)).any(axis=2)
    ends = np.cumsum([g * g for g in grids])
    levels = np.unique(np.searchsorted(ends, targets.pos_cells[weighted], side="right"))
    return [int(i) for i in levels] or [0]


def cells_among_levels(cells: np.ndarray, grids: Sequence[int], levels: Sequence[int]) -> np.ndarray:
    """Cell numbers (all levels, finest first) -> numbers among `levels`' cells only; cells of other
    levels map to 0 (they must carry no loss)."""
    renumber = np.zeros(sum(g * g for g in grids), dtype=np.int64)
    start, kept = 0, 0
    for level, grid in enumerate(grids):
        if level in levels:
            renumber[start:start + grid * grid] = np.arange(kept, kept + grid * grid)
            kept += grid * grid
        start += grid * grid
    return renumber[cells]
