"""Golden outputs of PaddleDetection's ResNet / FPN / Res5Head, for tests/test_backbones.py.

Both sides fill the same state_dict names with the same seeded values (`seeded_state`) and run the same
inputs; `summary` reduces each output to its shape, sum, mean |x| and a few samples.
tests/fixtures/ppdet_backbone_golden.json was written by `tools/make_backbone_golden.py` from
PaddleDetection develop (666f597fd00d3157e84dd9fb2dd3f40bf9918ebc) on paddlepaddle 3.3.1 (CPU).
"""
from typing import Any, Callable, Dict, List, Sequence

import numpy as np
import paddle

from engine.models.backbones.resnet import ResNet
from engine.models.heads.res5_head import Res5Head
from engine.models.necks.fpn import FPN

# case -> (layer kind, constructor keywords shared by both implementations, mode)
CASES: Dict[str, Dict[str, Any]] = {
    "resnet50_b_eval": {"kind": "resnet", "kwargs": {"depth": 50}, "mode": "eval"},
    "resnet50_vd_train_bn": {"kind": "resnet", "mode": "train",
                             "kwargs": {"depth": 50, "variant": "d", "freeze_norm": False, "freeze_at": -1,
                                        "lr_mult_list": [0.05, 0.05, 0.1, 0.15]}},
    "resnext101_vd_64x4d_eval": {"kind": "resnet", "mode": "eval",
                                 "kwargs": {"depth": 101, "variant": "d", "groups": 64, "base_width": 4}},
    "resnet34_vd_eval": {"kind": "resnet", "kwargs": {"depth": 34, "variant": "d"}, "mode": "eval"},
    "resnet50_c4_eval": {"kind": "resnet", "kwargs": {"depth": 50, "num_stages": 3, "return_idx": [2]},
                         "mode": "eval"},
    "fpn_on_resnet50_b": {"kind": "fpn", "mode": "eval",
                          "kwargs": {"in_channels": [256, 512, 1024, 2048], "out_channel": 256}},
    "res5_head_train": {"kind": "res5", "kwargs": {"depth": 50}, "mode": "train"},
}
SAMPLES = 8
OURS: Dict[str, Callable] = {"resnet": ResNet, "fpn": FPN, "res5": Res5Head}


def image() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype("float32")


def fpn_inputs() -> List[np.ndarray]:
    rng = np.random.default_rng(2)
    return [rng.standard_normal((2, c, 64 // s, 64 // s)).astype("float32")
            for c, s in zip((256, 512, 1024, 2048), (4, 8, 16, 32))]


def roi_features() -> np.ndarray:
    return np.random.default_rng(3).standard_normal((3, 1024, 14, 14)).astype("float32")


def seeded_state(entries: Sequence[Any]) -> Dict[str, np.ndarray]:
    """Values for (name, shape) pairs in state_dict order: fan-in scaled conv weights, non-trivial BN."""
    rng = np.random.default_rng(0)
    state = {}
    for name, shape in entries:
        shape = [int(d) for d in shape]
        noise = rng.standard_normal(shape).astype("float32")
        if len(shape) == 4:
            value = noise * np.float32(np.sqrt(1.0 / np.prod(shape[1:])))
        elif name.endswith("norm.weight"):
            value = 1 + 0.1 * noise
        elif name.endswith("_variance"):
            value = 1 + 0.1 * np.abs(noise)
        else:  # BN bias / mean, conv bias
            value = 0.1 * noise
        state[name] = value.astype("float32")
    return state


def summary(outputs: Sequence[np.ndarray]) -> List[Dict[str, Any]]:
    result = []
    for out in outputs:
        flat = out.reshape(-1).astype("float64")
        picks = np.linspace(0, flat.size - 1, SAMPLES).astype(int)
        result.append({"shape": list(out.shape), "sum": float(flat.sum()),
                       "abs_mean": float(np.abs(flat).mean()), "samples": [float(flat[i]) for i in picks]})
    return result


def run_case(factories: Dict[str, Callable], case: Dict[str, Any]) -> List[np.ndarray]:
    """Build `case` with `factories` (kind -> constructor), fill it with `seeded_state`, run its input."""
    layer = factories[case["kind"]](**case["kwargs"])
    state = layer.state_dict()
    values = seeded_state([(k, v.shape) for k, v in state.items()])
    for name, tensor in state.items():
        tensor.set_value(values[name])
    getattr(layer, case["mode"])()
    inputs = {"resnet": image, "fpn": fpn_inputs, "res5": roi_features}[case["kind"]]()
    arg = [paddle.to_tensor(x) for x in inputs] if isinstance(inputs, list) else paddle.to_tensor(inputs)
    out = layer(arg)
    return [t.numpy() for t in (out if isinstance(out, (list, tuple)) else [out])]


def assert_matches(got: Sequence[Dict[str, Any]], expected: Sequence[Dict[str, Any]]) -> None:
    """`summary`s agree: shapes equal, mean |x| within 1e-4 relative, sums and samples within 1e-4 of mean |x|
    per element (samples also 1e-3 relative)."""
    import pytest

    assert [g["shape"] for g in got] == [e["shape"] for e in expected]
    for g, e in zip(got, expected):
        scale = e["abs_mean"]
        assert g["abs_mean"] == pytest.approx(scale, rel=1e-4)
        assert g["sum"] == pytest.approx(e["sum"], abs=1e-4 * scale * np.prod(e["shape"]))
        np.testing.assert_allclose(g["samples"], e["samples"], rtol=1e-3, atol=1e-4 * scale)
