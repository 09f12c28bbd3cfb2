"""Post-processing survives a batch without any RoI (seen early in training, when the RPN proposes nothing),
and the placeholder detection that keeps traced graphs free of zero-size tensors comes and goes exactly."""
import paddle

from engine.models.ops.nms import SENTINEL_SCORE, drop_sentinel, multiclass_nms


def test_multiclass_nms_without_rois():
    dets, counts = multiclass_nms(paddle.zeros([0, 3, 4]), paddle.zeros([0, 3]),
                                  paddle.to_tensor([0, 0], dtype="int32"), 0.05, 0.5, 100)
    assert dets.shape == [0, 6]
    assert counts.numpy().tolist() == [0, 0]


def _dets(rows_per_image, keep_top_k, sentinel=True):
    """RoIs with one confident class-1 box each, images given by rows_per_image."""
    n = sum(rows_per_image)
    boxes = paddle.to_tensor([[[10.0 * i, 0.0, 10.0 * i + 8.0, 8.0]] for i in range(n)]).expand([n, 3, 4])
    probs = paddle.to_tensor([[0.01, 0.9 - 0.01 * i, 0.01] for i in range(n)])
    rois_num = paddle.to_tensor(rows_per_image, dtype="int32")
    return multiclass_nms(boxes, probs, rois_num, 0.05, 0.5, keep_top_k, sentinel=sentinel)


def test_sentinel_keeps_detections_non_empty_and_drop_removes_it():
    dets, counts = multiclass_nms(paddle.zeros([0, 3, 4]), paddle.zeros([0, 3]),
                                  paddle.to_tensor([0, 0], dtype="int32"), 0.05, 0.5, 100, sentinel=True)
    assert dets.numpy().tolist() == [[0.0, SENTINEL_SCORE, 0.0, 0.0, 2.0, 2.0]]
    assert counts.numpy().tolist() == [1, 0]
    masks = paddle.ones([1, 4, 4])
    dets, counts, masks = drop_sentinel(dets, counts, masks)
    assert dets.shape == [0, 6] and masks.shape == [0, 4, 4] and counts.numpy().tolist() == [0, 0]


def test_sentinel_in_first_image_when_only_others_detect():
    dets, counts = _dets([0, 2], 100)
    assert counts.numpy().tolist() == [1, 2] and float(dets[0, 1]) == SENTINEL_SCORE
    kept, counts = drop_sentinel(dets, counts)
    plain, plain_counts = _dets([0, 2], 100, sentinel=False)
    assert counts.numpy().tolist() == plain_counts.numpy().tolist() == [0, 2]
    assert kept.numpy().tolist() == plain.numpy().tolist()


def test_sentinel_pushed_out_by_keep_top_k_real_detections():
    dets, counts = _dets([3, 1], 3)
    plain, plain_counts = _dets([3, 1], 3, sentinel=False)
    assert counts.numpy().tolist() == plain_counts.numpy().tolist() == [3, 1]
    assert dets.numpy().tolist() == plain.numpy().tolist()  # the placeholder lost its place to real ones
    kept, counts = drop_sentinel(dets, counts)
    assert counts.numpy().tolist() == [3, 1] and kept.numpy().tolist() == plain.numpy().tolist()
