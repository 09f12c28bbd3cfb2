"""LabelMe -> COCO: `<root>/{train,val}_anno_list.txt` of LabelMe JSONs -> `annotations/instance_*.json`.

* Shapes: polygon, rectangle and circle become polygons; any other type is skipped with a warning naming
  the file and the shape. Shapes with the same label and `group_id` in one file form one instance
  (LabelMe's own rule); a shape without group_id is an instance of its own.
* `area` and `bbox` come from rasterising the shapes as LabelMe does (PIL, outline included: polygon,
  rectangle, ellipse for a circle) and unioning a group, so they equal LabelMe's labelme2coco output.
* Category ids are 1..K in `label.txt` order when `<root>/label.txt` exists (its `__ignore__` and
  `_background_` lines skipped), else in sorted label order; both files get the same list.
* Without `val_anno_list.txt` (or with one that lists nothing) a `random.Random(seed)` 80/20 split of the
  train list is used; train is never empty. Blank lines in the lists are ignored.
* An image is looked up at `imagePath` (relative to the LabelMe file) when that lies inside `images/`,
  else as `images/<basename of imagePath>`; when neither exists, embedded `imageData` is written there.
* Nothing is written while any file has an error. Existing `instance_*.json` are backed up (never
  overwriting a backup) before being replaced; LabelMe files and existing images are never modified.
"""
import base64
import binascii
import io
import math
import random
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from dataset_tools.report import ProblemLog, progress
from dataset_tools.split import backup_file, write_coco
from dataset_tools.fields import short
from dataset_tools.validate import SPLITS, annotation_file, load_json, usable_file_name
from dataset_tools.visualize import image_size
from engine.runtime.atomic_io import write_bytes

SHAPE_TYPES = ("polygon", "rectangle", "circle")
_NOT_CLASSES = ("__ignore__", "_background_")  # LabelMe's label.txt conventions


def read_list(path: Path, log: ProblemLog) -> Optional[List[str]]:
    """Non-blank, stripped lines of a list file (duplicates kept once, in order); None (logged) when the file
    cannot be read as text."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        why = f"is not UTF-8 text ({exc.reason} at byte {exc.start})" if isinstance(exc, UnicodeDecodeError) \
            else f"cannot be read: {exc.strerror or exc}"
        log.error("list file unreadable", path.name, None,
                  f"{path.name} {why}; save it as UTF-8, one entry a line")
        return None
    lines = [line.strip() for line in text.splitlines()]
    return list(dict.fromkeys(line for line in lines if line))


def shape_polygon(shape_type: str, points: np.ndarray) -> Tuple[Optional[List[float]], Optional[str]]:
    """A LabelMe shape as one flat COCO polygon [x1, y1, ...], or (None, what is wrong)."""
    if shape_type == "polygon" or (shape_type == "rectangle" and len(points) == 4):
        if len(points) < 3:
            return None, f"has {len(points)} points; a polygon needs at least 3"
        return [round(float(v), 2) for v in points.reshape(-1)], None
    if len(points) != 2:
        return None, f"has {len(points)} points; a {shape_type} is stored as 2"
    (x1, y1), (x2, y2) = points
    if shape_type == "rectangle":
        x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
        return [float(v) for v in (x1, y1, x2, y1, x2, y2, x1, y2)], None
    radius = math.hypot(x2 - x1, y2 - y1)
    if radius == 0:
        return None, "has radius 0"
    # enough vertices that the chord is at most 1 px from the circle
    n = max(12, math.ceil(math.pi / math.acos(1 - 1 / radius))) if radius > 1 else 12
    angles = np.arange(n) * (2 * np.pi / n)
    xy = np.stack([x1 + radius * np.cos(angles), y1 + radius * np.sin(angles)], 1)
    return [round(float(v), 2) for v in xy.reshape(-1)], None


def rasterise(shapes: List[Tuple[str, np.ndarray]], height: int, width: int) -> Tuple[int, List[float]]:
    """(pixel area, [x, y, w, h] pixel bbox) of the union of shapes, drawn as LabelMe draws them.

    Drawn in a window around the shapes (even offsets, so PIL's rounding is the same as on the full
    image) instead of a full-size canvas per instance.
    """
    bounds = []
    for shape_type, pts in shapes:
        if shape_type == "circle":
            r = math.hypot(*(pts[1] - pts[0]))
            bounds.append([pts[0] - r, pts[0] + r])
        else:
            bounds.append([pts.min(0), pts.max(0)])
    lo = np.floor(np.min([b[0] for b in bounds], 0)) - 2
    hi = np.ceil(np.max([b[1] for b in bounds], 0)) + 2
    x0, y0 = (max(0, int(v) - int(v) % 2) for v in lo)
    x1, y1 = min(width, int(hi[0])), min(height, int(hi[1]))
    if x1 <= x0 or y1 <= y0:
        return 0, [0.0, 0.0, 0.0, 0.0]
    canvas = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(canvas)
    for shape_type, pts in shapes:
        p = pts - (x0, y0)
        if shape_type == "circle":
            r = math.hypot(*(p[1] - p[0]))
            draw.ellipse([p[0][0] - r, p[0][1] - r, p[0][0] + r, p[0][1] + r], outline=1, fill=1)
        elif shape_type == "rectangle" and len(p) == 2:
            (a, b), (c, d) = p
            draw.rectangle([min(a, c), min(b, d), max(a, c), max(b, d)], outline=1, fill=1)
        else:
            draw.polygon([tuple(q) for q in p], outline=1, fill=1)
    mask = np.asarray(canvas, bool)
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return 0, [0.0, 0.0, 0.0, 0.0]
    bbox = [x0 + xs.min(), y0 + ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    return int(xs.size), [float(v) for v in bbox]


def _points(raw: Any) -> Optional[np.ndarray]:
    """(K, 2) float points, or None unless `raw` is a list of [x, y] finite numbers."""
    if type(raw) is not list or not all(type(p) is list and len(p) == 2 for p in raw):
        return None
    if not all(type(v) in (int, float) and math.isfinite(v) for p in raw for v in p):
        return None
    return np.array(raw, np.float64).reshape(-1, 2)


def _far_outside(shape_type: str, points: np.ndarray, height: int, width: int) -> Optional[str]:
    """What is wrong when a shape reaches more than one image size beyond the image's border (a typo'd
    coordinate; drawing or tracing it would also cost memory without bound), else None."""
    if shape_type == "circle" and len(points) == 2:
        radius = math.hypot(*(points[1] - points[0]))
        lo, hi = points[0] - radius, points[0] + radius
    else:
        lo, hi = points.min(0), points.max(0)
    size = np.array([width, height], np.float64)
    if (lo < -size).any() or (hi > 2 * size).any():
        return (f"reaches {lo.round(1).tolist()}..{hi.round(1).tolist()}, far outside the {width}x{height} "
                "image (more than one image size beyond its border)")
    return None


class _Converter:
    """State of one conversion: images, instances (labels resolved to ids at the end), pending writes."""

    def __init__(self, root: Path, log: ProblemLog) -> None:
        self.root, self.log = root, log
        self.images: Dict[str, List[Dict[str, Any]]] = {s: [] for s in SPLITS}
        self.anns: Dict[str, List[Dict[str, Any]]] = {s: [] for s in SPLITS}
        self.labels: set = set()
        self.image_owner: Dict[str, str] = {}  # file_name -> LabelMe file that uses it
        self.pending_images: Dict[str, bytes] = {}  # file_name -> embedded bytes to write

    def add_file(self, split: str, rel: str) -> None:
        doc = load_json(self.root / rel, rel, self.log, what="LabelMe file")
        if doc is None:
            return
        if not isinstance(doc, dict) or type(doc.get("shapes")) is not list:
            self.log.error("not a LabelMe file", rel, None,
                           "expected a LabelMe JSON object with a 'shapes' list")
            return
        height, width = doc.get("imageHeight"), doc.get("imageWidth")
        if not (type(height) is int and type(width) is int and height > 0 and width > 0):
            self.log.error("LabelMe image size", rel, None, f"imageHeight/imageWidth are {height}/{width}; "
                           "expected positive integers (re-save it in LabelMe)")
            return
        file_name = self._image(rel, doc, height, width)
        if file_name is None:
            return
        image_id = sum(map(len, self.images.values())) + 1
        self.images[split].append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for label, members in self._instances(rel, doc["shapes"], height, width).items():
            area, bbox = rasterise([(t, p) for t, p, _ in members], height, width)
            if area == 0:
                self.log.warning("shape outside the image", rel, None, (
                    f"'{label[0]}' shape(s) {[j for _, _, j in members]} cover no pixel of the image; "
                    "skipped"))
                continue
            self.labels.add(label[0])
            self.anns[split].append({
                "image_id": image_id, "label": label[0], "bbox": bbox, "area": float(area), "iscrowd": 0,
                "segmentation": [shape_polygon(t, p)[0] for t, p, _ in members],
            })

    def _instances(self, rel: str, shapes: List[Any], height: int,
                   width: int) -> Dict[Tuple[str, Any], List[Tuple[str, np.ndarray, int]]]:
        """(label, group) -> [(shape type, points, shape index)] for the shapes that become instances."""
        groups: Dict[Tuple[str, Any], List[Tuple[str, np.ndarray, int]]] = {}
        for j, shape in enumerate(shapes):
            if type(shape) is not dict:
                self.log.error("LabelMe shape", rel, j, f"shapes[{j}] is not an object")
                continue
            label, shape_type = shape.get("label"), shape.get("shape_type") or "polygon"
            if type(label) is not str or not label.strip():
                self.log.error("LabelMe shape", rel, j,
                               f"shapes[{j}] has label {label!r}; give it a class name")
                continue
            if shape_type not in SHAPE_TYPES:
                self.log.warning("shape type skipped", rel, j, (
                    f"shapes[{j}] ('{label}') is a {shape_type!r} shape; only polygon, rectangle and circle "
                    "shapes become instances, so it was skipped"))
                continue
            pts = _points(shape.get("points"))
            problem = "has points that are not [x, y] pairs of finite numbers" if pts is None else \
                _far_outside(shape_type, pts, height, width) or shape_polygon(shape_type, pts)[1]
            if pts is None or problem:
                self.log.error("LabelMe shape", rel, j,
                               f"shapes[{j}] ({shape_type} '{label}') {problem}; redraw it")
                continue
            group = shape.get("group_id")
            key = (label, ("shape", j) if group is None else ("group", _hashable(group)))
            groups.setdefault(key, []).append((shape_type, pts, j))
        labels_of: Dict[Any, set] = {}
        for label, group in groups:
            if group[0] == "group":
                labels_of.setdefault(group[1], set()).add(label)
        for group, labels in labels_of.items():
            if len(labels) > 1:
                self.log.warning("group_id with several labels", rel, None, (
                    f"group_id {group} joins shapes labelled {sorted(labels)}; they stay one instance per "
                    "label"))
        return groups

    def _image(self, rel: str, doc: Dict[str, Any], height: int, width: int) -> Optional[str]:
        """file_name (relative to images/) of the LabelMe file's image, or None after logging why not."""
        image_path = doc.get("imagePath")
        if type(image_path) is not str or not image_path.strip():
            self.log.error("LabelMe image", rel, None, "'imagePath' is missing; re-save the file in LabelMe")
            return None
        if not usable_file_name(image_path):
            self.log.error("LabelMe image", rel, None,
                           f"'imagePath' {short(image_path)} holds a NUL or a character no file name can "
                           "have; fix it")
            return None
        images_dir = (self.root / "images").resolve()
        beside = ((self.root / rel).parent / image_path.replace("\\", "/")).resolve()
        candidates = [PurePosixPath(beside.relative_to(images_dir)).as_posix()] \
            if beside.is_relative_to(images_dir) else []
        candidates.append(PurePosixPath(image_path.replace("\\", "/")).name)
        file_name = next((c for c in candidates if (images_dir / c).is_file()), None)
        if file_name is not None:
            actual = image_size(images_dir / file_name)
        elif doc.get("imageData"):
            file_name = candidates[-1]
            data = _decode_image_data(doc["imageData"])
            actual = image_size(io.BytesIO(data)) if data else None
            if data is None or actual is None:
                self.log.error("LabelMe image", rel, None, f"images/{file_name} is missing and the embedded "
                                                           "imageData cannot be decoded")
                return None
            self.pending_images.setdefault(file_name, data)
        else:
            self.log.error("LabelMe image", rel, None, f"image {image_path!r} not found as "
                                                       f"images/{candidates[-1]}; copy it into images/")
            return None
        if actual is None:
            self.log.error("LabelMe image", rel, None, f"images/{file_name} cannot be read as an image")
            return None
        if actual != (height, width):
            self.log.error("LabelMe image", rel, None, (
                f"images/{file_name} is {actual[1]}x{actual[0]} (width x height) but the file says "
                f"{width}x{height}; is it the right image?"))
            return None
        owner = self.image_owner.setdefault(file_name, rel)
        if owner != rel:
            self.log.error("image annotated twice", rel, None,
                           f"images/{file_name} is also annotated by {owner}; keep one LabelMe file per "
                           "image")
            return None
        return file_name

    def categories(self) -> List[Dict[str, Any]]:
        """[{id, name}] from label.txt (its order) or sorted labels; a label label.txt lacks is an error."""
        path = self.root / "label.txt"
        if not path.is_file():
            return [{"id": k + 1, "name": name} for k, name in enumerate(sorted(self.labels))]
        listed = read_list(path, self.log)
        if listed is None:
            return []
        names = [n for n in listed if n not in _NOT_CLASSES]
        for label in sorted(self.labels - set(names)):
            self.log.error("label not in label.txt", "label.txt", None,
                           f"label '{label}' is used but not listed in label.txt; add it or fix the shapes")
        return [{"id": k + 1, "name": name} for k, name in enumerate(names)]


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) else repr(value)


def _decode_image_data(data: Any) -> Optional[bytes]:
    try:
        return base64.b64decode(data, validate=False) if isinstance(data, str) else None
    except (binascii.Error, ValueError):
        return None


def _split_lists(root: Path, seed: int, log: ProblemLog) -> Optional[Dict[str, Any]]:
    """{"train": [...], "val": [...], "val_source": ...} from the list files; None (logged) on errors."""
    train_path, val_path = root / "train_anno_list.txt", root / "val_anno_list.txt"
    if not train_path.is_file():
        log.error("file missing", "train_anno_list.txt", None,
                  "train_anno_list.txt not found; list the train LabelMe files there, one path (relative to "
                  "the dataset folder) a line")
        return None
    train = read_list(train_path, log)
    val = read_list(val_path, log) if val_path.is_file() else []
    if train is None or val is None:
        return None
    source = "val_anno_list.txt"
    if not val:
        rng_order = list(train)
        random.Random(seed).shuffle(rng_order)
        n_train = len(train) if len(train) < 2 else min(len(train) - 1, max(1, round(0.8 * len(train))))
        keep = set(rng_order[:n_train])
        train, val = [f for f in train if f in keep], [f for f in train if f not in keep]
        source = f"seeded 80/20 split of train_anno_list.txt (seed {seed})"
    both = sorted(set(train) & set(val))
    for rel in both:
        log.error("listed in both splits", "val_anno_list.txt", None,
                  f"{rel} is in both train_anno_list.txt and val_anno_list.txt; keep it in one")
    if not train:
        log.error("empty split", "train_anno_list.txt", None, "train_anno_list.txt lists no LabelMe file")
    return None if both or not train else {"train": train, "val": val, "val_source": source}


def convert_labelme(root: Path, seed: int, log: ProblemLog) -> Optional[Dict[str, Any]]:
    """Convert the LabelMe dataset at `root` in place; returns the report's `convert` section, or None.

    On any error (logged), nothing is written.
    """
    root = Path(root)
    lists = _split_lists(root, seed, log)
    if lists is None:
        return None
    conv = _Converter(root, log)
    files = [(split, rel) for split in SPLITS for rel in lists[split]]
    for split, rel in progress(files, desc="LabelMe files", min_total=200):
        conv.add_file(split, rel)
    categories = conv.categories()
    if log.num_errors:
        return None
    cat_id = {c["name"]: c["id"] for c in categories}
    ann_ids = iter(range(1, 1 + sum(map(len, conv.anns.values()))))
    anns = {split: [{"id": next(ann_ids), "image_id": a["image_id"], "category_id": cat_id[a["label"]],
                     **{k: v for k, v in a.items() if k not in ("image_id", "label")}}
                    for a in conv.anns[split]]
            for split in SPLITS}
    for file_name, data in conv.pending_images.items():
        write_bytes(root / "images" / file_name, data)
    backups = [backup_file(root / annotation_file(split)) for split in SPLITS]
    for split in SPLITS:
        write_coco(root / annotation_file(split),
                   {"images": conv.images[split], "annotations": anns[split], "categories": categories})
    return {
        "src_dataset_type": "LabelMe", "seed": seed, "val_source": lists["val_source"],
        "train_files": len(lists["train"]), "val_files": len(lists["val"]),
        "images_written": sorted(f"images/{f}" for f in conv.pending_images),
        "backups": [b.relative_to(root).as_posix() for b in backups if b is not None],
    }
