"""Re-split a COCO dataset's train + val images into new train/val files (seeded, nothing lost).

Both annotation files are merged (val image/annotation ids are shifted above train's when the two
files' ids collide), images are shuffled with `random.Random(seed)`, the first round(N * train%) go to
train and the remaining N - train to val, so every image and annotation lands in exactly one file.
The files being replaced are first copied to backups that never overwrite an earlier backup
(`instance_train.json.bak`, then `.bak1`, `.bak2`, ...).
"""
import json
import random
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

from dataset_tools.report import ProblemLog
from dataset_tools.validate import SPLITS, annotation_file, load_json
from engine.runtime.atomic_io import write_bytes
from engine.errors import ConfigError


def check_percents(train_percent: Any, val_percent: Any) -> None:
    """Raise ConfigError unless both are numbers in (0, 100) adding up to 100."""
    for key, value in (("train_percent", train_percent), ("val_percent", val_percent)):
        if type(value) not in (int, float):
            raise ConfigError(f"CheckDataset.split.{key} is {value!r}; with split.enable=True set both "
                              "train_percent and val_percent, e.g. 80 and 20")
        if not 0 < value < 100:
            raise ConfigError(f"CheckDataset.split.{key} is {value}; it must be between 0 and 100 "
                              "(exclusive)")
    if abs(train_percent + val_percent - 100) > 1e-6:
        raise ConfigError(f"CheckDataset.split.train_percent + val_percent is {train_percent + val_percent}, "
                          "not 100; e.g. train_percent=80 val_percent=20")


def backup_path(path: Path) -> Path:
    """The first of `<path>.bak`, `<path>.bak1`, `<path>.bak2`, ... that does not exist."""
    candidate, k = path.with_name(path.name + ".bak"), 0
    while candidate.exists():
        k += 1
        candidate = path.with_name(f"{path.name}.bak{k}")
    return candidate


def backup_file(path: Path) -> Optional[Path]:
    """Copy `path` to a fresh backup name (never replacing one); return it, or None if `path` is absent."""
    if not path.exists():
        return None
    while True:
        target = backup_path(path)
        try:
            with open(path, "rb") as src, open(target, "xb") as dst:  # "x": fail rather than overwrite
                shutil.copyfileobj(src, dst)
            shutil.copystat(path, target)
            return target
        except FileExistsError:  # another process took that name meanwhile
            continue


def write_coco(path: Path, doc: Dict[str, Any]) -> None:
    """Write a COCO document compactly and atomically (UTF-8; all-ASCII escapes when a string holds a lone
    surrogate, which UTF-8 cannot carry but a JSON escape can)."""
    try:
        data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        data = json.dumps(doc, separators=(",", ":")).encode("ascii")
    write_bytes(path, data)


def _load_for_split(root: Path, log: ProblemLog) -> Dict[str, Dict[str, Any]]:
    """The existing split files that can be merged without losing anything; problems go to `log`."""
    docs = {}
    for split in SPLITS:
        rel = annotation_file(split)
        if not (root / rel).exists():
            continue
        doc = load_json(root / rel, rel, log)
        if doc is None:
            continue
        if not (isinstance(doc, dict) and all(type(doc.get(k)) is list for k in ("images", "annotations"))
                and type(doc.get("categories", [])) is list
                and all(type(c) is dict and type(c.get("id")) is int for c in doc.get("categories", []))):
            log.error("cannot re-split", rel, None,
                      "needs 'images' and 'annotations' lists and a 'categories' list of objects with "
                      "integer ids to be re-split; run check_dataset without split to see what is wrong")
            continue
        images, anns = doc["images"], doc["annotations"]
        ids = [im.get("id") if type(im) is dict else None for im in images]
        if not all(type(i) is int for i in ids) or len(set(ids)) != len(ids):
            log.error("cannot re-split", rel, None, "every image needs a unique integer id before "
                      "re-splitting; run check_dataset without split to list the bad ones")
            continue
        known = set(ids)
        orphans = [a.get("id") if type(a) is dict else f"annotations[{k}]" for k, a in enumerate(anns)
                   if type(a) is not dict or type(a.get("id")) is not int
                   or type(a.get("image_id")) is not int or a["image_id"] not in known]
        log.add_many("error", "cannot re-split", rel, range(len(orphans)), lambda k: (
            orphans[k], "annotation has no integer id or its image_id is not in 'images'; it would be lost "
                        "by a re-split: fix or remove it first"))
        if not orphans:
            docs[split] = doc
    if not docs and log.num_errors == 0:
        log.error("cannot re-split", annotation_file("train"), None,
                  "neither annotation file exists; nothing to re-split")
    return docs


def _merge_categories(docs: Dict[str, Dict[str, Any]], log: ProblemLog) -> List[Dict[str, Any]]:
    merged: Dict[Any, Dict[str, Any]] = {}
    for split, doc in docs.items():
        for cat in doc.get("categories") or []:
            if type(cat) is not dict:
                continue
            first = merged.setdefault(cat.get("id"), cat)
            if first.get("name") != cat.get("name"):
                log.error("cannot re-split", annotation_file(split), cat.get("id"), (
                    f"category {cat.get('id')} is named {first.get('name')!r} and {cat.get('name')!r} in the "
                    "two files; make the names agree before re-splitting"))
    return sorted(merged.values(), key=lambda c: c["id"])  # integer ids: _load_for_split checked them


def _shift(values: List[int], taken: List[int]) -> int:
    """Offset that moves `values` above `taken` when the two overlap, else 0."""
    return max(taken) - min(values) + 1 if values and taken and set(values) & set(taken) else 0


def split_dataset(root: Path, train_percent: float, val_percent: float, seed: int,
                  log: ProblemLog) -> Optional[Dict[str, Any]]:
    """Re-split `root`'s annotation files; returns the report's `split` section, or None on errors.

    Nothing is written when a problem is found (it is in `log`); `check_percents` runs first.
    """
    check_percents(train_percent, val_percent)
    root = Path(root)
    docs = _load_for_split(root, log)
    categories = _merge_categories(docs, log)
    if log.num_errors:
        return None
    images: List[Dict[str, Any]] = []
    anns: List[Dict[str, Any]] = []
    for split, doc in docs.items():
        img_shift = _shift([im["id"] for im in doc["images"]], [im["id"] for im in images])
        ann_shift = _shift([a["id"] for a in doc["annotations"]], [a["id"] for a in anns])
        images += [dict(im, id=im["id"] + img_shift) for im in doc["images"]]
        anns += [dict(a, id=a["id"] + ann_shift, image_id=a["image_id"] + img_shift)
                 for a in doc["annotations"]]
    n = len(images)
    if n < 2:
        log.error("cannot re-split", annotation_file("train"), None,
                  f"only {n} image in both files; a split needs at least 2")
        return None
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_train = min(n - 1, max(1, round(n * train_percent / 100)))
    train_ids = {images[k]["id"] for k in order[:n_train]}
    lists = ("images", "annotations", "categories")
    extra = {k: v for doc in docs.values() for k, v in doc.items() if k not in lists}  # info, licenses, ...
    new_docs, counts = {}, {}
    for split in SPLITS:
        in_split = [im for im in images if (im["id"] in train_ids) == (split == "train")]
        wanted = {im["id"] for im in in_split}
        split_anns = [a for a in anns if a["image_id"] in wanted]
        counts[split] = (len(in_split), len(split_anns))
        new_docs[split] = {**extra, "images": in_split, "annotations": split_anns, "categories": categories}
    # both backed up before either is replaced
    backups = [backup_file(root / annotation_file(split)) for split in SPLITS]
    for split in SPLITS:
        write_coco(root / annotation_file(split), new_docs[split])
    return {
        "seed": seed, "train_percent": train_percent, "val_percent": val_percent,
        "train_images": counts["train"][0], "val_images": counts["val"][0],
        "train_instances": counts["train"][1], "val_instances": counts["val"][1],
        "backups": [b.relative_to(root).as_posix() for b in backups if b is not None],
    }
