"""The model registry: each PaddleX model name -> the builder call that makes it.

A name fixes a model's identity (depth, vd variant, ResNeXt groups / width, FPN or C4, cascade,
backbone learning-rate multipliers); `arch` (the config's `Architecture` section) holds the knobs
a user may tune. Names and families are defined once in `engine/config/model_names.py`.
"""
from dataclasses import is_dataclass
from functools import partial
from typing import Any, Callable, Dict

import paddle.nn as nn
from omegaconf import DictConfig, OmegaConf

from ..config.architectures import FAMILY_ARCHITECTURES
from ..config.model_names import MODEL_FAMILIES
from ..config.suggest import model_name_hint
from ..errors import ConfigError, ModeNotAvailableError
from .detectors.cascade_mask_rcnn import build_cascade_mask_rcnn
from .detectors.mask_rcnn import build_mask_rcnn
from .detectors.solov2 import build_solov2
from .detectors.ppyoloe_seg import build_ppyoloe_seg
from .detectors.mask_rt_detr import build_mask_rt_detr

MODELS: Dict[str, Callable[..., nn.Layer]] = {
    "MaskRCNN-ResNet50": partial(build_mask_rcnn, depth=50, fpn=False),
    "MaskRCNN-ResNet50-FPN": partial(build_mask_rcnn, depth=50),
    "MaskRCNN-ResNet50-vd-FPN": partial(build_mask_rcnn, depth=50, variant="d"),
    "MaskRCNN-ResNet101-FPN": partial(build_mask_rcnn, depth=101),
    "MaskRCNN-ResNet101-vd-FPN": partial(build_mask_rcnn, depth=101, variant="d"),
    "MaskRCNN-ResNeXt101-vd-FPN": partial(build_mask_rcnn, depth=101, variant="d", groups=64, base_width=4),
    "Cascade-MaskRCNN-ResNet50-FPN": partial(build_cascade_mask_rcnn, depth=50),
    "Cascade-MaskRCNN-ResNet50-vd-SSLDv2-FPN": partial(build_cascade_mask_rcnn, depth=50, variant="d",
                                                       lr_mult_list=(0.05, 0.05, 0.1, 0.15)),
    "SOLOv2": partial(build_solov2, depth=50),
    "PP-YOLOE_seg-S": build_ppyoloe_seg,
    "Mask-RT-DETR-S": partial(build_mask_rt_detr, size="S"),
    "Mask-RT-DETR-M": partial(build_mask_rt_detr, size="M"),
    "Mask-RT-DETR-L": partial(build_mask_rt_detr, size="L"),
    "Mask-RT-DETR-X": partial(build_mask_rt_detr, size="X"),
    "Mask-RT-DETR-H": partial(build_mask_rt_detr, size="H"),
}


def build_model(name: str, arch: Any, num_classes: int) -> nn.Layer:
    """Build the model `name` with `num_classes` foreground classes.

    Args:
        name: a PaddleX model name (engine/config/model_names.py).
        arch: the family's Architecture section: its dataclass, or the config's DictConfig of it.
        num_classes: foreground classes (>= 1).
    Raises:
        ConfigError: unknown name (with the closest names), or a bad num_classes / arch.
        ModeNotAvailableError: a known name whose family is not built yet.
    """
    if name not in MODEL_FAMILIES:
        raise ConfigError(f"Unknown model {name!r} (Global.model).{model_name_hint(name)}")
    if name not in MODELS:
        built = ", ".join(MODELS)
        raise ModeNotAvailableError(f"Model {name!r} ({MODEL_FAMILIES[name]} family) is not available in "
                                    f"this version; available: {built}.")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"Train.num_classes must be a positive integer, got {num_classes!r}")
    return MODELS[name](_architecture(name, arch), num_classes)


def _architecture(name: str, arch: Any) -> Any:
    """The family's Architecture dataclass instance for `arch` (None = defaults)."""
    cls = FAMILY_ARCHITECTURES[MODEL_FAMILIES[name]]
    if arch is None:
        return cls()
    if isinstance(arch, DictConfig):
        arch = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), arch))
    if not (is_dataclass(arch) and isinstance(arch, cls)):
        raise ConfigError(f"Architecture for {name} must be a {cls.__name__}, got {type(arch).__name__}")
    return arch
