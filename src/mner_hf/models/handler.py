"""Inference Endpoints handler for an mner_hf checkpoint (copied into every saved folder).

The Inference Endpoints service imports ``handler.py`` from the repository root, builds
``EndpointHandler(path)`` once and calls it with the decoded JSON body of every request::

    {"inputs": "Messi scores in Paris"}                                   # text only
    {"inputs": {"text": "...", "images": ["<base64>", "data:image/jpeg;base64,...",
                                          "https://host/img.jpg"]},
     "parameters": {"too_many_images": "truncate", "timeout": 5}}
    {"inputs": [{"tokens": ["Messi", "scores"]}, {"text": "..."}]}         # a batch

Images are base64 strings (plain or ``data:`` URIs) or http(s) URLs; local paths are refused (a
server must not read its own files on request). The reply is the pipeline's entity list (a list
of lists for a batch). Bad input returns an error payload instead of raising:
``{"error": message, "status_code": 400 | 422}`` (400: malformed request -- missing ``inputs``,
wrong types, unknown parameters, bad base64; 422: a well-formed post the model cannot tag --
empty text, text too long, too many images, corrupt or non-image data, unreachable URL).
Anything else is a server fault and raises (the service answers 500).

This file is loaded as a top-level module, so it imports nothing from the checkpoint folder; it
builds the checkpoint's own ``multimodal-ner`` pipeline with ``trust_remote_code=True``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from transformers import pipeline

_PARAMETERS = frozenset({"timeout", "too_many_images", "batch_size"})
_POST_KEYS = frozenset({"text", "tokens", "images"})


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
    params = data.get("parameters") or {}
    if not isinstance(params, dict):
        raise RequestError("'parameters' must be an object")
    bad = set(params) - _PARAMETERS
    if bad:
        raise RequestError(f"unknown parameters {sorted(bad)} (allowed: {sorted(_PARAMETERS)})")
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
            inputs, params, _ = parse_request(data)
            return self.pipeline(inputs, **params)
        except RequestError as exc:
            return {"error": str(exc), "status_code": exc.status_code}
        except (ValueError, TypeError) as exc:
            # The pipeline's MNERInputError (a ValueError) and the processor's ValueError / TypeError
            # describe a post it cannot tag; parameter type mistakes land here too.
            status = 422 if type(exc).__name__ in {"MNERInputError", "ImageLoadError"} else 400
            return {"error": str(exc), "status_code": status}
