"""engine.models.weights.load_weights: exact loads, skipped head weights of another num_classes, errors."""
import logging
from pathlib import Path
from typing import Dict

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from engine.config.architectures import RCNNArchitecture
from engine.errors import WeightsError
from engine.models.backbones.resnet import ResNet
from engine.models.zoo import build_model
from engine.models.weights import load_trained_weights, load_weights

NARROW = RCNNArchitecture(base_channels=16, fpn_channels=32, box_head_dim=64, mask_head_channels=32)
HEAD_ENTRIES = {"bbox_head.bbox_score.weight", "bbox_head.bbox_score.bias", "bbox_head.bbox_delta.weight",
                "bbox_head.bbox_delta.bias", "mask_head.mask_fcn_logits.weight",
                "mask_head.mask_fcn_logits.bias"}


def _random_state(model: nn.Layer, seed: int) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(v.shape).astype("float32") for k, v in model.state_dict().items()}


def test_matching_file_loads_every_entry(tmp_path: Path) -> None:
    model = ResNet(depth=50, base_channels=16, num_stages=3, return_idx=[2])
    state = _random_state(model, 0)
    path = tmp_path / "backbone.pdparams"
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, str(path))
    assert load_weights(model, path) == []
    for name, tensor in model.state_dict().items():
        np.testing.assert_array_equal(tensor.numpy(), state[name], err_msg=name)


def test_other_num_classes_skips_only_the_class_heads(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    source = build_model("MaskRCNN-ResNet50-FPN", NARROW, 5)
    state = _random_state(source, 1)
    path = tmp_path / "five_classes.pdparams"
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, str(path))
    model = build_model("MaskRCNN-ResNet50-FPN", NARROW, 3)
    initial = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="instseg"):
        skipped = load_weights(model, str(path))
    assert set(skipped) == HEAD_ENTRIES
    skip_lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skip_lines) == len(HEAD_ENTRIES)
    for name in HEAD_ENTRIES:
        assert any(name in line for line in skip_lines), name
    for name, tensor in model.state_dict().items():
        if name in HEAD_ENTRIES:
            np.testing.assert_array_equal(tensor.numpy(), initial[name], err_msg=name)  # left as initialised
        else:
            np.testing.assert_array_equal(tensor.numpy(), state[name], err_msg=name)


def test_trained_weights_must_fill_every_layer(tmp_path: Path) -> None:
    source = build_model("MaskRCNN-ResNet50-FPN", NARROW, 5)
    path = tmp_path / "five_classes.pdparams"
    paddle.save({k: paddle.to_tensor(v) for k, v in _random_state(source, 2).items()}, str(path))
    name = "MaskRCNN-ResNet50-FPN"
    load_trained_weights(build_model(name, NARROW, 5), path, name, 5)
    with pytest.raises(WeightsError, match=rf"6 weights do not fit {name} with Train.num_classes=3"):
        load_trained_weights(build_model(name, NARROW, 3), path, name, 3)


def test_missing_file_raises_weights_error(tmp_path: Path) -> None:
    model = ResNet(depth=50, base_channels=16, num_stages=1, return_idx=[0])
    missing = tmp_path / "nowhere.pdparams"
    with pytest.raises(WeightsError, match="nowhere.pdparams"):
        load_weights(model, missing)


def test_unreadable_file_raises_weights_error(tmp_path: Path) -> None:
    model = ResNet(depth=50, base_channels=16, num_stages=1, return_idx=[0])
    broken = tmp_path / "broken.pdparams"
    broken.write_bytes(b"not a pickle at all")
    with pytest.raises(WeightsError, match="broken.pdparams"):
        load_weights(model, broken)


def test_file_of_another_model_raises_weights_error(tmp_path: Path) -> None:
    model = ResNet(depth=50, base_channels=16, num_stages=1, return_idx=[0])
    path = tmp_path / "other.pdparams"
    paddle.save({"head.fc.weight": paddle.ones([4, 4])}, str(path))
    with pytest.raises(WeightsError, match="other.pdparams"):
        load_weights(model, path)


def test_backbone_only_file_fills_the_backbone_by_suffix(tmp_path: Path) -> None:
    backbone = ResNet(depth=50, base_channels=16)
    state = _random_state(backbone, 2)  # ImageNet-style names: conv1.conv1.conv.weight, res2.res2a...
    path = tmp_path / "imagenet.pdparams"
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, str(path))
    model = build_model("MaskRCNN-ResNet50-FPN", NARROW, 3)
    assert load_weights(model, path) == []
    loaded = model.state_dict()
    for name, value in state.items():
        np.testing.assert_array_equal(loaded["backbone." + name].numpy(), value, err_msg=name)


class _Aliased(nn.Layer):
    """One Linear registered under two names, as PaddleDetection's SOLOv2 registers some of its layers."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 2)
        self.add_sublayer("bbox_head.head", self.head)


def test_aliased_tensor_loads_from_either_name(tmp_path: Path) -> None:
    assert list(_Aliased().state_dict()) == ["head.weight", "head.bias", "bbox_head.head.weight",
                                             "bbox_head.head.bias"]
    weight, bias = np.full([3, 2], 2.0, "float32"), np.full([2], 3.0, "float32")
    for names in (("head.weight", "head.bias"), ("bbox_head.head.weight", "bbox_head.head.bias")):
        path = tmp_path / "one_name.pdparams"
        paddle.save({names[0]: paddle.to_tensor(weight), names[1]: paddle.to_tensor(bias)}, str(path))
        model = _Aliased()
        assert load_weights(model, path) == []
        np.testing.assert_array_equal(model.head.weight.numpy(), weight)
        np.testing.assert_array_equal(model.head.bias.numpy(), bias)


def test_aliased_tensor_with_two_different_values_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "both.pdparams"
    # each name its own value
    state = {k: paddle.to_tensor(v) for k, v in _random_state(_Aliased(), 3).items()}
    paddle.save(state, str(path))
    with pytest.raises(WeightsError, match="head.weight"):
        load_weights(_Aliased(), path)
    same = {k: v for k, v in state.items() if k.startswith("head.")}
    same.update({"bbox_head." + k: v for k, v in same.items()})
    paddle.save(same, str(path))
    model = _Aliased()
    assert load_weights(model, path) == []
    np.testing.assert_array_equal(model.head.weight.numpy(), same["head.weight"].numpy())


def test_explicit_aliases_rename_file_entries(tmp_path: Path) -> None:
    path = tmp_path / "renamed.pdparams"
    paddle.save({"fc.w": paddle.ones([3, 2]), "fc.b": paddle.zeros([2])}, str(path))
    model = nn.Linear(3, 2)
    assert load_weights(model, path, aliases={"fc.w": "weight", "fc.b": "bias"}) == []
    np.testing.assert_array_equal(model.weight.numpy(), np.ones([3, 2], "float32"))


def test_suffix_is_optional_and_urls_are_refused(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    paddle.save({"weight": paddle.ones([3, 2]), "bias": paddle.ones([2])}, str(tmp_path / "w.pdparams"))
    assert load_weights(model, tmp_path / "w") == []
    with pytest.raises(WeightsError, match="URL"):
        load_weights(model, "https://example.com/w.pdparams")
