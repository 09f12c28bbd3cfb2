"""R-CNN ops with hand-computed expectations: boxes, anchors, matching/sampling, NMS, RoIAlign, pasting."""
import math

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from engine.models.ops.anchors import AnchorGenerator, cell_anchors
from engine.models.ops.assigners import GroundTruth, match_boxes, roi_targets, sample_fg_bg
from engine.models.ops.box_coder import box_iou, clip_boxes, decode_boxes, encode_boxes
from engine.models.ops.mask_paste import paste_masks
from engine.models.ops.nms import multiclass_nms, segment_ids, top_k_per_image
from engine.models.ops.proposals import ProposalConfig, generate_rpn_proposals
from engine.models.ops.roi_align import RoIAlign, crop_masks


def t(values, dtype="float32") -> paddle.Tensor:
    return paddle.to_tensor(np.asarray(values, dtype=dtype))


def test_box_iou_hand_computed() -> None:
    a = t([[0, 0, 10, 10], [0, 0, 2, 2]])
    b = t([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    iou = box_iou(a, b).numpy()
    np.testing.assert_allclose(iou, [[50 / 150, 0, 1], [0, 0, 4 / 100]], rtol=1e-6)


def test_encode_decode_round_trip_and_known_deltas() -> None:
    src = t([[0, 0, 10, 20]])
    tgt = t([[5, 0, 15, 40]])  # centre moves (+5, +10), height doubles
    deltas = encode_boxes(src, tgt, (10, 10, 5, 5)).numpy()
    np.testing.assert_allclose(deltas, [[10 * 5 / 10, 10 * 10 / 20, 0, 5 * math.log(2)]], rtol=1e-6)
    back = decode_boxes(t(deltas), src, (10, 10, 5, 5)).numpy()
    assert back.shape == (1, 1, 4)
    np.testing.assert_allclose(back[:, 0], tgt.numpy(), atol=1e-4)


def test_decode_clamps_huge_scales_and_clip_boxes() -> None:
    out = decode_boxes(t([[0, 0, 100, 100]]), t([[0, 0, 10, 10]])).numpy()[0, 0]
    assert out[2] - out[0] == pytest.approx(10 * 1000 / 16, rel=1e-4)
    clipped = clip_boxes(t([[-5, 3, 50, 70]]), t(40.0), t(30.0)).numpy()
    np.testing.assert_allclose(clipped, [[0, 3, 30, 40]])


def test_cell_anchors_and_grid() -> None:
    cells = cell_anchors([32], [0.5, 1.0, 2.0])
    w = math.sqrt(32 * 32 / 0.5)
    np.testing.assert_allclose(cells[0], [-w / 2, -0.5 * w / 2, w / 2, 0.5 * w / 2], rtol=1e-6)
    np.testing.assert_allclose(cells[1], [-16, -16, 16, 16])
    gen = AnchorGenerator([[32], [64]], [0.5, 1.0, 2.0], [4, 8])
    anchors = gen([paddle.zeros([1, 1, 2, 3]), paddle.zeros([1, 1, 1, 2])])
    assert [a.shape for a in anchors] == [[2 * 3 * 3, 4], [1 * 2 * 3, 4]]
    # location (y=0, x=1) of level 0 is the 2nd group of 3 anchors, shifted by the stride in x
    np.testing.assert_allclose(anchors[0].numpy()[4], [-16 + 4, -16, 16 + 4, 16])
    # location (y=1, x=0): 4th group, shifted in y
    np.testing.assert_allclose(anchors[0].numpy()[3 * 3 + 1], [-16, -16 + 4, 16, 16 + 4])
    with pytest.raises(ValueError):
        AnchorGenerator([[32], [64]], [1.0], [4])


def test_match_boxes_thresholds_and_low_quality() -> None:
    iou = t([[0.8, 0.5, 0.1, 0.0],
             [0.0, 0.2, 0.25, 0.0]])
    matches, labels = match_boxes(iou, 0.7, 0.3, allow_low_quality=False)
    assert matches.numpy().tolist() == [0, 0, 1, 0]
    assert labels.numpy().tolist() == [1, -1, 0, 0]
    _, labels = match_boxes(iou, 0.7, 0.3, allow_low_quality=True)
    assert labels.numpy().tolist() == [1, -1, 1, 0]  # column 2 is gt 1's best match


def test_sample_fg_bg_respects_fraction_and_budget() -> None:
    paddle.seed(1)
    labels = t([1] * 30 + [0] * 100 + [-1] * 20, "int32")
    fg, bg = sample_fg_bg(labels, 64, 0.25)
    assert fg.shape[0] == 16 and bg.shape[0] == 48
    assert set(fg.numpy().tolist()) <= set(range(30)) and len(set(fg.numpy().tolist())) == 16
    assert set(bg.numpy().tolist()) <= set(range(30, 130)) and len(set(bg.numpy().tolist())) == 48
    few = t([1, 1, 0, -1], "int32")
    fg, bg = sample_fg_bg(few, 64, 0.25)
    assert sorted(fg.numpy().tolist()) == [0, 1] and bg.numpy().tolist() == [2]


def test_roi_targets_adds_ground_truth_and_labels_background() -> None:
    gt = GroundTruth(t([[0, 0, 10, 10], [20, 20, 40, 40]]), t([2, 0], "int64"),
                     paddle.zeros([2, 4, 4], dtype="uint8"), [1, 1])
    rois = t([[0, 0, 10, 9], [50, 50, 60, 60], [20, 20, 40, 41]])
    out = roi_targets(rois, [2, 1], gt, num_classes=3, fg_thresh=0.5, bg_thresh=0.5,
                      batch_size_per_im=8, fg_fraction=0.5)
    assert out.rois_num.numpy().tolist() == [3, 2]  # image 0: 2 rois + 1 gt; image 1: 1 roi + 1 gt
    labels = out.labels.numpy().tolist()
    assert sorted(labels[:3]) == [2, 2, 3] and labels[3:] == [0, 0]
    assert out.gt_index.numpy().tolist()[3:] == [1, 1]  # index into the concatenated ground truth
    np.testing.assert_allclose(out.gt_boxes.numpy()[3:], [[20, 20, 40, 40]] * 2)


def test_top_k_per_image_and_segment_ids() -> None:
    assert segment_ids(t([2, 0, 3], "int32"), 5).numpy().tolist() == [0, 0, 2, 2, 2]
    scores = t([0.1, 0.9, 0.5, 0.7, 0.3, 0.8])
    images = t([1, 0, 1, 0, 0, 1], "int64")
    keep, counts = top_k_per_image(scores, images, 3, 2)
    assert keep.numpy().tolist() == [1, 3, 5, 2]
    assert counts.numpy().tolist() == [2, 2, 0]


def test_multiclass_nms_per_class_per_image_and_top_k() -> None:
    boxes = t([[[0, 0, 10, 10]] * 2,
               [[1, 0, 11, 10]] * 2,       # overlaps roi 0 (IoU 0.82)
               [[0, 0, 10, 10]] * 2,       # same box as roi 0 but in image 1
               [[50, 50, 60, 60]] * 2])
    probs = t([[0.9, 0.6], [0.8, 0.01], [0.7, 0.2], [0.04, 0.3]])
    dets, counts = multiclass_nms(boxes, probs, t([2, 2], "int32"), 0.05, 0.5, keep_top_k=100)
    assert counts.numpy().tolist() == [2, 3]
    rows = dets.numpy()
    np.testing.assert_allclose(rows[:, :2], [[0, 0.9], [1, 0.6], [0, 0.7], [1, 0.3], [1, 0.2]], rtol=1e-6)
    np.testing.assert_allclose(rows[3, 2:], [50, 50, 60, 60])
    dets, counts = multiclass_nms(boxes[:, :1], probs, t([2, 2], "int32"), 0.05, 0.5, keep_top_k=1)
    assert counts.numpy().tolist() == [1, 1]
    np.testing.assert_allclose(dets.numpy()[:, :2], [[0, 0.9], [0, 0.7]], rtol=1e-6)


def _grid_sample_paste(masks: paddle.Tensor, boxes: paddle.Tensor, h: int, w: int) -> np.ndarray:
    """PaddleDetection's paste: a full-image grid_sample per box."""
    x0, y0, x1, y1 = paddle.split(boxes, 4, axis=1)
    gy = (paddle.arange(h, dtype="float32") + 0.5 - y0) / (y1 - y0) * 2 - 1
    gx = (paddle.arange(w, dtype="float32") + 0.5 - x0) / (x1 - x0) * 2 - 1
    n = masks.shape[0]
    grid = paddle.stack([gx[:, None, :].expand([n, h, w]), gy[:, :, None].expand([n, h, w])], axis=3)
    return F.grid_sample(masks[:, None], grid, align_corners=False)[:, 0].numpy()


def test_paste_masks_equals_grid_sample_paste() -> None:
    paddle.seed(3)
    masks = paddle.rand([6, 28, 28])
    boxes = t([[3, 4, 40, 30], [0, 0, 64, 48], [10.5, 7.25, 11.5, 9], [-5, -5, 20, 20],
               [30, 20, 90, 70], [1, 1, 2, 2]])
    out = paste_masks(masks, boxes, 48, 64).numpy()
    ref = _grid_sample_paste(masks, boxes, 48, 64) >= 0.5
    assert out.dtype == np.uint8 and out.shape == (6, 48, 64)
    assert (out == ref).all() and ref.sum() > 1000


def test_crop_masks_resamples_each_rois_own_bitmap() -> None:
    masks = np.zeros((2, 32, 32), np.uint8)
    masks[0, 8:24, 8:24] = 1
    masks[1, :, :16] = 1
    rois = t([[8, 8, 24, 24], [0, 0, 32, 32], [8, 0, 24, 16]])
    out = crop_masks(paddle.to_tensor(masks), t([0, 1, 0], "int64"), rois, 4).numpy()
    np.testing.assert_array_equal(out[0], np.ones((4, 4)))
    np.testing.assert_array_equal(out[1], np.tile([1, 1, 0, 0], (4, 1)))
    np.testing.assert_array_equal(out[2], np.array([[0] * 4, [0] * 4, [1] * 4, [1] * 4]))


def test_roi_align_assigns_levels_by_size() -> None:
    # constant feature maps: the pooled value tells which level a RoI used
    feats = [paddle.full([1, 1, 512 // s, 512 // s], float(i)) for i, s in enumerate([4, 8, 16, 32])]
    rois = t([[0, 0, 20, 20], [0, 0, 60, 60], [0, 0, 112, 112], [0, 0, 480, 480]])
    align = RoIAlign(2, [1 / 4, 1 / 8, 1 / 16, 1 / 32])
    pooled = align(feats, rois, t([4], "int32")).numpy()
    # level = floor(4 + log2(sqrt(area) / 224)) clamped to [2, 5] -> index 0, 0, 1, 3
    assert pooled[:, 0, 0, 0].tolist() == [0.0, 0.0, 1.0, 3.0]


def test_generate_rpn_proposals_keeps_top_n_per_image() -> None:
    paddle.seed(0)
    gen = AnchorGenerator([[16], [32]], [1.0], [8, 16])
    feats = [paddle.zeros([2, 1, 8, 8]), paddle.zeros([2, 1, 4, 4])]
    scores = [paddle.randn([2, 1, 8, 8]), paddle.randn([2, 1, 4, 4])]
    deltas = [paddle.zeros([2, 4, 8, 8]), paddle.zeros([2, 4, 4, 4])]
    cfg = ProposalConfig(pre_nms_top_n=50, post_nms_top_n=20, nms_thresh=0.7, topk_after_collect=True)
    rois, num = generate_rpn_proposals(scores, deltas, gen(feats), t([[64, 64], [40, 64]]), cfg)
    assert num.numpy().tolist() == [20, 20] and rois.shape == [40, 4]
    assert float(rois[20:, 3].max()) <= 40.0  # image 1 proposals clipped to its own height
