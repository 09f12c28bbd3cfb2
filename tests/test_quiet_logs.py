"""Known harmless third-party warnings stay out of the logs; every other warning still shows.

The training run builds the compiled RoIAlign operator afresh (INSTSEG_CACHE in a temporary folder), since
importing Paddle's extension builder is what printed "No ccache found", and trains more than one epoch
through BatchNorm layers in training mode (the "always track global mean and variance" note). A fake
nvidia-smi on PATH also checks the one warning about GPUs the CPU build of Paddle cannot use.
"""
import os
import subprocess
import sys
from pathlib import Path

import paddle

from test_device import fake_nvidia_smi
from tiny_rcnn_run import TINY, demo_subset, main_py

HARMLESS = ("ccache", "always track global mean and variance")


def test_short_training_prints_neither_known_harmless_warning(tmp_path: Path) -> None:
    data = demo_subset(tmp_path / "data", train=4, val=2)
    cache = tmp_path / "ops"
    env = {"INSTSEG_CACHE": str(cache), "PATH": fake_nvidia_smi(tmp_path / "bin")}
    run = main_py(["Global.mode=train", f"Global.dataset_dir={data}", f"Global.output={tmp_path / 'out'}",
                   "Train.epochs_iters=2", "Train.export_best=false", *TINY], env=env)
    text = run.stdout + run.stderr
    assert run.returncode == 0, text[-4000:]
    assert list(cache.glob("instseg_roi_align-*/**/*.so")), "the operator was not built in this run"
    for message in HARMLESS:
        assert message not in text
    if not paddle.device.is_compiled_with_cuda():
        gpu_lines = [line for line in text.splitlines() if "nvidia-smi sees 2 GPU(s)" in line]
        assert len(gpu_lines) == 1 and "bash tools/setup_env.sh --cuda 12.6" in gpu_lines[0]
        assert text.index(gpu_lines[0]) < text.index("Training MaskRCNN")  # said before training starts


def test_other_warnings_still_show() -> None:
    code = """if True:
        import warnings
        import engine  # installs the filters
        import paddle
        track = "When training, we now always track global mean and variance."
        warnings.warn_explicit(track, UserWarning, "norm.py", 885, module="paddle.nn.layer.norm")
        warnings.warn_explicit(track + " More.", UserWarning, "norm.py", 885, module="paddle.nn.layer.norm")
        warnings.warn_explicit(track, UserWarning, "mine.py", 1, module="mine")
        warnings.warn_explicit("Another note.", UserWarning, "norm.py", 886, module="paddle.nn.layer.norm")
        warnings.warn("No ccache found. Please be aware that recompiling all source files may be required.")
    """
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], text=True,
                          capture_output=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    shown = [line for line in proc.stderr.splitlines() if "UserWarning" in line]
    assert shown == [
        "norm.py:885: UserWarning: When training, we now always track global mean and variance. More.",
        "mine.py:1: UserWarning: When training, we now always track global mean and variance.",
        "norm.py:886: UserWarning: Another note.",
        "<string>:10: UserWarning: No ccache found. Please be aware that recompiling all source files may be "
        "required.",
    ], proc.stderr
