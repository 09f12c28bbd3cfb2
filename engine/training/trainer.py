"""Training (`Global.mode=train`): epochs of `model.loss` steps, evaluation, checkpoints, exact resume.

Outputs in `Global.output` (rank 0 only): `config.yaml` (fully resolved), `train.log`, `label_dict.txt`,
`metrics.jsonl` and `train_curves.png` (engine.training.monitor), `train_result.json` (engine.training.result;
rewritten after every epoch with `done_flag: false`, finally `true`), `vdl/` (VisualDL, when installed),
checkpoints `epoch_<n>/` (after n complete epochs; the last `Train.keep_checkpoints` are kept, <= 0 keeps
all) and `best_model/` (the evaluated epoch with the highest mask AP, plus `inference/` exported after
training); file layout in engine.training.checkpoint.

An epoch ends with, in order: evaluation (every `eval_interval` epochs and after the last), best_model (when
the mask AP is >= the best so far, as PaddleX), the epoch checkpoint (every `save_interval` epochs and after
the last), pruning, logs. Data-parallel: each rank evaluates its val share, rank 0 scores them all; the others
wait in `dist.barrier()` while rank 0 writes, not for its final export (docs/ENGINE.md). Evaluation uses the
EMA weights when EMA is on and leaves every random stream as it found it.

Resume: `Train.resume_path` (a checkpoint's .pdparams) or `Train.auto_resume` (the most advanced complete
checkpoint in Global.output) restore weights, optimizer, LR schedule, EMA, AMP scaler, epoch, step, best
score and every rank's Python/NumPy/Paddle random states, so the run continues as if never stopped (data
order and augmentation included, given the same config and number of ranks, and models that draw their
randomness from Paddle: see docs/ENGINE.md). SIGTERM writes a checkpoint at the next step (mid-epoch:
`interrupted/`, whose resume skips the epoch's trained batches without loading them) and raises
`TrainingInterrupted` (exit code 143).
"""
import logging
import random
import shutil
import signal
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import paddle
from omegaconf import DictConfig, OmegaConf

from engine.training import checkpoint as ckpt
from engine.training import rng_state
from engine.runtime import distributed as dist
from engine.runtime.atomic_io import write_json, write_text
from engine.runtime.device import setup_device
from engine.training.ema import ModelEMA
from engine.errors import DatasetError, InstSegError, ModeNotAvailableError, WeightsError
from engine.training.optim import ScheduledLR, build_optimizer, build_schedule
from engine.training.monitor import TrainMonitor, attach_log_file
from engine.training.result import LABELS, build_result

logger = logging.getLogger("instseg")

_STOP_SYNC_EVERY = 10  # data-parallel ranks agree on a SIGTERM stop every this many steps


class TrainingInterrupted(InstSegError):
    """SIGTERM stopped training after writing a resumable checkpoint."""

    exit_code = 143


class TrainingDiverged(InstSegError):
    """The loss became NaN or infinite."""


@dataclass
class TrainHooks:
    """What the trainer builds and calls; the defaults are the engine's, tests substitute tiny stand-ins."""

    build_model: Callable[[DictConfig], paddle.nn.Layer]
    build_loader: Callable[[DictConfig, str], Tuple[Any, Any]]  # (loader, dataset) of split "train"/"val"
    # called on every rank with its val share; -> metrics with mask "AP" on rank 0, None on the others
    evaluate: Callable[[paddle.nn.Layer, Any, Any], Optional[Dict[str, Any]]]


def default_hooks(cfg: DictConfig) -> TrainHooks:
    """The engine's model zoo, data loader and evaluator (imported only when training starts); evaluations
    follow `cfg.Evaluate` (backend, log_interval)."""

    def build_model(cfg: DictConfig) -> paddle.nn.Layer:
        from engine.models.zoo import build_model as zoo_build

        return zoo_build(cfg.Global.model, cfg.Architecture, cfg.Train.num_classes)

    def build_loader(cfg: DictConfig, split: str) -> Tuple[Any, Any]:
        from engine.data.loader import build_loader as data_build

        built = data_build(cfg, split)
        if isinstance(built, tuple):
            return built[0], built[1]
        return built, getattr(built, "dataset", None)

    def evaluate(model: paddle.nn.Layer, loader: Any, dataset: Any) -> Optional[Dict[str, Any]]:
        from engine.evaluation.evaluator import evaluate_model

        return evaluate_model(model, loader, dataset, backend=str(cfg.Evaluate.backend),
                              log_interval=int(cfg.Evaluate.log_interval))

    return TrainHooks(build_model, build_loader, evaluate)


@dataclass
class _State:
    epoch: int = 0  # complete epochs
    step: int = 0  # optimizer steps done
    best_score: Optional[float] = None
    best_epoch: Optional[int] = None


@dataclass
class _Run:
    cfg: DictConfig
    out: Path
    hooks: TrainHooks
    model: paddle.nn.Layer
    forward: Callable[[Dict[str, Any]], Dict[str, paddle.Tensor]]
    optimizer: paddle.optimizer.Optimizer
    scheduler: ScheduledLR
    ema: Optional[ModelEMA]
    scaler: Optional[paddle.amp.GradScaler]
    train_loader: Any
    steps_per_epoch: int
    monitor: TrainMonitor
    val_loader: Any = None
    val_dataset: Any = None
    state: _State = field(default_factory=_State)
    stop: Any = None
    skip: int = 0  # batches of the current epoch already trained (mid-epoch resume)
    pending_rng: Optional[Tuple[Dict[str, Any], Dict[str, Any]]] = None  # (epoch start, at the stop)
    epoch_rng: Optional[Dict[str, Any]] = None
    last_lr: float = 0.0

    @property
    def main(self) -> bool:
        return dist.is_main()


class _LossForward(paddle.nn.Layer):
    """`forward(batch) = model.loss(batch)`, so paddle.DataParallel's gradient hooks see the loss call."""

    def __init__(self, model: paddle.nn.Layer) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Dict[str, Any]) -> Dict[str, paddle.Tensor]:  # type: ignore[override]
        return self.model.loss(batch)


class _StopSignal:
    """Records SIGTERM instead of dying, so the loop can checkpoint first."""

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.requested:
            logger.warning("SIGTERM received: writing a checkpoint after this step, then stopping.")
        self.requested = True

    def __enter__(self) -> "_StopSignal":
        try:
            self._old = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._old = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


# --------------------------------------------------------------------------------------------- entry
def run(cfg: DictConfig) -> Dict[str, Any]:
    """Train `cfg.Global.model` as configured and return the train_result.json dict."""
    return train(cfg, default_hooks(cfg))


def train(cfg: DictConfig, hooks: TrainHooks) -> Dict[str, Any]:
    """`run` with explicit builders (tests pass stand-ins)."""
    device = setup_device(cfg)
    out = Path(cfg.Global.output)
    if dist.is_main():
        out.mkdir(parents=True, exist_ok=True)
        ckpt.recover(out)
    dist.barrier()
    resume_from = _resume_source(cfg, out)
    with ExitStack() as stack:
        if dist.is_main():
            stack.callback(attach_log_file(out / "train.log", append=resume_from is not None))
        logger.info("Training %s on %s (rank %d of %d), output %s", cfg.Global.model, device, dist.rank(),
                    dist.world_size(), out)
        if cfg.Train.auto_resume and not cfg.Train.resume_path:
            logger.info("Train.auto_resume: %s", f"resuming from {resume_from}" if resume_from else
                        f"no complete checkpoint in {out}, starting from scratch")
        run_ = _build(cfg, hooks, out, device, pretrained=resume_from is None)
        if resume_from is not None:
            _restore(run_, resume_from)
        elif dist.is_main():
            _clear_stale(out)
        if dist.is_main():
            write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        run_.monitor.start(run_.state.step, resumed=resume_from is not None)
        stack.callback(run_.monitor.close)
        run_.stop = stack.enter_context(_StopSignal())
        stack.enter_context(run_.monitor.redirect())
        _train_loop(run_)
        return _finish(run_)
    raise AssertionError("unreachable")  # pragma: no cover  (ExitStack never swallows)


# --------------------------------------------------------------------------------------------- set-up
def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    paddle.seed(seed)


def _build(cfg: DictConfig, hooks: TrainHooks, out: Path, device: str, pretrained: bool) -> _Run:
    """Model (seeded identically on every rank), optimizer, schedule, EMA, AMP, loaders, monitor."""
    train_cfg = cfg.Train
    _seed(int(cfg.Global.seed))
    model = hooks.build_model(cfg)
    if pretrained and train_cfg.pretrain_weight_path:
        from engine.models.weights import load_weights

        skipped = load_weights(model, train_cfg.pretrain_weight_path)
        logger.info("Pretrained weights %s loaded (%d entries skipped).", train_cfg.pretrain_weight_path,
                    len(skipped))
    _seed(int(cfg.Global.seed) + dist.rank())  # data order / augmentation streams differ per rank
    train_loader, train_dataset = hooks.build_loader(cfg, "train")
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise DatasetError(f"The training set of {cfg.Global.dataset_dir} gives no batch (batch_size "
                           f"{train_cfg.batch_size}); check the dataset with Global.mode=check_dataset.")
    scheduler = ScheduledLR(build_schedule(train_cfg, steps_per_epoch))
    optimizer = build_optimizer(train_cfg, model, scheduler)
    ema = ModelEMA(model, float(train_cfg.ema_decay)) if train_cfg.ema_decay else None
    scaler = None
    if train_cfg.amp:
        if device.startswith("gpu"):
            scaler = paddle.amp.GradScaler(init_loss_scaling=1024)
        else:
            logger.warning("Train.amp ignored: mixed precision runs on GPU only (device %s).", device)
    forward = dist.wrap(_LossForward(model)) if dist.world_size() > 1 else model.loss
    monitor = TrainMonitor(out, int(train_cfg.epochs_iters), steps_per_epoch, int(train_cfg.log_interval),
                           enabled=dist.is_main())
    run_ = _Run(cfg, out, hooks, model, forward, optimizer, scheduler, ema, scaler, train_loader,
                steps_per_epoch, monitor)
    run_.val_loader, run_.val_dataset = hooks.build_loader(cfg, "val")  # this rank's share of it
    if dist.is_main():
        names = getattr(train_dataset, "label_names", None)
        if names:
            write_text(out / LABELS, "".join(f"{i} {name}\n" for i, name in enumerate(names)))
    return run_


def _resume_source(cfg: DictConfig, out: Path) -> Optional[Path]:
    """The checkpoint to resume from: Train.resume_path, else the latest one when Train.auto_resume."""
    if cfg.Train.resume_path:
        path = Path(cfg.Train.resume_path)
        if not path.is_file():
            raise WeightsError(f"Train.resume_path {path} does not exist.")
        return path
    if not cfg.Train.auto_resume:
        return None
    return dist.broadcast_object(ckpt.latest_checkpoint(out) if dist.is_main() else None)


def _restore(run_: _Run, path: Path) -> None:
    """Load everything a checkpoint holds into the run (see module docstring)."""
    c = ckpt.load_checkpoint(path)
    missing, unexpected = run_.model.set_state_dict(c.model)
    if missing or unexpected:
        raise WeightsError(f"Checkpoint {path} does not fit {run_.cfg.Global.model}: missing "
                           f"{list(missing)[:5]}, unexpected {list(unexpected)[:5]}.")
    ckpt.load_optimizer_state(run_.optimizer, run_.model, c.optimizer or {})
    states = c.states
    if run_.ema is not None:
        if c.ema is not None:
            run_.ema.load_state_dict(c.ema, int(states.get("ema_step", 0)))
        else:
            logger.warning("Checkpoint %s has no EMA; the EMA starts from its weights.", path)
            run_.ema = ModelEMA(run_.model, run_.ema.decay)
    if run_.scaler is not None and states.get("grad_scaler"):
        run_.scaler.load_state_dict(states["grad_scaler"])
    run_.state = _State(int(states["epoch"]), int(states["step"]), states.get("best_score"),
                        states.get("best_epoch"))
    _restore_rng(run_, states)
    if int(states.get("steps_per_epoch", run_.steps_per_epoch)) != run_.steps_per_epoch:
        logger.warning("Steps per epoch changed (%s -> %d): the resumed run will not match an uninterrupted "
                       "one.",
                       states.get("steps_per_epoch"), run_.steps_per_epoch)
    logger.info("Resumed from %s: %d epochs and %d steps done, best mask AP %s (epoch %s).", path,
                run_.state.epoch, run_.state.step, run_.state.best_score, run_.state.best_epoch)
    if dist.is_main() and path.resolve().parent.parent == run_.out.resolve():
        _drop_later_checkpoints(run_.out, run_.state.step)


def _restore_rng(run_: _Run, states: Dict[str, Any]) -> None:
    run_.skip = int(states.get("iter_in_epoch", 0))
    rngs = states.get("rng")
    if rngs is None:  # an older InstSeg's checkpoint: its pickled random states are not read
        logger.warning("Checkpoint written by an older InstSeg, whose random states were pickled: they are "
                       "not read (unpickling a file can run code). Weights, optimizer, schedule, epoch and "
                       "step resume; the random streams are re-seeded, so the model's random draws differ "
                       "from an uninterrupted run's (data order and augmentation do not).")
        _seed(int(run_.cfg.Global.seed) + dist.rank() + 7919 * run_.state.epoch)
        return
    if len(rngs) != dist.world_size():
        logger.warning("Checkpoint written by %d ranks, resumed on %d: random streams are re-seeded, so data "
                       "order differs from an uninterrupted run.", len(rngs), dist.world_size())
        _seed(int(run_.cfg.Global.seed) + dist.rank() + 7919 * run_.state.epoch)
        return
    current = rngs[dist.rank()]
    if run_.skip > 0:
        run_.pending_rng = (states["rng_epoch_start"][dist.rank()], current)
    else:
        rng_state.restore(current)


def _drop_later_checkpoints(out: Path, step: int) -> None:
    """Resuming from an older checkpoint abandons the later ones: remove them so none is mixed in."""
    for ckpt_dir in [d for _, d in ckpt.epoch_checkpoints(out)] + [out / ckpt.INTERRUPTED]:
        states = ckpt.read_states(ckpt_dir)
        if states is not None and int(states["step"]) > step:
            logger.warning("Removing %s: it lies after the checkpoint this run resumes from.", ckpt_dir)
            shutil.rmtree(ckpt_dir, ignore_errors=True)


def _clear_stale(out: Path) -> None:
    """A fresh run must not list an earlier run's checkpoints as its own."""
    stale = [d for _, d in ckpt.epoch_checkpoints(out)] + [out / n for n in (ckpt.INTERRUPTED, ckpt.BEST)]
    stale = [d for d in stale if d.exists()]
    if stale:
        logger.warning("Fresh training in %s: removing the previous run's %s (Train.auto_resume=True would "
                       "have continued it).", out, ", ".join(d.name for d in stale))
        for d in stale:
            shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------------------------- loop
def _train_loop(run_: _Run) -> None:
    epochs = int(run_.cfg.Train.epochs_iters)
    if run_.state.epoch >= epochs:
        logger.info("Checkpoint already holds %d of %d epochs: nothing to train.", run_.state.epoch, epochs)
    for epoch in range(run_.state.epoch, epochs):
        _run_epoch(run_, epoch)
        run_.state.epoch = epoch + 1
        saved = _end_epoch(run_)
        if epoch + 1 < epochs and _stop_requested(run_, sync=True):
            _stop(run_, 0, saved)


def _epoch_iterator(run_: _Run, epoch: int) -> Any:
    """The epoch's batches, positioned after `run_.skip` already-trained ones, with the random state the
    uninterrupted run had at that point.

    The batch sampler (engine.data.loader.EpochBatchSampler) skips those batches without loading them:
    samples are seeded per (seed, epoch, index), so nothing before them shapes them."""
    sampler = getattr(run_.train_loader, "batch_sampler", None)
    if sampler is not None and hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    if run_.skip > 0:
        if not hasattr(sampler, "start_at"):
            raise InstSegError("Resuming mid-epoch needs a train loader whose batch_sampler has start_at() "
                               "(engine.data.loader.EpochBatchSampler).")
        sampler.start_at(run_.skip)
    if run_.pending_rng is not None:
        # the loader may draw from the global streams when it starts (Paddle's worker base seed)
        rng_state.restore(run_.pending_rng[0])
    run_.epoch_rng = rng_state.capture()
    iterator = iter(run_.train_loader)
    if run_.pending_rng is not None:
        rng_state.restore(run_.pending_rng[1])
        run_.pending_rng = None
    return iterator


def _run_epoch(run_: _Run, epoch: int) -> None:
    """Train one epoch (from batch `run_.skip` when resuming mid-epoch)."""
    run_.model.train()
    iterator = _epoch_iterator(run_, epoch)
    first, run_.skip = run_.skip, 0
    run_.monitor.new_epoch()
    for it, batch in enumerate(iterator, start=first + 1):
        losses = _train_step(run_, batch)
        run_.state.step += 1
        run_.monitor.step(epoch + 1, it, run_.state.step, losses, run_.last_lr)
        if it < run_.steps_per_epoch and _stop_requested(run_, sync=run_.state.step % _STOP_SYNC_EVERY == 0):
            _stop(run_, it, None)


def sum_losses(losses: Dict[str, paddle.Tensor]) -> paddle.Tensor:
    """The total loss (every value of `model.loss`, as a float32 scalar)."""
    if not losses:
        raise InstSegError("model.loss returned no losses.")
    if "loss" in losses:  # ppdet detectors add their total under "loss"; summing it would count twice
        raise InstSegError("model.loss must return the loss terms only, not their total under 'loss' "
                           "(docs/ENGINE.md, model protocol).")
    values = [v.astype("float32").reshape([]) for v in losses.values()]
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total


def _train_step(run_: _Run, batch: Dict[str, Any]) -> Dict[str, float]:
    """One optimizer step; returns the loss values (`loss` = their sum)."""
    scaler = run_.scaler
    with paddle.amp.auto_cast(enable=scaler is not None, level="O1"):
        losses = run_.forward(batch)
    total = sum_losses(losses)
    if scaler is not None:
        scaler.scale(total).backward()
        scaler.step(run_.optimizer)  # unscales before the optimizer clips and steps
        scaler.update()
    else:
        total.backward()
        run_.optimizer.step()
    run_.optimizer.clear_grad()
    run_.last_lr = float(run_.optimizer.get_lr())
    run_.scheduler.step()
    if run_.ema is not None:
        run_.ema.update(run_.model)
    # one device-to-host copy for all the loss values
    numbers = paddle.stack([total] + [v.astype("float32").reshape([]) for v in losses.values()]).numpy()
    values = dict(zip(["loss", *losses], (float(x) for x in numbers)))
    if scaler is None and not np.isfinite(values["loss"]):
        raise TrainingDiverged(
            f"The loss became {values['loss']} at step {run_.state.step + 1} (lr {run_.last_lr:.3g}; losses "
            f"{values}). Lower Train.learning_rate, raise Train.warmup_steps or set Train.clip_grad_norm.")
    return values


def _stop_requested(run_: _Run, sync: bool) -> bool:
    """Whether to stop for SIGTERM. Data-parallel ranks must stop at the same step, so they only decide
    where every rank asks (`sync`: every `_STOP_SYNC_EVERY` steps and at each epoch end)."""
    if dist.world_size() == 1:
        return bool(run_.stop.requested)
    return sync and dist.any_rank(bool(run_.stop.requested))


# --------------------------------------------------------------------------------------------- epoch end
def _due(epoch: int, interval: int, last: bool) -> bool:
    return last or (interval > 0 and epoch % interval == 0)


def _end_epoch(run_: _Run) -> Optional[Path]:
    """Evaluate, keep the best model, checkpoint, prune, log (see module docstring for the order).

    Returns the epoch checkpoint written (on every rank), if any."""
    epoch = run_.state.epoch
    last = epoch == int(run_.cfg.Train.epochs_iters)
    do_eval = _due(epoch, int(run_.cfg.Train.eval_interval), last)
    do_save = _due(epoch, int(run_.cfg.Train.save_interval), last)
    rng_now = rng_state.capture()
    rngs: List[Dict[str, Any]] = []
    if do_eval or do_save:
        _average_statistics(run_)
        rngs = dist.all_gather_object(rng_now)
    metrics = _maybe_eval(run_) if do_eval else None
    rng_state.restore(rng_now)  # evaluation leaves no trace in the random streams
    saved = _keep(run_, metrics, do_save, rngs) if run_.main else None
    if saved is None and do_save:  # every rank must know it exists: a stop right after it then saves nothing
        name = ckpt.epoch_name(epoch)
        saved = run_.out / name / f"{name}.pdparams"
    if (do_eval or do_save) and not last:
        # the other ranks wait here, not in the next gradient all-reduce (gloo's 30 s), while rank 0
        # computes the metrics and writes checkpoints; after the last epoch they finish without waiting
        dist.barrier()
    return saved


def _average_statistics(run_: _Run) -> None:
    """Every rank's BN statistics, of the weights and of their EMA, replaced by their mean over ranks."""
    dist.average_buffers(run_.model, *([run_.ema.state_dict()] if run_.ema is not None else []))


def _keep(run_: _Run, metrics: Optional[Dict[str, Any]], do_save: bool, rngs: List[Dict[str, Any]]
          ) -> Optional[Path]:
    """Rank 0's part of an epoch end: best model, epoch checkpoint, pruning, logs, train_result.json."""
    epoch = run_.state.epoch
    score = None if metrics is None else float(metrics["AP"])
    improved = score is not None and (run_.state.best_score is None or score >= run_.state.best_score)
    if improved:
        run_.state.best_score, run_.state.best_epoch = score, epoch
    saved = None
    if improved:
        _save(run_, ckpt.BEST, score, rngs)
        logger.info("New best mask AP %.4f at epoch %d: %s", score, epoch, run_.out / ckpt.BEST)
    if do_save:
        saved = _save(run_, ckpt.epoch_name(epoch), score, rngs)
        for gone in ckpt.prune(run_.out, int(run_.cfg.Train.keep_checkpoints)):
            logger.info("Removed old checkpoint %s", gone)
    if metrics is not None:
        run_.monitor.evaluated(epoch, run_.state.step, metrics)
    write_json(run_.out / "train_result.json", _result(run_, done=False))
    return saved


def _maybe_eval(run_: _Run) -> Optional[Dict[str, Any]]:
    """Mask/box AP on the whole val set, with the EMA weights when EMA is on: every rank predicts its share,
    rank 0 gets the metrics of all (None elsewhere)."""
    run_.model.eval()
    with (run_.ema.apply_to(run_.model) if run_.ema is not None else nullcontext()), paddle.no_grad():
        found = run_.hooks.evaluate(run_.model, run_.val_loader, run_.val_dataset)
    run_.model.train()
    if not run_.main:
        return None
    metrics = dict(found or {})
    if metrics.get("AP") is None:
        raise InstSegError(f"The evaluator returned no mask AP ('AP'): {sorted(metrics)}")
    logger.info("Eval epoch %d: mask AP %.4f%s", run_.state.epoch, float(metrics["AP"]),
                "" if metrics.get("bbox_AP") is None else f", bbox AP {float(metrics['bbox_AP']):.4f}")
    return metrics


def _save(run_: _Run, name: str, score: Optional[float], rngs: List[Dict[str, Any]], iter_in_epoch: int = 0,
          epoch_rngs: Optional[List[Dict[str, Any]]] = None) -> Path:
    """Write checkpoint `name` (rank 0 only); `rngs`/`epoch_rngs`: every rank's random states now / at the
    start of the epoch (the latter only mid-epoch)."""
    s = run_.state
    states = {
        "metric": score, "epoch": s.epoch, "step": s.step, "iter_in_epoch": iter_in_epoch,
        "steps_per_epoch": run_.steps_per_epoch, "best_score": s.best_score, "best_epoch": s.best_epoch,
        "ema_step": 0 if run_.ema is None else run_.ema.step, "world_size": dist.world_size(),
        "model_name": run_.cfg.Global.model, "seed": int(run_.cfg.Global.seed),
        "rng": rngs, "rng_epoch_start": epoch_rngs,
        "grad_scaler": None if run_.scaler is None else _plain(run_.scaler.state_dict()),
    }
    opt_state = ckpt.optimizer_state(run_.optimizer, run_.model, s.epoch)
    ema_state = None if run_.ema is None else run_.ema.state_dict()
    return ckpt.save_checkpoint(run_.out, name, run_.model.state_dict(), opt_state, states, ema_state)


def _plain(state: Dict[str, Any]) -> Dict[str, Any]:
    """A state dict with NumPy values as lists / Python numbers, for the JSON .pdstates."""
    return {k: v.tolist() if isinstance(v, (np.ndarray, np.generic)) else v for k, v in state.items()}


def _stop(run_: _Run, it: int, saved: Optional[Path]) -> None:
    """SIGTERM: make sure a checkpoint holds this point, then raise TrainingInterrupted.

    Mid-epoch (`it` batches of the current epoch done) the `interrupted` checkpoint also keeps every rank's
    random state from the start of the epoch, to replay its data order; at an epoch end (`it` = 0) the
    epoch checkpoint `saved` serves when there is one."""
    if saved is None:
        _average_statistics(run_)
        rngs = dist.all_gather_object(rng_state.capture())
        epoch_rngs = dist.all_gather_object(run_.epoch_rng) if it else None
        if run_.main:
            saved = _save(run_, ckpt.INTERRUPTED, None, rngs, it, epoch_rngs)
    where = f"epoch {run_.state.epoch + 1}, iteration {it}" if it else f"the end of epoch {run_.state.epoch}"
    err = TrainingInterrupted(
        f"Stopped by SIGTERM at {where} (step {run_.state.step}); checkpoint {saved}. Continue with "
        "Train.auto_resume=True (same Global.output) or Train.resume_path=<that checkpoint>.")
    if run_.main:
        logger.warning("%s", err)
        err.report = _result(run_, done=False)
        write_json(run_.out / "train_result.json", err.report)
    raise err


# --------------------------------------------------------------------------------------------- results
def _result(run_: _Run, done: bool) -> Dict[str, Any]:
    s = run_.state
    return build_result(run_.out, run_.cfg.Global.model, int(run_.cfg.Train.epochs_iters), s.epoch, s.step,
                        s.best_epoch, s.best_score, run_.monitor.visualdl_log, done)


def _export_best(run_: _Run) -> None:
    """best_model/inference via engine.deployment.exporter, when it exists and Train.export_best."""
    if not run_.cfg.Train.export_best or not (run_.out / ckpt.BEST).is_dir():
        return
    try:
        from engine.deployment.exporter import export_model
    except ImportError:
        logger.warning("engine.deployment.exporter is not available: best_model/inference not written.")
        return
    best = ckpt.load_checkpoint(run_.out / ckpt.BEST / f"{ckpt.BEST}.pdparams")
    run_.model.set_state_dict(best.ema if best.ema is not None else best.model)  # the evaluated weights
    run_.model.eval()
    try:
        export_model(run_.model, run_.cfg, str(run_.out / ckpt.BEST / "inference"))
    except ModeNotAvailableError as exc:
        logger.warning("best_model/inference not written: %s", exc)


def _finish(run_: _Run) -> Dict[str, Any]:
    """Rank 0 exports the best model, writes the final train_result.json and returns it; the other ranks
    return their progress at once (no collective, no reading of the folder rank 0 is still writing)."""
    if not run_.main:
        return {"rank": dist.rank(), "epochs_done": run_.state.epoch, "steps_done": run_.state.step}
    _export_best(run_)
    run_.monitor.plot()
    result = _result(run_, done=True)
    write_json(run_.out / "train_result.json", result)
    logger.info("Training done: best mask AP %s at epoch %s.", run_.state.best_score, run_.state.best_epoch)
    return result
