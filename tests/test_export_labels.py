"""Class names of an exported / predicting model come from the training run that made its weights
(label_dict.txt / config.yaml next to the weights or one folder up), never from whatever dataset the
export command happens to point at; a count that differs from num_classes is a clear error."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from dataset_tools.synthetic import make_coco_dataset
from engine.config.schema import InstSegConfig
from engine.errors import ConfigError
from engine.prediction.labels import model_labels

ROOT = Path(__file__).resolve().parents[1]
CUSTOM = ["zebra", "ant", "bee"]  # by category id 1, 2, 3: not the demo's names, not alphabetical


def run_cli(*overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "main.py")] + [a for o in overrides for a in ("-o", o)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def run_in_process(*overrides: str) -> int:
    """main.py's path without a new process: config from demo.yaml plus overrides, then the mode."""
    from engine.config.load import load_config
    from engine.modes import run_mode

    return run_mode(load_config(None, list(overrides)), argv=[])


def custom_dataset(root: Path) -> Path:
    data = make_coco_dataset(root, num_train=2, num_val=1, size=(64, 64), seed=11)
    for split in ("train", "val"):
        path = Path(data) / "annotations" / f"instance_{split}.json"
        coco = json.loads(path.read_text())
        for cat in coco["categories"]:
            cat["name"] = CUSTOM[cat["id"] - 1]
        path.write_text(json.dumps(coco))
    return Path(data)


def test_export_of_a_custom_trained_model_carries_its_class_names(tmp_path):
    """A tiny real Mask R-CNN trained (one iteration) through main.py on classes zebra/ant/bee, exported
    without Global.dataset_dir (which then means the demo data: ellipse/rectangle/triangle)."""
    data, run = custom_dataset(tmp_path / "data"), tmp_path / "run"
    small = ["EvalReader.target_size=[64, 64]", "TrainReader.short_sizes=[64]", "TrainReader.max_size=64"]
    done = run_cli("Global.mode=train", f"Global.dataset_dir={data}", f"Global.output={run}",
                   "Train.epochs_iters=1", "Train.batch_size=2", "Train.export_best=false", *small)
    assert done.returncode == 0, done.stderr[-3000:]
    weights = run / "best_model" / "best_model.pdparams"
    assert weights.is_file()
    assert (run / "label_dict.txt").read_text().split("\n")[:3] == ["0 zebra", "1 ant", "2 bee"]

    # weights named explicitly, output elsewhere: the names come from the run next to the weights
    code = run_in_process("Global.mode=export", f"Export.weight_path={weights}",
                          f"Global.output={tmp_path / 'elsewhere'}", *small)
    assert code == 0, (tmp_path / "elsewhere" / "export_result.json").read_text()
    info = yaml.safe_load((tmp_path / "elsewhere" / "inference" / "inference.yml").read_text())
    assert info["label_list"] == CUSTOM

    # a label file that disagrees with num_classes is an error naming it, and nothing is exported
    (run / "label_dict.txt").write_text("0 zebra\n1 ant\n")
    assert run_in_process("Global.mode=export", f"Global.output={run}", *small) == 2
    result = json.loads((run / "export_result.json").read_text())
    assert result["err_type"] == "ConfigError" and str(run / "label_dict.txt") in result["err_msg"]
    assert "names 2 classes but Train.num_classes=3" in result["err_msg"]
    assert not (run / "inference").exists()


def _cfg(tmp: Path, num_classes: int = 3):
    cfg = OmegaConf.structured(InstSegConfig)
    cfg.Global.dataset_dir, cfg.Global.output = str(tmp / "dataset"), str(tmp / "output")
    cfg.Train.num_classes = num_classes
    return cfg


def test_label_sources_in_priority_order(tmp_path):
    cfg = _cfg(tmp_path)
    assert model_labels(cfg) == ["class_0", "class_1", "class_2"]  # nothing to go by
    custom_dataset(tmp_path / "dataset")
    assert model_labels(cfg) == CUSTOM  # the configured dataset
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "label_dict.txt").write_text("0 a\n1 b\n2 c\n")
    assert model_labels(cfg) == ["a", "b", "c"]  # the run in Global.output beats the dataset
    run = tmp_path / "trained"
    (run / "best_model").mkdir(parents=True)
    other = custom_dataset(tmp_path / "other")
    (run / "config.yaml").write_text(yaml.safe_dump({"Global": {"dataset_dir": str(other)}}))
    weights = str(run / "best_model" / "best_model.pdparams")
    assert model_labels(cfg, weights) == CUSTOM  # the weights' run config (its dataset), one folder up
    (run / "label_dict.txt").write_text("0 p\n1 q\n2 r\n")
    assert model_labels(cfg, weights) == ["p", "q", "r"]  # the weights' label file beats everything


def test_count_mismatch(tmp_path, caplog):
    """A training run's label file must fit num_classes; the configured dataset may belong to another
    model (the demo data by default), so it only lends names when the counts agree."""
    custom_dataset(tmp_path / "dataset")
    cfg = _cfg(tmp_path, num_classes=5)
    assert model_labels(cfg) == [f"class_{k}" for k in range(5)]
    assert "instance_val.json names 3 classes, not Train.num_classes=5" in caplog.text
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "label_dict.txt").write_text("0 a\n1 b\n")
    with pytest.raises(ConfigError, match=r"output/label_dict.txt names 2 classes but Train.num_classes=5"):
        model_labels(cfg)
