"""The graphs of an exported model directory and the one that runs (engine.deployment.exporter writes them).

inference.yml's `graphs` lists them in order of preference, each with its model and parameter files and the
compiled CPU operators it needs (operator name -> digest of the C++ source it was exported with):
`compiled` (inference_compiled.json, InstSeg's custom operators inside) first, then `portable`
(inference.json, Paddle's own ops only). An export without `graphs` (older InstSeg) has the portable graph
of `model_file` / `params_file` only.

`choose_graph` takes the first graph whose operators this process can load: each operator's library is
found in CompiledOp's cache ($INSTSEG_CACHE) or built there, then loaded, which registers the operator
with Paddle, so Paddle Inference can run the graph. It is not used, and the next graph runs with one log line
saying why, when the device is a GPU (the operators are CPU kernels), `INSTSEG_NATIVE_OPS=0` or the
operator's own switch is set, the operator's source changed since the export, or it cannot be built (no
compiler and no cached library). When no listed graph can run, a WeightsError names the operator and the fix.
"""
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from engine.errors import WeightsError

logger = logging.getLogger("instseg")

PORTABLE = "portable"  # the graph with Paddle's own ops only


@dataclass(frozen=True)
class ExportedGraph:
    """One graph of an export: its name (compiled | portable), files, and the compiled operators it needs
    (name -> source digest at export time; empty for the portable graph)."""

    name: str
    model_file: Path
    params_file: Path
    compiled_ops: Dict[str, str] = field(default_factory=dict)


def listed_graphs(info: Dict[str, Any], root: Path) -> List[ExportedGraph]:
    """The graphs inference.yml's `graphs` lists; a listed file that is missing is a WeightsError."""
    entries = info["graphs"]
    if not isinstance(entries, list) or not all(isinstance(e, dict) and e.get("model_file") for e in entries):
        raise WeightsError(f"{root / 'inference.yml'}: `graphs` must be a list of entries with model_file, "
                           f"params_file and compiled_ops; re-export the model.")
    graphs = []
    for entry in entries:
        graph = ExportedGraph(str(entry.get("name", PORTABLE)), root / str(entry["model_file"]),
                              root / str(entry.get("params_file", "inference.pdiparams")),
                              {str(k): str(v) for k, v in (entry.get("compiled_ops") or {}).items()})
        for path, what in ((graph.model_file, "model graph"), (graph.params_file, "parameter file")):
            if not path.is_file():
                raise WeightsError(f"{root}: the {what} {path.name} is missing (the {graph.name} graph); "
                                   f"re-export the model.")
        graphs.append(graph)
    return graphs


def compiled_ops_problem(graph: ExportedGraph, device_kind: str) -> Optional[str]:
    """Why `graph` cannot run in this process (None: it can; its operators are then loaded)."""
    if not graph.compiled_ops:
        return None
    if device_kind != "cpu":
        return "its compiled operators are CPU kernels"
    from engine.models.ops.compiled_ops import ALL_OPS_SWITCH, find_compiled_op

    for name, digest in graph.compiled_ops.items():
        op = find_compiled_op(name)
        if op is None:
            return f"this InstSeg has no compiled operator {name}"
        if not op.enabled():
            switch = ALL_OPS_SWITCH if os.environ.get(ALL_OPS_SWITCH, "1").strip() == "0" else op.switch
            return f"{name} is switched off ({switch}=0)"
        if op.source_digest() != digest:
            return f"{name}'s source changed since the export (re-export the model to use the new one)"
        if op.load(warn=False) is None:
            reason = str(op.state["error"]).strip().splitlines()[0][:300]
            return f"{name} could not be built or loaded ({reason})"
    return None


def choose_graph(graphs: List[ExportedGraph], device_kind: str, root: Path) -> ExportedGraph:
    """The first of `graphs` that can run here (see the module docstring), logging once why the graphs
    before it cannot; a WeightsError naming the operator and the fix when none can."""
    skipped: List[str] = []
    for graph in graphs:
        problem = compiled_ops_problem(graph, device_kind)
        if problem is None:
            if skipped:
                logger.info("%s: running the %s graph %s; %s", root, graph.name, graph.model_file.name,
                            "; ".join(skipped))
            return graph
        skipped.append(f"the {graph.name} graph {graph.model_file.name} is not used: {problem}")
    from engine.models.ops.compiled_ops import cache_dir

    raise WeightsError(
        f"{root}: no graph of this exported model can run here: {'; '.join(skipped)}. The compiled "
        f"operators are CPU kernels built on first use with a C++ compiler: install one (g++) so InstSeg can "
        f"build them into {cache_dir()} (INSTSEG_CACHE), unset INSTSEG_NATIVE_OPS=0 and the operator's own "
        f"switch, or re-export the model with this InstSeg (Global.mode=export) to get the portable graph "
        f"inference.json, which needs none.")
