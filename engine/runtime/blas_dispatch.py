"""Let Paddle's bundled MKL use its AVX2 kernels on AMD CPUs.

Paddle's x86 CPU wheels run their GEMMs (matmul, linear layers, and the im2col + GEMM of every dygraph
convolution, forward and backward) on the MKL they bundle (`paddle/libs/libmklml_intel.so`). That MKL
picks its code path from the CPU vendor: on a non-Intel CPU it takes the generic SSE path even when the CPU
has AVX2 and FMA, unless `MKL_DEBUG_CPU_TYPE=5` asks for the AVX2 path. Measured on this project's AMD EPYC
(2 threads, Paddle 3.3.1; `tools/benchmark_blas_dispatch.py`, BENCHMARKS.md): a 2048² matmul 36 → 130
GFLOP/s, a 256-channel 3x3 convolution forward + backward 29 → 89 GFLOP/s, outputs within 4e-7
relative (float rounding). MKL reads the variable at its first call, so setting it when the `engine`
package is imported (before any GEMM runs) is enough, even if Paddle is already imported.

Only on AMD / Hygon CPUs that report AVX2 and FMA, and never over a value the user set.
`INSTSEG_BLAS_TUNING=0` leaves MKL as it is. oneDNN (exported graphs, `Global.onednn`) does its own CPU
dispatch and is not affected.
"""
import os
from typing import MutableMapping, Optional

from engine.runtime.cpu_features import cpu_flags, cpu_vendor

MKL_CPU_TYPE = "MKL_DEBUG_CPU_TYPE"
MKL_AVX2 = "5"
OPT_OUT = "INSTSEG_BLAS_TUNING"
VENDORS_WITHOUT_MKL_DISPATCH = ("AuthenticAMD", "HygonGenuine")


def mkl_avx2_setting(cpuinfo: str = "/proc/cpuinfo",
                     environ: Optional[MutableMapping[str, str]] = None) -> Optional[str]:
    """The MKL_DEBUG_CPU_TYPE value to set for this CPU and environment, or None to leave MKL alone."""
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT, "1").strip() == "0" or MKL_CPU_TYPE in env:
        return None
    if cpu_vendor(cpuinfo) not in VENDORS_WITHOUT_MKL_DISPATCH:
        return None
    flags = cpu_flags(cpuinfo)
    return MKL_AVX2 if {"avx2", "fma"} <= flags else None


def use_avx2_blas_on_amd(cpuinfo: str = "/proc/cpuinfo",
                         environ: Optional[MutableMapping[str, str]] = None) -> bool:
    """Set MKL_DEBUG_CPU_TYPE=5 in `environ` (default os.environ) where mkl_avx2_setting says so; True
    when it was set by this call."""
    env = os.environ if environ is None else environ
    value = mkl_avx2_setting(cpuinfo, env)
    if value is None:
        return False
    env[MKL_CPU_TYPE] = value
    return True
