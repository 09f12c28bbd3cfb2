"""The exported graph's inputs, the same for every detector (docs/ENGINE.md, model protocol)."""
from typing import Dict

import paddle


def image_input_spec() -> Dict[str, paddle.static.InputSpec]:
    """`forward(image, im_shape, scale_factor)`'s inputs, in order, for `paddle.jit.to_static`: float32
    image [N, 3, H, W] and (h, w) pairs [N, 2], with the batch size and the image size dynamic."""
    return {
        "image": paddle.static.InputSpec([None, 3, None, None], "float32", "image"),
        "im_shape": paddle.static.InputSpec([None, 2], "float32", "im_shape"),
        "scale_factor": paddle.static.InputSpec([None, 2], "float32", "scale_factor"),
    }
