"""Frozen-vision mode: per-image features computed once, cached on disk, trained from.

:func:`cache_image_features` runs the (frozen) vision encoder over every post's images with a
``datasets`` ``map`` and stores ``image_embeds`` (n_i, D_v) and ``image_mask`` (n_i,) per row in an
Arrow file whose name is keyed by :func:`vision_fingerprint` (vision config + every weight +
image processor settings + ``max_images``) and by the dataset's fingerprint: a second run with
the same encoder and data reloads the file instead of recomputing; any change of weights or
preprocessing gives a new key. :class:`CachedFeatureCollator` pads the cached vectors into the
tensor contract's ``image_embeds`` (B, M, D_v) + ``image_mask`` (B, M), so the model never runs
its vision backbone.

What is cached per image follows ``encoder.cache_mode`` (set by the model that owns the encoder):
one pooled vector (TPM-MI) or, for MGIPS-CL, whose text layers take every vision layer's keys and
values (eq. 2), the per-layer patch tokens (L_v + 1, S, D_v), from which the model recomputes
them with the frozen layers; ``image_embeds`` is then (B, M, L_v + 1, S, D_v). The Arrow
columns are typed float32 (``image_embeds``) and int64 (``image_mask``): left to inference from
Python floats they were float64, twice the disk and memory (4 MB per ViT-B/32 image for MGIPS-CL).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from datasets import Dataset, Features, List, Value
from torch import nn

CACHE_COLUMNS = ("image_embeds", "image_mask")
#: part of the cache file name: version 2 stores float32 (version 1 files held float64)
CACHE_FORMAT = "v2"
#: nesting depth of one row's ``image_embeds`` per ``cache_mode``: (n, D_v) or (n, L_v + 1, S, D_v)
EMBED_DEPTH = {"pooled": 2, "hidden_states": 4}


def cache_features(dataset: Dataset, mode: str) -> Features:
    """``dataset``'s features plus the typed cache columns for ``cache_mode`` ``mode``."""
    embeds: Any = Value("float32")
    for _ in range(EMBED_DEPTH.get(mode, 2)):
        embeds = List(embeds)
    return Features({**dataset.features, "image_embeds": embeds, "image_mask": List(Value("int64"))})


def find_image_encoder(model: nn.Module) -> nn.Module:
    """The model's vision encoder (the ``ImageEncoder`` sub-module)."""
    from ..models.vision_encoder import ImageEncoder

    for module in model.modules():
        if isinstance(module, ImageEncoder):
            return module
    raise ValueError(f"{type(model).__name__} has no ImageEncoder sub-module: nothing to cache")


def image_input_settings(processor: Any) -> dict[str, Any]:
    """The MNERProcessor settings that change the pixels an image becomes, besides its image
    processor: image mode, truncation and error policies, the pixel limit, the stitch tile and the
    JPEG draft decoding size (``decode_size()``: reduced-scale DCT decoding changes the pixels)."""
    names = ("image_mode", "too_many_images", "on_image_error", "max_pixels", "stitch_tile_size", "jpeg_draft")
    settings = {name: getattr(processor, name, None) for name in names}
    decode_size = getattr(processor, "decode_size", None)
    settings["decode_size"] = decode_size() if callable(decode_size) else None
    return settings


def vision_fingerprint(encoder: nn.Module, image_processor: Any = None, max_images: int | None = None,
                       image_settings: dict[str, Any] | None = None) -> str:
    """16-hex key of the vision encoder: config JSON, all parameters and buffers, preprocessing
    (the image processor, ``max_images`` and the processor's :func:`image_input_settings`)."""
    h = hashlib.sha256()
    config = getattr(getattr(encoder, "backbone", encoder), "config", None)
    if config is not None:
        h.update(config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    if image_processor is not None:
        h.update(json.dumps(image_processor.to_dict(), sort_keys=True, default=str).encode())
    h.update(str(max_images).encode())
    if image_settings is not None:
        h.update(json.dumps(image_settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def cache_image_features(
    dataset: Dataset,
    processor: Any,
    encoder: nn.Module,
    cache_dir: str | Path,
    batch_size: int = 8,
    images_column: str = "images",
) -> Dataset:
    """Add ``image_embeds`` / ``image_mask`` columns computed by ``encoder`` (cached on disk).

    Args:
        dataset: rows with ``tokens`` and ``images`` (a list of images per post).
        processor: the MNERProcessor (image loading, ``max_images`` and its error policy).
        encoder: an ``ImageEncoder``: ``encoder.cache_features(pixel_values (B, M, 3, H, W),
            image_mask (B, M))`` -> (B, M, D_v) or (B, M, L_v + 1, S, D_v) (its ``cache_mode``).
        cache_dir: folder of the Arrow cache files.
    Returns:
        the dataset with, per row, ``image_embeds`` (n_i, *feature_shape) float32 lists and
        ``image_mask`` (n_i,) ints, where n_i = the post's image slots after ``max_images`` truncation.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = vision_fingerprint(encoder, getattr(processor, "image_processor", None), getattr(processor, "max_images", None),
                             image_input_settings(processor))
    mode = getattr(encoder, "cache_mode", "pooled")
    if hasattr(encoder, "check_cacheable"):
        encoder.check_cacheable()  # MGIPS-CL with eq. 4: vision features depend on the text
    if mode != "pooled":
        key = f"{key}_{mode}"
    cache_file = cache_dir / f"image_features_{key}_{CACHE_FORMAT}_{dataset._fingerprint}.arrow"
    was_training = encoder.training
    encoder.eval()

    def encode(batch: dict[str, list]) -> dict[str, list]:
        feats = []
        for i, (tokens, images) in enumerate(zip(batch["tokens"], batch[images_column])):
            where = f"post {batch['id'][i]}" if "id" in batch else f"post {i}"
            enc = processor.encode_example(tokens, None, images, where=where)
            feats.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                          "word_ids": enc["word_ids"], "pixel_values": enc["pixel_values"],
                          "image_mask": enc["image_mask"]})
        padded = processor.pad_batch(feats, return_tensors="pt")
        mask = padded["image_mask"]
        if mask.numel() and hasattr(encoder, "cache_features"):
            embeds = encoder.cache_features(padded["pixel_values"], mask).float().cpu().numpy()
        elif mask.numel():
            embeds = encoder(padded["pixel_values"], mask).image_embeds.float().cpu().numpy()
        else:
            embeds = np.zeros((len(feats), 0, 0), dtype=np.float32)
        out_embeds, out_mask = [], []
        for b, f in enumerate(feats):
            n = len(f["image_mask"])
            # float32 arrays (no per-float Python objects), (0, ...) for a post without images; a
            # batch without any image has no feature shape: empty lists
            out_embeds.append(embeds[b, :n] if mask.numel() else [])
            out_mask.append(list(f["image_mask"]))
        return {"image_embeds": out_embeds, "image_mask": out_mask}

    try:
        return dataset.map(
            encode, batched=True, batch_size=batch_size, cache_file_name=str(cache_file),
            features=cache_features(dataset, mode),
            load_from_cache_file=True, desc=f"image features ({key})",
        )
    finally:
        encoder.train(was_training)


class CachedFeatureCollator:
    """Wrap a collator: text from ``base`` (rows without images), images from cached vectors.

    Output: ``base``'s text keys plus ``image_embeds`` (B, M, *feature_shape) float and
    ``image_mask`` (B, M) long, M = most image slots in the batch (zeros at padded slots); no ``pixel_values``.
    """

    def __init__(self, base: Callable[[list[dict[str, Any]]], dict[str, Any]], images_column: str = "images"):
        self.base = base
        self.images_column = images_column

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        embeds, masks, text_rows = [], [], []
        for i, row in enumerate(rows):
            if "image_embeds" not in row:
                raise KeyError(f"row {row.get('id', i)} has no cached 'image_embeds' (run cache_image_features)")
            embeds.append(np.asarray(row["image_embeds"], dtype=np.float32))
            masks.append(list(row["image_mask"]))
            text_rows.append({k: v for k, v in row.items() if k not in (*CACHE_COLUMNS, self.images_column)})
        batch = self.base(text_rows)
        for k in ("pixel_values", "image_mask", "image_embeds"):
            batch.pop(k, None)
        slots = max(len(m) for m in masks)
        shape = next((e.shape[1:] for e in embeds if e.ndim >= 2 and e.size > 0), (0,))
        out = torch.zeros(len(rows), slots, *shape)
        mask = torch.zeros(len(rows), slots, dtype=torch.long)
        for b, (e, m) in enumerate(zip(embeds, masks)):
            if m and e.size:
                out[b, : len(m)] = torch.from_numpy(e.reshape(len(m), *shape))
                mask[b, : len(m)] = torch.tensor(m)
        if slots:
            batch["image_embeds"] = out
            batch["image_mask"] = mask
        return batch
