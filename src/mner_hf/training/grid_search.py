"""Small hyper-parameter grid search that selects on the DEV split.

TPM-MI's paper tunes the learning rate over 1e-5..7e-5 and the batch size over 8..32;
:func:`grid_search` runs every combination of a grid of dotted config keys, ranks the runs by
dev F1 only, and returns the test metrics of the selected run (test never influences the choice).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .run_config import RunConfig

PAPER_TPM_MI_GRID: dict[str, list[Any]] = {
    "training.learning_rate": [1e-5, 2e-5, 3e-5, 4e-5, 5e-5, 6e-5, 7e-5],
    "training.per_device_train_batch_size": [8, 16, 32],
}


@dataclass
class GridRun:
    """One point of the grid: its overrides, its dev F1 and everything the run returned."""

    overrides: dict[str, Any]
    dev_f1: float
    results: dict[str, Any]


@dataclass
class GridResult:
    """All runs (in grid order) and the index of the one with the best dev F1."""

    runs: list[GridRun] = field(default_factory=list)
    best_index: int = -1

    @property
    def best(self) -> GridRun:
        return self.runs[self.best_index]

    def table(self) -> str:
        """Readable table: one row per run, dev F1, the selected run marked with ``*``."""
        keys = list(self.runs[0].overrides) if self.runs else []
        lines = ["  ".join([" "] + [f"{k:>32}" for k in keys] + [f"{'dev F1':>7}"])]
        for i, run in enumerate(self.runs):
            mark = "*" if i == self.best_index else " "
            vals = [f"{run.overrides[k]!s:>32}" for k in keys]
            lines.append("  ".join([mark] + vals + [f"{100 * run.dev_f1:7.2f}"]))
        return "\n".join(lines)


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of the grid, in the order of the keys (last key varies fastest)."""
    if not grid:
        return [{}]
    keys = list(grid)
    for k in keys:
        if not isinstance(grid[k], (list, tuple)) or not grid[k]:
            raise ValueError(f"grid key {k!r} needs a non-empty list of values, got {grid[k]!r}")
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def grid_search(
    base: RunConfig,
    grid: dict[str, list[Any]],
    run_fn: Callable[[RunConfig], dict[str, Any]],
    dev_key: str = "validation",
) -> GridResult:
    """Run ``run_fn`` on every grid point; select the highest ``results[dev_key]["overall"]["f1"]``.

    Ties keep the first run in grid order (deterministic). ``run_fn`` returns the run's results
    (``{"validation": {"overall": {...}}, "test": {...}}``); a run without dev F1 is an error.
    """
    result = GridResult()
    for overrides in expand_grid(grid):
        config = base.replace([f"{k}={v}" for k, v in overrides.items()])
        results = run_fn(config)
        try:
            dev_f1 = float(results[dev_key]["overall"]["f1"])
        except (KeyError, TypeError) as err:
            raise ValueError(f"grid point {overrides}: run returned no {dev_key} overall f1") from err
        result.runs.append(GridRun(overrides=overrides, dev_f1=dev_f1, results=results))
        if result.best_index < 0 or dev_f1 > result.runs[result.best_index].dev_f1:
            result.best_index = len(result.runs) - 1
    return result
