"""Mask-RT-DETR: the model protocol (named finite losses reaching every part, images without instances,
batches equal to single images, masks in original pixels), export tracing, and the decoder's ops
(deformable sampling, denoising groups, Hungarian matching, mask boxes). Narrow variants on 96 px images.
Parity with PaddleDetection itself: tools/ppdet_detr_parity.py."""
from typing import Dict

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from engine.config.architectures import MaskRTDETRArchitecture
from engine.models.losses.mask_dino_loss import most_uncertain
from engine.models.ops.box_format import mask_to_cxcywh
from engine.models.ops.denoising import _attention_mask, denoising_queries
from engine.models.ops.detr_postprocess import resize_to_original
from engine.models.ops.hungarian_matcher import HungarianMatcher, TermWeights
from engine.models.ops.ms_deform_attn import deformable_sample
from engine.models.ops.point_sample import grid_sample_points
from engine.models.zoo import build_model
from test_rcnn_learning import synthetic_batch

TINY = MaskRTDETRArchitecture(backbone_width_mult=0.25, freeze_stem=False, freeze_norm=False,
                              encoder_hidden_dim=32, encoder_ffn_dim=64, mask_feat_channels=[16, 16],
                              num_prototypes=16, hidden_dim=32, num_queries=20, num_decoder_layers=2,
                              decoder_ffn_dim=64, num_denoising=12, num_top_queries=10, num_sample_points=256)
TERMS = ["class", "bbox", "giou", "mask", "dice"]
LOSS_NAMES = sorted(f"loss_{t}{aux}{dn}" for t in TERMS for aux in ("", "_aux") for dn in ("", "_dn"))


def tiny(num_classes: int = 3) -> paddle.nn.Layer:
    paddle.seed(0)
    return build_model("Mask-RT-DETR-S", TINY, num_classes)


def test_losses_are_named_finite_and_reach_every_part() -> None:
    model = tiny()
    model.train()
    batch, _ = synthetic_batch(2, seed=3)
    losses = model.loss(batch)
    assert sorted(losses) == LOSS_NAMES
    assert all(np.isfinite(float(v)) and v.shape == [] for v in losses.values())
    assert all(float(losses[k]) > 0 for k in LOSS_NAMES)  # denoising on, every set has matches
    paddle.add_n(list(losses.values())).backward()
    for part in ("backbone", "neck", "transformer"):
        grads = [p.grad for p in getattr(model, part).parameters() if not p.stop_gradient]
        assert any(g is not None and float(g.abs().sum()) > 0 for g in grads), part
    assert float(model.transformer.denoising_class_embed.weight.grad.abs().sum()) > 0


def test_images_without_instances_train() -> None:
    model = tiny()
    model.train()
    batch, _ = synthetic_batch(2, seed=3)
    empty = {k: batch[k] for k in ("image", "im_shape", "scale_factor")}
    for key in ("gt_bbox", "gt_class", "gt_mask", "is_crowd"):
        empty[key] = [batch[key][0][:0], batch[key][1][:0]]
    losses = model.loss(empty)
    assert sorted(losses) == LOSS_NAMES
    assert all(np.isfinite(float(v)) for v in losses.values())
    assert float(losses["loss_class"]) > 0 and float(losses["loss_bbox"]) == 0
    targets = ("gt_bbox", "gt_class", "gt_mask", "is_crowd")
    mixed = dict(batch, **{k: [batch[k][0], empty[k][1]] for k in targets})
    assert all(np.isfinite(float(v)) for v in model.loss(mixed).values())


def _predict(model: paddle.nn.Layer, batch: Dict, rows) -> Dict[str, np.ndarray]:
    inputs = {k: batch[k][rows] for k in ("image", "im_shape", "scale_factor")}
    with paddle.no_grad():
        return {k: v.numpy() for k, v in model.predict(inputs).items()}


def test_a_batch_gives_each_image_what_it_gets_alone() -> None:
    """Images of different original sizes in one batch: same detections; each mask is its image's size,
    zero beyond it in the batch's larger canvas."""
    model = tiny()
    model.eval()
    batch, _ = synthetic_batch(2, seed=5)
    batch["scale_factor"] = paddle.to_tensor([[0.8, 0.6], [1.5, 1.2]])  # originals 120x160 and 64x80
    both = _predict(model, batch, slice(0, 2))
    k = TINY.num_top_queries
    assert list(both["bbox_num"]) == [k, k] and both["mask"].shape == (2 * k, 120, 160)
    for i, (h, w) in enumerate([(120, 160), (64, 80)]):
        alone = _predict(model, batch, slice(i, i + 1))
        np.testing.assert_allclose(both["bbox"][i * k:(i + 1) * k], alone["bbox"], rtol=1e-5, atol=1e-4)
        assert alone["mask"].shape == (k, h, w)
        np.testing.assert_array_equal(both["mask"][i * k:(i + 1) * k, :h, :w], alone["mask"])
        mine = both["mask"][i * k:(i + 1) * k]
        assert not mine[:, h:, :].any() and not mine[:, :, w:].any()


def test_masks_are_resized_to_original_pixels_like_interpolate() -> None:
    logits = paddle.to_tensor(np.random.default_rng(0).normal(0, 3, (1, 4, 24, 24)).astype("float32"))
    resized = resize_to_original(logits, paddle.to_tensor([[96.0, 96.0]]),
                                 paddle.to_tensor([96, 96], "int32"), paddle.to_tensor([[50.0, 70.0]]),
                                 0.5).numpy()
    expected = (F.sigmoid(F.interpolate(logits, size=[50, 70], mode="bilinear", align_corners=False)) > 0.5)
    assert resized.shape == (1, 4, 50, 70)
    assert (resized != expected.numpy()).mean() < 1e-3


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_mask_threshold_holds_per_image_of_a_padded_batch(threshold: float) -> None:
    """Thresholding the logits (no sigmoid) keeps sigmoid(x) > t, and nothing outside a smaller image of the
    batch passes, whatever t (below 0.5 zero logits there would)."""
    logits = paddle.to_tensor(np.random.default_rng(1).normal(0, 3, (2, 3, 24, 24)).astype("float32"))
    im_shape = paddle.to_tensor([[96.0, 96.0], [64.0, 96.0]])  # image 2 fills 2/3 of the padded height
    original = paddle.to_tensor([[50.0, 70.0], [30.0, 45.0]])
    resized = resize_to_original(logits, im_shape, paddle.to_tensor([96, 96], "int32"), original,
                                 threshold).numpy()
    assert resized.shape == (2, 3, 50, 70)
    for i, (rows, h, w) in enumerate([(24, 50, 70), (16, 30, 45)]):
        up = _bilinear(_bilinear(logits.numpy()[i], rows, h, axis=1), 24, w, axis=2)
        expected = 1.0 / (1.0 + np.exp(-up.astype("float64"))) > threshold
        assert (resized[i, :, :h, :w] != expected).mean() < 1e-3
        assert not resized[i, :, h:, :].any() and not resized[i, :, :, w:].any()


def _bilinear(x: np.ndarray, extent: int, size: int, axis: int) -> np.ndarray:
    """Map the first `extent` cells of one axis onto `size` pixels as align_corners=False bilinear sampling
    does, clamped to the axis' cells (a padded image's last row blends with the padding, as in the model)."""
    cells = x.shape[axis]
    u = np.clip((np.arange(size) + 0.5) * extent / size - 0.5, 0, cells - 1)
    lo = np.floor(u).astype(int)
    hi = np.minimum(lo + 1, cells - 1)
    shape = [1] * x.ndim
    shape[axis] = size
    frac = (u - lo).reshape(shape)
    return np.take(x, lo, axis=axis) * (1 - frac) + np.take(x, hi, axis=axis) * frac


def test_boxes_are_in_original_pixels() -> None:
    model = tiny()
    model.eval()
    batch, _ = synthetic_batch(1, seed=7)
    batch["scale_factor"] = paddle.to_tensor([[0.5, 0.75]])  # original 192 x 128
    out = _predict(model, batch, slice(0, 1))
    unscaled = _predict(model, dict(batch, scale_factor=paddle.to_tensor([[1.0, 1.0]])), slice(0, 1))
    np.testing.assert_allclose(out["bbox"][:, 2:], unscaled["bbox"][:, 2:] * [1 / 0.75, 2, 1 / 0.75, 2],
                               rtol=1e-5, atol=1e-3)
    assert out["mask"].shape[1:] == (192, 128)


def test_fewer_feature_positions_than_queries_is_a_clear_error() -> None:
    model = tiny()
    model.eval()
    inputs = (paddle.zeros([1, 3, 32, 32]), paddle.to_tensor([[32.0, 32.0]]), paddle.to_tensor([[1.0, 1.0]]))
    with paddle.no_grad():  # 4x4 + 2x2 + 1x1 = 21 positions: 20 queries fit, 30 do not
        assert model(*inputs)["bbox"].shape[0] == 10
        model.transformer.cfg.num_queries = 30
        with pytest.raises(ValueError, match="21 feature positions .* fewer than num_queries=30"):
            model(*inputs)


def test_forward_traces_with_to_static_and_matches_eager() -> None:
    model = tiny()
    model.eval()
    batch, _ = synthetic_batch(2, seed=5)
    with paddle.no_grad():
        eager = model.predict(batch)
        static = paddle.jit.to_static(model.forward, input_spec=list(model.export_spec().values()),
                                      full_graph=True)
        traced = static(batch["image"], batch["im_shape"], batch["scale_factor"])
    np.testing.assert_array_equal(traced["bbox_num"].numpy(), eager["bbox_num"].numpy())
    np.testing.assert_allclose(traced["bbox"].numpy(), eager["bbox"].numpy(), rtol=1e-4, atol=1e-3)
    assert traced["mask"].dtype == paddle.uint8
    assert (traced["mask"].numpy() != eager["mask"].numpy()).mean() < 1e-3


@pytest.mark.parametrize("native", ["1", "0"])  # the compiled operator and the grid_sample formulation
def test_deformable_sample_reads_pixel_centres_and_mixes_by_weight(native: str, monkeypatch) -> None:
    monkeypatch.setenv("INSTSEG_NATIVE_MS_DEFORM_ATTN", native)
    image = paddle.arange(2 * 4 * 6, dtype="float32").reshape([1, 2, 4, 6])  # one head, 2 channels, 4 x 6
    value = image.flatten(2).transpose([0, 2, 1])  # [1, 4 * 6, 2]
    # two points: pixel (x=1, y=2) and (x=4, y=0), at their centres in normalised coordinates
    loc = paddle.to_tensor([[1.5 / 6, 2.5 / 4], [4.5 / 6, 0.5 / 4]], "float32").reshape([1, 1, 1, 1, 2, 2])
    weights = paddle.to_tensor([0.25, 0.75]).reshape([1, 1, 1, 1, 2])
    out = deformable_sample([value], [paddle.to_tensor([4, 6], "int32")], loc, weights).numpy().reshape([2])
    v = image.numpy()[0]
    np.testing.assert_allclose(out, 0.25 * v[:, 2, 1] + 0.75 * v[:, 0, 4], rtol=1e-6)


def test_denoising_groups_see_themselves_and_the_matching_queries() -> None:
    allowed = _attention_mask(num_denoising=4, group_size=2, num_queries=2).numpy().astype(int)
    expected = np.array([[1, 1, 0, 0, 1, 1],
                         [1, 1, 0, 0, 1, 1],
                         [0, 0, 1, 1, 1, 1],
                         [0, 0, 1, 1, 1, 1],
                         [0, 0, 0, 0, 1, 1],
                         [0, 0, 0, 0, 1, 1]])
    np.testing.assert_array_equal(allowed, expected)
    paddle.seed(0)
    classes = [paddle.to_tensor([1, 2], "int64"), paddle.to_tensor([0], "int64")]
    boxes = [paddle.to_tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1]]),
             paddle.to_tensor([[0.5, 0.5, 0.4, 0.4]])]
    dn = denoising_queries(classes, boxes, paddle.randn([3, 8]), num_queries=5, num_denoising=5)
    assert dn.meta.num_group == 2 and dn.meta.split == [4, 5]
    assert dn.embed.shape == [2, 4, 8] and dn.boxes_unact.shape == [2, 4, 4] and dn.attn_mask.shape == [9, 9]
    assert [list(p.numpy()) for p in dn.meta.positive_idx] == [[0, 1, 2, 3], [0, 2]]
    assert float(dn.embed[1, 1].abs().sum()) == 0  # a padding slot has the zero embedding
    assert denoising_queries([classes[0][:0]], [boxes[0][:0]], paddle.randn([3, 8]), 5) is None


def test_matcher_finds_the_assignment_of_least_cost() -> None:
    gt = paddle.to_tensor([[0.2, 0.2, 0.1, 0.1], [0.7, 0.6, 0.3, 0.2], [0.5, 0.5, 0.2, 0.4]])
    order = [2, 0, 1]  # query q holds gt order[q], the fourth query is far from everything
    boxes = paddle.concat([gt[order], paddle.to_tensor([[0.9, 0.9, 0.05, 0.05]])]).unsqueeze(0)
    logits = paddle.full([1, 4, 3], -3.0)
    classes = paddle.to_tensor([0, 1, 2], "int64")
    rows, cols = HungarianMatcher()(boxes, logits, [gt], [classes])[0]
    assert dict(zip(rows.numpy().tolist(), cols.numpy().tolist())) == {0: 2, 1: 0, 2: 1}


def test_mask_cost_is_the_mean_point_bce_and_dice_of_each_pair() -> None:
    """The matcher's one-pass BCE cost equals the per-pair definition on the same random points."""
    rng = np.random.default_rng(4)
    masks = paddle.to_tensor(rng.normal(0, 4, (2, 3, 8, 8)).astype("float32"))  # 2 images, 3 queries
    gt = [paddle.to_tensor((rng.uniform(size=(n, 16, 16)) > 0.5).astype("float32")) for n in (2, 1)]
    matcher = HungarianMatcher(TermWeights(mask_weight=1.0, dice_weight=0.0), num_sample_points=50)
    paddle.seed(7)
    cost = matcher._mask_cost(masks, gt, [2, 1]).numpy()
    paddle.seed(7)
    points = paddle.rand([2, 1, 50, 2]) * 2.0 - 1.0  # what the matcher drew
    pred = grid_sample_points(masks, points).squeeze(-2).numpy().astype("float64")  # [2, 3, 50]
    expected = []
    for image, gt_masks in enumerate(gt):
        shared = points[image:image + 1].tile([len(gt_masks), 1, 1, 1])
        target = grid_sample_points(gt_masks.unsqueeze(1), shared)
        target = target.squeeze([1, 2]).numpy().astype("float64")  # [M, 50]
        x = pred[image][:, None, :]
        bce = np.maximum(x, 0) - x * target[None] + np.log1p(np.exp(-np.abs(x)))
        expected.append(bce.mean(-1))  # [3, M]
    np.testing.assert_allclose(cost[:3, :2], expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cost[3:, 2:], expected[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [0, 1, 37, 100])
def test_most_uncertain_points_are_topk_of_the_smallest_logits(k: int) -> None:
    rng = np.random.default_rng(5)
    points = paddle.to_tensor(rng.uniform(size=(3, 100, 2)).astype("float32"))
    logits = paddle.to_tensor(rng.normal(0, 2, (3, 100)).astype("float32"))
    chosen = most_uncertain(points, logits, k).numpy()
    assert chosen.shape == (3, k, 2)
    if k:
        _, index = paddle.topk(-logits.abs(), k, axis=1)
        reference = paddle.take_along_axis(points, index.unsqueeze(-1), axis=1, broadcast=True).numpy()
        for mine, theirs in zip(chosen, reference):  # the same points, in any order
            as_rows = [np.sort(p.view("V8").ravel()) for p in (mine, theirs)]  # each (x, y) as one item
            np.testing.assert_array_equal(*as_rows)


def test_mask_box_is_the_extent_of_its_pixels() -> None:
    masks = np.zeros([1, 2, 8, 10], bool)
    masks[0, 0, 2:5, 3:9] = True  # rows 2..4, columns 3..8
    box = mask_to_cxcywh(paddle.to_tensor(masks)).numpy()[0]
    np.testing.assert_allclose(box[0], [(3 + 9) / 2 / 10, (2 + 5) / 2 / 8, 6 / 10, 3 / 8], rtol=1e-6)
    np.testing.assert_array_equal(box[1], [0, 0, 0, 0])


@pytest.mark.parametrize("size", ["S", "L"])
def test_zoo_applies_the_decoder_knobs(size: str) -> None:
    model = build_model(f"Mask-RT-DETR-{size}", TINY, 5)
    t = model.transformer
    assert len(t.decoder.layers) == 2 and t.cfg.num_queries == 20 and t.score_head.weight.shape == [32, 5]
    assert t.mask_query_head.layers[-1].weight.shape == [32, 16]
    assert model.criterion.matcher.num_sample_points == 256 and model.num_top_queries == 10


def test_exact_predictions_cost_no_box_loss_in_matching_and_denoising_sets() -> None:
    """Denoising queries are scored against their own gt, matching queries against the matcher's choice:
    predictions equal to the targets (in another query order) leave no L1 / GIoU loss in either set."""
    from engine.models.heads.mask_rtdetr_decoder import DecoderOutput
    from engine.models.heads.mask_rtdetr_transformer import TransformerOutput
    from engine.models.losses.mask_dino_loss import MaskDINOLoss, Targets
    from engine.models.ops.denoising import DenoisingMeta

    gt = paddle.to_tensor([[0.25, 0.25, 0.5, 0.5], [0.75, 0.625, 0.5, 0.75]])
    masks = np.zeros([2, 32, 32], "float32")
    masks[0, 0:16, 0:16] = 1
    masks[1, 8:32, 16:32] = 1
    far = paddle.to_tensor([[0.9, 0.1, 0.05, 0.05]])
    boxes = paddle.concat([gt, gt[1:], far, gt[:1]]).unsqueeze(0)  # 2 denoising, then queries 1, 2, 0
    logits = paddle.full([1, 5, 2], -2.0)
    small = paddle.to_tensor(masks[:, ::4, ::4] * 20 - 10)
    pred_masks = paddle.concat([small, small[1:], paddle.full([1, 8, 8], -10.0), small[:1]]).unsqueeze(0)
    out = TransformerOutput(DecoderOutput([boxes], [logits], [pred_masks]), (logits[:, 2:], boxes[:, 2:],
                            pred_masks[:, 2:]), None, DenoisingMeta([paddle.to_tensor([0, 1])], 1, [2, 3]))
    targets = Targets([paddle.to_tensor([0, 1], "int64")], [gt], [paddle.to_tensor(masks)])
    losses = MaskDINOLoss(2, HungarianMatcher(num_sample_points=64), num_sample_points=64)(out, targets)
    for name in ("loss_bbox", "loss_giou", "loss_bbox_dn", "loss_giou_dn", "loss_bbox_aux", "loss_giou_aux"):
        assert abs(float(losses[name])) < 1e-5, name
    assert float(losses["loss_class"]) > 0 and float(losses["loss_class_dn"]) > 0
