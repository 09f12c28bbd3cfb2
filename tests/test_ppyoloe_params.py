"""PP-YOLOE_seg-S parameters: PaddleDetection's names and shapes (the state_dict list itself is checked
for every model by tests/test_param_parity.py), and loading a file made for another class count."""
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle

from engine.config.architectures import PPYOLOESegArchitecture
from engine.models.weights import load_weights
from engine.models.zoo import build_model

REPO = Path(__file__).resolve().parents[1]
# the tensors whose first dimension is the class count (PaddleDetection's names)
CLASS_SHAPED = [f"yolo_head.pred_cls.{i}.{p}" for i in range(3) for p in ("weight", "bias")]


def test_dump_params_equals_the_reference_list() -> None:
    """The acceptance command: tools/dump_params.py -c configs/PP-YOLOE_seg-S.yaml -o Train.num_classes=80."""
    command = [sys.executable, "tools/dump_params.py", "-c", "configs/PP-YOLOE_seg-S.yaml",
               "-o", "Train.num_classes=80"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout == (REPO / "tests/fixtures/params/PP-YOLOE_seg-S.json").read_text()


def test_file_for_80_classes_loads_all_but_the_class_predictors(tmp_path: Path, caplog) -> None:
    tiny = PPYOLOESegArchitecture(width_mult=0.125)
    paddle.seed(1)
    source = build_model("PP-YOLOE_seg-S", tiny, 80)
    path = tmp_path / "coco.pdparams"
    paddle.save(source.state_dict(), str(path))
    paddle.seed(2)
    target = build_model("PP-YOLOE_seg-S", tiny, 3)
    with caplog.at_level(logging.WARNING, logger="instseg"):
        skipped = load_weights(target, path)
    assert sorted(skipped) == sorted(CLASS_SHAPED)
    for name in CLASS_SHAPED:
        assert sum(name in r.getMessage() for r in caplog.records) == 1, name
    loaded = source.state_dict()
    for name, value in target.state_dict().items():
        if name not in CLASS_SHAPED:
            np.testing.assert_array_equal(value.numpy(), loaded[name].numpy(), err_msg=name)
    assert target.yolo_head.pred_cls[0].weight.shape[0] == 3


def test_projection_conv_is_fixed() -> None:
    model = build_model("PP-YOLOE_seg-S", PPYOLOESegArchitecture(width_mult=0.125), 2)
    proj = model.yolo_head.proj_conv.weight
    assert proj.stop_gradient
    np.testing.assert_array_equal(proj.numpy().ravel(), np.arange(17, dtype="float32"))
