"""Deployment inference: run an exported model (engine.deployment.exporter) with Paddle Inference.

Everything comes from the model directory: the graph, the weights and inference.yml (preprocessing, labels,
draw threshold). No training code is imported, so this module and engine.prediction.results are all a
deployment needs besides numpy, OpenCV and Paddle.
"""
import logging
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import paddle
import yaml
from paddle import inference as paddle_infer

from engine.runtime.device import onednn_flag
from engine.runtime.malloc_tuning import keep_freed_memory
from engine.errors import ConfigError, WeightsError
from engine.prediction.results import InstanceSegResult

# newest inference.yml format this reader understands (engine.deployment.exporter writes it)
FORMAT_VERSION = 1
MODEL_FILES = ("inference.json", "inference.pdmodel")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
RUN_MODES = ("auto", "paddle", "mkldnn", "trt_fp32", "trt_fp16")

logger = logging.getLogger("instseg")

InputType = Union[str, os.PathLike, np.ndarray, Sequence[Any]]


def read_inference_config(model_dir: Union[str, os.PathLike]) -> Tuple[Dict[str, Any], Path, Path]:
    """inference.yml of `model_dir`, and its model and params files; clear errors for anything missing."""
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
    names = [info["model_file"]] if info.get("model_file") else list(MODEL_FILES)
    model_file = next((root / n for n in names if (root / n).is_file()), None)
    if model_file is None:
        raise WeightsError(f"{root}: the model graph ({' or '.join(names)}) is missing; re-export the model.")
    params = root / info.get("params_file", "inference.pdiparams")
    if not params.is_file():
        raise WeightsError(f"{root}: the parameter file {params.name} is missing; re-export the model.")
    return info, model_file, params


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
    """The run mode `auto` (or None) stands for: mkldnn (oneDNN) on a CPU when Paddle is built with it,
    else paddle. Other values are checked and returned as they are."""
    if run_mode is None or run_mode == "auto":
        on_cpu = _device(device)[0] == "cpu"
        return "mkldnn" if on_cpu and paddle.base.core.is_compiled_with_mkldnn() else "paddle"
    if run_mode not in RUN_MODES:
        raise ConfigError(f"run_mode must be one of {', '.join(RUN_MODES)}, got {run_mode!r}.")
    return run_mode


def build_config(model_file: Path, params: Path, device: Optional[str], cpu_threads: Optional[int],
                 run_mode: str) -> "paddle_infer.Config":
    """A Paddle Inference config: on CPU `cpu_threads` threads with oneDNN (run_mode mkldnn, what `auto`
    picks) or Paddle's own kernels (paddle); GPU when asked or available; TensorRT only for run_mode
    trt_* on a Paddle built with it.

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
            if not paddle_infer.get_trt_compile_version() or paddle_infer.get_trt_compile_version()[0] == 0:
                raise ConfigError(f"run_mode {run_mode} needs a Paddle built with TensorRT; use "
                                  "run_mode=paddle.")
            precision_type = paddle_infer.PrecisionType
            precision = precision_type.Half if run_mode == "trt_fp16" else precision_type.Float32
            config.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=1, min_subgraph_size=3,
                                          precision_mode=precision, use_static=False, use_calib_mode=False)
    else:
        if run_mode.startswith("trt"):
            raise ConfigError(f"run_mode {run_mode} needs a GPU; on CPU use run_mode=paddle or mkldnn.")
        config.disable_gpu()
        if run_mode == "mkldnn":
            config.enable_mkldnn()
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


class Preprocessor:
    """inference.yml's Preprocess ops on BGR uint8 images -> the graph's (image, im_shape, scale_factor)."""

    def __init__(self, ops: List[Dict[str, Any]]) -> None:
        by_type = {op["type"]: op for op in ops}
        unknown = set(by_type) - {"Resize", "NormalizeImage", "Permute", "PadStride"}
        if unknown:
            raise ConfigError(f"inference.yml has preprocessing ops this version cannot run: "
                              f"{sorted(unknown)}")
        self.resize = by_type.get("Resize")
        norm = by_type.get("NormalizeImage")
        self.mean = np.asarray(norm["mean"], np.float32) if norm else np.zeros(3, np.float32)
        self.std = np.asarray(norm["std"], np.float32) if norm else np.ones(3, np.float32)
        self.is_scale = bool(norm.get("is_scale", True)) if norm else False
        self.stride = int(by_type.get("PadStride", {}).get("stride", 0))

    def one(self, bgr: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(CHW float32 image, im_shape (h, w), scale_factor (h, w)) of one image."""
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        sy = sx = 1.0
        if self.resize:
            short, long_ = self.resize["target_size"]
            interp = int(self.resize.get("interp", cv2.INTER_LINEAR))
            if self.resize.get("keep_ratio", True):
                sy = sx = min(short / min(h, w), long_ / max(h, w))
            else:
                sy, sx = short / h, long_ / w
            rgb = cv2.resize(rgb, None, None, fx=sx, fy=sy, interpolation=interp)
        scale = np.float32(1.0 / 255.0) if self.is_scale else np.float32(1.0)
        img = (rgb.astype(np.float32) * scale - self.mean) / self.std
        return (img.transpose(2, 0, 1), np.asarray(img.shape[:2], np.float32),
                np.asarray([sy, sx], np.float32))

    def batch(self, images: List[np.ndarray]) -> Dict[str, np.ndarray]:
        """Inputs of the graph for a list of BGR images: zero-padded bottom/right to a common size."""
        items = [self.one(im) for im in images]
        hs = max(it[0].shape[1] for it in items)
        ws = max(it[0].shape[2] for it in items)
        if self.stride > 0:
            hs = -(-hs // self.stride) * self.stride
            ws = -(-ws // self.stride) * self.stride
        image = np.zeros((len(items), 3, hs, ws), np.float32)
        for i, (img, _, _) in enumerate(items):
            image[i, :, :img.shape[1], :img.shape[2]] = img
        return {"image": image, "im_shape": np.stack([it[1] for it in items]),
                "scale_factor": np.stack([it[2] for it in items])}


def _read_image(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ConfigError(f"Cannot read image {path}.")
    return img


def _download(url: str) -> str:
    cache = Path(tempfile.gettempdir()) / "instseg_inputs"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / (Path(url.split("?")[0]).name or "image.jpg")
    try:
        urllib.request.urlretrieve(url, target)
    except OSError as exc:
        raise ConfigError(f"Cannot download input {url}: {exc}") from exc
    return str(target)


def iter_inputs(inputs: InputType) -> Iterator[Tuple[Optional[str], np.ndarray]]:
    """(path or None, BGR image) for a numpy image, an image path, a directory (sorted, recursive), a
    URL, or a list of these."""
    if isinstance(inputs, np.ndarray):
        img = inputs if inputs.ndim == 3 else cv2.cvtColor(inputs, cv2.COLOR_GRAY2BGR)
        yield None, img[:, :, :3]
        return
    if isinstance(inputs, (list, tuple)):
        for item in inputs:
            yield from iter_inputs(item)
        return
    text = str(inputs)
    if text.startswith(("http://", "https://")):
        yield text, _read_image(_download(text))
        return
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        for p in files:
            yield str(p), _read_image(str(p))
        return
    if not path.is_file():
        raise ConfigError(f"Input {text} does not exist.")
    yield str(path), _read_image(str(path))


def _batches(items: Iterable[Tuple[Optional[str], np.ndarray]], size: int) -> Iterator[List]:
    batch: List = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class DeployPredictor:
    """Predictions of an exported model directory (inference.yml + graph + params).

    Args:
        model_dir: the export directory (e.g. output/best_model/inference).
        device: "cpu", "gpu" or "gpu:<id>"; None = GPU when available, else CPU.
        threshold: score threshold; None = inference.yml draw_threshold.
        cpu_threads: CPU math threads (None = all cores).
        run_mode: auto (default: mkldnn on CPU, paddle on GPU) | mkldnn (oneDNN on CPU; a batch it
            rejects runs on Paddle's kernels) | paddle (Paddle's own kernels) | trt_fp32 | trt_fp16 (GPU
            with TensorRT only).
    """

    def __init__(self, model_dir: Union[str, os.PathLike], device: Optional[str] = None,
                 threshold: Optional[float] = None, cpu_threads: Optional[int] = None,
                 run_mode: Optional[str] = "auto") -> None:
        self.info, model_file, params = read_inference_config(model_dir)
        self.model_dir = Path(model_dir)
        self.model_name = self.info.get("model_name")
        self.labels: List[str] = [str(x) for x in self.info["label_list"]]
        self.threshold = threshold
        self.preprocessor = Preprocessor(self.info["Preprocess"])
        self.output_names = list(self.info.get("outputs", ["bbox", "bbox_num", "mask"]))
        self._build = (model_file, params, device, cpu_threads)
        if _device(device)[0] == "cpu":
            keep_freed_memory()
        self.run_mode = resolve_run_mode(run_mode, device)
        self.predictor = self._create(self.run_mode)
        self._fallback: Any = None  # Paddle-kernel predictor for batches oneDNN cannot run

    def _threshold(self, threshold: Optional[float]) -> float:
        for value in (threshold, self.threshold, self.info.get("draw_threshold")):
            if value is not None:
                return float(value)
        return 0.5

    def raw(self, images: List[np.ndarray]) -> Dict[str, np.ndarray]:
        """The graph's outputs for BGR images: bbox [K, 6], bbox_num [N], mask [K, Hm, Wm]."""
        feeds = self.preprocessor.batch(images)
        try:
            predictor = self._run(self.predictor, self.run_mode, feeds)
        except (NotImplementedError, RuntimeError) as exc:
            if self.run_mode != "mkldnn" or _device(self._build[2])[0] != "cpu":
                raise
            # Paddle 3.3's oneDNN kernels reject zero-size tensors (which exported R-CNN graphs avoid, but
            # another graph may make): run this batch on Paddle's own CPU kernels, which run every op;
            # later batches try oneDNN again.
            if self._fallback is None:
                logger.info("oneDNN could not run a batch (%s); such batches run on Paddle's native CPU "
                            "kernels.", str(exc).splitlines()[0][:200])
                self._fallback = self._create("paddle")
            predictor = self._run(self._fallback, "paddle", feeds)
        outs = [predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()]
        return dict(zip(self.output_names, outs))

    def _create(self, run_mode: str) -> Any:
        with onednn_flag(run_mode == "mkldnn"):
            return paddle_infer.create_predictor(build_config(*self._build, run_mode))

    @staticmethod
    def _run(predictor: Any, run_mode: str, feeds: Dict[str, np.ndarray]) -> Any:
        for name in predictor.get_input_names():
            predictor.get_input_handle(name).copy_from_cpu(feeds[name])
        with onednn_flag(run_mode == "mkldnn"):
            predictor.run()
        return predictor

    def predict(self, input: InputType, batch_size: int = 1,
                threshold: Optional[float] = None) -> Iterator[InstanceSegResult]:
        """Yield one InstanceSegResult per image (threshold: this call > constructor > inference.yml)."""
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
        thr = self._threshold(threshold)
        for batch in _batches(iter_inputs(input), int(batch_size)):
            out = self.raw([img for _, img in batch])
            ends = np.cumsum(out["bbox_num"].astype(np.int64))
            starts = ends - out["bbox_num"]
            for (path, img), lo, hi in zip(batch, starts, ends):
                yield self._result(path, img, out["bbox"][lo:hi], out["mask"][lo:hi], thr)

    def _result(self, path: Optional[str], img: np.ndarray, bbox: np.ndarray, masks: np.ndarray,
                thr: float) -> InstanceSegResult:
        h, w = img.shape[:2]
        keep = (bbox[:, 1] > thr) & (bbox[:, 0] >= 0)
        bbox = bbox[keep]
        coords = np.clip(bbox[:, 2:6], 0, [w, h, w, h]).astype(np.float32)
        masks = masks[keep][:, :h, :w].astype(np.uint8)
        cls_ids = bbox[:, 0].astype(np.int64)
        boxes = [{"cls_id": int(c), "label": self.labels[c] if c < len(self.labels) else str(c),
                  "score": float(s), "coordinate": [float(v) for v in box]}
                 for c, s, box in zip(cls_ids, bbox[:, 1], coords)]
        return InstanceSegResult({"input_path": path, "page_index": None, "input_img": img,
                                  "boxes": boxes, "masks": list(masks)})
