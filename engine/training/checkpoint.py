"""Training checkpoints: atomic multi-file save, exact-resume load, pruning, best model.

Layout (epochs counted from 1: `epoch_3` holds the state after 3 complete epochs, and its `.pdstates` says
`epoch: 3`, as PaddleX's `.pdstates` does):
```
{output}/epoch_<n>/epoch_<n>.pdparams   weights to evaluate / export (the EMA weights when EMA is on)
                   epoch_<n>.pdema      with EMA only: the raw training weights (ppdet's swapped convention)
                   epoch_<n>.pdopt      optimizer state + LR schedule (`LR_Scheduler`), `last_epoch`
                   epoch_<n>.pdstates   JSON {format, metric, epoch, step, best_score, best_epoch, RNG states,
                                        ...}: plain data only (engine.training.rng_state), no pickle
{output}/interrupted/interrupted.*      written on SIGTERM, mid-epoch (`iter_in_epoch` > 0)
{output}/best_model/best_model.*        the evaluated epoch with the highest mask AP (same files)
```
A checkpoint is written into `.<name>.tmp/` and committed by renaming the directory, so a directory with
its final name is always complete: a crash mid-write leaves only a `.tmp` directory, removed by `recover()`,
and the previous checkpoints untouched. Replacing a directory (best_model) goes through `.<name>.old`,
which `recover()` puts back if the process died between the two renames.

Optimizer accumulators are stored under the structured parameter names (`backbone.conv1.weight_velocity_0`)
rather than Paddle's process-global generated names, so a resumed process that created its layers in
another order still gets the right state.
"""
import io
import json
import logging
import os
import pickle
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import paddle

from engine.errors import WeightsError

logger = logging.getLogger("instseg")

FORMAT = "instseg-checkpoint-2"  # .pdstates is JSON
LEGACY_FORMAT = "instseg-checkpoint-1"  # .pdstates was a paddle.save'd dict with base64-pickled RNG states
_LEGACY_PICKLED = ("rng", "rng_epoch_start", "grad_scaler")  # never unpickled: dropped when read
BEST = "best_model"
INTERRUPTED = "interrupted"
_EPOCH_DIR = re.compile(r"^epoch_(\d+)$")


@dataclass
class Checkpoint:
    """A loaded checkpoint: raw training weights, optimizer state, EMA weights, training state."""

    path: Path  # the .pdparams file
    model: Dict[str, Any]
    optimizer: Optional[Dict[str, Any]]
    ema: Optional[Dict[str, Any]]
    states: Dict[str, Any]


def epoch_name(epoch: int) -> str:
    """Directory / file stem of the checkpoint after `epoch` complete epochs."""
    return f"epoch_{epoch}"


def files_of(name: str, ema: bool) -> Dict[str, str]:
    """PaddleX tag -> path relative to the output directory, for checkpoint `name`."""
    tags = ["pdparams", "pdopt", "pdstates"] + (["pdema"] if ema else [])
    return {tag: f"{name}/{name}.{tag}" for tag in tags}


# ----------------------------------------------------------------------------------------------- writing
def _write_file(obj: Any, path: Path) -> None:
    """Serialise `obj` with paddle.save and flush it to disk."""
    paddle.save(obj, str(path))
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _write_states(states: Dict[str, Any], path: Path) -> None:
    """Write the training state as JSON (plain data: reading it back runs no code) and flush it."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(states, fh)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _commit_dir(tmp: Path, final: Path) -> None:
    """Rename the finished `tmp` directory onto `final`, replacing an existing one via `.<name>.old`."""
    old = final.parent / f".{final.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    if old.exists():
        shutil.rmtree(old)


def save_checkpoint(output: Path, name: str, model_state: Dict[str, Any], optimizer_state: Dict[str, Any],
                    states: Dict[str, Any], ema_state: Optional[Dict[str, Any]] = None) -> Path:
    """Write checkpoint `name` under `output` atomically and return its `.pdparams` path.

    `model_state` are the raw training weights; with `ema_state`, `.pdparams` holds the EMA weights and
    `.pdema` the raw ones (PaddleX/ppdet convention: `.pdparams` is what gets evaluated and exported).
    """
    output = Path(output)
    tmp = output / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    weights = ema_state if ema_state is not None else model_state
    _write_file(weights, tmp / f"{name}.pdparams")
    if ema_state is not None:
        _write_file(model_state, tmp / f"{name}.pdema")
    _write_file(optimizer_state, tmp / f"{name}.pdopt")
    _write_states({"format": FORMAT, **states}, tmp / f"{name}.pdstates")
    _fsync_dir(tmp)
    _commit_dir(tmp, output / name)
    return output / name / f"{name}.pdparams"


def recover(output: Path) -> None:
    """Clean up after a crash: drop unfinished `.X.tmp` dirs, restore `.X.old` dirs whose `X` is gone."""
    output = Path(output)
    if not output.is_dir():
        return
    for entry in output.iterdir():
        if not entry.is_dir() or not entry.name.startswith("."):
            continue
        if entry.name.endswith(".tmp"):
            logger.warning("Removing unfinished checkpoint %s (the run stopped while writing it).", entry)
            shutil.rmtree(entry)
        elif entry.name.endswith(".old"):
            final = output / entry.name[1:-len(".old")]
            if final.exists():
                shutil.rmtree(entry)
            else:
                os.replace(entry, final)


# --------------------------------------------------------------------------------------------- optimizer
def _param_names(model: paddle.nn.Layer) -> Dict[str, str]:
    """Paddle's generated parameter name -> structured name, longest first (prefix matching)."""
    pairs = {p.name: n for n, p in model.named_parameters()}
    return dict(sorted(pairs.items(), key=lambda kv: -len(kv[0])))


def _rename_keys(state: Dict[str, Any], mapping: Dict[str, str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in state.items():
        for old, new in mapping.items():
            if key == old or key.startswith(old + "_"):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def optimizer_state(optimizer: paddle.optimizer.Optimizer, model: paddle.nn.Layer,
                    last_epoch: int) -> Dict[str, Any]:
    """The optimizer's state keyed by structured parameter names, plus ppdet's `last_epoch`."""
    state = _rename_keys(optimizer.state_dict(), _param_names(model))
    state["last_epoch"] = last_epoch
    return state


def load_optimizer_state(optimizer: paddle.optimizer.Optimizer, model: paddle.nn.Layer,
                         state: Dict[str, Any]) -> None:
    """Inverse of `optimizer_state`."""
    state = {k: v for k, v in state.items() if k != "last_epoch"}
    inverse = {v: k for k, v in _param_names(model).items()}
    inverse = dict(sorted(inverse.items(), key=lambda kv: -len(kv[0])))
    optimizer.set_state_dict(_rename_keys(state, inverse))


# ------------------------------------------------------------------------------------------------ reading
def _load(path: Path) -> Any:
    try:
        return paddle.load(str(path))
    except Exception as exc:  # paddle raises assorted types for a truncated or foreign file
        raise WeightsError(f"Cannot read checkpoint file {path}: {exc}") from exc


class _PlainUnpickler(pickle.Unpickler):
    """Reads pickles of plain containers, numbers and strings only: any class or function reference (the
    way a pickle runs code) is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_states(path: Path) -> Dict[str, Any]:
    """A `.pdstates` file: JSON, or an older InstSeg's paddle.save'd dict read without running code (its
    pickled RNG / scaler states are dropped, `legacy: True` is set). Raises WeightsError otherwise."""
    data = path.read_bytes()
    try:
        if data.lstrip()[:1] == b"{":
            states = json.loads(data.decode("utf-8"))
        else:
            states = _PlainUnpickler(io.BytesIO(data)).load()
            if isinstance(states, dict) and states.get("format") == LEGACY_FORMAT:
                states = {k: v for k, v in states.items() if k not in _LEGACY_PICKLED}
                states["legacy"] = True
    except (ValueError, pickle.UnpicklingError, EOFError, TypeError) as exc:
        raise WeightsError(f"{path} is not an InstSeg training state ({exc}), so the run cannot resume "
                           "from it; use Train.pretrain_weight_path to start from its weights.") from exc
    if not isinstance(states, dict) or states.get("format") not in (FORMAT, LEGACY_FORMAT):
        raise WeightsError(f"{path} is not an InstSeg training state, so the run cannot resume exactly; use "
                           "Train.pretrain_weight_path to start from its weights.")
    return states


def load_checkpoint(pdparams: Path) -> Checkpoint:
    """Load the checkpoint whose weights file is `pdparams` (siblings .pdopt, .pdstates, .pdema)."""
    pdparams = Path(pdparams)
    if pdparams.suffix != ".pdparams":
        raise WeightsError(f"Train.resume_path must name a checkpoint's .pdparams file, got {pdparams}.")
    stem = pdparams.with_suffix("")
    needed = [pdparams, stem.with_suffix(".pdopt"), stem.with_suffix(".pdstates")]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise WeightsError(f"Checkpoint {pdparams} is incomplete: missing {', '.join(missing)}. "
                           "Resume needs the .pdparams, .pdopt and .pdstates of one checkpoint.")
    states = _read_states(stem.with_suffix(".pdstates"))
    weights = _load(pdparams)
    pdema = stem.with_suffix(".pdema")
    if pdema.is_file():
        return Checkpoint(pdparams, _load(pdema), _load(stem.with_suffix(".pdopt")), weights, states)
    return Checkpoint(pdparams, weights, _load(stem.with_suffix(".pdopt")), None, states)


def read_states(ckpt_dir: Path) -> Optional[Dict[str, Any]]:
    """The `.pdstates` of checkpoint directory `ckpt_dir`, or None when absent or unreadable."""
    path = Path(ckpt_dir) / f"{Path(ckpt_dir).name}.pdstates"
    if not path.is_file():
        return None
    try:
        return _read_states(path)
    except (WeightsError, OSError):  # unreadable: "not a usable checkpoint", reported by the caller
        return None


def epoch_checkpoints(output: Path) -> List[Tuple[int, Path]]:
    """(epoch, dir) of the complete epoch checkpoints in `output`, oldest first."""
    found = []
    output = Path(output)
    if output.is_dir():
        for entry in output.iterdir():
            m = _EPOCH_DIR.match(entry.name)
            if m and entry.is_dir() and (entry / f"{entry.name}.pdparams").is_file():
                found.append((int(m.group(1)), entry))
    return sorted(found)


def latest_checkpoint(output: Path) -> Optional[Path]:
    """The `.pdparams` of the most advanced complete checkpoint in `output` (epoch or interrupted)."""
    best: Optional[Tuple[int, Path]] = None
    candidates = [d for _, d in epoch_checkpoints(output)] + [Path(output) / INTERRUPTED]
    for ckpt_dir in candidates:
        states = read_states(ckpt_dir)
        if states is None:
            continue
        if best is None or int(states["step"]) >= best[0]:
            best = (int(states["step"]), ckpt_dir / f"{ckpt_dir.name}.pdparams")
    return None if best is None else best[1]


def prune(output: Path, keep: int) -> List[Path]:
    """Delete all but the newest `keep` epoch checkpoints (keep <= 0: keep all), and an `interrupted`
    checkpoint that the newest epoch checkpoint has overtaken. Returns the deleted directories."""
    ckpts = epoch_checkpoints(output)
    doomed = [d for _, d in ckpts[:-keep]] if keep > 0 else []
    interrupted = Path(output) / INTERRUPTED
    if ckpts and interrupted.is_dir():
        newest = read_states(ckpts[-1][1])
        states = read_states(interrupted)
        if newest is not None and (states is None or int(states["step"]) <= int(newest["step"])):
            doomed.append(interrupted)
    for d in doomed:
        shutil.rmtree(d, ignore_errors=True)
    return doomed
