"""SOLOv2: aliased parameter names, targets, Matrix NMS, losses, predictions (tiny model, CPU)."""
from pathlib import Path
from typing import Any, Dict

import numpy as np
import paddle
import pytest

from engine.config.architectures import SOLOv2Architecture
from engine.errors import WeightsError
from engine.models.weights import load_weights
from engine.models.zoo import build_model

TINY = SOLOv2Architecture(base_channels=16, fpn_channels=32, head_channels=32, stacked_convs=2,
                          num_grids=[12, 10, 8, 6, 4], mask_mid_channels=16, kernel_out_channels=32,
                          gn_groups=8, freeze_at=-1, freeze_norm=False)
ALIASES = {  # second name -> first name, as ../shared/reference/params/SOLOv2.json lists them
    "solov2_head.solo_kernel.weight": "solov2_head.bbox_head.solo_kernel.weight",
    "solov2_head.solo_cate.bias": "solov2_head.bbox_head.solo_cate.bias",
    "mask_head.conv_pred.conv.weight": "mask_head.mask_feat_head.conv_pred.0.conv.weight",
}


def tiny_model(num_classes: int = 3, seed: int = 0) -> Any:
    paddle.seed(seed)
    return build_model("SOLOv2", TINY, num_classes)


def _save(state: Dict[str, np.ndarray], path: Path) -> Path:
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, str(path))
    return path


def test_aliased_weights_load_from_either_name_or_both(tmp_path: Path) -> None:
    source = {k: v.numpy() for k, v in tiny_model(seed=1).state_dict().items()}
    first_only = {k: v for k, v in source.items() if k not in ALIASES}
    second_only = {k: v for k, v in source.items() if k not in ALIASES.values()}
    for name, state in (("both", source), ("first", first_only), ("second", second_only)):
        model = tiny_model(seed=2)
        assert load_weights(model, _save(state, tmp_path / f"{name}.pdparams")) == [], name
        loaded = model.state_dict()
        for second, first in ALIASES.items():
            np.testing.assert_array_equal(loaded[first].numpy(), source[first], err_msg=name)
            np.testing.assert_array_equal(loaded[second].numpy(), source[first], err_msg=name)
        np.testing.assert_array_equal(model.mask_head.conv_pred.norm.weight.numpy(),
                                      source["mask_head.conv_pred.norm.weight"])


def test_aliased_weights_that_differ_are_an_error_naming_the_tensor(tmp_path: Path) -> None:
    state = {k: v.numpy() for k, v in tiny_model(seed=1).state_dict().items()}
    state["solov2_head.solo_cate.bias"] = state["solov2_head.solo_cate.bias"] + 1.0
    with pytest.raises(WeightsError, match=r"solov2_head\.(bbox_head\.)?solo_cate\.bias"):
        load_weights(tiny_model(), _save(state, tmp_path / "differ.pdparams"))
