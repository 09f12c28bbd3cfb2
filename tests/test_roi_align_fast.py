"""The compiled CPU RoIAlign (engine/models/ops/roi_align_fast.py) against paddle.vision.ops.roi_align:
forward and gradient on awkward RoIs, the fallbacks (static graphs, INSTSEG_NATIVE_ROI_ALIGN=0 or
INSTSEG_NATIVE_OPS=0, a failed build) and RoIAlign._pool using it. The first test in a fresh cache
compiles the operator (~10 s)."""
import logging

import numpy as np
import paddle
import paddle.vision.ops as vops
import pytest

from engine.models.ops import roi_align_fast
from engine.models.ops.roi_align import RoIAlign
from compiled_op_helpers import count_calls, forbid, paddle_threads, require_built

SCALE = 0.5  # feature stride 2: boxes in input pixels, map 12 x 15 covers 24 x 30 px


@pytest.fixture(scope="module")
def native():
    return require_built(roi_align_fast.OP)


def _boxes(rng: np.random.Generator, count: int, aligned: bool) -> np.ndarray:
    """Random boxes plus awkward ones: partly and fully outside the map, zero-size, inverted, sub-pixel,
    covering everything, and sample positions near -1 and the far border."""
    x1 = rng.uniform(-6, 30, count)
    y1 = rng.uniform(-6, 24, count)
    boxes = np.stack([x1, y1, x1 + rng.uniform(1, 24, count), y1 + rng.uniform(1, 20, count)], 1)
    special = [
        [-10, -8, 6, 5],        # partly outside top-left
        [20, 18, 40, 36],       # partly outside bottom-right
        [40, 30, 60, 50],       # fully outside
        [-30, -30, -3.5, -2.5],  # fully outside, before -1
        [7, 7, 7, 7],           # zero size
        [3, 4, 3.2, 4.1],       # sub-pixel
        [0, 0, 30, 24],         # the whole map
        [-2, -2, 32, 26],       # a bit more than the map
        [29.5, 5, 31.9, 9],     # samples between W - 1 and W
        [9, 8, 8.6, 7.7],       # inverted by less than a bin
    ]
    return np.concatenate([boxes, np.array(special)]).astype("float32")


def _case(seed: int, aligned: bool):
    rng = np.random.default_rng(seed)
    counts = [9, 0, 11]  # the middle image has no RoIs
    feat = rng.standard_normal((3, 5, 12, 15)).astype("float32")
    boxes = _boxes(rng, sum(counts) - 10, aligned)
    rng.shuffle(boxes)
    return feat, boxes, np.array(counts, "int32")


def _run(fn, feat, boxes, counts, output_size, sampling_ratio, aligned, upstream_seed=7):
    x = paddle.to_tensor(feat, stop_gradient=False)
    out = fn(x, paddle.to_tensor(boxes), paddle.to_tensor(counts), output_size, spatial_scale=SCALE,
             sampling_ratio=sampling_ratio, aligned=aligned)
    upstream = np.random.default_rng(upstream_seed).standard_normal(out.shape).astype("float32")
    (grad,) = paddle.grad([out], [x], [paddle.to_tensor(upstream)])
    return out.numpy(), grad.numpy()


@pytest.mark.parametrize("output_size", [7, 14])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_matches_paddle_forward_and_gradient(native, sampling_ratio, aligned, output_size) -> None:
    feat, boxes, counts = _case(10 * sampling_ratio + 2 * aligned + output_size, aligned)
    x = paddle.to_tensor(feat)
    assert roi_align_fast.uses_native(x, paddle.to_tensor(boxes), paddle.to_tensor(counts))
    ours = _run(roi_align_fast.roi_align, feat, boxes, counts, output_size, sampling_ratio, aligned)
    ref = _run(vops.roi_align, feat, boxes, counts, output_size, sampling_ratio, aligned)
    # aligned=True with a zero-size box: Paddle's forward divides by zero samples (NaN), its backward
    # clamps the size to 1 and still sends a gradient; both are reproduced.
    assert np.isnan(ref[0]).any() == (aligned and sampling_ratio == 0)
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-5, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(ours[1], ref[1], rtol=1e-5, atol=1e-5)
    assert np.all(ours[1][1] == 0)  # the image without RoIs


def test_no_rois_and_int64_counts(native) -> None:
    feat = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype("float32")
    x = paddle.to_tensor(feat, stop_gradient=False)
    none = paddle.zeros([0, 4], "float32")
    out = roi_align_fast.roi_align(x, none, paddle.to_tensor([0, 0], "int32"), 7, 0.25, 0, False)
    assert out.shape == [0, 3, 7, 7]
    (grad,) = paddle.grad([out.sum() + x.sum() * 0], [x])
    assert np.all(grad.numpy() == 0)
    boxes = paddle.to_tensor([[0, 0, 10, 12], [4, 2, 20, 20]], "float32")
    for dtype in ("int32", "int64"):
        counts = paddle.to_tensor([1, 1], dtype)
        np.testing.assert_allclose(roi_align_fast.roi_align(x, boxes, counts, 3, 0.25, 0, False).numpy(),
                                   vops.roi_align(x, boxes, counts, 3, 0.25, 0, False).numpy(), atol=1e-6)


def test_gradient_is_deterministic_across_thread_counts(native) -> None:
    feat, boxes, counts = _case(3, False)
    before = paddle_threads()
    grads = []
    try:
        for threads in (1, 2, 2):
            paddle.base.core.set_num_threads(threads)
            assert paddle_threads() == threads
            grads.append(_run(roi_align_fast.roi_align, feat, boxes, counts, 7, 0, False)[1])
    finally:
        paddle.base.core.set_num_threads(before)
    assert np.array_equal(grads[0], grads[1]) and np.array_equal(grads[1], grads[2])


def test_bad_inputs_raise(native) -> None:
    x = paddle.zeros([1, 2, 8, 8])
    with pytest.raises(Exception, match="boxes_num"):
        roi_align_fast.roi_align(x, paddle.zeros([3, 4]), paddle.to_tensor([2], "int32"), 2, 1.0, 0, False)
    # Paddle's own kernel aborts the process here (a negative sample count): ours raises instead.
    with pytest.raises(Exception, match="inverted"):
        roi_align_fast.roi_align(x, paddle.to_tensor([[6.0, 6, 0, 0]]), paddle.to_tensor([1], "int32"), 2,
                                 1.0, 0, True)


@pytest.fixture
def native_forbidden(native, monkeypatch):
    forbid(roi_align_fast.OP, monkeypatch)


def _inputs():
    feat, boxes, counts = _case(5, False)
    return paddle.to_tensor(feat), paddle.to_tensor(boxes), paddle.to_tensor(counts)


def _pool(x, boxes, counts):
    return roi_align_fast.roi_align(x, boxes, counts, 7, spatial_scale=SCALE, sampling_ratio=0, aligned=False)


def test_static_graph_uses_paddle_op(native_forbidden) -> None:
    x, boxes, counts = _inputs()
    expected = vops.roi_align(x, boxes, counts, 7, spatial_scale=SCALE, sampling_ratio=0, aligned=False)
    static = paddle.jit.to_static(_pool, full_graph=True)  # what the exporter does
    np.testing.assert_array_equal(static(x, boxes, counts).numpy(), expected.numpy())
    program = str(static.get_concrete_program(x, boxes, counts)[0].main_program)
    assert "pd_op.roi_align" in program and roi_align_fast.OP_NAME not in program
    # the bytecode translator (full_graph=False) too, when it builds a graph even for a single op (Paddle
    # 3.3.1 has it: a missing module fails here rather than marking the checks above as skipped)
    from paddle.jit.sot.utils import envs

    with envs.min_graph_size_guard(0):
        sot = paddle.jit.to_static(_pool, full_graph=False)
        np.testing.assert_array_equal(sot(x, boxes, counts).numpy(), expected.numpy())


@pytest.mark.parametrize("switch", [roi_align_fast.SWITCH, "INSTSEG_NATIVE_OPS"])
def test_switch_off_by_environment(native_forbidden, monkeypatch, switch) -> None:
    monkeypatch.setenv(switch, "0")
    x, boxes, counts = _inputs()
    assert not roi_align_fast.uses_native(x, boxes, counts)
    expected = vops.roi_align(x, boxes, counts, 7, spatial_scale=SCALE, sampling_ratio=0, aligned=False)
    np.testing.assert_array_equal(_pool(x, boxes, counts).numpy(), expected.numpy())


def test_other_dtypes_use_paddle_op(native_forbidden) -> None:
    x, boxes, counts = _inputs()
    out = roi_align_fast.roi_align(x.astype("float64"), boxes.astype("float64"), counts, 7, SCALE, 0, False)
    assert out.dtype == paddle.float64


def test_failed_build_warns_once_and_falls_back(monkeypatch, caplog) -> None:
    monkeypatch.setattr(roi_align_fast.OP, "state", {"tried": False, "op": None, "error": None})

    def broken() -> None:
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(roi_align_fast.OP, "compile", broken)
    x, boxes, counts = _inputs()
    expected = vops.roi_align(x, boxes, counts, 7, spatial_scale=SCALE, sampling_ratio=0, aligned=False)
    with caplog.at_level(logging.WARNING, logger="instseg"):
        for _ in range(3):
            np.testing.assert_array_equal(_pool(x, boxes, counts).numpy(), expected.numpy())
    warnings = [r for r in caplog.records if "no compiler here" in r.getMessage()]
    assert len(warnings) == 1


def test_roialign_pool_uses_native(native, monkeypatch) -> None:
    rng = np.random.default_rng(4)
    feats = [paddle.to_tensor(rng.standard_normal((2, 4, s, s)).astype("float32"), stop_gradient=False)
             for s in (16, 8)]
    rois = paddle.to_tensor([[0, 0, 20, 24], [10, 10, 60, 60], [5, 3, 40, 30], [0, 0, 64, 64]], "float32")
    num = paddle.to_tensor([2, 2], "int32")
    align = RoIAlign(7, [1 / 4, 1 / 8], canonical_level=3, canonical_size=32)
    calls = count_calls(roi_align_fast.OP, monkeypatch)
    ours = align(feats, rois, num)
    (g_ours,) = paddle.grad([ours.sum()], [feats[0]])
    assert len(calls) == 2  # both levels
    monkeypatch.setenv(roi_align_fast.SWITCH, "0")
    ref = align(feats, rois, num)
    (g_ref,) = paddle.grad([ref.sum()], [feats[0]])
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(g_ours.numpy(), g_ref.numpy(), atol=1e-5)
