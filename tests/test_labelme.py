"""LabelMe -> COCO: the instances LabelMe's labelme2coco would give, shapes other than polygons, group_id,
stable category ids, embedded images, seeded 80/20 split, backups, and the user's files left untouched."""
import base64
import hashlib
import io
import json
import math
import struct
import zlib
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
from PIL import Image, ImageDraw

from dataset_tools.check import run
from dataset_tools.convert_labelme import convert_labelme
from dataset_tools.report import ProblemLog
from engine.errors import DatasetCheckFailed
from test_check_dataset import load, make_cfg

W, H = 640, 480


def shape(label: str, points: List[List[float]], shape_type: str = "polygon", group_id: Any = None) -> Dict:
    return {"label": label, "points": points, "group_id": group_id, "shape_type": shape_type, "flags": {}}


def labelme_doc(image_path: str, shapes: List[Dict], image_data: Any = None,
                size: Tuple[int, int] = (H, W)) -> Dict:
    return {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path,
            "imageData": image_data, "imageHeight": size[0], "imageWidth": size[1]}


def png_bytes(size: Tuple[int, int] = (H, W), colour: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size[1], size[0]), (colour, colour, 120)).save(buf, format="PNG")
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG with only its IHDR and IEND chunks: a header claiming any size, no pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IEND", b"")


FILES: Dict[str, Dict] = {
    "annotations/a.json": labelme_doc("../images/a.png", [
        shape("cat", [[100.4, 50.2], [300.7, 80.9], [180.1, 260.6]]),
        shape("dog", [[420.3, 330.7], [20.3, 30.7]], "rectangle"),  # corners given bottom-right first
        shape("cat", [[500.5, 300.25], [500.5, 420.25]], "circle"),  # centre, point on the rim: r = 120
        shape("cat", [[10, 10], [50, 60]], "line"),
        shape("dog", [[5, 5]], "point"),
    ]),
    "annotations/b.json": labelme_doc("b.png", [
        shape("dog", [[10, 10], [60, 12], [40, 70]], group_id=1),
        shape("dog", [[200, 200], [260, 210], [230, 290], [205, 280]], group_id=1),  # same instance as above
        # same group, other label: own instance
        shape("cat", [[300, 300], [350, 300], [330, 350]], group_id=1),
        shape("bird", [[400.5, 20.5], [450.5, 25], [430, 90.25]]),
        shape("bird", [[600, 400], [700, 420], [660, 520]]),  # partly outside the image: clipped
    ]),
    "annotations/c.json": labelme_doc("c.png", [shape("bird", [[30, 40], [90, 40], [90, 100], [30, 100]])],
                                      image_data=base64.b64encode(png_bytes(colour=30)).decode()),
    "annotations/sub/d.json": labelme_doc("..\\..\\images\\d.png",
                                          [shape("cat", [[20, 20], [26, 28]], "circle")]),
}
LABELS = "__ignore__\n_background_\ndog\ncat\nbird\n"


def write_labelme(root: Path, with_labels: bool = True, val_list: Any = None) -> Path:
    (root / "images").mkdir(parents=True)
    for name in ("a.png", "b.png", "d.png"):
        (root / "images" / name).write_bytes(png_bytes())
    for rel, doc in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(json.dumps(doc))
    if with_labels:
        (root / "label.txt").write_text(LABELS)
    lists = list(FILES)
    if val_list is None:
        (root / "train_anno_list.txt").write_text("\n" + "\n\n".join(lists) + "\n\n")
    else:
        (root / "train_anno_list.txt").write_text("\n".join(f for f in lists if f not in val_list) + "\n")
        (root / "val_anno_list.txt").write_text("\n" + "\n".join(val_list) + "\n  \n")
    return root


def labelme_style_instances(doc: Dict) -> List[Tuple[str, int, List[float]]]:
    """(label, area, bbox) per instance as LabelMe's labelme2coco computes them: each shape drawn with PIL on
    a full-size canvas (outline and fill), shapes unioned per (label, group_id), area = pixel count."""
    h, w = doc["imageHeight"], doc["imageWidth"]
    masks: Dict[Any, np.ndarray] = {}
    for k, s in enumerate(doc["shapes"]):
        if s["shape_type"] not in ("polygon", "rectangle", "circle"):
            continue
        canvas = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(canvas)
        xy = [tuple(p) for p in s["points"]]
        if s["shape_type"] == "circle":
            (cx, cy), (px, py) = xy
            d = math.hypot(cx - px, cy - py)
            draw.ellipse([cx - d, cy - d, cx + d, cy + d], outline=1, fill=1)
        elif s["shape_type"] == "rectangle":
            (x1, y1), (x2, y2) = xy
            draw.rectangle([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], outline=1, fill=1)
        else:
            draw.polygon(xy, outline=1, fill=1)
        key = (s["label"], s["group_id"] if s["group_id"] is not None else f"shape{k}")
        masks[key] = masks.get(key, np.zeros((h, w), bool)) | np.asarray(canvas, bool)
    out = []
    for (label, _), m in masks.items():
        ys, xs = np.nonzero(m)
        bbox = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        out.append((label, int(m.sum()), bbox))
    return sorted(out)


def converted_instances(root: Path) -> Dict[str, List[Tuple[str, float, List[float]]]]:
    """file_name -> sorted (class name, area, bbox) from both converted files."""
    out: Dict[str, List] = {}
    for split in ("train", "val"):
        doc = load(root, split)
        names = {c["id"]: c["name"] for c in doc["categories"]}
        files = {im["id"]: im["file_name"] for im in doc["images"]}
        for f in files.values():
            out.setdefault(f, [])
        for a in doc["annotations"]:
            out[files[a["image_id"]]].append((names[a["category_id"]], a["area"], a["bbox"]))
    return {f: sorted(v) for f, v in out.items()}


def tree_digest(root: Path) -> Dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_instances_as_labelme2coco(tmp_path: Path) -> None:
    root = write_labelme(tmp_path / "lm")
    log = ProblemLog()
    assert convert_labelme(root, 42, log) is not None
    got = converted_instances(root)
    image_of = {"annotations/a.json": "a.png", "annotations/b.json": "b.png", "annotations/c.json": "c.png",
                "annotations/sub/d.json": "d.png"}
    assert sorted(got) == sorted(image_of.values())
    for rel, file_name in image_of.items():
        expected = labelme_style_instances(FILES[rel])
        ours = got[file_name]
        assert [e[0] for e in expected] == [o[0] for o in ours], rel  # same count and classes
        for (_, area, bbox), (_, our_area, our_bbox) in zip(expected, ours):
            assert our_area == pytest.approx(area, rel=0.01), rel
            np.testing.assert_allclose(our_bbox, bbox, atol=1)
    assert len(got["b.png"]) == 4  # the two "dog" shapes of group 1 are one instance


def test_rectangle_and_circle_survive_with_their_area(tmp_path: Path) -> None:
    root = write_labelme(tmp_path / "lm")
    assert convert_labelme(root, 42, ProblemLog()) is not None
    a = converted_instances(root)["a.png"]
    # polygon, circle, rectangle; line, point skipped
    assert [label for label, _, _ in a] == ["cat", "cat", "dog"]
    rect = next(area for label, area, _ in a if label == "dog")
    circle = max(area for label, area, _ in a if label == "cat")
    assert rect == pytest.approx(400 * 300, rel=0.01)  # analytic areas, within 1 %
    assert circle == pytest.approx(math.pi * 120**2, rel=0.01)
    segs = [ann["segmentation"][0] for s in ("train", "val") for ann in load(root, s)["annotations"]]
    assert [20.3, 30.7, 420.3, 30.7, 420.3, 330.7, 20.3, 330.7] in segs  # rectangle as a 4-point polygon
    assert any(len(s) >= 2 * 12 and len(s) % 2 == 0 for s in segs)  # circle as a polygon


def test_skipped_shapes_are_warned_by_file_and_shape(tmp_path: Path) -> None:
    root = write_labelme(tmp_path / "lm")
    log = ProblemLog()
    convert_labelme(root, 42, log)
    warned = {(w["file"], w["id"]) for w in log.entries("warning") if "skipped" in w["message"]}
    assert {("annotations/a.json", 3), ("annotations/a.json", 4)} <= warned
    messages = " ".join(w["message"] for w in log.entries("warning"))
    assert "'line'" in messages and "'point'" in messages and "group_id 1" in messages


@pytest.mark.parametrize("with_labels, expected", [
    (True, [(1, "dog"), (2, "cat"), (3, "bird")]),  # label.txt order, __ignore__/_background_ left out
    (False, [(1, "bird"), (2, "cat"), (3, "dog")]),  # sorted labels
])
def test_category_ids_are_stable_and_shared(tmp_path: Path, with_labels: bool, expected: List) -> None:
    root = write_labelme(tmp_path / "lm", with_labels=with_labels)
    assert convert_labelme(root, 42, ProblemLog()) is not None
    for split in ("train", "val"):
        assert [(c["id"], c["name"]) for c in load(root, split)["categories"]] == expected


def test_seeded_80_20_split_without_val_list(tmp_path: Path) -> None:
    def split_of(name: str, seed: int) -> Tuple[List[str], List[str]]:
        root = write_labelme(tmp_path / name)
        info = convert_labelme(root, seed, ProblemLog())
        assert info["seed"] == seed and "80/20" in info["val_source"]
        return tuple(sorted(im["file_name"] for im in load(root, s)["images"]) for s in ("train", "val"))

    train, val = split_of("a", 5)
    assert (len(train), len(val)) == (3, 1)
    assert split_of("b", 5) == (train, val)


def test_val_list_is_used_and_single_file_keeps_train(tmp_path: Path) -> None:
    root = write_labelme(tmp_path / "lm", val_list=["annotations/b.json"])
    info = convert_labelme(root, 1, ProblemLog())
    assert info["val_source"] == "val_anno_list.txt" and (info["train_files"], info["val_files"]) == (3, 1)
    assert [im["file_name"] for im in load(root, "val")["images"]] == ["b.png"]

    root = write_labelme(tmp_path / "one")
    (root / "train_anno_list.txt").write_text("annotations/a.json\n")
    info = convert_labelme(root, 1, ProblemLog())
    assert (info["train_files"], info["val_files"]) == (1, 0)


def test_embedded_image_written_and_user_files_untouched(tmp_path: Path) -> None:
    root = write_labelme(tmp_path / "lm")
    (root / "annotations" / "instance_train.json").write_text('{"old": true}')
    before = tree_digest(root)
    info = convert_labelme(root, 42, ProblemLog())
    assert info["images_written"] == ["images/c.png"]
    assert (root / "images" / "c.png").read_bytes() == png_bytes(colour=30)
    after = tree_digest(root)
    for rel, digest in before.items():  # LabelMe files, lists, images: unchanged
        if rel != "annotations/instance_train.json":
            assert after[rel] == digest, rel
    assert (root / "annotations" / "instance_train.json.bak").read_text() == '{"old": true}'
    first = (root / "annotations" / "instance_train.json").read_bytes()
    info = convert_labelme(root, 42, ProblemLog())  # again: the earlier backup stays
    assert info["images_written"] == []
    assert (root / "annotations" / "instance_train.json.bak").read_text() == '{"old": true}'
    assert (root / "annotations" / "instance_train.json.bak1").read_bytes() == first


def test_convert_then_check_passes(tmp_path: Path) -> None:
    root = write_labelme(tmp_path / "lm")
    report = run(make_cfg(root, tmp_path / "out", CheckDataset__convert__enable=True,
                          CheckDataset__convert__src_dataset_type="LabelMe"))
    assert report["check_pass"] is True, report["errors"]
    assert report["convert"]["seed"] == 42
    assert report["attributes"]["train_instances"] + report["attributes"]["val_instances"] == 3 + 4 + 1 + 1
    assert report["attributes"]["num_classes"] == 3


@pytest.mark.parametrize("break_it, file, expect", [
    (lambda r: (r / "train_anno_list.txt").unlink(), "train_anno_list.txt", "not found"),
    (lambda r: (r / "label.txt").write_text("dog\ncat\n"), "label.txt", "'bird'"),
    (lambda r: (r / "annotations/c.json").write_text("{oops"), "annotations/c.json", "not valid JSON"),
    (lambda r: (r / "images/a.png").unlink() or _edit(r, "annotations/a.json", imageData=None),
     "annotations/a.json", "not found"),
    (lambda r: _edit(r, "annotations/b.json", shapes=[shape("dog", [[1, 2], [3, 4]])]), "annotations/b.json",
     "at least 3"),
    (lambda r: _edit(r, "annotations/b.json", shapes=[shape("dog", [[1, 2], [3, "x"], [5, 6]])]),
     "annotations/b.json", "finite numbers"),
    (lambda r: _edit(r, "annotations/b.json", imageWidth=641), "annotations/b.json", "640x480"),
    (lambda r: _edit(r, "annotations/b.json", imagePath="a.png"), None, "also annotated"),
    (lambda r: _edit(r, "annotations/b.json", shapes=[shape("dog", [[9, 9], [1e15, 9]], "circle")]),
     "annotations/b.json", "far outside"),  # was: a 70-million-point circle, out of memory
    (lambda r: _edit(r, "annotations/b.json", imagePath="b\x00.png"), "annotations/b.json", "NUL"),
    (lambda r: (r / "label.txt").write_bytes(b"dog\n\xffcat\n"), "label.txt", "not UTF-8"),
    (lambda r: (r / "annotations/c.json").write_text("null"), "annotations/c.json", "only `null`"),
    (lambda r: (r / "images/b.png").write_bytes(png_header(100_000, 100_000)), "annotations/b.json",
     "cannot be read as an image"),  # was: PIL's DecompressionBombError
])
def test_conversion_errors_write_nothing(tmp_path: Path, break_it: Any, file: str, expect: str) -> None:
    root = write_labelme(tmp_path / "lm")
    break_it(root)
    with pytest.raises(DatasetCheckFailed) as info:
        run(make_cfg(root, tmp_path / "out", CheckDataset__convert__enable=True,
                     CheckDataset__convert__src_dataset_type="LabelMe"))
    errors = info.value.report["errors"]
    assert any(file in (None, e["file"]) and expect in e["message"] for e in errors), errors
    assert not (root / "annotations" / "instance_train.json").exists()
    assert not (root / "images" / "c.png").exists()


def _edit(root: Path, rel: str, **changes: Any) -> None:
    doc = json.loads((root / rel).read_text())
    doc.update(changes)
    (root / rel).write_text(json.dumps(doc))
