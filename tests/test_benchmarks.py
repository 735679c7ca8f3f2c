"""The benchmarks under benchmarks/ run in their tiny mode (shapes only) so they cannot rot, and their
FLOP counting / MFU arithmetic is checked against hand-computed values."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
mfu = importlib.import_module("mfu")


def test_count_flops_matches_hand_count() -> None:
    x, w = torch.randn(16, 32, requires_grad=True), torch.randn(24, 32, requires_grad=True)

    def step() -> None:
        torch.nn.functional.linear(x, w).sum().backward()

    # forward 2*M*N*K, backward: grad_x and grad_w, another 2*M*N*K each
    assert mfu.count_flops(step) == 3 * 2 * 16 * 24 * 32


def test_attention_flops_do_not_depend_on_the_kernel() -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = (torch.randn(2, 4, 24, 16, requires_grad=True) for _ in range(3))

    def step() -> None:
        torch.nn.functional.scaled_dot_product_attention(q, k, v).sum().backward()

    counts = {}
    for backend in (SDPBackend.MATH, SDPBackend.FLASH_ATTENTION):
        with sdpa_kernel(backend):
            counts[backend] = mfu.count_flops(step)
    fwd = 2 * (2 * 2 * 4 * 24 * 24 * 16)  # QK^T and PV
    assert counts[SDPBackend.MATH] == counts[SDPBackend.FLASH_ATTENTION] == fwd + 2 * fwd


def test_step_result_arithmetic() -> None:
    r = mfu.StepResult("train", "bf16", flops=int(3e12), seconds=2.0, examples=8, peak=3e12)
    assert r.achieved == 1.5e12 and r.mfu == 0.5
    d = r.to_dict()
    assert d["examples_per_s"] == 4.0 and d["mfu"] == 0.5 and d["gflop_per_step"] == 3000.0
    assert "50.0%" in r.row()
    assert mfu.matmul_peak(torch.float32, "cpu", sizes=(64,), repeats=1) > 0


@pytest.mark.parametrize("name", ["bench_tpm_mi", "bench_mgips_cl"])
def test_model_benchmarks_tiny(name, tmp_path, capsys) -> None:
    bench = importlib.import_module(name)
    out = tmp_path / "r.json"
    extra = ["--one-way"] if name == "bench_mgips_cl" else []  # MGIPS-CL caches only the one-way encoder
    results = bench.main(["--tiny", "--steps", "1", "--threads", "1", "--json", str(out), *extra])
    names = [(r.name, r.precision) for r in results]
    assert names == [(f"{k} {p}", prec) for prec in ("fp32", "bf16") for p in ("images", "cached")
                     for k in ("train", "infer")]
    by = {(r.name, r.precision): r for r in results}
    for r in results:
        assert r.flops > 0 and r.seconds > 0 and math.isfinite(r.mfu) and r.peak > 0
    # model FLOPs do not depend on the precision; the cache removes the vision tower's FLOPs;
    # a training step is forward + backward (about 3x the forward; the frozen-free model trains all)
    for kind in ("train", "infer"):
        for path in ("images", "cached"):
            assert by[(f"{kind} {path}", "fp32")].flops == by[(f"{kind} {path}", "bf16")].flops
        assert by[(f"{kind} cached", "fp32")].flops < by[(f"{kind} images", "fp32")].flops
    ratio = by[("train images", "fp32")].flops / by[("infer images", "fp32")].flops
    assert 2.0 <= ratio <= 3.2
    text = capsys.readouterr().out
    assert "matmul peak (measured)" in text and "MFU" in text and "torch_threads=1" in text
    assert "matmul peak re-measured after the steps" in text
    assert "cpu allocator: " in text  # what malloc ran (mner_hf.cpu_allocator) is part of the record
    assert '"mfu"' in out.read_text()


def test_finish_reports_mfu_against_the_higher_peak(monkeypatch, capsys) -> None:
    rows = [mfu.StepResult("train images", "fp32", flops=int(4e11), seconds=2.0, examples=8, peak=4e11),
            mfu.StepResult("train images", "bf16", flops=int(4e11), seconds=1.0, examples=8, peak=8e11)]
    # the machine reached a higher fp32 peak after the steps, a lower bf16 one
    monkeypatch.setattr(mfu, "measure_peaks", lambda precisions, args: {"fp32": 5e11, "bf16": 6e11})
    final = mfu.finish(rows, {"fp32": 4e11, "bf16": 8e11}, None)
    assert [r.peak for r in final] == [5e11, 8e11]
    assert final[0].mfu == pytest.approx(0.4) and final[1].mfu == pytest.approx(0.5)
    text = capsys.readouterr().out
    assert "against the higher of the two peaks" in text and "40.0%" in text


def test_pipeline_benchmark_tiny() -> None:
    bench = importlib.import_module("bench_pipeline")
    res = bench.main(["--tiny", "--repeats", "1"])
    assert res["text_only_posts_per_s"] > 0
    assert res["sample_model_forward_posts_per_s"] > 0 and res["sample_pipeline_posts_per_s"] > 0
    assert res["sample_ratio"] == pytest.approx(
        res["sample_pipeline_posts_per_s"] / res["sample_model_forward_posts_per_s"])


def test_training_input_benchmark_tiny() -> None:
    bench = importlib.import_module("bench_training_input")
    res = bench.main(["--tiny", "--workers", "0"])
    assert res["decode_workers_0_channels_last"] > 0 and res["decode_workers_0_contiguous"] > 0
    assert res["feature_cache"] > 0 and res["feature_cache_build_s"] > 0
