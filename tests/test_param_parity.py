"""Parameter parity with PaddleDetection: every R-CNN model built at num_classes 80 has exactly the
state_dict (names, order, shapes, dtypes) of PaddleDetection's own implementation, so official
.pdparams files load as they are.

tests/fixtures/params/<Model>.json are copies of ../shared/reference/params (see its SUMMARY.md).
"""
import gc
import json
from pathlib import Path
from typing import List

import numpy as np
import paddle
import pytest

from engine.models.zoo import MODELS, build_model
from engine.models.weights import load_weights

FIXTURES = Path(__file__).parent / "fixtures" / "params"


def state_entries(model: paddle.nn.Layer) -> List[List]:
    return [[name, list(t.shape), str(t.dtype).replace("paddle.", "")]
            for name, t in model.state_dict().items()]


def aliases(model: paddle.nn.Layer) -> List[List[str]]:
    """[second name, first name] of every tensor registered under two names (SOLOv2)."""
    first: dict = {}
    pairs = []
    for name, tensor in model.state_dict().items():
        if id(tensor) in first:
            pairs.append([name, first[id(tensor)]])
        first.setdefault(id(tensor), name)
    return pairs


@pytest.mark.parametrize("name", sorted(MODELS))
def test_state_dict_matches_paddledetection(name: str) -> None:
    reference = json.loads((FIXTURES / f"{name}.json").read_text())
    assert reference["num_classes"] == 80
    model = build_model(name, None, 80)
    ours = state_entries(model)
    assert aliases(model) == reference["aliases"]
    del model
    gc.collect()
    expected = [[n, list(s), d] for n, s, d in reference["params"]]
    missing = sorted({e[0] for e in expected} - {e[0] for e in ours})
    extra = sorted({e[0] for e in ours} - {e[0] for e in expected})
    assert not missing and not extra, f"missing {missing[:10]}, unexpected {extra[:10]}"
    assert ours == expected


def test_pdparams_round_trip(tmp_path: Path) -> None:
    """Weights saved from one model load into a fresh one under PaddleDetection's names, value for value;
    into a model with another class count, everything but the class-sized predictors loads."""
    paddle.seed(1)
    source = build_model("MaskRCNN-ResNet50-FPN", None, 80)
    path = tmp_path / "model.pdparams"
    paddle.save(source.state_dict(), str(path))
    reference = json.loads((FIXTURES / "MaskRCNN-ResNet50-FPN.json").read_text())["params"]
    assert list(paddle.load(str(path))) == [e[0] for e in reference]
    paddle.seed(2)
    target = build_model("MaskRCNN-ResNet50-FPN", None, 80)
    assert load_weights(target, path) == []
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    three = build_model("MaskRCNN-ResNet50-FPN", None, 3)
    skipped = load_weights(three, path)
    assert sorted(skipped) == sorted(f"{layer}.{p}" for layer in CLASS_SIZED for p in ("weight", "bias"))
    np.testing.assert_array_equal(three.rpn_head.rpn_feat.rpn_conv.weight.numpy(),
                                  source.rpn_head.rpn_feat.rpn_conv.weight.numpy())


CLASS_SIZED = ["bbox_head.bbox_score", "bbox_head.bbox_delta", "mask_head.mask_fcn_logits"]
