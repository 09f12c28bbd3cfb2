"""Evaluations during training follow the Evaluate section: its COCO backend and its log interval."""
import logging
from typing import Any, Dict

import numpy as np
import paddle
import pytest
from omegaconf import OmegaConf

from dataset_tools.synthetic import make_coco_dataset
from engine.config.schema import InstSegConfig
from engine.data.loader import build_loader
from engine.training.trainer import default_hooks


class _GtBoxes:
    """Stand-in detector: predicts every non-crowd ground-truth box of the batch's images (no masks)."""

    training = False

    def __init__(self, dataset: Any) -> None:
        self.coco, self.label = dataset.coco, {c: k for k, c in enumerate(dataset.cat_ids)}

    def eval(self) -> None:
        self.training = False

    def predict(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        rows, nums = [], []
        for im_id in batch["im_id"].numpy():
            anns = [a for a in self.coco.imgToAnns[int(im_id)] if not a["iscrowd"]]
            nums.append(len(anns))
            rows += [[self.label[a["category_id"]], 0.9, a["bbox"][0], a["bbox"][1],
                      a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns]
        return {"bbox": paddle.to_tensor(np.array(rows, np.float32).reshape(-1, 6)),
                "bbox_num": paddle.to_tensor(np.array(nums, np.int32))}


@pytest.mark.parametrize("backend", ["fast", "pycocotools"])
def test_training_evaluations_use_evaluate_backend_and_log_interval(tmp_path: Any, caplog: Any,
                                                                    backend: str) -> None:
    cfg = OmegaConf.structured(InstSegConfig)
    cfg.Global.dataset_dir = str(make_coco_dataset(tmp_path / "d", num_train=2, num_val=5, size=(48, 64),
                                                   max_shapes=3, seed=2))
    cfg.Train.num_workers, cfg.Evaluate.batch_size = 0, 1
    cfg.Evaluate.backend, cfg.Evaluate.log_interval = backend, 2
    loader = build_loader(cfg, "val")
    caplog.set_level(logging.INFO, logger="instseg")
    metrics = default_hooks(cfg).evaluate(_GtBoxes(loader.dataset), loader, loader.dataset)
    assert metrics["eval_backend"] == backend and metrics["AP"] == pytest.approx(1.0)
    messages = [r.getMessage() for r in caplog.records]
    progress = [m.split(":")[0] for m in messages if m.startswith("Eval iter")]
    assert progress == ["Eval iter 2/5", "Eval iter 4/5", "Eval iter 5/5"]
