"""Box formats of the DETR family: centre-size boxes, box logits, and the box around a mask."""
import paddle


def cxcywh_to_xyxy(boxes: paddle.Tensor) -> paddle.Tensor:
    """[..., 4] (cx, cy, w, h) -> (x1, y1, x2, y2)."""
    centre, size = boxes[..., :2], boxes[..., 2:]
    return paddle.concat([centre - 0.5 * size, centre + 0.5 * size], axis=-1)


def xyxy_to_cxcywh(boxes: paddle.Tensor) -> paddle.Tensor:
    """[..., 4] (x1, y1, x2, y2) -> (cx, cy, w, h)."""
    low, high = boxes[..., :2], boxes[..., 2:]
    return paddle.concat([(low + high) / 2, high - low], axis=-1)


def inverse_sigmoid(x: paddle.Tensor, eps: float = 1e-5) -> paddle.Tensor:
    """log(x / (1 - x)) of x clipped to [0, 1], both terms floored at eps (finite at 0 and 1)."""
    x = x.clip(min=0.0, max=1.0)
    return paddle.log(x.clip(min=eps) / (1 - x).clip(min=eps))


def mask_to_cxcywh(masks: paddle.Tensor) -> paddle.Tensor:
    """The box around each mask's pixels, normalised to the mask's size.

    Args:
        masks: bool [B, N, H, W].
    Returns:
        float32 [B, N, 4] (cx, cy, w, h) in [0, 1]; pixel (y, x) spans [x, x + 1] x [y, y + 1];
        an empty mask gives (0, 0, 0, 0).
    """
    shape = paddle.shape(masks)  # a tensor: the mask size is dynamic in exported graphs
    # the extreme rows / columns holding any pixel: reduce each axis first, then work on [B, N, H] and
    # [B, N, W] (broadcast products over [B, N, H, W] took oneDNN most of a second in exported graphs)
    rows, cols = masks.any(axis=3), masks.any(axis=2)
    ys = paddle.arange(shape[2], dtype="float32")
    xs = paddle.arange(shape[3], dtype="float32")
    far = paddle.full([1], 1e8, "float32")
    x_max = (xs * cols.astype("float32")).max(-1) + 1
    y_max = (ys * rows.astype("float32")).max(-1) + 1
    x_min = paddle.where(cols, xs * cols.astype("float32"), far).min(-1)
    y_min = paddle.where(rows, ys * rows.astype("float32"), far).min(-1)
    boxes = paddle.stack([x_min, y_min, x_max, y_max], axis=-1)
    boxes = boxes * cols.any(axis=-1).unsqueeze(-1).astype("float32")
    size = shape[2:4].astype("float32")
    scale = paddle.concat([size[1:2], size[0:1], size[1:2], size[0:1]])
    return xyxy_to_cxcywh(boxes / scale)
