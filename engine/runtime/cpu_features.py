"""What the CPU is and can do (vendor, feature flags), for the precision and BLAS choices that depend on it
(read once per call, no Paddle import unless /proc/cpuinfo is unavailable).

bf16 is only worth running where the CPU computes it natively: AVX512_BF16 (Cooper Lake, Zen 4 and later)
or AMX (Sapphire Rapids and later). oneDNN also emulates bf16 on plain AVX512 CPUs, slower than fp32, and
Paddle Inference's `enable_mkldnn_bfloat16()` quietly stays fp32 on CPUs without AVX512, so the check is
ours: tests monkeypatch `cpu_has_fast_bf16`.
"""
from pathlib import Path
from typing import FrozenSet, Optional, Tuple

# /proc/cpuinfo flag names (Linux) of native bf16 arithmetic
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _first_cpu_field(cpuinfo: str, keys: Tuple[str, ...]) -> Optional[str]:
    """The value of the first line of `cpuinfo` whose key is one of `keys` (the first CPU's), None when the
    file is missing (e.g. not Linux) or has no such line."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keys:
            return value
    return None


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> FrozenSet[str]:
    """The feature flags of the first CPU in `cpuinfo` (empty when the file is missing, e.g. not Linux)."""
    return frozenset((_first_cpu_field(cpuinfo, ("flags", "Features")) or "").split())


def cpu_vendor(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The first CPU's vendor id in `cpuinfo` ('GenuineIntel', 'AuthenticAMD', ...; '' when unknown)."""
    return (_first_cpu_field(cpuinfo, ("vendor_id",)) or "").strip()


def cpu_has_fast_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512_BF16 or AMX). Without /proc/cpuinfo, Paddle's
    own probe (`supports_bfloat16_fast_performance`, which checks AVX512_BF16) decides."""
    flags = cpu_flags(cpuinfo)
    if flags:
        return any(f in flags for f in BF16_FLAGS)
    try:
        from paddle.base import core

        return bool(core.supports_bfloat16_fast_performance())
    except (ImportError, AttributeError):
        return False
