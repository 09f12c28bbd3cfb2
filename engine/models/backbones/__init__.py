"""Backbones: ResNet / ResNet-vd / ResNeXt (resnet.py)."""
from .resnet import ResNet

__all__ = ["ResNet"]
