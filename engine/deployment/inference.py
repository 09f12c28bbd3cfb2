"""Deployment inference: run an exported model (engine.deployment.exporter) with Paddle Inference.

Everything comes from the model directory: the graph, the weights and inference.yml (preprocessing, labels,
draw threshold). Of an export's graphs, the one with compiled CPU operators runs when their library can be
found or built here, else the portable one (engine.deployment.graphs). The preprocessing is
engine.data.preprocess's (the eval loader's), inputs, batching, thresholds and results
engine.prediction.base's (the dynamic predictor's); no training code is imported, so a deployment needs these
modules, numpy, OpenCV and Paddle (and, for the compiled graph, engine.models.ops's compiled operators).
"""
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import paddle
import yaml
from paddle import inference as paddle_infer

from engine.data.preprocess import Preprocess
from engine.deployment.graphs import PORTABLE, ExportedGraph, choose_graph, listed_graphs
from engine.deployment.high_performance import RunChoice, choose_run_mode, is_onednn
from engine.errors import ConfigError, WeightsError
from engine.prediction.base import BasePredictor
from engine.runtime.device import onednn_flag
from engine.runtime.malloc_tuning import keep_freed_memory

# newest inference.yml format this reader understands (engine.deployment.exporter writes it)
FORMAT_VERSION = 1
MODEL_FILES = ("inference.json", "inference.pdmodel")
# What Paddle 3.3.1 raises when a oneDNN kernel meets a zero-size tensor (softmax, scale, stack, matmul,
# relu, conv, transpose... all alike, probed with exported graphs): a bare C++ std::exception surfacing as
# RuntimeError with exactly this text. Paddle's own errors carry "(InvalidArgument) ..." style messages.
ONEDNN_ZERO_SIZE_ERROR = "std::exception"

logger = logging.getLogger("instseg")


def read_inference_config(model_dir: Union[str, os.PathLike]) -> Tuple[Dict[str, Any], List[ExportedGraph]]:
    """inference.yml of `model_dir`, and its graphs in order of preference (engine.deployment.graphs);
    clear errors for anything missing."""
    root = Path(model_dir)
    if not root.is_dir():
        raise ConfigError(f"Model directory {root} does not exist (Predict.model_dir / model_dir).")
    yml = root / "inference.yml"
    if not yml.is_file():
        raise ConfigError(f"{root} is not an exported model: inference.yml is missing. Export one with "
                          f"-o Global.mode=export, or point to <output>/best_model/inference.")
    try:
        info = yaml.safe_load(yml.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{yml} cannot be read: {exc}") from exc
    if not isinstance(info, dict) or "Preprocess" not in info or "label_list" not in info:
        raise ConfigError(f"{yml} is not an InstSeg inference config (no Preprocess / label_list).")
    version = int(info.get("format_version", 1))
    if version > FORMAT_VERSION:
        raise WeightsError(f"{root} was exported with inference format version {version}; this InstSeg "
                           f"reads up to version {FORMAT_VERSION}. Upgrade InstSeg or re-export the model.")
    if info.get("graphs"):
        return info, listed_graphs(info, root)
    names = [info["model_file"]] if info.get("model_file") else list(MODEL_FILES)
    model_file = next((root / n for n in names if (root / n).is_file()), None)
    if model_file is None:
        raise WeightsError(f"{root}: the model graph ({' or '.join(names)}) is missing; re-export the model.")
    params = root / info.get("params_file", "inference.pdiparams")
    if not params.is_file():
        raise WeightsError(f"{root}: the parameter file {params.name} is missing; re-export the model.")
    return info, [ExportedGraph(PORTABLE, model_file, params)]


def _device(device: Optional[str]) -> Tuple[str, int]:
    """('cpu' | 'gpu', id); None = GPU 0 when Paddle has CUDA and sees a GPU, else CPU."""
    if device is None:
        if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
            return "gpu", 0
        return "cpu", 0
    kind, _, ids = str(device).partition(":")
    if kind not in ("cpu", "gpu"):
        raise ConfigError(f"Deployment inference runs on cpu or gpu[:id], got device {device!r}.")
    return kind, int(ids.split(",")[0]) if ids else 0


def resolve_run_mode(run_mode: Optional[str], device: Optional[str]) -> str:
    """The run mode that runs for `run_mode` (None = auto) on `device`
    (engine.deployment.high_performance.choose_run_mode, without use_hpip)."""
    return choose_run_mode(run_mode, _device(device)[0]).run_mode


def build_config(model_file: Path, params: Path, device: Optional[str], cpu_threads: Optional[int],
                 run_mode: str) -> "paddle_infer.Config":
    """A Paddle Inference config: on CPU `cpu_threads` threads with oneDNN (run_mode mkldnn, what `auto`
    picks; mkldnn_bf16 adds oneDNN's bf16 passes) or Paddle's own kernels (paddle); GPU when asked or
    available; TensorRT (Paddle Inference's enable_tensorrt_engine) only for run_mode trt_* on a Paddle
    built with it.

    oneDNN runs the exported MaskRCNN-ResNet50-FPN at 800x1333 in about half the time of Paddle's own
    kernels (BENCHMARKS.md). Paddle 3.3.1's oneDNN kernels fail on zero-size tensors (an exception, or for
    concat a segmentation fault), so exported R-CNN graphs never make one on their inference path (see
    `multiclass_nms`'s sentinel); a batch oneDNN still rejects runs on Paddle's kernels (DeployPredictor).
    """
    run_mode = resolve_run_mode(run_mode, device)
    config = paddle_infer.Config(str(model_file), str(params))
    kind, device_id = _device(device)
    if kind == "gpu":
        config.enable_use_gpu(256, device_id)
        if run_mode.startswith("trt"):
            precision_type = paddle_infer.PrecisionType
            precision = precision_type.Half if run_mode == "trt_fp16" else precision_type.Float32
            config.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=1, min_subgraph_size=3,
                                          precision_mode=precision, use_static=False, use_calib_mode=False)
    else:
        config.disable_gpu()
        if is_onednn(run_mode):
            config.enable_mkldnn()
            if run_mode == "mkldnn_bf16":
                config.enable_mkldnn_bfloat16()
        else:
            config.disable_mkldnn()
        config.set_cpu_math_library_num_threads(int(cpu_threads or os.cpu_count() or 1))
    config.switch_ir_optim(True)
    # Paddle 3.3 + oneDNN: inplace_pass reuses a buffer that common-subexpression elimination made
    # shared, corrupting mask outputs (measured: ~1 % of mask pixels flipped); correctness first.
    config.delete_pass("inplace_pass")
    # no enable_memory_optim(): with PIR programs (Paddle 3.3) it fails in create_predictor
    config.disable_glog_info()
    return config


def _family(model_name: Any) -> Optional[str]:
    """The model family of `model_name` (use_hpip's accuracy table is per family). Imported here only:
    a deployment without use_hpip loads no config code (tests/test_export.py)."""
    from engine.config.model_names import MODEL_FAMILIES

    return MODEL_FAMILIES.get(str(model_name))


def is_onednn_rejection(exc: BaseException) -> bool:
    """True for the error Paddle 3.3.1's oneDNN kernels raise on zero-size tensors (nothing else)."""
    return type(exc) is RuntimeError and str(exc).strip() == ONEDNN_ZERO_SIZE_ERROR


class DeployPredictor(BasePredictor):
    """Predictions of an exported model directory (inference.yml + graph + params).

    Args:
        model_dir: the export directory (e.g. output/best_model/inference).
        device: "cpu", "gpu" or "gpu:<id>"; None = GPU when available, else CPU.
        threshold: score threshold; None = inference.yml draw_threshold.
        cpu_threads: CPU math threads (None = all cores).
        run_mode: auto (default: mkldnn on CPU, paddle on GPU) | mkldnn (oneDNN on CPU; a batch it
            rejects runs on Paddle's kernels) | mkldnn_bf16 (oneDNN bf16 on CPUs with AVX512_BF16 / AMX,
            else mkldnn with a warning) | paddle (Paddle's own kernels) | trt_fp32 | trt_fp16 (GPU with
            TensorRT only).
        use_hpip: pick the fastest validated run mode for this machine and the model's family
            (engine.deployment.high_performance); an explicit run_mode wins.

    `choice` is the RunChoice made (logged once), `graph` the ExportedGraph that runs (the compiled one
    when its operators load here, else the portable one); each result's JSON carries `run_info()`.
    """

    def __init__(self, model_dir: Union[str, os.PathLike], device: Optional[str] = None,
                 threshold: Optional[float] = None, cpu_threads: Optional[int] = None,
                 run_mode: Optional[str] = "auto", use_hpip: bool = False) -> None:
        self.info, graphs = read_inference_config(model_dir)
        self.model_dir = Path(model_dir)
        self.model_name = self.info.get("model_name")
        self.labels: List[str] = [str(x) for x in self.info["label_list"]]
        self.threshold = threshold
        self.preprocessor = Preprocess.from_ops(self.info["Preprocess"],
                                                str(self.model_dir / "inference.yml"))
        self.output_names = list(self.info.get("outputs", ["bbox", "bbox_num", "mask"]))
        self.graph = choose_graph(graphs, _device(device)[0], self.model_dir)
        self._build = (self.graph.model_file, self.graph.params_file, device, cpu_threads)
        if _device(device)[0] == "cpu":
            keep_freed_memory()
        family = _family(self.model_name) if use_hpip else None
        self.choice: RunChoice = choose_run_mode(run_mode, _device(device)[0], use_hpip, family)
        logger.info("%s (%s): %s; %s graph", self.model_dir, self.model_name, self.choice.describe(),
                    self.graph.name)
        self.run_mode = self.choice.run_mode
        self.predictor = self._create(self.run_mode)
        self._fallback: Any = None  # Paddle-kernel predictor for batches oneDNN cannot run
        self._last_run_mode = self.run_mode

    def run_info(self) -> Dict[str, Any]:
        """Backend, precision, run mode, device and use_hpip of the last batch (a batch oneDNN rejected
        ran on Paddle's kernels: run_mode paddle), and the graph that ran (compiled | portable)."""
        info = self.choice.as_json()
        if self._last_run_mode != self.choice.run_mode:
            fallback = RunChoice(self._last_run_mode, self.choice.device, self.choice.use_hpip, "")
            info.update(fallback.as_json())
        info["graph"] = self.graph.name
        return info

    def default_threshold(self) -> Optional[float]:
        """inference.yml's draw_threshold."""
        value = self.info.get("draw_threshold")
        return None if value is None else float(value)

    def raw(self, images: List[np.ndarray]) -> Dict[str, np.ndarray]:
        """The graph's outputs for BGR images: bbox [K, 6], bbox_num [N], mask [K, Hm, Wm]."""
        feeds = self.preprocessor.batch(images)
        self._last_run_mode = self.run_mode
        try:
            predictor = self._run(self.predictor, self.run_mode, feeds)
        except RuntimeError as exc:
            on_cpu_onednn = is_onednn(self.run_mode) and _device(self._build[2])[0] == "cpu"
            if not (on_cpu_onednn and is_onednn_rejection(exc)):
                raise
            # Paddle 3.3's oneDNN kernels reject zero-size tensors (which exported R-CNN graphs avoid, but
            # another graph may make): run this batch on Paddle's own CPU kernels, which run every op;
            # later batches try oneDNN again.
            if self._fallback is None:
                logger.warning("oneDNN could not run a batch of %s (a zero-size tensor: %r); such batches "
                               "run on Paddle's own CPU kernels (slower).", self.model_dir, str(exc)[:200])
                self._fallback = self._create("paddle")
            predictor = self._run(self._fallback, "paddle", feeds)
            self._last_run_mode = "paddle"
        outs = [predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()]
        return dict(zip(self.output_names, outs))

    def _create(self, run_mode: str) -> Any:
        with onednn_flag(is_onednn(run_mode)):
            return paddle_infer.create_predictor(build_config(*self._build, run_mode))

    @staticmethod
    def _run(predictor: Any, run_mode: str, feeds: Dict[str, np.ndarray]) -> Any:
        for name in predictor.get_input_names():
            predictor.get_input_handle(name).copy_from_cpu(feeds[name])
        with onednn_flag(is_onednn(run_mode)):
            predictor.run()
        return predictor
