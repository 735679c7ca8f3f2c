"""MNERProcessor: tokenizer + PIL image processor for posts with 0..N images.

Output follows the tensor contract of ``docs/ARCHITECTURE.md`` (B posts, L sub-words, M image slots):

=================  ======================  ==============================================================
key                shape / dtype           meaning
=================  ======================  ==============================================================
``input_ids``      (B, L) long             ``[CLS] ... [SEP]``, right padded
``attention_mask`` (B, L) long             1 real token, 0 pad
``token_type_ids`` (B, L) long             only when the tokenizer returns them
``word_ids``       (B, L) long             word index of each sub-word; -1 for specials and padding
``labels``         (B, L) long             tag id on the FIRST sub-word of each word, -100 elsewhere
``pixel_values``   (B, M, 3, H, W) float   images in post order; padded / placeholder slots are zeros
``image_mask``     (B, M) long             1 real image, 0 padded or placeholder slot
=================  ======================  ==============================================================

``__call__`` additionally returns, unless ``return_metadata=False``, python lists (never tensors)
under :data:`METADATA_KEYS`: ``num_words``, ``truncated_words``, ``truncated_entities`` (gold
entities not entirely inside the kept words), ``replaced_words`` (words the tokenizer maps to no
sub-word, replaced by the unknown token), ``images_dropped`` (beyond ``max_images``),
``image_errors`` (images that failed to load, skipped or placeholder), and ``word_offsets``
(character ``(start, end)`` of every word, only for raw ``text``). Remove them with
:meth:`MNERProcessor.pop_metadata` before ``model(**batch)``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
from PIL import Image
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin

from .image_loading import (
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    ImageLoadReport,
    load_images,
    stitch_images,
)
from .labels import DEFAULT_LABELS, normalize_tag, split_tag, tags_to_spans

logger = logging.getLogger(__name__)

ImageMode = Literal["multi", "first", "stitch"]
TooManyImagesPolicy = Literal["truncate", "error"]
WordSplit = Literal["whitespace", "char"]

METADATA_KEYS: tuple[str, ...] = (
    "num_words",
    "truncated_words",
    "truncated_entities",
    "replaced_words",
    "images_dropped",
    "image_errors",
    "image_error_messages",
    "word_offsets",
)
_STAT_KEYS = ("num_words", "truncated_words", "truncated_entities", "replaced_words", "images_dropped", "image_errors")


def split_words(text: str, mode: WordSplit = "whitespace") -> tuple[list[str], list[tuple[int, int]]]:
    """Split raw text into words with their character offsets ``(start, end)`` (end exclusive).

    ``"whitespace"``: maximal runs of non-space characters; ``"char"``: every non-space character
    is a word (Chinese CMNER-style input).
    """
    if mode not in ("whitespace", "char"):
        raise ValueError(f"word_split must be 'whitespace' or 'char', got {mode!r}")
    pattern = r"\S+" if mode == "whitespace" else r"\S"
    matches = list(re.finditer(pattern, text))
    return [m.group(0) for m in matches], [(m.start(), m.end()) for m in matches]


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def find_lone_surrogate(text: str) -> int:
    """Index of the first lone surrogate (U+D800..U+DFFF: not valid Unicode) in ``text``, or -1.

    Such characters come from text decoded with ``errors="surrogateescape"`` or from JSON escapes
    like ``"\\ud800"``; tokenizers reject them with an internal ``TypeError``.
    """
    match = _LONE_SURROGATE.search(text)
    return match.start() if match else -1


def _is_image_like(x: Any) -> bool:
    return isinstance(x, (str, bytes, bytearray, memoryview, dict, Image.Image, np.ndarray)) or hasattr(x, "__fspath__")


@dataclass
class EncodedImages:
    """One post's images after :meth:`MNERProcessor.encode_images`."""

    pixel_values: np.ndarray  # (n, 3, H, W) float32, zeros at placeholder slots
    image_mask: list[int]  # n ints: 1 real image, 0 placeholder
    images_dropped: int = 0
    image_errors: int = 0
    image_error_messages: list[str] = field(default_factory=list)


class MNERProcessor(ProcessorMixin):
    """Tokenizer + PIL image processor for multimodal NER over posts with several images.

    Args:
        image_processor: any transformers image processor (use the PIL ones, e.g.
            ``ViTImageProcessorPil`` / ``CLIPImageProcessorPil``: no torchvision needed).
        tokenizer: a fast (tokenizers-backed) tokenizer; ``word_ids()`` must be available.
        max_images: number of image slots M kept per post in ``"multi"`` mode.
        image_mode: ``"multi"`` (first ``max_images`` images in order), ``"first"`` (first image
            only) or ``"stitch"`` (all images tiled into one grid image; the paper's "-MI" baselines).
        too_many_images: ``"truncate"`` (keep the first ``max_images``, count the rest in
            ``images_dropped``) or ``"error"``.
        on_image_error: ``"error"`` | ``"skip"`` | ``"placeholder"`` (see ``image_loading``).
        max_length: maximum sub-word length including special tokens; longer posts are truncated
            and the gold entities cut are counted in ``truncated_entities``.
        label2id: tag -> id (BIO or BIOES; must contain ``"O"``); default BIO over PER/LOC/ORG/MISC.
        word_split: how raw ``text`` is split into words: ``"whitespace"`` or ``"char"``.
        max_pixels: decompression-bomb limit per image (width * height).
        stitch_tile_size: side of one tile of the stitched grid in pixels.
        jpeg_draft: decode JPEGs at the smallest libjpeg scale (1/1, 1/2, 1/4, 1/8) that is still
            at least the image processor's resize target (:meth:`decode_size`), in training and
            inference alike (several times faster for large photos; the processor then downscales
            from a smaller image).
    """

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        max_images: int = 4,
        image_mode: ImageMode = "multi",
        too_many_images: TooManyImagesPolicy = "truncate",
        on_image_error: Literal["error", "skip", "placeholder"] = "error",
        max_length: int = 256,
        label2id: dict[str, int] | None = None,
        word_split: WordSplit = "whitespace",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        stitch_tile_size: int = 224,
        jpeg_draft: bool = True,
        **kwargs: Any,
    ) -> None:
        if image_mode not in ("multi", "first", "stitch"):
            raise ValueError(f"image_mode must be 'multi', 'first' or 'stitch', got {image_mode!r}")
        if too_many_images not in ("truncate", "error"):
            raise ValueError(f"too_many_images must be 'truncate' or 'error', got {too_many_images!r}")
        if on_image_error not in ("error", "skip", "placeholder"):
            raise ValueError(f"on_image_error must be 'error', 'skip' or 'placeholder', got {on_image_error!r}")
        if word_split not in ("whitespace", "char"):
            raise ValueError(f"word_split must be 'whitespace' or 'char', got {word_split!r}")
        if int(max_images) < 1:
            raise ValueError(f"max_images must be >= 1, got {max_images}")
        if label2id is None:
            label2id = {tag: i for i, tag in enumerate(DEFAULT_LABELS)}
        label2id = {str(k): int(v) for k, v in label2id.items()}
        if "O" not in label2id or sorted(label2id.values()) != list(range(len(label2id))):
            raise ValueError(f"label2id must contain 'O' and map to ids 0..n-1 exactly once, got {label2id}")
        for tag in label2id:
            split_tag(tag)  # raises ValueError for a malformed tag
        self.max_images = int(max_images)
        self.image_mode = image_mode
        self.too_many_images = too_many_images
        self.on_image_error = on_image_error
        self.max_length = int(max_length)
        self.label2id = label2id
        self.word_split = word_split
        self.max_pixels = max_pixels
        self.stitch_tile_size = int(stitch_tile_size)
        self.jpeg_draft = bool(jpeg_draft)
        self._pixel_shape_cache: tuple[int, int, int] | None = None
        super().__init__(image_processor, tokenizer, **kwargs)
        if self.max_length < self.tokenizer.num_special_tokens_to_add(pair=False) + 1:
            raise ValueError(f"max_length={self.max_length} leaves no room for a word")

    # ------------------------------------------------------------------ properties
    @property
    def id2label(self) -> dict[int, str]:
        """id -> tag (inverse of ``label2id``)."""
        return {i: t for t, i in self.label2id.items()}

    @property
    def scheme(self) -> str:
        """``"BIOES"`` when the label set has E-/S- tags, else ``"BIO"``."""
        return "BIOES" if any(t[:2] in ("E-", "S-") for t in self.label2id) else "BIO"

    @property
    def model_input_names(self) -> list[str]:
        names = ["input_ids", "attention_mask"]
        if "token_type_ids" in self.tokenizer.model_input_names:
            names.append("token_type_ids")
        return names + ["word_ids", "pixel_values", "image_mask"]

    @staticmethod
    def pop_metadata(batch: BatchFeature | dict) -> dict[str, Any]:
        """Remove and return the metadata keys (:data:`METADATA_KEYS`) of a processor output."""
        return {k: batch.pop(k) for k in METADATA_KEYS if k in batch}

    def pixel_shape(self) -> tuple[int, int, int]:
        """(3, H, W) of one processed image (computed once with a dummy image)."""
        if self._pixel_shape_cache is None:
            out = self.image_processor(images=[Image.new("RGB", (32, 32))], return_tensors="np")
            self._pixel_shape_cache = tuple(int(s) for s in np.asarray(out["pixel_values"]).shape[1:])
        return self._pixel_shape_cache

    def decode_size(self) -> tuple[int, int] | None:
        """(width, height) an image must keep when decoded so that every later resize is a downscale:
        the image processor's resize target (``height``/``width``, ``shortest_edge``) squared to its
        larger side (EXIF rotation may swap the axes), the stitch tile in ``stitch`` mode.
        ``None`` (decode at full size) without ``jpeg_draft`` or when the processor does not resize."""
        if not self.jpeg_draft:
            return None
        if self.image_mode == "stitch":
            return (self.stitch_tile_size, self.stitch_tile_size)
        ip = self.image_processor
        size = getattr(ip, "size", None)
        if not getattr(ip, "do_resize", True) or size is None:
            return None
        get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
        sides = [get(k) for k in ("height", "width", "shortest_edge")]
        sides = [int(v) for v in sides if v]
        if not sides:
            return None
        side = max(sides)
        return (side, side)

    # ------------------------------------------------------------------ per example
    def _tag_ids(self, tags: Sequence[str | int], n_words: int, where: str) -> list[int]:
        if len(tags) != n_words:
            raise ValueError(f"{where}: {len(tags)} tags for {n_words} words")
        ids = []
        n_labels = len(self.label2id)
        for j, tag in enumerate(tags):
            if isinstance(tag, str):
                try:
                    norm = normalize_tag(tag)
                except ValueError as exc:
                    raise ValueError(f"{where}, word {j}: {exc}") from exc
                if norm not in self.label2id:
                    raise ValueError(
                        f"{where}, word {j}: unknown tag {tag!r} (known: {sorted(self.label2id)})"
                    )
                ids.append(self.label2id[norm])
            elif isinstance(tag, (int, np.integer)) and not isinstance(tag, bool):
                if not 0 <= int(tag) < n_labels:
                    raise ValueError(f"{where}, word {j}: tag id {int(tag)} outside 0..{n_labels - 1}")
                ids.append(int(tag))
            else:
                raise ValueError(f"{where}, word {j}: tag must be a string or an int, got {type(tag).__name__}")
        return ids

    def _tokenize(self, words: list[str], truncation: bool) -> tuple[dict[str, list[int]], list[int]]:
        enc = self.tokenizer(
            words,
            is_split_into_words=True,
            add_special_tokens=True,
            truncation=truncation,
            max_length=self.max_length if truncation else None,
        )
        try:
            word_ids = enc.word_ids()
        except (ValueError, AttributeError) as exc:
            raise TypeError(
                f"{type(self.tokenizer).__name__} does not provide word_ids(); MNERProcessor needs a fast tokenizer"
            ) from exc
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        return {k: list(enc[k]) for k in keys}, [-1 if w is None else int(w) for w in word_ids]

    def _prepare_images(self, images: Sequence[Any], where: str) -> tuple[list[Image.Image | None], dict[str, Any]]:
        """Apply image_mode, too_many_images and on_image_error to one post's image sources."""
        report = ImageLoadReport()
        sources = list(images)
        if self.image_mode == "first":
            sources = sources[:1]
        elif self.image_mode == "multi" and len(sources) > self.max_images:
            if self.too_many_images == "error":
                raise ValueError(
                    f"{where}: {len(sources)} images but max_images={self.max_images} "
                    f"(set too_many_images='truncate' to keep the first {self.max_images})"
                )
            report.dropped_too_many = len(sources) - self.max_images
            sources = sources[: self.max_images]
        loaded: list[Image.Image | None] = []
        draft_size = self.decode_size()
        for src in sources:
            if src is None:  # a missing image (the builders' "placeholder"): a masked slot, counted upstream
                loaded.append(None)
                continue
            try:
                loaded.extend(load_images([src], on_error=self.on_image_error, max_pixels=self.max_pixels, report=report,
                                          draft_size=draft_size))
            except ImageLoadError as exc:
                raise ImageLoadError(f"{where}: {exc.source}", exc.reason) from exc
        if self.image_mode == "stitch" and loaded:
            real = [im for im in loaded if im is not None]
            if real:
                side = self.stitch_tile_size
                loaded = [stitch_images(real, tile_size=(side, side))]
            else:  # every image failed under "placeholder": one masked slot
                loaded = [None]
        stats = {"images_dropped": report.dropped_too_many, "image_errors": report.errors, "messages": report.messages}
        return loaded, stats

    def encode_example(
        self,
        words: Sequence[str],
        tags: Sequence[str | int] | None = None,
        images: Sequence[Any] | None = None,
        *,
        where: str = "post",
    ) -> dict[str, Any]:
        """Encode one post without padding or tensors (used by ``datasets.map`` and the collator).

        Args:
            words: the post's words (non-empty strings; whitespace-only words become the unknown token).
            tags: one tag per word, as strings (normalised: ``B-OTHER`` -> ``B-MISC``) or ids.
            images: 0..N image sources (paths, bytes, PIL images, ``{"bytes","path"}`` dicts), or
                ``None`` for a known-missing image (a dataset ``placeholder``): its slot is kept and
                masked (``image_mask`` 0), never shown to the model.
            where: name of the post used in error messages.

        Returns:
            A dict with ``input_ids`` / ``attention_mask`` / (``token_type_ids``) / ``word_ids`` /
            (``labels``) as lists of length L, ``pixel_values`` a float32 array (n, 3, H, W),
            ``image_mask`` a list of n ints (0 for placeholder slots) and the integer statistics
            ``num_words``, ``truncated_words``, ``truncated_entities``, ``replaced_words``,
            ``images_dropped``, ``image_errors`` plus ``image_error_messages``.
        """
        if isinstance(words, str):
            raise TypeError(f"{where}: words must be a list of strings, not one string (use text= for raw text)")
        words = list(words)
        if not words:
            raise ValueError(f"{where}: a post needs at least one word")
        for j, w in enumerate(words):
            # a whitespace word (U+00A0, U+3000) is a word: the tokenizer gives it no sub-word and it
            # becomes the unknown token below (counted in replaced_words); only "" is an error
            if not isinstance(w, str) or w == "":
                raise ValueError(f"{where}, word {j}: empty or non-string word {w!r}")
            bad = find_lone_surrogate(w)
            if bad >= 0:
                raise ValueError(f"{where}, word {j}: lone surrogate U+{ord(w[bad]):04X} at character {bad} of the "
                                 "word (invalid Unicode: fix how the text was decoded)")
        tag_ids = self._tag_ids(tags, len(words), where) if tags is not None else None

        enc, word_ids = self._tokenize(words, truncation=False)
        missing = sorted(set(range(len(words))) - set(word_ids))
        if missing:  # e.g. a word of control / zero-width characters: the tokenizer yields nothing
            unk = self.tokenizer.unk_token
            if unk is None:
                raise ValueError(f"{where}: words {missing} produce no sub-word and the tokenizer has no unk token")
            words = [unk if j in missing else w for j, w in enumerate(words)]
            enc, word_ids = self._tokenize(words, truncation=False)
        n_words = len(words)
        truncated_words = truncated_entities = 0
        if len(word_ids) > self.max_length:
            enc, word_ids = self._tokenize(words, truncation=True)
            kept = len({w for w in word_ids if w >= 0})
            truncated_words = n_words - kept
            if tag_ids is not None:
                id2label = self.id2label
                spans = tags_to_spans([id2label[t] for t in tag_ids], self.scheme)
                truncated_entities = sum(1 for s in spans if s.end > kept)

        out: dict[str, Any] = dict(enc)
        out["word_ids"] = word_ids
        if tag_ids is not None:
            labels, prev = [], -1
            for w in word_ids:
                labels.append(tag_ids[w] if w >= 0 and w != prev else -100)
                prev = w if w >= 0 else prev
            out["labels"] = labels

        encoded_images = images if isinstance(images, EncodedImages) else self.encode_images(images, where)
        out["pixel_values"] = encoded_images.pixel_values
        out["image_mask"] = encoded_images.image_mask
        out.update(
            num_words=n_words,
            truncated_words=truncated_words,
            truncated_entities=truncated_entities,
            replaced_words=len(missing),
            images_dropped=encoded_images.images_dropped,
            image_errors=encoded_images.image_errors,
            image_error_messages=encoded_images.image_error_messages,
        )
        return out

    def encode_images(self, images: Sequence[Any] | Any | None, where: str = "post") -> "EncodedImages":
        """The image half of :meth:`encode_example` (load, image mode / policies, image processor).

        Thread-safe (PIL and numpy only, no tokenizer): the pipeline runs it in a thread pool and
        passes the result to ``encode_example(words, images=<EncodedImages>)``.

        Returns:
            :class:`EncodedImages`: ``pixel_values`` float32 (n, 3, H, W), ``image_mask`` n ints
            (0 = placeholder slot), and the policy counts.
        """
        if images is None:
            images = []
        elif _is_image_like(images):  # one image given on its own
            images = [images]
        loaded, stats = self._prepare_images(images, where)
        real = [im for im in loaded if im is not None]
        shape = self.pixel_shape()
        pixels = np.zeros((len(loaded),) + shape, dtype=np.float32)
        if real:
            processed = np.asarray(self.image_processor(images=real, return_tensors="np")["pixel_values"], dtype=np.float32)
            pixels[[i for i, im in enumerate(loaded) if im is not None]] = processed
        return EncodedImages(pixels, [0 if im is None else 1 for im in loaded], stats["images_dropped"],
                             stats["image_errors"], list(stats["messages"]))

    # ------------------------------------------------------------------ batching
    def pad_batch(self, features: Sequence[dict[str, Any]], return_tensors: str | None = "pt") -> BatchFeature:
        """Pad encoded examples (from :meth:`encode_example`) into one batch of the tensor contract.

        Text is right padded to the longest post (``tokenizer.pad``); ``word_ids`` with -1 and
        ``labels`` with -100. Images are padded to M = the largest number of image slots in the
        batch: ``pixel_values`` (B, M, 3, H, W) zeros and ``image_mask`` (B, M) zeros for padding.
        Statistics / metadata keys are not included.
        """
        if not features:
            raise ValueError("pad_batch needs at least one example")
        text_keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in features[0]]
        padded = self.tokenizer.pad(
            [{k: f[k] for k in text_keys} for f in features],
            padding="longest",
            padding_side="right",
            return_tensors=None,
        )
        data: dict[str, Any] = {k: padded[k] for k in text_keys}
        length = len(data["input_ids"][0])
        data["word_ids"] = [list(f["word_ids"]) + [-1] * (length - len(f["word_ids"])) for f in features]
        if all("labels" in f for f in features):
            data["labels"] = [list(f["labels"]) + [-100] * (length - len(f["labels"])) for f in features]
        elif any("labels" in f for f in features):
            raise ValueError("some examples of the batch have labels and others do not")

        pixels = [np.asarray(f.get("pixel_values", np.zeros((0,))), dtype=np.float32) for f in features]
        masks = [list(f.get("image_mask", [])) for f in features]
        num_slots = max(len(m) for m in masks)
        shape = next((p.shape[1:] for p in pixels if p.ndim == 4 and p.shape[0] > 0), None) or self.pixel_shape()
        pixel_values = np.zeros((len(features), num_slots) + tuple(shape), dtype=np.float32)
        image_mask = np.zeros((len(features), num_slots), dtype=np.int64)
        for b, (p, m) in enumerate(zip(pixels, masks)):
            if m:
                if p.shape[0] != len(m):
                    raise ValueError(f"example {b}: {p.shape[0]} pixel arrays for an image_mask of {len(m)}")
                pixel_values[b, : len(m)] = p
                image_mask[b, : len(m)] = m
        data["pixel_values"] = pixel_values
        data["image_mask"] = image_mask
        return BatchFeature(data=data, tensor_type=return_tensors)

    def __call__(
        self,
        images: Any = None,
        text: str | Sequence[str] | None = None,
        words: Sequence[str] | Sequence[Sequence[str]] | None = None,
        tags: Sequence[str | int] | Sequence[Sequence[str | int]] | None = None,
        return_tensors: str | None = "pt",
        return_metadata: bool = True,
        **kwargs: Any,
    ) -> BatchFeature:
        """Encode one post or a batch of posts.

        Args:
            images: for one post, a list of its image sources (or one source); for a batch, a list
                with one entry per post (a list of sources, one source, or ``None``).
            text: raw text (one string or a list), split into words by ``word_split``.
            words: pre-split words (a list of strings or a list of lists). Exactly one of
                ``text`` / ``words``.
            tags: optional gold tags per word (strings or ids), same nesting as ``words``.
            return_tensors: ``"pt"`` (default), ``"np"`` or ``None``.
            return_metadata: add the :data:`METADATA_KEYS` python lists to the output.

        Returns:
            ``BatchFeature`` with the tensor-contract keys (module docstring) and the metadata.
        """
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}")
        if (text is None) == (words is None):
            raise ValueError("pass exactly one of text= (raw strings) or words= (pre-split words)")
        if words is not None and not isinstance(words, (list, tuple)):
            raise TypeError(
                "words= takes a list of strings (one post) or a list of such lists (a batch), got "
                + ("one string: use text= for raw text" if isinstance(words, str) else type(words).__name__)
            )
        if text is not None and not isinstance(text, (str, list, tuple)):
            raise TypeError(f"text= takes a string (one post) or a list of strings (a batch), got {type(text).__name__}")
        offsets: list[list[tuple[int, int]]] | None = None
        if text is not None:
            batched = not isinstance(text, str)
            texts = list(text) if batched else [text]
            batch_words, offsets = [], []
            for i, t in enumerate(texts):
                if not isinstance(t, str):
                    raise TypeError(f"post {i}: text must be a string, got {type(t).__name__}")
                bad = find_lone_surrogate(t)
                if bad >= 0:
                    raise ValueError(f"post {i}: text holds a lone surrogate U+{ord(t[bad]):04X} at character {bad} "
                                     "(invalid Unicode: fix how the text was decoded)")
                w, o = split_words(t, self.word_split)
                if not w:
                    raise ValueError(f"post {i}: empty text (no word to tag)")
                batch_words.append(w)
                offsets.append(o)
        else:
            batched = len(words) > 0 and not isinstance(words[0], str)
            if batched:
                for i, w in enumerate(words):
                    if not isinstance(w, (list, tuple)):
                        raise TypeError(f"post {i}: words must be a list of strings, got {type(w).__name__}"
                                        + (" (use text= for raw text)" if isinstance(w, str) else ""))
            batch_words = [list(w) for w in words] if batched else [list(words)]
        n = len(batch_words)
        if n == 0:
            raise ValueError("empty batch")
        if tags is None:
            batch_tags: list[Any] = [None] * n
        else:
            batch_tags = list(tags) if batched else [tags]
            if len(batch_tags) != n:
                raise ValueError(f"{len(batch_tags)} tag sequences for {n} posts")
        sources = "an image (path, bytes, PIL image, HxWxC array, {'bytes','path'} dict) or a list of images"
        if images is None:
            batch_images: list[Any] = [[] for _ in range(n)]
        elif batched:
            if _is_image_like(images) or not isinstance(images, (list, tuple)) or len(images) != n:
                raise ValueError(f"for a batch of {n} posts, images must be a list of {n} entries (one per post)")
            for i, im in enumerate(images):
                if im is not None and not _is_image_like(im) and not isinstance(im, (list, tuple)):
                    raise TypeError(f"post {i}: images must be {sources}, got {type(im).__name__}")
            batch_images = [[] if im is None else ([im] if _is_image_like(im) else list(im)) for im in images]
        else:
            if not _is_image_like(images) and not isinstance(images, (list, tuple)):
                raise TypeError(f"images must be {sources}, got {type(images).__name__}")
            batch_images = [[images] if _is_image_like(images) else list(images)]

        feats = [
            self.encode_example(w, t, im, where=f"post {i}")
            for i, (w, t, im) in enumerate(zip(batch_words, batch_tags, batch_images))
        ]
        batch = self.pad_batch(feats, return_tensors=return_tensors)
        cut = sum(f["truncated_entities"] for f in feats)
        if cut:
            logger.warning("truncation to max_length=%d cut %d gold entities", self.max_length, cut)
        if return_metadata:
            for key in _STAT_KEYS:
                batch[key] = [f[key] for f in feats]
            batch["image_error_messages"] = [f["image_error_messages"] for f in feats]
            if offsets is not None:
                batch["word_offsets"] = offsets
        return batch


MNERProcessor.register_for_auto_class("AutoProcessor")

__all__ = ["METADATA_KEYS", "MNERProcessor", "find_lone_surrogate", "split_words"]
