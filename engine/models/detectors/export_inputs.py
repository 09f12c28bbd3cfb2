"""The exported inputs every detector's `forward` takes (docs/ENGINE.md, model protocol)."""
from typing import Dict

import paddle


def image_input_spec() -> Dict[str, paddle.static.InputSpec]:
    """`image`, `im_shape`, `scale_factor` in `forward`'s order, batch and image size dynamic."""
    return {
        "image": paddle.static.InputSpec([None, 3, None, None], "float32", "image"),
        "im_shape": paddle.static.InputSpec([None, 2], "float32", "im_shape"),
        "scale_factor": paddle.static.InputSpec([None, 2], "float32", "scale_factor"),
    }
