"""Shared test fixtures."""
import sys

import pytest


@pytest.fixture(autouse=True)
def _restore_paddle_flags():
    """Modes set process-wide Paddle flags (oneDNN); keep one test's setting from leaking into the next."""
    paddle = sys.modules.get("paddle")  # never import it here: some tests check Paddle stays unimported
    before = paddle.get_flags(["FLAGS_use_mkldnn"]) if paddle else None
    yield
    paddle = sys.modules.get("paddle")
    if paddle is not None:
        paddle.set_flags(before or {"FLAGS_use_mkldnn": False})
