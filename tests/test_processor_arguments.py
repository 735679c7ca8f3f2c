"""MNERProcessor.__call__ argument validation (issue 10): a bare string for ``words``, a non-image
``images``, lone surrogates in text or words -- each a clear error naming the post, never a silent
wrong result or a tokenizer-internal TypeError; fuzzing: any argument gives a result or a
ValueError / TypeError with a message."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from checkpoint_factory import tiny_tokenizer
from mner_hf.models.processing_mner import MNERProcessor, find_lone_surrogate
from transformers import CLIPImageProcessorPil


@pytest.fixture(scope="module")
def proc(tmp_path_factory) -> MNERProcessor:
    tok = tiny_tokenizer(tmp_path_factory.mktemp("vocab"))
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8})
    return MNERProcessor(image_processor, tok, max_length=32)


def test_bare_string_words_is_an_error(proc):
    # before: words="hello" was read as five one-letter words and tagged
    with pytest.raises(TypeError, match="got one string: use text= for raw text"):
        proc(words="hello")
    with pytest.raises(TypeError, match=r"post 1: words must be a list of strings, got str \(use text="):
        proc(words=[["good", "post"], "hello"])
    with pytest.raises(TypeError, match="words= takes a list of strings .* got int"):
        proc(words=5)
    with pytest.raises(TypeError, match="text= takes a string .* got int"):
        proc(text=5)
    # the accepted forms still agree: one post as a list, a batch as a list of lists, raw text
    one = proc(words=["hello", "world"], return_tensors="np")
    batch = proc(words=[["hello", "world"]], return_tensors="np")
    text = proc(text="hello world", return_tensors="np")
    assert one["num_words"] == batch["num_words"] == text["num_words"] == [2]
    assert np.array_equal(one["input_ids"], text["input_ids"])


def test_images_of_the_wrong_type_get_a_clear_message(proc):
    with pytest.raises(TypeError, match=r"images must be an image \(path, bytes, PIL image.* or a list of images, got int"):
        proc(text="hello", images=5)
    with pytest.raises(TypeError, match=r"post 1: images must be an image .* got float"):
        proc(text=["hello", "world"], images=[None, 2.5])
    with pytest.raises(ValueError, match="for a batch of 2 posts, images must be a list of 2 entries"):
        proc(text=["hello", "world"], images=7)
    with pytest.raises(ValueError, match=r"post 0: <int>: unsupported image source type int"):
        proc(text="hello", images=[5])
    # valid forms: one image alone, a list, a batch with None
    red = Image.new("RGB", (10, 10), (255, 0, 0))
    assert proc(text="hello", images=red)["image_mask"].tolist() == [[1]]
    assert proc(text=["a", "b"], images=[None, [red, red]])["image_mask"].tolist() == [[0, 0], [1, 1]]


def test_lone_surrogates_name_post_and_character(proc):
    assert find_lone_surrogate("ok \ud83d\ude00") == 3  # a surrogate PAIR written as two escapes is invalid too
    assert find_lone_surrogate("ok \U0001F600") == -1  # the real code point is fine
    with pytest.raises(ValueError, match=r"post 1: text holds a lone surrogate U\+DC80 at character 6"):
        proc(text=["fine text", "hello \udc80 world"])
    with pytest.raises(ValueError, match=r"post 0, word 1: lone surrogate U\+D800 at character 2 of the word"):
        proc(words=["fine", "ab\ud800"])
    with pytest.raises(ValueError, match=r"post 2, word 0: lone surrogate U\+DFFF at character 0"):
        proc(words=[["a"], ["b"], ["\udfff"]])


_scalar = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=True) | st.text(max_size=6)
_value = st.recursive(_scalar, lambda c: st.lists(c, max_size=3) | st.tuples(c, c), max_leaves=8)
_words = st.lists(st.text(st.characters(codec="utf-8") | st.sampled_from(["\ud800", " ", "\u200b"]), max_size=5), max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["text", "words"]),
    value=_value | _words | st.lists(_words, max_size=3) | st.text(max_size=12),
    images=st.none() | _value | st.sampled_from([[b"not an image"], [Image.new("RGB", (4, 4))], [[]]]),
    tags=st.none() | _value,
)
def test_fuzzed_arguments_give_a_result_or_a_value_or_type_error(proc, kind, value, images, tags):
    try:
        out = proc(**{kind: value}, images=images, tags=tags, return_tensors="np")
    except (ValueError, TypeError) as exc:  # the documented errors (ImageLoadError is a ValueError)
        assert str(exc).strip()
        return
    n = len(out["num_words"])
    assert out["input_ids"].shape[0] == out["image_mask"].shape[0] == n >= 1
    assert all(w >= 1 for w in out["num_words"])
