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
  every ``<image_dir>/<WID>_*.jpg`` (or ``.jpeg``) sorted by file name (0..N per post); other image
  files of a post (``.png``, ``.gif``, ...) are not used and are counted in
  ``report.images_other_format``.

What is a token: any non-empty string. A token that is a single Unicode whitespace character
(U+00A0 in Twitter-2015, U+3000 in Chinese text) is kept as published; the processor maps a word
without sub-words to the unknown token and counts it. Line endings may be LF, CRLF or CR alone.
A block header with no token lines is skipped and counted (``report.empty_posts``); a post id seen
twice in a file is kept and counted (``report.duplicate_ids``). An empty file is an error naming it.

Policies (all counted in the :class:`ReadReport` passed as ``report=``)
-----------------------------------------------------------------------
* Tags are normalised with :func:`mner_hf.models.labels.normalize_tag` (``OTHER``/``MIS`` -> ``MISC``);
  a tag whose type is not in ``types`` is an error.
* ``orphan_policy`` (default ``"keep"``, faithful to the released files and to seqeval's default
  mode used for published numbers): ``"keep"`` leaves an orphan ``I-X`` as is (counted in
  ``report.orphans``); ``"repair"`` rewrites it to ``B-X`` (also counted in ``report.orphans_repaired``).
* ``image_policy`` for an image file that a post references but that does not exist, or that is
  corrupt (0 bytes, truncated, not an image) or larger than ``max_pixels`` (decompression bomb):
  every image is opened and decoded once by the reader (``check_images=True``, the default; JPEGs
  at 1/8 scale, which still reads every byte). ``"error"`` (default) raises :class:`MissingImageError`
  / :class:`CorruptImageError` naming file and line; ``"skip"`` drops that image from the post (the
  post is kept, ``report.images_skipped`` counts it); ``"placeholder"`` keeps the slot as ``None`` in
  ``RawPost.images`` so the image order and count are unchanged (``report.images_placeholder``; the
  builders store a null image that the processor masks out). ``report.images_corrupt`` counts the
  corrupt ones among them.
* Image names in JSON lines (and Twitter ``IMGID`` values) must stay inside their image folder:
  an absolute path or a ``..`` component is refused with ``file:line`` (no file outside the
  folder can end up in a dataset or an export).
* No image folder at all (``image_dir=None``; e.g. the Twitter images are distributed separately):
  every post has 0 images and ``report.image_dir_missing`` is True -- not an error; the number of
  image references that could not be resolved is ``report.images_unresolved``.

Malformed lines raise :class:`MNERFormatError` with ``"{path}:{line_no}: {message}"`` (the line is
quoted shortened, never pasted whole). JSON-lines strings with a lone surrogate (``"\\ud800"``, which
no UTF-8 file can hold) are refused naming the key, position and character. A line that is not JSON
but a Python literal dict (single quotes, as written by ``str(dict)``) is read with
``ast.literal_eval`` (never ``eval``) and counted in ``report.python_literal_lines``.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from .models.labels import DEFAULT_TYPE_MAP, DEFAULT_TYPES, OrphanPolicy, apply_orphan_policy, split_tag, tags_to_spans
from .models.processing_mner import find_lone_surrogate
from .raw_files import DEFAULT_MAX_PIXELS, OTHER_IMAGE_SUFFIXES, check_image, index_images_by_prefix, iter_raw_lines

__all__ = [
    "ImagePolicy", "IMAGE_POLICIES", "MNERFormatError", "MissingImageError", "CorruptImageError", "check_image",
    "confine_image_name", "RawPost", "ReadReport", "read_twitter", "read_jsonl", "read_cmner", "index_images_by_prefix",
]

ImagePolicy = Literal["error", "skip", "placeholder"]
IMAGE_POLICIES: tuple[str, ...] = ("error", "skip", "placeholder")
TWITTER2017_PREFIX = "twitter2017-"
_ASCII_BLANK = " \t\f\v"


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


class CorruptImageError(MNERFormatError):
    """An image file of a post is corrupt, truncated or too large (``image_policy="error"``)."""


def _short(text: str, limit: int = 80) -> str:
    """``repr`` of ``text`` cut to ``limit`` characters (error messages never paste a whole file)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


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
    images_corrupt: int = 0
    images_other_format: int = 0
    image_dir_missing: bool = False
    image_policy: str = "error"
    orphan_policy: str = "keep"
    empty_posts: int = 0
    duplicate_ids: int = 0
    python_literal_lines: int = 0
    missing_examples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> ReadReport:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in dict(data).items() if k in known})

    def summary(self) -> str:
        parts = [
            f"{self.posts} posts, {self.tokens} tokens, {self.entities} entities",
            f"orphan I- tags: {self.orphans} ({self.orphan_policy}, {self.orphans_repaired} repaired)",
            f"images: {self.images_found} found, {self.images_skipped} skipped, "
            f"{self.images_placeholder} placeholders (policy {self.image_policy})"
            + (f", {self.images_corrupt} of them corrupt or too large" if self.images_corrupt else ""),
        ]
        if self.images_other_format:
            parts.append(f"{self.images_other_format} image files in other formats (not .jpg) not used")
        if self.empty_posts:
            parts.append(f"{self.empty_posts} empty posts (header without tokens) skipped")
        if self.duplicate_ids:
            parts.append(f"{self.duplicate_ids} repeated post ids kept")
        if self.python_literal_lines:
            parts.append(f"{self.python_literal_lines} lines read as Python literals (not JSON)")
        if self.image_dir_missing:
            parts.append(
                f"no image folder given: posts have 0 images ({self.images_unresolved} image references unresolved)"
            )
        return "; ".join(parts)

    def _missing(self, path: str, line_no: int, image: str) -> None:
        if len(self.missing_examples) < 20:
            self.missing_examples.append(f"{path}:{line_no}: {image}")

    def _note(self, path: str | os.PathLike, line_no: int, message: str) -> None:
        if len(self.notes) < 20:
            self.notes.append(f"{path}:{line_no}: {message}")


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
    """``(line_no, text)`` without line endings; a non-UTF-8 line is an error naming its line."""
    for line_no, raw in enumerate(iter_raw_lines(path), 1):
        if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MNERFormatError(
                path, line_no, f"not valid UTF-8 ({exc.reason}: byte {raw[exc.start]:#04x} at byte {exc.start} of the line)"
            ) from None
        yield line_no, text


def _no_posts(path: Path) -> MNERFormatError:
    return MNERFormatError(path, 1, "no posts: the file is empty or holds only blank lines")


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


def confine_image_name(name: str, path: Path, line_no: int) -> str:
    """Check that an image name from a data file stays inside its image folder.

    Refused (``MNERFormatError`` naming ``path:line_no``): an empty name, an absolute path (POSIX or
    Windows, e.g. ``/etc/passwd`` or ``C:\\x``), and any ``..`` component. Sub-folders are allowed.
    """
    parts = re.split(r"[/\\]", name)
    if not name or not parts[-1]:
        raise MNERFormatError(path, line_no, f"empty image name {name!r}")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise MNERFormatError(
            path, line_no, f"image name {_short(name)} leaves the image folder (absolute path or '..'): refused"
        )
    return name


def _apply_image_policy(
    reason: str, error: type[MNERFormatError], image: str, path: Path, line_no: int, image_policy: str,
    report: ReadReport, out: list[str | None],
) -> None:
    report._missing(str(path), line_no, image if reason == "not found" else f"{image} ({reason})")
    if image_policy == "error":
        what = "not found" if reason == "not found" else f"unusable: {reason}"
        raise error(path, line_no, f"image {image} {what} (image_policy='error'; use 'skip' or 'placeholder')")
    if image_policy == "skip":
        report.images_skipped += 1
    else:
        report.images_placeholder += 1
        out.append(None)


def _check_files(
    files: Sequence[str], path: Path, line_no: int, image_policy: str, report: ReadReport,
    check_images: bool, max_pixels: int | None,
) -> list[str | None]:
    """Existing image files in order, each checked (corrupt / too large ones follow the policy)."""
    out: list[str | None] = []
    for file in files:
        reason = check_image(file, max_pixels) if check_images else None
        if reason is None:
            out.append(file)
            continue
        report.images_corrupt += 1
        _apply_image_policy(reason, CorruptImageError, file, path, line_no, image_policy, report, out)
    return out


def _resolve_images(
    names: Sequence[str],
    folder: Path | None,
    path: Path,
    line_no: int,
    image_policy: str,
    report: ReadReport,
    check_images: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> list[str | None]:
    """Turn image file names into absolute paths in order, applying the image policy."""
    for name in names:
        confine_image_name(name, path, line_no)
    if folder is None:
        report.image_dir_missing = True
        report.images_unresolved += len(names)
        return []
    out: list[str | None] = []
    for name in names:
        candidate = folder / name
        try:
            exists = candidate.is_file()
        except (OSError, ValueError):  # e.g. a name longer than the file system allows
            exists = False
        if exists:
            out.extend(_check_files([str(candidate)], path, line_no, image_policy, report, check_images, max_pixels))
            continue
        _apply_image_policy("not found", MissingImageError, str(candidate), path, line_no, image_policy, report, out)
    return out


def _read_blocks(
    path: Path, header: str, report: ReadReport
) -> Iterator[tuple[str, int, list[str], list[str], list[int]]]:
    """Yield ``(id, header_line, tokens, raw_tags, line_nos)`` of each ``<header><id>`` block.

    A blank line (only ASCII spaces / tabs) ends a post; a header without token lines is skipped
    and counted; a repeated id is kept and counted; an empty file is an error.
    """
    seen: dict[str, int] = {}
    cur: tuple[str, int] | None = None
    tokens: list[str] = []
    tags: list[str] = []
    line_nos: list[int] = []
    posts = 0

    def empty() -> None:
        assert cur is not None
        report.empty_posts += 1
        report._note(path, cur[1], f"post {cur[0]!r} has no token lines: skipped")

    for line_no, line in _lines(path):
        if line.startswith(header):
            if cur is not None:
                if tokens:
                    posts += 1
                    yield cur[0], cur[1], tokens, tags, line_nos
                else:
                    empty()
            post_id = line[len(header) :].strip()
            if not post_id:
                raise MNERFormatError(path, line_no, f"empty post id after {header!r}")
            if post_id in seen:
                report.duplicate_ids += 1
                report._note(path, line_no, f"post id {post_id!r} repeated (first at line {seen[post_id]}): kept")
            else:
                seen[post_id] = line_no
            cur, tokens, tags, line_nos = (post_id, line_no), [], [], []
            continue
        if not line.strip(_ASCII_BLANK):  # blank line ends the post (U+00A0 / U+3000 are not blank)
            if cur is not None and tokens:
                posts += 1
                yield cur[0], cur[1], tokens, tags, line_nos
                cur = None
            continue
        if cur is None:
            raise MNERFormatError(path, line_no, f"token line outside a post (expected a {header!r} header first)")
        cols = line.split("\t")
        if len(cols) != 2:
            raise MNERFormatError(
                path, line_no, f"expected 2 tab-separated columns (token, tag), got {len(cols)}: {_short(line)}"
            )
        token, tag = cols
        if token == "":
            raise MNERFormatError(path, line_no, "empty token (nothing before the tab)")
        tokens.append(token)
        tags.append(tag.strip())
        line_nos.append(line_no)
    if cur is not None:
        if tokens:
            posts += 1
            yield cur[0], cur[1], tokens, tags, line_nos
        else:
            empty()
    if posts == 0:
        raise _no_posts(path)


def read_twitter(
    path: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    *,
    orphan_policy: OrphanPolicy = "keep",
    image_policy: ImagePolicy = "error",
    types: Sequence[str] = DEFAULT_TYPES,
    type_map: Mapping[str, str] = DEFAULT_TYPE_MAP,
    report: ReadReport | None = None,
    check_images: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Iterator[RawPost]:
    """Stream the posts of a Twitter-2015/2017 file (``IMGID:`` blocks, image ``<IMGID>.jpg``).

    ``check_images``: open and decode every image once (corrupt / too large ones follow
    ``image_policy``); ``max_pixels``: the decompression-bomb limit of that check.
    """
    _check_policies(image_policy, orphan_policy)
    p = _open_file(path)
    folder = _image_folder(image_dir)
    report = _start_report(report, p, image_policy, orphan_policy)
    for post_id, header_line, tokens, raw_tags, line_nos in _read_blocks(p, "IMGID:", report):
        tags = _check_tags(p, header_line, raw_tags, types, type_map, line_nos)
        images = _resolve_images(
            [f"{post_id}.jpg"], folder, p, header_line, image_policy, report, check_images, max_pixels
        )
        post = RawPost(post_id, tokens, tags, images, None, header_line)
        yield _finish_post(post, p, report, orphan_policy)


def read_cmner(
    path: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    *,
    orphan_policy: OrphanPolicy = "keep",
    image_policy: ImagePolicy = "error",
    types: Sequence[str] = DEFAULT_TYPES,
    type_map: Mapping[str, str] = DEFAULT_TYPE_MAP,
    report: ReadReport | None = None,
    check_images: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Iterator[RawPost]:
    """Stream the posts of a CMNER file (``WID:``/LF/CRLF/CR blocks, images ``<WID>_*.jpg``).

    Images are every matching file, sorted by file name (any number, 0 included). The post lists
    its files itself, so no file can be "missing" here; ``image_policy`` applies to corrupt or too
    large files. Files ``<WID>_*`` in another image format (``.png``, ...) are counted in
    ``report.images_other_format`` (with examples in ``report.notes``), not used.
    """
    _check_policies(image_policy, orphan_policy)
    p = _open_file(path)
    folder = _image_folder(image_dir)
    report = _start_report(report, p, image_policy, orphan_policy)
    if folder is None:
        report.image_dir_missing = True
    index = index_images_by_prefix(folder) if folder is not None else {}
    others = index_images_by_prefix(folder, OTHER_IMAGE_SUFFIXES) if folder is not None else {}
    for post_id, header_line, tokens, raw_tags, line_nos in _read_blocks(p, "WID:", report):
        tags = _check_tags(p, header_line, raw_tags, types, type_map, line_nos)
        skipped = others.get(post_id, [])
        if skipped:
            report.images_other_format += len(skipped)
            report._note(p, header_line, f"post {post_id!r}: not a .jpg, not used: {', '.join(Path(f).name for f in skipped[:3])}")
        images = _check_files(index.get(post_id, []), p, header_line, image_policy, report, check_images, max_pixels)
        post = RawPost(post_id, tokens, tags, images, None, header_line)
        yield _finish_post(post, p, report, orphan_policy)


def _parse_json_line(path: Path, line_no: int, line: str, report: ReadReport) -> dict:
    try:
        row = json.loads(line)
    except RecursionError:
        raise MNERFormatError(path, line_no, "invalid JSON (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError, or e.g. an integer with more than 4300 digits
        row = _python_literal(line)
        if row is None:
            why = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)[:120]
            raise MNERFormatError(path, line_no, f"invalid JSON ({why})") from None
        report.python_literal_lines += 1
    if not isinstance(row, dict):
        raise MNERFormatError(path, line_no, f"expected a JSON object, got {type(row).__name__}")
    missing = [k for k in ("id", "text", "label") if k not in row]
    if missing:
        raise MNERFormatError(path, line_no, f"missing key(s) {', '.join(missing)}")
    return row


def _python_literal(line: str) -> dict | None:
    """A dict written as a Python literal (``str(dict)``: single quotes), read with
    ``ast.literal_eval`` (never ``eval``: no code runs); ``None`` when the line is not one."""
    if not line.lstrip().startswith("{"):
        return None
    try:
        value = ast.literal_eval(line.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _check_surrogates(path: Path, line_no: int, key: str, value: str, index: int | None = None) -> None:
    """A lone surrogate (from a ``\\udXXX`` JSON escape) cannot be stored or encoded: name it."""
    at = find_lone_surrogate(value)
    if at >= 0:
        where = f"{key!r}[{index}]" if index is not None else repr(key)
        code = ord(value[at])
        raise MNERFormatError(
            path, line_no,
            f"{where} holds a lone surrogate U+{code:04X} at character {at} "
            f"(an unpaired \\u{code:04x} escape: not valid Unicode text)",
        )


def _str_list(path: Path, line_no: int, row: dict, key: str) -> list[str]:
    value = row.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MNERFormatError(path, line_no, f"{key!r} must be a list of strings")
    for i, v in enumerate(value):
        _check_surrogates(path, line_no, key, v, i)
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
    check_images: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Iterator[RawPost]:
    """Stream the posts of an MNER-MI / MNER-MI-Plus JSON-lines file.

    ``images`` of a row are file names resolved in ``image_dir`` (confined to it: see
    :func:`confine_image_name`); for rows with id ``twitter2017-<IMGID>`` in
    ``twitter2017_image_dir`` (and ``<IMGID>.jpg`` when the row lists no image). Blank lines are
    ignored; ``url`` is optional (``None`` when absent). ``check_images`` / ``max_pixels``: as in
    :func:`read_twitter`.
    """
    _check_policies(image_policy, orphan_policy)
    p = _open_file(path)
    folder = _image_folder(image_dir)
    folder17 = _image_folder(twitter2017_image_dir, "twitter2017 image folder")
    report = _start_report(report, p, image_policy, orphan_policy)
    seen: dict[str, int] = {}
    posts = 0
    for line_no, line in _lines(p):
        if not line.strip():
            continue
        row = _parse_json_line(p, line_no, line, report)
        raw_id = row["id"]
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or str(raw_id) == "":
            raise MNERFormatError(p, line_no, f"'id' must be a non-empty string or integer, got {_short(repr(raw_id))}")
        post_id = str(raw_id)
        _check_surrogates(p, line_no, "id", post_id)
        if post_id in seen:
            report.duplicate_ids += 1
            report._note(p, line_no, f"post id {post_id!r} repeated (first at line {seen[post_id]}): kept")
        else:
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
            if tok == "":
                raise MNERFormatError(p, line_no, f"empty token at position {i}")
        url = row.get("url")
        if url is not None and not isinstance(url, str):
            raise MNERFormatError(p, line_no, f"'url' must be a string, got {type(url).__name__}")
        if url:
            _check_surrogates(p, line_no, "url", url)
        tags = _check_tags(p, line_no, raw_tags, types, type_map)
        if post_id.startswith(TWITTER2017_PREFIX):
            names = names or [post_id[len(TWITTER2017_PREFIX) :] + ".jpg"]
            images = _resolve_images(names, folder17, p, line_no, image_policy, report, check_images, max_pixels)
        else:
            images = _resolve_images(names, folder, p, line_no, image_policy, report, check_images, max_pixels)
        posts += 1
        yield _finish_post(RawPost(post_id, tokens, tags, images, url or None, line_no), p, report, orphan_policy)
    if posts == 0:
        raise _no_posts(p)
