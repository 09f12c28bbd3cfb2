"""Per-image row selection that traces to static graphs with a dynamic batch size."""
import paddle


def gather_rows(x: paddle.Tensor, index: paddle.Tensor) -> paddle.Tensor:
    """x[b, index[b, j]] for every image b.

    Args:
        x: [B, N, ...]; index: int64 [B, k] in [0, N).
    Returns:
        [B, k, ...].
    """
    shape = paddle.shape(x)
    offsets = paddle.arange(shape[0], dtype=index.dtype).reshape([-1, 1]) * shape[1].astype(index.dtype)
    rows = paddle.gather(x.flatten(0, 1), (index + offsets).flatten(), axis=0)
    return rows.reshape(paddle.concat([paddle.shape(index), shape[2:]]))
