"""Box formats: centre-size boxes, box logits (DETR family), and the tight box around a mask (every family
whose boxes come from masks)."""
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


def mask_extents(masks: paddle.Tensor) -> paddle.Tensor:
    """The tight box of each mask's set pixels.

    Args:
        masks: bool / integer [..., H, W] (nonzero = set).
    Returns:
        float32 [..., 4] (x1, y1, x2, y2) in pixel edges (a one-pixel mask at (x, y) is (x, y, x + 1,
        y + 1)); all zero for an empty mask.
    """
    # reduce to per-row / per-column occupancy first: elementwise work over [..., H, W] is one cast and two
    # max reductions, and the coordinates meet only [..., H] / [..., W] (a broadcast multiply over the
    # full masks was ~1 s of an exported 640x640 Mask-RT-DETR-S forward under oneDNN)
    fill = masks.astype("int32")
    rows = fill.max(axis=-1)  # [..., H]
    cols = fill.max(axis=-2)  # [..., W]
    y1 = paddle.argmax(rows, axis=-1)
    x1 = paddle.argmax(cols, axis=-1)
    # last set row / column + 1, as the largest (index + 1) among set ones; not argmax over a flipped
    # axis, which paddle2onnx cannot map when the axis length is dynamic
    y2 = (rows * paddle.arange(1, paddle.shape(rows)[-1] + 1, dtype="int32")).max(axis=-1).astype("int64")
    x2 = (cols * paddle.arange(1, paddle.shape(cols)[-1] + 1, dtype="int32")).max(axis=-1).astype("int64")
    nonempty = rows.max(axis=-1).astype("float32")
    return paddle.stack([x1, y1, x2, y2], axis=-1).astype("float32") * nonempty.unsqueeze(-1)


def mask_to_cxcywh(masks: paddle.Tensor) -> paddle.Tensor:
    """The box around each mask's pixels, normalised to the mask's size.

    Args:
        masks: bool [B, N, H, W].
    Returns:
        float32 [B, N, 4] (cx, cy, w, h) in [0, 1]; pixel (y, x) spans [x, x + 1] x [y, y + 1];
        an empty mask gives (0, 0, 0, 0).
    """
    size = paddle.shape(masks)[2:4].astype("float32")  # a tensor: the mask size is dynamic in exported graphs
    scale = paddle.concat([size[1:2], size[0:1], size[1:2], size[0:1]])
    return xyxy_to_cxcywh(mask_extents(masks) / scale)
