"""PP-YOLOE_seg learns: a narrow model over-fits a few generated images to mask AP >= 0.5 (on those images).

Uses the generated batches and the COCO mask AP of tests/test_rcnn_learning.py; pixels / 255 as the model's
config normalises them (mean 0, std 1).
"""
import numpy as np
import paddle

from dataset_tools.synthetic import CLASS_NAMES
from engine.config.architectures import PPYOLOESegArchitecture
from engine.models.zoo import build_model
from test_rcnn_learning import MEAN, STD, mask_ap, synthetic_batch

TINY = PPYOLOESegArchitecture(depth_mult=0.33, width_mult=0.125, keep_top_k=50)


def test_tiny_ppyoloe_seg_overfits_generated_images() -> None:
    paddle.seed(0)
    np.random.seed(0)
    batch, instances = synthetic_batch(4, seed=11)
    # the helper normalises with ImageNet mean/std; PP-YOLOE takes pixels / 255
    batch["image"] = (batch["image"] * paddle.to_tensor(STD).reshape([1, 3, 1, 1])
                      + paddle.to_tensor(MEAN).reshape([1, 3, 1, 1])) / 255.0
    model = build_model("PP-YOLOE_seg-S", TINY, num_classes=len(CLASS_NAMES))
    opt = paddle.optimizer.AdamW(learning_rate=4e-3, parameters=model.parameters(), weight_decay=1e-4)
    model.train()
    first = None
    for _ in range(120):
        losses = model.loss(batch)
        total = paddle.add_n(list(losses.values()))
        first = first if first is not None else float(total)
        total.backward()
        opt.step()
        opt.clear_grad()
    assert float(total) < 0.3 * first
    model.eval()
    with paddle.no_grad():
        out = model.predict(batch)
    assert mask_ap(instances, out) >= 0.5
