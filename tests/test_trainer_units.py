"""Training engine units: LR schedule, optimizer, EMA, checkpoint files, RNG capture, metrics and curves."""
from pathlib import Path
from typing import Any, Dict

import numpy as np
import paddle
import pytest
from omegaconf import OmegaConf

import engine.training.checkpoint as ckpt
from engine.config.schema import TrainSection
from engine.training.curves import plot_curves
from engine.training.ema import ModelEMA
from engine.errors import ConfigError, WeightsError
from engine.training.metrics_log import MetricsLog, read_records
from engine.training.optim import ScheduledLR, build_optimizer, build_schedule, scaled_milestones


def train_cfg(**kw: Any) -> Any:
    cfg = OmegaConf.structured(TrainSection)
    for k, v in kw.items():
        cfg[k] = v
    return cfg


# ------------------------------------------------------------------------------------------- schedule
def test_warmup_then_piecewise_milestones_scaled_with_epochs() -> None:
    # 1x schedule [8, 11] of 12 epochs, trained for 24 epochs of 10 steps: decays at epochs 16 and 22
    spec = build_schedule(train_cfg(learning_rate=0.02, warmup_steps=50, warmup_start_factor=0.001,
                                    milestones=[8, 11], base_epochs=12, epochs_iters=24, gamma=0.1), 10)
    assert spec.milestone_steps == (160, 220)
    assert spec.lr_at(0) == pytest.approx(0.02 * 0.001)
    assert spec.lr_at(25) == pytest.approx(0.02 * (0.001 * 0.5 + 0.5))
    assert spec.lr_at(50) == pytest.approx(0.02)
    assert spec.lr_at(159) == pytest.approx(0.02)
    assert spec.lr_at(160) == pytest.approx(0.002)
    assert spec.lr_at(219) == pytest.approx(0.002)
    assert spec.lr_at(220) == pytest.approx(0.0002)
    assert spec.lr_at(239) == pytest.approx(0.0002)


def test_milestones_round_to_steps_and_paddlex_bug_is_not_reproduced() -> None:
    # PaddleX keeps [8, 11] under 40 epochs; we decay at 26.7 and 36.7 epochs
    assert scaled_milestones([8, 11], epochs=40, base_epochs=12, steps_per_epoch=3) == (80, 110)
    with pytest.raises(ConfigError):
        scaled_milestones([8], epochs=4, base_epochs=0, steps_per_epoch=3)


def test_cosine_and_constant_schedules() -> None:
    cos = build_schedule(train_cfg(learning_rate=1.0, warmup_steps=0, lr_scheduler="cosine", epochs_iters=2),
                         5)
    assert cos.lr_at(0) == pytest.approx(1.0)
    assert cos.lr_at(5) == pytest.approx(0.5)
    assert cos.lr_at(10) == pytest.approx(0.0, abs=1e-12)
    const = build_schedule(train_cfg(learning_rate=0.3, warmup_steps=4, warmup_start_factor=0.5,
                                     lr_scheduler="constant"), 5)
    assert [round(const.lr_at(s), 6) for s in range(6)] == [0.15, 0.1875, 0.225, 0.2625, 0.3, 0.3]
    with pytest.raises(ConfigError, match="lr_scheduler"):
        build_schedule(train_cfg(lr_scheduler="poly"), 5)


def test_scheduler_state_continues_after_reload() -> None:
    spec = build_schedule(train_cfg(learning_rate=0.1, warmup_steps=3, milestones=[1], base_epochs=2,
                                    epochs_iters=2), 4)
    a = ScheduledLR(spec)
    for _ in range(5):
        a.step()
    b = ScheduledLR(spec)
    b.set_state_dict(a.state_dict())
    assert b.last_epoch == 5 and b() == pytest.approx(spec.lr_at(5))


# ------------------------------------------------------------------------------------------- optimizer
class Two(paddle.nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.slow = self.create_parameter([2], attr=paddle.ParamAttr(learning_rate=0.1),
                                          default_initializer=paddle.nn.initializer.Constant(1.0))
        self.fast = self.create_parameter([2], default_initializer=paddle.nn.initializer.Constant(1.0))
        self.frozen = self.create_parameter([2], default_initializer=paddle.nn.initializer.Constant(1.0))
        self.frozen.stop_gradient = True


def one_step(cfg: Any, grad_scale: float = 1.0) -> Two:
    model = Two()
    sched = ScheduledLR(build_schedule(cfg, 1))
    opt = build_optimizer(cfg, model, sched)
    loss = (model.slow.sum() + model.fast.sum() + model.frozen.sum()) * grad_scale
    loss.backward()
    opt.step()
    return model


def test_momentum_honours_lr_multipliers_and_l2_decay() -> None:
    model = one_step(train_cfg(learning_rate=0.5, warmup_steps=0, weight_decay=0.0))
    np.testing.assert_allclose(model.fast.numpy(), 1 - 0.5, rtol=1e-6)
    np.testing.assert_allclose(model.slow.numpy(), 1 - 0.05, rtol=1e-6)
    np.testing.assert_allclose(model.frozen.numpy(), 1.0)
    decayed = one_step(train_cfg(learning_rate=0.5, warmup_steps=0, weight_decay=0.1))
    np.testing.assert_allclose(decayed.fast.numpy(), 1 - 0.5 * (1 + 0.1 * 1), rtol=1e-6)  # L2: g + wd * w


def test_global_norm_clipping_and_adamw() -> None:
    clipped = one_step(train_cfg(learning_rate=1.0, warmup_steps=0, weight_decay=0.0, clip_grad_norm=0.5),
                       grad_scale=100.0)
    # gradient 100 on each of 4 entries (norm 200) rescaled to norm 0.5: each entry 0.25
    np.testing.assert_allclose(clipped.fast.numpy(), 1 - 0.25, rtol=1e-5)
    adamw = one_step(train_cfg(optimizer="adamw", learning_rate=0.01, warmup_steps=0, weight_decay=0.0))
    np.testing.assert_allclose(adamw.fast.numpy(), 1 - 0.01, rtol=1e-4)  # Adam's first step is lr * sign
    with pytest.raises(ConfigError, match="optimizer"):
        one_step(train_cfg(optimizer="lamb"))


# ------------------------------------------------------------------------------------------------ EMA
def test_ema_warmup_decay_apply_and_reload() -> None:
    layer = paddle.nn.Linear(2, 1)
    layer.weight.set_value(paddle.zeros([2, 1]))
    ema = ModelEMA(layer, decay=0.9)
    layer.weight.set_value(paddle.ones([2, 1]))
    ema.update(layer)  # d = min(0.9, 1/10) = 0.1
    np.testing.assert_allclose(ema.state_dict()["weight"].numpy(), 0.9, rtol=1e-6)
    assert ema.current_decay() == pytest.approx(2 / 11)
    with ema.apply_to(layer):
        np.testing.assert_allclose(layer.weight.numpy(), 0.9, rtol=1e-6)
    np.testing.assert_allclose(layer.weight.numpy(), 1.0)
    other = ModelEMA(layer, decay=0.9)
    other.load_state_dict(ema.state_dict(), step=ema.step)
    assert other.step == 1 and other.current_decay() == ema.current_decay()
    np.testing.assert_allclose(other.state_dict()["weight"].numpy(), 0.9, rtol=1e-6)


# ----------------------------------------------------------------------------------------- checkpoints
def save(out: Path, name: str, value: float, step: int, ema: bool = False) -> Path:
    layer = paddle.nn.Linear(2, 2)
    layer.weight.set_value(paddle.full([2, 2], value))
    state = layer.state_dict()
    return ckpt.save_checkpoint(out, name, state, {"last_epoch": step}, {"epoch": step, "step": step},
                                ema_state={k: v * 2 for k, v in state.items()} if ema else None)


def test_checkpoint_roundtrip_with_ema_swapped_like_ppdet(tmp_path: Path) -> None:
    path = save(tmp_path, "epoch_1", 3.0, 1, ema=True)
    assert path == tmp_path / "epoch_1" / "epoch_1.pdparams"
    c = ckpt.load_checkpoint(path)
    np.testing.assert_allclose(np.asarray(c.model["weight"]), 3.0)  # raw weights from .pdema
    np.testing.assert_allclose(np.asarray(c.ema["weight"]), 6.0)  # .pdparams holds the EMA
    assert c.states["epoch"] == 1 and c.states["format"] == ckpt.FORMAT


def test_crash_mid_write_leaves_previous_checkpoint_and_is_cleaned(tmp_path: Path, monkeypatch: Any) -> None:
    save(tmp_path, "epoch_1", 1.0, 1)
    real = ckpt._write_file

    def crash_after_first(obj: Any, path: Path) -> None:
        real(obj, path)
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(ckpt, "_write_file", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path, "epoch_2", 2.0, 2)
    monkeypatch.undo()
    assert (tmp_path / ".epoch_2.tmp").is_dir() and not (tmp_path / "epoch_2").exists()
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "epoch_1" / "epoch_1.pdparams"
    latest = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path))
    np.testing.assert_allclose(np.asarray(latest.model["weight"]), 1)
    ckpt.recover(tmp_path)
    assert not (tmp_path / ".epoch_2.tmp").exists()


def test_replacing_a_directory_survives_a_crash_between_renames(tmp_path: Path) -> None:
    save(tmp_path, "best_model", 1.0, 1)
    (tmp_path / "best_model").rename(tmp_path / ".best_model.old")  # died after the first rename
    ckpt.recover(tmp_path)
    assert ckpt.read_states(tmp_path / "best_model")["epoch"] == 1
    save(tmp_path, "best_model", 2.0, 2)
    assert ckpt.read_states(tmp_path / "best_model")["epoch"] == 2
    assert not (tmp_path / ".best_model.old").exists()


def test_prune_keeps_last_k_and_overtaken_interrupted(tmp_path: Path) -> None:
    for e in range(1, 5):
        save(tmp_path, f"epoch_{e}", float(e), e)
    save(tmp_path, "interrupted", 0.0, 3)
    gone = ckpt.prune(tmp_path, keep=2)
    assert sorted(p.name for p in gone) == ["epoch_1", "epoch_2", "interrupted"]
    assert [e for e, _ in ckpt.epoch_checkpoints(tmp_path)] == [3, 4]
    assert ckpt.prune(tmp_path, keep=0) == []


def test_latest_checkpoint_prefers_the_most_advanced_step(tmp_path: Path) -> None:
    assert ckpt.latest_checkpoint(tmp_path) is None
    save(tmp_path, "epoch_1", 1.0, 4)
    save(tmp_path, "interrupted", 1.0, 6)
    assert ckpt.latest_checkpoint(tmp_path).parent.name == "interrupted"


def test_load_rejects_incomplete_and_foreign_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="must name"):
        ckpt.load_checkpoint(tmp_path / "model.pdopt")
    paddle.save({"w": np.zeros(2)}, str(tmp_path / "model.pdparams"))
    with pytest.raises(WeightsError, match="incomplete"):
        ckpt.load_checkpoint(tmp_path / "model.pdparams")
    paddle.save({}, str(tmp_path / "model.pdopt"))
    paddle.save({"metric": 0.3, "epoch": 2}, str(tmp_path / "model.pdstates"))  # a PaddleX/ppdet state
    with pytest.raises(WeightsError, match="pretrain_weight_path"):
        ckpt.load_checkpoint(tmp_path / "model.pdparams")


def test_optimizer_state_follows_structured_names_across_processes() -> None:
    def net() -> paddle.nn.Sequential:
        return paddle.nn.Sequential(paddle.nn.Linear(2, 2), paddle.nn.Linear(2, 1))

    a = net()
    opt_a = paddle.optimizer.Momentum(0.1, parameters=a.parameters())
    a(paddle.ones([1, 2])).sum().backward()
    opt_a.step()
    state = ckpt.optimizer_state(opt_a, a, last_epoch=1)
    assert "0.weight_velocity_0" in state and state["last_epoch"] == 1
    paddle.nn.Linear(3, 3)  # shifts Paddle's generated names in this "process"
    b = net()
    assert [p.name for p in b.parameters()] != [p.name for p in a.parameters()]
    opt_b = paddle.optimizer.Momentum(0.1, parameters=b.parameters())
    ckpt.load_optimizer_state(opt_b, b, state)
    got = {k: np.asarray(v) for k, v in ckpt.optimizer_state(opt_b, b, 1).items() if k.endswith("velocity_0")}
    for k, v in got.items():
        np.testing.assert_array_equal(v, np.asarray(state[k]))
    assert len(got) == 4


# ----------------------------------------------------------------------------------- metrics and curves
def test_metrics_log_resume_drops_later_records_and_curves_have_one_point_each(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.start()
    for step in (2, 4, 6):
        log.append({"type": "train", "epoch": 1, "step": step, "loss": 1.0 / step, "loss_a": float("nan")})
    log.append({"type": "eval", "epoch": 1, "step": 6, "AP": 0.5})
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"type": "train", "st')  # a line cut short by a crash
    assert len(read_records(tmp_path / "metrics.jsonl")) == 4
    assert read_records(tmp_path / "metrics.jsonl")[0]["loss_a"] is None
    log.start(resume_step=4)
    assert [r["step"] for r in log.records()] == [2, 4]
    log.append({"type": "train", "epoch": 1, "step": 6, "loss": 0.1})
    log.append({"type": "eval", "epoch": 1, "step": 6, "AP": 0.4, "bbox_AP": 0.3})
    series: Dict[str, Any] = plot_curves(log.records(), tmp_path / "curves.png")
    assert series["loss"] == ([2, 4, 6], [0.5, 0.25, 0.1])
    assert series["AP"] == ([1], [0.4]) and series["bbox_AP"] == ([1], [0.3])
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sum_losses_adds_scalar_terms_and_rejects_a_total() -> None:
    from engine.errors import InstSegError
    from engine.training.trainer import sum_losses

    total = sum_losses({"loss_a": paddle.to_tensor([1.5]), "loss_b": paddle.to_tensor(2.0, dtype="float16")})
    assert total.shape == [] and total.item() == pytest.approx(3.5)
    with pytest.raises(InstSegError, match="not their total"):
        sum_losses({"loss_a": paddle.to_tensor(1.0), "loss": paddle.to_tensor(1.0)})
