"""OpenMP thread binding for CPU training started with the ``mner-hf train`` command.

torch's CPU kernels run on an OpenMP thread pool whose threads the kernel scheduler may move
between cores. Pinning one thread per core (``OMP_PROC_BIND=close OMP_PLACES=cores``) made the
TPM-MI fp32 train step at the paper's size 10 % faster (22.5 -> 20.3 s) and the 4-layer step
15 % faster (6.20 / 6.52 -> 5.36 / 5.37 s; bf16 -3 %) on 2 cores (``benchmarks/README.md``).

OpenMP reads these variables once, when torch loads it, so they cannot be applied inside a running
process: :func:`maybe_rebind` re-starts the ``mner-hf train`` process (``os.execve``, same
arguments) with them set. It does so only where binding cannot hurt, and otherwise says why not
(:func:`binding_decision`):

* Linux, more than one CPU in the process's affinity mask, training on the CPU (no CUDA device,
  or ``training.use_cpu``);
* one training process on the machine (no ``WORLD_SIZE`` / ``LOCAL_WORLD_SIZE`` above 1: several
  processes binding "close" would share the same cores);
* ``dataloader_num_workers`` 0 (the CPU default): worker processes would inherit the main thread's
  one-core affinity;
* torch uses every CPU (``OMP_NUM_THREADS`` / ``torch.get_num_threads()`` not below the CPU count:
  a lower count leaves cores to other work the binding would crowd);
* none of ``OMP_PROC_BIND``, ``OMP_PLACES``, ``GOMP_CPU_AFFINITY``, ``KMP_AFFINITY`` set (the
  user's own binding wins), and ``MNER_HF_BIND_THREADS`` is not ``off``.

Library use (``MNERTrainer`` in a notebook) is never re-started; :func:`current_binding` reports what
a process runs with (``results.json`` ``cpu_threads``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

BIND_VARIABLES = {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}
USER_VARIABLES = ("OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY", "KMP_AFFINITY")
SWITCH = "MNER_HF_BIND_THREADS"
#: set in the re-started process: the binding is ours
MARK = "MNER_HF_THREADS_BOUND"


@dataclass(frozen=True)
class ThreadBinding:
    """Whether the OpenMP threads are (to be) bound to cores, and why (one sentence)."""

    bound: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{'bound to cores' if self.bound else 'not bound'} ({self.reason})"


def _off(environ: Mapping[str, str]) -> bool:
    return environ.get(SWITCH, "").strip().lower() in ("off", "0", "false", "no")


def binding_decision(environ: Mapping[str, str], cpus: int, torch_threads: int, cuda: bool, use_cpu: bool,
                     dataloader_workers: int, platform: str = sys.platform) -> ThreadBinding:
    """Should a ``mner-hf train`` process with these facts re-start itself bound? (module docstring)"""
    if _off(environ):
        return ThreadBinding(False, f"{SWITCH}={environ[SWITCH]}")
    if any(environ.get(name) for name in USER_VARIABLES):
        return current_binding(environ)
    if not platform.startswith("linux"):
        return ThreadBinding(False, f"not on Linux ({platform})")
    if cuda and not use_cpu:
        return ThreadBinding(False, "training on CUDA")
    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        if int(environ.get(name, "1") or 1) > 1:
            return ThreadBinding(False, f"{name}={environ[name]}: several processes share the cores")
    if dataloader_workers > 0:
        return ThreadBinding(False, f"dataloader_num_workers={dataloader_workers} (workers would share one core)")
    if cpus < 2:
        return ThreadBinding(False, "one CPU")
    threads = int(environ.get("OMP_NUM_THREADS") or torch_threads)
    if threads < cpus:
        return ThreadBinding(False, f"{threads} torch threads on {cpus} CPUs leave cores to other work")
    return ThreadBinding(True, "OMP_PROC_BIND=close OMP_PLACES=cores: one torch thread per core")


def current_binding(environ: Mapping[str, str] | None = None) -> ThreadBinding:
    """What this process runs with: bound by :func:`maybe_rebind`, by the user's variables, or not."""
    environ = os.environ if environ is None else environ
    if environ.get(MARK):
        return ThreadBinding(True, "mner-hf train re-started itself with OMP_PROC_BIND=close OMP_PLACES=cores")
    user = [f"{name}={environ[name]}" for name in USER_VARIABLES if environ.get(name)]
    if user:
        bound = environ.get("OMP_PROC_BIND", "").strip().lower() != "false"
        return ThreadBinding(bound, "set by the environment: " + ", ".join(user))
    return ThreadBinding(False, "OpenMP defaults")


def thread_cpus() -> list[str]:
    """The CPUs each thread of this process may run on (``Cpus_allowed_list`` of every
    ``/proc/self/task/*/status``, e.g. ``["0", "1"]`` when bound, ``["0-1", "0-1", ...]`` when not);
    ``[]`` where /proc is absent. Evidence of the binding, for ``results.json``."""
    import glob

    cpus = []
    for status in sorted(glob.glob("/proc/self/task/*/status")):
        try:
            with open(status, encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("Cpus_allowed_list:"):
                        cpus.append(line.split(":", 1)[1].strip())
        except OSError:  # a thread that ended meanwhile
            continue
    return cpus


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def maybe_rebind(training_kwargs: Mapping[str, Any], argv: Sequence[str]) -> ThreadBinding:
    """Re-start this ``mner-hf train`` process with bound threads when :func:`binding_decision` says
    so (does not return then); else return the decision. ``argv``: the command's arguments."""
    import torch

    if any(os.environ.get(name) for name in USER_VARIABLES):  # bound already: by our re-start or the user
        return current_binding()
    decision = binding_decision(
        os.environ, _cpu_count(), torch.get_num_threads(), torch.cuda.is_available(),
        bool(training_kwargs.get("use_cpu")), int(training_kwargs.get("dataloader_num_workers") or 0),
    )
    if decision.bound:
        env = {**os.environ, **BIND_VARIABLES, MARK: "1"}
        print(f"cpu threads: re-starting with {' '.join(f'{k}={v}' for k, v in BIND_VARIABLES.items())}", flush=True)
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, "-m", "mner_hf.cli", *argv], env)
    return decision
