"""What the installed Paddle can run on, what the machine has, and how to get the build that fits.

`check_device` turns a `Global.device` this Paddle build cannot use (gpu on the CPU build, xpu without XPU
support, an id beyond the visible GPUs) into one ConfigError that names what the build supports and the
command that installs the other build. `warn_if_gpus_unused` says, once, when `nvidia-smi` sees GPUs but
Paddle is the CPU build (training would silently run on the CPU). GPU wheels of Paddle 3.x come from
Paddle's own package index, one per CUDA version (tools/setup_env.sh --cuda).
"""
import logging
import re
import shutil
import subprocess
from typing import List, Optional, Sequence

from engine.errors import ConfigError

logger = logging.getLogger("instseg")

CUDA_WHEELS = ("11.8", "12.6", "12.9")  # CUDA versions Paddle 3.x publishes GPU wheels for
SETUP = "bash tools/setup_env.sh"
_warned: List[bool] = []


def supported_kinds() -> List[str]:
    """Device types the installed Paddle was built for: 'cpu' and e.g. 'gpu', 'xpu', custom ones."""
    import paddle

    kinds = ["cpu"]
    if paddle.device.is_compiled_with_cuda():
        kinds.append("gpu")
    if paddle.device.is_compiled_with_xpu():
        kinds.append("xpu")
    kinds += [k for k in paddle.device.get_all_custom_device_type() or [] if k not in kinds]
    return kinds


def build_name() -> str:
    """'Paddle 3.3.1 (CPU build)' or 'Paddle 3.3.1 (CUDA 12.6 build)'."""
    import paddle

    cuda = paddle.version.cuda() if paddle.device.is_compiled_with_cuda() else ""
    kind = f"CUDA {cuda}" if cuda and cuda != "False" else "CPU"
    return f"Paddle {paddle.__version__} ({kind} build)"


def install_hint(cuda_version: Optional[str] = None) -> str:
    """The command that installs Paddle's GPU build (for `cuda_version`, else the list of choices)."""
    choice = pick_cuda_wheel(cuda_version) if cuda_version else None
    return f"{SETUP} --cuda {choice or '|'.join(CUDA_WHEELS)}"


def pick_cuda_wheel(driver_cuda: str) -> Optional[str]:
    """The newest CUDA wheel a driver supporting CUDA `driver_cuda` (e.g. '12.4') can run, if any."""
    def key(v: str) -> tuple:
        return tuple(int(x) for x in v.split("."))

    try:
        fits = [v for v in CUDA_WHEELS if key(v) <= key(driver_cuda)]
    except ValueError:
        return None
    return fits[-1] if fits else None


def check_device(kind: str, ids: Sequence[int], launched: bool) -> None:
    """ConfigError unless this Paddle can use device `kind` with `ids` (ids are not checked when
    paddle.distributed.launch assigned them: `launched`)."""
    kinds = supported_kinds()
    text = f"{kind}:{','.join(map(str, ids))}" if ids else kind
    if kind not in kinds:
        fix = (f"install the GPU build ({install_hint(nvidia_cuda_version())}, see README 'GPU machines')"
               if kind == "gpu" else f"install a Paddle build for {kind}")
        raise ConfigError(f"Global.device={text}: the installed {build_name()} cannot use {kind}; it "
                          f"supports {', '.join(kinds)}. Use Global.device=cpu, or {fix}.")
    if kind != "gpu" or launched:
        return
    import paddle

    count = paddle.device.cuda.device_count()
    wanted = list(ids) or [0]
    if max(wanted) >= count:
        raise ConfigError(f"Global.device={text}: {build_name()} sees {count} GPU(s) (ids 0..{count - 1}); "
                          "check nvidia-smi and CUDA_VISIBLE_DEVICES, or choose visible ids.")


def _nvidia_smi(*args: str) -> str:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ""
    try:
        return subprocess.run([exe, *args], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def nvidia_gpus() -> int:
    """How many GPUs `nvidia-smi -L` lists (0 without nvidia-smi)."""
    return sum(1 for line in _nvidia_smi("-L").splitlines() if line.startswith("GPU "))


def nvidia_cuda_version() -> Optional[str]:
    """The highest CUDA version the driver supports, from nvidia-smi's header ('12.4'), if known."""
    match = re.search(r"CUDA Version:\s*([0-9]+\.[0-9]+)", _nvidia_smi())
    return match.group(1) if match else None


def warn_if_gpus_unused() -> None:
    """One warning line (once per process) when nvidia-smi sees GPUs the CPU build of Paddle cannot use."""
    if _warned or "gpu" in supported_kinds():
        return
    _warned.append(True)
    gpus = nvidia_gpus()
    if gpus:
        logger.warning("nvidia-smi sees %d GPU(s) but %s cannot use them, so this runs on the CPU; "
                       "install the GPU build with: %s", gpus, build_name(),
                       install_hint(nvidia_cuda_version()))
