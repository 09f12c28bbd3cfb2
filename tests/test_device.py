"""Device choice against the installed Paddle build: our ConfigError for devices it cannot use, one warning
when nvidia-smi sees GPUs the CPU build cannot use, and tools/setup_env.sh's choice of Paddle build."""
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import paddle
import pytest

from engine.errors import ConfigError
from engine.runtime import paddle_build
from engine.runtime.device import resolve_device

REPO = Path(__file__).resolve().parents[1]
CPU_BUILD = not paddle.device.is_compiled_with_cuda()
FAKE_SMI = """#!/bin/sh
if [ "$1" = "-L" ]; then
  echo "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-0)"
  echo "GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-1)"
else
  echo "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.8 |"
fi
"""


def fake_nvidia_smi(folder: Path) -> str:
    """A PATH whose first entry holds an nvidia-smi that lists two GPUs and a CUDA 12.8 driver."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "nvidia-smi"
    exe.write_text(FAKE_SMI)
    exe.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


@pytest.mark.skipif(not CPU_BUILD, reason="the CPU build's refusal of GPUs (these machines have it)")
@pytest.mark.parametrize("device", ["gpu:0", "gpu", "gpu:0,1", "xpu:0"])
def test_device_the_build_cannot_use_is_one_config_error_line(device: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), "-o", "Global.mode=train",
                           "-o", f"Global.device={device}", "-o", f"Global.output={tmp_path}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith(f"ConfigError: Global.device={device}:"), proc.stderr
    assert "CPU build" in lines[0] and "it supports cpu" in lines[0]
    assert "re.Match" not in lines[0] and "Traceback" not in proc.stderr
    if device.startswith("gpu"):
        assert "bash tools/setup_env.sh --cuda" in lines[0]


def test_gpu_ids_beyond_the_visible_ones(monkeypatch: Any) -> None:
    monkeypatch.setattr(paddle_build, "supported_kinds", lambda: ["cpu", "gpu"])
    monkeypatch.setattr(paddle.device.cuda, "device_count", lambda: 2)
    paddle_build.check_device("gpu", [1], launched=False)
    with pytest.raises(ConfigError, match=r"sees 2 GPU\(s\) \(ids 0\.\.1\)"):
        paddle_build.check_device("gpu", [0, 2], launched=False)
    paddle_build.check_device("gpu", [0, 2], launched=True)  # the launcher assigns ids: not ours to check


@pytest.mark.parametrize("driver, wheel", [("12.8", "12.6"), ("12.4", "11.8"), ("13.0", "12.9"),
                                           ("12.6", "12.6"), ("11.4", None), ("x", None)])
def test_cuda_wheel_for_the_driver(driver: str, wheel: Any) -> None:
    assert paddle_build.pick_cuda_wheel(driver) == wheel


@pytest.mark.skipif(not CPU_BUILD, reason="warns only on the CPU build")
def test_one_warning_when_nvidia_smi_sees_unusable_gpus(tmp_path: Path, monkeypatch: Any, caplog: Any
                                                        ) -> None:
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path / "bin"))
    monkeypatch.setattr(paddle_build, "_warned", [])
    with caplog.at_level(logging.WARNING, logger="instseg"):
        assert resolve_device(None) == "cpu"
        assert resolve_device(None) == "cpu"
        assert resolve_device("cpu") == "cpu"
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert "nvidia-smi sees 2 GPU(s)" in warnings[0] and "CPU build" in warnings[0]
    assert warnings[0].endswith("bash tools/setup_env.sh --cuda 12.6")


def test_no_warning_without_nvidia_smi(tmp_path: Path, monkeypatch: Any, caplog: Any) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi anywhere
    monkeypatch.setattr(paddle_build, "_warned", [])
    with caplog.at_level(logging.WARNING, logger="instseg"):
        resolve_device(None)
    assert not caplog.records


def setup_env(*args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(["bash", str(REPO / "tools" / "setup_env.sh"), *args], capture_output=True,
                          text=True, timeout=60)


def test_setup_env_documents_and_picks_the_paddle_build() -> None:
    version = next(line.split("==")[1] for line in (REPO / "requirements.txt").read_text().splitlines()
                   if line.startswith("paddlepaddle=="))
    helped = setup_env("--help")
    assert helped.returncode == 0 and "--cuda VERSION" in helped.stdout and "--paddle SPEC" in helped.stdout
    gpu = setup_env("--cuda", "12.6", "--dry-run")
    assert gpu.returncode == 0, gpu.stderr
    assert (f"install --quiet paddlepaddle-gpu=={version} --index-url "
            "https://www.paddlepaddle.org.cn/packages/stable/cu126/") in gpu.stdout
    cpu = setup_env("--dry-run")
    assert f"install --quiet paddlepaddle=={version}" in cpu.stdout and "paddlepaddle-gpu==" not in cpu.stdout
    assert "requirements-onnx.txt" not in cpu.stdout  # optional: only with --onnx
    assert "install --quiet -r requirements-onnx.txt" in setup_env("--onnx", "--dry-run").stdout
    spec = setup_env("--paddle", "paddlepaddle-gpu==3.3.1", "--index-url", "https://mirror.example/simple",
                     "--dry-run")
    assert "paddlepaddle-gpu==3.3.1 --index-url https://mirror.example/simple" in spec.stdout
    wrong = setup_env("--cuda", "10.2", "--dry-run")
    assert wrong.returncode == 2 and "11.8 12.6 12.9" in wrong.stderr and not wrong.stdout
