"""PP-YOLOE_seg parts: anchors for any input size, task-aligned assignment over padded ground truth, the
losses, mask assembly (against PaddleDetection's resize-crop-resize pipeline) and the predict protocol.
PaddleDetection parity on the same weights: tools/compare_with_ppdet.py --model PP-YOLOE_seg-S."""
from typing import Dict

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from engine.config.architectures import PPYOLOESegArchitecture
from engine.models.heads.ppyoloe_masks import assemble_masks
from engine.models.losses.dfl import distribution_focal_loss
from engine.models.losses.iou import giou_loss
from engine.models.losses.varifocal import varifocal_loss
from engine.models.ops.task_aligned_assigner import TaskAlignedAssigner
from engine.models.zoo import build_model

TINY = PPYOLOESegArchitecture(depth_mult=0.33, width_mult=0.125)


@pytest.fixture(scope="module")
def model() -> paddle.nn.Layer:
    paddle.seed(0)
    return build_model("PP-YOLOE_seg-S", TINY, 3)


def _batch(h: int = 96, w: int = 128) -> Dict:
    mask = np.zeros((2, h, w), "uint8")
    mask[0, 10:50, 20:70] = 1
    mask[1, 40:90, 60:120] = 1
    return {"image": paddle.rand([2, 3, h, w]),
            "gt_bbox": [paddle.to_tensor([[20.0, 10, 70, 50], [60, 40, 120, 90]]), paddle.zeros([0, 4])],
            "gt_class": [paddle.to_tensor([0, 2], "int32"), paddle.zeros([0], "int32")],
            "gt_mask": [paddle.to_tensor(mask), paddle.zeros([0, h, w], "uint8")],
            "is_crowd": [paddle.to_tensor([0, 1], "int32"), paddle.zeros([0], "int32")]}


@pytest.mark.parametrize("size", [(64, 96), (128, 64), (160, 160)])
def test_anchor_points_follow_the_feature_shapes(model, size) -> None:
    h, w = size
    feats = [paddle.zeros([1, 1, h // s, w // s]) for s in (32, 16, 8)]
    points, strides = model.yolo_head.anchor_points(feats)
    counts = [(h // s) * (w // s) for s in (32, 16, 8)]
    assert points.shape == [sum(counts), 2] and strides.shape == [sum(counts), 1]
    first_fine = counts[0] + counts[1]
    np.testing.assert_array_equal(points.numpy()[first_fine + 1], [1.5, 0.5])  # row-major, x first
    np.testing.assert_array_equal(points.numpy()[first_fine + w // 8], [0.5, 1.5])
    assert strides.numpy()[0, 0] == 32 and strides.numpy()[-1, 0] == 8


def test_assigner_picks_inside_anchors_and_ignores_padding() -> None:
    xs, ys = np.meshgrid(np.arange(8) * 8 + 4.0, np.arange(8) * 8 + 4.0)
    points = paddle.to_tensor(np.stack([xs.ravel(), ys.ravel()], 1).astype("float32"))
    boxes = np.tile(np.array([[0, 0, 20, 20]], "float32"), (64, 1))
    boxes[:, :2] += points.numpy() - 10
    boxes[:, 2:] += points.numpy() - 10  # each anchor predicts a 20 x 20 box around itself
    pred_boxes = paddle.to_tensor(boxes[None])
    scores = paddle.full([1, 64, 2], 0.5)
    gt = paddle.to_tensor([[[0.0, 0, 24, 24], [40, 40, 64, 64], [0, 0, 64, 64]]])
    valid = paddle.to_tensor([[1.0, 1.0, 0.0]])  # the third row is padding covering everything
    labels, assigned, target, index = TaskAlignedAssigner(topk=4)(
        scores, pred_boxes, points, paddle.to_tensor([[1, 0, 1]], "int64"), gt, valid, 2)
    labels = labels.numpy()[0]
    grid = labels.reshape(8, 8)
    assert (grid[:3, :3] == 1).sum() == 4 and (grid[5:, 5:] == 0).sum() == 4  # top-4 inside each box
    assert (labels == 2).sum() == 64 - 8
    assert set(index.numpy()[0][labels != 2]) <= {0, 1}
    # target scores: alignment normalised per object, times the object's best IoU (20x20 in 24x24)
    assert target.numpy()[0][labels == 2].max() == 0
    assert target.numpy().max() == pytest.approx(400 / 576, abs=1e-5)
    np.testing.assert_array_equal(assigned.numpy()[0][labels == 0][0], [40, 40, 64, 64])


def test_box_losses() -> None:
    a = paddle.to_tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    b = paddle.to_tensor([[0.0, 0, 10, 10], [20, 0, 30, 10]])
    # the enclosing box is 300 in area, 100 of it outside both boxes
    np.testing.assert_allclose(giou_loss(a, b).numpy().ravel(), [0.0, 1 + 100 / 300], atol=1e-6)
    logits = paddle.to_tensor(np.log(np.eye(5, dtype="float32") * 0.98 + 0.005)[None, :4])
    exact = distribution_focal_loss(logits, paddle.to_tensor([[0.0, 1.0, 2.0, 3.0]]))
    between = distribution_focal_loss(logits, paddle.to_tensor([[0.5, 1.5, 2.5, 3.5]]))
    assert float(exact.sum()) < float(between.sum())
    score = paddle.to_tensor([[0.9, 0.2]])
    vfl = varifocal_loss(score, paddle.to_tensor([[0.8, 0.0]]), paddle.to_tensor([[1.0, 0.0]]))
    expected = 0.8 * -(0.8 * np.log(0.9) + 0.2 * np.log(0.1)) + 0.75 * 0.2 ** 2 * -np.log(0.8)
    assert float(vfl) == pytest.approx(expected, rel=1e-5)


def test_mask_assembly_equals_resize_crop_resize() -> None:
    paddle.seed(3)
    protos = paddle.randn([2, 8, 24, 32])
    coeffs = paddle.randn([3, 8])
    boxes = paddle.to_tensor([[10.3, 5.2, 90.7, 60.1], [0.0, 0.0, 128.0, 96.0], [50.5, 40.0, 51.5, 90.0]])
    image_of = paddle.to_tensor([0, 1, 1], "int64")
    scale = paddle.to_tensor([[0.8, 0.64], [0.5, 0.5], [0.5, 0.5]])
    original = paddle.to_tensor([[120.0, 200.0], [192.0, 256.0], [192.0, 256.0]])
    ours = assemble_masks(protos, coeffs, image_of, boxes, paddle.to_tensor([96.0, 128.0]), scale, original,
                          192, 256).numpy()
    assert ours.dtype == np.uint8 and ours.shape == (3, 192, 256)
    for k in range(3):
        i = int(image_of[k])
        m = F.sigmoid(coeffs[k:k + 1] @ protos[i].reshape([8, -1])).reshape([1, 1, 24, 32])
        m = F.interpolate(m, [96, 128], mode="bilinear", align_corners=False)
        x1, y1, x2, y2 = boxes.numpy()[k]
        yy, xx = np.mgrid[:96, :128]
        m = m * paddle.to_tensor(((xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2)).astype("float32"))
        size = [int(np.floor(96 / float(scale[k, 0]) + 0.5)), int(np.floor(128 / float(scale[k, 1]) + 0.5))]
        m = F.interpolate(m, size, mode="bilinear", align_corners=False).numpy()[0, 0] > 0.5
        oh, ow = int(original[k, 0]), int(original[k, 1])
        expected = np.zeros((192, 256), bool)
        expected[:oh, :ow] = m[:oh, :ow]
        np.testing.assert_array_equal(ours[k] > 0, expected, err_msg=str(k))


def test_loss_terms_are_finite_and_train_every_branch(model) -> None:
    model.train()
    losses = model.loss(_batch())
    assert sorted(losses) == ["loss_cls", "loss_dfl", "loss_iou", "loss_mask"]
    assert all(np.isfinite(float(v)) and float(v) > 0 for v in losses.values())
    model.clear_gradients()
    paddle.add_n(list(losses.values())).backward()
    head = model.yolo_head
    for layer in (head.pred_cls[2], head.pred_reg[2], head.pred_ins[2], head.proto.conv3.conv):
        assert layer.weight.grad is not None and float(layer.weight.grad.abs().sum()) > 0
    assert head.proj_conv.weight.grad is None
    model.clear_gradients()


def test_loss_without_objects_is_only_classification(model) -> None:
    batch = _batch()
    batch["is_crowd"][0] = paddle.to_tensor([1, 1], "int32")  # crowd regions are never targets
    model.train()
    losses = model.loss(batch)
    assert float(losses["loss_cls"]) > 0
    assert float(losses["loss_iou"]) == float(losses["loss_dfl"]) == float(losses["loss_mask"]) == 0.0


def test_predict_protocol(model) -> None:
    """Two copies of one image at different scales: the same detections, in each image's original pixels."""
    model.eval()
    cls = model.yolo_head.pred_cls[2]
    saved = [cls.weight.numpy().copy(), cls.bias.numpy().copy()]
    rng = np.random.default_rng(0)
    cls.weight.set_value(rng.normal(0, 0.05, saved[0].shape).astype("float32"))  # untied scores
    cls.bias.set_value(np.array([3.0, -9, -9], "float32"))  # class 0 everywhere at stride 8
    try:
        out = model.predict({"image": paddle.rand([1, 3, 96, 128]).tile([2, 1, 1, 1]),
                             "im_shape": paddle.to_tensor([[96.0, 128], [96, 128]]),
                             "scale_factor": paddle.to_tensor([[1.0, 1.0], [0.5, 0.4]])})
    finally:
        cls.weight.set_value(saved[0])
        cls.bias.set_value(saved[1])
    num = out["bbox_num"].numpy()
    assert out["bbox_num"].dtype == paddle.int32 and num[0] == num[1] > 0
    k = int(num.sum())
    assert out["bbox"].shape == [k, 6] and out["mask"].dtype == paddle.uint8
    assert out["mask"].shape == [k, 192, 320]  # the larger original size: 96 / 0.5 x 128 / 0.4
    first, second = out["bbox"].numpy()[:num[0]], out["bbox"].numpy()[num[0]:]
    assert (np.diff(first[:, 1]) <= 0).all() and (out["bbox"].numpy()[:, 0] == 0).all()
    np.testing.assert_allclose(second[:, 1], first[:, 1])
    np.testing.assert_allclose(second[:, 2:], first[:, 2:] / [0.4, 0.5, 0.4, 0.5], rtol=1e-5)
    masks = out["mask"].numpy()
    assert masks[:num[0], 96:, :].max() == 0 and masks[:num[0], :, 128:].max() == 0  # within image 1
    assert masks[:num[0]].max() == 1


def test_predict_without_detections(model) -> None:
    model.eval()
    out = model.predict({"image": paddle.rand([1, 3, 64, 64]), "im_shape": paddle.to_tensor([[64.0, 64]]),
                         "scale_factor": paddle.to_tensor([[1.0, 1.0]])})
    assert out["bbox"].shape == [0, 6] and list(out["bbox_num"].numpy()) == [0]
    assert out["mask"].shape == [0, 64, 64]


def test_predict_without_detections_skips_the_prototypes(model) -> None:
    """Eagerly, an image with no detection never runs the prototype branch (its masks would be dropped);
    one with detections does."""
    model.eval()
    calls = []
    hook = model.yolo_head.proto.register_forward_pre_hook(lambda layer, inputs: calls.append(1))
    batch = {"image": paddle.rand([1, 3, 64, 96]), "im_shape": paddle.to_tensor([[64.0, 96]]),
             "scale_factor": paddle.to_tensor([[0.5, 0.5]])}
    cls = model.yolo_head.pred_cls[2]
    saved = cls.bias.numpy().copy()
    try:
        out = model.predict(batch)
        assert calls == [] and list(out["bbox_num"].numpy()) == [0]
        assert out["mask"].shape == [0, 128, 192] and out["mask"].dtype == paddle.uint8
        cls.bias.set_value(np.array([3.0, -9, -9], "float32"))  # class 0 everywhere at stride 8
        out = model.predict(batch)
        assert calls == [1] and int(out["bbox_num"].numpy()[0]) > 0
    finally:
        hook.remove()
        cls.bias.set_value(saved)


def test_per_class_top_k_shortcut_keeps_the_same_nms_candidates() -> None:
    """With at most k scores above the threshold per (image, class) the cut is skipped eagerly; NMS's
    candidates (scores above the threshold) are the ones the full cut keeps."""
    from engine.models.detectors.ppyoloe_seg import _per_class_top_k

    rng = np.random.default_rng(0)
    scores = paddle.to_tensor(rng.uniform(0, 0.02, (2, 300, 5)).astype("float32"))
    threshold = 0.01
    assert int((scores > threshold).astype("int32").sum(axis=1).max()) <= 200
    shortcut = _per_class_top_k(scores, 200, threshold).numpy()
    full = _per_class_top_k(scores, 200, -1.0).numpy()  # a negative threshold disables the shortcut
    np.testing.assert_array_equal(shortcut > threshold, full > threshold)
    kept = full > threshold
    np.testing.assert_array_equal(np.where(kept, shortcut, 0), np.where(kept, full, 0))
    cut = _per_class_top_k(scores, 50, threshold).numpy()  # over k above the threshold: the full cut
    assert ((cut > 0).sum(axis=1) <= 50).all() and ((cut > threshold).sum(axis=1) == 50).all()
