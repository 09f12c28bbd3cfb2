"""ResNet / ResNet-vd / ResNeXt, FPN and Res5Head: shapes, strides, freezing, frozen BN, naming."""
import json
from pathlib import Path
from typing import Any, Dict, List

import backbone_golden as golden
import numpy as np
import paddle
import pytest

from engine.errors import ConfigError
from engine.models.backbones.resnet import ResNet, block_name, fold_norm
from engine.models.heads.res5_head import Res5Head
from engine.models.necks.fpn import FPN


def _image(n: int = 1, size: int = 64) -> paddle.Tensor:
    paddle.seed(0)
    return paddle.randn([n, 3, size, size])


@pytest.mark.parametrize("variant,groups,base_width", [("b", 1, 64), ("d", 1, 64), ("d", 4, 4)])
def test_narrow_resnet_shapes_and_strides(variant: str, groups: int, base_width: int) -> None:
    net = ResNet(depth=50, variant=variant, groups=groups, base_width=base_width, base_channels=16)
    net.eval()
    outs = net(_image(2, 64))
    assert net.out_strides == [4, 8, 16, 32]
    assert net.out_channels == [64, 128, 256, 512]  # 16 * [1, 2, 4, 8] * 4
    assert [list(o.shape) for o in outs] == [[2, c, 64 // s, 64 // s]
                                             for c, s in zip(net.out_channels, net.out_strides)]


def test_return_idx_and_num_stages_select_outputs() -> None:
    net = ResNet(depth=50, base_channels=16, return_idx=[2], num_stages=3)
    assert net.out_channels == [256] and net.out_strides == [16]
    assert not any(name.startswith("res5") for name in net.state_dict())
    outs = net(_image(1, 32))
    assert len(outs) == 1 and list(outs[0].shape) == [1, 256, 2, 2]


def test_stem_names_per_variant() -> None:
    b = ResNet(depth=50, variant="b", base_channels=16).state_dict()
    d = ResNet(depth=50, variant="d", base_channels=16).state_dict()
    assert "conv1.conv1.conv.weight" in b and list(b["conv1.conv1.conv.weight"].shape) == [16, 3, 7, 7]
    assert "conv1.conv1_1.conv.weight" in d and "conv1.conv1_3.norm._variance" in d
    assert "res3.res3a.short.conv.conv.weight" in d  # vd: avg pool then 1x1 conv
    assert "res3.res3a.short.conv.weight" in b
    assert not any(k.endswith("conv.bias") for k in b)


def test_deep_res4_block_names() -> None:
    assert [block_name(4, 23, i) for i in (0, 1, 22)] == ["res4a", "res4b1", "res4b22"]
    assert [block_name(4, 6, i) for i in (0, 5)] == ["res4a", "res4f"]


def _grads(net: ResNet) -> dict:
    net.train()
    net(_image(1, 32))[-1].mean().backward()
    return {name: p.grad for name, p in net.named_parameters()}


def test_freeze_at_zero_freezes_stem_and_res2() -> None:
    net = ResNet(depth=50, base_channels=16, freeze_at=0, freeze_norm=True)
    grads = _grads(net)
    for name, grad in grads.items():
        frozen = name.startswith(("conv1.", "res2.")) or ".norm." in name
        assert (grad is None) == frozen, name
    assert grads["res3.res3a.branch2a.conv.weight"].abs().sum().item() > 0


def test_freeze_at_minus_one_and_trainable_norm_train_everything_but_stats() -> None:
    net = ResNet(depth=50, base_channels=16, freeze_at=-1, freeze_norm=False)
    grads = _grads(net)
    for name, grad in grads.items():
        is_stat = name.endswith(("_mean", "_variance"))
        assert (grad is None) == is_stat, name


def test_frozen_bn_uses_running_stats_in_train_mode() -> None:
    net = ResNet(depth=50, base_channels=16, freeze_norm=True)
    net.eval()
    before = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    eval_out = net(_image(2, 32))[-1].numpy()
    net.train()
    train_out = net(_image(2, 32))[-1].numpy()
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)
    np.testing.assert_allclose(train_out, eval_out, rtol=1e-5, atol=1e-5)


def test_trainable_bn_updates_stats_in_train_mode() -> None:
    net = ResNet(depth=50, base_channels=16, freeze_norm=False)
    net.train()
    before = net.state_dict()["res3.res3a.branch2a.norm._mean"].numpy().copy()
    net(_image(2, 32))
    assert not np.allclose(net.state_dict()["res3.res3a.branch2a.norm._mean"].numpy(), before)


def test_lr_mult_list_sets_stage_learning_rates() -> None:
    net = ResNet(depth=50, base_channels=16, lr_mult_list=[0.1, 0.2, 0.3, 0.4], freeze_at=-1)
    params = dict(net.named_parameters())
    assert params["res2.res2a.branch2a.conv.weight"].optimize_attr["learning_rate"] == pytest.approx(0.1)
    assert params["res5.res5c.branch2c.conv.weight"].optimize_attr["learning_rate"] == pytest.approx(0.4)
    assert params["conv1.conv1.conv.weight"].optimize_attr["learning_rate"] == pytest.approx(1.0)


def test_bad_arguments_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="depth"):
        ResNet(depth=42)
    with pytest.raises(ConfigError, match="base_channels"):
        ResNet(depth=50, base_channels=15)


def test_fold_norm_keeps_the_output() -> None:
    net = ResNet(depth=50, base_channels=16)
    net.eval()
    for name, p in net.named_parameters():  # non-trivial BN so the fold has something to do
        if name.endswith(("norm.weight", "norm.bias", "_mean")):
            p.set_value(paddle.rand(p.shape) * 0.5 + 0.5)
    x = _image(1, 32)
    expected = net(x)[-1].numpy()
    assert fold_norm(net) > 0
    np.testing.assert_allclose(net(x)[-1].numpy(), expected, rtol=1e-3, atol=1e-4)


def test_fpn_levels_channels_and_names() -> None:
    backbone = ResNet(depth=50, base_channels=16)
    fpn = FPN(backbone.out_channels, out_channel=32)
    assert fpn.out_channels == [32] * 5 and fpn.out_strides == [4, 8, 16, 32, 64]
    outs = fpn(backbone(_image(1, 64)))
    assert [list(o.shape) for o in outs] == [[1, 32, 16, 16], [1, 32, 8, 8], [1, 32, 4, 4], [1, 32, 2, 2],
                                             [1, 32, 1, 1]]
    np.testing.assert_array_equal(outs[4].numpy(), outs[3].numpy()[:, :, ::2, ::2])  # P6 = P5 subsampled
    names = list(fpn.state_dict())
    assert "fpn_inner_res2_sum_lateral.weight" in names and "fpn_inner_res5_sum.bias" in names
    assert "fpn_res2_sum.weight" in names and "fpn_res5_sum.bias" in names and len(names) == 16


def test_res5_head_shape_and_names() -> None:
    head = Res5Head(depth=50, base_channels=16)
    assert head.out_channels == 512
    head.eval()
    out = head(paddle.randn([3, 256, 14, 14]))
    assert list(out.shape) == [3, 512, 7, 7]
    assert "res5.res5a.branch2a.conv.weight" in head.state_dict()
    assert "res5.res5a.short.conv.weight" in head.state_dict()


# ------------------------------------------------------------------ parity with PaddleDetection
FIXTURES = Path(__file__).parent / "fixtures"
LR_SSLD = [0.05, 0.05, 0.1, 0.15]
# each R-CNN model's backbone identity (engine/models/zoo.py), built here without the rest of the model
IDENTITIES: Dict[str, Dict[str, Any]] = {
    "MaskRCNN-ResNet50": {"depth": 50, "num_stages": 3, "return_idx": [2]},
    "MaskRCNN-ResNet50-FPN": {"depth": 50},
    "MaskRCNN-ResNet50-vd-FPN": {"depth": 50, "variant": "d"},
    "MaskRCNN-ResNet101-FPN": {"depth": 101},
    "MaskRCNN-ResNet101-vd-FPN": {"depth": 101, "variant": "d"},
    "MaskRCNN-ResNeXt101-vd-FPN": {"depth": 101, "variant": "d", "groups": 64, "base_width": 4},
    "Cascade-MaskRCNN-ResNet50-FPN": {"depth": 50},
    "Cascade-MaskRCNN-ResNet50-vd-SSLDv2-FPN": {"depth": 50, "variant": "d", "lr_mult_list": LR_SSLD},
}


def _entries(prefix: str, layer: paddle.nn.Layer) -> List[List[Any]]:
    return [[prefix + name, list(t.shape), str(t.dtype).replace("paddle.", "")]
            for name, t in layer.state_dict().items()]


@pytest.mark.parametrize("model", sorted(IDENTITIES))
def test_backbone_neck_and_res5_entries_match_paddledetection(model: str) -> None:
    """backbone.*, neck.* and (C4) bbox_head.head.* of the reference list: names, order, shapes, dtypes."""
    reference = json.loads((FIXTURES / "params" / f"{model}.json").read_text())["params"]
    backbone = ResNet(**IDENTITIES[model])
    parts = {"backbone.": backbone}
    if model == "MaskRCNN-ResNet50":
        parts["bbox_head.head."] = Res5Head(depth=50)
    else:
        parts["neck."] = FPN(backbone.out_channels, 256, [1.0 / s for s in backbone.out_strides])
    for prefix, layer in parts.items():
        expected = [[n, list(s), d] for n, s, d in reference if n.startswith(prefix)]
        assert _entries(prefix, layer) == expected, prefix
    # ppdet's freeze_at 0 + freeze_norm: only the convs of res3..res5 train (the C4 head's convs too)
    trainable = {prefix + n for prefix, layer in parts.items() for n, p in layer.named_parameters()
                 if not p.stop_gradient}
    trained_stages = ("backbone.res3", "backbone.res4", "backbone.res5", "bbox_head.head.res5")
    expected_trainable = {n for n, _, _ in reference
                          if n.startswith(trained_stages) and n.endswith("conv.weight")}
    expected_trainable |= {n for n, _, _ in reference if n.startswith("neck.")}
    assert trainable == expected_trainable


def test_ssld_stage_learning_rates_and_frozen_norm_rate() -> None:
    net = ResNet(depth=50, variant="d", base_channels=16, lr_mult_list=LR_SSLD)
    params = dict(net.named_parameters())
    for stage, lr in zip(("res2.res2a", "res3.res3a", "res4.res4a", "res5.res5a"), LR_SSLD):
        assert params[f"{stage}.branch2b.conv.weight"].optimize_attr["learning_rate"] == pytest.approx(lr)
        assert params[f"{stage}.branch2b.norm.weight"].optimize_attr["learning_rate"] == 0.0
    assert params["conv1.conv1_1.conv.weight"].optimize_attr["learning_rate"] == 1.0


@pytest.mark.parametrize("case", sorted(golden.CASES))
def test_outputs_match_paddledetection(case: str) -> None:
    """Same seeded weights and inputs as PaddleDetection's own layers (tools/make_backbone_golden.py)."""
    expected = json.loads((FIXTURES / "ppdet_backbone_golden.json").read_text())[case]
    golden.assert_matches(golden.summary(golden.run_case(golden.OURS, golden.CASES[case])), expected)


def test_basic_block_depths_build_and_run() -> None:
    for depth in (18, 34):
        net = ResNet(depth=depth, variant="d", base_channels=16)
        net.eval()
        assert net.out_channels == [16, 32, 64, 128]
        shapes = [list(o.shape) for o in net(_image(1, 64))]
        assert shapes == [[1, 16, 16, 16], [1, 32, 8, 8], [1, 64, 4, 4], [1, 128, 2, 2]]
    assert Res5Head(depth=18, base_channels=16).out_channels == 128


def test_fold_norm_folds_trainable_norms_and_res5_head_for_inference() -> None:
    head = Res5Head(depth=50, base_channels=16, freeze_norm=False)
    head.train()
    head(paddle.randn([4, 256, 14, 14]))  # moves the running statistics away from (0, 1)
    head.eval()
    x = paddle.randn([2, 256, 14, 14])
    expected = head(x).numpy()
    assert fold_norm(head) == 10 and fold_norm(head) == 0
    assert not any(".norm." in name for name in head.state_dict())
    np.testing.assert_allclose(head(x).numpy(), expected, rtol=1e-4, atol=1e-4)
