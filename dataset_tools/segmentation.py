"""Segmentation checks: polygons (>= 3 points, finite numbers) and RLE (size, run lengths), vectorised."""
import math
from itertools import chain, repeat
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from dataset_tools.fields import column, fits_float, short, type_problem

_SEG_KIND: Dict[type, int] = {list: 1, dict: 2}  # polygons, RLE


def check_segmentation(anns: List[dict], is_dict: np.ndarray, heights: np.ndarray, widths: np.ndarray,
                       index: np.ndarray, add: Any) -> np.ndarray:
    """Mask of annotations whose segmentation is fine; problems go to `add(kind, mask, describe)`.

    Args:
        heights, widths: per image (float, NaN where unknown); `index`: image index per annotation or -1.
    """
    segs = column(anns, "segmentation")
    kind = np.fromiter(map(_SEG_KIND.get, map(type, segs), repeat(0)), np.int8, len(segs))
    add("segmentation format", is_dict & (kind == 0), lambda i: type_problem(
        "segmentation", segs[i], "a list of polygons [[x1, y1, x2, y2, ...], ...] or an RLE {size, counts}"))
    bad = np.zeros(len(segs), bool)
    image_side = np.full(len(segs), np.nan)  # longer image side per annotation, NaN where unknown
    found = index >= 0
    image_side[found] = np.maximum(heights, widths)[index[found]]
    _check_polygons(segs, np.flatnonzero(kind == 1), image_side, bad, add)
    _check_rles(segs, np.flatnonzero(kind == 2), heights, widths, index, bad, add)
    return (kind > 0) & ~bad


def _flag(n: int, positions: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Mask of length n set at `positions`, minus annotations already found bad."""
    mask = np.zeros(n, bool)
    mask[positions] = True
    return mask & ~bad


def _check_polygons(segs: List[Any], idx: np.ndarray, image_side: np.ndarray, bad: np.ndarray,
                    add: Any) -> None:
    n = len(segs)
    polys_of = [segs[i] for i in idx]
    counts = np.fromiter(map(len, polys_of), np.int64, len(idx))
    mask = _flag(n, idx[counts == 0], bad)
    add("segmentation empty", mask, lambda i: "segmentation is an empty list; draw the object's polygon or "
                                              "remove the annotation")
    bad |= mask
    polys = list(chain.from_iterable(polys_of))
    owner = np.repeat(idx, counts)
    if not set(map(type, polys)) <= {list}:
        is_list = np.fromiter((type(p) is list for p in polys), bool, len(polys))
        mask = _flag(n, owner[~is_list], bad)
        add("polygon format", mask, lambda i: _not_polygons(segs[i]))
        bad |= mask
        polys = [p if type(p) is list else [] for p in polys]
    lengths = np.fromiter(map(len, polys), np.int64, len(polys))
    mask = _flag(n, owner[(lengths < 6) | (lengths % 2 == 1)], bad)
    add("polygon too short", mask, lambda i: (
        f"a polygon has {_polygon_lengths(segs[i])} numbers; a polygon needs an even count of at least 6 "
        "(3 points); remove or redraw it"))
    bad |= mask
    problems = _coordinate_problems(polys)
    mask = _flag(n, owner[list(problems)], bad)
    first_problem: Dict[int, str] = {}
    for j, text in problems.items():
        first_problem.setdefault(int(owner[j]), text)
    add("polygon coordinate", mask, lambda i: first_problem[i])
    bad |= mask
    if problems:
        polys = [[] if j in problems else p for j, p in enumerate(polys)]
        lengths[list(problems)] = 0
    far = _far_outside(polys, lengths, image_side[owner])
    add("polygon far outside the image", _flag(n, owner[far], bad), lambda i: (
        f"a polygon point lies more than one image size ({int(image_side[i])} px) outside the image; "
        "fix the coordinates (are they in pixels of this image?)"))
    bad[owner[far]] = True


def _not_polygons(seg: List[Any]) -> str:
    if all(type(v) in (int, float) for v in seg):
        return (f"segmentation {short(seg)} is a flat list of numbers; COCO polygons are nested, one list "
                "per polygon: wrap it as [[x1, y1, x2, y2, ...]]")
    return (f"segmentation {short(seg)} is not a list of polygons; each polygon is a flat list "
            "[x1, y1, x2, y2, ...]")


def _far_outside(polys: List[list], lengths: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Mask over polygons with a coordinate below -side or above 2 * side (side NaN: not checked).

    Coordinates that far out are typos or another image's scale, and pycocotools' rasteriser overflows on
    huge ones. `polys` must hold finite numbers only (the coordinate check ran before).
    """
    coords = np.fromiter(chain.from_iterable(polys), np.float64, int(lengths.sum()))
    nonempty = np.flatnonzero(lengths > 0)
    lo, hi = np.zeros(len(polys)), np.zeros(len(polys))
    if nonempty.size:
        starts = (np.cumsum(lengths) - lengths)[nonempty]
        lo[nonempty], hi[nonempty] = np.minimum.reduceat(coords, starts), np.maximum.reduceat(coords, starts)
    with np.errstate(invalid="ignore"):
        return (lo < -side) | (hi > 2 * side)


def _polygon_lengths(seg: Any) -> str:
    return "/".join(str(len(p)) if type(p) is list else "?" for p in seg)


def _coordinate_problems(polys: List[list]) -> Dict[int, str]:
    """{polygon index: message} for polygons with a non-number or non-finite coordinate.

    One C-level `sum` over every coordinate decides whether all are finite numbers (a `str`, `None` or
    list raises TypeError, a NaN or infinity makes the sum non-finite); only then is each polygon looked at.
    """
    try:
        if math.isfinite(sum(chain.from_iterable(polys))):
            return {}
    except (TypeError, OverflowError):
        pass
    problems = {}
    for j, poly in enumerate(polys):
        try:
            if math.isfinite(sum(poly)):  # C-level again: only bad polygons are walked in Python
                continue
        except (TypeError, OverflowError):
            pass
        for pos, v in enumerate(poly):
            if type(v) not in (int, float, bool):
                problems[j] = f"polygon coordinate {pos} is {short(v)}, not a number; fix the polygon"
                break
            if not fits_float(v) or not math.isfinite(v):
                problems[j] = f"polygon coordinate {pos} is {short(v)} (not finite); fix the polygon"
                break
    return problems


def _check_rles(segs: List[Any], idx: np.ndarray, heights: np.ndarray, widths: np.ndarray, index: np.ndarray,
                bad: np.ndarray, add: Any) -> None:
    problems: Dict[int, str] = {}
    for i in idx:
        j = index[i]
        known = j >= 0 and np.isfinite(heights[j]) and np.isfinite(widths[j])
        size = (int(heights[j]), int(widths[j])) if known else None
        text = rle_problem(segs[i], size)
        if text:
            problems[int(i)] = text
    mask = np.zeros(len(segs), bool)
    mask[list(problems)] = True
    add("RLE", mask, lambda i: problems[i])
    bad |= mask


def rle_problem(rle: Dict[str, Any], image_size: Optional[Tuple[int, int]]) -> Optional[str]:
    """What is wrong with an RLE segmentation (None when nothing), given the image's (height, width)."""
    size, counts = rle.get("size"), rle.get("counts")
    if not (type(size) is list and len(size) == 2 and all(type(v) is int and v > 0 for v in size)):
        return f"RLE 'size' is {short(size)}, expected [height, width] of the image"
    if image_size is not None and tuple(size) != image_size:
        return (f"RLE size {size} differs from the image's [height, width] {list(image_size)}; "
                "encode the mask at the image size")
    if isinstance(counts, str):
        total = compressed_rle_total(counts)
        if total is None:
            return "RLE 'counts' is not a valid compressed RLE string; re-encode the mask with pycocotools"
    elif type(counts) is list:
        if not (set(map(type, counts)) <= {int} and min(counts, default=0) >= 0):
            return "uncompressed RLE 'counts' must be a list of run lengths (integers >= 0)"
        total = sum(counts)
    else:
        return f"RLE 'counts' is {short(counts)}, expected a compressed string or a list of run lengths"
    if total != size[0] * size[1]:
        return (f"RLE run lengths sum to {total}, not height * width = {size[0] * size[1]}; "
                "re-encode the mask")
    return None


def compressed_rle_total(counts: str) -> Optional[int]:
    """Sum of the run lengths in a COCO compressed RLE string (None if malformed).

    The format (pycocotools' rleToString): each run is 5-bit chunks, least significant first, in
    characters 48 + chunk; 0x20 marks "more chunks follow", 0x10 in the last chunk is the sign; runs from
    the third on are stored as the difference to the run two places earlier.
    """
    try:
        c = np.frombuffer(counts.encode("ascii"), np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError:
        return None
    if c.size == 0 or c.min() < 0 or c.max() > 63 or c[-1] & 0x20:
        return None
    last = (c & 0x20) == 0
    starts = np.flatnonzero(np.concatenate(([True], last[:-1])))
    nchunks = np.diff(np.append(starts, c.size))
    if nchunks.max() > 12:
        return None
    shift = 5 * (np.arange(c.size) - np.repeat(starts, nchunks))
    x = np.add.reduceat((c & 0x1F) << shift, starts)
    x -= np.where(c[last] & 0x10, np.left_shift(1, 5 * nchunks), 0)
    runs = x.copy()
    runs[1::2] = np.cumsum(x[1::2])
    runs[2::2] = np.cumsum(x[2::2])
    if (runs < 0).any():
        return None
    return int(runs.sum())
