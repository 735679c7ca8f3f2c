"""Property-based fuzzing of the readers: on any bytes, a reader yields posts or raises its own
documented error (:class:`MNERFormatError`, file:line), never another exception, in bounded time."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mner_hf.readers import MNERFormatError, ReadReport, read_cmner, read_jsonl, read_twitter

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

PIECES = ["IMGID:", "WID:", "1", "a", "\t", "\n", "\r", "\r\n", " ", "\u00a0", "\u3000", "\u2028", "\x85",
          "B-PER", "I-LOC", "O", "B-OTHER", "S-PER", "B-", "-", "我", "\U0001F600", "\ufeff", "../", "x.jpg"]
block_text = st.lists(st.sampled_from(PIECES), max_size=60).map("".join)
raw_bytes = st.one_of(block_text.map(lambda t: t.encode("utf-8")), st.binary(max_size=200),
                      st.tuples(block_text, st.binary(max_size=8)).map(lambda t: t[0].encode() + t[1]))

json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=5),
              st.sampled_from(["\ud800", "../x.jpg", "/etc/passwd", "\u00a0", "B-PER", "O", ""])),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)),
    max_leaves=10,
)
row = st.fixed_dictionaries(
    {}, optional={"id": json_value, "text": json_value, "label": json_value, "images": json_value, "url": json_value}
)
jsonl_bytes = st.one_of(
    st.lists(row, max_size=4).map(lambda rows: "\n".join(json.dumps(r) for r in rows).encode("utf-8")),
    raw_bytes,
)


def _read_all(reader, data: bytes, **kwargs) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.txt"
        path.write_bytes(data)
        (Path(tmp) / "images").mkdir()
        report = ReadReport()
        try:
            posts = list(reader(path, Path(tmp) / "images", image_policy="placeholder", report=report, **kwargs))
        except MNERFormatError as err:
            assert str(err).startswith(f"{path}:") and len(str(err)) < 1000
            return
        assert posts and len(posts) == report.posts
        for post in posts:
            assert post.tokens and len(post.tokens) == len(post.tags) and all(t != "" for t in post.tokens)
            assert all(tag == "O" or tag[:2] in ("B-", "I-") for tag in post.tags)


@FUZZ
@given(raw_bytes)
def test_fuzz_twitter(data):
    _read_all(read_twitter, data)


@FUZZ
@given(raw_bytes)
def test_fuzz_cmner(data):
    _read_all(read_cmner, data)


@FUZZ
@given(jsonl_bytes)
def test_fuzz_jsonl(data):
    _read_all(read_jsonl, data)
