"""mner_hf.training.thread_binding: `mner-hf train` on the CPU re-starts itself with its OpenMP
threads bound to cores, only where that cannot hurt, and says what it ran with."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from mner_hf.training.thread_binding import MARK, SWITCH, ThreadBinding, binding_decision, current_binding

CPU_RUN = dict(cpus=2, torch_threads=2, cuda=False, use_cpu=False, dataloader_workers=0, platform="linux")


def test_binds_a_single_cpu_training_process():
    decision = binding_decision({}, **CPU_RUN)
    assert decision == ThreadBinding(True, decision.reason) and "OMP_PROC_BIND=close" in decision.reason


@pytest.mark.parametrize(("environ", "changes", "why"), [
    ({SWITCH: "off"}, {}, SWITCH),
    ({}, {"platform": "darwin"}, "not on Linux"),
    ({}, {"cuda": True}, "CUDA"),
    ({"WORLD_SIZE": "2"}, {}, "WORLD_SIZE=2"),
    ({"LOCAL_WORLD_SIZE": "4"}, {}, "LOCAL_WORLD_SIZE=4"),
    ({}, {"dataloader_workers": 2}, "dataloader_num_workers=2"),
    ({}, {"cpus": 1}, "one CPU"),
    ({}, {"torch_threads": 1}, "1 torch threads on 2 CPUs"),
    ({"OMP_NUM_THREADS": "1"}, {}, "1 torch threads on 2 CPUs"),
])
def test_does_not_bind_where_it_could_hurt(environ, changes, why):
    decision = binding_decision(environ, **{**CPU_RUN, **changes})
    assert not decision.bound and why in decision.reason


def test_cuda_with_use_cpu_still_binds():
    assert binding_decision({}, **{**CPU_RUN, "cuda": True, "use_cpu": True}).bound


def test_the_users_own_binding_wins():
    decision = binding_decision({"OMP_PLACES": "threads"}, **CPU_RUN)
    assert decision.bound and "OMP_PLACES=threads" in decision.reason
    assert not binding_decision({"OMP_PROC_BIND": "false"}, **CPU_RUN).bound


def test_current_binding_reports_the_process():
    assert current_binding({}) == ThreadBinding(False, "OpenMP defaults")
    assert current_binding({MARK: "1", "OMP_PROC_BIND": "close"}).reason.startswith("mner-hf train re-started")


def _clean_env() -> dict[str, str]:
    """This environment without any thread settings, offline."""
    drop = ("OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY", "KMP_AFFINITY", "OMP_NUM_THREADS", MARK, SWITCH)
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "HF_HUB_OFFLINE": "1"}


def _tiny_run(tmp_path, extra_env: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    config = {
        "model": {"type": "bert-crf", "text_encoder": "tiny-random", "vision_encoder": None, "use_images": False},
        "data": {"dataset": "sample", "split_ratios": [0.5, 0.25, 0.25], "split_seed": 7},
        "training": {"output_dir": str(tmp_path / "run"), "num_train_epochs": 1, "per_device_train_batch_size": 4,
                     "use_cpu": True, "save_strategy": "no"},
        "output": {"write_plots": False},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**_clean_env(), **(extra_env or {})}
    # `python -m mner_hf.cli` is the console script's code path (argv from sys.argv)
    proc = subprocess.run([sys.executable, "-m", "mner_hf.cli", "train", "--config", str(path), "--no-test"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc, json.loads((tmp_path / "run" / "final" / "results.json").read_text())


@pytest.mark.skipif(not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
                    reason="binding needs Linux and at least 2 CPUs")
def test_mner_hf_train_restarts_bound_and_records_it(tmp_path):
    # what a fresh process has (this test process may have changed its own thread count)
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads(), torch.cuda.is_available())"],
                           capture_output=True, text=True, check=True, env=_clean_env())
    threads_default, cuda = probe.stdout.split()
    if cuda == "True" or int(threads_default) < len(os.sched_getaffinity(0)):
        pytest.skip("this machine's run would not bind (CUDA, or fewer torch threads than CPUs)")
    proc, results = _tiny_run(tmp_path)
    assert proc.stdout.count("cpu threads: re-starting with OMP_PROC_BIND=close OMP_PLACES=cores") == 1
    threads = results["cpu_threads"]
    assert threads["bound"] is True and threads["reason"].startswith("mner-hf train re-started")
    assert threads["torch_threads"] == int(threads_default)
    # the operating system's view: torch's OpenMP threads each pinned to one CPU
    cpus = threads["thread_cpus"]
    assert len(cpus) >= 2 and len({c for c in cpus if c.isdigit()}) >= 2, cpus
    assert "cpu threads: " in proc.stdout and "bound to cores" in proc.stdout


def test_mner_hf_train_switch_keeps_defaults(tmp_path):
    proc, results = _tiny_run(tmp_path, {SWITCH: "off"})
    assert "re-starting" not in proc.stdout
    assert results["cpu_threads"]["bound"] is False
    assert all(not c.isdigit() for c in results["cpu_threads"]["thread_cpus"])  # every thread may use every CPU
