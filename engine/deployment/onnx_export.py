"""ONNX export (`Export.format=onnx`): a Paddle graph traced for ONNX is converted by paddle2onnx into
`model.onnx`, and ONNX Runtime sessions run it with the Paddle graph's inputs and outputs.

paddle2onnx and onnxruntime are optional (requirements-onnx.txt): the core install does not need them, and
asking for ONNX without them is a ConfigError naming what to install. paddle2onnx aborts the whole process
(SIGABRT) on an op it cannot map, so it runs in a child process whose failure becomes a clear error.
"""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from engine.errors import ConfigError, ModeNotAvailableError
from engine.runtime.atomic_io import atomic_path

ONNX_FILE = "model.onnx"
ONNX_BATCH = 1  # model.onnx takes one image per run (engine.deployment.exporter._export_onnx says why)
ONNX_OPSET = 16  # the lowest opset with GridSample (Mask-RT-DETR); paddle2onnx raises it when an op needs to
INSTALL_HINT = "pip install -r requirements-onnx.txt (paddle2onnx==2.1.0 and onnxruntime)"
CONVERT_TIMEOUT_S = 1800  # a full-size R-CNN converts in well under a minute; a hang must not block forever
# Paddle 3 op names paddle2onnx lists under their legacy names (get_all_supported_operators_pir)
LEGACY_OP_NAMES = {
    "add": "elementwise_add", "subtract": "elementwise_sub", "multiply": "elementwise_mul",
    "divide": "elementwise_div", "floor_divide": "elementwise_floordiv", "remainder": "elementwise_mod",
    "maximum": "elementwise_max", "minimum": "elementwise_min", "matmul": "matmul_v2", "argmax": "arg_max",
    "argmin": "arg_min", "expand": "expand_v2", "topk": "top_k_v2", "nonzero": "where_index",
    "flatten": "flatten_contiguous_range", "unsqueeze": "unsqueeze2", "max": "reduce_max",
    "min": "reduce_min",
    "mean": "reduce_mean", "all": "reduce_all", "any": "reduce_any", "prod": "reduce_prod",
    "hardsigmoid": "hard_sigmoid", "grid_sample": "grid_sampler", "arange": "range", "add_n": "sum",
}
GRAPH_PLUMBING = {"data", "fetch", "parameter", "assign_value_", "assign_value"}


def require_package(name: str, purpose: str) -> None:
    """ConfigError unless the optional package `name` is importable."""
    if importlib.util.find_spec(name) is None:
        raise ConfigError(f"{purpose} needs the optional package {name}, which is not installed: "
                          f"{INSTALL_HINT}.")


def require_paddle2onnx() -> None:
    require_package("paddle2onnx", "Export.format=onnx")


def convert_to_onnx(model_file: Path, params_file: Path, onnx_file: Path) -> Dict[str, Any]:
    """Convert a saved Paddle graph (inference.json + .pdiparams) into `onnx_file`, written atomically.

    Returns {"onnx": path, "opset": the model's ONNX opset}. Raises ModeNotAvailableError naming
    paddle2onnx's complaint (unsupported ops) when it cannot convert the graph.
    """
    require_paddle2onnx()
    with atomic_path(onnx_file) as tmp:
        cmd = [sys.executable, "-m", "paddle2onnx.command", "--model_dir", str(model_file.parent),
               "--model_filename", model_file.name, "--params_filename", params_file.name,
               "--save_file", str(tmp), "--opset_version", str(ONNX_OPSET),
               "--optimize_tool", "None"]  # its optimisers would pip-install packages at run time
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S,
                              env={**os.environ, "P2O_KEEP_TEMP_MODEL": "0"})
        if done.returncode == 0 and tmp.is_file() and tmp.stat().st_size > 0:
            restore_lost_attributes(tmp, model_file)
        else:
            unmapped = unmapped_ops(model_file) if model_file.suffix == ".json" else []
            raise ModeNotAvailableError(
                f"paddle2onnx could not convert the graph to ONNX (exit code {done.returncode}): "
                f"{_complaint(done.stdout + done.stderr)}"
                + (f" Ops it cannot map: {', '.join(unmapped)}." if unmapped else "")
                + " The Paddle model is exported (use it with Predict.model_dir); ONNX export of this model "
                  "is not supported yet.")
    return {"onnx": str(onnx_file), "opset": onnx_opset(onnx_file)}


def _paddle_ops(program: Any, name: str) -> List[Dict[str, Any]]:
    """Attributes {name: value} of every `pd_op.<name>` in a saved PIR graph (inference.json, parsed), in
    program order."""
    found: List[Dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("#") == f"1.{name}":
                found.append({a["N"]: a["AT"].get("D") for a in node.get("A", [])})
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(program)
    return found


def restore_lost_attributes(onnx_file: Path, model_file: Path) -> None:
    """Give the ONNX nodes the Paddle attributes paddle2onnx 2.1.0 loses on the way (RoIAlign's pixel
    convention, GroupNorm's epsilon), read from the saved Paddle graph; `onnx_file` is rewritten in place."""
    import onnx
    program = json.loads(model_file.read_text(encoding="utf-8"))
    model = onnx.load(str(onnx_file))
    changed = set_roi_align_modes(model, program)
    changed = set_group_norm_epsilons(model, program) or changed
    if changed:
        onnx.save(model, str(onnx_file))


def _paired(model: Any, op_type: str, program: Any, name: str) -> List[Tuple[Any, Dict[str, Any]]]:
    """The graph's `op_type` nodes, each with the attributes of the Paddle op `name` it was made from;
    paddle2onnx emits them in program order, so they pair up by position when their numbers agree."""
    nodes = [n for n in model.graph.node if n.op_type == op_type]
    paddle_ops = _paddle_ops(program, name) if nodes else []
    if len(nodes) != len(paddle_ops):
        raise ModeNotAvailableError(f"paddle2onnx made {len(nodes)} {op_type} nodes from {len(paddle_ops)} "
                                    f"{name} ops; cannot carry their attributes over.")
    return list(zip(nodes, paddle_ops))


def _set_attribute(node: Any, name: str, value: Any) -> None:
    from onnx import helper
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute(name, value)])


def set_roi_align_modes(model: Any, program: Any) -> bool:
    """Give each ONNX RoiAlign of `model` (an onnx ModelProto) its Paddle op's pixel convention; True if
    the graph has any.

    paddle2onnx 2.1.0 drops roi_align's `aligned`, leaving ONNX's default `half_pixel` (= aligned=True),
    while our graphs pool with aligned=False (PaddleDetection's): `output_half_pixel`, which also keeps
    Paddle's minimum RoI size of one feature pixel. The ops are matched in program order, checked by size
    and scale.
    """
    from onnx import helper
    pairs = _paired(model, "RoiAlign", program, "roi_align")
    for node, op in pairs:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("output_height") != op["pooled_height"] or \
                abs(attrs.get("spatial_scale", 1.0) - op["spatial_scale"]) > 1e-7:
            raise ModeNotAvailableError(f"RoiAlign {node.name} does not match the Paddle graph's roi_align "
                                        f"({attrs} vs {op}).")
        _set_attribute(node, "coordinate_transformation_mode",
                       "half_pixel" if op["aligned"] else "output_half_pixel")
    return bool(pairs)


def _constant_sizes(model: Any) -> Dict[str, int]:
    """Number of values of each constant tensor (initialiser or Constant node output) of an ONNX graph."""
    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node if n.op_type == "Constant"
                                               for a in n.attribute if a.name == "value"]
    return {t.name: int(np.prod(t.dims)) for t in tensors}  # from the header: weights stay unread


def set_group_norm_epsilons(model: Any, program: Any) -> bool:
    """Give each GroupNorm of `model` (an onnx ModelProto) its Paddle op's epsilon; True if it has any.

    paddle2onnx 2.1.0 maps group_norm to Reshape [N, groups, -1] -> InstanceNormalization -> Reshape ->
    scale and shift, but writes the InstanceNormalization with epsilon 0: it reads Paddle's float64
    `epsilon` attribute as 0 (float32 attributes such as batch_norm's come through). Without epsilon a
    group's values are divided by their standard deviation instead of sqrt(variance + 1e-5), which is
    far from float32 rounding wherever the variance is small (SOLOv2's heads: scores moved by ~1e-2). The
    nodes are matched to the group_norm ops in program order, checked by group count.
    """
    pairs = _paired(model, "InstanceNormalization", program, "group_norm")
    sizes = _constant_sizes(model)
    for node, op in pairs:
        groups = sizes.get(node.input[1])  # its scale: one value per group
        if groups != op["groups"]:
            raise ModeNotAvailableError(f"InstanceNormalization {node.name} normalises {groups} groups, the "
                                        f"Paddle graph's group_norm {op['groups']}.")
        _set_attribute(node, "epsilon", float(op["epsilon"]))
    return bool(pairs)


def unmapped_ops(model_file: Path) -> List[str]:
    """The ops of a saved PIR graph (inference.json) that the installed paddle2onnx has no mapper for (its
    own error message does not name them)."""
    from paddle2onnx.paddle2onnx_cpp2py_export import get_all_supported_operators_pir
    supported = set(get_all_supported_operators_pir())
    text = model_file.read_text(encoding="utf-8")
    used = set(re.findall(r'"#":"1\.([a-z0-9_]+)"', text))  # dialect 1 = pd_op; a_* are attribute types
    names = {op for op in used if not op.startswith("a_") and op not in GRAPH_PLUMBING}
    return sorted(op for op in names if op not in supported and op.rstrip("_") not in supported
                  and LEGACY_OP_NAMES.get(op) not in supported)


def _complaint(log: str) -> str:
    """paddle2onnx's error lines, without colour codes and C++ stack frames."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in log.splitlines()]
    picked = [line for line in lines if "[ERROR]" in line or "Oops" in line or "nsupported" in line]
    return " | ".join(picked[-8:]) or (lines[-1] if lines else "no output")


def onnx_opset(onnx_file: Path) -> int:
    """The default-domain opset of an ONNX file (read from its header with the onnx package)."""
    import onnx
    model = onnx.load(str(onnx_file), load_external_data=False)
    return max(int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx"))


class OnnxSession:
    """An ONNX Runtime session over an exported `model.onnx`, fed like the Paddle graph (image, im_shape,
    scale_factor) and answering its outputs by name (bbox, bbox_num, mask)."""

    def __init__(self, onnx_file: Path, threads: int = 1) -> None:
        require_package("onnxruntime", "Running an ONNX model")
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: paddle2onnx leaves unused initialisers ORT warns about
        self.session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        self.input_names: List[str] = [i.name for i in self.session.get_inputs()]

    def run(self, feeds: Dict[str, np.ndarray], output_names: List[str]) -> Dict[str, np.ndarray]:
        """Outputs in the Paddle graph's order, named `output_names`."""
        outs = self.session.run(None, {name: feeds[name] for name in self.input_names})
        return dict(zip(output_names, outs))
