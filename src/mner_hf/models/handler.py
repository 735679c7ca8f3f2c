"""Inference Endpoints handler for an mner_hf checkpoint (copied into every saved folder).

The Inference Endpoints service imports ``handler.py`` from the repository root, builds
``EndpointHandler(path)`` once and calls it with the decoded JSON body of every request::

    {"inputs": "Messi scores in Paris"}                                   # text only
    {"inputs": {"text": "...", "images": ["<base64>", "data:image/jpeg;base64,...",
                                          "https://host/img.jpg"]},
     "parameters": {"too_many_images": "truncate", "timeout": 5}}
    {"inputs": [{"tokens": ["Messi", "scores"]}, {"text": "..."}]}         # a batch

Images are base64 strings (plain or ``data:`` URIs) or http(s) URLs; local paths are refused (a
server must not read its own files on request). An image URL must be downloaded within
``timeout`` seconds IN TOTAL (default 10, at most :data:`MAX_TIMEOUT`) and be at most 32 MiB, so a
slow or endless server cannot hold the endpoint. Parameters: ``timeout`` (seconds, a number in
(0, 60]), ``too_many_images`` (``"error"`` | ``"truncate"``), ``batch_size`` (an integer in
1..:data:`MAX_BATCH_SIZE`).

The reply is the pipeline's entity list (a list of lists for a batch). Bad input returns an error
payload instead of raising, ``{"error": message, "status_code": 400 | 422}``, decided as follows:

* 400, a malformed request (checked here, before the model runs): a body that is not an object
  with ``inputs``; unknown fields, post keys or parameters; wrong JSON types (``inputs`` not a
  string / object / non-empty list, ``text`` not a string, ``tokens`` not a list of strings, both
  or neither of ``text`` / ``tokens``, ``images`` not a list of strings); parameter values out of
  range; an image that is neither valid base64 nor an http(s) URL.
* 422, a well-formed post the model cannot tag (every ``ValueError`` of the pipeline): empty text
  or tokens, a lone surrogate (invalid Unicode, position given), text too long, too many images,
  decoded data that is not a readable image, an unreachable, too slow or too large image URL.

In a batch the message starts with ``inputs[i]:``, the post at fault. Anything else is a server
fault and raises (the service answers 500).

This file is loaded as a top-level module, so it imports nothing from the checkpoint folder; it
builds the checkpoint's own ``multimodal-ner`` pipeline with ``trust_remote_code=True``.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from transformers import pipeline

_PARAMETERS = frozenset({"timeout", "too_many_images", "batch_size"})
_POST_KEYS = frozenset({"text", "tokens", "images"})
#: Largest ``timeout`` parameter accepted (seconds per image URL download).
MAX_TIMEOUT = 60.0
#: Largest ``batch_size`` parameter accepted.
MAX_BATCH_SIZE = 64
_POST_INDEX = re.compile(r"^post (\d+): ")


class RequestError(ValueError):
    """A request the handler refuses; ``status_code`` is the HTTP status to answer with."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


def _decode_image(value: Any, where: str) -> Any:
    if not isinstance(value, str):
        raise RequestError(f"{where}: images must be base64 strings or http(s) URLs, got {type(value).__name__}")
    if value[:8].lower().startswith(("http://", "https://")) or value[:5].lower() == "data:":
        return value  # the pipeline fetches URLs (with a timeout) and decodes data: URIs
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(f"{where}: not valid base64 and not an http(s) URL ({exc})") from exc


def _parse_post(post: Any, where: str) -> Any:
    if isinstance(post, str):
        return {"text": post}
    if not isinstance(post, dict):
        raise RequestError(f"{where}: a post is a string or an object with 'text'/'tokens' and 'images'")
    unknown = set(post) - _POST_KEYS
    if unknown:
        raise RequestError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(_POST_KEYS)})")
    text, tokens = post.get("text"), post.get("tokens")
    if (text is None) == (tokens is None):
        raise RequestError(f"{where}: a post needs exactly one of 'text' (a string) or 'tokens' (a list of strings)")
    if text is not None and not isinstance(text, str):
        raise RequestError(f"{where}: 'text' must be a string, got {type(text).__name__}")
    if tokens is not None and (not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens)):
        raise RequestError(f"{where}: 'tokens' must be a list of strings")
    parsed = dict(post)
    images = post.get("images")
    if images is not None:
        if isinstance(images, str):
            images = [images]
        if not isinstance(images, list):
            raise RequestError(f"{where}: 'images' must be a list of base64 strings or URLs")
        parsed["images"] = [_decode_image(img, f"{where}, image {i}") for i, img in enumerate(images)]
    return parsed


def parse_request(data: Any) -> tuple[Any, dict[str, Any], bool]:
    """Request body -> (pipeline input, pipeline parameters, is_batch); raises :class:`RequestError`."""
    if not isinstance(data, dict) or "inputs" not in data:
        raise RequestError("the request body must be a JSON object with an 'inputs' field")
    unknown = set(data) - {"inputs", "parameters"}
    if unknown:
        raise RequestError(f"unknown fields {sorted(unknown)} (allowed: inputs, parameters)")
    params = data.get("parameters")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise RequestError("'parameters' must be an object")
    bad = set(params) - _PARAMETERS
    if bad:
        raise RequestError(f"unknown parameters {sorted(bad)} (allowed: {sorted(_PARAMETERS)})")
    timeout = params.get("timeout")
    if timeout is not None and (
        not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= MAX_TIMEOUT
    ):
        raise RequestError(f"parameter 'timeout' must be a number of seconds in (0, {MAX_TIMEOUT:g}], got {timeout!r}")
    policy = params.get("too_many_images")
    if policy is not None and policy not in ("error", "truncate"):
        raise RequestError(f"parameter 'too_many_images' must be 'error' or 'truncate', got {policy!r}")
    size = params.get("batch_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_BATCH_SIZE):
        raise RequestError(f"parameter 'batch_size' must be an integer in 1..{MAX_BATCH_SIZE}, got {size!r}")
    inputs = data["inputs"]
    if isinstance(inputs, list):
        if not inputs:
            raise RequestError("'inputs' is an empty list")
        return [_parse_post(p, f"inputs[{i}]") for i, p in enumerate(inputs)], params, True
    return _parse_post(inputs, "inputs"), params, False


class EndpointHandler:
    """Custom handler: ``EndpointHandler(path)(data) -> list | dict`` (see the module docstring)."""

    def __init__(self, path: str = "", device: int | str | None = None) -> None:
        self.pipeline = pipeline(task="multimodal-ner", model=path or ".", trust_remote_code=True, device=device)

    def __call__(self, data: dict[str, Any]) -> list[Any] | dict[str, Any]:
        try:
            inputs, params, is_batch = parse_request(data)
        except RequestError as exc:
            return {"error": str(exc), "status_code": exc.status_code}
        try:
            return self.pipeline(inputs, **params)
        except ValueError as exc:
            # The request is well formed (checked above): the pipeline's MNERInputError, the image
            # loader's and the processor's ValueErrors describe a post the model cannot tag.
            message = str(exc)
            if is_batch:
                message = _POST_INDEX.sub(lambda m: f"inputs[{m.group(1)}]: ", message)
            return {"error": message, "status_code": 422}
