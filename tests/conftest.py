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


@pytest.fixture(autouse=True)
def _caplog_sees_instseg(request):
    """The `instseg` logger does not propagate to the root logger (engine.runtime.log), where caplog listens:
    hand caplog's handler to it directly in the tests that use caplog."""
    if "caplog" not in request.fixturenames:
        yield
        return
    import logging

    handler = request.getfixturevalue("caplog").handler
    logger = logging.getLogger("instseg")
    propagate = logger.propagate
    logger.propagate = False  # as after engine.runtime.log.setup_logging: each record reaches caplog once
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)
    logger.propagate = propagate
