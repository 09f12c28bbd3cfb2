"""check_dataset: a valid dataset passes with the right counts and pictures; every defect is reported."""
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict

import cv2
import numpy as np
import pytest
from omegaconf import OmegaConf
from pycocotools import mask as mask_utils

from dataset_tools.check import run
from dataset_tools.report import ProblemLog
from dataset_tools.synthetic import make_coco_dataset
from dataset_tools.segmentation import compressed_rle_total
from dataset_tools.validate import validate_split
from engine.config.schema import InstSegConfig
from engine.errors import ConfigError, DatasetCheckFailed, DatasetError

REPO = Path(__file__).resolve().parents[1]


def make_cfg(root: Path, output: Path, **overrides: Any) -> Any:
    """An InstSegConfig for `root`; `CheckDataset__split__enable=True` sets CheckDataset.split.enable."""
    cfg = OmegaConf.structured(InstSegConfig)
    cfg.Global.dataset_dir = str(root)
    cfg.Global.output = str(output)
    cfg.Train.num_classes = 3
    for dotted, value in overrides.items():
        OmegaConf.update(cfg, dotted.replace("__", "."), value, merge=False)
    OmegaConf.set_readonly(cfg, True)  # as engine.config.load hands it over
    return cfg


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_coco_dataset(tmp_path / "ds", num_train=6, num_val=3, size=(64, 64), crowd_every=4, seed=1)


def load(root: Path, split: str) -> Dict[str, Any]:
    return json.loads((root / "annotations" / f"instance_{split}.json").read_text())


def save(root: Path, split: str, doc: Any) -> None:
    (root / "annotations" / f"instance_{split}.json").write_text(json.dumps(doc))


def failing_report(cfg: Any) -> Dict[str, Any]:
    with pytest.raises(DatasetCheckFailed) as info:
        run(cfg)
    report = info.value.report
    json.dumps(report)  # the mode runner writes it as is
    assert report["check_pass"] is False and report["num_errors"] >= 1
    assert isinstance(info.value, DatasetError)
    return report


def test_valid_dataset_passes_with_counts_and_pictures(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = run(make_cfg(dataset, out))
    train, val = load(dataset, "train"), load(dataset, "val")
    assert report["check_pass"] is True and report["errors"] == []
    attrs = report["attributes"]
    assert attrs["num_classes"] == 3
    assert (attrs["train_samples"], attrs["val_samples"]) == (6, 3)  # images, not instances
    assert attrs["train_instances"] == len(train["annotations"]) > 6
    assert attrs["val_instances"] == len(val["annotations"])
    assert any(a["iscrowd"] for a in train["annotations"] + val["annotations"])  # RLE entries were checked
    assert len(attrs["train_sample_paths"]) == 6 and len(attrs["val_sample_paths"]) == 3
    for rel in attrs["train_sample_paths"] + attrs["val_sample_paths"]:
        assert (out / rel).is_file() and cv2.imread(str(out / rel)).shape == (64, 64, 3)
    assert all("/demo_img/train/" in p for p in attrs["train_sample_paths"])
    assert all("/demo_img/val/" in p for p in attrs["val_sample_paths"])
    assert report["analysis"]["histogram"] == "check_dataset/histogram.png"
    assert (out / "check_dataset/histogram.png").read_bytes()[:4] == b"\x89PNG"
    assert (report["dataset_path"], report["show_type"], report["dataset_type"]) == (
        str(dataset), "image", "COCOInstSegDataset")


def test_demo_images_capped_and_drawn(dataset: Path, tmp_path: Path) -> None:
    report = run(make_cfg(dataset, tmp_path / "out", CheckDataset__sample_num=2))
    paths = report["attributes"]["train_sample_paths"]
    assert len(paths) == 2
    drawn = cv2.imread(str(tmp_path / "out" / paths[0]))
    original = cv2.imread(str(dataset / "images" / load(dataset, "train")["images"][0]["file_name"]))
    assert np.abs(drawn.astype(int) - original.astype(int)).mean() > 3  # masks and boxes were drawn on it


def test_num_classes_mismatch_is_a_warning(dataset: Path, tmp_path: Path) -> None:
    report = run(make_cfg(dataset, tmp_path / "out", Train__num_classes=5))
    assert report["check_pass"] is True
    assert any("Train.num_classes is 5" in w["message"] and "3" in w["message"] for w in report["warnings"])


def test_warnings_do_not_fail(dataset: Path, tmp_path: Path) -> None:
    train = load(dataset, "train")
    train["images"].append({"id": 999, "file_name": train["images"][0]["file_name"], "height": 64,
                            "width": 64})
    ann = dict(train["annotations"][0], id=9999, bbox=[10, 10, 0.5, 3])
    train["annotations"].append(ann)
    save(dataset, "train", train)
    report = run(make_cfg(dataset, tmp_path / "out"))
    assert report["check_pass"] is True
    kinds = {(w["id"], w["message"].split(" ")[0]) for w in report["warnings"]}
    assert (999, "image") in kinds  # image without annotations
    assert any(w["id"] == 9999 and "under 1 px" in w["message"] for w in report["warnings"])


def _defects() -> Dict[str, Callable[[Dict[str, Any]], Any]]:
    """name -> mutation of the train document that introduces one defect (returns the id to expect)."""

    def ann(doc: Dict[str, Any], k: int, **changes: Any) -> int:
        doc["annotations"][k].update(changes)
        return doc["annotations"][k]["id"]

    def poly_ann(doc: Dict[str, Any]) -> int:
        return next(k for k, a in enumerate(doc["annotations"]) if isinstance(a["segmentation"], list))

    def rle_ann(doc: Dict[str, Any]) -> int:
        return next(k for k, a in enumerate(doc["annotations"]) if isinstance(a["segmentation"], dict))

    def set_poly(doc: Dict[str, Any], value: Any) -> int:
        k = poly_ann(doc)
        return ann(doc, k, segmentation=[value])

    def set_rle(doc: Dict[str, Any], **changes: Any) -> int:
        k = rle_ann(doc)
        doc["annotations"][k]["segmentation"].update(changes)
        return doc["annotations"][k]["id"]

    def dup_image(doc: Dict[str, Any]) -> int:
        doc["images"][1]["id"] = doc["images"][0]["id"]
        return doc["images"][0]["id"]

    def dup_ann(doc: Dict[str, Any]) -> int:
        doc["annotations"][1]["id"] = doc["annotations"][0]["id"]
        return doc["annotations"][0]["id"]

    def image(doc: Dict[str, Any], **changes: Any) -> int:
        doc["images"][2].update(changes)
        return doc["images"][2]["id"]

    return {
        "polygon NaN": lambda d: set_poly(d, [1.0, 2.0, float("nan"), 4.0, 5.0, 6.0]),
        "polygon string": lambda d: set_poly(d, [1.0, 2.0, "x", 4.0, 5.0, 6.0]),
        "polygon 2 points": lambda d: set_poly(d, [1.0, 2.0, 3.0, 4.0]),
        "polygon odd": lambda d: set_poly(d, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]),
        "segmentation number": lambda d: ann(d, 0, segmentation=5),
        "segmentation flat list": lambda d: ann(d, poly_ann(d), segmentation=[1.0, 2.0, 9.0, 2.0, 5.0, 8.0]),
        "polygon far outside": lambda d: set_poly(d, [1.0, 2.0, 1e9, 4.0, 5.0, 6.0]),  # segfaulted
        "image file_name NUL": lambda d: image(d, file_name="sub\x00dir/a.jpg"),
        "segmentation empty": lambda d: ann(d, poly_ann(d), segmentation=[]),
        "bbox NaN": lambda d: ann(d, 0, bbox=[1.0, float("nan"), 3.0, 4.0]),
        "bbox short": lambda d: ann(d, 0, bbox=[1.0, 2.0, 3.0]),
        "bbox zero size": lambda d: ann(d, 0, bbox=[1.0, 2.0, 0.0, 4.0]),
        "bbox outside": lambda d: ann(d, 0, bbox=[50.0, 2.0, 30.0, 4.0]),
        "bbox string": lambda d: ann(d, 0, bbox=["1", 2, 3, 4]),
        "area missing": lambda d: ann(d, 0, area=None),
        "iscrowd 2": lambda d: ann(d, 0, iscrowd=2),
        "unknown image": lambda d: ann(d, 0, image_id=12345),
        "unknown category": lambda d: ann(d, 0, category_id=77),
        "category string": lambda d: ann(d, 0, category_id="1"),
        "annotation id float": lambda d: ann(d, 0, id=1.5) and "annotations[0]",
        "duplicate image id": dup_image,
        "duplicate annotation id": dup_ann,
        "image missing": lambda d: image(d, file_name="nope.jpg"),
        "image dotdot": lambda d: image(d, file_name="../ds/images/" + d["images"][2]["file_name"]),
        "image absolute": lambda d: image(d, file_name="/etc/passwd"),
        "image width 0": lambda d: image(d, width=0),
        "image height string": lambda d: image(d, height="64"),
        "rle size": lambda d: set_rle(d, size=[32, 64]),
        "rle counts sum": lambda d: set_rle(d, counts=[10, 20, 30]),
        "rle counts garbage": lambda d: set_rle(d, counts="\x01\x02"),
        "rle counts negative": lambda d: set_rle(d, counts=[-1, 4097]),
    }


@pytest.mark.parametrize("name", sorted(_defects()))
def test_each_defect_fails_with_file_and_id(name: str, dataset: Path, tmp_path: Path) -> None:
    doc = load(dataset, "train")
    expected_id = _defects()[name](doc)
    save(dataset, "train", doc)
    report = failing_report(make_cfg(dataset, tmp_path / "out"))
    hits = [e for e in report["errors"]
            if e["file"] == "annotations/instance_train.json" and e["id"] == expected_id]
    assert hits, (name, report["errors"])
    assert all(e["message"] for e in hits)


def test_all_defects_at_once_are_all_listed(dataset: Path, tmp_path: Path) -> None:
    doc = load(dataset, "train")
    for k in range(8):  # eight independent annotation defects on eight annotations
        doc["annotations"][k]["bbox"] = [1.0, float("inf"), 3.0, 4.0] if k % 2 else [1.0, 2.0, -3.0, 4.0]
    doc["images"][0]["file_name"] = "../escape.jpg"
    save(dataset, "train", doc)
    report = failing_report(make_cfg(dataset, tmp_path / "out"))
    ids = {e["id"] for e in report["errors"]}
    assert {a["id"] for a in doc["annotations"][:8]} <= ids
    assert doc["images"][0]["id"] in ids
    assert report["num_errors"] == 9


@pytest.mark.parametrize("content, expect", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a COCO object"),
    ("null", "only `null`"),
    ('{"images": [], "categories": []}', "'annotations' is missing"),
    ('{"images": 3, "annotations": [], "categories": []}', "'images' is 3"),
    (b"\xff\xfe\x00garbage", "JSON"),
])
def test_malformed_file_is_reported(content: Any, expect: str, dataset: Path, tmp_path: Path) -> None:
    path = dataset / "annotations" / "instance_val.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    report = failing_report(make_cfg(dataset, tmp_path / "out"))
    assert any(e["file"] == "annotations/instance_val.json" and expect in e["message"]
               for e in report["errors"]), report["errors"]
    assert report["attributes"]["train_samples"] == 6  # the other split is still checked and counted


def test_non_object_entries_are_reported(dataset: Path, tmp_path: Path) -> None:
    doc = load(dataset, "train")
    doc["images"].append("img.jpg")
    doc["annotations"].append(None)
    doc["categories"].append(7)
    save(dataset, "train", doc)
    report = failing_report(make_cfg(dataset, tmp_path / "out"))
    ids = {e["id"] for e in report["errors"]}
    assert {f"images[{len(doc['images']) - 1}]", f"annotations[{len(doc['annotations']) - 1}]",
            f"categories[{len(doc['categories']) - 1}]"} <= ids


def test_missing_files_and_folders(dataset: Path, tmp_path: Path) -> None:
    (dataset / "annotations" / "instance_val.json").unlink()
    report = failing_report(make_cfg(dataset, tmp_path / "out"))
    assert any(e["file"] == "annotations/instance_val.json" and "not found" in e["message"]
               for e in report["errors"])
    report = failing_report(make_cfg(tmp_path / "nowhere", tmp_path / "out"))
    assert "dataset folder not found" in report["errors"][0]["message"]
    assert report["attributes"]["train_samples"] == 0 and report["analysis"]["histogram"] is None


def test_images_folder_missing_reported_once(dataset: Path, tmp_path: Path) -> None:
    (dataset / "images").rename(dataset / "pictures")
    report = failing_report(make_cfg(dataset, tmp_path / "out"))
    assert [e["file"] for e in report["errors"]] == ["images"]


def test_categories_must_agree_and_splits_be_nonempty(dataset: Path, tmp_path: Path) -> None:
    val = load(dataset, "val")
    val["categories"][1]["name"] = "square"
    val["images"], val["annotations"] = [], []
    save(dataset, "val", val)
    report = failing_report(make_cfg(dataset, tmp_path / "out"))
    messages = [e["message"] for e in report["errors"] if e["file"] == "annotations/instance_val.json"]
    assert any("rectangle" in m and "square" in m for m in messages)
    assert any("no images" in m for m in messages)
    assert report["attributes"]["num_classes"] == 3  # union of both files' category ids


def test_annotations_without_any_image(dataset: Path, tmp_path: Path) -> None:
    doc = load(dataset, "train")
    doc["images"] = []
    save(dataset, "train", doc)
    report = failing_report(make_cfg(dataset, tmp_path / "out"))
    messages = [e["message"] for e in report["errors"] if e["file"] == "annotations/instance_train.json"]
    assert any("no images" in m for m in messages) and any("is not in 'images'" in m for m in messages)


def test_sampled_images_are_read_and_sizes_compared(dataset: Path, tmp_path: Path) -> None:
    doc = load(dataset, "train")
    (dataset / "images" / doc["images"][0]["file_name"]).write_bytes(b"")  # unreadable
    doc["images"][1]["width"] = 65  # does not match the file (and boxes still fit)
    save(dataset, "train", doc)
    report = failing_report(make_cfg(dataset, tmp_path / "out"))
    by_id = {e["id"]: e["message"] for e in report["errors"]}
    assert "cannot be decoded" in by_id[doc["images"][0]["id"]]
    assert "64x64" in by_id[doc["images"][1]["id"]] and "65x64" in by_id[doc["images"][1]["id"]]
    assert len(report["attributes"]["train_sample_paths"]) == 4


def test_repeated_problems_are_capped_but_counted(dataset: Path, tmp_path: Path) -> None:
    doc = load(dataset, "train")
    template = doc["annotations"][0]
    doc["annotations"] += [dict(template, id=10_000 + k, image_id=-5) for k in range(100)]
    save(dataset, "train", doc)
    report = failing_report(make_cfg(dataset, tmp_path / "out"))
    unknown = [e for e in report["errors"] if "image_id -5" in e["message"]]
    assert len(unknown) == 20
    assert report["num_errors"] == 100
    assert any(e["message"].startswith("... and 80 more") for e in report["errors"])


def test_config_errors_stop_before_any_change(dataset: Path, tmp_path: Path) -> None:
    before = load(dataset, "train")
    with pytest.raises(ConfigError, match="src_dataset_type"):
        run(make_cfg(dataset, tmp_path / "out", CheckDataset__convert__enable=True,
                     CheckDataset__convert__src_dataset_type="VOC"))
    assert load(dataset, "train") == before


def test_compressed_rle_total_matches_pycocotools() -> None:
    rng = np.random.default_rng(0)
    for h, w in ((1, 1), (7, 13), (64, 48), (300, 200)):
        for density in (0.0, 0.3, 1.0):
            mask = np.asfortranarray((rng.random((h, w)) < density).astype(np.uint8))
            counts = mask_utils.encode(mask)["counts"].decode()
            assert compressed_rle_total(counts) == h * w
    assert compressed_rle_total("") is None
    assert compressed_rle_total("\x7f") is None
    assert compressed_rle_total("a") is None  # 'a' = 49 | continuation bit with nothing after


def test_validate_split_on_its_own(dataset: Path) -> None:
    log = ProblemLog()
    data = validate_split(dataset, "train", log)
    assert (data.num_images, log.num_errors) == (6, 0)
    assert data.ann_ok.all() and (data.ann_image_index >= 0).all()


def test_check_dataset_does_not_import_paddle() -> None:
    code = "import sys, dataset_tools.check; sys.exit(1 if 'paddle' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_failure_message_points_to_the_report(dataset: Path, tmp_path: Path) -> None:
    doc = load(dataset, "train")
    doc["annotations"][0]["category_id"] = 77
    save(dataset, "train", doc)
    with pytest.raises(DatasetCheckFailed, match=r"1 error\(s\).*category_id 77.*check_dataset_result.json"):
        run(make_cfg(dataset, tmp_path / "out"))


def test_progress_bar_only_for_long_scans_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataset_tools.report import progress

    items = list(range(5000))
    assert progress(items, "scan") is items  # stderr is not a terminal under pytest
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert progress(items[:10], "scan") == items[:10]
    bar = progress(items, "scan")
    assert bar is not items and list(bar) == items


def test_image_size_follows_exif_rotation_like_the_loader(tmp_path: Path) -> None:
    from PIL import Image

    from dataset_tools.visualize import image_size, read_image

    img = Image.new("RGB", (40, 20), (200, 10, 10))  # stored 40 wide, 20 high
    exif = img.getexif()
    exif[0x0112] = 6  # shown rotated by 90 degrees
    img.save(tmp_path / "rot.jpg", exif=exif)
    decoded = read_image(tmp_path / "rot.jpg")
    assert decoded is not None and decoded.shape[:2] == (40, 20)
    assert image_size(tmp_path / "rot.jpg") == (40, 20)
    assert image_size(tmp_path / "missing.jpg") is None
