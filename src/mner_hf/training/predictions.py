"""Predictions as JSON lines and the end-of-run summary table."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from seqeval.metrics.sequence_labeling import get_entities


def tag_spans(tags: Sequence[str]) -> list[dict[str, Any]]:
    """BIO tags -> spans ``{"type", "start", "end"}`` (word indices, ``end`` exclusive).

    Uses seqeval's chunker (the one that scores the run), so written spans and metrics agree.
    """
    return [{"type": t, "start": s, "end": e + 1} for t, s, e in get_entities(list(tags))]


def prediction_records(
    ids: Sequence[str],
    words: Sequence[Sequence[str]],
    gold_tags: Sequence[Sequence[str]],
    pred_tags: Sequence[Sequence[str]],
    num_images: Sequence[int],
) -> list[dict[str, Any]]:
    """One dict per post: ``id``, ``words``, ``num_images``, ``gold``/``pred`` tags and spans.

    Each span carries its ``text`` (words joined by a space). Raises ``ValueError`` naming the
    post when the lengths of words, gold and predicted tags differ (nothing is truncated).
    """
    if not (len(ids) == len(words) == len(gold_tags) == len(pred_tags) == len(num_images)):
        raise ValueError(
            f"prediction_records: {len(ids)} ids, {len(words)} word lists, {len(gold_tags)} gold, "
            f"{len(pred_tags)} predicted, {len(num_images)} image counts"
        )
    out = []
    for pid, w, g, p, m in zip(ids, words, gold_tags, pred_tags, num_images):
        if not (len(w) == len(g) == len(p)):
            raise ValueError(f"post {pid}: {len(w)} words, {len(g)} gold tags, {len(p)} predicted tags")
        rec: dict[str, Any] = {"id": str(pid), "words": list(w), "num_images": int(m)}
        for key, tags in (("gold", g), ("pred", p)):
            spans = tag_spans(tags)
            for span in spans:
                span["text"] = " ".join(w[span["start"] : span["end"]])
            rec[f"{key}_tags"] = list(tags)
            rec[f"{key}_spans"] = spans
        out.append(rec)
    return out


def write_jsonl(records: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write one JSON object per line (UTF-8, non-ASCII kept); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file; a bad line raises ``ValueError`` naming file and line."""
    out = []
    with Path(path).open(encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{i}: invalid JSON: {err}") from err
    return out


def summary_table(metrics: dict[str, dict[str, float]], title: str = "Results") -> str:
    """A fixed-width text table: one row per (split, entry) with precision / recall / F1 / support.

    ``metrics`` maps a row name (e.g. ``"test overall"``, ``"test PER"``, ``"test 2 images"``) to
    a dict with ``precision``, ``recall``, ``f1`` (fractions in [0, 1]) and optionally ``support``.
    """
    rows = [(name, m) for name, m in metrics.items()]
    width = max([len(title), 12] + [len(n) for n, _ in rows])
    header = f"{'':<{width}}  {'P':>6}  {'R':>6}  {'F1':>6}  {'support':>7}"
    lines = [title, header, "-" * len(header)]
    for name, m in rows:
        support = m.get("support", m.get("number"))
        sup = "" if support is None else str(int(support))
        lines.append(
            f"{name:<{width}}  {100 * m.get('precision', 0.0):6.2f}  {100 * m.get('recall', 0.0):6.2f}  "
            f"{100 * m.get('f1', 0.0):6.2f}  {sup:>7}"
        )
    return "\n".join(lines)


def format_tagged_post(record: dict[str, Any], joiner: str = " ", width: int = 110) -> list[str]:
    """Lines showing one prediction record: the text with predicted entities as ``[words]TYPE``
    (at most ``width`` characters), then every gold and predicted span with a mark of agreement.

    ``joiner`` joins the words (``""`` for character-split languages such as Chinese).
    """
    words = list(record["words"])
    marked = list(words)
    for span in record["pred_spans"]:
        marked[span["start"]] = "[" + marked[span["start"]]
        marked[span["end"] - 1] = marked[span["end"] - 1] + "]" + span["type"]
    text = joiner.join(marked)
    if len(text) > width:
        text = text[: width - 3] + "..."
    key = lambda s: (s["start"], s["end"], s["type"])  # noqa: E731
    gold = {key(s) for s in record["gold_spans"]}
    pred = {key(s) for s in record["pred_spans"]}

    def spans(items: list[dict[str, Any]], other: set) -> str:
        shown = [f"{'+' if key(s) in other else '-'}{joiner.join(words[s['start']:s['end']])}/{s['type']}" for s in items]
        return ", ".join(shown) or "(none)"

    n = record.get("num_images", 0)
    return [
        f"{record['id']} ({n} image{'s' if n != 1 else ''}): {text}",
        f"    gold: {spans(record['gold_spans'], pred)}",
        f"    pred: {spans(record['pred_spans'], gold)}",
    ]
