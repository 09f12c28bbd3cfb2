"""Trainer acceptance: outputs and train_result.json, best model, LR in training, exact resume after SIGKILL,
a kill while a checkpoint is written, SIGTERM. Runs on CPU with the stand-ins of trainer_standins.py."""
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import paddle
import pytest
from omegaconf import OmegaConf

import engine.training.checkpoint as ckpt
from engine.training.curves import plot_curves
from engine.errors import WeightsError
from engine.training.metrics_log import read_records
from engine.training.optim import build_schedule
from engine.training.trainer import train
from trainer_standins import NUM_TRAIN, hooks, make_cfg

DRIVER = Path(__file__).with_name("trainer_standins.py")
REPO = DRIVER.parents[1]


def load(path: Path) -> Dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in paddle.load(str(path)).items()}


def max_diff(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k].astype("float64") - b[k]).max()) for k in a)


def train_records(out: Path) -> List[Dict[str, Any]]:
    return [r for r in read_records(out / "metrics.jsonl") if r["type"] == "train"]


# ---------------------------------------------------------------------------------------------- in-process
def test_outputs_train_result_and_pruning(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = make_cfg(out, ["Train.keep_checkpoints=2", "Train.ema_decay=0.9"])
    result = train(cfg, hooks())

    assert json.loads((out / "train_result.json").read_text()) == json.loads(json.dumps(result))
    for key, value in {"model_name": "MaskRCNN-ResNet50-FPN", "label_dict": "label_dict.txt",
                       "train_log": "train.log", "config": "config.yaml", "visualdl_log": "",
                       "metrics_log": "metrics.jsonl", "curves": "train_curves.png", "done_flag": True,
                       "epochs_done": 3, "steps_done": 12}.items():
        assert result[key] == value, key
    assert set(result["models"]) == {"last_1", "last_2", "best"}
    assert [result["models"][k]["epoch"] for k in ("last_1", "last_2")] == [3, 2]
    for entry in result["models"].values():
        assert set(entry) == {"score", "epoch", "pdparams", "pdopt", "pdstates", "pdema"}
        for tag in ("pdparams", "pdopt", "pdstates", "pdema"):
            assert (out / entry[tag]).is_file(), entry[tag]
    assert result["models"]["last_1"]["pdparams"] == "epoch_3/epoch_3.pdparams"
    assert not (out / "epoch_1").exists()  # only the last 2 are kept

    assert OmegaConf.load(out / "config.yaml").Train.keep_checkpoints == 2
    assert (out / "label_dict.txt").read_text() == "0 dark\n1 bright\n"
    log = (out / "train.log").read_text()
    assert "epoch 3/3 iter 4/4 step 12/12" in log and "Eval epoch 3: mask AP" in log

    # 4 steps per epoch, logged every 2 steps: one record and one curve point per logged step
    records = train_records(out)
    assert [r["step"] for r in records] == [2, 4, 6, 8, 10, 12]
    evals = [r for r in read_records(out / "metrics.jsonl") if r["type"] == "eval"]
    assert [r["epoch"] for r in evals] == [1, 2, 3]
    assert result["models"]["last_1"]["score"] == evals[-1]["AP"]
    series = plot_curves(read_records(out / "metrics.jsonl"), tmp_path / "again.png")
    assert series["loss"][0] == [2, 4, 6, 8, 10, 12] and len(series["loss_cls"][0]) == 6
    assert (out / "train_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_best_model_holds_the_epoch_with_the_highest_mask_ap(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = train(make_cfg(out, ["Train.ema_decay=0.9"]), hooks(scores=[0.2, 0.6, 0.4]))
    best = result["models"]["best"]
    assert (best["score"], best["epoch"]) == (0.6, 2) and result["best_epoch"] == 2
    assert best["pdparams"] == "best_model/best_model.pdparams"
    states = json.loads((out / "best_model" / "best_model.pdstates").read_text())
    assert (states["metric"], states["epoch"], states["best_epoch"]) == (0.6, 2, 2)
    for ext in ("pdparams", "pdema"):  # the evaluated (EMA) weights and the raw ones of epoch 2
        assert max_diff(load(out / f"best_model/best_model.{ext}"), load(out / f"epoch_2/epoch_2.{ext}")) == 0
    assert max_diff(load(out / "best_model/best_model.pdparams"), load(out / "epoch_3/epoch_3.pdparams")) > 0
    assert [result["models"][f"last_{i}"]["score"] for i in (1, 2, 3)] == [0.4, 0.6, 0.2]


def test_learning_rate_follows_warmup_and_milestones_during_training(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # 4 steps per epoch; warm-up over 3 steps from 0.1x; milestone at epoch 2 of a 3-epoch base schedule,
    # trained for 6 epochs -> decay at epoch 4 = step 16
    cfg = make_cfg(out, ["Train.log_interval=1", "Train.epochs_iters=6", "Train.eval_interval=6"])
    train(cfg, hooks())
    lrs = [r["lr"] for r in train_records(out)]
    assert len(lrs) == 24
    spec = build_schedule(cfg.Train, NUM_TRAIN // 3)
    assert spec.milestone_steps == (16,)
    np.testing.assert_allclose(lrs[:4], [0.005, 0.02, 0.035, 0.05], rtol=1e-6)
    np.testing.assert_allclose(lrs[4:16], 0.05, rtol=1e-6)
    np.testing.assert_allclose(lrs[16:], 0.005, rtol=1e-6)


def test_amp_is_ignored_on_cpu_and_fresh_run_clears_old_checkpoints(tmp_path: Path, caplog: Any) -> None:
    out = tmp_path / "out"
    train(make_cfg(out, ["Train.epochs_iters=2"]), hooks())
    caplog.set_level(logging.INFO, logger="instseg")
    result = train(make_cfg(out, ["Train.epochs_iters=1", "Train.amp=true"]), hooks())
    assert "Train.amp ignored" in caplog.text and "removing the previous run's" in caplog.text
    assert set(result["models"]) == {"last_1", "best"} and not (out / "epoch_2").exists()


def test_pretrained_weights_load_on_a_fresh_start_only(tmp_path: Path, monkeypatch: Any) -> None:
    import types

    calls: List[Tuple[Any, str]] = []
    fake = types.ModuleType("engine.models.weights")
    fake.load_weights = lambda model, path: calls.append((model, path)) or ["head.weight"]  # type: ignore
    monkeypatch.setitem(sys.modules, "engine.models.weights", fake)
    out = tmp_path / "out"
    train(make_cfg(out, ["Train.epochs_iters=1", "Train.pretrain_weight_path=w.pdparams"]), hooks())
    assert [path for _, path in calls] == ["w.pdparams"]
    assert "(1 entries skipped)" in (out / "train.log").read_text()
    train(make_cfg(out, ["Train.epochs_iters=2", "Train.pretrain_weight_path=w.pdparams",
                         "Train.auto_resume=true"]), hooks())
    assert len(calls) == 1  # a resumed run takes its weights from the checkpoint


def test_resume_path_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        train(make_cfg(tmp_path, [f"Train.resume_path={tmp_path}/nope.pdparams"]), hooks())
    paddle.save({"w": np.zeros(1)}, str(tmp_path / "w.pdparams"))
    with pytest.raises(WeightsError, match="incomplete"):
        train(make_cfg(tmp_path / "o", [f"Train.resume_path={tmp_path}/w.pdparams"]), hooks())


# ---------------------------------------------------------------------------------------------- subprocess
def drive(out: Path, *args: str) -> Tuple[int, str]:
    proc = subprocess.run([sys.executable, str(DRIVER), str(out), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


VARIANTS = {
    "momentum-ema": ["Train.ema_decay=0.9"],
    "adamw-cosine-clip-workers": ["Train.optimizer=adamw", "Train.lr_scheduler=cosine",
                                  "Train.learning_rate=0.01", "Train.clip_grad_norm=0.5",
                                  "Train.num_workers=1"],
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: Any) -> Dict[str, Path]:
    """One uninterrupted run per variant, shared by the resume tests."""
    runs = {}
    for name, args in VARIANTS.items():
        out = tmp_path_factory.mktemp(name)
        rc, log = drive(out, *args)
        assert rc == 0, log
        runs[name] = out
    return runs


def assert_same_run(a: Path, b: Path) -> None:
    """Same final weights (1e-6), same per-step losses and LR, same train_result.json models."""
    for ext in ("pdparams", "pdopt"):
        pa, pb = a / f"epoch_3/epoch_3.{ext}", b / f"epoch_3/epoch_3.{ext}"
        da = {k: v for k, v in load(pa).items() if np.asarray(v).dtype.kind == "f"}
        db = {k: v for k, v in load(pb).items() if np.asarray(v).dtype.kind == "f"}
        assert max_diff(da, db) <= 1e-6, ext
    assert (a / "epoch_3/epoch_3.pdema").exists() == (b / "epoch_3/epoch_3.pdema").exists()
    if (a / "epoch_3/epoch_3.pdema").exists():
        assert max_diff(load(a / "epoch_3/epoch_3.pdema"), load(b / "epoch_3/epoch_3.pdema")) <= 1e-6
    keys = ("step", "lr", "loss")
    rows_a, rows_b = ([[r[k] for k in keys] for r in train_records(d)] for d in (a, b))
    assert rows_a == rows_b
    ra, rb = (json.loads((d / "train_result.json").read_text()) for d in (a, b))
    assert rb["done_flag"] is True and ra["models"] == rb["models"] and ra["best_epoch"] == rb["best_epoch"]
    assert (rb["epochs_done"], rb["steps_done"]) == (3, 12)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_sigkill_after_first_checkpoint_then_resume_matches_uninterrupted(
        variant: str, uninterrupted: Dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc, log = drive(out, *VARIANTS[variant], "--kill-after-save", "epoch_1")
    assert rc == -9, log
    assert [e for e, _ in ckpt.epoch_checkpoints(out)] == [1]
    rc, log = drive(out, *VARIANTS[variant], f"Train.resume_path={out}/epoch_1/epoch_1.pdparams")
    assert rc == 0, log
    assert "Resumed from" in (out / "train.log").read_text()
    assert_same_run(uninterrupted[variant], out)


def test_kill_while_writing_a_checkpoint_keeps_the_previous_one(
        uninterrupted: Dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc, log = drive(out, *VARIANTS["momentum-ema"], "--kill-during-save", "epoch_2")
    assert rc == -9, log
    assert (out / ".epoch_2.tmp" / "epoch_2.pdparams").is_file() and not (out / "epoch_2").exists()
    assert ckpt.load_checkpoint(out / "epoch_1" / "epoch_1.pdparams").states["epoch"] == 1
    rc, log = drive(out, *VARIANTS["momentum-ema"], "Train.auto_resume=true")
    assert rc == 0, log
    assert not (out / ".epoch_2.tmp").exists()
    assert_same_run(uninterrupted["momentum-ema"], out)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_sigterm_writes_a_mid_epoch_checkpoint_and_exits_cleanly(
        variant: str, uninterrupted: Dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc, log = drive(out, *VARIANTS[variant], "--sigterm-at-step", "6")
    assert rc == 143, log
    assert "TrainingInterrupted" in log and "epoch 2, iteration 2" in log
    states = ckpt.read_states(out / "interrupted")
    assert (states["epoch"], states["iter_in_epoch"], states["step"]) == (1, 2, 6)
    result = json.loads((out / "train_result.json").read_text())
    assert result["done_flag"] is False and result["steps_done"] == 6
    rc, log = drive(out, *VARIANTS[variant], "Train.auto_resume=true")
    assert rc == 0, log
    assert not (out / "interrupted").exists()  # overtaken by later epoch checkpoints
    assert_same_run(uninterrupted[variant], out)
