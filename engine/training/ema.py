"""Exponential moving average of the model weights (ppdet's ModelEMA, 'threshold' decay type).

After optimizer step t (0-based) every floating-point state entry (parameters and BN statistics) is updated
as `ema = d * ema + (1 - d) * w` with `d = min(decay, (1 + t) / (10 + t))`, ppdet's warm-up of the decay.
Departure from ppdet: the average starts from the model's weights instead of zeros, so it needs no bias
correction when applied; the stored average is then directly the weights to evaluate and export, and
`state_dict()` + `step` are all a resumed run needs to continue it exactly. Integer entries are copied,
and so are frozen parameters (`stop_gradient`, e.g. PP-YOLOE's fixed projection conv, which ppdet's
`ema_black_list` names): averaging a constant would only add rounding.
"""
from contextlib import contextmanager
from typing import Dict, Iterator

import paddle


class ModelEMA:
    """An EMA of `model.state_dict()`; `apply_to(model)` swaps the averaged weights in temporarily."""

    def __init__(self, model: paddle.nn.Layer, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.step = 0
        self._state: Dict[str, paddle.Tensor] = {
            k: v.detach().clone() for k, v in model.state_dict().items()}
        self._frozen = {k for k, p in model.named_parameters() if p.stop_gradient}

    def current_decay(self) -> float:
        """The decay the next `update` uses."""
        return min(self.decay, (1.0 + self.step) / (10.0 + self.step))

    @paddle.no_grad()
    def update(self, model: paddle.nn.Layer) -> None:
        """Fold the model's current weights into the average (call once per optimizer step)."""
        d = self.current_decay()
        for k, v in model.state_dict().items():
            ema = self._state[k]
            if paddle.is_floating_point(ema) and k not in self._frozen:
                self._state[k] = ema * d + v.detach().astype(ema.dtype) * (1.0 - d)
            else:
                self._state[k] = v.detach().clone()
        self.step += 1

    def state_dict(self) -> Dict[str, paddle.Tensor]:
        """The averaged weights, keyed like `model.state_dict()`."""
        return dict(self._state)

    def load_state_dict(self, state: Dict[str, paddle.Tensor], step: int) -> None:
        """Continue from a saved average after `step` updates."""
        missing = set(self._state) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} entries, e.g. {sorted(missing)[:3]}")
        for k in self._state:
            value = state[k]
            if not isinstance(value, paddle.Tensor):
                value = paddle.to_tensor(value)
            self._state[k] = value.astype(self._state[k].dtype)
        self.step = int(step)

    @contextmanager
    def apply_to(self, model: paddle.nn.Layer) -> Iterator[None]:
        """Within the block `model` holds the averaged weights; its own weights come back afterwards."""
        backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.set_state_dict(self._state)
        try:
            yield
        finally:
            model.set_state_dict(backup)
