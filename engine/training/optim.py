"""Optimizer and learning-rate schedule from the `Train` section (PaddleDetection's OptimizerBuilder).

- `momentum`: SGD with momentum and L2 weight decay as a regulariser (ppdet `regularizer: L2`);
  `adamw`: decoupled weight decay. A parameter's own `ParamAttr(learning_rate=..., regularizer=...)` is
  honoured by Paddle's optimizers (backbone `lr_mult`), so parameters are passed as one plain list.
- Schedule (`ScheduleSpec.lr_at(step)`): linear warm-up over `warmup_steps` optimizer steps from
  `learning_rate * warmup_start_factor` to `learning_rate`, as ppdet's LinearWarmup (during warm-up the
  decay is not applied); then `piecewise` (× gamma^k after the k-th milestone), `cosine` (from the base LR
  at step 0 to 0 at the last step, over all steps, as ppdet's CosineDecay with max_epochs = epochs) or
  `constant`.
- Milestones are given in epochs of a `base_epochs` schedule and rescaled to `epochs_iters`:
  milestone step = round(m * epochs_iters / base_epochs * steps_per_epoch). PaddleX keeps [8, 11] whatever
  the number of epochs, so a 40-epoch run decays by 100x from epoch 11 on; we keep the 1x schedule's shape.
"""
import math
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import paddle
from paddle.optimizer.lr import LRScheduler

from engine.errors import ConfigError

SCHEDULES = ("piecewise", "cosine", "constant")
OPTIMIZERS = ("momentum", "adamw")


@dataclass(frozen=True)
class ScheduleSpec:
    """Everything the LR at a given optimizer step depends on."""

    base_lr: float
    kind: str  # piecewise | cosine | constant
    total_steps: int
    warmup_steps: int = 0
    warmup_start_factor: float = 0.001
    milestone_steps: Tuple[int, ...] = ()
    gamma: float = 0.1

    def lr_at(self, step: int) -> float:
        """LR used by optimizer step `step` (0-based)."""
        if step < self.warmup_steps:
            alpha = step / self.warmup_steps
            return self.base_lr * (self.warmup_start_factor * (1.0 - alpha) + alpha)
        if self.kind == "piecewise":
            passed = sum(1 for m in self.milestone_steps if step >= m)
            return self.base_lr * self.gamma ** passed
        if self.kind == "cosine":
            progress = min(step, self.total_steps) / max(self.total_steps, 1)
            return self.base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.base_lr


class ScheduledLR(LRScheduler):
    """A Paddle LR scheduler whose value is `spec.lr_at(last_epoch)`; `last_epoch` counts optimizer steps.

    Its state (`last_epoch`, `last_lr`) travels in the optimizer's state dict, so a resumed run continues
    the schedule exactly.
    """

    def __init__(self, spec: ScheduleSpec) -> None:
        self.spec = spec
        super().__init__(learning_rate=spec.base_lr, last_epoch=-1, verbose=False)

    def get_lr(self) -> float:
        return self.spec.lr_at(max(self.last_epoch, 0))


def scaled_milestones(milestones: Sequence[int], epochs: int, base_epochs: int,
                      steps_per_epoch: int) -> Tuple[int, ...]:
    """Milestones (epochs of a `base_epochs` schedule) as optimizer steps of an `epochs` schedule."""
    if base_epochs <= 0:
        raise ConfigError(f"Train.base_epochs must be positive, got {base_epochs}.")
    return tuple(int(round(m * epochs / base_epochs * steps_per_epoch)) for m in milestones)


def build_schedule(train: Any, steps_per_epoch: int) -> ScheduleSpec:
    """The LR schedule of the `Train` config section for `steps_per_epoch` optimizer steps per epoch."""
    kind = str(train.lr_scheduler).lower()
    if kind not in SCHEDULES:
        raise ConfigError(f"Train.lr_scheduler={train.lr_scheduler!r} is not one of {', '.join(SCHEDULES)}.")
    if train.warmup_steps < 0:
        raise ConfigError(f"Train.warmup_steps must be >= 0, got {train.warmup_steps}.")
    milestones = scaled_milestones(train.milestones, train.epochs_iters, train.base_epochs, steps_per_epoch)
    return ScheduleSpec(
        base_lr=float(train.learning_rate),
        kind=kind,
        total_steps=int(train.epochs_iters) * int(steps_per_epoch),
        warmup_steps=int(train.warmup_steps),
        warmup_start_factor=float(train.warmup_start_factor),
        milestone_steps=milestones,
        gamma=float(train.gamma),
    )


def trainable_parameters(model: paddle.nn.Layer) -> List[paddle.Tensor]:
    """Parameters the optimizer updates (frozen ones, `stop_gradient=True`, are left out)."""
    return [p for p in model.parameters() if not p.stop_gradient]


def build_optimizer(train: Any, model: paddle.nn.Layer, scheduler: LRScheduler) -> paddle.optimizer.Optimizer:
    """Momentum (L2 regulariser) or AdamW (decoupled decay), with optional global-norm clipping."""
    kind = str(train.optimizer).lower()
    if kind not in OPTIMIZERS:
        raise ConfigError(f"Train.optimizer={train.optimizer!r} is not one of {', '.join(OPTIMIZERS)}.")
    clip: Optional[paddle.nn.ClipGradByGlobalNorm] = None
    if train.clip_grad_norm is not None:
        clip = paddle.nn.ClipGradByGlobalNorm(clip_norm=float(train.clip_grad_norm))
    params = trainable_parameters(model)
    if kind == "momentum":
        decay = paddle.regularizer.L2Decay(float(train.weight_decay)) if train.weight_decay else None
        return paddle.optimizer.Momentum(
            learning_rate=scheduler, momentum=float(train.momentum), parameters=params,
            weight_decay=decay, grad_clip=clip)
    return paddle.optimizer.AdamW(
        learning_rate=scheduler, parameters=params, weight_decay=float(train.weight_decay), grad_clip=clip)
