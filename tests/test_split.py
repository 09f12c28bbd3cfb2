"""Re-split: seeded, nothing lost, ids unique, originals kept in backups a second split never overwrites."""
import json
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List

import pytest

from dataset_tools.check import run
from dataset_tools.report import ProblemLog
from dataset_tools.split import backup_file, check_percents, split_dataset
from dataset_tools.synthetic import make_coco_dataset
from engine.errors import ConfigError, DatasetCheckFailed
from test_check_dataset import load, make_cfg, save


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_coco_dataset(tmp_path / "ds", num_train=14, num_val=6, size=(48, 48), crowd_every=5, seed=3)


def content(root: Path) -> Dict[str, Counter]:
    """Images and annotations of both files, by content (ids left out, image ids replaced by file names)."""
    images: Counter = Counter()
    anns: Counter = Counter()
    for split in ("train", "val"):
        doc = load(root, split)
        names = {im["id"]: im["file_name"] for im in doc["images"]}
        images.update(json.dumps({k: v for k, v in im.items() if k != "id"}, sort_keys=True)
                      for im in doc["images"])
        anns.update(json.dumps({**{k: v for k, v in a.items() if k not in ("id", "image_id")},
                                "image": names[a["image_id"]]}, sort_keys=True) for a in doc["annotations"])
    return {"images": images, "annotations": anns}


def ids(root: Path, key: str) -> List[int]:
    return [e["id"] for split in ("train", "val") for e in load(root, split)[key]]


def test_split_70_30_then_50_50_loses_nothing_and_keeps_originals(dataset: Path, tmp_path: Path) -> None:
    ann_dir = dataset / "annotations"
    original = {s: (ann_dir / f"instance_{s}.json").read_bytes() for s in ("train", "val")}
    before = content(dataset)

    report = run(make_cfg(dataset, tmp_path / "out", CheckDataset__split__enable=True,
                          CheckDataset__split__train_percent=70, CheckDataset__split__val_percent=30))
    assert report["check_pass"] is True
    assert (report["attributes"]["train_samples"], report["attributes"]["val_samples"]) == (14, 6)
    assert report["split"]["seed"] == 42 and report["split"]["backups"] == [
        "annotations/instance_train.json.bak", "annotations/instance_val.json.bak"]
    after_70 = {s: (ann_dir / f"instance_{s}.json").read_bytes() for s in ("train", "val")}

    report = run(make_cfg(dataset, tmp_path / "out", CheckDataset__split__enable=True,
                          CheckDataset__split__train_percent=50, CheckDataset__split__val_percent=50))
    assert (report["attributes"]["train_samples"], report["attributes"]["val_samples"]) == (10, 10)
    assert report["split"]["backups"] == ["annotations/instance_train.json.bak1",
                                          "annotations/instance_val.json.bak1"]

    assert content(dataset) == before  # no image or annotation lost or duplicated
    for key in ("images", "annotations"):
        assert len(set(ids(dataset, key))) == len(ids(dataset, key))
    for s in ("train", "val"):  # originals, and the 70/30 files, recoverable byte for byte
        assert (ann_dir / f"instance_{s}.json.bak").read_bytes() == original[s]
        assert (ann_dir / f"instance_{s}.json.bak1").read_bytes() == after_70[s]
    assert load(dataset, "train")["categories"] == json.loads(original["train"])["categories"]


def test_same_seed_same_split_other_seed_other_split(tmp_path: Path) -> None:
    def train_files(seed: int, name: str) -> List[str]:
        root = make_coco_dataset(tmp_path / name, num_train=14, num_val=6, size=(32, 32), seed=3)
        assert split_dataset(root, 60, 40, seed, ProblemLog()) is not None
        return sorted(im["file_name"] for im in load(root, "train")["images"])

    assert train_files(7, "a") == train_files(7, "b")
    assert train_files(7, "a2") != train_files(8, "c")


@pytest.mark.parametrize("n, train_percent, expected_train",
                         [(5, 50, 2), (5, 70, 4), (2, 99, 1), (2, 1, 1), (3, 50, 2)])
def test_val_is_the_rest_and_neither_split_is_empty(tmp_path: Path, n: int, train_percent: float,
                                                    expected_train: int) -> None:
    root = make_coco_dataset(tmp_path / "ds", num_train=n, num_val=0, size=(32, 32), seed=1)
    (root / "annotations" / "instance_val.json").unlink()  # a train file alone can be split too
    info = split_dataset(root, train_percent, 100 - train_percent, 0, ProblemLog())
    assert info is not None
    assert (info["train_images"], info["val_images"]) == (expected_train, n - expected_train)


def test_colliding_ids_are_made_unique(dataset: Path) -> None:
    val = load(dataset, "val")
    new_id = {im["id"]: k + 1 for k, im in enumerate(val["images"])}  # val reuses train's ids
    for im in val["images"]:
        im["id"] = new_id[im["id"]]
    for j, a in enumerate(val["annotations"]):
        a["image_id"], a["id"] = new_id[a["image_id"]], j + 1
    save(dataset, "val", val)
    before = content(dataset)
    assert split_dataset(dataset, 50, 50, 1, ProblemLog()) is not None
    assert content(dataset) == before
    for key in ("images", "annotations"):
        assert len(set(ids(dataset, key))) == len(ids(dataset, key))


@pytest.mark.parametrize("train, val, match", [
    (None, None, "set both"), (80, None, "set both"), (0, 100, "between 0 and 100"),
    (100, 0, "between 0 and 100"),
    (60, 30, "not 100"), (-10, 110, "between 0 and 100"), ("80", 20, "set both"),
])
def test_bad_percents_are_config_errors(train: Any, val: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_percents(train, val)


def test_bad_percents_change_nothing(dataset: Path, tmp_path: Path) -> None:
    before = (dataset / "annotations" / "instance_train.json").read_bytes()
    with pytest.raises(ConfigError):
        run(make_cfg(dataset, tmp_path / "out", CheckDataset__split__enable=True,
                     CheckDataset__split__train_percent=60, CheckDataset__split__val_percent=30))
    assert (dataset / "annotations" / "instance_train.json").read_bytes() == before
    assert not list((dataset / "annotations").glob("*.bak*"))


def test_split_refuses_input_that_would_lose_annotations(dataset: Path, tmp_path: Path) -> None:
    val = load(dataset, "val")
    val["annotations"][0]["image_id"] = 10_000  # an orphan: no split could place it
    save(dataset, "val", val)
    before = {p.name: p.read_bytes() for p in (dataset / "annotations").iterdir()}
    with pytest.raises(DatasetCheckFailed) as info:
        run(make_cfg(dataset, tmp_path / "out", CheckDataset__split__enable=True,
                     CheckDataset__split__train_percent=50, CheckDataset__split__val_percent=50))
    errors = info.value.report["errors"]
    assert errors[0]["file"] == "annotations/instance_val.json"
    assert errors[0]["id"] == val["annotations"][0]["id"]
    assert {p.name: p.read_bytes() for p in (dataset / "annotations").iterdir()} == before


def test_split_refuses_conflicting_category_names(dataset: Path) -> None:
    val = load(dataset, "val")
    val["categories"][0]["name"] = "circle"
    save(dataset, "val", val)
    log = ProblemLog()
    assert split_dataset(dataset, 50, 50, 0, log) is None
    assert "circle" in log.entries("error")[0]["message"]


@pytest.mark.parametrize("categories", [True, [{"id": [1], "name": "x"}], [{"id": "1", "name": "x"}], ["x"]])
def test_split_refuses_unusable_categories(dataset: Path, categories: Any) -> None:
    train = load(dataset, "train")
    train["categories"] = categories  # [1] as an id once crashed the merge (unhashable)
    save(dataset, "train", train)
    before = {p.name: p.read_bytes() for p in (dataset / "annotations").iterdir()}
    log = ProblemLog()
    assert split_dataset(dataset, 50, 50, 0, log) is None
    assert log.entries("error")[0]["file"] == "annotations/instance_train.json"
    assert "integer ids" in log.entries("error")[0]["message"]
    assert {p.name: p.read_bytes() for p in (dataset / "annotations").iterdir()} == before


def test_backup_names_never_clobber(tmp_path: Path) -> None:
    path = tmp_path / "instance_train.json"
    made = []
    for k in range(3):
        path.write_text(str(k))
        made.append(backup_file(path))
    assert [p.name for p in made] == ["instance_train.json.bak", "instance_train.json.bak1",
                                      "instance_train.json.bak2"]
    assert [p.read_text() for p in made] == ["0", "1", "2"]
    assert backup_file(tmp_path / "absent.json") is None
