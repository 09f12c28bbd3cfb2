"""A stack of Linear layers with ReLU between them (the DETR family's box, query-position and mask heads).

Parameter names are an external contract: `layers.<i>.weight` / `.bias`, as in PaddleDetection's `MLP`.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F


class MLP(nn.Layer):
    """`num_layers` Linear layers input_dim -> hidden_dim ... -> output_dim, ReLU after all but the last."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        widths = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.LayerList([nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])])
        for layer in self.layers:
            _init_like_torch(layer)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """[..., input_dim] -> [..., output_dim]."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x


def _init_like_torch(linear: nn.Linear) -> None:
    """Uniform(+-1/sqrt(fan_in)) weight and bias (the initialisation the DETR family was tuned with)."""
    bound = 1.0 / float(linear.weight.shape[0]) ** 0.5
    nn.initializer.Uniform(-bound, bound)(linear.weight)
    nn.initializer.Uniform(-bound, bound)(linear.bias)
