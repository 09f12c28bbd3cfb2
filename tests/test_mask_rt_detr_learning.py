"""The Mask-RT-DETR family learns: a narrow variant over-fits a few generated images to mask AP >= 0.5
(minimal loop as in test_rcnn_learning; the real trainer runs it in test_mask_rt_detr_cli)."""
import numpy as np
import paddle

from dataset_tools.synthetic import CLASS_NAMES
from engine.models.zoo import build_model
from test_mask_rt_detr_model import TINY
from test_rcnn_learning import mask_ap, synthetic_batch


def test_tiny_mask_rt_detr_overfits_generated_images() -> None:
    paddle.seed(0)
    np.random.seed(0)
    batch, instances = synthetic_batch(2, seed=11)
    model = build_model("Mask-RT-DETR-S", TINY, num_classes=len(CLASS_NAMES))
    opt = paddle.optimizer.AdamW(learning_rate=2e-3, parameters=model.parameters(), weight_decay=0.0)
    model.train()
    first = None
    for _ in range(60):
        losses = model.loss(batch)
        total = paddle.add_n(list(losses.values()))
        first = first if first is not None else float(total)
        total.backward()
        opt.step()
        opt.clear_grad()
    assert float(total) < 0.6 * first
    model.eval()
    with paddle.no_grad():
        out = model.predict(batch)
    assert mask_ap(instances, out) >= 0.5
