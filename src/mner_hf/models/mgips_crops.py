"""Visual-grounding crops for MGIPS-CL (paper 3.1.2: three 128x128 crops per image).

Travels with checkpoints; imports only its siblings relatively.

File layout a user provides (one folder of crops, next to or apart from the images)::

    images/17_06_1.jpg                 the post's image (as the dataset lists it)
    crops/17_06_1_crop0.jpg            its visual-grounding crops, most relevant first,
    crops/17_06_1_crop1.png            named <image stem>_crop<k>.<jpg|jpeg|png|webp>,
    crops/17_06_1_crop2.jpg            k = 0 .. crops_per_image - 1

A grounding tool may find fewer regions than ``crops_per_image``: the missing crops are the whole
image (resized like a crop) and are counted in the returned report; a missing image is an error
naming the file. :func:`load_grounding_crops` returns ``crop_pixel_values`` (B, M, C, 3, s, s) and
``image_mask`` (B, M) for ``MGIPSCLForTokenClassification`` with ``crops_per_image = C`` and
``crop_size = s``; the model interpolates the vision position embeddings to s x s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .image_loading import load_image

CROP_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


@dataclass
class CropReport:
    """``crops_found`` crop files read; ``whole_image_fill``: slots filled with the whole image."""

    crops_found: int = 0
    whole_image_fill: int = 0


def grounding_crop_paths(image_path: str | Path, crop_dir: str | Path, crops_per_image: int) -> list[Path]:
    """The existing crop files of ``image_path`` in ``crop_dir`` (layout above), in order k = 0, 1, ..."""
    stem, found = Path(image_path).stem, []
    for k in range(crops_per_image):
        hit = next((Path(crop_dir) / f"{stem}_crop{k}{ext}" for ext in CROP_EXTENSIONS
                    if (Path(crop_dir) / f"{stem}_crop{k}{ext}").is_file()), None)
        if hit is not None:
            found.append(hit)
    return found


def load_grounding_crops(
    images: list[list[str | Path]],
    crop_dir: str | Path,
    image_processor: Any,
    crops_per_image: int = 3,
    crop_size: int = 128,
) -> tuple[dict[str, torch.Tensor], CropReport]:
    """Crops of every image of B posts -> ``{"crop_pixel_values": (B, M, C, 3, s, s), "image_mask": (B, M)}``.

    Args:
        images: per post, its image paths (M = most images of a post).
        crop_dir: folder of the crops (layout in the module docstring).
        image_processor: the checkpoint's image processor (normalisation); images are resized and
            centre-cropped to ``crop_size``.
    """
    report = CropReport()
    slots = max((len(p) for p in images), default=0)
    out = torch.zeros(len(images), slots, crops_per_image, 3, crop_size, crop_size)
    mask = torch.zeros(len(images), slots, dtype=torch.long)
    size = {"size": {"shortest_edge": crop_size}, "crop_size": {"height": crop_size, "width": crop_size}}
    for b, paths in enumerate(images):
        for m, path in enumerate(paths):
            crops = [load_image(p) for p in grounding_crop_paths(path, crop_dir, crops_per_image)]
            report.crops_found += len(crops)
            if len(crops) < crops_per_image:
                whole = load_image(path)  # raises ImageLoadError naming the file
                report.whole_image_fill += crops_per_image - len(crops)
                crops += [whole] * (crops_per_image - len(crops))
            pixels = image_processor(images=crops, return_tensors="np", **size)["pixel_values"]
            out[b, m] = torch.from_numpy(np.asarray(pixels, dtype=np.float32))
            mask[b, m] = 1
    return {"crop_pixel_values": out, "image_mask": mask}, report
