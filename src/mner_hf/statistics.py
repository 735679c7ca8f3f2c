"""``mner-hf stats``: the paper's Table 1 columns for any MNER ``DatasetDict``.

Per split: posts, tokens, entities per type (and total), posts with 0 / 1 / 2 / 3 / 4+ images,
total images and images per post. Images are counted from ``num_images`` (no image is decoded).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

import datasets

from .builders import DATASET_NAMES, load_dataset, normalize_dataset_name
from .models.labels import label_types, tags_to_spans
from .readers import IMAGE_POLICIES

__all__ = ["IMAGE_BUCKETS", "image_bucket", "dataset_statistics", "format_statistics", "register_subcommand"]

IMAGE_BUCKETS: tuple[str, ...] = ("0", "1", "2", "3", "4+")


def image_bucket(n: int) -> str:
    """Bucket of a post with ``n`` images: ``"0"``, ``"1"``, ``"2"``, ``"3"`` or ``"4+"``."""
    if n < 0:
        raise ValueError(f"negative image count {n}")
    return str(n) if n < 4 else "4+"


def _split_stats(ds: datasets.Dataset) -> dict[str, Any]:
    names = ds.features["ner_tags"].feature.names
    types = label_types(names)
    entity_counts: Counter[str] = Counter({t: 0 for t in types})
    tokens = 0
    for tags in ds["ner_tags"]:
        tokens += len(tags)
        entity_counts.update(s.type for s in tags_to_spans([names[i] for i in tags]))
    n_images = [int(n) for n in ds["num_images"]]
    buckets = Counter({b: 0 for b in IMAGE_BUCKETS})
    buckets.update(image_bucket(n) for n in n_images)
    posts = len(ds)
    return {
        "posts": posts,
        "tokens": tokens,
        "entities": {**{t: entity_counts[t] for t in types}, "total": sum(entity_counts.values())},
        "posts_by_images": {b: buckets[b] for b in IMAGE_BUCKETS},
        "images": sum(n_images),
        "images_per_post": (sum(n_images) / posts) if posts else 0.0,
        "max_images": max(n_images, default=0),
    }


def dataset_statistics(dataset_dict: datasets.DatasetDict) -> dict[str, dict[str, Any]]:
    """Statistics per split (see the module docstring) plus ``"all"`` summed over the splits."""
    stats = {split: _split_stats(ds) for split, ds in dataset_dict.items()}
    if len(stats) > 1:
        total: dict[str, Any] = {"posts": 0, "tokens": 0, "images": 0, "max_images": 0}
        total["entities"] = Counter()
        total["posts_by_images"] = Counter({b: 0 for b in IMAGE_BUCKETS})
        for s in stats.values():
            for k in ("posts", "tokens", "images"):
                total[k] += s[k]
            total["max_images"] = max(total["max_images"], s["max_images"])
            total["entities"].update(s["entities"])
            total["posts_by_images"].update(s["posts_by_images"])
        total["entities"] = dict(total["entities"])
        total["posts_by_images"] = {b: total["posts_by_images"][b] for b in IMAGE_BUCKETS}
        total["images_per_post"] = total["images"] / total["posts"] if total["posts"] else 0.0
        stats["all"] = total
    return stats


def format_statistics(stats: dict[str, dict[str, Any]], title: str = "") -> str:
    """Plain-text table, one row per split (the paper's Table 1 columns)."""
    splits = list(stats)
    types = [t for t in next(iter(stats.values()))["entities"] if t != "total"]
    header = ["split", "posts", *types, "entities", *(f"{b} img" for b in IMAGE_BUCKETS), "images", "img/post"]
    rows = []
    for split in splits:
        s = stats[split]
        rows.append(
            [split, s["posts"], *(s["entities"].get(t, 0) for t in types), s["entities"]["total"],
             *(s["posts_by_images"][b] for b in IMAGE_BUCKETS), s["images"], f"{s['images_per_post']:.2f}"]
        )
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return (title + "\n" if title else "") + "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    dd = load_dataset(
        args.name, args.data_dir, args.image_dir, image_policy=args.image_policy, cache_dir=args.cache_dir
    )
    stats = dataset_statistics(dd)
    if args.json:
        print(json.dumps(stats, indent=1))
    else:
        print(format_statistics(stats, title=f"{args.name} ({args.data_dir or 'bundled'})"))
        for split, rep in getattr(dd, "read_reports", {}).items():
            print(f"{split}: {rep.summary()}")
    return 0


def _dataset_name(value: str) -> str:
    try:
        return normalize_dataset_name(value)
    except ValueError:
        return value  # argparse's choices check reports it


def register_subcommand(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stats NAME --data-dir D [--image-dir I] [--json]``."""
    p = subparsers.add_parser("stats", help="print entities per type, images per post (paper Table 1)")
    p.add_argument("name", type=_dataset_name, choices=DATASET_NAMES, help="dataset ('-' or '_')")
    p.add_argument("--data-dir", default=None, help="folder with the raw files (not needed for 'sample')")
    p.add_argument("--image-dir", default=None, help="image folder (default: <data-dir>/images if present)")
    p.add_argument("--image-policy", choices=IMAGE_POLICIES, default="error", help="missing image files")
    p.add_argument("--cache-dir", default=None, help="datasets cache folder (default: the datasets cache)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_run)
