"""Run modes of exported models and the high-performance choice (`use_hpip`, PaddleX's name).

A run mode is a Paddle Inference backend at a precision, named as PaddleX names them (its
PaddlePredictorOption run modes): `paddle` (Paddle's own kernels, fp32), `mkldnn` (oneDNN, fp32),
`mkldnn_bf16` (oneDNN, bf16), `trt_fp32` / `trt_fp16` (TensorRT on GPU), plus our `auto`. `choose_run_mode`
turns what was asked (run_mode, use_hpip, device) into the run mode that runs, and says why:

- an explicit run mode wins over use_hpip; `mkldnn_bf16` on a CPU without native bf16 runs `mkldnn`
  (fp32) with a warning: the results are fp32's (never worse), the same config works on every machine,
  and the result JSON says fp32 ran (Paddle itself would quietly stay fp32 on such CPUs);
- use_hpip picks the fastest run mode this machine supports whose precision is validated for the model
  family: `mkldnn_bf16` on CPUs with AVX512_BF16 / AMX when `MEASURED_AP_CHANGE` holds a measurement
  within `MAX_AP_DROP`, else `mkldnn`; on GPU builds with TensorRT `trt_fp16` unless a measurement
  rejects it, else `trt_fp32`; `paddle` when the build has neither oneDNN nor TensorRT;
- `auto`: `mkldnn` on CPU (when Paddle has oneDNN), `paddle` on GPU.

Kept free of a module-level Paddle import, so config validation can import RUN_MODES.
"""
import logging
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from engine.errors import ConfigError
from engine.runtime import cpu_features

RUN_MODES = ("auto", "paddle", "mkldnn", "mkldnn_bf16", "trt_fp32", "trt_fp16")
BACKEND_PRECISION: Dict[str, Tuple[str, str]] = {
    "paddle": ("paddle", "fp32"),
    "mkldnn": ("onednn", "fp32"),
    "mkldnn_bf16": ("onednn", "bf16"),
    "trt_fp32": ("tensorrt", "fp32"),
    "trt_fp16": ("tensorrt", "fp16"),
}
# use_hpip never picks a precision whose measured mask or box AP change against run_mode paddle is a drop
# of more than this many AP points (0-100 scale) for the model family
MAX_AP_DROP = 1.0
# reduced precisions use_hpip picks only after a measurement; bf16 keeps 8 mantissa bits, fp16 11
NEEDS_MEASUREMENT = ("mkldnn_bf16",)
# use_hpip chooses among Paddle Inference run modes, which run exported graphs only; the dynamic graph has
# no faster backend to pick, so asking for it there is an error that says how to export
HPIP_NEEDS_EXPORT = ("use_hpip runs exported models only (it picks a Paddle Inference backend); export the "
                     "model first (-o Global.mode=export, or use <output>/best_model/inference written by "
                     "training) and pass {where}.")

# what the benchmark tools call use_hpip's choice next to the run modes (`--run-mode auto hpip` times the
# default and the high-performance choice side by side)
HPIP = "hpip"

logger = logging.getLogger("instseg")


@dataclass(frozen=True)
class APChange:
    """A measured AP change of one run mode against run_mode paddle, in AP points (new minus paddle)."""

    mask: Optional[float]
    box: Optional[float]
    source: str  # what was measured where, so a reader can repeat it

    def worst_drop(self) -> float:
        return max([-v for v in (self.mask, self.box) if v is not None], default=0.0)


# Filled from tools/check_run_mode_accuracy.py runs (it prints the entry to paste), per model family
# (engine.config.model_names) and reduced-precision run mode.
MEASURED_AP_CHANGE: Dict[str, Dict[str, APChange]] = {
    "rcnn": {
        "mkldnn_bf16": APChange(mask=-1.4, box=None, source=(
            "issue 15: demo Mask R-CNN (configs/demo.yaml), demo val split, mask AP 0.698 -> 0.684, "
            "Paddle 3.3.1 on a CPU with AVX512_BF16; box AP not reported")),
    },
}


def is_onednn(run_mode: str) -> bool:
    """True for the run modes that run oneDNN kernels (they need Paddle's FLAGS_use_mkldnn on)."""
    return BACKEND_PRECISION.get(run_mode, ("", ""))[0] == "onednn"


@dataclass(frozen=True)
class RunChoice:
    """The run mode that runs, on which device kind, whether use_hpip chose it, and why."""

    run_mode: str
    device: str  # cpu | gpu
    use_hpip: bool
    reason: str

    @property
    def backend(self) -> str:
        return BACKEND_PRECISION[self.run_mode][0]

    @property
    def precision(self) -> str:
        return BACKEND_PRECISION[self.run_mode][1]

    def as_json(self) -> Dict[str, object]:
        """What results and result files record about the run."""
        return {"backend": self.backend, "precision": self.precision, "run_mode": self.run_mode,
                "device": self.device, "use_hpip": self.use_hpip}

    def describe(self) -> str:
        return (f"run_mode {self.run_mode} ({self.backend} {self.precision} on {self.device}"
                f"{', use_hpip' if self.use_hpip else ''}): {self.reason}")


def predictor_options(name: str) -> Dict[str, object]:
    """DeployPredictor keywords for a run mode name, or for HPIP (use_hpip's choice)."""
    return {"run_mode": "auto", "use_hpip": True} if name == HPIP else {"run_mode": name}


def onednn_available() -> bool:
    """True when the installed Paddle has oneDNN kernels."""
    import paddle

    return bool(paddle.base.core.is_compiled_with_mkldnn())


def tensorrt_available() -> bool:
    """True when the installed Paddle was built with TensorRT."""
    from paddle import inference as paddle_infer

    version = paddle_infer.get_trt_compile_version()
    return bool(version) and version[0] > 0


def precision_allowed(family: Optional[str], run_mode: str) -> Tuple[bool, str]:
    """(may use_hpip pick `run_mode` for `family`, why) under MEASURED_AP_CHANGE and MAX_AP_DROP."""
    change = MEASURED_AP_CHANGE.get(family or "", {}).get(run_mode)
    if change is None:
        if run_mode in NEEDS_MEASUREMENT:
            return False, (f"{run_mode} is not validated for the {family or 'unknown'} family (no AP "
                           f"measurement; tools/check_run_mode_accuracy.py measures it)")
        return True, f"{run_mode} has no AP measurement rejecting it"
    if change.worst_drop() > MAX_AP_DROP:
        return False, (f"{run_mode} lowers the {family} family's AP by {change.worst_drop():.1f} points "
                       f"(> {MAX_AP_DROP}; {change.source})")
    return True, f"{run_mode} is validated for the {family} family ({change.source})"


def choose_run_mode(requested: Optional[str], device: str, use_hpip: bool = False,
                    family: Optional[str] = None) -> RunChoice:
    """The run mode for `requested` (a RUN_MODES value; None = auto) on `device` ("cpu" | "gpu")."""
    requested = requested or "auto"
    if requested not in RUN_MODES:
        raise ConfigError(f"run_mode must be one of {', '.join(RUN_MODES)}, got {requested!r}.")
    if requested != "auto":
        return _explicit(requested, device, use_hpip)
    if use_hpip:
        return _fastest_gpu(family) if device == "gpu" else _fastest_cpu(family)
    if device == "cpu" and onednn_available():
        return RunChoice("mkldnn", device, False, "auto: oneDNN on CPU")
    return RunChoice("paddle", device, False, f"auto: Paddle's own kernels on {device}")


def _explicit(run_mode: str, device: str, use_hpip: bool) -> RunChoice:
    over = " (an explicit run_mode wins over use_hpip)" if use_hpip else ""
    if run_mode.startswith("trt"):
        if device != "gpu":
            raise ConfigError(f"run_mode {run_mode} needs a GPU; on CPU use run_mode=paddle, mkldnn or "
                              f"mkldnn_bf16.")
        if not tensorrt_available():
            raise ConfigError(f"run_mode {run_mode} needs a Paddle built with TensorRT; use run_mode=paddle.")
    if run_mode == "mkldnn_bf16":
        if device != "cpu":
            raise ConfigError("run_mode mkldnn_bf16 runs on CPU; on GPU use trt_fp16 or paddle.")
        if not cpu_features.cpu_has_fast_bf16():
            logger.warning("run_mode mkldnn_bf16: this CPU has no native bf16 (AVX512_BF16 or AMX); running "
                           "oneDNN fp32 (run_mode mkldnn) instead: same or better accuracy, and results "
                           "say fp32.")
            return RunChoice("mkldnn", device, use_hpip, "mkldnn_bf16 asked, but the CPU has no native bf16"
                             + over)
    return RunChoice(run_mode, device, use_hpip, f"run_mode {run_mode} asked{over}")


def _fastest_cpu(family: Optional[str]) -> RunChoice:
    if not onednn_available():
        return RunChoice("paddle", "cpu", True, "this Paddle build has no oneDNN")
    if not cpu_features.cpu_has_fast_bf16():
        return RunChoice("mkldnn", "cpu", True, "the CPU has no native bf16 (AVX512_BF16 or AMX)")
    allowed, why = precision_allowed(family, "mkldnn_bf16")
    return RunChoice("mkldnn_bf16" if allowed else "mkldnn", "cpu", True, why)


def _fastest_gpu(family: Optional[str]) -> RunChoice:
    if not tensorrt_available():
        return RunChoice("paddle", "gpu", True, "this Paddle build has no TensorRT")
    allowed, why = precision_allowed(family, "trt_fp16")
    return RunChoice("trt_fp16" if allowed else "trt_fp32", "gpu", True, why)
