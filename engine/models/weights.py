"""Load a local `.pdparams` file into a model, PaddleDetection-style.

Names are matched exactly first; a model entry with no exact match takes the longest file name it ends
with (`backbone.res2.res2a.branch2a.conv.weight` <- `res2.res2a.branch2a.conv.weight`), as ppdet's
`match_state_dict` does, so ImageNet backbone weights load too; a file's `backbone.res5.*` also counts as
`res5.*` (the C4 head's res5). Entries whose shape differs (another num_classes) are skipped, one log line
each; missing and unused entries are reported in one line each.

Aliases: a model that registers one tensor under two names (PaddleDetection's SOLOv2 does) has both in its
state_dict; a file may hold either name or both (then they must be equal). Extra renames can be passed as
`aliases` {file name: model name}.
"""
import logging
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import paddle
import paddle.nn as nn

from engine.errors import WeightsError

logger = logging.getLogger("instseg")
_LISTED = 20  # names shown in a missing / unused summary line


def load_weights(model: nn.Layer, path: Union[str, os.PathLike],
                 aliases: Optional[Mapping[str, str]] = None) -> List[str]:
    """Load the weights file `path` into `model`.

    Args:
        model: the layer to fill (its state_dict names are PaddleDetection's).
        path: a local `.pdparams` file (the suffix may be left out).
        aliases: optional {name in the file: name in the model} renames, applied before matching.
    Returns:
        The file entries skipped because their shape differs from the model's.
    Raises:
        WeightsError: the file is missing, unreadable, not a state dict, or shares no entry with the model.
    """
    file = _resolve(path)
    state = _read(file)
    if aliases:
        state = {aliases.get(k, k): v for k, v in state.items()}
    groups = _tensor_groups(model)
    matched = _match(groups, state, file)
    target: Dict[str, np.ndarray] = {}
    skipped: List[str] = []
    model_state = model.state_dict()
    for name, file_names in matched.items():
        tensor = model_state[name]
        value = _agree(file_names, state, file)
        if list(value.shape) != list(tensor.shape):
            logger.warning("Weights %s: skipped %s: shape %s in the file, %s in the model.", file,
                           file_names[0], list(value.shape), list(tensor.shape))
            skipped.append(file_names[0])
            continue
        dtype = _numpy_dtype(tensor)
        target[name] = value if value.dtype == dtype else value.astype(dtype)
    if not target:
        raise WeightsError(f"No entry of the weights file {file} fits the model ({len(state)} entries in "
                           f"the file, {len(skipped)} of them with another shape): is it a file of another "
                           "model?")
    for name, value in target.items():  # in place: set_state_dict warns once per entry not in the file
        model_state[name].set_value(value)
    used = {n for names in matched.values() for n in names}
    _report(file, sorted(set(groups) - set(matched)), "model entries not in the file (left as initialised)")
    _report(file, sorted(set(state) - used), "file entries the model does not use")
    logger.info("Weights %s: loaded %d of %d model entries.", file, len(target), len(groups))
    return skipped


def load_trained_weights(model: nn.Layer, path: Union[str, os.PathLike], model_name: str,
                         num_classes: int) -> None:
    """Load the weights of a trained model (evaluate, predict, export), which must fill every layer:
    an entry skipped for its shape (another num_classes or Architecture) is an error, since layers left
    as initialised would give meaningless results silently.

    Raises:
        WeightsError: as `load_weights`, or some entries do not fit `model_name` with `num_classes`.
    """
    skipped = load_weights(model, path)
    if skipped:
        raise WeightsError(f"{path}: {len(skipped)} weights do not fit {model_name} with "
                           f"Train.num_classes={num_classes} (e.g. {', '.join(skipped[:3])}); set the "
                           "num_classes and Architecture the model was trained with.")


def _resolve(path: Union[str, os.PathLike]) -> Path:
    text = str(path)
    if text.startswith(("http://", "https://")):
        raise WeightsError(f"Weights {text} is a URL: only local files are read; download it and pass "
                           "its path.")
    file = Path(text).expanduser()
    if not file.is_file() and Path(text + ".pdparams").is_file():
        file = Path(text + ".pdparams")
    if file.is_dir():
        raise WeightsError(f"Weights path {file} is a directory; give the .pdparams file in it.")
    if not file.is_file():
        raise WeightsError(f"Weights file {file} does not exist.")
    return file


def _read(file: Path) -> Dict[str, np.ndarray]:
    try:
        state = paddle.load(str(file), return_numpy=True)
    except Exception as exc:  # paddle.load raises pickle, EOF, value and type errors alike
        raise WeightsError(f"Weights file {file} cannot be read ({type(exc).__name__}: {exc}); "
                           "is it a complete .pdparams file?") from exc
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise WeightsError(f"Weights file {file} does not hold a state dict (name -> array), "
                           f"but a {type(state).__name__}.")
    return {k: np.asarray(v) for k, v in state.items() if not _is_meta(v)}


def _is_meta(value: object) -> bool:
    """Non-tensor entries some savers add (e.g. `StructuredToParameterName@@`)."""
    return isinstance(value, (dict, str)) or value is None


def _tensor_groups(model: nn.Layer) -> Dict[str, List[str]]:
    """Model state_dict names -> all names of the same tensor (first name first; aliases after it)."""
    groups: Dict[str, List[str]] = {}
    first: Dict[int, str] = {}
    for name, tensor in model.state_dict().items():
        key = id(tensor)
        if key in first:
            groups[first[key]].append(name)
        else:
            first[key] = name
            groups[name] = [name]
    return groups


def _match(groups: Mapping[str, List[str]], state: Mapping[str, np.ndarray],
           file: Path) -> Dict[str, List[str]]:
    """Model tensor (first name) -> the file names that fill it: exact names (all of a tensor's names the
    file holds), else the longest suffix of a model name that is a file name not used exactly."""
    matched: Dict[str, List[str]] = {}
    for canonical, names in groups.items():
        present = [n for n in names if n in state]
        if present:
            matched[canonical] = present
    used = {n for names in matched.values() for n in names}
    by_suffix: Dict[str, str] = {}
    for key in state:
        if key not in used:
            by_suffix.setdefault(key, key)
            if key.startswith("backbone.res5."):  # ppdet: a backbone's res5 also fills the C4 head's res5
                by_suffix.setdefault(key[len("backbone."):], key)
    claimed: Dict[str, str] = {}
    for canonical, names in groups.items():
        if canonical in matched:
            continue
        found = _longest_suffix(names, by_suffix)
        if found is None:
            continue
        if found in claimed:
            raise WeightsError(f"Weights file {file}: entry {found} fits both {claimed[found]} and "
                               f"{canonical} of the model; rename it in the file or pass `aliases`.")
        claimed[found] = canonical
        matched[canonical] = [found]
    return matched


def _longest_suffix(names: List[str], by_suffix: Mapping[str, str]) -> Optional[str]:
    best: Optional[Tuple[int, str]] = None
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts)):
            key = by_suffix.get(".".join(parts[i:]))
            if key is not None:
                if best is None or len(parts) - i > best[0]:
                    best = (len(parts) - i, key)
                break
    return None if best is None else best[1]


def _agree(file_names: List[str], state: Mapping[str, np.ndarray], file: Path) -> np.ndarray:
    """The value of a tensor that the file holds under one or more (alias) names; they must be equal."""
    value = state[file_names[0]]
    for other in file_names[1:]:
        if state[other].shape != value.shape or not np.array_equal(state[other], value):
            raise WeightsError(f"Weights file {file} holds different values under {file_names[0]} and "
                               f"{other}, which are two names of one model tensor.")
    return value


def _numpy_dtype(tensor: paddle.Tensor) -> np.dtype:
    return np.dtype(str(tensor.dtype).replace("paddle.", ""))


def _report(file: Path, names: List[str], what: str) -> None:
    if names:
        more = f" ... and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
        logger.warning("Weights %s: %d %s: %s%s", file, len(names), what, ", ".join(names[:_LISTED]), more)
