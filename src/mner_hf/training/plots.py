"""Training plots saved next to the weights (matplotlib, Agg backend; no display needed).

* ``loss_curve.png``: training loss (and every logged loss component) per step, dev loss per epoch
* ``dev_f1.png``: dev F1 per epoch
* ``per_type_f1.png``: F1 per entity type
* ``confusion_matrix.png``: entity-type confusion matrix (gold span type x predicted span type)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from seqeval.metrics.sequence_labeling import get_entities

NONE = "none"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def entity_confusion(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], types: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Entity-type confusion matrix over spans.

    A gold span matched by a predicted span with the same boundaries counts at
    (gold type, predicted type); an unmatched gold span counts at (gold type, ``none``) and an
    unmatched predicted span at (``none``, predicted type). Returns (labels, counts) with
    ``counts`` of shape (T + 1, T + 1), rows gold, columns predicted, the last index ``none``.
    """
    pairs: list[tuple[str, str]] = []
    found: set[str] = set()
    for g_tags, p_tags in zip(gold, pred):
        g = {(s, e): t for t, s, e in get_entities(list(g_tags))}
        p = {(s, e): t for t, s, e in get_entities(list(p_tags))}
        for span, t in g.items():
            pairs.append((t, p.get(span, NONE)))
        for span, t in p.items():
            if span not in g:
                pairs.append((NONE, t))
        found.update(g.values())
        found.update(p.values())
    labels = sorted(set(types) if types is not None else found) + [NONE]
    index = {t: i for i, t in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for g_t, p_t in pairs:
        counts[index[g_t], index[p_t]] += 1
    return labels, counts


def plot_loss_curve(log_history: list[dict[str, Any]], path: str | Path) -> Path:
    """Training loss (and ``loss_*`` components) against step, eval loss at eval steps."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    if train:
        ax.plot(*zip(*train), label="train loss", marker=".")
    comp_keys = sorted({k for h in log_history for k in h if k.startswith("loss_") and not k.startswith("eval")})
    for key in comp_keys:
        pts = [(h["step"], h[key]) for h in log_history if key in h]
        ax.plot(*zip(*pts), label=key, linestyle="--")
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h and "step" in h]
    if evals:
        ax.plot(*zip(*evals), label="dev loss", marker="o")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Loss")
    ax.legend()
    return _save(fig, path)


def plot_dev_f1(log_history: list[dict[str, Any]], path: str | Path, key: str = "eval_f1") -> Path:
    """Dev F1 (percent) against epoch."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    pts = [(h.get("epoch", i), 100 * h[key]) for i, h in enumerate(log_history) if key in h]
    if pts:
        ax.plot(*zip(*pts), marker="o")
        for x, y in pts:
            ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center")
        ax.set_ylim(0, min(100, max(y for _, y in pts) + 10))  # from 0: the size of the gain is visible
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev F1 (%)")
    ax.set_title("Dev F1 per epoch")
    return _save(fig, path)


def plot_per_type_f1(per_type: dict[str, dict[str, float]], path: str | Path) -> Path:
    """Bar chart of F1 (percent) per entity type."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    names = sorted(per_type)
    ax.bar(names, [100 * per_type[n].get("f1", 0.0) for n in names])
    ax.set_ylim(0, 100)
    ax.set_ylabel("F1 (%)")
    ax.set_title("F1 per entity type")
    return _save(fig, path)


def plot_confusion(labels: list[str], counts: np.ndarray, path: str | Path) -> Path:
    """Heat map of :func:`entity_confusion` counts."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=8)
    ax.set_title("Entity-type confusion")
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def write_all_plots(
    folder: str | Path,
    log_history: list[dict[str, Any]],
    per_type: dict[str, dict[str, float]],
    gold: Sequence[Sequence[str]],
    pred: Sequence[Sequence[str]],
    types: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write the four plots into ``folder``; returns ``{title: path}``."""
    folder = Path(folder)
    labels, counts = entity_confusion(gold, pred, types)
    return {
        "Loss curve": plot_loss_curve(log_history, folder / "loss_curve.png"),
        "Dev F1 per epoch": plot_dev_f1(log_history, folder / "dev_f1.png"),
        "F1 per entity type": plot_per_type_f1(per_type, folder / "per_type_f1.png"),
        "Entity-type confusion matrix": plot_confusion(labels, counts, folder / "confusion_matrix.png"),
    }
