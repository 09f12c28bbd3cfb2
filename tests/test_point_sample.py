"""The compiled CPU point sampler (engine/models/ops/point_sample.py, point_sample_cpu.cc) against
paddle's grid_sample (bilinear, zero padding, align_corners=False): values and the gradient of the maps on
random shapes with points off the maps and on their borders; grid_sample where the operator does not apply
(a grid that needs a gradient, static graphs, the switches); Mask-RT-DETR's matcher and mask loss using it."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from engine.models.ops import point_sample
from engine.models.ops.point_sample import grid_sample_points
from compiled_op_helpers import count_calls, forbid, require_built

NATIVE = point_sample.NATIVE


@pytest.fixture(scope="module")
def native():
    return require_built(NATIVE)


def _case(seed: int, n: int, c: int, h: int, w: int, ho: int, wo: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype("float32")
    grid = rng.uniform(-1.3, 1.3, (n, ho, wo, 2))
    # on the borders: pixel -1, 0, W - 1 and W - 0.5 (in grid units: x_pix = (g + 1) * W / 2 - 0.5)
    edges = [(-1 / w - 1, -1 / h - 1), (1 / w - 1, -1.0), (1 - 1 / w, 1 - 1 / h), (1.0, 1.0)]
    grid[0, 0, :4] = np.array(edges)[:min(4, wo)]
    return x, grid.astype("float32")


def _run(fn, x: np.ndarray, grid: np.ndarray):
    xt = paddle.to_tensor(x, stop_gradient=False)
    out = fn(xt, paddle.to_tensor(grid))
    upstream = np.random.default_rng(1).standard_normal(out.shape).astype("float32")
    (grad,) = paddle.grad([out], [xt], [paddle.to_tensor(upstream)])
    return out.numpy(), grad.numpy()


def _reference(x: paddle.Tensor, grid: paddle.Tensor) -> paddle.Tensor:
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@pytest.mark.parametrize("shape", [(2, 3, 7, 9, 5, 11), (3, 1, 16, 12, 1, 40), (1, 20, 4, 5, 2, 4)])
def test_matches_grid_sample_values_and_gradient(native, shape) -> None:
    x, grid = _case(sum(shape), *shape)
    assert NATIVE.usable(paddle.to_tensor(x), paddle.to_tensor(grid))
    ours, ref = _run(grid_sample_points, x, grid), _run(_reference, x, grid)
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours[1], ref[1], rtol=1e-5, atol=1e-6)
    assert np.any(ours[0] == 0) and np.any(ours[0] != 0)  # some points are off the maps


@pytest.fixture
def native_forbidden(native, monkeypatch):
    forbid(NATIVE, monkeypatch)


def test_grid_with_gradient_uses_grid_sample(native_forbidden) -> None:
    x, grid = (paddle.to_tensor(a, stop_gradient=False) for a in _case(0, 2, 3, 6, 6, 2, 5))
    out = grid_sample_points(x, grid)
    # (both gradients asked for: Paddle 3.3.1's CPU grid_sample backward crashes on the grid's alone)
    _, grad = paddle.grad([out.sum()], [x, grid])
    assert np.any(grad.numpy() != 0)


@pytest.mark.parametrize("switch", [NATIVE.switch, "INSTSEG_NATIVE_OPS"])
def test_switch_off_and_static_graph_use_grid_sample(native_forbidden, monkeypatch, switch: str) -> None:
    x, grid = (paddle.to_tensor(a) for a in _case(1, 2, 3, 6, 6, 2, 5))
    expected = _reference(x, grid).numpy()
    static = paddle.jit.to_static(grid_sample_points, full_graph=True)
    np.testing.assert_array_equal(static(x, grid).numpy(), expected)
    assert NATIVE.name not in str(static.get_concrete_program(x, grid)[0].main_program)
    monkeypatch.setenv(switch, "0")
    np.testing.assert_array_equal(grid_sample_points(x, grid).numpy(), expected)


def test_matcher_and_mask_loss_sample_with_the_operator(native, monkeypatch) -> None:
    from engine.models.losses.mask_dino_loss import MaskDINOLoss
    from engine.models.ops.hungarian_matcher import HungarianMatcher

    matcher = HungarianMatcher(num_sample_points=64)
    loss = MaskDINOLoss(num_classes=3, matcher=matcher, num_sample_points=64)
    rng = np.random.default_rng(3)
    masks = paddle.to_tensor(rng.standard_normal((2, 5, 16, 16)).astype("float32"), stop_gradient=False)
    gt = [paddle.to_tensor(rng.uniform(0, 1, (n, 64, 64)) > 0.5).astype("float32") for n in (2, 1)]
    calls = count_calls(NATIVE, monkeypatch)
    results = []
    for switch in ("1", "0"):
        monkeypatch.setenv(NATIVE.switch, switch)
        paddle.seed(5)  # the same random points both times
        cost = matcher._mask_cost(masks, gt, [2, 1])
        bce, dice = loss._mask_losses(masks[0, :2], gt[0][:, ::4, ::4], paddle.to_tensor(2.0))
        (grad,) = paddle.grad([bce + dice], [masks])
        results.append([cost.numpy(), bce.numpy(), dice.numpy(), grad.numpy()])
    assert len(calls) == 5  # matcher: predictions, targets; loss: uncertainty, predictions, targets
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
