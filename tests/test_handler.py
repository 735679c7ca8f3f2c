"""Inference Endpoints handler: called the way the service calls it (import handler.py from the
checkpoint folder, EndpointHandler(path), handler(json body)), base64 images, 4xx error payloads
exactly as the docstring promises (400 malformed request, 422 a post the model cannot tag), bounded
URL downloads, and fuzzing with generated bodies."""

from __future__ import annotations

import base64
import importlib.util
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkpoint_factory import SAMPLE_IMAGES, TEXT, assert_same_entities, build_checkpoint, closed_port
from http_servers import serve


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = build_checkpoint("tpm_mi", tmp_path_factory)
    # what the service does: load <repository>/handler.py as a top-level module, build it once
    spec = importlib.util.spec_from_file_location("handler", folder / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EndpointHandler(str(folder)), folder


def _b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def request(handler, body: dict):
    """Round-trip the body through JSON like the HTTP layer, and the reply too."""
    reply = handler(json.loads(json.dumps(body)))
    return json.loads(json.dumps(reply))


def test_handler_answers_like_the_pipeline(served):
    handler, _ = served
    pipe = handler.pipeline
    images = SAMPLE_IMAGES[:2]
    got = request(handler, {"inputs": {"text": TEXT, "images": [_b64(p) for p in images]}})
    assert_same_entities(got, pipe({"text": TEXT, "images": [str(p) for p in images]}))
    assert request(handler, {"inputs": TEXT}) == json.loads(json.dumps(pipe(TEXT)))
    uri = "data:image/jpeg;base64," + _b64(images[0])
    batch = request(handler, {"inputs": [{"tokens": TEXT.split(), "images": [uri]}, "second post"],
                              "parameters": {"batch_size": 2}})
    assert_same_entities(batch, [pipe({"text": TEXT, "images": [str(images[0])]}), pipe("second post")])
    # too_many_images parameter reaches the pipeline
    four = [_b64(p) for p in SAMPLE_IMAGES[:4]]
    kept = request(handler, {"inputs": {"text": TEXT, "images": four}, "parameters": {"too_many_images": "truncate"}})
    assert_same_entities(kept, pipe({"text": TEXT, "images": [str(p) for p in SAMPLE_IMAGES[:3]]}))


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"text": "no inputs key"}, 400, "'inputs' field"),
        ({"inputs": []}, 400, "empty list"),
        ({"inputs": 5}, 400, "a post is a string or an object"),
        ({"inputs": {"text": "hi", "image": []}}, 400, "unknown keys"),
        ({"inputs": "hi", "parameters": {"top_k": 3}}, 400, "unknown parameters"),
        ({"inputs": {"text": "hi", "images": ["%%% not base64 %%%"]}}, 400, "image 0: not valid base64"),
        ({"inputs": {"text": "hi", "images": [7]}}, 400, "images must be base64 strings"),
        ({"inputs": ""}, 422, "empty text"),
        ({"inputs": "word " * 200}, 422, "text too long"),
        ({"inputs": {"text": "hi", "images": [base64.b64encode(b"plain text, not an image").decode()]}},
         422, "not a readable image"),
        ({"inputs": {"text": "hi", "images": [base64.b64encode(SAMPLE_IMAGES[0].read_bytes()[:200]).decode()]}},
         422, "not a readable image"),
        ({"inputs": {"text": "hi", "images": ["x"] * 0 + [None]}}, 400, "images must be base64 strings"),
        ({"inputs": {"text": "hi", "images": [base64.b64encode(b"x").decode()] * 5}}, 422, "at most 3"),
        # wrong JSON types are 400 (the docstring's "malformed request"), found before the model runs
        ({"inputs": {"text": 5}}, 400, "'text' must be a string, got int"),
        ({"inputs": {"tokens": "not a list"}}, 400, "'tokens' must be a list of strings"),
        ({"inputs": {"tokens": ["a", 3]}}, 400, "'tokens' must be a list of strings"),
        ({"inputs": {"text": "hi", "tokens": ["hi"]}}, 400, "exactly one of 'text'"),
        ({"inputs": {"images": []}}, 400, "exactly one of 'text'"),
        ({"inputs": [{"text": "ok"}, {"text": None}]}, 400, "inputs[1]: a post needs exactly one"),
        ({"inputs": "hi", "parameters": {"timeout": "5"}}, 400, "'timeout' must be a number of seconds in (0, 60]"),
        ({"inputs": "hi", "parameters": {"timeout": 0}}, 400, "'timeout' must be a number"),
        ({"inputs": "hi", "parameters": {"timeout": 3600}}, 400, "'timeout' must be a number"),
        ({"inputs": "hi", "parameters": {"timeout": True}}, 400, "'timeout' must be a number"),
        ({"inputs": "hi", "parameters": {"too_many_images": "drop"}}, 400, "'too_many_images' must be 'error' or"),
        ({"inputs": "hi", "parameters": {"batch_size": "2"}}, 400, "'batch_size' must be an integer in 1..64"),
        ({"inputs": "hi", "parameters": {"batch_size": 0}}, 400, "'batch_size' must be an integer"),
        ({"inputs": "hi", "parameters": []}, 400, "'parameters' must be an object"),
        # well-formed posts the model cannot tag are 422; a batch names the post at fault
        ({"inputs": {"tokens": []}}, 422, "empty 'tokens'"),
        ({"inputs": {"tokens": ["ok", ""]}}, 422, "token 1 is empty"),
        ({"inputs": "caf\udce9 au lait"}, 422, "lone surrogate U+DCE9 at character 3"),
        ({"inputs": ["fine", {"text": "  "}], "parameters": {"batch_size": 2}}, 422, "inputs[1]: empty text"),
        ({"inputs": ["fine", "two", {"tokens": ["x\ud800"]}]}, 422, "inputs[2]: token 0 holds a lone surrogate"),
    ],
)
def test_bad_requests_get_4xx_payloads(served, body, status, message):
    handler, _ = served
    reply = request(handler, body)
    assert isinstance(reply, dict) and reply["status_code"] == status, reply
    assert message in reply["error"]


def test_unreachable_image_url_is_422(served):
    handler, _ = served
    reply = request(handler, {"inputs": {"text": "hi", "images": [f"http://127.0.0.1:{closed_port()}/a.jpg"]},
                              "parameters": {"timeout": 3}})
    assert reply["status_code"] == 422 and "could not fetch image URL" in reply["error"]


def test_trickling_image_url_is_cut_at_the_timeout(served):
    handler, _ = served
    with serve("trickle_body", payload=SAMPLE_IMAGES[0].read_bytes(), interval=0.05) as server:
        start = time.monotonic()
        reply = request(handler, {"inputs": {"text": "hi", "images": [server.url]}, "parameters": {"timeout": 1}})
        assert time.monotonic() - start < 3.0
    assert reply["status_code"] == 422 and "took longer than the limit of 1 s" in reply["error"], reply


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 300) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_word = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(["\ud800", " "]), max_size=6)
_post = st.one_of(
    _word,
    st.fixed_dictionaries({"text": _word | _json}),
    st.fixed_dictionaries({"tokens": st.lists(_word, max_size=4) | _json}),
    st.fixed_dictionaries({"text": _word, "images": st.lists(st.sampled_from(["", "aGk=", "%%", "data:x"]) | _json, max_size=2)}),
    _json,
)
_body = st.one_of(
    st.fixed_dictionaries({"inputs": _post | st.lists(_post, max_size=3)},
                          optional={"parameters": st.dictionaries(st.sampled_from(["timeout", "batch_size", "too_many_images", "x"]), _json, max_size=2)}),
    _json,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=_body)
def test_fuzzed_bodies_get_a_result_or_a_4xx_payload(served, body):
    handler, _ = served
    start = time.monotonic()
    reply = request(handler, body)  # never raises: a result, or the documented error payload
    assert time.monotonic() - start < 10.0
    if isinstance(reply, dict):
        assert set(reply) == {"error", "status_code"} and reply["status_code"] in (400, 422), reply
        assert reply["error"].strip()
    else:
        assert isinstance(reply, list)
