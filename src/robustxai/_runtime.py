"""Process-wide tuning that robustxai's own processes apply: the CLI, Ray workers and the benchmarks.

Why. PyTorch allocates CPU tensors with the C library's ``malloc``. glibc hands the memory of large freed
blocks back to the kernel (``munmap``, or trimming the top of the heap), so the next pass's tensors of the
same sizes start on fresh pages, and every 4 KiB page costs a page fault when first written. An explainer
or attack runs the same passes over and over, so this is paid on every pass. On the 2-core reference
machine, a forward+backward pass of ``smallcnn`` on 32 images spent ≈ 11 ms of its ≈ 65 ms in the kernel
(≈ 6,000 page faults); DeepLIFT, which keeps more intermediate tensors, spent ≈ 26 ms of ≈ 90 ms (≈ 13,000
faults). :func:`keep_freed_memory` tells glibc to keep freed memory for reuse instead: the same calls then
take almost no page faults, and the pass is ≈ 15 % faster (DeepLIFT ≈ 30 %). ``benchmarks/explainers.py``
with and without ``--system-malloc`` shows the difference.

What it costs: memory freed after the largest pass is not returned to the operating system until the process
ends, so the resident set stays at its peak (the peak itself did not grow in the measured audit:
BENCHMARKS.md). That suits a batch job such as an audit; it is why the library does not do it on import, and
a long-lived application that embeds robustxai can decide for itself. ``ROBUSTXAI_SYSTEM_MALLOC=1`` in the
environment turns it off everywhere, Ray workers included.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import Callable

logger = logging.getLogger(__name__)

# mallopt parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# Blocks up to this size come from the heap, not from their own mmap (glibc's own adjustment stops at
# 32 MiB, below one activation of a 224 px ResNet batch). glibc releases that refuse more than 32 MiB get
# 32 MiB.
MMAP_THRESHOLDS = (1 << 30, 32 << 20)
# Free memory at the top of the heap is returned to the kernel only beyond this (mallopt takes a C int).
TRIM_THRESHOLD = 2**31 - 1
#: Set (to anything but "" or "0") to leave malloc as it is in every robustxai process, Ray workers included.
OPT_OUT = "ROBUSTXAI_SYSTEM_MALLOC"

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the kernel (module docstring).

    Idempotent and process-wide; only the calling process is affected (child processes started later by
    ``fork`` inherit it, others call it themselves). Does nothing off Linux, with a C library other than
    glibc, or with the environment variable ``ROBUSTXAI_SYSTEM_MALLOC`` set (:data:`OPT_OUT`).

    Returns:
        Whether the setting is in effect.
    """
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get(OPT_OUT, "") not in ("", "0"):
        logger.debug("keep_freed_memory: %s is set; malloc left as it is", OPT_OUT)
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on
        libc.gnu_get_libc_version  # noqa: B018  (glibc's own symbol: musl and others have none)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        logger.debug("keep_freed_memory: not glibc; malloc left as it is")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return _set_thresholds(mallopt)


def _set_thresholds(mallopt: Callable[[int, int], int]) -> bool:
    """The mmap threshold first, the trim threshold only once it is in place.

    Setting either switches glibc's own adjustment of both off, so a trim threshold without a raised mmap
    threshold would leave every block over 128 KiB to its own mmap: worse than not asking at all.
    """
    for threshold in MMAP_THRESHOLDS:
        if mallopt(_M_MMAP_THRESHOLD, threshold):
            ok = bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            logger.debug("keep_freed_memory: mmap threshold %d, trim threshold set: %s", threshold, ok)
            return ok
    logger.debug("keep_freed_memory: glibc refused the mmap threshold; malloc left as it is")
    return False
