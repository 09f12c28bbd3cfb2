"""Mask-RT-DETR parameter parity with PaddleDetection: PPHGNetV2 + MaskHybridEncoder of each size reproduce
the `backbone.*` / `neck.*` entries of tests/fixtures/params/Mask-RT-DETR-<size>.json (names, order, shapes,
dtypes), freeze and learning-rate multipliers as the configs say; each Mask-RT-DETR config dumps
exactly its reference list (tools/dump_params.py), whole model included.
"""
import gc
import json
import math
import sys
from pathlib import Path
from typing import List

import paddle
import paddle.nn as nn
import pytest

from engine.config.architectures import MaskRTDETRArchitecture
from engine.errors import ConfigError
from engine.models.backbones.hgnetv2 import PPHGNetV2
from engine.models.detectors.mask_rt_detr_parts import SIZES, build_backbone_and_neck

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "params"
sys.path.insert(0, str(REPO / "tools"))
import dump_params  # noqa: E402

NAMES = [f"Mask-RT-DETR-{size}" for size in SIZES]
# ../shared/reference/params/SUMMARY.md, "trainable" column: parameter elements with stop_gradient=False
REFERENCE_TRAINABLE = {"S": 14_605_716, "M": 18_739_316, "L": 32_750_804, "X": 68_529_684, "H": 129_585_108}


def _reference(size: str) -> List[list]:
    return json.loads((FIXTURES / f"Mask-RT-DETR-{size}.json").read_text())["params"]


def _backbone_and_neck(size: str) -> nn.Layer:
    model = nn.Layer()
    model.backbone, model.neck = build_backbone_and_neck(size)
    return model


@pytest.mark.parametrize("size", list(SIZES))
def test_backbone_and_neck_match_paddledetection(size: str) -> None:
    model = _backbone_and_neck(size)
    ours = [[n, list(t.shape), str(t.dtype).replace("paddle.", "")] for n, t in model.state_dict().items()]
    reference = _reference(size)
    expected = [[n, list(s), d] for n, s, d in reference if n.split(".")[0] in ("backbone", "neck")]
    missing = sorted({e[0] for e in expected} - {e[0] for e in ours})
    extra = sorted({e[0] for e in ours} - {e[0] for e in expected})
    assert not missing and not extra, f"missing {missing[:10]}, unexpected {extra[:10]}"
    assert ours == expected
    # everything but frozen BN affine / statistics and the frozen stem trains: the reference's trainable count
    # minus the decoder's (all of it trains except BN statistics)
    decoder = sum(math.prod(s) for n, s, _ in reference
                  if n.startswith("transformer.") and not n.endswith(("._mean", "._variance")))
    trainable = sum(math.prod(p.shape) for p in model.parameters() if not p.stop_gradient)
    assert trainable == REFERENCE_TRAINABLE[size] - decoder
    del model
    gc.collect()


@pytest.mark.parametrize("size,lr", [("S", 0.1), ("L", 0.05)])
def test_frozen_stem_frozen_norm_and_stage_lr(size: str, lr: float) -> None:
    backbone, neck = build_backbone_and_neck(size)
    assert all(p.stop_gradient for p in backbone.stem.parameters())
    for name, layer in backbone.named_sublayers():
        if isinstance(layer, nn.BatchNorm2D):
            assert layer._use_global_stats and layer.weight.stop_gradient and layer.bias.stop_gradient, name
    convs = [p for n, p in backbone.stages.named_parameters() if n.endswith("conv.weight")]
    assert convs and all(not p.stop_gradient and p.optimize_attr["learning_rate"] == lr for p in convs)
    assert all(p.optimize_attr["learning_rate"] == 1.0 for p in neck.parameters())
    unfrozen, _ = build_backbone_and_neck(size, MaskRTDETRArchitecture(freeze_stem=False, freeze_norm=False))
    trained = [p for n, p in unfrozen.named_parameters() if not n.endswith(("_mean", "_variance"))]
    assert not any(p.stop_gradient for p in trained)
    assert unfrozen.stem.stem1.conv.weight.optimize_attr["learning_rate"] == lr


def test_backbone_lr_mult_overrides_the_size_multiplier() -> None:
    arch = MaskRTDETRArchitecture(freeze_stem=False, backbone_width_mult=0.25, backbone_lr_mult=1.0)
    backbone, _ = build_backbone_and_neck("S", arch)
    convs = [p for n, p in backbone.named_parameters() if n.endswith("conv.weight")]
    assert {p.optimize_attr["learning_rate"] for p in convs} == {1.0}
    with pytest.raises(ConfigError, match="backbone_lr_mult"):
        build_backbone_and_neck("S", MaskRTDETRArchitecture(backbone_lr_mult=-0.1))


def test_frozen_norm_keeps_statistics_in_training() -> None:
    paddle.seed(0)
    net = PPHGNetV2("S", width_mult=0.25)
    net.train()
    before = net.stages[1].blocks[0].layers[0].bn._mean.numpy().copy()
    outs = net(paddle.randn([2, 3, 64, 64]))
    assert (net.stages[1].blocks[0].layers[0].bn._mean.numpy() == before).all()
    expected = [[2, c, 64 // s, 64 // s] for c, s in zip(net.out_channels, net.out_strides)]
    assert [list(o.shape) for o in outs] == expected


@pytest.mark.parametrize("name", NAMES)
def test_config_dumps_the_reference_list(name: str, capsys: pytest.CaptureFixture) -> None:
    """The whole model (decoder included) through the config and tools/dump_params.py."""
    assert dump_params.main(["-c", str(REPO / "configs" / f"{name}.yaml"), "-o", "Train.num_classes=80"]) == 0
    assert capsys.readouterr().out == (FIXTURES / f"{name}.json").read_text()
    gc.collect()
