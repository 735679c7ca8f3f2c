"""Inference Endpoints handler: called the way the service calls it (import handler.py from the
checkpoint folder, EndpointHandler(path), handler(json body)), base64 images, 4xx error payloads."""

from __future__ import annotations

import base64
import importlib.util
import json

import pytest

from checkpoint_factory import SAMPLE_IMAGES, TEXT, assert_same_entities, build_checkpoint, closed_port


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
