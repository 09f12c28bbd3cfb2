"""The training features of issue 10 with the real (tiny) Mask R-CNN, the real loader and evaluator, through
`engine.modes.run_mode`: a SIGTERM-style stop mid-epoch writes a JSON (pickle-free) checkpoint; the resumed
run skips the trained batches without decoding them, with batch multi-scale on; its evaluations use
Evaluate.backend=fast and log every Evaluate.log_interval batches."""
import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
from omegaconf import OmegaConf

import engine.training.trainer as trainer
from dataset_tools.synthetic import make_coco_dataset
from engine.config.load import load_config
from engine.data.coco import CocoInstances
from engine.modes import run_mode


def _cfg(data: Path, out: Path, *extra: str) -> Any:
    return load_config(None, [
        "Global.mode=train", f"Global.dataset_dir={data}", f"Global.output={out}", "Global.device=cpu",
        "Train.epochs_iters=2", "Train.batch_size=2", "Train.num_workers=0", "Train.warmup_steps=1",
        "Train.export_best=false", "Train.eval_interval=2", "Train.log_interval=1",
        "Architecture.base_channels=16", "Architecture.fpn_channels=32", "Architecture.box_head_dim=64",
        "Architecture.mask_head_channels=32", "Architecture.rpn_batch_size_per_im=32",
        "Architecture.roi_batch_size_per_im=32",
        "TrainReader.short_sizes=[64]", "TrainReader.max_size=64", "TrainReader.batch_sizes=[64,96]",
        "EvalReader.target_size=[64,64]",
        "Evaluate.backend=fast", "Evaluate.log_interval=1", *extra])


def test_mid_epoch_stop_and_resume_with_the_real_model(tmp_path: Path, monkeypatch: Any) -> None:
    # Paddle's own RoIAlign: nothing here is about the compiled one, whose first load builds it
    monkeypatch.setenv("INSTSEG_NATIVE_ROI_ALIGN", "0")
    data = make_coco_dataset(tmp_path / "data", num_train=6, num_val=2, size=(64, 64), max_shapes=2, seed=3)
    out = tmp_path / "out"
    step = trainer._train_step

    def stop_after_four(run_: Any, batch: Any) -> Dict[str, float]:
        losses = step(run_, batch)
        run_.stop.requested = run_.state.step + 1 == 4  # epoch 2 (3 steps an epoch), its first batch done
        return losses

    monkeypatch.setattr(trainer, "_train_step", stop_after_four)
    assert run_mode(_cfg(data, out), []) == 143
    monkeypatch.setattr(trainer, "_train_step", step)
    states = json.loads((out / "interrupted" / "interrupted.pdstates").read_text())  # JSON, not a pickle
    assert (states["epoch"], states["iter_in_epoch"], states["step"]) == (1, 1, 4)
    assert len(states["rng"]) == 1 and len(states["rng_epoch_start"][0]["python"]["internal"]) == 625

    loaded: List[int] = []
    load = CocoInstances.load
    monkeypatch.setattr(CocoInstances, "load", lambda self, i: loaded.append(int(i)) or load(self, i))
    assert run_mode(_cfg(data, out, "Train.auto_resume=true"), []) == 0
    result = json.loads((out / "train_result.json").read_text())
    assert result["done_flag"] is True and (result["epochs_done"], result["steps_done"]) == (2, 6)
    # 2 batches of 2 left to train in epoch 2, then the 2 val images once: the first batch is not decoded
    assert len(loaded) == 2 * 2 + 2
    log = (out / "train.log").read_text()
    assert "Resumed from" in log and "fast backend" in log and "Eval iter 2/2" in log
    assert OmegaConf.load(out / "config.yaml").Evaluate.backend == "fast"


@pytest.fixture(autouse=True)
def _restore_logging() -> Any:
    """run_mode configures the instseg logger (handlers, file); leave it as the other tests expect."""
    import logging

    logger = logging.getLogger("instseg")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    for handler in list(logger.handlers):
        if handler not in handlers:
            logger.removeHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate
