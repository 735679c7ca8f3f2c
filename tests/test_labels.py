"""Tag schemes: round trips (hypothesis), orphan policy, normalisation, seqeval agreement."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mner_hf import labels as alias
from mner_hf.models.labels import (
    DEFAULT_LABELS,
    DEFAULT_TYPES,
    Span,
    apply_orphan_policy,
    bio_to_bioes,
    bioes_to_bio,
    build_labels,
    count_orphans,
    label_types,
    normalize_tag,
    normalize_type,
    repair_orphans,
    spans_to_tags,
    tags_to_spans,
)

TYPES = st.sampled_from(["PER", "LOC", "ORG", "MISC"])
ANY_BIO_TAG = st.sampled_from(DEFAULT_LABELS)


@st.composite
def spans_and_length(draw):
    """Non-overlapping spans over a sequence of random length (gaps of 0 allowed)."""
    length = draw(st.integers(0, 30))
    spans = []
    pos = 0
    while pos < length:
        gap = draw(st.integers(0, 3))
        size = draw(st.integers(1, 4))
        start = pos + gap
        if start + size > length:
            break
        spans.append(Span(start, start + size, draw(TYPES)))
        pos = start + size
    return spans, length


@settings(max_examples=200, deadline=None)
@given(spans_and_length(), st.sampled_from(["BIO", "BIOES"]))
def test_spans_tags_round_trip(data, scheme):
    spans, length = data
    tags = spans_to_tags(spans, length, scheme)
    assert len(tags) == length
    assert tags_to_spans(tags, scheme) == spans


@settings(max_examples=200, deadline=None)
@given(spans_and_length())
def test_bio_bioes_round_trip_on_valid_tags(data):
    spans, length = data
    bio = spans_to_tags(spans, length, "BIO")
    bioes = bio_to_bioes(bio)
    assert bioes == spans_to_tags(spans, length, "BIOES")
    assert bioes_to_bio(bioes) == bio
    assert tags_to_spans(bioes, "BIOES") == tags_to_spans(bio, "BIO")


@settings(max_examples=300, deadline=None)
@given(st.lists(ANY_BIO_TAG, max_size=25))
def test_repair_is_idempotent_and_keeps_spans(tags):
    repaired, n = repair_orphans(tags)
    assert n == count_orphans(tags)
    assert sum(a != b for a, b in zip(tags, repaired)) == n
    again, n2 = repair_orphans(repaired)
    assert again == repaired and n2 == 0
    # an orphan starts an entity in the default mode, so repairing never changes the spans
    assert tags_to_spans(repaired) == tags_to_spans(tags)
    # repaired tags are valid IOB2: they survive BIO -> spans -> BIO unchanged
    assert spans_to_tags(tags_to_spans(repaired), len(repaired)) == repaired
    # arbitrary BIO (orphans included) -> BIOES -> BIO gives the repaired tags
    assert bioes_to_bio(bio_to_bioes(tags)) == repaired


@settings(max_examples=300, deadline=None)
@given(st.lists(ANY_BIO_TAG, max_size=25))
def test_spans_agree_with_seqeval_default_mode(tags):
    from seqeval.metrics.sequence_labeling import get_entities

    ours = [(s.type, s.start, s.end - 1) for s in tags_to_spans(tags)]
    assert ours == sorted(get_entities(list(tags)), key=lambda e: (e[1], e[2]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["O", "B-OTHER", "I-MIS", "B-MISC", "I-PER", "S-LOC", "E-ORG"]), max_size=20))
def test_normalisation_is_idempotent(tags):
    once = [normalize_tag(t) for t in tags]
    assert [normalize_tag(t) for t in once] == once
    assert not any(t.endswith(("-OTHER", "-MIS")) for t in once)


def test_orphan_policy_examples():
    tags = ["I-PER", "I-PER", "O", "I-LOC", "B-ORG", "I-PER"]
    kept, n = apply_orphan_policy(tags, "keep")
    assert kept == tags and n == 3
    repaired, n = apply_orphan_policy(tags, "repair")
    assert repaired == ["B-PER", "I-PER", "O", "B-LOC", "B-ORG", "B-PER"] and n == 3
    assert tags_to_spans(tags) == [Span(0, 2, "PER"), Span(3, 4, "LOC"), Span(4, 5, "ORG"), Span(5, 6, "PER")]
    with pytest.raises(ValueError, match="orphan policy"):
        apply_orphan_policy(tags, "drop")  # type: ignore[arg-type]


def test_bioes_examples_and_lenient_decoding():
    assert bio_to_bioes(["B-PER", "I-PER", "I-PER", "O", "B-LOC"]) == ["B-PER", "I-PER", "E-PER", "O", "S-LOC"]
    # E-X that continues nothing is a one-word entity; I-X after E-X starts a new entity
    assert tags_to_spans(["E-PER", "I-PER", "E-PER"], "BIOES") == [Span(0, 1, "PER"), Span(1, 3, "PER")]
    with pytest.raises(ValueError, match="not allowed in the BIO scheme"):
        tags_to_spans(["S-PER"], "BIO")


def test_normalize_type_and_tag():
    assert normalize_type("OTHER") == "MISC" and normalize_type("MIS") == "MISC"
    assert normalize_type("PER") == "PER"
    assert normalize_type("X", {"X": "Y"}) == "Y"
    assert normalize_tag("B-OTHER") == "B-MISC" and normalize_tag("I-MIS") == "I-MISC"
    assert normalize_tag("O") == "O"
    for bad in ["", "B", "B-", "X-PER", "BPER", "b-PER", "o", "B_PER"]:
        with pytest.raises(ValueError, match="invalid tag"):
            normalize_tag(bad)


def test_build_labels_and_defaults():
    assert DEFAULT_LABELS == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
    assert build_labels(["PER"], "BIOES") == ["O", "B-PER", "I-PER", "E-PER", "S-PER"]
    assert label_types(build_labels(DEFAULT_TYPES, "BIOES")) == list(DEFAULT_TYPES)
    with pytest.raises(ValueError):
        build_labels(["PER", "PER"])
    with pytest.raises(ValueError, match="scheme"):
        build_labels(["PER"], "IOB1")  # type: ignore[arg-type]


def test_spans_to_tags_rejects_bad_spans():
    with pytest.raises(ValueError, match="overlaps"):
        spans_to_tags([Span(0, 2, "PER"), Span(1, 3, "LOC")], 4)
    with pytest.raises(ValueError, match="exceeds"):
        spans_to_tags([Span(2, 5, "PER")], 4)
    with pytest.raises(ValueError):
        Span(3, 3, "PER")


def test_alias_module_is_the_same_implementation():
    assert alias.tags_to_spans is tags_to_spans
    assert set(alias.__all__) >= {"Span", "normalize_tag", "repair_orphans", "DEFAULT_LABELS"}
