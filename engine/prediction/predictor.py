"""Dynamic-graph prediction (``Global.mode=predict`` and ``engine.api.create_model`` with a model name).

Preprocessing is the EvalReader's ``engine.data.preprocess.Preprocess``, the one the eval loader runs and
export writes into inference.yml, so a model predicts the same in ``evaluate``, here and after export.
Inputs, batching, thresholds and results are ``engine.prediction.base``'s, shared with the exported
predictor.
"""
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from engine.data.preprocess import Preprocess
from engine.errors import ConfigError, WeightsError
from engine.prediction.base import BasePredictor

log = logging.getLogger("instseg")

PREDICT_DIR = "predict"  # Global.mode=predict writes its files into {output}/predict/


class DynamicPredictor(BasePredictor):
    """Predicts with a dynamic-graph model.

    Args:
        model: a built model following the model protocol (docs/ENGINE.md).
        preprocess: the evaluation preprocessing (``Preprocess.from_reader(cfg.EvalReader)``).
        labels: class names by class index.
        threshold: default score threshold; None = ``model.draw_threshold``.
    """

    def __init__(self, model: Any, preprocess: Preprocess, labels: Sequence[str],
                 threshold: Optional[float] = None) -> None:
        self.model = model
        self.model.eval()
        self.preprocessor = preprocess
        self.labels = [str(x) for x in labels]
        self.threshold = threshold

    def default_threshold(self) -> Optional[float]:
        return getattr(self.model, "draw_threshold", None)

    def raw(self, images: List[np.ndarray]) -> Dict[str, np.ndarray]:
        """``model.predict`` outputs (numpy) for a list of BGR images."""
        import paddle

        batch = {k: paddle.to_tensor(v) for k, v in self.preprocessor.batch(images).items()}
        with paddle.no_grad():
            out = self.model.predict(batch)
        return {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v))
                for k, v in out.items() if v is not None}


def build_dynamic(cfg: Any, weight_path: Optional[str], threshold: Optional[float]) -> DynamicPredictor:
    """A DynamicPredictor from a config; ``weight_path`` None means random weights (loud warning)."""
    from engine.models.zoo import build_model
    from engine.prediction.labels import model_labels

    model = build_model(cfg.Global.model, cfg.Architecture, int(cfg.Train.num_classes))
    if weight_path is None:
        msg = (f"No weights given for {cfg.Global.model}: it is RANDOMLY INITIALISED and its predictions are "
               f"meaningless. Pass weight_path=<trained .pdparams> (or Predict.weight_path).")
        log.warning(msg)
        import warnings

        warnings.warn(msg, UserWarning, stacklevel=3)
    else:
        from engine.models.weights import load_trained_weights

        load_trained_weights(model, str(weight_path), str(cfg.Global.model), int(cfg.Train.num_classes))
    labels = model_labels(cfg, weight_path)
    return DynamicPredictor(model, Preprocess.from_reader(cfg.EvalReader), labels, threshold)


def _predictor(cfg: Any) -> Tuple[Any, str]:
    """(predictor, source): the exported model of Predict.model_dir, else the dynamic graph with
    Predict.weight_path (default {output}/best_model/best_model.pdparams)."""
    threshold = cfg.Predict.threshold
    if cfg.Predict.model_dir:
        from engine.deployment.inference import DeployPredictor

        ko = cfg.Predict.kernel_option
        predictor = DeployPredictor(str(cfg.Predict.model_dir), device=cfg.Global.device,
                                    threshold=threshold, run_mode=ko.run_mode,
                                    cpu_threads=ko.cpu_threads or cfg.Global.cpu_threads,
                                    use_hpip=bool(cfg.Predict.use_hpip))
        return predictor, str(cfg.Predict.model_dir)
    if cfg.Predict.use_hpip:
        from engine.deployment.high_performance import HPIP_NEEDS_EXPORT

        raise ConfigError(HPIP_NEEDS_EXPORT.format(where="-o Predict.model_dir=<export dir>"))
    from engine.runtime.device import setup_device

    setup_device(cfg)
    weights = Path(cfg.Predict.weight_path or Path(cfg.Global.output) / "best_model" / "best_model.pdparams")
    if not weights.is_file():
        raise WeightsError(f"Predict.weight_path {weights} does not exist; train first, or set "
                           f"-o Predict.weight_path=<file.pdparams> or -o Predict.model_dir=<export dir>.")
    return build_dynamic(cfg, str(weights), threshold), str(weights)


def run(cfg: Any) -> Dict[str, Any]:
    """Global.mode=predict: one JSON and one picture per input image in {output}/predict/ (``save_dir``
    of the result); inputs with the same file name get ``_1``, ``_2``... so none overwrites another."""
    if not cfg.Predict.input:
        raise ConfigError("Predict.input is not set: give an image, a directory or a URL "
                          "(-o Predict.input=...)")
    predictor, source = _predictor(cfg)
    save_dir = Path(cfg.Global.output) / PREDICT_DIR
    saved: List[Dict[str, Any]] = []
    used: Set[str] = set()
    for res in predictor.predict(str(cfg.Predict.input), batch_size=int(cfg.Predict.batch_size)):
        res.print()
        name = _unique(f"{res.stem}_res", used)
        js = res.save_to_json(str(save_dir / f"{name}.json"))
        im = res.save_to_img(str(save_dir / f"{name}{res.image_suffix}"))
        saved.append({"input_path": res.input_path, "num_instances": len(res.boxes),
                      "json": str(js), "img": str(im)})
    summary: Dict[str, Any] = {"model": source, "input": str(cfg.Predict.input),
                               "save_dir": str(save_dir), "num_images": len(saved), "results": saved}
    info = predictor.run_info()  # exported models: which backend and precision ran
    if info is not None:
        summary["inference"] = info
    return summary


def _unique(name: str, used: Set[str]) -> str:
    """`name`, or `name_<k>` for the first k not yet in `used` (then recorded)."""
    candidate, k = name, 0
    while candidate in used:
        k += 1
        candidate = f"{name}_{k}"
    used.add(candidate)
    return candidate
