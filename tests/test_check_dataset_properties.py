"""Property tests: check_dataset, LabelMe conversion and re-splitting never crash on malformed input.

Hypothesis mutates valid COCO and LabelMe datasets (tests/json_mutations.py: wrong types at every level,
missing and extra keys, empty lists, duplicate ids, damaged files) and runs check_dataset in-process
through `engine.modes.run_mode`, as `main.py` does. Every example must end in exit code 0 with
`check_pass: true` or exit code 1 with `check_pass: false`, a result JSON whose errors name a file and say
what to do, and no traceback; a run whose convert / split step failed leaves every file of the dataset as
it was, and no run ever loses an original (a replaced annotation file survives as a backup). A dataset
that passes must load in the training data loader, sample by sample: a pass is a promise.

CI runs a fixed number of examples with a fixed seed (`derandomize=True`). A larger run:

    INSTSEG_HYPOTHESIS_EXAMPLES=1000 .venv/bin/python -m pytest -q tests/test_check_dataset_properties.py \
        -p no:cacheprovider
"""
import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple
from unittest import mock

import numpy as np
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from dataset_tools import analyse
from dataset_tools.synthetic import make_coco_dataset
from engine.data.coco import CocoInstances
from engine.modes import run_mode
from json_mutations import encode_file, mutate_document
from test_check_dataset import make_cfg
from test_labelme import FILES, write_labelme

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("INSTSEG_HYPOTHESIS_EXAMPLES", "0"))


def examples(ci_count: int) -> Any:
    """Hypothesis settings: `ci_count` examples (or INSTSEG_HYPOTHESIS_EXAMPLES), seeded, no deadline."""
    return settings(max_examples=EXAMPLES or ci_count, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ----------------------------------------------------------------------------------------------- fixtures
_TEMPLATES: Dict[str, Path] = {}
_TEMPLATE_DIR = tempfile.TemporaryDirectory(prefix="instseg_props_")


def template(kind: str) -> Path:
    """A valid dataset made once per session: "coco" (3 train / 2 val images) or "labelme"."""
    if kind not in _TEMPLATES:
        root = Path(_TEMPLATE_DIR.name) / kind
        if kind == "coco":
            make_coco_dataset(root, num_train=3, num_val=2, size=(48, 48), crowd_every=3, seed=5)
        else:
            write_labelme(root)
        _TEMPLATES[kind] = root
    return _TEMPLATES[kind]


@contextlib.contextmanager
def workspace(kind: str) -> Iterator[Tuple[Path, Path]]:
    """(dataset copy, output folder), fresh for each example; always the same paths, so one config serves
    every example (building an InstSegConfig costs more than a small check)."""
    case = Path(_TEMPLATE_DIR.name) / "case"
    shutil.rmtree(case, ignore_errors=True)
    root = case / "data set"
    shutil.copytree(template(kind), root)
    yield root, case / "out"


def digest(root: Path) -> Dict[str, str]:
    """relative path -> sha256 of every file under `root`."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


_CONFIGS: Dict[Tuple[Any, ...], Any] = {}


def histogram_inputs(names: List[str], counts: Dict[str, np.ndarray], path: Path) -> None:
    """Stand-in for analyse.save_histogram (matplotlib takes most of a tiny check's time); checks its inputs.
    The real drawing meets odd class names in test_histogram_draws_any_class_name."""
    assert all(type(n) is str for n in names)
    assert all(v.shape == (len(names),) and v.dtype.kind == "i" for v in counts.values())
    path.write_bytes(b"\x89PNG stand-in")


def run_check(root: Path, out: Path, **overrides: Any) -> Tuple[int, Dict[str, Any]]:
    """check_dataset through the mode runner; (exit code, result JSON). Fails on any traceback."""
    key = (str(root), str(out), tuple(sorted(overrides.items())))
    if key not in _CONFIGS:
        _CONFIGS[key] = make_cfg(root, out, Global__mode="check_dataset", CheckDataset__sample_num=2,
                                 **overrides)
    cfg = _CONFIGS[key]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), mock.patch.object(analyse, "save_histogram", histogram_inputs):
        code = run_mode(cfg, argv=[])
    assert "Traceback" not in stderr.getvalue(), stderr.getvalue()
    result = json.loads((out / "check_dataset_result.json").read_text(encoding="utf-8"))
    return code, result


# --------------------------------------------------------------------------------------------- properties
def assert_verdict(code: int, result: Dict[str, Any], root: Path) -> None:
    """Exit code, result JSON and problem entries agree, and each error names a file and says what to do."""
    assert code in (0, 1), result
    event(f"exit code {code}")
    if code == 0:
        assert result["done_flag"] is True and result["check_pass"] is True
        return
    assert result["err_type"] == "DatasetCheckFailed", result  # not an exception that escaped a check
    assert result["done_flag"] is False and result["check_pass"] is False and result["num_errors"] >= 1
    for entry in result["errors"]:
        assert isinstance(entry["file"], str) and entry["file"], entry
        assert isinstance(entry["message"], str) and len(entry["message"]) > 10, entry
        assert isinstance(entry["id"], (int, str, type(None))), entry
    assert "check_dataset_result.json" in result["err_msg"]


def assert_originals_kept(before: Dict[str, str], root: Path, untouched: bool) -> None:
    """Every file that was there is unchanged, or (when the run replaced it) kept byte for byte in a backup;
    with `untouched` the whole tree is exactly as before."""
    after = digest(root)
    if untouched:
        assert after == before
        return
    for rel, sha in before.items():
        if after.get(rel) != sha:
            assert rel.startswith("annotations/instance_"), rel  # only our outputs are ever replaced
            assert any(k.startswith(rel + ".bak") and v == sha for k, v in after.items()), rel


def assert_loadable(root: Path) -> None:
    """A passing dataset loads in the training data loader, every sample of both splits."""
    for split in ("train", "val"):
        data = CocoInstances(str(root), split)
        for k in range(len(data)):
            sample = data.load(k)
            assert sample["gt_mask"].shape[1:] == sample["image"].shape[:2]


# ------------------------------------------------------------------------------------------------- tests
def _mutate_coco(data: st.DataObject, root: Path) -> None:
    split = data.draw(st.sampled_from(["train", "val"]), label="split")
    path = root / "annotations" / f"instance_{split}.json"
    doc = json.loads(path.read_text())
    path.write_bytes(encode_file(data, mutate_document(data, doc)))


@examples(60)
@given(data=st.data())
def test_check_dataset_on_mutated_coco_never_crashes(data: st.DataObject) -> None:
    with workspace("coco") as (root, out):
        _mutate_coco(data, root)
        before = digest(root)
        code, result = run_check(root, out)
        assert_verdict(code, result, root)
        assert_originals_kept(before, root, untouched=True)  # checking alone never writes into the dataset
        if code == 0:
            assert_loadable(root)


@examples(30)
@given(data=st.data())
def test_resplit_of_mutated_coco_never_crashes_or_loses_files(data: st.DataObject) -> None:
    with workspace("coco") as (root, out):
        _mutate_coco(data, root)
        before = digest(root)
        code, result = run_check(root, out, CheckDataset__split__enable=True,
                                 CheckDataset__split__train_percent=60, CheckDataset__split__val_percent=40)
        assert_verdict(code, result, root)
        assert_originals_kept(before, root, untouched=result.get("split") is None)
        if code == 0:
            assert_loadable(root)


LIST_FILES = st.sampled_from([
    b"", b"\n\n", b"annotations/missing.json\n", b"annotations/a.json\nannotations/a.json\n",
    b"/etc/passwd\n",
    b"annotations\n", b"annotations/a.json\x00\n", b"\xff\xfe\xfd\n", b"\xef\xbb\xbfannotations/a.json\n",
    "annotations/\u00e4 b.json\n".encode(), b"../outside.json\n", b"images/a.png\n",
])


def _mutate_labelme(data: st.DataObject, root: Path) -> None:
    target = data.draw(st.sampled_from(sorted(FILES) + ["train_anno_list.txt", "val_anno_list.txt",
                                                        "label.txt"]), label="file")
    path = root / target
    if target.endswith(".json"):
        path.write_bytes(encode_file(data, mutate_document(data, json.loads(path.read_text()))))
    elif target == "label.txt":
        path.write_bytes(data.draw(st.sampled_from([b"", b"dog\ncat\n", b"\xff\xfe", b"dog\ndog\ncat\nbird\n",
                                                    "\u00e4\nbird\ncat\ndog\n".encode()]), label="labels"))
    else:
        path.write_bytes(data.draw(LIST_FILES, label="list file"))


@examples(40)
@given(data=st.data())
def test_labelme_conversion_of_mutated_files_never_crashes_or_changes_them(data: st.DataObject) -> None:
    with workspace("labelme") as (root, out):
        _mutate_labelme(data, root)
        before = digest(root)
        code, result = run_check(root, out, CheckDataset__convert__enable=True,
                                 CheckDataset__convert__src_dataset_type="LabelMe")
        assert_verdict(code, result, root)
        assert_originals_kept(before, root, untouched=result.get("convert") is None)
        if code == 0:
            assert_loadable(root)


FILE_NAME_CHARS = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\")


@examples(15)
@given(stem=st.text(FILE_NAME_CHARS, min_size=1, max_size=20).filter(lambda s: s.strip(". ") != ""),
       folder=st.sampled_from(["", "sub dir/", "\u00fcn\u00efc\u00f6d\u00e9/"]))
def test_unicode_and_space_file_names_pass(stem: str, folder: str) -> None:
    with workspace("coco") as (root, out):
        path = root / "annotations" / "instance_train.json"
        doc = json.loads(path.read_text())
        image = doc["images"][0]
        new_name = f"{folder}{stem}.jpg"
        (root / "images" / new_name).parent.mkdir(parents=True, exist_ok=True)
        (root / "images" / image["file_name"]).rename(root / "images" / new_name)
        image["file_name"] = new_name
        path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        code, result = run_check(root, out)
        assert (code, result["check_pass"]) == (0, True), result["errors"]
        assert len(result["attributes"]["train_sample_paths"]) == 2


@examples(10)
@given(names=st.lists(st.text(st.one_of(st.sampled_from("$\\^_{}"), st.characters()), min_size=1, max_size=12)
                      .filter(str.strip), min_size=1, max_size=4, unique=True))
@example(names=["$^$", "$\\frac$", "\u6f22\u5b57\x8c", "\ud800"])  # mathtext, missing glyphs, surrogate
def test_histogram_draws_any_class_name(names: List[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("error")  # and quietly
        path = Path(tmp) / "h.png"
        analyse.save_histogram(names, {"train": np.arange(len(names)), "val": np.ones(len(names), int)}, path)
        assert path.read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------------- through main.py
def _main(root: Path, out: Path, *overrides: str) -> Tuple[subprocess.CompletedProcess, Dict[str, Any]]:
    cmd = [sys.executable, str(REPO / "main.py"), "-o", "Global.mode=check_dataset",
           "-o", f"Global.dataset_dir={root}", "-o", f"Global.output={out}",
           "-o", "CheckDataset.sample_num=1", "-o", "Train.num_classes=3"]
    for item in overrides:
        cmd += ["-o", item]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, json.loads((out / "check_dataset_result.json").read_text(encoding="utf-8"))


def test_flat_polygon_list_fails_cleanly_through_main(tmp_path: Path) -> None:
    root = make_coco_dataset(tmp_path / "ds", num_train=3, num_val=2, size=(48, 48), seed=2)
    path = root / "annotations" / "instance_train.json"
    doc = json.loads(path.read_text())
    ann = doc["annotations"][1]
    ann["segmentation"] = ann["segmentation"][0]  # [x1, y1, ...] instead of [[x1, y1, ...]]
    path.write_text(json.dumps(doc))
    proc, result = _main(root, tmp_path / "out")
    assert proc.returncode == 1 and result["check_pass"] is False and result["done_flag"] is False
    hits = [e for e in result["errors"] if e["id"] == ann["id"]]
    assert hits and hits[0]["file"] == "annotations/instance_train.json", result["errors"]
    assert "wrap it as [[x1, y1" in hits[0]["message"]
    assert "annotations/instance_train.json" in proc.stderr and "wrap it as" in proc.stderr


def test_undecodable_files_fail_cleanly_through_main(tmp_path: Path) -> None:
    root = make_coco_dataset(tmp_path / "ds", num_train=3, num_val=2, size=(48, 48), seed=2)
    (root / "annotations" / "instance_val.json").write_bytes(b'{"images": [\xff\xfe')
    proc, result = _main(root, tmp_path / "out")
    assert proc.returncode == 1 and result["check_pass"] is False
    assert [e["file"] for e in result["errors"]] == ["annotations/instance_val.json"]
    labelme = write_labelme(tmp_path / "lm")
    (labelme / "label.txt").write_bytes(b"dog\n\xff\xfecat\n")
    before = digest(labelme)
    proc, result = _main(labelme, tmp_path / "out2", "CheckDataset.convert.enable=true",
                         "CheckDataset.convert.src_dataset_type=LabelMe")
    assert proc.returncode == 1 and result["convert"] is None
    assert any(e["file"] == "label.txt" and "UTF-8" in e["message"] for e in result["errors"]), \
        result["errors"]
    assert digest(labelme) == before
