"""Shared code of the model benchmarks: counted FLOPs, measured matmul peak, MFU, machine facts.

* :func:`count_flops` runs a step under ``torch.utils.flop_counter.FlopCounterMode`` (matmuls,
  convolutions and attention, forward and backward, counted from the real shapes; elementwise ops
  and the optimizer are not model FLOPs). CPU flash attention (which the counter does not know in
  torch 2.x) is registered as model FLOPs: forward QK^T + PV, backward twice that (what the math
  kernel does; the flash kernel's recomputation of QK^T is not counted), so the count does not depend
  on which attention kernel runs on CPU.
* :func:`matmul_peak` measures the machine's own matmul rate for a dtype: the best FLOP/s over
  square matmuls of a few sizes (best of several repeats). MFU = achieved model FLOP/s / that peak.
* :func:`time_step` times a callable (CUDA-synchronised), :func:`machine_facts` says what ran.
* :func:`finish` re-measures the peak after the steps and reports MFU against the higher peak.
* ``--malloc tuned`` (default) applies :func:`mner_hf.cpu_allocator.tune_cpu_allocator` on CPU, as
  ``MNERTrainer`` does; ``--malloc default`` measures the C library's defaults.

Used by ``bench_tpm_mi.py``, ``bench_mgips_cl.py`` and ``bench_pipeline.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_flop_count

aten = torch.ops.aten
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _register_cpu_attention_flops() -> None:
    """Count CPU flash attention like the CUDA sdpa kernels (torch's counter skips it)."""
    from torch.utils.flop_counter import flop_registry

    fwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if fwd is not None and fwd.default not in flop_registry and fwd not in flop_registry:

        @register_flop_formula(fwd)
        def _cpu_flash_fwd(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return sdpa_flop_count(query_shape, key_shape, value_shape)

    if bwd is not None and bwd.default not in flop_registry and bwd not in flop_registry:

        @register_flop_formula(bwd)
        def _cpu_flash_bwd(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            # model FLOPs (as the math kernel: 4 matmuls, 2x the forward), not the kernel's recompute
            return 2 * sdpa_flop_count(query_shape, key_shape, value_shape)


_register_cpu_attention_flops()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def count_flops(fn: Callable[[], object]) -> int:
    """Model FLOPs of one call of ``fn`` (runs it once)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def time_step(fn: Callable[[], object], steps: int, device: str) -> float:
    """Median seconds per call over ``steps`` calls (warm-up is the caller's business)."""
    times = []
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(dtype: torch.dtype, device: str, sizes: tuple[int, ...] = (1024, 2048, 4096), repeats: int = 3,
                min_seconds: float = 1.0) -> float:
    """Best measured FLOP/s of ``a @ b`` (square, ``dtype``) over ``sizes``; each size is repeated at
    least ``repeats`` times and for at least ``min_seconds`` (AMX bf16 rates vary a lot from call to
    call on a shared VM: the best of many calls is the machine's ceiling)."""
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        a @ b  # warm-up (oneDNN / cuBLAS kernel selection)
        spent, count = 0.0, 0
        while count < repeats or spent < min_seconds:
            sync(device)
            start = time.perf_counter()
            a @ b
            sync(device)
            elapsed = time.perf_counter() - start
            spent, count = spent + elapsed, count + 1
            best = max(best, 2 * n**3 / elapsed)
    return best


def linear_rate(dtype: torch.dtype, device: str, m: int, k: int, n: int, repeats: int = 3) -> float:
    """Best measured FLOP/s of ``F.linear(x (m, k), w (n, k))`` forward: the rate the model's own
    GEMM shapes reach (oneDNN / cuBLAS are less efficient on them than on large squares)."""
    x = torch.randn(m, k, device=device).to(dtype)
    w = torch.randn(n, k, device=device).to(dtype)
    torch.nn.functional.linear(x, w)
    best = 0.0
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        torch.nn.functional.linear(x, w)
        sync(device)
        best = max(best, 2 * m * k * n / (time.perf_counter() - start))
    return best


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_facts(device: str) -> dict[str, object]:
    """What ran: CPU model, the bf16-relevant ISA flags, threads, torch version, GPU name, load."""
    from mner_hf.models.precision import cpu_bf16_capabilities

    facts: dict[str, object] = {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        **{f"torch_reports_{k}": v for k, v in cpu_bf16_capabilities().items()},
    }
    try:
        flags = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")
        line = next((ln for ln in flags.splitlines() if ln.startswith("Flags:")), "")
        facts["lscpu_flags"] = " ".join(f for f in wanted if f in line.split())
    except OSError:
        pass
    if device.startswith("cuda"):
        facts["gpu"] = torch.cuda.get_device_name(device)
    if hasattr(os, "getloadavg"):
        facts["load_average_1m"] = round(os.getloadavg()[0], 2)
    return facts


@dataclass
class StepResult:
    """One timed configuration: FLOPs per step, seconds per step, examples per step, peak."""

    name: str
    precision: str
    flops: int
    seconds: float
    examples: int
    peak: float

    @property
    def achieved(self) -> float:
        return self.flops / self.seconds

    @property
    def mfu(self) -> float:
        return self.achieved / self.peak if self.peak else float("nan")

    def row(self) -> str:
        return (
            f"{self.name:<22} {self.precision:<5} {self.flops / 1e9:>10.1f} {self.seconds:>9.3f} "
            f"{self.examples / self.seconds:>9.2f} {self.achieved / 1e9:>9.1f} {self.peak / 1e9:>9.1f} {100 * self.mfu:>6.1f}%"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name, "precision": self.precision, "gflop_per_step": round(self.flops / 1e9, 3),
            "s_per_step": round(self.seconds, 4), "examples_per_s": round(self.examples / self.seconds, 3),
            "achieved_gflops": round(self.achieved / 1e9, 2), "peak_gflops": round(self.peak / 1e9, 2),
            "mfu": round(self.mfu, 4),
        }


HEADER = (
    f"{'step':<22} {'dtype':<5} {'GFLOP/step':>10} {'s/step':>9} {'ex/s':>9} {'GFLOP/s':>9} {'peak':>9} {'MFU':>7}"
)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device --steps --precisions --threads --tiny --json`` shared by the model benchmarks."""
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 (default cpu)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per configuration (after 1 counted warm-up)")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma list of fp32, bf16, fp16")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes: checks that everything runs (CI), seconds")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    add_malloc_argument(parser)


def add_malloc_argument(parser: argparse.ArgumentParser) -> None:
    """``--malloc tuned|default`` (all benchmarks; applied by :func:`apply_malloc`)."""
    parser.add_argument("--malloc", default="tuned", choices=("tuned", "default"),
                        help="CPU: glibc malloc as MNERTrainer / mner-hf predict set it (mner_hf.cpu_allocator, "
                             "the default) or the C library's defaults")


def apply_malloc(args: argparse.Namespace) -> None:
    """Tune the CPU allocator unless ``--malloc default`` or CUDA; ``args.allocator`` says what ran
    (None when untouched), and :func:`print_header` / :func:`report_allocator` print it."""
    args.allocator = None
    if not args.device.startswith("cuda") and args.malloc == "tuned":
        from mner_hf.cpu_allocator import tune_cpu_allocator

        args.allocator = tune_cpu_allocator()


def report_allocator(args: argparse.Namespace, facts: dict[str, object]) -> None:
    """Print ``args.allocator`` and record it in ``facts`` (nothing when untouched)."""
    allocator = getattr(args, "allocator", None)
    if allocator is not None:
        print(f"cpu allocator: {allocator}")
        facts["cpu_allocator"] = allocator.to_dict()


def setup(args: argparse.Namespace) -> tuple[list[str], dict[str, float]]:
    """Apply ``--threads``; return the precisions and the measured matmul peak of each."""
    if args.threads:
        torch.set_num_threads(args.threads)
    apply_malloc(args)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    bad = [p for p in precisions if p not in DTYPES]
    if bad:
        raise SystemExit(f"unknown precision(s) {bad}; choose from {sorted(DTYPES)}")
    return precisions, measure_peaks(precisions, args)


def measure_peaks(precisions: list[str], args: argparse.Namespace) -> dict[str, float]:
    """The matmul peak of each precision (:func:`matmul_peak` at the benchmark's sizes)."""
    sizes = (128, 256) if args.tiny else ((4096, 8192) if args.device.startswith("cuda") else (1024, 2048, 4096))
    return {p: matmul_peak(DTYPES[p], args.device, sizes, repeats=1 if args.tiny else 3,
                           min_seconds=0.0 if args.tiny else 1.0) for p in precisions}


def finish(results: list[StepResult], peaks: dict[str, float], args: argparse.Namespace) -> list[StepResult]:
    """Measure the matmul peaks again after the steps and, where the machine reached a higher peak
    now (shared VMs drift by 10-20 % within minutes), reprint every row against the higher one:
    MFU is then never flattered by a slow first peak measurement."""
    again = measure_peaks(sorted(peaks), args)
    print("matmul peak re-measured after the steps: " + ", ".join(
        f"{p} {v / 1e9:.1f} GFLOP/s" for p, v in again.items()), flush=True)
    best = {p: max(peaks[p], again[p]) for p in peaks}
    final = [StepResult(r.name, r.precision, r.flops, r.seconds, r.examples, best[r.precision]) for r in results]
    if any(again[p] > peaks[p] for p in peaks):
        print("against the higher of the two peaks:")
        print(HEADER)
        for r in final:
            print(r.row(), flush=True)
    return final


def autocast(precision: str, device: str):
    """``torch.autocast`` for bf16 / fp16, disabled for fp32."""
    dtype = DTYPES[precision]
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32)


def model_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs: dict, precision: str,
                device: str, infer: bool = True) -> list[tuple[str, Callable[[], None]]]:
    """``[("train", step), ("infer", step)]`` for one input batch: a training step is forward +
    backward + optimizer step under ``autocast(precision)``; inference drops ``labels``."""

    def train_step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast(precision, device):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()

    def infer_step() -> None:
        model.eval()
        with torch.inference_mode(), autocast(precision, device):
            model(**{k: v for k, v in inputs.items() if k != "labels"})

    return [("train", train_step)] + ([("infer", infer_step)] if infer else [])


def measure(name: str, precision: str, fn: Callable[[], object], examples: int, args: argparse.Namespace,
            peak: float) -> StepResult:
    """One configuration: the counted warm-up call, then ``args.steps`` timed calls."""
    flops = count_flops(fn)
    seconds = time_step(fn, args.steps, args.device)
    return StepResult(name, precision, flops, seconds, examples, peak)


def print_header(title: str, args: argparse.Namespace, peaks: dict[str, float], extra: tuple[str, ...] = ()
                 ) -> dict[str, object]:
    facts = machine_facts(args.device)
    print(title)
    print("machine: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
    print("matmul peak (measured): " + ", ".join(f"{p} {v / 1e9:.1f} GFLOP/s" for p, v in peaks.items()), flush=True)
    report_allocator(args, facts)
    for line in extra:
        print(line)
    print(HEADER, flush=True)
    return facts
