"""Tag schemes for named entity recognition: BIO (IOB2) and BIOES, entity spans, type names.

Pure Python (standard library only): this module travels with every checkpoint.

Conventions
-----------
* A *tag* is ``"O"`` or ``"<P>-<TYPE>"`` with the prefix ``P`` in ``B I E S`` (``E``/``S`` only in
  the BIOES scheme). The type is everything after the first ``-``.
* A :class:`Span` covers the words ``start .. end - 1`` (``end`` is EXCLUSIVE).
* Orphan ``I-X``: an ``I-X`` that does not follow ``B-X`` or ``I-X`` (e.g. at the start of a post,
  after ``O`` or after a tag of another type). Two policies (:data:`OrphanPolicy`):

  - ``"keep"`` (the readers' default): the tag is left as is, and :func:`tags_to_spans` treats it
    as the start of an entity, exactly as seqeval's default (conlleval) mode does. This is how the
    published numbers on Twitter-2015/2017 were computed.
  - ``"repair"``: the tag is rewritten to ``B-X`` (:func:`repair_orphans`). Because an orphan
    already starts an entity in the default mode, repairing never changes the spans; it only
    makes the tags valid IOB2 so that seqeval's strict mode agrees with the default mode.

  Readers and metrics both call :func:`apply_orphan_policy`, so the policy is applied one way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_TYPES",
    "DEFAULT_LABELS",
    "DEFAULT_TYPE_MAP",
    "OUTSIDE",
    "Scheme",
    "OrphanPolicy",
    "SCHEMES",
    "ORPHAN_POLICIES",
    "Span",
    "normalize_type",
    "normalize_tag",
    "split_tag",
    "is_orphan",
    "count_orphans",
    "repair_orphans",
    "apply_orphan_policy",
    "tags_to_spans",
    "spans_to_tags",
    "bio_to_bioes",
    "bioes_to_bio",
    "build_labels",
    "label_types",
]

OUTSIDE = "O"
DEFAULT_TYPES: tuple[str, ...] = ("PER", "LOC", "ORG", "MISC")
DEFAULT_TYPE_MAP: dict[str, str] = {"OTHER": "MISC", "MIS": "MISC", "MISC": "MISC"}

Scheme = Literal["BIO", "BIOES"]
OrphanPolicy = Literal["keep", "repair"]
SCHEMES: tuple[str, ...] = ("BIO", "BIOES")
ORPHAN_POLICIES: tuple[str, ...] = ("keep", "repair")

_PREFIXES = {"BIO": frozenset("BI"), "BIOES": frozenset("BIES")}


@dataclass(frozen=True)
class Span:
    """One entity: words ``start`` (inclusive) to ``end`` (EXCLUSIVE) of type ``type``."""

    start: int
    end: int
    type: str

    def __post_init__(self) -> None:
        if not (0 <= self.start < self.end):
            raise ValueError(f"invalid span [{self.start}, {self.end}): need 0 <= start < end")
        if not self.type:
            raise ValueError("span type must be a non-empty string")


def _check_scheme(scheme: str) -> None:
    if scheme not in _PREFIXES:
        raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {SCHEMES}")


def normalize_type(name: str, type_map: Mapping[str, str] = DEFAULT_TYPE_MAP) -> str:
    """Map an entity type name through ``type_map`` (``OTHER``/``MIS`` -> ``MISC`` by default).

    Names absent from the map are returned unchanged. An empty name raises ``ValueError``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"entity type must be a non-empty string, got {name!r}")
    return type_map.get(name, name)


def split_tag(tag: str) -> tuple[str, str | None]:
    """Split ``"B-PER"`` into ``("B", "PER")`` and ``"O"`` into ``("O", None)``.

    Raises ``ValueError`` for anything that is not ``O`` or ``<B|I|E|S>-<TYPE>``.
    """
    if tag == OUTSIDE:
        return OUTSIDE, None
    if not isinstance(tag, str) or len(tag) < 3 or tag[1] != "-" or tag[0] not in "BIES":
        raise ValueError(f"invalid tag {tag!r}: expected 'O' or B-X / I-X / E-X / S-X")
    return tag[0], tag[2:]


def normalize_tag(tag: str, type_map: Mapping[str, str] = DEFAULT_TYPE_MAP) -> str:
    """Normalise the type of one tag: ``"B-OTHER"`` -> ``"B-MISC"``; ``"O"`` stays ``"O"``.

    Raises ``ValueError`` for a tag that is not ``O`` / ``B-X`` / ``I-X`` / ``E-X`` / ``S-X``.
    """
    prefix, type_ = split_tag(tag)
    if type_ is None:
        return OUTSIDE
    return f"{prefix}-{normalize_type(type_, type_map)}"


def _validate(tags: Sequence[str], scheme: str) -> list[tuple[str, str | None]]:
    _check_scheme(scheme)
    allowed = _PREFIXES[scheme]
    parts = []
    for i, tag in enumerate(tags):
        prefix, type_ = split_tag(tag)
        if type_ is not None and prefix not in allowed:
            raise ValueError(f"tag {tag!r} at position {i} is not allowed in the {scheme} scheme")
        parts.append((prefix, type_))
    return parts


def is_orphan(tags: Sequence[str], i: int) -> bool:
    """True when ``tags[i]`` is an ``I-X`` that does not follow ``B-X`` or ``I-X`` (BIO)."""
    prefix, type_ = split_tag(tags[i])
    if prefix != "I":
        return False
    if i == 0:
        return True
    prev_prefix, prev_type = split_tag(tags[i - 1])
    return prev_prefix not in ("B", "I") or prev_type != type_


def count_orphans(tags: Sequence[str]) -> int:
    """Number of orphan ``I-X`` tags in a BIO sequence (see :func:`is_orphan`)."""
    _validate(tags, "BIO")
    return sum(is_orphan(tags, i) for i in range(len(tags)))


def repair_orphans(tags: Sequence[str]) -> tuple[list[str], int]:
    """Rewrite every orphan ``I-X`` of a BIO sequence to ``B-X``.

    Returns ``(new_tags, n_repaired)``. Idempotent; never changes the spans of
    :func:`tags_to_spans` (an orphan already starts an entity there).
    """
    _validate(tags, "BIO")
    out = list(tags)
    n = 0
    for i in range(len(out)):
        # decisions use the ORIGINAL predecessor: repairing tags[i-1] to B-X keeps it a B/I of X
        if is_orphan(tags, i):
            out[i] = "B-" + out[i][2:]
            n += 1
    return out, n


def apply_orphan_policy(tags: Sequence[str], policy: OrphanPolicy = "keep") -> tuple[list[str], int]:
    """Apply ``policy`` to a BIO sequence. Returns ``(tags, n_orphans)``.

    ``"keep"`` returns the tags unchanged and the number of orphans found; ``"repair"`` returns
    the repaired tags and the number of tags rewritten (the same number).
    """
    if policy == "keep":
        return list(tags), count_orphans(tags)
    if policy == "repair":
        return repair_orphans(tags)
    raise ValueError(f"unknown orphan policy {policy!r}; expected one of {ORPHAN_POLICIES}")


def tags_to_spans(tags: Sequence[str], scheme: Scheme = "BIO") -> list[Span]:
    """Entity spans of a tag sequence, in order (seqeval default / conlleval semantics).

    BIO: an entity starts at ``B-X``, or at an ``I-X`` that does not continue an entity of type
    ``X`` (orphan, kept as an entity start); it continues over ``I-X`` of the same type.
    BIOES: additionally ``S-X`` is a one-word entity and ``E-X`` closes the current entity of type
    ``X`` (an ``E-X`` that continues nothing is a one-word entity, like an orphan).
    """
    parts = _validate(tags, scheme)
    spans: list[Span] = []
    start: int | None = None
    cur: str | None = None

    def close(end: int) -> None:
        nonlocal start, cur
        if start is not None and cur is not None:
            spans.append(Span(start, end, cur))
        start, cur = None, None

    for i, (prefix, type_) in enumerate(parts):
        if type_ is None:
            close(i)
        elif prefix == "B":
            close(i)
            start, cur = i, type_
        elif prefix == "S":
            close(i)
            spans.append(Span(i, i + 1, type_))
        elif prefix == "I":
            if cur != type_:
                close(i)
                start, cur = i, type_
        else:  # "E"
            if cur != type_:
                close(i)
                start, cur = i, type_
            close(i + 1)
    close(len(parts))
    return spans


def spans_to_tags(spans: Iterable[Span], length: int, scheme: Scheme = "BIO") -> list[str]:
    """Tag sequence of ``length`` words for non-overlapping ``spans`` (inverse of tags_to_spans).

    Raises ``ValueError`` for a span outside ``[0, length)`` or overlapping another span.
    """
    _check_scheme(scheme)
    tags = [OUTSIDE] * length
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        if span.end > length:
            raise ValueError(f"span {span} exceeds the sequence length {length}")
        if any(t != OUTSIDE for t in tags[span.start : span.end]):
            raise ValueError(f"span {span} overlaps another span")
        n = span.end - span.start
        if scheme == "BIO":
            tags[span.start : span.end] = [f"B-{span.type}"] + [f"I-{span.type}"] * (n - 1)
        elif n == 1:
            tags[span.start] = f"S-{span.type}"
        else:
            tags[span.start : span.end] = (
                [f"B-{span.type}"] + [f"I-{span.type}"] * (n - 2) + [f"E-{span.type}"]
            )
    return tags


def bio_to_bioes(tags: Sequence[str]) -> list[str]:
    """Convert BIO (IOB2) tags to BIOES. Orphan ``I-X`` become entity starts (``B-X``/``S-X``)."""
    return spans_to_tags(tags_to_spans(tags, "BIO"), len(tags), "BIOES")


def bioes_to_bio(tags: Sequence[str]) -> list[str]:
    """Convert BIOES tags to BIO (IOB2)."""
    return spans_to_tags(tags_to_spans(tags, "BIOES"), len(tags), "BIO")


def build_labels(types: Iterable[str] = DEFAULT_TYPES, scheme: Scheme = "BIO") -> list[str]:
    """Label list with ``"O"`` first, then per type ``B-``, ``I-`` (and ``E-``, ``S-`` for BIOES)."""
    _check_scheme(scheme)
    prefixes = "BI" if scheme == "BIO" else "BIES"
    labels = [OUTSIDE]
    seen: set[str] = set()
    for t in types:
        if not t or "-" == t[0] or t in seen:
            raise ValueError(f"invalid or repeated entity type {t!r}")
        seen.add(t)
        labels.extend(f"{p}-{t}" for p in prefixes)
    return labels


def label_types(labels: Iterable[str]) -> list[str]:
    """Entity types of a label list, in order of first appearance (``["O", "B-PER", ...]`` -> PER...)."""
    types: list[str] = []
    for label in labels:
        _, type_ = split_tag(label)
        if type_ is not None and type_ not in types:
            types.append(type_)
    return types


DEFAULT_LABELS: list[str] = build_labels(DEFAULT_TYPES, "BIO")
