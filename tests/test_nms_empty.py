"""Post-processing survives a batch without any RoI (seen early in training, when the RPN proposes nothing)."""
import paddle

from engine.models.ops.nms import multiclass_nms


def test_multiclass_nms_without_rois():
    dets, counts = multiclass_nms(paddle.zeros([0, 3, 4]), paddle.zeros([0, 3]),
                                  paddle.to_tensor([0, 0], dtype="int32"), 0.05, 0.5, 100)
    assert dets.shape == [0, 6]
    assert counts.numpy().tolist() == [0, 0]
