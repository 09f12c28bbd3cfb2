"""engine.runtime.blas_dispatch: MKL's AVX2 kernels are asked for on AMD / Hygon CPUs with AVX2 + FMA only,
never over the user's own setting or with the opt-out; importing `engine` applies it before any GEMM."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.runtime.blas_dispatch import MKL_CPU_TYPE, mkl_avx2_setting, use_avx2_blas_on_amd
from engine.runtime.cpu_features import cpu_vendor

ROOT = Path(__file__).resolve().parents[1]


def _cpuinfo(tmp_path: Path, vendor: str, flags: str) -> str:
    path = tmp_path / f"cpuinfo_{vendor}_{len(flags)}"
    path.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: fpu sse2 {flags}\n\n"
                    f"processor\t: 1\nvendor_id\t: {vendor}\nflags\t\t: fpu sse2 {flags}\n")
    return str(path)


@pytest.mark.parametrize("vendor, flags, expected", [
    ("AuthenticAMD", "avx avx2 fma", "5"),
    ("HygonGenuine", "avx2 fma", "5"),
    ("AuthenticAMD", "avx", None),  # no AVX2: MKL's generic path is the right one
    ("AuthenticAMD", "avx2", None),  # AVX2 without FMA
    ("GenuineIntel", "avx2 fma avx512f", None),  # MKL dispatches Intel CPUs itself
])
def test_setting_follows_the_cpu(tmp_path, vendor, flags, expected):
    assert mkl_avx2_setting(_cpuinfo(tmp_path, vendor, flags), environ={}) == expected


def test_user_value_and_opt_out_are_respected(tmp_path):
    amd = _cpuinfo(tmp_path, "AuthenticAMD", "avx2 fma")
    user = {MKL_CPU_TYPE: "2"}
    assert not use_avx2_blas_on_amd(amd, user) and user == {MKL_CPU_TYPE: "2"}
    opted_out = {"INSTSEG_BLAS_TUNING": "0"}
    assert not use_avx2_blas_on_amd(amd, opted_out) and MKL_CPU_TYPE not in opted_out
    env: dict = {}
    assert use_avx2_blas_on_amd(amd, env) and env == {MKL_CPU_TYPE: "5"}


def test_missing_cpuinfo_changes_nothing(tmp_path):
    missing = str(tmp_path / "absent")
    assert cpu_vendor(missing) == "" and mkl_avx2_setting(missing, environ={}) is None


def test_importing_engine_applies_it_on_this_machine():
    env = {k: v for k, v in os.environ.items() if k not in (MKL_CPU_TYPE, "INSTSEG_BLAS_TUNING")}
    code = "import os, engine; print(os.environ.get('MKL_DEBUG_CPU_TYPE', '-'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout.split()[-1]
    assert out == (mkl_avx2_setting(environ={}) or "-")
