"""What reading the data and fitting it to the model did, for the run's log, ``results.json`` and card.

:func:`build_data_report` returns a JSON-able dict::

    {"max_images": 4, "images_used": True,
     "read": {split: {"posts", "images_found", "images_skipped", "images_placeholder", "images_corrupt",
                      "images_other_format", "images_unresolved", "empty_posts", "duplicate_ids"}},
     "images_dropped_beyond_max_images": {split: n}}   # per split of the run (after splitting)

``read`` is per file read (the reader's :class:`~mner_hf.readers.ReadReport`); images beyond
``max_images`` are counted from each post's ``num_images`` (the processor keeps the first
``max_images`` in post order), so the count is the same with or without the feature cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["READ_COUNTS", "build_data_report", "data_report_lines"]

#: reader counts copied into the report (all ints)
READ_COUNTS = (
    "posts", "images_found", "images_skipped", "images_placeholder", "images_corrupt", "images_other_format",
    "images_unresolved", "empty_posts", "duplicate_ids",
)


def build_data_report(
    read_reports: Mapping[str, Any], splits: Mapping[str, Any], max_images: int, images_used: bool
) -> dict[str, Any]:
    """Counts of the read reports plus the images each split loses to ``max_images``.

    Args:
        read_reports: split -> ``ReadReport`` (or its dict) of the files read.
        splits: split -> ``datasets.Dataset`` with a ``num_images`` column (the run's splits).
        max_images: image slots per post of the model (M).
        images_used: whether the model sees images at all (False: text-only run, nothing dropped).
    """
    read = {}
    for split, rep in read_reports.items():
        data = rep if isinstance(rep, Mapping) else rep.to_dict()
        read[split] = {k: int(data.get(k, 0) or 0) for k in READ_COUNTS}
        read[split]["image_dir_missing"] = bool(data.get("image_dir_missing", False))
    dropped = {}
    if images_used:
        limit = max(1, int(max_images))
        for split, ds in splits.items():
            counts = ds["num_images"] if "num_images" in ds.column_names else []
            dropped[split] = int(sum(max(0, int(n) - limit) for n in counts))
    return {
        "max_images": int(max_images),
        "images_used": bool(images_used),
        "read": read,
        "images_dropped_beyond_max_images": dropped,
    }


def data_report_lines(report: Mapping[str, Any]) -> list[str]:
    """Human-readable lines (only the counts that are not zero; one line when all is clean)."""
    lines = []
    labels = {
        "images_skipped": "missing/corrupt images skipped",
        "images_placeholder": "missing/corrupt images kept as masked placeholders",
        "images_corrupt": "of them corrupt or too large",
        "images_other_format": "image files in other formats (not .jpg) not used",
        "empty_posts": "empty posts skipped",
        "duplicate_ids": "repeated post ids kept",
    }
    for split, counts in report.get("read", {}).items():
        parts = [f"{counts[k]} {text}" for k, text in labels.items() if counts.get(k)]
        if counts.get("image_dir_missing"):
            parts.append(f"no image folder: {counts.get('images_unresolved', 0)} image references unresolved")
        if parts:
            lines.append(f"{split} (as read): " + ", ".join(parts))
    dropped = {s: n for s, n in report.get("images_dropped_beyond_max_images", {}).items() if n}
    if dropped:
        lines.append(
            f"images beyond max_images={report.get('max_images')} not used: "
            + ", ".join(f"{split} {n}" for split, n in dropped.items())
        )
    return lines or ["no image or post was dropped, replaced or skipped while reading the data"]
