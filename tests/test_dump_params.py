"""tools/dump_params.py writes the reference files' exact format (tests/fixtures/params are copies of
../shared/reference/params)."""
import sys
from pathlib import Path

import paddle.nn as nn

from engine.models.zoo import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import dump_params  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "params"


def test_dump_is_byte_identical_to_the_reference_list() -> None:
    for name in ("MaskRCNN-ResNet50", "Cascade-MaskRCNN-ResNet50-FPN"):
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
