"""SOLOv2: aliased parameter names, targets, Matrix NMS, losses, predictions, learning (tiny model, CPU)."""
import dataclasses
from pathlib import Path
from typing import Any, Dict

import numpy as np
import paddle
import pytest

from engine.config.architectures import SOLOv2Architecture
from engine.errors import WeightsError
from engine.models.losses.dice import dice_loss
from engine.models.losses.focal import sigmoid_focal_loss
from engine.models.ops.matrix_nms import matrix_nms
from engine.models.ops.solov2_targets import downscale_mask, levels_with_masks, solov2_targets
from engine.models.weights import load_weights
from engine.models.zoo import build_model

TINY = SOLOv2Architecture(base_channels=16, fpn_channels=32, head_channels=32, stacked_convs=2,
                          num_grids=[12, 10, 8, 6, 4], mask_mid_channels=16, kernel_out_channels=32,
                          gn_groups=8, freeze_at=-1, freeze_norm=False)
ALIASES = {  # second name -> first name, as ../shared/reference/params/SOLOv2.json lists them
    "solov2_head.solo_kernel.weight": "solov2_head.bbox_head.solo_kernel.weight",
    "solov2_head.solo_cate.bias": "solov2_head.bbox_head.solo_cate.bias",
    "mask_head.conv_pred.conv.weight": "mask_head.mask_feat_head.conv_pred.0.conv.weight",
}


def tiny_model(num_classes: int = 3, seed: int = 0) -> Any:
    paddle.seed(seed)
    return build_model("SOLOv2", TINY, num_classes)


def tiny_model_with_detections(seed: int = 0) -> Any:
    """tiny_model in eval mode whose category head favours classes 0 and 2 (biases 2, -1, 0.5): every test
    image has instances."""
    model = tiny_model(seed=seed)
    model.solov2_head.solo_cate.bias.set_value(np.array([2.0, -1.0, 0.5], "float32"))
    model.eval()
    return model


def _save(state: Dict[str, np.ndarray], path: Path) -> Path:
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, str(path))
    return path


def test_aliased_weights_load_from_either_name_or_both(tmp_path: Path) -> None:
    source = {k: v.numpy() for k, v in tiny_model(seed=1).state_dict().items()}
    first_only = {k: v for k, v in source.items() if k not in ALIASES}
    second_only = {k: v for k, v in source.items() if k not in ALIASES.values()}
    for name, state in (("both", source), ("first", first_only), ("second", second_only)):
        model = tiny_model(seed=2)
        assert load_weights(model, _save(state, tmp_path / f"{name}.pdparams")) == [], name
        loaded = model.state_dict()
        for second, first in ALIASES.items():
            np.testing.assert_array_equal(loaded[first].numpy(), source[first], err_msg=name)
            np.testing.assert_array_equal(loaded[second].numpy(), source[first], err_msg=name)
        np.testing.assert_array_equal(model.mask_head.conv_pred.norm.weight.numpy(),
                                      source["mask_head.conv_pred.norm.weight"])


def test_aliased_weights_that_differ_are_an_error_naming_the_tensor(tmp_path: Path) -> None:
    state = {k: v.numpy() for k, v in tiny_model(seed=1).state_dict().items()}
    state["solov2_head.solo_cate.bias"] = state["solov2_head.solo_cate.bias"] + 1.0
    with pytest.raises(WeightsError, match=r"solov2_head\.(bbox_head\.)?solo_cate\.bias"):
        load_weights(tiny_model(), _save(state, tmp_path / "differ.pdparams"))


# --------------------------------------------------------------------------------------------- targets
def _square(size: int, top: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[top:top + side, top:top + side] = 1
    return mask


def test_targets_pick_levels_by_scale_and_the_centre_region() -> None:
    """A 40 px square centred at 63.5 on a 128 px image: only level 0 ([1, 96]); grid 12 has cells of
    10.67 px, so the centre is in cell 5 and the centre region (+-4 px) spans cells 5..6 in both axes.
    A 100 px square is learnt by levels 1 and 2 ([48, 192], [96, 384]) and nowhere else."""
    small, big = _square(128, 44, 40), _square(128, 14, 100)
    boxes = np.array([[44, 44, 84, 84], [14, 14, 114, 114]], np.float32)
    t = solov2_targets([boxes], [np.array([2, 0])], [np.stack([small, big])], TINY.num_grids,
                       TINY.scale_ranges, TINY.coord_sigma)
    grids = TINY.num_grids
    starts = np.cumsum([0] + [g * g for g in grids])
    level0 = t.cate_labels[0, starts[0]:starts[1]].reshape(12, 12)
    assert sorted(zip(*np.nonzero(level0))) == [(5, 5), (5, 6), (6, 5), (6, 6)]
    assert set(level0[level0 > 0]) == {3}  # class 2, stored as class + 1
    per_level = [int((t.cate_labels[0, starts[i]:starts[i + 1]] > 0).sum()) for i in range(5)]
    assert per_level[0] == 4 and per_level[1] > 0 and per_level[2] > 0 and per_level[3:] == [0, 0]
    assert t.fg_num == sum(per_level) == len(t.pos_cells[0])
    assert set(t.pos_cells[0]) == set(np.nonzero(t.cate_labels[0])[0])
    first = list(t.pos_cells[0]).index(5 * 12 + 5)
    np.testing.assert_array_equal(t.pos_masks[0, first], downscale_mask(small[None])[0])
    assert t.pos_masks[0, first].sum() == 100  # 40 px -> 10 px at stride 4


def test_targets_of_an_image_without_instances_are_background() -> None:
    t = solov2_targets([np.zeros((0, 4), np.float32), np.array([[44, 44, 84, 84]], np.float32)],
                       [np.zeros(0, np.int64), np.array([1])],
                       [np.zeros((0, 128, 128), np.uint8), _square(128, 44, 40)[None]],
                       TINY.num_grids, TINY.scale_ranges, TINY.coord_sigma)
    assert not t.cate_labels[0].any() and not t.pos_masks[0].any() and t.fg_num == 4


def test_loss_skips_kernel_levels_without_masks_and_stays_the_same() -> None:
    """The 40 px square is learnt on level 0 only: `model.loss` runs the kernel branch there alone, and
    its losses and gradients equal those computed from every level's kernels."""
    model = tiny_model()
    model.train()
    image = paddle.to_tensor(np.random.default_rng(4).normal(0, 1, (1, 3, 128, 128)).astype(np.float32))
    batch = {"image": image, "gt_bbox": [np.array([[44, 44, 84, 84]], np.float32)],
             "gt_class": [np.array([1])], "gt_mask": [_square(128, 44, 40)[None]],
             "is_crowd": [np.zeros(1, np.int32)]}
    targets = model.targets(batch)
    assert levels_with_masks(targets, TINY.num_grids) == [0]
    weight = model.solov2_head.kernel_convs[0].conv.weight
    results = []
    for skip in (True, False):
        if skip:
            losses = model.loss(batch)
        else:
            cate_logits, kernels, mask_feat = model._outputs(image)
            assert all(k is not None for k in kernels)
            losses = model.loss_from_outputs(cate_logits, kernels, mask_feat, targets)
        paddle.add_n(list(losses.values())).backward()
        results.append(({k: float(v) for k, v in losses.items()}, weight.grad.numpy().copy()))
        model.clear_gradients()
    assert results[0][0] == results[1][0] and results[0][0]["loss_ins"] > 0
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------------------------- Matrix NMS
def _matrix_nms_by_pairs(masks: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                         sigma: float) -> np.ndarray:
    """The paper's definition, one pair at a time (candidates sorted by score)."""
    n = len(scores)
    inter = masks @ masks.T
    area = masks.sum(axis=1)
    iou = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            if labels[i] == labels[j]:
                iou[i, j] = inter[i, j] / (area[i] + area[j] - inter[i, j])
    comp = iou.max(axis=0)
    out = scores.copy()
    for j in range(n):
        decays = [np.exp(-sigma * iou[i, j] ** 2) / np.exp(-sigma * comp[i] ** 2) for i in range(n)]
        out[j] = scores[j] * min(decays)
    return out


def test_matrix_nms_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    masks = (rng.random((12, 50)) < 0.4).astype(np.float32)
    masks[3] = masks[1]  # a duplicate of a higher-scored mask: strongly decayed
    labels = rng.integers(0, 2, 12)
    labels[3] = labels[1]
    scores = np.sort(rng.random(12))[::-1].astype(np.float32)
    expected = _matrix_nms_by_pairs(masks, labels, scores, 2.0)
    got = matrix_nms(paddle.to_tensor(masks), paddle.to_tensor(masks.sum(axis=1)), paddle.to_tensor(labels),
                     paddle.to_tensor(scores), paddle.zeros([12], "int64"), "gaussian", 2.0)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    assert got.numpy()[3] < 0.2 * scores[3]
    # two images never suppress each other: the second half alone gives the same scores
    groups = paddle.to_tensor(np.repeat([0, 1], 6))
    split = matrix_nms(paddle.to_tensor(masks), paddle.to_tensor(masks.sum(axis=1)), paddle.to_tensor(labels),
                       paddle.to_tensor(scores), groups, "gaussian", 2.0)
    alone = _matrix_nms_by_pairs(masks[6:], labels[6:], scores[6:], 2.0)
    np.testing.assert_allclose(split.numpy()[6:], alone, rtol=1e-5)


# --------------------------------------------------------------------------------------------- losses
def test_dice_and_focal_losses_follow_their_formulas() -> None:
    rng = np.random.default_rng(1)
    p, t = rng.random((3, 20)).astype(np.float32), (rng.random((3, 20)) < 0.5).astype(np.float32)
    expected = 1 - 2 * (p * t).sum(1) / ((p * p).sum(1) + (t * t).sum(1) + 0.002)
    got = dice_loss(paddle.to_tensor(p), paddle.to_tensor(t))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    logits = rng.normal(0, 2, (6, 3)).astype(np.float32)
    labels = np.array([0, 1, 3, 0, 2, 1])
    one_hot = np.eye(4)[labels][:, 1:]
    prob = 1 / (1 + np.exp(-logits))
    pt = np.where(one_hot == 1, prob, 1 - prob)
    weight = np.where(one_hot == 1, 0.25, 0.75)
    expected = (-weight * (1 - pt) ** 2 * np.log(pt)).sum() / 4.0
    got = sigmoid_focal_loss(paddle.to_tensor(logits), paddle.to_tensor(labels), paddle.to_tensor(4.0))
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


# --------------------------------------------------------------------------------------------- predict
def _confident(model: Any) -> Any:
    """Class 0 scores ~0.9 everywhere: every image has instances."""
    bias = model.solov2_head.solo_cate.bias
    bias.set_value(np.array([2.0, -1.0, -3.0], "float32"))
    model.eval()
    return model


def test_batched_prediction_equals_one_image_at_a_time() -> None:
    """Two images of different sizes in one padded batch give each image's own results; boxes are the
    masks' tight boxes and masks are empty outside each image's original size."""
    model = _confident(tiny_model())
    rng = np.random.default_rng(2)
    image = paddle.to_tensor(rng.normal(0, 1, (2, 3, 96, 128)).astype(np.float32))
    im_shape = np.array([[96, 128], [64, 90]], np.float32)
    scale = np.array([[0.5, 0.5], [1.0, 1.0]], np.float32)
    with paddle.no_grad():
        both = model(image, paddle.to_tensor(im_shape), paddle.to_tensor(scale))
        alone = [model(image[i:i + 1], paddle.to_tensor(im_shape[i:i + 1]), paddle.to_tensor(scale[i:i + 1]))
                 for i in range(2)]
    counts = both["bbox_num"].numpy()
    assert counts.tolist() == [int(a["bbox_num"][0]) for a in alone] and counts.min() > 0
    assert both["mask"].shape[1:] == [192, 256]
    rows = np.split(np.arange(counts.sum()), np.cumsum(counts)[:-1])
    for i, a in enumerate(alone):
        np.testing.assert_allclose(both["bbox"].numpy()[rows[i]], a["bbox"].numpy(), atol=1e-4)
        h, w = a["mask"].shape[1:]
        np.testing.assert_array_equal(both["mask"].numpy()[rows[i]][:, :h, :w], a["mask"].numpy())
    masks, boxes = both["mask"].numpy(), both["bbox"].numpy()[:, 2:]
    assert not masks[rows[1]][:, 64:, :].any() and not masks[rows[1]][:, :, 90:].any()
    for mask, box in zip(masks, boxes):
        ys, xs = np.nonzero(mask)
        np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


# --------------------------------------------------------------------------------------------- learning
def test_tiny_solov2_overfits_generated_images() -> None:
    """A narrow SOLOv2 learns four generated 96 px images: the loss collapses and mask AP >= 0.5 on them.
    Warm-up and clipping as in demo_solov2.yaml (without them an early step can saturate the masks)."""
    from dataset_tools.synthetic import CLASS_NAMES
    from test_rcnn_learning import mask_ap, synthetic_batch

    paddle.seed(0)
    np.random.seed(0)
    batch, instances = synthetic_batch(4, seed=11)
    arch = dataclasses.replace(TINY, head_channels=64, mask_mid_channels=32)
    model = build_model("SOLOv2", arch, len(CLASS_NAMES))
    schedule = paddle.optimizer.lr.LinearWarmup(2e-3, 20, 0.0, 2e-3)
    opt = paddle.optimizer.Adam(learning_rate=schedule, parameters=model.parameters(),
                                grad_clip=paddle.nn.ClipGradByGlobalNorm(10.0))
    model.train()
    losses = []
    for _ in range(OVERFIT_STEPS):
        total = paddle.add_n(list(model.loss(batch).values()))
        losses.append(float(total))
        total.backward()
        opt.step()
        opt.clear_grad()
        schedule.step()
    assert losses[-1] < 0.1 * losses[0]
    model.eval()
    with paddle.no_grad():
        assert mask_ap(instances, model.predict(batch)) >= 0.5


OVERFIT_STEPS = 80
