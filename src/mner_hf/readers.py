"""Streaming readers for the raw MNER formats; one :class:`RawPost` per post.

Formats
-------
* Twitter-2015 / Twitter-2017 (:func:`read_twitter`): blocks ``IMGID:<id>`` then ``token<TAB>tag``
  lines, a blank line ends the post; the image is ``<image_dir>/<IMGID>.jpg``.
* MNER-MI / MNER-MI-Plus (:func:`read_jsonl`): one JSON object per line
  ``{"id", "text", "images", "label", "url"}``. Rows whose id is ``twitter2017-<IMGID>`` (MNER-MI-Plus)
  take their images from the second folder ``twitter2017_image_dir``. Parsed with ``json.loads``;
  never ``eval``.
* CMNER (:func:`read_cmner`): ``WID:<id>`` blocks, CRLF or LF, one character per line; images are
  every ``<image_dir>/<WID>_*.jpg`` sorted by file name (0..N per post).

Policies (all counted in the :class:`ReadReport` passed as ``report=``)
-----------------------------------------------------------------------
* Tags are normalised with :func:`mner_hf.models.labels.normalize_tag` (``OTHER``/``MIS`` -> ``MISC``);
  a tag whose type is not in ``types`` is an error.
* ``orphan_policy`` (default ``"keep"``, faithful to the released files and to seqeval's default
  mode used for published numbers): ``"keep"`` leaves an orphan ``I-X`` as is (counted in
  ``report.orphans``); ``"repair"`` rewrites it to ``B-X`` (also counted in ``report.orphans_repaired``).
* ``image_policy`` for an image file that a post references but that does not exist:
  ``"error"`` (default) raises :class:`MissingImageError` naming file and line; ``"skip"`` drops
  that image from the post (the post is kept, ``report.images_skipped`` counts it);
  ``"placeholder"`` keeps the slot as ``None`` in ``RawPost.images`` so the image order and count are
  unchanged (``report.images_placeholder``; the builders turn it into a blank grey image).
* No image folder at all (``image_dir=None``; e.g. the Twitter images are distributed separately):
  every post has 0 images and ``report.image_dir_missing`` is True -- not an error; the number of
  image references that could not be resolved is ``report.images_unresolved``.

Malformed lines raise :class:`MNERFormatError` with ``"{path}:{line_no}: {message}"``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from .models.labels import (
    DEFAULT_TYPE_MAP,
    DEFAULT_TYPES,
    OrphanPolicy,
    apply_orphan_policy,
    split_tag,
    tags_to_spans,
)

__all__ = [
    "ImagePolicy",
    "IMAGE_POLICIES",
    "MNERFormatError",
    "MissingImageError",
    "RawPost",
    "ReadReport",
    "read_twitter",
    "read_jsonl",
    "read_cmner",
    "index_images_by_prefix",
]

ImagePolicy = Literal["error", "skip", "placeholder"]
IMAGE_POLICIES: tuple[str, ...] = ("error", "skip", "placeholder")
TWITTER2017_PREFIX = "twitter2017-"
_CMNER_IMAGE_SUFFIXES = (".jpg", ".jpeg")


class MNERFormatError(ValueError):
    """A malformed line of a raw data file; ``str()`` is ``"{path}:{line_no}: {message}"``."""

    def __init__(self, path: str | os.PathLike, line_no: int, message: str) -> None:
        self.path = str(path)
        self.line_no = line_no
        self.message = message
        super().__init__(f"{self.path}:{line_no}: {message}")

    def __reduce__(self):  # picklable across worker processes
        return (self.__class__, (self.path, self.line_no, self.message))


class MissingImageError(MNERFormatError, FileNotFoundError):
    """An image file referenced by a post does not exist (``image_policy="error"``)."""


@dataclass
class RawPost:
    """One post. ``images`` are absolute paths in post order; ``None`` marks a placeholder slot."""

    id: str
    tokens: list[str]
    tags: list[str]
    images: list[str | None]
    url: str | None = None
    source_line: int = 0


@dataclass
class ReadReport:
    """What a reader saw and what its policies did (filled while the reader is iterated)."""

    sources: list[str] = field(default_factory=list)
    posts: int = 0
    tokens: int = 0
    entities: int = 0
    orphans: int = 0
    orphans_repaired: int = 0
    images_found: int = 0
    images_skipped: int = 0
    images_placeholder: int = 0
    images_unresolved: int = 0
    image_dir_missing: bool = False
    image_policy: str = "error"
    orphan_policy: str = "keep"
    missing_examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> ReadReport:
        return cls(**dict(data))

    def summary(self) -> str:
        parts = [
            f"{self.posts} posts, {self.tokens} tokens, {self.entities} entities",
            f"orphan I- tags: {self.orphans} ({self.orphan_policy}, {self.orphans_repaired} repaired)",
            f"images: {self.images_found} found, {self.images_skipped} skipped, "
            f"{self.images_placeholder} placeholders (policy {self.image_policy})",
        ]
        if self.image_dir_missing:
            parts.append(
                f"no image folder given: posts have 0 images ({self.images_unresolved} image references unresolved)"
            )
        return "; ".join(parts)

    def _missing(self, path: str, line_no: int, image: str) -> None:
        if len(self.missing_examples) < 20:
            self.missing_examples.append(f"{path}:{line_no}: {image}")


def _check_policies(image_policy: str, orphan_policy: str) -> None:
    if image_policy not in IMAGE_POLICIES:
        raise ValueError(f"unknown image policy {image_policy!r}; expected one of {IMAGE_POLICIES}")
    if orphan_policy not in ("keep", "repair"):
        raise ValueError(f"unknown orphan policy {orphan_policy!r}; expected 'keep' or 'repair'")


def _start_report(report: ReadReport | None, path: Path, image_policy: str, orphan_policy: str) -> ReadReport:
    report = report if report is not None else ReadReport()
    report.sources.append(str(path))
    report.image_policy = image_policy
    report.orphan_policy = orphan_policy
    return report


def _open_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: data file not found")
    return p


def _image_folder(image_dir: str | os.PathLike | None, what: str = "image folder") -> Path | None:
    if image_dir is None:
        return None
    d = Path(image_dir).resolve()
    if not d.is_dir():
        raise FileNotFoundError(f"{what} {d} does not exist")
    return d


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line_no, text)`` with CR/LF stripped; a non-UTF-8 line is an error naming its line."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MNERFormatError(path, line_no, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
            yield line_no, text.rstrip("\r\n")


def _check_tags(
    path: Path,
    line_no: int,
    raw_tags: Sequence[str],
    types: Sequence[str],
    type_map: Mapping[str, str],
    line_nos: Sequence[int] | None = None,
) -> list[str]:
    """Normalise tags (BIO only) and check their types; error names the offending line."""
    out = []
    for i, tag in enumerate(raw_tags):
        ln = line_nos[i] if line_nos is not None else line_no
        where = "" if line_nos is not None else f" (token {i})"
        try:
            prefix, type_ = split_tag(tag)
        except (ValueError, TypeError):
            raise MNERFormatError(path, ln, f"unknown tag {tag!r}{where}: expected O, B-X or I-X") from None
        if type_ is None:
            out.append("O")
            continue
        if prefix not in ("B", "I"):
            raise MNERFormatError(path, ln, f"tag {tag!r}{where} is not a BIO tag (B-X / I-X / O)")
        norm = type_map.get(type_, type_)
        if norm not in types:
            raise MNERFormatError(
                path, ln, f"unknown entity type {type_!r} in tag {tag!r}{where}; known types: {', '.join(types)}"
            )
        out.append(f"{prefix}-{norm}")
    return out


def _finish_post(
    post: RawPost, path: Path, report: ReadReport, orphan_policy: OrphanPolicy
) -> RawPost:
    tags, n = apply_orphan_policy(post.tags, orphan_policy)
    post.tags = tags
    report.orphans += n
    if orphan_policy == "repair":
        report.orphans_repaired += n
    report.posts += 1
    report.tokens += len(post.tokens)
    report.entities += len(tags_to_spans(tags))
    report.images_found += sum(img is not None for img in post.images)
    return post


def _resolve_images(
    names: Sequence[str],
    folder: Path | None,
    path: Path,
    line_no: int,
    image_policy: str,
    report: ReadReport,
) -> list[str | None]:
    """Turn image file names into absolute paths in order, applying the missing-image policy."""
    if folder is None:
        report.image_dir_missing = True
        report.images_unresolved += len(names)
        return []
    out: list[str | None] = []
    for name in names:
        candidate = folder / name
        if candidate.is_file():
            out.append(str(candidate))
            continue
        report._missing(str(path), line_no, str(candidate))
        if image_policy == "error":
            raise MissingImageError(
                path, line_no, f"image {candidate} not found (image_policy='error'; use 'skip' or 'placeholder')"
            )
        if image_policy == "skip":
            report.images_skipped += 1
        else:
            report.images_placeholder += 1
            out.append(None)
    return out


def _read_blocks(
    path: Path, header: str
) -> Iterator[tuple[str, int, list[str], list[str], list[int]]]:
    """Yield ``(id, header_line, tokens, raw_tags, line_nos)`` of each ``<header><id>`` block."""
    seen: dict[str, int] = {}
    cur: tuple[str, int] | None = None
    tokens: list[str] = []
    tags: list[str] = []
    line_nos: list[int] = []

    def finish() -> tuple[str, int, list[str], list[str], list[int]]:
        assert cur is not None
        if not tokens:
            raise MNERFormatError(path, cur[1], f"post {cur[0]!r} has no token lines")
        return cur[0], cur[1], tokens, tags, line_nos

    for line_no, line in _lines(path):
        if line.startswith(header):
            if cur is not None:
                yield finish()
            post_id = line[len(header) :].strip()
            if not post_id:
                raise MNERFormatError(path, line_no, f"empty post id after {header!r}")
            if post_id in seen:
                raise MNERFormatError(path, line_no, f"duplicate post id {post_id!r} (first at line {seen[post_id]})")
            seen[post_id] = line_no
            cur, tokens, tags, line_nos = (post_id, line_no), [], [], []
            continue
        if not line.strip():  # blank (or whitespace-only) line ends the post
            if cur is not None and tokens:
                yield finish()
                cur = None
            continue
        if cur is None:
            raise MNERFormatError(path, line_no, f"token line outside a post (expected a {header!r} header first)")
        cols = line.split("\t")
        if len(cols) != 2:
            raise MNERFormatError(
                path, line_no, f"expected 2 tab-separated columns (token, tag), got {len(cols)}: {line!r}"
            )
        token, tag = cols
        if not token.strip():
            raise MNERFormatError(path, line_no, "empty token")
        tokens.append(token)
        tags.append(tag.strip())
        line_nos.append(line_no)
    if cur is not None:
        yield finish()


def read_twitter(
    path: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    *,
    orphan_policy: OrphanPolicy = "keep",
    image_policy: ImagePolicy = "error",
    types: Sequence[str] = DEFAULT_TYPES,
    type_map: Mapping[str, str] = DEFAULT_TYPE_MAP,
    report: ReadReport | None = None,
) -> Iterator[RawPost]:
    """Stream the posts of a Twitter-2015/2017 file (``IMGID:`` blocks, image ``<IMGID>.jpg``)."""
    _check_policies(image_policy, orphan_policy)
    p = _open_file(path)
    folder = _image_folder(image_dir)
    report = _start_report(report, p, image_policy, orphan_policy)
    for post_id, header_line, tokens, raw_tags, line_nos in _read_blocks(p, "IMGID:"):
        tags = _check_tags(p, header_line, raw_tags, types, type_map, line_nos)
        images = _resolve_images([f"{post_id}.jpg"], folder, p, header_line, image_policy, report)
        post = RawPost(post_id, tokens, tags, images, None, header_line)
        yield _finish_post(post, p, report, orphan_policy)


def index_images_by_prefix(folder: Path, suffixes: Sequence[str] = _CMNER_IMAGE_SUFFIXES) -> dict[str, list[str]]:
    """Map every possible ``<prefix>`` of files named ``<prefix>_<rest><suffix>`` to sorted paths.

    Equivalent to globbing ``<prefix>_*.jpg`` for each post, in one pass over the folder.
    """
    index: dict[str, list[str]] = {}
    for entry in os.scandir(folder):
        name = entry.name
        if not name.lower().endswith(tuple(suffixes)) or not entry.is_file():
            continue
        for i, ch in enumerate(name):
            if ch == "_":
                index.setdefault(name[:i], []).append(name)
    return {k: [str(folder / n) for n in sorted(v)] for k, v in index.items()}


def read_cmner(
    path: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    *,
    orphan_policy: OrphanPolicy = "keep",
    image_policy: ImagePolicy = "error",
    types: Sequence[str] = DEFAULT_TYPES,
    type_map: Mapping[str, str] = DEFAULT_TYPE_MAP,
    report: ReadReport | None = None,
) -> Iterator[RawPost]:
    """Stream the posts of a CMNER file (``WID:`` blocks, CRLF or LF, images ``<WID>_*.jpg``).

    Images are every matching file, sorted by file name (any number, 0 included). The post lists
    its files itself, so no file can be "missing" here and ``image_policy`` never triggers.
    """
    _check_policies(image_policy, orphan_policy)
    p = _open_file(path)
    folder = _image_folder(image_dir)
    report = _start_report(report, p, image_policy, orphan_policy)
    if folder is None:
        report.image_dir_missing = True
    index = index_images_by_prefix(folder) if folder is not None else {}
    for post_id, header_line, tokens, raw_tags, line_nos in _read_blocks(p, "WID:"):
        tags = _check_tags(p, header_line, raw_tags, types, type_map, line_nos)
        post = RawPost(post_id, tokens, tags, list(index.get(post_id, [])), None, header_line)
        yield _finish_post(post, p, report, orphan_policy)


def _parse_json_line(path: Path, line_no: int, line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise MNERFormatError(path, line_no, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(row, dict):
        raise MNERFormatError(path, line_no, f"expected a JSON object, got {type(row).__name__}")
    missing = [k for k in ("id", "text", "label") if k not in row]
    if missing:
        raise MNERFormatError(path, line_no, f"missing key(s) {', '.join(missing)}")
    return row


def _str_list(path: Path, line_no: int, row: dict, key: str) -> list[str]:
    value = row.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MNERFormatError(path, line_no, f"{key!r} must be a list of strings")
    return value


def read_jsonl(
    path: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    *,
    twitter2017_image_dir: str | os.PathLike | None = None,
    orphan_policy: OrphanPolicy = "keep",
    image_policy: ImagePolicy = "error",
    types: Sequence[str] = DEFAULT_TYPES,
    type_map: Mapping[str, str] = DEFAULT_TYPE_MAP,
    report: ReadReport | None = None,
) -> Iterator[RawPost]:
    """Stream the posts of an MNER-MI / MNER-MI-Plus JSON-lines file.

    ``images`` of a row are file names resolved in ``image_dir``; for rows with id
    ``twitter2017-<IMGID>`` in ``twitter2017_image_dir`` (and ``<IMGID>.jpg`` when the row lists no
    image). Blank lines are ignored; ``url`` is optional (``None`` when absent).
    """
    _check_policies(image_policy, orphan_policy)
    p = _open_file(path)
    folder = _image_folder(image_dir)
    folder17 = _image_folder(twitter2017_image_dir, "twitter2017 image folder")
    report = _start_report(report, p, image_policy, orphan_policy)
    seen: dict[str, int] = {}
    for line_no, line in _lines(p):
        if not line.strip():
            continue
        row = _parse_json_line(p, line_no, line)
        raw_id = row["id"]
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or str(raw_id) == "":
            raise MNERFormatError(p, line_no, f"'id' must be a non-empty string or integer, got {raw_id!r}")
        post_id = str(raw_id)
        if post_id in seen:
            raise MNERFormatError(p, line_no, f"duplicate post id {post_id!r} (first at line {seen[post_id]})")
        seen[post_id] = line_no
        tokens = _str_list(p, line_no, row, "text")
        raw_tags = _str_list(p, line_no, row, "label")
        names = _str_list(p, line_no, row, "images")
        if not tokens:
            raise MNERFormatError(p, line_no, f"post {post_id!r} has no tokens")
        if len(tokens) != len(raw_tags):
            raise MNERFormatError(
                p, line_no, f"label/text length mismatch: {len(tokens)} tokens but {len(raw_tags)} labels"
            )
        for i, tok in enumerate(tokens):
            if not tok.strip():
                raise MNERFormatError(p, line_no, f"empty token at position {i}")
        url = row.get("url")
        if url is not None and not isinstance(url, str):
            raise MNERFormatError(p, line_no, f"'url' must be a string, got {type(url).__name__}")
        tags = _check_tags(p, line_no, raw_tags, types, type_map)
        if post_id.startswith(TWITTER2017_PREFIX):
            names = names or [post_id[len(TWITTER2017_PREFIX) :] + ".jpg"]
            images = _resolve_images(names, folder17, p, line_no, image_policy, report)
        else:
            images = _resolve_images(names, folder, p, line_no, image_policy, report)
        yield _finish_post(RawPost(post_id, tokens, tags, images, url or None, line_no), p, report, orphan_policy)
