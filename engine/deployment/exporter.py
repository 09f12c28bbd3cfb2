"""Export a model to a static graph for Paddle Inference: `inference.json` (PIR; `inference.pdmodel` on a
legacy-IR Paddle), `inference.pdiparams`, and `inference.yml`, which carries everything a deployment needs
besides the graph (the EvalReader's preprocessing as ops, the label list of the training run, the draw
threshold), so `engine.deployment.inference.DeployPredictor` runs without the training code and preprocesses
exactly as `evaluate` and `predict` do. With `Export.format=onnx`, `model.onnx` too (the same inputs and
outputs, see engine.deployment.onnx_export), named in inference.yml as `onnx_file`.

Two graphs of the same model when it uses compiled CPU operators (engine.models.ops.compiled_ops) and they
are built here: `inference.json`, the portable graph with Paddle's own ops (roi_align, grid_sample), and
`inference_compiled.json`, traced with the compiled operators inside (graph_target.compiled_ops_graph) only
when the portable trace reached one that is switched on (graph_target.compiled_op_calls), which
Paddle Inference runs once the operators' library is loaded in the process. Both read the same
`inference.pdiparams` (a second parameter file is written only if Paddle saved different bytes).
inference.yml's `graphs` lists them in order of preference with the operators each needs (name -> source
digest); `model_file` / `params_file` stay the portable graph's, for readers that know no `graphs`.
engine.deployment.graphs picks the graph that runs.

`Global.mode=export` (`run`) loads `Export.weight_path` into a freshly built model and exports it.
"""
import filecmp
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import paddle
import paddle.nn as nn
import yaml
from omegaconf import DictConfig

from engine.data.preprocess import Preprocess
from engine.deployment.onnx_export import ONNX_BATCH, ONNX_FILE, convert_to_onnx, require_paddle2onnx
from engine.errors import WeightsError
from engine.models.ops.compiled_ops import any_compiled_op_enabled, find_compiled_op
from engine.models.ops.graph_target import compiled_op_calls, compiled_ops_graph, onnx_graph
from engine.prediction.labels import model_labels
from engine.runtime.atomic_io import write_text

logger = logging.getLogger("instseg")

FORMAT_VERSION = 1  # bump when inference.yml or the graph's inputs/outputs change incompatibly
OUTPUTS = ("bbox", "bbox_num", "mask")  # the graph's outputs, in this order
MODEL_FILES = ("inference.json", "inference.pdmodel")  # PIR, legacy IR
PARAMS_FILE = "inference.pdiparams"
CONFIG_FILE = "inference.yml"
COMPILED_STEM = "inference_compiled"  # the graph with compiled operators: inference_compiled.json


class _Exported(nn.Layer):
    """Wraps a model so the graph's outputs are a tuple in `OUTPUTS` order (a dict's order is not a
    contract of paddle.jit.save)."""

    def __init__(self, model: nn.Layer) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: paddle.Tensor, im_shape: paddle.Tensor,
                scale_factor: paddle.Tensor) -> Tuple[paddle.Tensor, ...]:
        out = self.model(image, im_shape, scale_factor)
        return tuple(out[k] for k in OUTPUTS)


def preprocess_ops(reader: Any) -> List[Dict[str, Any]]:
    """inference.yml `Preprocess` from an EvalReader section (PaddleDetection's op names and fields)."""
    return Preprocess.from_reader(reader).to_ops()


def inference_config(model: nn.Layer, cfg: DictConfig, model_file: str,
                     weight_path: Optional[str] = None) -> Dict[str, Any]:
    """The content of inference.yml; labels from the run that wrote `weight_path`
    (engine.prediction.labels)."""
    labels = model_labels(cfg, weight_path)
    return {
        "format_version": FORMAT_VERSION,
        "mode": "paddle",
        "model_name": str(cfg.Global.model),
        "Global": {"model_name": str(cfg.Global.model)},
        "metric": "COCO",
        "mask": True,
        "draw_threshold": float(getattr(model, "draw_threshold", 0.5)),
        "model_file": model_file,
        "params_file": PARAMS_FILE,
        "inputs": ["image", "im_shape", "scale_factor"],
        "outputs": list(OUTPUTS),
        "Preprocess": preprocess_ops(cfg.EvalReader),
        "label_list": labels,
    }


def _save_graph(model: nn.Layer, out: Path, batch: Optional[int] = None) -> str:
    """Trace `model` (eval mode) and save it as out/inference.*; returns the graph file's name.
    `batch`: a fixed batch size (None: dynamic)."""
    model.eval()
    spec = model.export_spec()
    input_spec = [spec[k] for k in ("image", "im_shape", "scale_factor")]
    if batch is not None:
        input_spec = [paddle.static.InputSpec([batch] + list(s.shape[1:]), s.dtype, s.name)
                      for s in input_spec]
    static = paddle.jit.to_static(_Exported(model), input_spec=input_spec, full_graph=True)
    paddle.jit.save(static, str(out / "inference"), input_spec=input_spec)
    model_file = next((name for name in MODEL_FILES if (out / name).is_file()), None)
    if model_file is None or not (out / PARAMS_FILE).is_file():
        written = sorted(p.name for p in out.iterdir())
        raise RuntimeError(f"paddle.jit.save wrote no model/params file in {out}: {written}")
    return model_file


def _save_compiled_graph(model: nn.Layer, out: Path) -> Optional[Dict[str, Any]]:
    """out/inference_compiled.* traced with the compiled operators that are built and switched on; its
    `graphs` entry, or None when the model's inference path uses none (then nothing is written). Traced
    in a private temporary folder, so the portable graph's files in `out` are not touched."""
    with tempfile.TemporaryDirectory(prefix=".compiled-trace-", dir=out) as tmp:
        with compiled_ops_graph() as taken:
            traced = _save_graph(model, Path(tmp))
        if not taken:
            return None
        model_file = COMPILED_STEM + Path(traced).suffix
        os.replace(Path(tmp) / traced, out / model_file)
        params_file = PARAMS_FILE
        if not filecmp.cmp(Path(tmp) / PARAMS_FILE, out / PARAMS_FILE, shallow=False):
            params_file = COMPILED_STEM + ".pdiparams"
            os.replace(Path(tmp) / PARAMS_FILE, out / params_file)
    ops = {name: find_compiled_op(name).source_digest() for name in taken}  # type: ignore[union-attr]
    logger.info("Exported a second graph, %s, with the compiled operators %s (inference.json keeps "
                "Paddle's own ops)", model_file, ", ".join(ops))
    return {"name": "compiled", "model_file": model_file, "params_file": params_file, "compiled_ops": ops}


def _export_onnx(model: nn.Layer, out: Path) -> Dict[str, Any]:
    """out/model.onnx from a graph traced for ONNX (engine.models.ops.graph_target) in a private temporary
    folder; the Paddle graph in `out` is not touched. One image per run: paddle2onnx maps roi_align with
    every RoI in image 0 and multiclass_nms3 for batch 1 only."""
    with tempfile.TemporaryDirectory(prefix=".onnx-trace-", dir=out) as tmp:
        with onnx_graph():
            model_file = _save_graph(model, Path(tmp), batch=ONNX_BATCH)
        return convert_to_onnx(Path(tmp) / model_file, Path(tmp) / PARAMS_FILE, out / ONNX_FILE)


def export_model(model: nn.Layer, cfg: DictConfig, out_dir: str,
                 weight_path: Optional[str] = None, onnx: bool = False) -> Dict[str, str]:
    """Trace `model` (eval mode) to a static graph and write it with inference.yml into `out_dir`.
    `weight_path`: the file the weights came from (None: the run of `cfg`), where the labels are found.
    `onnx`: also write model.onnx (engine.deployment.onnx_export; needs paddle2onnx).

    Returns {"inference_config", "pdmodel", "pdiparams"[, "pdiparams.info"][, "compiled_pdmodel"
    [, "compiled_pdiparams"]][, "onnx"]}: absolute file paths.
    """
    info = inference_config(model, cfg, "", weight_path)  # label / preprocessing errors before any file
    if onnx:
        require_paddle2onnx()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with compiled_op_calls() as asked:
        model_file = _save_graph(model, out)
    info["model_file"] = model_file
    files = {"inference_config": str(out / CONFIG_FILE), "pdmodel": str(out / model_file),
             "pdiparams": str(out / PARAMS_FILE)}
    if (out / "inference.pdiparams.info").is_file():
        files["pdiparams.info"] = str(out / "inference.pdiparams.info")
    # no second trace when the model's path reaches no compiled operator, or only switched-off ones
    compiled = _save_compiled_graph(model, out) if any_compiled_op_enabled(asked) else None
    portable = {"name": "portable", "model_file": model_file, "params_file": PARAMS_FILE, "compiled_ops": {}}
    info["graphs"] = [compiled, portable] if compiled else [portable]
    if compiled:
        files["compiled_pdmodel"] = str(out / compiled["model_file"])
        if compiled["params_file"] != PARAMS_FILE:
            files["compiled_pdiparams"] = str(out / compiled["params_file"])
    if onnx:
        converted = _export_onnx(model, out)
        info["onnx_file"], info["onnx_opset"] = ONNX_FILE, converted["opset"]
        files["onnx"] = converted["onnx"]
    write_text(out / CONFIG_FILE, yaml.safe_dump(info, sort_keys=False))
    logger.info("Exported %s to %s%s", cfg.Global.model, out, " (with model.onnx)" if onnx else "")
    return files


def run(cfg: DictConfig) -> Dict[str, Any]:
    """Global.mode=export: Export.weight_path (default {output}/best_model/best_model.pdparams) ->
    Export.save_dir when the config has it, else {output}/inference."""
    from engine.models.zoo import build_model
    from engine.models.weights import load_trained_weights

    onnx = cfg.Export.format == "onnx"
    if onnx:
        require_paddle2onnx()  # before any work
    output = Path(cfg.Global.output)
    default_weights = output / "best_model" / "best_model.pdparams"
    weights = Path(cfg.Export.weight_path) if cfg.Export.weight_path else default_weights
    if not weights.is_file():
        raise WeightsError(f"Export.weight_path {weights} does not exist; train first or set "
                           f"-o Export.weight_path=<file.pdparams>.")
    save_dir = getattr(cfg.Export, "save_dir", None) if "save_dir" in cfg.Export else None
    out_dir = Path(save_dir) if save_dir else output / "inference"
    model = build_model(cfg.Global.model, cfg.Architecture, int(cfg.Train.num_classes))
    load_trained_weights(model, str(weights), str(cfg.Global.model), int(cfg.Train.num_classes))
    files = export_model(model, cfg, str(out_dir), weight_path=str(weights), onnx=onnx)
    return {"model_name": str(cfg.Global.model), "weight_path": str(weights), "save_dir": str(out_dir),
            "format_version": FORMAT_VERSION, "format": str(cfg.Export.format), "files": files}
