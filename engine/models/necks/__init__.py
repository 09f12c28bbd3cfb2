"""Necks: FPN (fpn.py)."""
from .fpn import FPN

__all__ = ["FPN"]
