"""mner_hf.cpu_allocator: glibc malloc kept from page-faulting every step's activations again."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import textwrap

import pytest

from mner_hf import cpu_allocator
from mner_hf.cpu_allocator import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, AllocatorTuning, tune_cpu_allocator


class FakeLibc:
    """Records mallopt calls; refuses mmap thresholds above ``max_mmap`` like glibc < 2.35."""

    def __init__(self, max_mmap: int = 2**40, trim_ok: bool = True):
        self.calls: list[tuple[int, int]] = []
        self.max_mmap, self.trim_ok = max_mmap, trim_ok

        def mallopt(param: int, value: int) -> int:
            self.calls.append((param, value))
            if param == M_MMAP_THRESHOLD:
                return int(value <= self.max_mmap)
            return int(self.trim_ok)

        self.mallopt = mallopt


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv(cpu_allocator.ENV_VARIABLE, raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)


def test_sets_both_thresholds():
    libc = FakeLibc()
    result = tune_cpu_allocator(libc=libc)
    assert libc.calls == [(M_MMAP_THRESHOLD, 2**30), (M_TRIM_THRESHOLD, 2**31 - 1)]
    assert result == AllocatorTuning(True, result.reason, 2**30, 2**31 - 1)
    assert "1024 MiB" in str(result) and result.to_dict()["applied"] is True


def test_old_glibc_falls_back_to_its_32_mib_limit():
    libc = FakeLibc(max_mmap=32 * 2**20)
    result = tune_cpu_allocator(libc=libc)
    assert libc.calls[:2] == [(M_MMAP_THRESHOLD, 2**30), (M_MMAP_THRESHOLD, 32 * 2**20)]
    assert result.applied and result.mmap_threshold == 32 * 2**20


def test_refusal_is_reported_not_raised():
    result = tune_cpu_allocator(libc=FakeLibc(trim_ok=False))
    assert not result.applied and "M_TRIM_THRESHOLD" in result.reason


@pytest.mark.parametrize("value", ["off", "0", "default"])
def test_environment_switch_keeps_defaults(monkeypatch, value):
    monkeypatch.setenv(cpu_allocator.ENV_VARIABLE, value)
    libc = FakeLibc()
    result = tune_cpu_allocator(libc=libc)
    assert libc.calls == [] and not result.applied and value in result.reason


def test_preloaded_allocator_is_left_alone(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    libc = FakeLibc()
    result = tune_cpu_allocator(libc=libc)
    assert libc.calls == [] and not result.applied and "jemalloc" in result.reason


def test_other_platforms_are_skipped(monkeypatch):
    monkeypatch.setattr(cpu_allocator.sys, "platform", "darwin")
    assert cpu_allocator._glibc() is None


PROBE = textwrap.dedent("""
    import ctypes, json, sys
    import torch
    from mner_hf.cpu_allocator import tune_cpu_allocator

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    tuned = tune_cpu_allocator() if sys.argv[1] == "tuned" else None
    before, arena_before = libc.mallinfo2().hblkhd, libc.mallinfo2().arena
    x = torch.empty(100 * 2**20, dtype=torch.uint8)  # 100 MiB: above glibc's default mmap threshold
    mmapped = libc.mallinfo2().hblkhd - before
    del x
    kept = libc.mallinfo2().arena - arena_before
    print(json.dumps({"mmapped": mmapped, "heap_kept_after_free": kept, "applied": tuned and tuned.applied}))
""")


@pytest.mark.skipif(not (sys.platform.startswith("linux") and cpu_allocator._glibc() is not None
                         and hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")), reason="needs glibc >= 2.33")
def test_real_glibc_keeps_large_tensors_in_the_heap():
    """glibc's own counters: by default a 100 MiB tensor is an mmap (returned on free); tuned, it
    comes from the heap, and the heap keeps it after the tensor is freed."""

    def probe(mode: str) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", cpu_allocator.ENV_VARIABLE)}
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    default, tuned = probe("default"), probe("tuned")
    assert default["mmapped"] >= 100 * 2**20
    assert tuned["applied"] is True
    assert tuned["mmapped"] == 0
    # the heap grew by the tensor (less any free space it already had) and kept it
    assert tuned["heap_kept_after_free"] >= 90 * 2**20
    assert default["heap_kept_after_free"] < 10 * 2**20
