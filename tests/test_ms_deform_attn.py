"""The compiled CPU multi-scale deformable attention (ms_deform_attn_cpu.cc, through
ms_deform_attn.deformable_sample) against the grid_sample formulation: output and the gradients of values,
locations and weights on random shapes (several levels of different sizes, B > 1, points off the maps and
on their borders), thread-count independence, the fallbacks (static graphs, the switches, float64, a failed
build) and the attention layer using it. The first test in a fresh cache compiles the operator (~10-60 s).
"""
import logging
from typing import List, Sequence, Tuple

import numpy as np
import paddle
import pytest

from engine.models.ops import ms_deform_attn
from engine.models.ops.ms_deform_attn import MSDeformableAttention, deformable_sample, grid_sample_formulation
from compiled_op_helpers import count_calls, forbid, paddle_threads, require_built

NATIVE = ms_deform_attn.NATIVE


@pytest.fixture(scope="module")
def native():
    return require_built(NATIVE)


def _case(seed: int, batch: int, heads: int, head_dim: int, queries: int, points: int,
          sizes: Sequence[Tuple[int, int]]) -> List[np.ndarray]:
    """Values per level [B, H*W, M*D], locations [B, Q, M, L, P, 2] from -0.3 to 1.3 (about a third off the
    map) plus points exactly on the borders and at -1 / W pixels, softmax weights [B, Q, M, L, P]."""
    rng = np.random.default_rng(seed)
    levels = len(sizes)
    values = [rng.standard_normal((batch, h * w, heads * head_dim)).astype("float32") for h, w in sizes]
    loc = rng.uniform(-0.3, 1.3, (batch, queries, heads, levels, points, 2))
    for level, (h, w) in enumerate(sizes):  # query 0: x at pixel -1, 0, W - 1, W - 0.5; y alike
        edges = np.array([[-0.5 / w, 0.0], [0.5 / w, -0.5 / h], [1 - 0.5 / w, 1 - 0.5 / h], [1.0, 1.0]])
        loc[:, 0, :, level, :min(points, 4)] = edges[:points]
    logits = rng.standard_normal((batch, queries, heads, levels * points))
    weights = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).reshape(loc.shape[:-1])
    return [*values, loc.astype("float32"), weights.astype("float32")]


def _run(fn, arrays: List[np.ndarray], sizes, upstream_seed: int = 7) -> List[np.ndarray]:
    """Output and the gradients of every input for a random upstream gradient."""
    inputs = [paddle.to_tensor(a, stop_gradient=False) for a in arrays]
    levels = [paddle.to_tensor(s, "int32") for s in sizes]
    out = fn(inputs[:-2], levels, inputs[-2], inputs[-1])
    upstream = np.random.default_rng(upstream_seed).standard_normal(out.shape).astype("float32")
    grads = paddle.grad([out], inputs, [paddle.to_tensor(upstream)])
    return [out.numpy()] + [g.numpy() for g in grads]


CASES = [  # batch, heads, head_dim, queries, points, level sizes (H, W)
    (2, 8, 32, 30, 4, [(12, 12), (6, 6), (3, 3)]),
    (3, 3, 5, 11, 3, [(7, 10), (4, 5), (1, 2), (2, 1)]),  # D not a multiple of the kernel's 8 lanes
    (1, 2, 16, 5, 1, [(9, 4)]),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_matches_grid_sample_forward_and_gradients(native, case: int) -> None:
    batch, heads, head_dim, queries, points, sizes = CASES[case]
    arrays = _case(case, batch, heads, head_dim, queries, points, sizes)
    assert NATIVE.usable(*[paddle.to_tensor(a) for a in arrays])
    ours = _run(deformable_sample, arrays, sizes)
    ref = _run(grid_sample_formulation, arrays, sizes)
    names = ["out"] + [f"d value {i}" for i in range(len(sizes))] + ["d locations", "d weights"]
    for name, a, b in zip(names, ours, ref):
        assert a.shape == b.shape, name
        # float32 rounding, relative to the size of the tensor's entries (d locations scale with W)
        tolerance = 2e-6 * max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=tolerance, err_msg=name)
    assert np.any(ours[-2] != 0) and np.any(ours[-2] == 0)  # points on the maps get a gradient, off them none


def test_results_do_not_depend_on_the_thread_count(native) -> None:
    batch, heads, head_dim, queries, points, sizes = CASES[0]
    arrays = _case(5, batch, heads, head_dim, queries, points, sizes)
    before = paddle_threads()
    runs = []
    try:
        for threads in (1, 2, 2):
            paddle.base.core.set_num_threads(threads)
            assert paddle_threads() == threads
            runs.append(_run(deformable_sample, arrays, sizes))
    finally:
        paddle.base.core.set_num_threads(before)
    for a, b, c in zip(*runs):
        assert np.array_equal(a, b) and np.array_equal(b, c)


def test_bad_inputs_raise(native) -> None:
    value = paddle.zeros([1, 10, 2, 4])
    loc, weights = paddle.zeros([1, 3, 2, 1, 2, 2]), paddle.ones([1, 3, 2, 1, 2])
    with pytest.raises(Exception, match="cover 12 positions but value has 10"):
        native(value, paddle.to_tensor([[3, 4]], "int32"), loc, weights)
    with pytest.raises(Exception, match="attention weights"):
        native(value, paddle.to_tensor([[2, 5]], "int32"), loc, paddle.ones([1, 3, 2, 1, 3]))


@pytest.fixture
def native_forbidden(native, monkeypatch):
    forbid(NATIVE, monkeypatch)


def _small():
    sizes = [(6, 5), (3, 3)]
    arrays = _case(9, 2, 2, 4, 6, 2, sizes)
    return ([paddle.to_tensor(a) for a in arrays[:-2]], [paddle.to_tensor(s, "int32") for s in sizes],
            paddle.to_tensor(arrays[-2]), paddle.to_tensor(arrays[-1]))


def test_static_graph_uses_grid_sample(native_forbidden) -> None:
    values, sizes, loc, weights = _small()
    expected = grid_sample_formulation(values, sizes, loc, weights).numpy()
    static = paddle.jit.to_static(deformable_sample, full_graph=True)  # what the exporter does
    np.testing.assert_array_equal(static(values, sizes, loc, weights).numpy(), expected)
    program = str(static.get_concrete_program(values, sizes, loc, weights)[0].main_program)
    assert "pd_op.grid_sample" in program and NATIVE.name not in program
    from paddle.jit.sot.utils import envs

    with envs.min_graph_size_guard(0):  # the bytecode translator too
        sot = paddle.jit.to_static(deformable_sample, full_graph=False)
        np.testing.assert_array_equal(sot(values, sizes, loc, weights).numpy(), expected)


@pytest.mark.parametrize("switch", [NATIVE.switch, "INSTSEG_NATIVE_OPS"])
def test_switch_off_by_environment(native_forbidden, monkeypatch, switch: str) -> None:
    monkeypatch.setenv(switch, "0")
    values, sizes, loc, weights = _small()
    assert not NATIVE.usable(loc, weights, *values)
    np.testing.assert_array_equal(deformable_sample(values, sizes, loc, weights).numpy(),
                                  grid_sample_formulation(values, sizes, loc, weights).numpy())


def test_float64_uses_grid_sample(native_forbidden) -> None:
    values, sizes, loc, weights = _small()
    out = deformable_sample([v.astype("float64") for v in values], sizes, loc.astype("float64"),
                            weights.astype("float64"))
    assert out.dtype == paddle.float64


def test_failed_build_warns_once_and_falls_back(monkeypatch, caplog) -> None:
    monkeypatch.setattr(NATIVE, "state", {"tried": False, "op": None, "error": None})

    def broken() -> None:
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(NATIVE, "compile", broken)
    values, sizes, loc, weights = _small()
    expected = grid_sample_formulation(values, sizes, loc, weights).numpy()
    with caplog.at_level(logging.WARNING, logger="instseg"):
        for _ in range(3):
            np.testing.assert_array_equal(deformable_sample(values, sizes, loc, weights).numpy(), expected)
    assert len([r for r in caplog.records if "no compiler here" in r.getMessage()]) == 1


def test_attention_layer_same_with_and_without_the_operator(native, monkeypatch) -> None:
    paddle.seed(3)
    layer = MSDeformableAttention(embed_dim=32, num_heads=4, num_levels=2, num_points=3)
    rng = np.random.default_rng(2)
    query = paddle.to_tensor(rng.standard_normal((2, 7, 32)).astype("float32"))
    boxes = paddle.to_tensor(rng.uniform(0.2, 0.8, (2, 7, 1, 4)).astype("float32"))
    memory = [paddle.to_tensor(rng.standard_normal((2, h * w, 32)).astype("float32"))
              for h, w in ((8, 6), (4, 3))]
    sizes = [paddle.to_tensor([8, 6], "int32"), paddle.to_tensor([4, 3], "int32")]
    calls = count_calls(NATIVE, monkeypatch)
    results = []
    for switch in ("1", "0"):
        monkeypatch.setenv(NATIVE.switch, switch)
        out = layer(query, boxes, memory, sizes)
        grads = paddle.grad([out.sum()], [p for p in layer.parameters()])
        results.append([out.numpy()] + [g.numpy() for g in grads])
    assert len(calls) == 1  # the first pass only
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
