"""Training state without pickle: RNG states as plain JSON data, an older InstSeg's pickled `.pdstates`
read without running code, and a mid-epoch resume that skips the trained batches without loading them."""
import base64
import json
import logging
import pickle
import random
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import paddle
import pytest

import engine.training.checkpoint as ckpt
import engine.training.trainer as trainer
from engine.errors import WeightsError
from engine.training import rng_state
from trainer_standins import TinyModel, hooks, make_cfg, state_numpy


def draws() -> List[float]:
    return [random.random(), random.gauss(0, 1), float(np.random.rand()), float(np.random.randn()),
            paddle.rand([1]).item(), paddle.randn([1]).item()]


def test_rng_state_is_plain_json_and_restores_every_stream() -> None:
    random.gauss(0, 1)  # a cached Gaussian in both Python and NumPy
    np.random.randn()
    text = json.dumps(rng_state.capture())
    first = draws()
    rng_state.restore(json.loads(text))
    assert draws() == first
    assert draws() != first


class _Evil:
    """Unpickling this creates a file: the check that no pickle in a checkpoint is ever loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (Path.touch, (self.path,))


def _save(out: Path, name: str, states: Dict[str, Any]) -> Path:
    layer = paddle.nn.Linear(2, 2)
    return ckpt.save_checkpoint(out, name, layer.state_dict(), {"last_epoch": 1}, states)


def test_pdstates_is_json(tmp_path: Path) -> None:
    path = _save(tmp_path, "epoch_1", {"epoch": 1, "step": 3, "rng": [rng_state.capture()]})
    states = json.loads(path.with_suffix(".pdstates").read_text())
    assert states["format"] == ckpt.FORMAT and states["step"] == 3
    assert len(states["rng"][0]["numpy"]["key"]) == 624


def test_old_pickled_pdstates_is_read_without_unpickling_its_rng(tmp_path: Path) -> None:
    path = _save(tmp_path, "epoch_1", {"epoch": 1, "step": 3})
    touched = tmp_path / "touched"
    blob = base64.b64encode(pickle.dumps(_Evil(touched))).decode("ascii")
    paddle.save({"format": ckpt.LEGACY_FORMAT, "epoch": 1, "step": 3, "iter_in_epoch": 0, "rng": blob,
                 "rng_epoch_start": None, "grad_scaler": None}, str(path.with_suffix(".pdstates")))
    states = ckpt.load_checkpoint(path).states
    assert not touched.exists()
    assert states["legacy"] is True and states["step"] == 3 and "rng" not in states
    assert ckpt.latest_checkpoint(tmp_path) == path


def test_pdstates_that_is_itself_a_code_pickle_is_refused(tmp_path: Path) -> None:
    path = _save(tmp_path, "epoch_1", {"epoch": 1, "step": 3})
    touched = tmp_path / "touched"
    evil = pickle.dumps({"format": ckpt.LEGACY_FORMAT, "x": _Evil(touched)})
    path.with_suffix(".pdstates").write_bytes(evil)
    with pytest.raises(WeightsError, match="not an InstSeg training state"):
        ckpt.load_checkpoint(path)
    assert not touched.exists()
    assert ckpt.read_states(path.parent) is None


def _legacy_copy(ckpt_dir: Path) -> None:
    """Rewrite a checkpoint's .pdstates as InstSeg's first format wrote it (paddle.save, pickled RNG)."""
    path = ckpt_dir / f"{ckpt_dir.name}.pdstates"
    states = json.loads(path.read_text())
    states["format"] = ckpt.LEGACY_FORMAT
    for key in ("rng", "rng_epoch_start"):
        if states[key] is not None:
            states[key] = base64.b64encode(pickle.dumps(states[key])).decode("ascii")
    paddle.save(states, str(path))


def test_old_checkpoint_resumes_with_a_warning(tmp_path: Path, caplog: Any) -> None:
    out = tmp_path / "out"
    trainer.train(make_cfg(out, ["Train.epochs_iters=1"]), hooks())
    _legacy_copy(out / "epoch_1")
    caplog.set_level(logging.WARNING, logger="instseg")
    result = trainer.train(make_cfg(out, ["Train.epochs_iters=2", "Train.auto_resume=true"]), hooks())
    assert "older InstSeg" in caplog.text and "re-seeded" in caplog.text
    assert (result["epochs_done"], result["steps_done"]) == (2, 8) and result["done_flag"] is True


# --------------------------------------------------------------------------------- mid-epoch resume
class _Recorder(TinyModel):
    """The stand-in model, recording what every training step saw."""

    seen: List[Any] = []

    def loss(self, batch: Dict[str, Any]) -> Dict[str, paddle.Tensor]:
        _Recorder.seen.append((batch["im_id"].numpy().tolist(), batch["image"].numpy().copy()))
        return super().loss(batch)


def _recording_hooks(loads: List[Any], models: List[Any]) -> Any:
    """Stand-in hooks whose model records its batches; `loads` gets the train dataset (it counts its
    __getitem__ calls), `models` the model."""
    h = hooks(models)
    build_loader = h.build_loader

    def recording_loader(cfg: Any, split: str) -> Any:
        loader, dataset = build_loader(cfg, split)
        if split == "train":
            loads.append(dataset)
        return loader, dataset

    h.build_model = lambda cfg: models.append(_Recorder(int(cfg.Train.num_classes))) or models[-1]
    h.build_loader = recording_loader
    return h


def test_mid_epoch_resume_skips_trained_batches_without_loading_them(tmp_path: Path,
                                                                     monkeypatch: Any) -> None:
    # 12 images, batch 3: 4 steps an epoch, 3 epochs. A stop after step 6 leaves 2 batches of epoch 2.
    _Recorder.seen = []
    datasets: List[Any] = []
    models: List[Any] = []
    trainer.train(make_cfg(tmp_path / "full"), _recording_hooks(datasets, models))
    full, final = list(_Recorder.seen), state_numpy(models[-1])
    assert len(full) == 12

    out = tmp_path / "out"
    step = trainer._train_step

    def stop_after_six(run_: Any, batch: Any) -> Dict[str, float]:
        losses = step(run_, batch)
        run_.stop.requested = run_.state.step + 1 == 6
        return losses

    monkeypatch.setattr(trainer, "_train_step", stop_after_six)
    with pytest.raises(trainer.TrainingInterrupted):
        trainer.train(make_cfg(out), _recording_hooks([], []))
    monkeypatch.setattr(trainer, "_train_step", step)
    assert ckpt.read_states(out / "interrupted")["iter_in_epoch"] == 2

    _Recorder.seen, datasets = [], []
    trainer.train(make_cfg(out, ["Train.auto_resume=true"]), _recording_hooks(datasets, models))
    assert datasets[0].loads == 6 * 3  # the 2 batches left of epoch 2 and epoch 3's 4: none replayed
    assert [ids for ids, _ in _Recorder.seen] == [ids for ids, _ in full[6:]]
    for (_, got), (_, want) in zip(_Recorder.seen, full[6:]):
        np.testing.assert_array_equal(got, want)
    resumed = state_numpy(models[-1])
    for key, value in final.items():
        np.testing.assert_allclose(resumed[key], value, atol=1e-6)
