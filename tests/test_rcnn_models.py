"""Mask R-CNN / Cascade Mask R-CNN: the model protocol (losses, predictions in original pixels,
crowd regions ignored), export tracing, and the zoo's errors. Narrow variants on 96 px images."""
import math
from typing import Dict

import numpy as np
import paddle
import pytest
from omegaconf import OmegaConf

from engine.config.architectures import RCNNArchitecture
from engine.config.model_names import MODEL_FAMILIES
from engine.errors import ConfigError, ModeNotAvailableError
from engine.models.detectors.mask_rcnn import ground_truth
from engine.models.zoo import MODELS, build_model
from test_rcnn_learning import TINY, synthetic_batch

KINDS = {
    "MaskRCNN-ResNet50-FPN": ["loss_rpn_cls", "loss_rpn_reg", "loss_bbox_cls", "loss_bbox_reg", "loss_mask"],
    "MaskRCNN-ResNet50": ["loss_rpn_cls", "loss_rpn_reg", "loss_bbox_cls", "loss_bbox_reg", "loss_mask"],
    "Cascade-MaskRCNN-ResNet50-FPN": ["loss_rpn_cls", "loss_rpn_reg"]
    + [f"loss_bbox_{k}_stage{i}" for i in range(3) for k in ("cls", "reg")] + ["loss_mask"],
}


def tiny(name: str, num_classes: int = 3) -> paddle.nn.Layer:
    paddle.seed(0)
    return build_model(name, TINY, num_classes)


def always_detect(model: paddle.nn.Layer) -> None:
    """Make class 0 score high on every RoI, so that every image has detections."""
    head = model.bbox_head
    scorers = head.scorers if hasattr(head, "scorers") else [head.bbox_score]
    for layer in scorers:
        bias = layer.bias.numpy()
        bias[0] = 10.0
        layer.bias.set_value(bias)


@pytest.mark.parametrize("name", list(KINDS))
def test_losses_are_named_finite_and_reach_every_head(name: str) -> None:
    model = tiny(name)
    batch, _ = synthetic_batch(2, seed=5)
    model.train()
    losses = model.loss(batch)
    assert sorted(losses) == sorted(KINDS[name])
    assert all(v.shape == [] or v.size == 1 for v in losses.values())
    assert all(math.isfinite(float(v)) for v in losses.values())
    paddle.add_n(list(losses.values())).backward()
    for layer in (model.rpn_head.rpn_rois_score, model.mask_head.mask_fcn_logits):
        assert float(layer.weight.grad.abs().sum()) > 0


def test_crowd_regions_are_neither_matched_nor_targets() -> None:
    batch, _ = synthetic_batch(2, seed=5)
    crowd = dict(batch, is_crowd=[paddle.to_tensor(np.r_[1, np.zeros(len(c) - 1)].astype("int32"))
                                  for c in batch["gt_class"]])
    fields = ("gt_bbox", "gt_class", "gt_mask", "is_crowd")
    without = dict(batch, **{k: [v[1:] for v in batch[k]] for k in fields})
    gt = ground_truth(crowd)
    assert gt.counts == [len(c) - 1 for c in batch["gt_class"]]
    np.testing.assert_array_equal(gt.boxes.numpy(), np.concatenate([b.numpy()[1:] for b in batch["gt_bbox"]]))
    model = tiny("MaskRCNN-ResNet50-FPN")
    model.train()
    paddle.seed(1)
    with_crowd = {k: float(v) for k, v in model.loss(crowd).items()}
    paddle.seed(1)
    dropped = {k: float(v) for k, v in model.loss(without).items()}
    assert with_crowd == dropped


@pytest.mark.parametrize("empty_images", [[1], [0, 1]])
def test_images_without_instances_train(empty_images: list) -> None:
    batch, _ = synthetic_batch(2, seed=5)
    for i in empty_images:
        batch["gt_bbox"][i] = paddle.zeros([0, 4])
        batch["gt_class"][i] = paddle.zeros([0], dtype="int32")
        batch["gt_mask"][i] = paddle.zeros([0, 96, 96], dtype="uint8")
        batch["is_crowd"][i] = paddle.zeros([0], dtype="int32")
    model = tiny("Cascade-MaskRCNN-ResNet50-FPN")
    model.train()
    losses = model.loss(batch)
    assert all(math.isfinite(float(v)) for v in losses.values())
    paddle.add_n(list(losses.values())).backward()


@pytest.mark.parametrize("name", list(KINDS))
def test_predictions_are_in_original_pixels(name: str) -> None:
    # 96 px inputs resized from 192 x 144 originals (scale 0.5 in y, 2/3 in x)
    model = tiny(name)
    always_detect(model)
    model.eval()
    batch, _ = synthetic_batch(2, seed=5)
    batch["scale_factor"] = paddle.to_tensor([[0.5, 96 / 144]] * 2)
    with paddle.no_grad():
        out = model.predict(batch)
    bbox, num, mask = out["bbox"].numpy(), out["bbox_num"].numpy(), out["mask"].numpy()
    assert out["bbox_num"].dtype == paddle.int32 and 0 < num.min() and num.max() <= TINY.keep_top_k
    assert bbox.shape == (num.sum(), 6) and mask.shape == (num.sum(), 192, 144) and mask.dtype == np.uint8
    assert set(np.unique(bbox[:, 0])) <= {0.0, 1.0, 2.0} and (np.diff(bbox[:num[0], 1]) <= 0).all()
    assert (bbox[:, 2:] >= 0).all() and (bbox[:, [3, 5]] <= 192).all() and (bbox[:, [2, 4]] <= 144).all()
    for row, m in zip(bbox, mask):  # every mask pixel lies in (a pixel around) its box
        ys, xs = np.nonzero(m)
        if len(ys):
            assert xs.min() >= math.floor(row[2]) - 1 and xs.max() <= math.ceil(row[4])
            assert ys.min() >= math.floor(row[3]) - 1 and ys.max() <= math.ceil(row[5])


@pytest.mark.parametrize("name", list(KINDS))
def test_forward_traces_with_to_static_and_matches_eager(name: str) -> None:
    model = tiny(name)
    always_detect(model)
    model.eval()
    batch, _ = synthetic_batch(2, seed=5)
    with paddle.no_grad():
        eager: Dict[str, paddle.Tensor] = model.predict(batch)
        static = paddle.jit.to_static(model.forward, input_spec=list(model.export_spec().values()),
                                      full_graph=True)
        traced = static(batch["image"], batch["im_shape"], batch["scale_factor"])
    np.testing.assert_array_equal(traced["bbox_num"].numpy(), eager["bbox_num"].numpy())
    np.testing.assert_allclose(traced["bbox"].numpy(), eager["bbox"].numpy(), rtol=1e-4, atol=1e-3)
    assert (traced["mask"].numpy() != eager["mask"].numpy()).mean() < 1e-3


def test_zoo_covers_the_rcnn_names_and_explains_the_rest() -> None:
    assert {n for n, f in MODEL_FAMILIES.items() if f == "rcnn"} <= set(MODELS)
    with pytest.raises(ConfigError, match="Did you mean MaskRCNN-ResNet50-FPN"):
        build_model("MaskRCNN-ResNet50-FNP", None, 3)
    for name in sorted(set(MODEL_FAMILIES) - set(MODELS)):
        with pytest.raises(ModeNotAvailableError, match=name):
            build_model(name, None, 3)
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("MaskRCNN-ResNet50-FPN", TINY, 0)
    with pytest.raises(ConfigError, match="anchor_sizes"):
        build_model("MaskRCNN-ResNet50-FPN", RCNNArchitecture(base_channels=16, anchor_sizes=[32, 64]), 3)


def test_zoo_accepts_the_config_section_and_applies_its_knobs() -> None:
    section = OmegaConf.merge(OmegaConf.structured(RCNNArchitecture),
                              {"base_channels": 16, "fpn_channels": 32, "keep_top_k": 7,
                               "draw_threshold": 0.3})
    model = build_model("Cascade-MaskRCNN-ResNet50-FPN", section, 5)
    assert model.post.keep_top_k == 7 and model.draw_threshold == 0.3
    assert model.rpn_head.train_proposals.post_nms_top_n == 2000  # Cascade's PaddleDetection default
    assert model.bbox_head.scorers[0].weight.shape == [1024, 6]
    c4 = build_model("MaskRCNN-ResNet50", RCNNArchitecture(base_channels=16), 5)
    assert c4.rpn_head.train_proposals.pre_nms_top_n == 12000
    assert c4.rpn_head.anchor_generator.num_anchors == 15
