"""This process's random states (Python's `random`, NumPy's global stream, Paddle's CPU and CUDA generators)
as plain data: dicts, lists, ints, floats and strings only, so a checkpoint stores them as JSON and reading
one back runs no code (no pickle).

Shape of `capture()`:
```
{"python": {"version": 3, "internal": [625 ints], "gauss_next": float | None},
 "numpy": {"bit_generator": "MT19937", "key": [624 ints], "pos": int, "has_gauss": int, "gauss": float},
 "paddle": [{"device": int, "seed": int, "offset": int, "engine": str}, ...],   # one per generator
 "cuda": [...]}                                                                  # only with a GPU
```
"""
import random
from typing import Any, Dict, List

import numpy as np
import paddle


def _cuda_available() -> bool:
    return bool(paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0)


def _python_state() -> Dict[str, Any]:
    version, internal, gauss_next = random.getstate()
    return {"version": int(version), "internal": [int(v) for v in internal], "gauss_next": gauss_next}


def _set_python_state(state: Dict[str, Any]) -> None:
    random.setstate((int(state["version"]), tuple(int(v) for v in state["internal"]), state["gauss_next"]))


def _numpy_state() -> Dict[str, Any]:
    state = np.random.get_state(legacy=False)
    return {"bit_generator": str(state["bit_generator"]), "key": [int(v) for v in state["state"]["key"]],
            "pos": int(state["state"]["pos"]), "has_gauss": int(state["has_gauss"]),
            "gauss": float(state["gauss"])}


def _set_numpy_state(state: Dict[str, Any]) -> None:
    np.random.set_state({"bit_generator": state["bit_generator"],
                         "state": {"key": np.asarray(state["key"], np.uint32), "pos": int(state["pos"])},
                         "has_gauss": int(state["has_gauss"]), "gauss": float(state["gauss"])})


def _paddle_states(generators: List[Any]) -> List[Dict[str, Any]]:
    """Paddle's GeneratorState objects as dicts. Their pickle form (`__getstate__`) is a tuple of plain
    values: (device, seed, offset, the engine's text state as a list of byte values)."""
    out = []
    for gen in generators:
        device, seed, offset, engine = gen.__getstate__()
        out.append({"device": int(device), "seed": int(seed), "offset": int(offset),
                    "engine": bytes(engine).decode("ascii")})
    return out


def _generators(states: List[Dict[str, Any]]) -> List[Any]:
    """Inverse of `_paddle_states` (GeneratorState has no public constructor: built as pickle would)."""
    cls = paddle.base.core.GeneratorState
    out = []
    for s in states:
        gen = cls.__new__(cls)
        engine = list(s["engine"].encode("ascii"))
        gen.__setstate__((int(s["device"]), int(s["seed"]), int(s["offset"]), engine))
        out.append(gen)
    return out


def capture() -> Dict[str, Any]:
    """This process's random states, as plain JSON-ready data (module docstring)."""
    state: Dict[str, Any] = {
        "python": _python_state(),
        "numpy": _numpy_state(),
        "paddle": _paddle_states(paddle.get_rng_state(device="cpu")),
    }
    if _cuda_available():
        state["cuda"] = _paddle_states(paddle.get_cuda_rng_state())
    return state


def restore(state: Dict[str, Any]) -> None:
    """Inverse of `capture` (a CUDA state is ignored where there is no GPU)."""
    _set_python_state(state["python"])
    _set_numpy_state(state["numpy"])
    paddle.set_rng_state(_generators(state["paddle"]), device="cpu")
    if "cuda" in state and _cuda_available():
        paddle.set_cuda_rng_state(_generators(state["cuda"]))
