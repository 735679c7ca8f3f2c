"""``mner-hf export-dataset``: write a Hub-ready dataset folder that needs no code of ours.

Layout written to ``out_dir``::

    README.md                              dataset card (YAML: configs, dataset_info, license, ...)
    data/<split>-00000-of-0000N.parquet    shards with the image bytes embedded

``datasets.load_dataset(out_dir)`` (or the Hub repository the folder is pushed to) reads it back
with the same features (``ClassLabel`` names included) and the same image bytes.
``--push-to-hub ORG/NAME`` (``--private``, ``--dry-run``) publishes the folder as a Hub dataset
repository (:mod:`mner_hf.hub_dataset`): ``datasets.load_dataset("ORG/NAME")`` then needs no mner_hf.
The card is rendered from ``dataset_scripts/README.template.md`` with the per-dataset metadata of
``dataset_scripts/<name>.yaml`` and the BibTeX of :func:`mner_hf.citations.dataset_citation`.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import tempfile
from pathlib import Path
from string import Template
from typing import Any

import datasets
import yaml
from datasets.table import embed_table_storage

from .builders import DATASET_NAMES, SPECS, load_dataset, normalize_dataset_name
from .citations import dataset_citation
from .models.labels import DEFAULT_TYPE_MAP, label_types, tags_to_spans
from .readers import IMAGE_POLICIES, ReadReport
from .resources import dataset_scripts_dir, sample_dir

__all__ = ["export_dataset", "render_card", "register_subcommand"]

DEFAULT_MAX_SHARD_BYTES = 500 * 1024 * 1024


def _metadata(name: str) -> dict[str, Any]:
    path = dataset_scripts_dir() / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no dataset metadata {path}; add one for dataset {name!r}")
    meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    missing = {"pretty_name", "license", "description", "license_text"} - set(meta)
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(sorted(missing))}")
    return meta


def _split_counts(ds: datasets.Dataset) -> tuple[int, int, int]:
    names = ds.features["ner_tags"].feature.names
    entities = sum(len(tags_to_spans([names[i] for i in tags])) for tags in ds["ner_tags"])
    return len(ds), entities, int(sum(ds["num_images"]))


def render_card(
    name: str,
    dd: datasets.DatasetDict,
    split_bytes: dict[str, int] | None = None,
    reports: dict[str, ReadReport] | None = None,
) -> str:
    """Dataset card text (YAML front matter + Markdown) for ``dd``; ``split_bytes``: Arrow bytes per split."""
    meta = _metadata(name)
    first = next(iter(dd.values()))
    info = datasets.DatasetInfo(features=first.features)
    info_yaml = info._to_yaml_dict()
    split_bytes = split_bytes or {s: d.data.nbytes for s, d in dd.items()}
    info_yaml["splits"] = [
        {"name": s, "num_bytes": int(split_bytes[s]), "num_examples": len(d)} for s, d in dd.items()
    ]
    info_yaml["dataset_size"] = int(sum(split_bytes[s] for s in dd))
    front: dict[str, Any] = {
        "pretty_name": meta["pretty_name"],
        "license": meta["license"],
        "language": meta.get("language", []),
        "task_categories": ["token-classification"],
        "task_ids": ["named-entity-recognition"],
        "tags": ["multimodal", "ner", "images", "social-media"],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in dd],
            }
        ],
        "dataset_info": info_yaml,
    }
    rows = []
    for split, ds in dd.items():
        posts, entities, images = _split_counts(ds)
        rows.append(f"| {split} | {posts} | {entities} | {images} |")
    reports = reports or {}
    orphans = sum(r.orphans for r in reports.values())
    policy = next((r.orphan_policy for r in reports.values()), "keep")
    image_policy = next((r.image_policy for r in reports.values()), "error")
    if any(r.image_dir_missing for r in reports.values()):
        image_note = "no image folder was given: posts carry 0 images"
    else:
        image_note = (
            f"{sum(r.images_skipped for r in reports.values())} skipped, "
            f"{sum(r.images_placeholder for r in reports.values())} null placeholders (missing or corrupt files, "
            "kept as `None` so the image order is unchanged)"
        )
    has_url = "url" in first.features
    values = {
        "front_matter": yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip("\n"),
        "pretty_name": meta["pretty_name"],
        "description": meta["description"].strip(),
        "name": name,
        "first_split": next(iter(dd)),
        "splits_table": "\n".join(rows),
        "types": ", ".join(label_types(first.features["ner_tags"].feature.names)),
        "url_row": "| `url` | string | source URL of the post (null when absent) |\n" if has_url else "",
        "type_map": ", ".join(f"{k} -> {v}" for k, v in DEFAULT_TYPE_MAP.items() if k != v),
        "orphan_policy": policy,
        "orphans": f"{orphans} found" if reports else "count not recorded",
        "image_policy": image_policy,
        "image_note": image_note,
        "license_text": str(meta["license_text"]).strip(),
        "citation": dataset_citation(name) or "% no paper is recorded for this dataset",
    }
    template = (dataset_scripts_dir() / "README.template.md").read_text(encoding="utf-8")
    return Template(template).substitute(values)


def _input_folders(
    name: str | None, data_dir: str | os.PathLike | None, image_dir: str | os.PathLike | None,
    load_options: dict[str, Any], reports: dict[str, ReadReport] | None,
) -> list[Path]:
    """Every folder the export reads from: data folder, image folders, folders of the files read."""
    folders: list[Path] = []
    root = Path(data_dir) if data_dir is not None else (sample_dir() if name == "sample" else None)
    if root is not None:
        folders.append(root)
        folders.append(Path(image_dir) if image_dir is not None else root / "images")
        second = SPECS[name].second_image_dir if name in SPECS else None
        if second:
            given = load_options.get("twitter2017_image_dir")
            folders.append(Path(given) if given is not None else root / second)
    elif image_dir is not None:
        folders.append(Path(image_dir))
    if load_options.get("twitter2017_image_dir") is not None:
        folders.append(Path(load_options["twitter2017_image_dir"]))
    for rep in (reports or {}).values():
        folders.extend(Path(src).parent for src in rep.sources)
    return folders


def check_output_folder(out: str | os.PathLike, inputs: list[Path]) -> None:
    """Refuse an output folder that is, contains or is inside an input folder (``--overwrite``
    would delete the raw data; writing into it would mix the export with the data)."""
    o = Path(out).resolve()
    for folder in inputs:
        f = Path(folder).resolve()
        if o == f or f.is_relative_to(o) or o.is_relative_to(f):
            relation = "is" if o == f else ("contains" if f.is_relative_to(o) else "is inside")
            raise ValueError(
                f"refusing to export into {o}: it {relation} the input folder {f} "
                "(choose an output folder outside the data and image folders)"
            )


def _decoded_images(dd: datasets.DatasetDict) -> datasets.DatasetDict:
    """The builders keep images undecoded (the processor decodes them); users of the export get
    ``Image()`` (PIL on access). Only the feature flag changes, no data."""
    out = datasets.DatasetDict()
    for split, ds in dd.items():
        feat = ds.features.get("images")
        if isinstance(feat, datasets.List) and isinstance(feat.feature, datasets.Image) and not feat.feature.decode:
            ds = ds.cast_column("images", datasets.List(datasets.Image()))
        out[split] = ds
    return out


def export_dataset(
    dataset: datasets.DatasetDict | str,
    out_dir: str | os.PathLike,
    *,
    name: str | None = None,
    data_dir: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    overwrite: bool = False,
    **load_options: Any,
) -> Path:
    """Write ``dataset`` (a ``DatasetDict`` or a dataset name for :func:`load_dataset`) to ``out_dir``.

    Args:
        dataset: a ``DatasetDict`` with the MNER features, or one of :data:`DATASET_NAMES`.
        out_dir: folder to write (must be empty or absent unless ``overwrite``).
        name: metadata name (``dataset_scripts/<name>.yaml``); defaults to ``dataset`` when a string.
        data_dir, image_dir, load_options: passed to :func:`load_dataset` when ``dataset`` is a name.
        max_shard_bytes: target size of one parquet shard (images included).

    Returns the output folder.
    """
    if isinstance(dataset, str):
        dataset = normalize_dataset_name(dataset)
        name = name or dataset
        check_output_folder(out_dir, _input_folders(dataset, data_dir, image_dir, load_options, None))
        dd, reports = load_dataset(dataset, data_dir, image_dir, return_report=True, **load_options)
    else:
        if name is None:
            raise ValueError("export_dataset needs name= (metadata to use) when given a DatasetDict")
        dd, reports = dataset, getattr(dataset, "read_reports", None)
    name = normalize_dataset_name(name) if name.replace("-", "_").lower() in SPECS else name
    check_output_folder(out_dir, _input_folders(None, data_dir, image_dir, load_options, reports))
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace it")
        shutil.rmtree(out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    split_bytes: dict[str, int] = {}
    dd = _decoded_images(dd)
    for split, ds in dd.items():
        embedded = ds.with_format("arrow").map(embed_table_storage, batched=True, keep_in_memory=True)
        embedded = embedded.with_format(None)
        n = max(1, math.ceil(embedded.data.nbytes / max_shard_bytes))
        for i in range(n):
            shard = embedded.shard(num_shards=n, index=i, contiguous=True)
            shard.to_parquet(str(out / "data" / f"{split}-{i:05d}-of-{n:05d}.parquet"))
        split_bytes[split] = embedded.data.nbytes
    card = render_card(name, dd, split_bytes, reports)
    (out / "README.md").write_text(card, encoding="utf-8")
    return out


def _run(args: argparse.Namespace) -> int:
    if args.out is None and not args.push_to_hub:
        print("mner-hf export-dataset: give --out FOLDER, --push-to-hub ORG/NAME, or both")
        return 2
    if (args.private or args.dry_run) and not args.push_to_hub:
        print("mner-hf export-dataset: --private and --dry-run apply to --push-to-hub ORG/NAME")
        return 2
    options = {"orphan_policy": args.orphan_policy, "image_policy": args.image_policy, "cache_dir": args.cache_dir}
    if args.twitter2017_image_dir:
        options["twitter2017_image_dir"] = args.twitter2017_image_dir
    with contextlib.ExitStack() as stack:
        out_dir = args.out or stack.enter_context(tempfile.TemporaryDirectory(prefix="mner_export_"))
        out = export_dataset(
            args.name,
            out_dir,
            data_dir=args.data_dir,
            image_dir=args.image_dir,
            max_shard_bytes=int(args.max_shard_mb * 1024 * 1024),
            overwrite=args.overwrite,
            **options,
        )
        if args.out:
            print(f"wrote {out} (load it with datasets.load_dataset({str(out)!r}))")
        if args.push_to_hub:
            from .hub_dataset import push_dataset

            try:
                files = push_dataset(out, args.push_to_hub, private=args.private, token=args.token,
                                     dry_run=args.dry_run)
            except ValueError as err:
                print(f"mner-hf export-dataset: {err}")
                return 2
            verb = "would upload" if args.dry_run else "uploaded"
            print(f"{verb} {len(files)} files to https://huggingface.co/datasets/{args.push_to_hub}:")
            for name in files:
                print(f"  {name}")
            print(f"load it with datasets.load_dataset({args.push_to_hub!r})")
    return 0


def _dataset_name(value: str) -> str:
    try:
        return normalize_dataset_name(value)
    except ValueError:
        return value  # argparse's choices check reports it


def register_subcommand(subparsers: argparse._SubParsersAction) -> None:
    """Add ``export-dataset NAME --data-dir D --out OUT [--image-dir I] [--push-to-hub ORG/NAME]``."""
    p = subparsers.add_parser(
        "export-dataset",
        help="write a Hub-ready dataset folder (parquet with embedded images + dataset card)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", type=_dataset_name, choices=DATASET_NAMES, help="dataset to export ('-' or '_')")
    p.add_argument("--data-dir", default=None, help="folder with the raw files (not needed for 'sample')")
    p.add_argument("--out", default=None, help="output folder (default with --push-to-hub: a temporary one)")
    p.add_argument("--image-dir", default=None, help="image folder (default: <data-dir>/images if present)")
    p.add_argument("--twitter2017-image-dir", default=None, help="MNER-MI-Plus second image folder")
    p.add_argument("--image-policy", choices=IMAGE_POLICIES, default="error", help="missing image files")
    p.add_argument("--orphan-policy", choices=("keep", "repair"), default="keep", help="orphan I- tags")
    p.add_argument("--max-shard-mb", type=float, default=500.0, help="target parquet shard size in MiB")
    p.add_argument("--cache-dir", default=None, help="datasets cache folder (default: the datasets cache)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--push-to-hub", metavar="ORG/NAME", default=None,
                   help="publish the exported folder as a Hub dataset repository (create_repo + upload_folder)")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")
    p.add_argument("--token", default=None, help="with --push-to-hub: Hub token (default: the logged-in one)")
    p.add_argument("--dry-run", action="store_true", help="with --push-to-hub: list the files, upload nothing")
    p.set_defaults(func=_run)
