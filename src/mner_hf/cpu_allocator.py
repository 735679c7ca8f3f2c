"""glibc ``malloc`` settings for CPU training and inference processes.

PyTorch's CPU allocator is the C library's ``malloc``, with no caching of its own. glibc serves
every block above its *mmap threshold* (dynamic, at most 32 MiB by default) with a fresh
``mmap`` and gives it back with ``munmap`` on free, and it trims the top of the heap as soon as
128 KiB are free there. A training step allocates and frees the same large activations every
step (TPM-MI at the paper's size: 4334 x 3072 fp32 = 53 MB per ViT MLP activation), so each of them
is page-faulted and zeroed by the kernel again on every step: in ``benchmarks/bench_tpm_mi.py``
the fp32 step spent 10-13 s of its 24 s in ``sys`` time and ``addmm`` copying its bias into a
fresh output ran at 0.7 GB/s.

:func:`tune_cpu_allocator` raises the mmap threshold to 1 GiB and the trim threshold to 2 GiB with
``mallopt`` (the knobs ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` set from the
environment, but applied at run time, so ``mner-hf train`` needs no wrapper): freed activations
stay in the heap and are reused without faults, the way the CUDA caching allocator keeps GPU memory.
Measured on 2 cores (``benchmarks/README.md``): TPM-MI fp32 train step -10 to -18 %, ``sys``
time 3x lower, peak RSS +2 to +5 %. The memory a process has used at its peak is kept until it
exits, which is what a training or tagging job wants and why this is not done on ``import``.

It is applied by ``MNERTrainer`` when training on the CPU and by ``mner-hf predict``; set
``MNER_HF_CPU_ALLOCATOR=off`` to keep the C library's defaults. It is skipped (and says why) on
anything but Linux with glibc, and when ``LD_PRELOAD`` puts another ``malloc`` (jemalloc, tcmalloc,
mimalloc) in front of glibc's.

Public API
----------
``tune_cpu_allocator(mmap_threshold=1 GiB, trim_threshold=2 GiB - 1) -> AllocatorTuning``
``AllocatorTuning``: ``.applied``, ``.reason``, ``.mmap_threshold``, ``.trim_threshold``, ``.to_dict()``
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import asdict, dataclass
from typing import Any

#: ``mallopt`` parameter numbers (glibc ``malloc.h``)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc's own upper limit before 2.35 (``DEFAULT_MMAP_THRESHOLD_MAX`` on 64-bit), the fallback
GLIBC_OLD_MAX_MMAP_THRESHOLD = 32 * 1024 * 1024
ENV_VARIABLE = "MNER_HF_CPU_ALLOCATOR"
OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


@dataclass(frozen=True)
class AllocatorTuning:
    """What :func:`tune_cpu_allocator` did: ``applied`` and, in one sentence, ``reason``."""

    applied: bool
    reason: str
    mmap_threshold: int | None = None
    trim_threshold: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        if not self.applied:
            return f"C library defaults ({self.reason})"
        return (f"glibc malloc: mmap threshold {self.mmap_threshold / 2**20:.0f} MiB, trim threshold "
                f"{self.trim_threshold / 2**20:.0f} MiB ({self.reason})")


_done: AllocatorTuning | None = None


def _glibc() -> Any | None:
    """The process's glibc (``ctypes.CDLL``) or None on other platforms / C libraries."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        return ctypes.CDLL("libc.so.6")
    except (OSError, ValueError, AttributeError):
        return None


def tune_cpu_allocator(mmap_threshold: int = 2**30, trim_threshold: int = 2**31 - 1, libc: Any | None = None
                       ) -> AllocatorTuning:
    """Keep large freed blocks in glibc's heap (see the module docstring). Process-wide; the first
    call decides and later calls return its result. ``libc`` replaces the C library (tests)."""
    global _done
    if _done is not None and libc is None:
        return _done
    result = _tune(mmap_threshold, trim_threshold, libc)
    if libc is None:
        _done = result
    return result


def _tune(mmap_threshold: int, trim_threshold: int, libc: Any | None) -> AllocatorTuning:
    if os.environ.get(ENV_VARIABLE, "").strip().lower() in ("off", "0", "false", "no", "default"):
        return AllocatorTuning(False, f"{ENV_VARIABLE}={os.environ[ENV_VARIABLE]}")
    preload = os.environ.get("LD_PRELOAD", "")
    other = next((name for name in OTHER_ALLOCATORS if name in preload), None)
    if other:
        return AllocatorTuning(False, f"LD_PRELOAD uses {other}")
    libc = libc if libc is not None else _glibc()
    if libc is None:
        return AllocatorTuning(False, "not Linux with glibc")
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not mallopt(M_MMAP_THRESHOLD, mmap_threshold):
        # glibc before 2.35 refuses thresholds above 32 MiB
        mmap_threshold = min(mmap_threshold, GLIBC_OLD_MAX_MMAP_THRESHOLD)
        if not mallopt(M_MMAP_THRESHOLD, mmap_threshold):
            return AllocatorTuning(False, "glibc refused mallopt(M_MMAP_THRESHOLD)")
    if not mallopt(M_TRIM_THRESHOLD, trim_threshold):
        return AllocatorTuning(False, "glibc refused mallopt(M_TRIM_THRESHOLD)", mmap_threshold)
    return AllocatorTuning(True, "freed activations are reused instead of page-faulted again",
                           mmap_threshold, trim_threshold)
