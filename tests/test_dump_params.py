"""tools/dump_params.py writes the reference files' exact format (tests/fixtures/params are copies of
../shared/reference/params)."""
import sys
from pathlib import Path

import paddle.nn as nn
import pytest

from engine.models.zoo import build_model

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import dump_params  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "params"


def test_dump_is_byte_identical_to_the_reference_list() -> None:
    for name in ("MaskRCNN-ResNet50", "Cascade-MaskRCNN-ResNet50-FPN", "SOLOv2"):
        text = dump_params.dumps(dump_params.describe(build_model(name, None, 80), name, 80))
        assert text == (FIXTURES / f"{name}.json").read_text(), name


def test_aliases_are_second_names_of_one_tensor() -> None:
    layer = nn.Layer()
    layer.head = nn.Linear(3, 2)
    layer.add_sublayer("bbox_head.head", layer.head)
    record = dump_params.describe(layer, "Stand-in", 2)
    assert record["aliases"] == [["bbox_head.head.weight", "head.weight"],
                                 ["bbox_head.head.bias", "head.bias"]]
    assert [p[0] for p in record["params"]] == ["head.weight", "head.bias", "bbox_head.head.weight",
                                                "bbox_head.head.bias"]


def test_command_line_dumps_a_config(capsys: pytest.CaptureFixture) -> None:
    name = "MaskRCNN-ResNet50-vd-FPN"
    assert dump_params.main(["-c", str(REPO / "configs" / f"{name}.yaml"), "-o", "Train.num_classes=80"]) == 0
    assert capsys.readouterr().out == (FIXTURES / f"{name}.json").read_text()
    assert dump_params.main(["-c", str(REPO / "configs" / f"{name}.yaml"), "-o", "Train.num_clases=80"]) == 2
    assert "num_classes" in capsys.readouterr().err
