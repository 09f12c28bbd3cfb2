"""Keep freed CPU memory in the process, so that big tensors are not paged in afresh by every op.

Paddle's CPU allocator takes each tensor from `malloc` and gives it back after use. glibc serves blocks
over its mmap threshold (at most 32 MiB) with a fresh `mmap` and returns them to the kernel on `free`,
so every large activation (a ResNet stage at 800x1333 is 50-90 MB) is zero-filled page by page again:
out-of-place `add` on [1, 256, 200, 336] measured 20.9 ms against 3.5 ms in place, a `clone` 35.6 ms.
With mmap off and a high trim threshold, freed blocks stay in the heap for the next op: MaskRCNN-
ResNet50-FPN inference at 800x1333 on 2 threads went from 4.35 s to 2.78 s, peak memory 1.8 -> 2.6 GB
(BENCHMARKS.md). The process then keeps its peak heap until it ends.

Linux with glibc only; `INSTSEG_MALLOC_TUNING=0` leaves malloc as it is.
"""
import ctypes
import logging
import os
import platform

logger = logging.getLogger("instseg")

# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4

TRIM_THRESHOLD = 2 ** 31 - 1  # give memory back only when over 2 GiB is free at the top of the heap
TOP_PAD = 64 << 20  # grow the heap 64 MiB at a time

_applied = False


def _glibc_version() -> str:
    """'glibc 2.36' under glibc, '' elsewhere (musl, macOS, Windows)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        return ""


def keep_freed_memory() -> bool:
    """Tune glibc malloc for this process (once); True when it is tuned, False where it does not apply
    (not glibc, opted out) or mallopt refused."""
    global _applied
    if _applied:
        return True
    if os.environ.get("INSTSEG_MALLOC_TUNING", "1").strip() == "0":
        return False
    if platform.system() != "Linux" or not _glibc_version():
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    settings = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    if not all(libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1 for param, value in settings):
        logger.warning("glibc refused the malloc settings; large CPU tensors are paged in afresh each time.")
        return False
    _applied = True
    return True
