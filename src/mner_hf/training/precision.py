"""Precision for training and evaluation: ``auto`` (the default) -> ``TrainingArguments`` flags.

The detection itself is :mod:`mner_hf.models.precision` (it travels with checkpoints for the
pipeline); this module maps a :class:`PrecisionChoice` onto the HF ``Trainer``'s mixed precision
(``bf16`` / ``fp16`` flags, which accelerate turns into ``torch.autocast`` around the model's
forward in training AND evaluation) and reads the choice back from built ``TrainingArguments``.

Public API
----------
``resolve_precision``, ``PrecisionChoice``, ``PRECISIONS``   (re-exported)
``training_device(training_kwargs) -> "cuda" | "cpu"``        the device the Trainer will use
``precision_flags(choice) -> dict``                            ``{"bf16": .., "fp16": .., ["use_cpu": True]}``
``choose_training_precision(requested, training_kwargs) -> PrecisionChoice``
    explicit ``bf16`` / ``fp16`` keys in ``training_kwargs`` win over ``requested``; with
    ``requested="auto"``, ``accelerate launch --mixed_precision bf16|fp16`` wins over detection.
``precision_of(args: TrainingArguments) -> PrecisionChoice``  what a Trainer with ``args`` runs
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ..models.precision import PRECISIONS, PrecisionChoice, cpu_bf16_capabilities, resolve_precision

__all__ = [
    "PRECISIONS",
    "PrecisionChoice",
    "choose_training_precision",
    "cpu_bf16_capabilities",
    "precision_flags",
    "precision_of",
    "resolve_precision",
    "training_device",
]

#: attribute of TrainingArguments where :func:`mner_training_arguments` keeps the choice (a plain dict)
ARGS_ATTRIBUTE = "mner_precision"


def training_device(training_kwargs: dict[str, Any]) -> str:
    """"cuda" when CUDA is available and ``use_cpu`` is not set, else "cpu"."""
    return "cuda" if torch.cuda.is_available() and not training_kwargs.get("use_cpu") else "cpu"


def choose_training_precision(requested: str | None, training_kwargs: dict[str, Any]) -> PrecisionChoice:
    """The precision of a run: ``training_kwargs["bf16"]`` / ``["fp16"]`` set to True win (they are
    the Trainer's own switches); otherwise ``requested`` ("auto" by default) is resolved for the
    device the Trainer will use."""
    device = training_device(training_kwargs)
    for flag in ("bf16", "fp16"):
        if training_kwargs.get(flag):
            choice = resolve_precision(flag, device)
            return PrecisionChoice(flag, f"training.{flag}", device, f"training.{flag}=true; {choice.reason}")
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if launched in ("bf16", "fp16") and (requested is None or str(requested).lower() == "auto"):
        # `accelerate launch --mixed_precision X` (or its config file) already asked for X
        choice = resolve_precision(launched, device)
        return PrecisionChoice(launched, f"accelerate {launched}", device,
                               f"accelerate launch --mixed_precision {launched}; {choice.reason}")
    return resolve_precision(requested, device)


def precision_flags(choice: PrecisionChoice) -> dict[str, Any]:
    """``TrainingArguments`` keys realising ``choice``; bf16/fp16 on CPU need ``use_cpu=True``."""
    flags: dict[str, Any] = {"bf16": choice.precision == "bf16", "fp16": choice.precision == "fp16"}
    if choice.precision != "fp32" and choice.device_type == "cpu":
        flags["use_cpu"] = True
    return flags


def precision_of(args: Any) -> PrecisionChoice:
    """The precision a Trainer built with ``args`` runs at (with the reason when
    :func:`mner_training_arguments` chose it)."""
    stored = getattr(args, ARGS_ATTRIBUTE, None)
    if isinstance(stored, dict):
        return PrecisionChoice(**stored)
    device = training_device({"use_cpu": getattr(args, "use_cpu", False)})
    if getattr(args, "bf16", False):
        return PrecisionChoice("bf16", "training.bf16", device, "training.bf16=true")
    if getattr(args, "fp16", False):
        return PrecisionChoice("fp16", "training.fp16", device, "training.fp16=true")
    return PrecisionChoice("fp32", "fp32", device, "TrainingArguments without bf16/fp16")
