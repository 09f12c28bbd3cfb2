"""Training pieces PP-YOLOE_seg's config relies on: EMA leaves frozen parameters (the fixed projection conv)
out of the average; expand fills its canvas with `expand_fill` and keeps boxes on their masks."""
from types import SimpleNamespace

import numpy as np

from engine.config.architectures import PPYOLOESegArchitecture
from engine.data.augment import random_augment
from engine.models.zoo import build_model
from engine.training.ema import ModelEMA


def test_ema_copies_frozen_parameters_and_averages_the_rest() -> None:
    model = build_model("PP-YOLOE_seg-S", PPYOLOESegArchitecture(width_mult=0.125), 2)
    ema = ModelEMA(model, decay=0.9998)
    proj = model.yolo_head.proj_conv.weight
    cls = model.yolo_head.pred_cls[0].bias
    proj.set_value(proj.numpy() * 3.0)  # stands for any change: the copy must follow it exactly
    cls.set_value(cls.numpy() + 1.0)
    before = ema.state_dict()["yolo_head.pred_cls.0.bias"].numpy()
    ema.update(model)
    state = ema.state_dict()
    np.testing.assert_array_equal(state["yolo_head.proj_conv.weight"].numpy(), proj.numpy())
    d = 1 / 10  # the first update's warm-up decay
    np.testing.assert_allclose(state["yolo_head.pred_cls.0.bias"].numpy(), before * d + cls.numpy() * (1 - d),
                               rtol=1e-6)


def test_expand_fills_with_expand_fill_and_boxes_follow_masks() -> None:
    image = np.full((40, 60, 3), 200, np.uint8)
    masks = np.zeros((1, 40, 60), np.uint8)
    masks[0, 5:25, 10:50] = 1
    reader = SimpleNamespace(distort=False, expand=True, crop=False, mean=[0.0, 0.0, 0.0],
                             expand_fill=[1.0, 0.0, 0.5])
    for seed in range(20):
        sample = {"image": image.copy(), "gt_mask": masks.copy(),
                  "gt_bbox": np.array([[10, 5, 50, 25]], "float32"), "gt_class": np.zeros(1, "int32"),
                  "is_crowd": np.zeros(1, "int32")}
        out = random_augment(sample, reader, np.random.default_rng(seed))
        if out["image"].shape[:2] == (40, 60):
            continue  # expand skipped (probability 1/2)
        outside = out["image"][out["image"].sum(axis=2) != 600]
        assert len(outside) and (outside == [255, 0, 127]).all()
        ys, xs = np.nonzero(out["gt_mask"][0])
        np.testing.assert_array_equal(out["gt_bbox"][0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        return
    raise AssertionError("expand never ran in 20 seeds")
