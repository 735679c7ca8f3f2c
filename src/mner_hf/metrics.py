"""Entity-level NER metrics through seqeval: micro P/R/F1, per type, per number of images.

Two seqeval modes, always stated in the result under ``"mode"``:

* ``"default"``: seqeval's default (conlleval-compatible) chunking, used by the published
  Twitter-2015/2017 and MNER-MI numbers: an orphan ``I-X`` starts an entity.
* ``"strict"``: seqeval strict mode with the IOB2 (or IOBES) scheme: only well-formed chunks
  count, so an orphan ``I-X`` is no entity at all.

Tag types are normalised with :func:`mner_hf.models.labels.normalize_tag` (``OTHER``/``MIS`` ->
``MISC``) so gold files with either spelling score the same.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2, IOBES

from .models.labels import normalize_tag

__all__ = ["IMAGE_BUCKETS", "compute_metrics", "flatten_metrics", "image_bucket", "make_compute_metrics",
           "word_level_tags"]

MetricMode = Literal["default", "strict"]
#: Buckets of the per-number-of-images breakdown (paper's single- vs multi-image scenarios).
IMAGE_BUCKETS: tuple[str, ...] = ("0", "1", "2", "3", "4+")


def image_bucket(num_images: int) -> str:
    """``0 -> "0"``, ``1 -> "1"``, ``2 -> "2"``, ``3 -> "3"``, ``>= 4 -> "4+"``."""
    if num_images < 0:
        raise ValueError(f"number of images must be >= 0, got {num_images}")
    return str(num_images) if num_images < 4 else "4+"


def _normalise(tags: Sequence[Sequence[str]], name: str) -> list[list[str]]:
    out = []
    for i, seq in enumerate(tags):
        if isinstance(seq, str):
            raise TypeError(f"{name}[{i}] must be a sequence of tags, not a string")
        row = []
        for j, tag in enumerate(seq):
            try:
                row.append(normalize_tag(tag))
            except ValueError as exc:
                raise ValueError(f"{name}[{i}][{j}]: {exc}") from exc
        out.append(row)
    return out


def _score(true: list[list[str]], pred: list[list[str]], mode: MetricMode, scheme: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"output_dict": True, "zero_division": 0}
    if mode == "strict":
        kwargs.update(mode="strict", scheme=IOBES if scheme == "BIOES" else IOB2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nan macro averages of an entity-free set
        report = classification_report(true, pred, **kwargs)
    micro = report["micro avg"]
    per_type = {
        t: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
            "support": int(v["support"])}
        for t, v in report.items()
        if t not in ("micro avg", "macro avg", "weighted avg")
    }
    return {
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "f1": float(micro["f1-score"]),
        "num_gold_entities": int(micro["support"]),
        "per_type": dict(sorted(per_type.items())),
    }


def compute_metrics(
    true_tags: Sequence[Sequence[str]],
    pred_tags: Sequence[Sequence[str]],
    num_images: Sequence[int] | None = None,
    mode: MetricMode = "default",
    scheme: Literal["BIO", "BIOES"] = "BIO",
) -> dict[str, Any]:
    """Entity-level micro precision / recall / F1, per type and per number of images.

    Args:
        true_tags: gold tag strings, one list per post.
        pred_tags: predicted tag strings, same lengths as ``true_tags``.
        num_images: number of images of each post (for the breakdown); ``None`` skips it.
        mode: ``"default"`` (conlleval-compatible) or ``"strict"`` (IOB2 / IOBES strict).
        scheme: ``"BIO"`` or ``"BIOES"`` (the scheme used by strict mode).

    Returns:
        ``{"mode", "scheme", "num_posts", "precision", "recall", "f1", "num_gold_entities",
        "per_type": {TYPE: {"precision", "recall", "f1", "support"}},
        "by_num_images": {bucket: {... same micro keys ..., "num_posts"}}}`` (the last only with
        ``num_images``; buckets without posts are left out).
    """
    if mode not in ("default", "strict"):
        raise ValueError(f"mode must be 'default' or 'strict', got {mode!r}")
    if scheme not in ("BIO", "BIOES"):
        raise ValueError(f"scheme must be 'BIO' or 'BIOES', got {scheme!r}")
    true = _normalise(true_tags, "true_tags")
    pred = _normalise(pred_tags, "pred_tags")
    if len(true) != len(pred):
        raise ValueError(f"{len(true)} gold posts but {len(pred)} predicted posts")
    for i, (t, p) in enumerate(zip(true, pred)):
        if len(t) != len(p):
            raise ValueError(f"post {i}: {len(t)} gold tags but {len(p)} predicted tags")
    result: dict[str, Any] = {"mode": mode, "scheme": scheme, "num_posts": len(true)}
    result.update(_score(true, pred, mode, scheme))
    if num_images is not None:
        counts = [int(n) for n in num_images]
        if len(counts) != len(true):
            raise ValueError(f"num_images has {len(counts)} entries for {len(true)} posts")
        buckets = [image_bucket(n) for n in counts]
        by: dict[str, Any] = {}
        for bucket in IMAGE_BUCKETS:
            idx = [i for i, b in enumerate(buckets) if b == bucket]
            if idx:
                scores = _score([true[i] for i in idx], [pred[i] for i in idx], mode, scheme)
                scores.pop("per_type")
                by[bucket] = {**scores, "num_posts": len(idx)}
        result["by_num_images"] = by
    return result


def flatten_metrics(result: Mapping[str, Any]) -> dict[str, float | str]:
    """Flat dict for ``Trainer`` logs: ``f1``, ``PER_f1``, ``images_4+_f1``, ``mode``, ..."""
    flat: dict[str, float | str] = {"mode": result["mode"]}
    for key in ("precision", "recall", "f1"):
        flat[key] = result[key]
    for type_, scores in result.get("per_type", {}).items():
        for key in ("precision", "recall", "f1"):
            flat[f"{type_}_{key}"] = scores[key]
    for bucket, scores in result.get("by_num_images", {}).items():
        for key in ("precision", "recall", "f1"):
            flat[f"images_{bucket}_{key}"] = scores[key]
        flat[f"images_{bucket}_posts"] = float(scores["num_posts"])
    return flat


def _pick_predictions(predictions: Any) -> np.ndarray:
    """The (N, W) integer tag array among a model's outputs (or argmax of (N, W, C) logits)."""
    if isinstance(predictions, (tuple, list)):
        ints = [np.asarray(p) for p in predictions if isinstance(p, (np.ndarray, np.generic)) or hasattr(p, "shape")]
        ints = [p for p in ints if p.ndim == 2 and np.issubdtype(p.dtype, np.integer)]
        if len(ints) == 1:
            return ints[0]
        floats = [np.asarray(p) for p in predictions if hasattr(p, "shape") and np.asarray(p).ndim == 3]
        if len(ints) == 0 and len(floats) == 1:
            return floats[0].argmax(-1)
        raise ValueError(
            f"cannot tell which model output holds the word predictions: {len(ints)} integer (N, W) arrays "
            "found; return `predictions` (B, W) long with -100 at invalid words as the model contract says"
        )
    arr = np.asarray(predictions)
    if arr.ndim == 3:
        return arr.argmax(-1)
    if arr.ndim != 2:
        raise ValueError(f"predictions must be (N, W) tag ids or (N, W, C) logits, got shape {arr.shape}")
    return arr


def word_level_tags(
    predictions: Any, label_ids: np.ndarray, id2label: Mapping[int, str]
) -> tuple[list[list[str]], list[list[str]]]:
    """Turn Trainer outputs into word-level gold and predicted tag strings.

    Args:
        predictions: the model's ``predictions`` (N, W) with -100 at invalid words (or a tuple of
            model outputs holding exactly one integer (N, W) array, or (N, W, C) logits whose
            first ``n_words`` positions are taken).
        label_ids: the batch ``labels`` (N, L): tag id on each word's first sub-word, -100 elsewhere
            (padding from Trainer's cross-batch concatenation is -100 as well).
        id2label: id -> tag string.

    Returns:
        ``(true_tags, pred_tags)``, one list per post, equal lengths per post.
    """
    preds = _pick_predictions(predictions)
    labels = np.asarray(label_ids)
    if preds.shape[0] != labels.shape[0]:
        raise ValueError(f"{preds.shape[0]} predicted posts but {labels.shape[0]} label rows")
    id2label = {int(k): v for k, v in id2label.items()}
    true_tags, pred_tags = [], []
    for i, (p_row, l_row) in enumerate(zip(preds, labels)):
        gold = [id2label[int(x)] for x in l_row if x != -100]
        pred_ids = [int(x) for x in p_row if x != -100][: len(gold)]
        if len(pred_ids) != len(gold):
            raise ValueError(f"post {i}: {len(gold)} labelled words but {len(pred_ids)} predicted words")
        unknown = [x for x in pred_ids if x not in id2label]
        if unknown:
            raise ValueError(f"post {i}: predicted tag ids {unknown} are not in id2label")
        true_tags.append(gold)
        pred_tags.append([id2label[x] for x in pred_ids])
    return true_tags, pred_tags


def make_compute_metrics(
    id2label: Mapping[int, str],
    *,
    mode: MetricMode = "default",
    scheme: Literal["BIO", "BIOES"] | None = None,
    num_images: Sequence[int] | None = None,
) -> Callable[[Any], dict[str, float | str]]:
    """Build the ``compute_metrics`` callable that ``transformers.Trainer`` expects.

    The Trainer passes an ``EvalPrediction`` whose ``predictions`` are the model outputs other
    than the loss (see :func:`word_level_tags` for what is accepted) and whose ``label_ids`` are the
    sub-word ``labels`` (N, L). ``num_images`` (one count per evaluation post, in dataset order:
    the evaluation loader does not shuffle) enables the per-number-of-images breakdown.
    The result is :func:`flatten_metrics` of :func:`compute_metrics`.
    """
    if scheme is None:
        scheme = "BIOES" if any(str(t)[:2] in ("E-", "S-") for t in id2label.values()) else "BIO"

    def _compute(eval_pred: Any) -> dict[str, float | str]:
        true_tags, pred_tags = word_level_tags(eval_pred.predictions, eval_pred.label_ids, id2label)
        counts = None
        if num_images is not None:
            if len(num_images) != len(true_tags):
                raise ValueError(f"num_images has {len(num_images)} entries for {len(true_tags)} evaluated posts")
            counts = num_images
        return flatten_metrics(compute_metrics(true_tags, pred_tags, counts, mode=mode, scheme=scheme))

    return _compute
