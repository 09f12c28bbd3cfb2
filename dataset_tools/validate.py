"""Validate a COCO instance-segmentation dataset: every image and every annotation, vectorised.

Per split (`annotations/instance_{train,val}.json`): the file exists and parses; top-level lists; required
keys and types; unique image, annotation and category ids; every annotation's image_id and category_id
exist; every image file exists under `images/` and stays inside it; width/height positive; bbox finite,
of positive size and inside the image (within `bbox_tolerance` pixels); polygons with >= 3 points (an even
count of >= 6 numbers) and finite coordinates; RLE size equal to the image's and run lengths summing to
height * width; area a finite number >= 0; iscrowd 0 or 1; no empty split. Across splits: identical
category ids and names; images listed in both splits (warning). Problems go to a `ProblemLog`; nothing
raises on bad input.

Speed: the checks run as numpy over all annotations plus a few C-level passes (`map`, `set`, `sum`) over
the parsed lists; per-item Python code runs only for problem reports, RLE entries and the slow path that
locates a bad coordinate once a fast pass has seen one.
"""
import gc
import json
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from dataset_tools.fields import (as_dicts, bbox_field, column, float_field, int_field, lookup,
                                  report_duplicates, short, type_problem)
from dataset_tools.report import ProblemLog, progress
from dataset_tools.segmentation import check_segmentation
from engine.runtime.json_read import gc_paused, read_json

SPLITS = ("train", "val")
_DRIVE = re.compile(r"^[A-Za-z]:")
NO_CATEGORY = np.iinfo(np.int64).min  # ann_category_ids where category_id is not an integer


def annotation_file(split: str) -> str:
    """The annotation JSON of a split, relative to the dataset root."""
    return f"annotations/instance_{split}.json"


@dataclass
class SplitData:
    """One split as validated: raw entries plus arrays the analysis and demo drawing use."""

    name: str
    file: str
    loaded: bool = False  # the JSON parsed into an object with the three lists
    images: List[Any] = field(default_factory=list)
    annotations: List[Any] = field(default_factory=list)
    categories: Dict[int, str] = field(default_factory=dict)  # id -> name, valid entries only
    image_ok: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # entry valid and file present
    ann_ok: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # annotation without error
    ann_image_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # into images, -1
    ann_category_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # or NO_CATEGORY

    @property
    def num_images(self) -> int:
        return len(self.images)

    @property
    def num_instances(self) -> int:
        return len(self.annotations)


# ---------------------------------------------------------------------------------------------- loading
def load_json(path: Path, rel: str, log: ProblemLog, what: str = "annotation file") -> Any:
    """Parse `path`; on any failure (a `null` document included) log an error naming the file, return None."""
    if not path.is_file():
        hint = "" if path.parent.is_dir() else f" (and its folder {path.parent.name}/ is missing)"
        log.error("file missing", rel, None, f"{what} not found{hint}; create it or fix Global.dataset_dir")
        return None
    try:
        doc = read_json(path)
    except json.JSONDecodeError as exc:
        log.error("not valid JSON", rel, None,
                  f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}; fix the file")
    except (UnicodeDecodeError, ValueError) as exc:
        log.error("not valid JSON", rel, None, f"cannot be decoded as JSON text ({exc}); save it as UTF-8")
    except OSError as exc:
        log.error("file unreadable", rel, None, f"cannot be read: {exc.strerror or exc}")
    except RecursionError:
        log.error("not valid JSON", rel, None, "nested too deeply to parse; is this a COCO annotation file?")
    else:
        if doc is not None:
            return doc
        log.error("not a JSON object", rel, None,
                  f"the file holds only `null`; expected the {what}'s JSON object")
    return None


# ------------------------------------------------------------------------------------------ categories
def _check_categories(raw: List[Any], rel: str, log: ProblemLog) -> Dict[int, str]:
    cats, is_dict = as_dicts(raw)
    log.add_many("error", "category not an object", rel, np.flatnonzero(~is_dict), lambda i: (
        f"categories[{i}]", f"categories[{i}] is {short(raw[i])}, expected an object with id and name"))
    ids, id_ok, id_raw = int_field(cats, "id")
    bad = np.flatnonzero(is_dict & ~id_ok)
    log.add_many("error", "category id", rel, bad, lambda i: (
        f"categories[{i}]", type_problem("id", id_raw[i], "an integer category id")))
    names: List[Any] = [c.get("name") for c in cats]
    name_ok = np.array([type(n) is str and n.strip() != "" for n in names], bool)
    log.add_many("error", "category name", rel, np.flatnonzero(is_dict & ~name_ok), lambda i: (
        ids[i] if id_ok[i] else f"categories[{i}]", type_problem("name", names[i], "a non-empty class name")))
    valid = np.flatnonzero(id_ok)
    report_duplicates(log, rel, "category", ids[valid])
    seen: Dict[str, int] = {}
    for i in np.flatnonzero(id_ok & name_ok):
        name = names[i]
        if name in seen and seen[name] != ids[i]:
            log.warning("duplicate category name", rel, int(ids[i]),
                        f"category name '{name}' is used by ids {seen[name]} and {int(ids[i])}; "
                        "rename one so predictions can be told apart")
        seen.setdefault(name, int(ids[i]))
    return {int(ids[i]): names[i] for i in valid if name_ok[i]}


# ---------------------------------------------------------------------------------------------- images
@dataclass
class _Images:
    ids: np.ndarray
    id_ok: np.ndarray
    heights: np.ndarray  # float, NaN where invalid
    widths: np.ndarray
    labels: List[Any]  # per entry: its id, or "images[i]"


def _check_images(raw: List[Any], rel: str, log: ProblemLog) -> Tuple[_Images, List[Any], np.ndarray]:
    """Check image entries; return their arrays, file names and the mask of usable entries."""
    imgs, is_dict = as_dicts(raw)
    log.add_many("error", "image not an object", rel, np.flatnonzero(~is_dict), lambda i: (
        f"images[{i}]",
        f"images[{i}] is {short(raw[i])}, expected an object with id, file_name, width, height"))
    ids, id_ok, id_raw = int_field(imgs, "id")
    labels = [int(v) if k else f"images[{i}]" for i, (v, k) in enumerate(zip(ids, id_ok))]
    log.add_many("error", "image id", rel, np.flatnonzero(is_dict & ~id_ok), lambda i: (
        labels[i], type_problem("id", id_raw[i], "an integer image id")))
    valid = np.flatnonzero(id_ok)
    dup = np.zeros(len(imgs), bool)
    dup[valid] = report_duplicates(log, rel, "image", ids[valid])
    sizes = {}
    for key in ("height", "width"):
        values, ok, vraw = int_field(imgs, key)
        ok &= values > 0
        log.add_many("error", f"image {key}", rel, np.flatnonzero(is_dict & ~ok), lambda i: (
            labels[i], type_problem(key, vraw[i], f"the image {key} in pixels (an integer > 0)")))
        sizes[key] = np.where(ok, values, np.nan)
    names = column(imgs, "file_name")
    if set(map(type, names)) <= {str}:
        name_ok = np.fromiter(map(bool, names), bool, len(names))
    else:
        name_ok = np.array([type(n) is str and n != "" for n in names], bool)
    log.add_many("error", "image file_name", rel, np.flatnonzero(is_dict & ~name_ok), lambda i: (
        labels[i], type_problem("file_name", names[i], "the image path relative to images/")))
    usable = is_dict & id_ok & ~dup & name_ok & ~np.isnan(sizes["height"]) & ~np.isnan(sizes["width"])
    # a duplicated id still resolves (to its first image) so its annotations are not reported again
    return _Images(ids, id_ok, sizes["height"], sizes["width"], labels), names, usable


def _unsafe(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or bool(_DRIVE.match(name)) or ".." in parts


def usable_file_name(name: str) -> bool:
    """Whether `name` can be a path on this system (no NUL, encodable in the file-system encoding)."""
    try:
        return "\x00" not in name and bool(os.fsencode(name))
    except UnicodeEncodeError:
        return False


def _plain_names(joined: str) -> bool:
    """Whether none of the newline-joined names can be unsafe or unusable (what `_unsafe` and
    `usable_file_name` reject needs a '/' or '\\' at the start, a ':', '..', a NUL or an unencodable char)."""
    if any(c in joined for c in ("\\", ":", "..", "\x00")) or joined.startswith("/") or "\n/" in joined:
        return False
    try:
        os.fsencode(joined)
    except UnicodeEncodeError:
        return False
    return True


def _list_files(folder: Path) -> set:
    try:
        with os.scandir(folder) as it:
            return {e.name for e in it if e.is_file()}
    except OSError:
        return set()


def _check_image_files(root: Path, split: str, names: List[Any], candidates: np.ndarray, labels: List[Any],
                       rel: str, log: ProblemLog) -> np.ndarray:
    """Mask of entries whose file exists inside images/; logs unsafe paths and missing files."""
    images_dir = root / "images"
    present = np.zeros(len(names), bool)
    if not images_dir.is_dir():
        if not log.seen("error", "images", "images folder missing"):
            log.error("images folder missing", "images", None,
                      f"folder images/ not found in {root}; put the image files there")
        return present
    listings: Dict[str, set] = {"": _list_files(images_dir)}
    unsafe, unusable, missing = [], [], []
    to_check = np.flatnonzero(candidates)
    listed = [names[i] for i in to_check]
    if _plain_names("\n".join(listed)):  # the usual case: a set lookup per name, no Python code per name
        in_top = np.fromiter(map(listings[""].__contains__, listed), bool, len(listed))
        present[to_check[in_top]] = True
        to_check = to_check[~in_top]  # in sub-folders, or missing
    for i in progress(to_check, desc=f"{split} image files", min_total=50_000):
        name = names[i]
        if _unsafe(name):
            unsafe.append(i)
            continue
        if not usable_file_name(name):
            unusable.append(i)
            continue
        folder, _, base = posixpath.normpath(name).rpartition("/")
        files = listings.get(folder)
        if files is None:
            files = listings[folder] = _list_files(images_dir / folder)
        if base in files or (images_dir / name).is_file():  # is_file: case-insensitive file systems
            present[i] = True
        else:
            missing.append(i)
    log.add_many("error", "image path outside images/", rel, unsafe, lambda i: (
        labels[i], f"file_name {short(names[i])} is absolute or climbs out of images/ ('..'); "
                   "use a path relative to images/"))
    log.add_many("error", "image file_name unusable", rel, unusable, lambda i: (
        labels[i], f"file_name {short(names[i])} holds a NUL or a character no file name can have; rename "
                   "the image file and fix file_name"))
    log.add_many("error", "image file missing", rel, missing, lambda i: (
        labels[i], f"image file images/{names[i]} not found; add it or remove the image and its annotations"))
    return present


# ----------------------------------------------------------------------------------------- annotations
def _check_annotations(
    raw: List[Any], rel: str, log: ProblemLog, images: _Images, categories: Dict[int, str], tol: float
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check annotation entries; return (ok mask, image index per annotation, category ids)."""
    anns, is_dict = as_dicts(raw)
    log.add_many("error", "annotation not an object", rel, np.flatnonzero(~is_dict), lambda i: (
        f"annotations[{i}]", f"annotations[{i}] is {short(raw[i])}, expected an annotation object"))
    ids, id_ok, id_raw = int_field(anns, "id")

    def label(i: int) -> Any:
        return int(ids[i]) if id_ok[i] else f"annotations[{i}]"

    def add(kind: str, mask: np.ndarray, describe: Any, severity: str = "error") -> None:
        log.add_many(severity, kind, rel, np.flatnonzero(mask), lambda i: (label(i), describe(i)))

    add("annotation id", is_dict & ~id_ok,
        lambda i: type_problem("id", id_raw[i], "an integer annotation id"))
    ok = is_dict & id_ok
    ok[np.flatnonzero(id_ok)] &= ~report_duplicates(log, rel, "annotation", ids[id_ok])

    img_ids, img_ok, img_raw = int_field(anns, "image_id")
    add("annotation image_id", is_dict & ~img_ok,
        lambda i: type_problem("image_id", img_raw[i], "an image id"))
    index = lookup(images.ids, images.id_ok, img_ids, img_ok)
    add("unknown image_id", img_ok & (index < 0), lambda i: (
        f"image_id {int(img_ids[i])} is not in 'images'; fix the id or remove the annotation"))

    cat_ids, cat_ok, cat_raw = int_field(anns, "category_id")
    add("annotation category_id", is_dict & ~cat_ok, lambda i: type_problem(
        "category_id", cat_raw[i], "a category id"))
    known = cat_ok & np.isin(cat_ids, np.fromiter(categories, np.int64, len(categories)))
    add("unknown category_id", cat_ok & ~known, lambda i: (
        f"category_id {int(cat_ids[i])} is not in 'categories' (ids {sorted(categories)[:20]}); "
        "fix the id or add the category"))
    ok &= (index >= 0) & known

    ok &= _check_boxes(anns, is_dict, images, index, tol, add)
    ok &= _check_area_crowd(anns, is_dict, add)
    ok &= check_segmentation(anns, is_dict, images.heights, images.widths, index, add)
    return ok, index, np.where(cat_ok, cat_ids, NO_CATEGORY)


def _check_boxes(anns: List[dict], is_dict: np.ndarray, images: _Images, index: np.ndarray, tol: float,
                 add: Any) -> np.ndarray:
    boxes, shape_ok, raw = bbox_field(anns)
    add("bbox format", is_dict & ~shape_ok, lambda i: type_problem("bbox", raw[i], "[x, y, width, height]"))
    finite = np.isfinite(boxes).all(1)
    add("bbox not finite", shape_ok & ~finite, lambda i: f"bbox {short(raw[i])} has a NaN or infinite value")
    x, y, w, h = boxes.T
    with np.errstate(invalid="ignore"):
        empty = finite & ((w <= 0) | (h <= 0))
        add("bbox empty", empty, lambda i: f"bbox {short(raw[i])} has width or height <= 0; fix or remove it")
        img_w, img_h = _per_annotation(images.widths, index), _per_annotation(images.heights, index)
        outside = finite & ~empty & ((x < -tol) | (y < -tol) | (x + w > img_w + tol) | (y + h > img_h + tol))
        add("bbox outside the image", outside, lambda i: (
            f"bbox {short(raw[i])} leaves the {int(img_w[i])}x{int(img_h[i])} image by more than {tol:g} px "
            "(CheckDataset.bbox_tolerance); fix the box or the image's width/height"))
        tiny = finite & ~empty & ((w < 1) | (h < 1))
    add("tiny bbox", tiny, lambda i: f"bbox {short(raw[i])} is under 1 px wide or high; check it is a real "
                                     "object (training can cope with it)", "warning")
    return finite & ~empty & ~outside


def _per_annotation(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """values[index] per annotation, NaN where index is -1 (no such image)."""
    out = np.full(len(index), np.nan)
    found = index >= 0
    out[found] = values[index[found]]
    return out


def _check_area_crowd(anns: List[dict], is_dict: np.ndarray, add: Any) -> np.ndarray:
    area, area_num, area_raw = float_field(anns, "area")
    with np.errstate(invalid="ignore"):
        area_ok = area_num & np.isfinite(area) & (area >= 0)
    add("area", is_dict & ~area_ok,
        lambda i: type_problem("area", area_raw[i], "the mask area in pixels (>= 0)"))
    crowd = column(anns, "iscrowd")
    if set(map(type, crowd)) <= {int, bool}:
        crowd_ok = np.fromiter(map({0, 1}.__contains__, crowd), bool, len(crowd))
    else:
        crowd_ok = np.fromiter((c in (0, 1) and type(c) in (int, bool) for c in crowd), bool, len(crowd))
    add("iscrowd", is_dict & ~crowd_ok, lambda i: type_problem("iscrowd", crowd[i], "0 or 1"))
    return area_ok & crowd_ok


# ------------------------------------------------------------------------------------------- splits
def validate_split(root: Path, split: str, log: ProblemLog, bbox_tolerance: float = 2.0) -> SplitData:
    """Check `annotations/instance_{split}.json` and its image files; every problem goes to `log`."""
    rel = annotation_file(split)
    data = SplitData(split, rel)
    with gc_paused():
        doc = load_json(Path(root) / rel, rel, log)
        # The document lives until the check ends and holds no reference cycles: freezing it (before the
        # collector is back on) keeps every later collection from walking its millions of lists and dicts,
        # a third of a COCO-scale check's time. check.run unfreezes at its end; refcounting frees as usual.
        gc.freeze()
    if doc is None:
        return data
    if not isinstance(doc, dict):
        log.error("not a COCO object", rel, None, f"top level is {type(doc).__name__}, expected a COCO "
                  "object with images, annotations and categories")
        return data
    lists = {}
    for key in ("images", "annotations", "categories"):
        value = doc.get(key)
        if type(value) is not list:
            log.error("missing top-level list", rel, None, type_problem(key, value, f"a list of {key}"))
        lists[key] = value if type(value) is list else []
    data.loaded = all(type(doc.get(k)) is list for k in lists)
    if type(doc.get("categories")) is list and not doc["categories"]:
        log.error("no categories", rel, None, "'categories' is empty; list every class as {id, name}")
    data.images, data.annotations = lists["images"], lists["annotations"]
    data.categories = _check_categories(lists["categories"], rel, log)
    images, names, usable = _check_images(data.images, rel, log)
    data.image_ok = usable & _check_image_files(Path(root), split, names, usable, images.labels, rel, log)
    ok, index, cat_ids = _check_annotations(data.annotations, rel, log, images, data.categories,
                                            float(bbox_tolerance))
    data.ann_ok, data.ann_image_index, data.ann_category_ids = ok, index, cat_ids
    if data.loaded and not data.images:
        log.error("empty split", rel, None, f"the {split} split has no images; add some, or re-split with "
                                            "CheckDataset.split")
    elif data.loaded and not data.annotations:
        log.error("empty split", rel, None, f"the {split} split has no annotations; annotate its images")
    annotated = np.zeros(len(data.images), bool)
    annotated[index[index >= 0]] = True
    log.add_many("warning", "image without annotations", rel, np.flatnonzero(usable & ~annotated), lambda i: (
        images.labels[i], f"image {names[i]} has no annotations; it only adds background"))
    return data


def validate_dataset(root: Path, log: ProblemLog, bbox_tolerance: float = 2.0) -> Dict[str, SplitData]:
    """Check both splits and their agreement; an empty dict when the dataset folder itself is missing."""
    root = Path(root)
    if not root.is_dir():
        log.error("dataset folder missing", str(root), None,
                  "dataset folder not found; set Global.dataset_dir to the folder holding images/ and "
                  "annotations/")
        return {}
    splits = {s: validate_split(root, s, log, bbox_tolerance) for s in SPLITS}
    _check_across_splits(splits["train"], splits["val"], log)
    return splits


def _check_across_splits(train: SplitData, val: SplitData, log: ProblemLog) -> None:
    if train.categories and val.categories and train.categories != val.categories:
        for cid in sorted(set(train.categories) | set(val.categories)):
            a, b = train.categories.get(cid), val.categories.get(cid)
            if a != b:
                log.error("categories differ between splits", val.file, cid, (
                    f"category {cid} is {short(a)} in {train.file} but {short(b)} in {val.file}; "
                    "both files need the same category ids and names"))
    if train.loaded and val.loaded:
        in_train = set(_file_names(train))
        val_names = _file_names(val)
        both = [i for i, n in enumerate(val_names) if n is not None and n in in_train]
        log.add_many("warning", "image in both splits", val.file, both, lambda i: (
            val.images[i].get("id"), f"image {val_names[i]} is also in {train.file}; val scores will be "
                                     "optimistic"))


def _file_names(data: SplitData) -> List[Optional[str]]:
    """Normalised file_name of each image entry (None where missing)."""
    return [posixpath.normpath(e["file_name"])
            if type(e) is dict and type(e.get("file_name")) is str else None for e in data.images]
