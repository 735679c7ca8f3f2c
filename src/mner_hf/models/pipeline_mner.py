"""``multimodal-ner`` pipeline: tag a post (text + 0..N images) with entity spans.

This module travels with every checkpoint (``custom_pipelines`` in ``config.json``), so it imports
only from its own folder (relatively) plus torch, transformers, PIL and the standard library.

Usage::

    from transformers import pipeline
    tagger = pipeline(model="path/to/checkpoint", trust_remote_code=True)
    tagger({"text": "Messi scores again in Paris", "images": ["a.jpg", "https://host/b.jpg"]})
    # [{"entity_group": "PER", "score": 0.97, "word": "Messi", "start": 0, "end": 5,
    #   "word_indices": [0], "words": ["Messi"]}, ...]

Inputs (one post, or a list of posts for batched inference):

* ``{"text": str}`` -- raw text, split into words by the processor; character offsets point
  into this text; or ``{"tokens": [str, ...]}`` -- pre-split words; offsets point into
  ``" ".join(tokens)`` (the string returned as ``word`` is built the same way);
* ``"images"`` (optional): a list (or one item) of local paths, ``http(s)://`` URLs (each download
  bounded in total time by ``timeout`` and in size by ``max_image_bytes``), ``data:image/...;base64,``
  URIs, raw ``bytes`` or PIL images, in post order (the order carries meaning: the models have a
  temporal position embedding);
* a bare ``str`` is shorthand for ``{"text": str}``; an empty list gives an empty list.

Output per post: a list of entity dicts, like the ``token-classification`` pipeline's aggregated
output: ``entity_group`` (type), ``score``, ``word`` (the entity's text), ``start`` / ``end``
(character offsets, end exclusive), ``word_indices`` (indices of the words of the entity) and
``words`` (those words).

Score: the mean, over the words of the span, of the CRF posterior marginal
p(tag_w = predicted tag_w | post) computed by forward-backward (``return_marginals=True``). It is
the model's own probability for each tag of the Viterbi path, so 1.0 means every word's tag is
certain and a low score flags spans the CRF hesitated on.

Bad input raises :class:`MNERInputError` (a ``ValueError``) whose message says which input/image
and what is wrong (for a list of posts it starts with ``post <index>:``): empty text, empty or
non-string tokens, a lone surrogate (invalid Unicode; its character position is given), unknown
keys, an image that is not an image / corrupt bytes / missing file, an unreachable, too slow or too
large URL, more images than the model takes (unless ``too_many_images="truncate"``), and text
longer than the model's maximum length.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from PIL import Image
from transformers import AutoModelForTokenClassification, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .image_loading import DEFAULT_MAX_DOWNLOAD_BYTES, DEFAULT_URL_TIMEOUT, ImageLoadError, download_url, load_image
from .labels import tags_to_spans
from .precision import PrecisionChoice, resolve_precision
from .processing_mner import find_lone_surrogate, split_words

logger = logging.getLogger(__name__)

__all__ = [
    "MNERInputError",
    "MultimodalNERPipeline",
    "TASK_NAME",
    "fetch_url",
    "open_post_image",
    "register_pipeline",
    "spans_with_scores",
]

TASK_NAME = "multimodal-ner"
#: Seconds allowed for each image URL download in total, connect to last byte (parameter ``timeout``).
DEFAULT_TIMEOUT = DEFAULT_URL_TIMEOUT
#: Largest image download accepted from a URL in bytes (parameter ``max_image_bytes``).
MAX_DOWNLOAD_BYTES = DEFAULT_MAX_DOWNLOAD_BYTES
_INPUT_KEYS = frozenset({"text", "tokens", "images"})
_TOO_MANY = ("error", "truncate")


class MNERInputError(ValueError):
    """A post given to the pipeline is malformed; the message names the post field / image."""


def fetch_url(url: str, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = MAX_DOWNLOAD_BYTES) -> bytes:
    """Download ``url`` (http/https) within ``timeout`` seconds in total and ``max_bytes`` bytes.

    See :func:`.image_loading.download_url` (the limits cover the whole download, not each read).

    Raises:
        MNERInputError: unreachable host, HTTP error status, timeout, or a body over ``max_bytes``.
    """
    try:
        return download_url(url, timeout=timeout, max_bytes=max_bytes)
    except ImageLoadError as exc:
        raise MNERInputError(f"could not fetch image URL {url}: {exc.reason}") from exc


def open_post_image(
    source: Any,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Open one image given as a path, URL, ``data:`` URI, bytes or PIL image; returns RGB.

    ``draft_size``: decode JPEGs at reduced scale, never below this (width, height)
    (:func:`.image_loading.load_image`).

    Decoding (EXIF orientation, RGB conversion, decompression-bomb limit) is
    :func:`.image_loading.load_image`'s.

    Raises:
        MNERInputError: the source cannot be fetched or decoded (the message names it).
    """
    if isinstance(source, str):
        lowered = source[:16].lower()
        if lowered.startswith(("http://", "https://")):
            source = fetch_url(source, timeout=timeout, max_bytes=max_bytes)
        elif lowered.startswith("data:"):
            header, _, payload = source.partition(",")
            if ";base64" not in header:
                raise MNERInputError("data: URI images must be base64 encoded (data:image/...;base64,...)")
            try:
                source = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise MNERInputError(f"data: URI image is not valid base64: {exc}") from exc
        elif not os.path.exists(source):
            raise MNERInputError(f"image file not found: {source}")
    elif not isinstance(source, (bytes, bytearray, memoryview, Image.Image)):
        raise MNERInputError(
            f"unsupported image type {type(source).__name__}: give a path, URL, bytes or PIL image"
        )
    try:
        return load_image(source, draft_size=draft_size)
    except ImageLoadError as exc:
        raise MNERInputError(f"not a readable image: {exc}") from exc


def spans_with_scores(
    tags: Sequence[str],
    tag_probs: Sequence[float],
    words: Sequence[str],
    offsets: Sequence[tuple[int, int]],
    text: str,
) -> list[dict[str, Any]]:
    """Entity dicts of one post from its predicted word tags.

    Args:
        tags: (W,) predicted BIO tag per word.
        tag_probs: (W,) CRF marginal probability of each predicted tag.
        words: (W,) the words; offsets: (W,) (start, end) character offsets into ``text``.

    Returns:
        One dict per entity (see the module docstring); score = mean of ``tag_probs`` over the span.
    """
    entities = []
    for span in tags_to_spans(list(tags)):
        start, end = offsets[span.start][0], offsets[span.end - 1][1]
        probs = [float(p) for p in tag_probs[span.start : span.end]]
        entities.append(
            {
                "entity_group": span.type,
                "score": sum(probs) / len(probs),
                "word": text[start:end],
                "start": start,
                "end": end,
                "word_indices": list(range(span.start, span.end)),
                "words": list(words[span.start : span.end]),
            }
        )
    return entities


def _as_image_list(images: Any) -> list[Any]:
    if images is None:
        return []
    if isinstance(images, (str, bytes, bytearray, memoryview, Image.Image)):
        return [images]
    if isinstance(images, (list, tuple)):
        return list(images)
    raise MNERInputError(
        f"'images' must be a list of paths, URLs, bytes or PIL images, got {type(images).__name__}"
    )


def _normalise_post(inputs: Any) -> dict[str, Any]:
    """Validate one post: returns ``{"text", "words" or None, "images"}`` (images not yet opened)."""
    if isinstance(inputs, str):
        inputs = {"text": inputs}
    if not isinstance(inputs, dict):
        raise MNERInputError(
            f"a post must be a dict with 'text' or 'tokens' (and optional 'images'), got {type(inputs).__name__}"
        )
    unknown = set(inputs) - _INPUT_KEYS
    if unknown:
        raise MNERInputError(f"unknown keys {sorted(unknown)}; a post has 'text' or 'tokens', and 'images'")
    has_text, has_tokens = inputs.get("text") is not None, inputs.get("tokens") is not None
    if has_text == has_tokens:
        raise MNERInputError("a post needs exactly one of 'text' (a string) or 'tokens' (a list of words)")
    if has_text:
        text = inputs["text"]
        if not isinstance(text, str):
            raise MNERInputError(f"'text' must be a string, got {type(text).__name__}")
        if not text.strip():
            raise MNERInputError("empty text: the post has no word to tag")
        bad = find_lone_surrogate(text)
        if bad >= 0:
            raise MNERInputError(
                f"'text' holds a lone surrogate U+{ord(text[bad]):04X} at character {bad} "
                "(invalid Unicode: fix how the text was decoded)"
            )
        words = None
    else:
        tokens = inputs["tokens"]
        if isinstance(tokens, str) or not isinstance(tokens, (list, tuple)):
            raise MNERInputError("'tokens' must be a list of strings (use 'text' for a raw string)")
        if not tokens:
            raise MNERInputError("empty 'tokens': the post has no word to tag")
        for i, tok in enumerate(tokens):
            if not isinstance(tok, str) or tok == "":  # a whitespace token (U+00A0) is a word, as in the data
                raise MNERInputError(f"token {i} is empty or not a string: {tok!r}")
            bad = find_lone_surrogate(tok)
            if bad >= 0:
                raise MNERInputError(
                    f"token {i} holds a lone surrogate U+{ord(tok[bad]):04X} at character {bad} of the token "
                    "(invalid Unicode: fix how the text was decoded)"
                )
        words = list(tokens)
        text = " ".join(words)
    return {"text": text, "words": words, "images": _as_image_list(inputs.get("images"))}


def _token_offsets(words: Sequence[str]) -> list[tuple[int, int]]:
    """Character offsets of ``words`` inside ``" ".join(words)``."""
    offsets, pos = [], 0
    for w in words:
        offsets.append((pos, pos + len(w)))
        pos += len(w) + 1
    return offsets


class MultimodalNERPipeline(Pipeline):
    """Named entity recognition for posts with text and 0..N images (TPM-MI, MGIPS-CL, BERT-CRF).

    Built by ``transformers.pipeline(model=folder, trust_remote_code=True)`` (task
    ``multimodal-ner``) or directly as ``MultimodalNERPipeline(model=model, processor=processor)``
    with an ``MNERProcessor``. See the module docstring for inputs, outputs and the score.

    Call parameters:
        timeout: seconds allowed for each image URL download IN TOTAL, from connecting to the last
            byte (default 10; a server trickling bytes cannot hold the pipeline longer).
        max_image_bytes: largest body accepted from an image URL (default 32 MiB); bigger
            downloads are refused as soon as the size is known.
        too_many_images: ``"error"`` (default) or ``"truncate"`` (keep the first ``max_images``,
            logging a warning) for posts with more images than the model takes.
        batch_size: posts per forward pass for list inputs (padding by the processor).
        precision: ``"auto"`` (default: bf16 autocast on CUDA with bf16 and on CPUs that report
            AVX512-BF16 or AMX, fp32 otherwise), ``"fp32"``, ``"bf16"`` or ``"fp16"``; also accepted
            by ``pipeline(..., precision=...)``. ``pipe.precision`` says what runs and why.

    Throughput (list inputs): the images of the next ``2 * batch_size`` posts are opened, decoded
    (JPEGs at reduced scale when the processor's target size allows) and preprocessed in a pool of
    :attr:`decode_threads` threads while the model runs; the vision encoder runs once per batch over
    all real images of its posts; CNN vision encoders get channels-last weights (oneDNN's fast layout).
    """

    #: threads that open and encode images ahead of the model (None: min(4, CPU count))
    decode_threads: int | None = None
    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.processor is None or not hasattr(self.processor, "encode_example"):
            raise ValueError(
                "MultimodalNERPipeline needs the checkpoint's MNERProcessor (processor_config.json); "
                f"got {type(self.processor).__name__}"
            )
        self.model.eval()
        if any(isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1) for m in self.model.modules()):
            # oneDNN runs convolutions about 2x faster on NHWC (channels-last) weights (MobileNetV2)
            self.model.to(memory_format=torch.channels_last)

    @property
    def uses_images(self) -> bool:
        """False for text-only checkpoints (BERT-CRF): their images are validated but not used."""
        return int(getattr(self.model.config, "max_images", 0) or 0) > 0

    @property
    def max_images(self) -> int:
        """Images per post the model takes (0 for a text-only model)."""
        return int(self.processor.max_images) if self.uses_images else 0

    @property
    def precision(self) -> PrecisionChoice:
        """The precision of the forward pass (``"auto"`` resolved for this pipeline's device)."""
        choice = getattr(self, "_precision", None)
        if choice is None:
            choice = self._precision = resolve_precision("auto", self.device)
            logger.info("multimodal-ner precision: %s", choice)
        return choice

    def _sanitize_parameters(
        self,
        timeout: float | None = None,
        too_many_images: str | None = None,
        precision: str | None = None,
        max_image_bytes: int | None = None,
        **kwargs: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if kwargs:
            raise TypeError(f"unknown multimodal-ner parameters {sorted(kwargs)}")
        forward: dict[str, Any] = {}
        if precision is not None:
            forward["precision"] = resolve_precision(precision, self.device)
            if getattr(self, "_precision", None) is None:  # pipeline(..., precision=...) sets the default
                self._precision = forward["precision"]
        preprocess: dict[str, Any] = {}
        if timeout is not None:
            if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
                raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
            preprocess["timeout"] = float(timeout)
        if max_image_bytes is not None:
            if not isinstance(max_image_bytes, int) or isinstance(max_image_bytes, bool) or max_image_bytes < 1:
                raise ValueError(f"max_image_bytes must be a positive integer, got {max_image_bytes!r}")
            preprocess["max_image_bytes"] = max_image_bytes
        if too_many_images is not None:
            if too_many_images not in _TOO_MANY:
                raise ValueError(f"too_many_images must be one of {_TOO_MANY}, got {too_many_images!r}")
            preprocess["too_many_images"] = too_many_images
        return preprocess, forward, {}

    def preprocess(self, inputs: Any, **params: Any) -> dict[str, Any]:
        """One post -> ``{"features": encode_example output (unpadded), "meta": {...}}``; ``params``
        as :meth:`_prepare_post` takes them (``timeout``, ``too_many_images``, ``max_image_bytes``)."""
        return self._encode_text(self._prepare_post(inputs, **params))

    def _prepare_post(
        self,
        inputs: Any,
        timeout: float = DEFAULT_TIMEOUT,
        too_many_images: str = "error",
        max_image_bytes: int = MAX_DOWNLOAD_BYTES,
    ) -> dict[str, Any]:
        """Thread-safe half of :meth:`preprocess`: validate the post, split its text, open and encode
        its images (JPEGs decoded at reduced scale when the processor's target size allows)."""
        post = _normalise_post(inputs)
        text, words = post["text"], post["words"]
        if words is None:
            words, offsets = _split_words(text, self.processor)
        else:
            offsets = _token_offsets(words)
        sources = post["images"]
        limit = self.processor.max_images
        if self.uses_images and self.processor.image_mode == "multi" and len(sources) > limit:
            if too_many_images == "error":
                raise MNERInputError(
                    f"the post has {len(sources)} images but this model takes at most {limit} "
                    f"(pass too_many_images='truncate' to keep the first {limit})"
                )
            logger.warning("post has %d images; keeping the first %d", len(sources), limit)
            sources = sources[:limit]
        draft_size = self.processor.decode_size() if hasattr(self.processor, "decode_size") else None
        images = []
        for i, src in enumerate(sources):
            try:
                images.append(open_post_image(src, timeout=timeout, max_bytes=max_image_bytes, draft_size=draft_size))
            except MNERInputError as exc:
                raise MNERInputError(f"image {i}: {exc}") from exc
        if images and not self.uses_images:
            logger.warning("text-only model (%s): ignoring %d image(s)", self.model.config.model_type, len(images))
            images = []
        if hasattr(self.processor, "encode_images"):
            images = self.processor.encode_images(images, where="post")
        return {"text": text, "words": words, "offsets": offsets, "images": images}

    def _encode_text(self, prepared: dict[str, Any]) -> dict[str, Any]:
        """Tokenizer half of :meth:`preprocess` (main thread: the fast tokenizer is not shared across threads)."""
        words = prepared["words"]
        features = self.processor.encode_example(words, images=prepared["images"], where="post")
        if features["truncated_words"]:
            kept = len(words) - features["truncated_words"]
            raise MNERInputError(
                f"text too long: {len(words)} words need more than the model's maximum of "
                f"{self.processor.max_length} sub-word tokens (only the first {kept} words fit); "
                "split the post into shorter parts"
            )
        meta = {"text": prepared["text"], "words": words, "offsets": prepared["offsets"]}
        return {"features": features, "meta": meta}

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Pad preprocessed posts into one batch (processor padding: word_ids -1, images masked)."""
        batch = dict(self.processor.pad_batch([it["features"] for it in items], return_tensors="pt"))
        return {"model_inputs": batch, "meta": [it["meta"] for it in items]}

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """Tag one post (-> list of entity dicts) or a list of posts (-> one list per post)."""
        if isinstance(inputs, list) and not inputs:
            self._sanitize_parameters(**{k: v for k, v in kwargs.items() if k not in ("batch_size", "num_workers")})
            return []
        return super().__call__(inputs, *args, **kwargs)

    def prepare_ahead(
        self, items: Iterable[tuple[Any, Any]], preprocess_params: dict[str, Any], lookahead: int
    ) -> Iterator[tuple[Any, Any]]:
        """``(key, future)`` per ``(key, post)`` of ``items``, in order: up to ``lookahead`` posts are
        opened and encoded ahead (:meth:`_prepare_post`) in a pool of :attr:`decode_threads` threads
        (PIL and numpy release the GIL) while the caller runs the model. A ``post`` of ``None`` (an
        item the caller already rejected) gets ``future = None``."""
        threads = self.decode_threads or min(4, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mner-images") as pool:
            pending: deque = deque()
            for key, post in items:
                pending.append((key, None if post is None else pool.submit(self._prepare_post, post, **preprocess_params)))
                if len(pending) > lookahead:
                    yield pending.popleft()
            while pending:
                yield pending.popleft()

    def _preprocessed(self, inputs: Iterable[Any], preprocess_params: dict[str, Any], lookahead: int) -> Iterator[dict]:
        """Preprocessed posts in input order, their images prepared ahead (:meth:`prepare_ahead`)."""
        for index, future in self.prepare_ahead(enumerate(inputs), preprocess_params, lookahead):
            yield self._finish_indexed(index, future)

    def _finish_indexed(self, index: int, future: Any) -> dict[str, Any]:
        """Tokenize post ``index`` once its images are ready; its errors start with ``post <index>:``."""
        try:
            return self._encode_text(future.result())
        except ValueError as exc:  # MNERInputError and the processor's ValueErrors
            raise MNERInputError(f"post {index}: {exc}") from exc

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        """Batches padded by the processor; images of the next posts are decoded in threads meanwhile."""
        from transformers.pipelines.pt_utils import PipelineIterator

        def batches() -> Iterator[dict[str, Any]]:
            items: list[dict[str, Any]] = []
            for item in self._preprocessed(inputs, preprocess_params, lookahead=2 * batch_size):
                items.append(item)
                if len(items) == batch_size:
                    yield self.collate(items)
                    items = []
            if items:
                yield self.collate(items)

        model_iterator = PipelineIterator(batches(), self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)

    def run_single(self, inputs, preprocess_params, forward_params, postprocess_params):
        item = self.preprocess(inputs, **preprocess_params)
        outputs = self.forward(self.collate([item]), **forward_params)
        return self.postprocess(outputs, **postprocess_params)

    def _forward(self, model_inputs: dict[str, Any], precision: PrecisionChoice | None = None) -> dict[str, Any]:
        """Batch of B posts -> predictions (B, W), CRF marginals (B, W, C) float32, word_mask (B, W), meta.

        Runs under the precision's autocast (the CRF computes in float32 either way)."""
        inputs = dict(model_inputs["model_inputs"])
        if not self.uses_images:
            inputs.pop("pixel_values", None)
            inputs.pop("image_mask", None)
        elif inputs["image_mask"].shape[1] == 0:
            inputs.pop("pixel_values")
            inputs.pop("image_mask")
        with (precision or self.precision).autocast():
            outputs = self.model(**inputs, return_marginals=True)
        return {
            "predictions": outputs.predictions,
            "marginals": outputs.marginals.float(),
            "word_mask": outputs.word_mask,
            "meta": model_inputs["meta"],
        }

    def postprocess(self, model_outputs: dict[str, Any]) -> list[dict[str, Any]]:
        """One post's outputs (batch dim 1 or unbatched) -> list of entity dicts."""
        meta = model_outputs["meta"]
        if isinstance(meta, list):  # run_single keeps the batch of one
            meta = meta[0]
        predictions = model_outputs["predictions"].reshape(-1, model_outputs["predictions"].shape[-1])[0]
        marginals = model_outputs["marginals"].reshape(-1, *model_outputs["marginals"].shape[-2:])[0]
        word_mask = model_outputs["word_mask"].reshape(-1, model_outputs["word_mask"].shape[-1])[0]
        n_words = int(word_mask.sum())
        if n_words != len(meta["words"]):
            raise RuntimeError(f"model located {n_words} words but the post has {len(meta['words'])}")
        tag_ids = predictions[:n_words].tolist()
        probs = marginals[:n_words].gather(1, predictions[:n_words].clamp(min=0).unsqueeze(1)).squeeze(1)
        id2label = self.model.config.id2label
        tags = [id2label[int(t)] for t in tag_ids]
        return spans_with_scores(tags, probs.tolist(), meta["words"], meta["offsets"], meta["text"])


def _split_words(text: str, processor: Any) -> tuple[list[str], list[tuple[int, int]]]:
    """Raw text -> words and character offsets, the way the checkpoint's processor splits it."""
    return split_words(text, getattr(processor, "word_split", "whitespace"))


def register_pipeline() -> None:
    """Register task ``multimodal-ner`` (idempotent; called on import of this module)."""
    current = PIPELINE_REGISTRY.supported_tasks.get(TASK_NAME)
    if current is not None and current.get("impl") is MultimodalNERPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        TASK_NAME, pipeline_class=MultimodalNERPipeline, pt_model=AutoModelForTokenClassification
    )


register_pipeline()
