"""``datasets`` builders for the MNER datasets and :func:`load_dataset`.

Datasets (``name`` -> files expected in ``data_dir``; a split whose file is absent is not produced):

============== ======================================================= ==========================
name           files (split)                                           images (default folder)
============== ======================================================= ==========================
twitter2015    train.txt, valid.txt, test.txt                          ``<IMGID>.jpg`` (``images/``)
twitter2017    train.txt, valid.txt, test.txt                          ``<IMGID>.jpg`` (``images/``)
cmner          train.txt, dev.txt, test.txt                            ``<WID>_*.jpg`` (``images/``)
mner_mi        MNER-MI_train.txt, MNER-MI_val.txt, MNER-MI_test.txt    listed per row (``images/``)
mner_mi_plus   MNER-UNI_train.txt, MNER-UNI_val.txt, MNER-UNI_test.txt ``images/`` + ``twitter2017_images/``
sample         example_text (train; bundled with the package)          ``images/`` (bundled)
cmner_sample   cmner_train.txt.gz, cmner_dev.txt.gz, cmner_test.txt.gz ``images/`` (bundled)
============== ======================================================= ==========================

``cmner_sample`` (bundled, no download): CMNER train text without the 6 photo posts (2994 posts,
0 images), validation = the first 500 CMNER dev posts, test = the 6 photo posts (1 to 9 photos
each) + the last 500 CMNER dev posts; see :mod:`mner_hf.sample.build_bundle`. Files ending in
``.gz`` are read through a decompressed temporary copy.

Dataset names accept ``-`` and ``_`` alike (``mner-mi`` is ``mner_mi``; :func:`normalize_dataset_name`).

Features: ``id`` (string), ``tokens`` (list of string), ``ner_tags`` (list of ``ClassLabel`` over
:data:`mner_hf.models.labels.DEFAULT_LABELS`), ``images`` (list of ``Image(decode=False)``, post
order: ``{"path", "bytes"}`` dicts that the processor opens through ``models/image_loading.py``,
so ``datasets`` never decodes an image itself), ``num_images`` (int32, ``len(images)``), and
``url`` (string or null) for the JSON-lines datasets. Cast to ``Image()`` to get PIL images.

Image folder: ``image_dir`` when given, else ``<data_dir>/images`` when it exists, else none
(every post then has 0 images; the report says so). Every image is checked once at build time
(opened and decoded; more than ``max_pixels`` pixels is refused as a decompression bomb); a missing
or corrupt image file follows ``image_policy`` (see :mod:`mner_hf.readers`); a ``placeholder``
slot is a null image (``None``) so that the image count and order are unchanged (``num_images``
counts it) and the processor masks it out (``image_mask`` 0).

Read report: the :class:`~mner_hf.readers.ReadReport` of every split is logged, saved next to the
cached Arrow files (so a cache hit still has it) and attached to the returned ``DatasetDict`` as
``dataset_dict.read_reports`` (``dict[split, ReadReport]``); ``return_report=True`` returns
``(dataset_dict, reports)`` instead.

Caching: the cache key contains every option plus a fingerprint (size and mtime) of the data files
and image folders, so an edited file or folder is rebuilt, never served stale; ``rebuild=True``
forces a rebuild.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from .models.labels import DEFAULT_LABELS
from .readers import (
    DEFAULT_MAX_PIXELS,
    IMAGE_POLICIES,
    MNERFormatError,
    RawPost,
    ReadReport,
    read_cmner,
    read_jsonl,
    read_twitter,
)
from .resources import sample_dir

__all__ = [
    "DATASET_NAMES",
    "DatasetSpec",
    "SPECS",
    "MNERConfig",
    "MNERBuilder",
    "MNERMIBuilder",
    "MNERMIPlusBuilder",
    "Twitter2015Builder",
    "Twitter2017Builder",
    "CMNERBuilder",
    "SampleBuilder",
    "CMNERSampleBuilder",
    "BUNDLED",
    "BUILDERS",
    "mner_features",
    "load_dataset",
    "normalize_dataset_name",
]

logger = logging.getLogger(__name__)
REPORT_FILE = "mner_read_report.json"


@dataclass(frozen=True)
class DatasetSpec:
    """Static description of one dataset: expected files per split and its reader."""

    name: str
    files: dict[str, str]  # split -> file name in data_dir
    reader: str  # "twitter" | "jsonl" | "cmner"
    has_url: bool = False
    second_image_dir: str | None = None  # MNER-MI-Plus: folder of the twitter2017-* rows


SPECS: dict[str, DatasetSpec] = {
    "twitter2015": DatasetSpec(
        "twitter2015", {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}, "twitter"
    ),
    "twitter2017": DatasetSpec(
        "twitter2017", {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}, "twitter"
    ),
    "cmner": DatasetSpec("cmner", {"train": "train.txt", "validation": "dev.txt", "test": "test.txt"}, "cmner"),
    "mner_mi": DatasetSpec(
        "mner_mi",
        {"train": "MNER-MI_train.txt", "validation": "MNER-MI_val.txt", "test": "MNER-MI_test.txt"},
        "jsonl",
        has_url=True,
    ),
    "mner_mi_plus": DatasetSpec(
        "mner_mi_plus",
        {"train": "MNER-UNI_train.txt", "validation": "MNER-UNI_val.txt", "test": "MNER-UNI_test.txt"},
        "jsonl",
        has_url=True,
        second_image_dir="twitter2017_images",
    ),
    "sample": DatasetSpec("sample", {"train": "example_text"}, "cmner"),
    "cmner_sample": DatasetSpec(
        "cmner_sample",
        {"train": "cmner_train.txt.gz", "validation": "cmner_dev.txt.gz", "test": "cmner_test.txt.gz"},
        "cmner",
    ),
}
BUNDLED = ("sample", "cmner_sample")  # datasets shipped in the package (data_dir defaults to it)
DATASET_NAMES: tuple[str, ...] = tuple(SPECS)


def normalize_dataset_name(name: str) -> str:
    """Canonical dataset name: case and ``-`` / ``_`` / spaces do not matter (``"MNER-MI"`` ->
    ``"mner_mi"``). Raises ``ValueError`` listing the known names for anything else."""
    if not isinstance(name, str):
        raise ValueError(f"dataset name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in SPECS:
        raise ValueError(
            f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)} ('-' and '_' both work)"
        )
    return key


def mner_features(has_url: bool, labels: list[str] | None = None) -> datasets.Features:
    """Features of every MNER dataset (``url`` only where the format has one)."""
    feats: dict[str, Any] = {
        "id": datasets.Value("string"),
        "tokens": datasets.List(datasets.Value("string")),
        "ner_tags": datasets.List(datasets.ClassLabel(names=list(labels or DEFAULT_LABELS))),
        "images": datasets.List(datasets.Image(decode=False)),
        "num_images": datasets.Value("int32"),
    }
    if has_url:
        feats["url"] = datasets.Value("string")
    return datasets.Features(feats)


@dataclass
class MNERConfig(datasets.BuilderConfig):
    """Options of an MNER builder (all part of the cache key)."""

    image_dir: str | None = None
    twitter2017_image_dir: str | None = None
    orphan_policy: str = "keep"
    image_policy: str = "error"
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    check_images: bool = True
    source_fingerprint: str = ""


class MNERBuilder(datasets.GeneratorBasedBuilder):
    """Base builder; subclasses set :attr:`SPEC`. Use :func:`load_dataset` for the usual path."""

    SPEC: DatasetSpec
    BUILDER_CONFIG_CLASS = MNERConfig
    VERSION = datasets.Version("1.1.0")  # 1.1: undecoded images, null placeholders, image checks

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("dataset_name", self.SPEC.name)
        super().__init__(*args, **kwargs)

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=f"{self.SPEC.name}: multimodal NER posts (tokens, BIO tags, images in post order)",
            features=mner_features(self.SPEC.has_url),
        )

    def _data_dir(self) -> Path:
        if self.SPEC.name in BUNDLED and not self.config.data_dir:
            return sample_dir()
        if not self.config.data_dir:
            raise ValueError(f"dataset {self.SPEC.name!r} needs data_dir (a folder with {_expected(self.SPEC)})")
        return Path(self.config.data_dir)

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        data_dir = self._data_dir()
        present = _present_files(self.SPEC, data_dir)
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"filepath": str(path), "split": split})
            for split, path in present.items()
        ]

    def _read(self, filepath: str, report: ReadReport) -> Iterator[RawPost]:
        cfg = self.config
        common = dict(
            orphan_policy=cfg.orphan_policy, image_policy=cfg.image_policy, report=report,
            check_images=cfg.check_images, max_pixels=cfg.max_pixels,
        )
        if self.SPEC.reader == "twitter":
            return read_twitter(filepath, cfg.image_dir, **common)
        if self.SPEC.reader == "cmner":
            return read_cmner(filepath, cfg.image_dir, **common)
        return read_jsonl(filepath, cfg.image_dir, twitter2017_image_dir=cfg.twitter2017_image_dir, **common)

    def _generate_examples(self, filepath: str, split: str) -> Iterator[tuple[datasets.builder.Key, dict]]:
        report = ReadReport()
        with _plain_file(filepath) as plain:
            yield from self._examples(plain, report)
        report.sources = [filepath if src == str(Path(plain)) else src for src in report.sources]
        _save_report(Path(self._output_dir), split, report)
        noisy = (report.images_skipped or report.images_placeholder or report.images_other_format
                 or report.empty_posts or report.duplicate_ids)
        (logger.warning if noisy else logger.info)("%s/%s: %s", self.SPEC.name, split, report.summary())
        for note in report.notes[:5]:
            logger.warning("%s", note)

    def _examples(self, filepath: str, report: ReadReport) -> Iterator[tuple[datasets.builder.Key, dict]]:
        for i, post in enumerate(self._read(filepath, report)):
            images = [{"path": p, "bytes": None} if p else None for p in post.images]
            example: dict[str, Any] = {
                "id": post.id,
                "tokens": post.tokens,
                "ner_tags": post.tags,
                "images": images,
                "num_images": len(images),
            }
            if self.SPEC.has_url:
                example["url"] = post.url
            yield datasets.builder.Key(0, i), example


class Twitter2015Builder(MNERBuilder):
    SPEC = SPECS["twitter2015"]


class Twitter2017Builder(MNERBuilder):
    SPEC = SPECS["twitter2017"]


class CMNERBuilder(MNERBuilder):
    SPEC = SPECS["cmner"]


class MNERMIBuilder(MNERBuilder):
    SPEC = SPECS["mner_mi"]


class MNERMIPlusBuilder(MNERBuilder):
    SPEC = SPECS["mner_mi_plus"]


class SampleBuilder(MNERBuilder):
    SPEC = SPECS["sample"]


class CMNERSampleBuilder(MNERBuilder):
    SPEC = SPECS["cmner_sample"]


BUILDERS: dict[str, type[MNERBuilder]] = {
    "twitter2015": Twitter2015Builder,
    "twitter2017": Twitter2017Builder,
    "cmner": CMNERBuilder,
    "mner_mi": MNERMIBuilder,
    "mner_mi_plus": MNERMIPlusBuilder,
    "sample": SampleBuilder,
    "cmner_sample": CMNERSampleBuilder,
}


@contextlib.contextmanager
def _plain_file(filepath: str) -> Iterator[str]:
    """``filepath`` itself, or for ``*.gz`` a decompressed temporary copy (deleted afterwards)."""
    if not filepath.endswith(".gz"):
        yield filepath
        return
    with tempfile.TemporaryDirectory(prefix="mner_gz_") as tmp:
        plain = Path(tmp) / Path(filepath).name[: -len(".gz")]
        with gzip.open(filepath, "rb") as src, open(plain, "wb") as dst:
            shutil.copyfileobj(src, dst)
        yield str(plain)


def _expected(spec: DatasetSpec) -> str:
    return ", ".join(spec.files.values())


def _present_files(spec: DatasetSpec, data_dir: Path) -> dict[str, Path]:
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"data_dir {data_dir} for dataset {spec.name!r} does not exist; expected a folder with {_expected(spec)}"
        )
    present = {split: data_dir / f for split, f in spec.files.items() if (data_dir / f).is_file()}
    if not present:
        raise FileNotFoundError(
            f"no data file of dataset {spec.name!r} in {data_dir}: expected at least one of {_expected(spec)}"
        )
    return present


def _save_report(output_dir: Path, split: str, report: ReadReport) -> None:
    path = output_dir / REPORT_FILE
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[split] = report.to_dict()
    output_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def _fingerprint(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        try:
            st = p.stat()
            h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except FileNotFoundError:
            h.update(f"{p}|absent\n".encode())
    return h.hexdigest()[:16]


def _default_folder(given: str | os.PathLike | None, fallback: Path) -> str | None:
    if given is not None:
        return str(Path(given).resolve())
    return str(fallback.resolve()) if fallback.is_dir() else None


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    *,
    twitter2017_image_dir: str | os.PathLike | None = None,
    orphan_policy: str = "keep",
    image_policy: str = "error",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    check_images: bool = True,
    cache_dir: str | os.PathLike | None = None,
    rebuild: bool = False,
    return_report: bool = False,
) -> datasets.DatasetDict | tuple[datasets.DatasetDict, dict[str, ReadReport]]:
    """Build (or load from cache) one MNER dataset as a ``DatasetDict``.

    Args:
        name: one of :data:`DATASET_NAMES` (``-`` and ``_`` both work: ``"mner-mi"``).
        data_dir: folder with the files listed in the module docstring (not needed for ``sample``).
        image_dir: image folder (default ``<data_dir>/images`` when it exists, else no images).
        twitter2017_image_dir: MNER-MI-Plus second folder (default ``<data_dir>/twitter2017_images``).
        orphan_policy: ``"keep"`` (default) or ``"repair"`` (see :mod:`mner_hf.models.labels`).
        image_policy: ``"error"`` (default), ``"skip"`` or ``"placeholder"`` for missing or corrupt
            image files.
        max_pixels: images with more pixels are refused (decompression bombs; ``None``: no limit).
        check_images: open and decode every image once at build time (default True).
        cache_dir: ``datasets`` cache folder (default: the ``datasets`` default cache).
        rebuild: rebuild even when a matching cache exists.
        return_report: also return the per-split :class:`ReadReport`.
    """
    name = normalize_dataset_name(name)
    if image_policy not in IMAGE_POLICIES:
        raise ValueError(f"unknown image policy {image_policy!r}; expected one of {IMAGE_POLICIES}")
    if orphan_policy not in ("keep", "repair"):
        raise ValueError(f"unknown orphan policy {orphan_policy!r}; expected 'keep' or 'repair'")
    spec = SPECS[name]
    root = Path(data_dir).resolve() if data_dir is not None else (sample_dir() if name in BUNDLED else None)
    if root is None:
        raise ValueError(f"dataset {name!r} needs data_dir: a folder with {_expected(spec)}")
    present = _present_files(spec, root)
    images = _default_folder(image_dir, root / "images")
    images17 = None
    if spec.second_image_dir:
        images17 = _default_folder(twitter2017_image_dir, root / spec.second_image_dir)
    watched = list(present.values()) + [Path(p) for p in (images, images17) if p]
    builder = BUILDERS[name](
        cache_dir=str(cache_dir) if cache_dir is not None else None,
        data_dir=str(root),
        image_dir=images,
        twitter2017_image_dir=images17,
        orphan_policy=orphan_policy,
        image_policy=image_policy,
        max_pixels=max_pixels,
        check_images=bool(check_images),
        source_fingerprint=_fingerprint(watched),
    )
    mode = datasets.DownloadMode.FORCE_REDOWNLOAD if rebuild else datasets.DownloadMode.REUSE_DATASET_IF_EXISTS
    report_path = Path(builder._output_dir) / REPORT_FILE
    if not rebuild and not report_path.is_file():
        mode = datasets.DownloadMode.FORCE_REDOWNLOAD  # cache without a report: rebuild it
    try:
        builder.download_and_prepare(download_mode=mode)
    except datasets.exceptions.DatasetGenerationError as exc:
        # surface the reader's own error (file:line message) instead of the generic wrapper
        if isinstance(exc.__cause__, (MNERFormatError, OSError, ValueError)):
            raise exc.__cause__ from None
        raise
    dd = builder.as_dataset()
    assert isinstance(dd, datasets.DatasetDict)
    raw = json.loads(report_path.read_text())
    reports = {split: ReadReport.from_dict(raw[split]) for split in dd}
    dd.read_reports = reports  # type: ignore[attr-defined]
    for split, rep in reports.items():
        logger.info("%s/%s: %s", name, split, rep.summary())
    return (dd, reports) if return_report else dd
