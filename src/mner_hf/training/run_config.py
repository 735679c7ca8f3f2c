"""Run configuration: one YAML file plus command-line overrides.

A run config has six sections::

    model:     which model and encoders (``type``: tpm-mi | mgips-cl | bert-crf)
    data:      dataset name / folder, low-resource fraction, sequence length, images per post
    optim:     per-module learning rates and weight decays (text, vision, fusion, crf)
    compute:   precision (``auto``: bf16 where the hardware has it, else fp32)
    training:  any field of ``transformers.TrainingArguments`` (validated against it)
    output:    predictions / model card / plots switches, hub repo id

Overrides use dotted keys and YAML scalars, e.g. ``--set training.learning_rate=3e-5
--set data.train_fraction=0.1 --set model.freeze_vision=true``. Unknown keys are errors that
name the key and the file (a typo never silently becomes a default).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MODEL_TYPES = ("tpm-mi", "mgips-cl", "bert-crf")
# model.type -> (module under mner_hf.models, config class): what model.config_overrides may set
CONFIG_CLASSES = {
    "tpm-mi": ("configuration_tpm_mi", "TPMMIConfig"),
    "mgips-cl": ("configuration_mgips_cl", "MGIPSCLConfig"),
    "bert-crf": ("configuration_bert_crf", "BertCRFConfig"),
}
# config fields that the run sets itself (encoders and labels), never through config_overrides
_RUN_SET_FIELDS = ("text_config", "vision_config", "id2label", "label2id")


def _config_class(model_type: str) -> type:
    import importlib

    module, name = CONFIG_CLASSES[model_type]
    return getattr(importlib.import_module(f"mner_hf.models.{module}"), name)


def config_override_keys(model_type: str) -> list[str]:
    """Keys ``model.config_overrides`` accepts for ``model_type``: the fields of the model's config
    class (e.g. ``prompt_length``, ``ips_top_k``) minus those of ``PreTrainedConfig`` and the encoders,
    plus ``preset`` where the config class has named presets (TPM-MI: ``preset: authors``)."""
    from transformers import PreTrainedConfig

    klass = _config_class(model_type)
    base = {f.name for f in dataclasses.fields(PreTrainedConfig)}
    keys = [f.name for f in dataclasses.fields(klass) if f.name not in base and f.name not in _RUN_SET_FIELDS]
    if hasattr(klass, "preset_kwargs"):
        keys.append("preset")
    return sorted(keys)


class RunConfigError(ValueError):
    """A run config (file or override) is invalid; the message names the file and the key."""


@dataclass
class ModelSection:
    """Model and encoders.

    ``text_encoder`` / ``vision_encoder`` are hub ids or local folders, or the special values
    ``"minilm"`` (packaged all-MiniLM-L6-v2, falls back to ``"tiny-random"`` when the package is
    absent) and ``"tiny-random"`` (a tiny randomly initialised BERT / ViT built from a config).
    """

    type: str = "tpm-mi"
    text_encoder: str = "bert-base-uncased"
    vision_encoder: str | None = "google/vit-base-patch16-224"
    max_images: int = 4
    freeze_vision: bool = False
    # frozen vision encoder: compute its image features once (cached on disk) and train from them
    cache_frozen_vision: bool = True
    use_images: bool = True
    # extra keyword arguments of the model config (e.g. prompt_length, num_prompt_layers, K)
    config_overrides: dict[str, Any] = field(default_factory=dict)
    # add the training corpus's [UNK] characters to a pretrained text encoder's vocabulary (new
    # embedding rows drawn from the pretrained rows' mean and covariance; see training/encoders.py);
    # characters seen fewer than vocab_min_count times in train stay [UNK]
    extend_vocabulary: bool = False
    vocab_min_count: int = 1
    # size of the random encoders when an encoder is "tiny-random"
    tiny_hidden_size: int = 32
    tiny_num_layers: int = 2
    tiny_image_size: int = 32


@dataclass
class DataSection:
    """Dataset and sampling.

    ``dataset`` is a name understood by :func:`mner_hf.builders.load_dataset` (``twitter2017``,
    ``twitter2015``, ``cmner``, ``mner-mi``, ``mner-mi-plus``, ``sample``; ``-`` or ``_``).  When the dataset has
    no dev / test split (the bundled sample), ``split_ratios`` makes a seeded split of ``train``.

    ``orphan_policy`` (default ``"repair"``): an ``I-X`` that does not follow ``B-X``/``I-X``
    (Twitter-2015 train has 186) becomes ``B-X`` when the data is read. The constrained CRF cannot
    represent an orphan, and seqeval's default mode already reads one as the start of an entity, so
    the gold spans are unchanged; ``"keep"`` leaves the tags as published (then train with
    ``constrain_transitions: false``).
    """

    dataset: str = "twitter2017"
    data_dir: str | None = None
    image_dir: str | None = None
    orphan_policy: str = "repair"
    train_fraction: float = 1.0
    fraction_seed: int = 42
    split_ratios: list[float] = field(default_factory=lambda: [0.6, 0.2, 0.2])
    split_seed: int = 42
    max_length: int = 128
    image_policy: str = "placeholder"
    max_train_samples: int | None = None
    max_eval_samples: int | None = None


@dataclass
class OptimSection:
    """Per-module learning rates / weight decays; ``None`` means ``training.learning_rate`` /
    ``training.weight_decay``. Bias and LayerNorm parameters never get weight decay.

    ``embeddings_lr`` (default ``None``: the text encoder's word embeddings stay in ``text``):
    the text encoder's word-embedding matrix as its own group, e.g. a larger rate for the new rows
    of an extended vocabulary (``model.extend_vocabulary``), which start untrained."""

    text_lr: float | None = None
    embeddings_lr: float | None = None
    embeddings_weight_decay: float | None = None
    vision_lr: float | None = None
    fusion_lr: float | None = None
    crf_lr: float | None = None
    text_weight_decay: float | None = None
    vision_weight_decay: float | None = None
    fusion_weight_decay: float | None = None
    crf_weight_decay: float | None = None

    def lr_for(self, group: str, default: float) -> float:
        value = getattr(self, f"{group}_lr", None)
        return default if value is None else float(value)

    def wd_for(self, group: str, default: float) -> float:
        value = getattr(self, f"{group}_weight_decay", None)
        return default if value is None else float(value)


@dataclass
class ComputeSection:
    """How the run computes.

    ``precision``: ``auto`` (default) = bf16 autocast on CUDA with bf16 support and on CPUs whose
    capabilities torch reports (AVX512-BF16 or AMX), fp32 otherwise; or ``fp32`` / ``bf16`` /
    ``fp16``. ``training.bf16: true`` / ``training.fp16: true`` still win. The choice and its reason
    are printed and stored in ``results.json`` and the model card (:mod:`mner_hf.training.precision`).
    """

    precision: str = "auto"


@dataclass
class OutputSection:
    """What the run writes besides checkpoints."""

    write_predictions: bool = True
    write_model_card: bool = True
    write_plots: bool = True
    license: str = "apache-2.0"
    hub_repo_id: str | None = None
    final_dir: str | None = None  # default: <training.output_dir>/final


@dataclass
class RunConfig:
    """Complete description of one training run (see the module docstring)."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    compute: ComputeSection = field(default_factory=ComputeSection)
    training: dict[str, Any] = field(default_factory=dict)
    output: OutputSection = field(default_factory=OutputSection)
    source: str = "<defaults>"

    # ------------------------------------------------------------------ building
    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<dict>") -> "RunConfig":
        """Build and validate a config from a nested dict (as read from YAML)."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise RunConfigError(f"{source}: top level must be a mapping, got {type(raw).__name__}")
        sections = {"model": ModelSection, "data": DataSection, "optim": OptimSection, "compute": ComputeSection,
                    "output": OutputSection}
        known = set(sections) | {"training"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise RunConfigError(f"{source}: unknown section(s) {unknown}; expected {sorted(known)}")
        kwargs: dict[str, Any] = {"source": source}
        for name, klass in sections.items():
            value = raw.get(name) or {}
            if not isinstance(value, dict):
                raise RunConfigError(f"{source}: section {name!r} must be a mapping")
            names = {f.name for f in dataclasses.fields(klass)}
            bad = sorted(set(value) - names)
            if bad:
                raise RunConfigError(f"{source}: unknown key(s) {[f'{name}.{b}' for b in bad]}; known: {sorted(names)}")
            kwargs[name] = klass(**value)
        training = raw.get("training") or {}
        if not isinstance(training, dict):
            raise RunConfigError(f"{source}: section 'training' must be a mapping")
        _check_training_keys(training, source)
        kwargs["training"] = dict(training)
        config = cls(**kwargs)
        config.validate()
        return config

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> "RunConfig":
        """Read ``path`` and apply ``key=value`` overrides (dotted keys, YAML values)."""
        path = Path(path)
        if not path.is_file():
            raise RunConfigError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise RunConfigError(f"{path}{line}: invalid YAML: {err}") from err
        raw = apply_overrides(raw or {}, overrides or [], source=str(path))
        return cls.from_dict(raw, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (YAML-serialisable) of the whole config, without ``source``."""
        out = dataclasses.asdict(self)
        out.pop("source", None)
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, overrides: list[str]) -> "RunConfig":
        """New config with ``key=value`` overrides applied (used by the grid search)."""
        raw = apply_overrides(self.to_dict(), overrides, source=self.source)
        return RunConfig.from_dict(raw, source=self.source)

    # ---------------------------------------------------------------- validation
    def validate(self) -> None:
        src = self.source
        if self.model.type not in MODEL_TYPES:
            raise RunConfigError(f"{src}: model.type={self.model.type!r}; expected one of {MODEL_TYPES}")
        if not 0.0 < float(self.data.train_fraction) <= 1.0:
            raise RunConfigError(f"{src}: data.train_fraction={self.data.train_fraction} must be in (0, 1]")
        if self.model.max_images < 0:
            raise RunConfigError(f"{src}: model.max_images must be >= 0")
        ratios = self.data.split_ratios
        if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
            raise RunConfigError(f"{src}: data.split_ratios={ratios} must be three non-negative numbers summing to 1")
        from ..models.precision import PRECISIONS

        if str(self.compute.precision).lower() not in PRECISIONS:
            raise RunConfigError(f"{src}: compute.precision={self.compute.precision!r}; expected one of {PRECISIONS}")
        if self.model.type != "bert-crf" and self.model.use_images and not self.model.vision_encoder:
            raise RunConfigError(f"{src}: model.vision_encoder is required for {self.model.type} with images")
        overrides = self.model.config_overrides
        if not isinstance(overrides, dict):
            raise RunConfigError(f"{src}: model.config_overrides must be a mapping, got {type(overrides).__name__}")
        valid = config_override_keys(self.model.type)
        bad = sorted(set(overrides) - set(valid))
        if bad:
            raise RunConfigError(
                f"{src}: unknown key(s) {[f'model.config_overrides.{b}' for b in bad]} for model.type="
                f"{self.model.type}; valid: {', '.join(valid)}"
            )
        if "preset" in overrides:
            try:
                _config_class(self.model.type).preset_kwargs(overrides["preset"])
            except ValueError as err:
                raise RunConfigError(f"{src}: model.config_overrides.preset: {err}") from None
        from ..builders import normalize_dataset_name

        try:
            normalize_dataset_name(self.data.dataset)
        except ValueError as err:
            raise RunConfigError(f"{src}: data.dataset: {err}") from None


def _check_training_keys(training: dict[str, Any], source: str) -> None:
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    bad = sorted(set(training) - names)
    if bad:
        hint = ""
        if "warmup_ratio" in bad:
            hint = " (transformers 5 removed warmup_ratio: use warmup_steps with a float in [0, 1))"
        if "evaluation_strategy" in bad:
            hint += " (use eval_strategy)"
        raise RunConfigError(f"{source}: unknown TrainingArguments key(s) {[f'training.{b}' for b in bad]}{hint}")


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"training.learning_rate=3e-5"`` -> (["training", "learning_rate"], 3e-05).

    Values are parsed as YAML scalars/lists (``true``, ``null``, ``[1, 2]``); YAML 1.1 reads
    ``3e-5`` as a string, so numbers in exponent notation are converted explicitly.
    """
    if "=" not in item:
        raise RunConfigError(f"override {item!r} must look like section.key=value")
    key, _, text = item.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if len(parts) < 2:
        raise RunConfigError(f"override {item!r}: key must be dotted, e.g. training.learning_rate")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as err:
        raise RunConfigError(f"override {item!r}: invalid value: {err}") from err
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value.lower() for c in "e.") else int(value)
        except ValueError:
            pass
    return parts, value


def apply_overrides(raw: dict[str, Any], overrides: list[str], source: str = "<overrides>") -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``dotted.key=value`` override applied."""
    out = copy.deepcopy(raw)
    for item in overrides:
        parts, value = parse_override(item)
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise RunConfigError(f"{source}: override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def _coerce_numbers(training: dict[str, Any]) -> dict[str, Any]:
    """YAML 1.1 reads ``5e-5`` as a string: convert such values of float/int fields."""
    out = {}
    for key, value in training.items():
        if isinstance(value, str):
            try:
                value = float(value) if any(c in value.lower() for c in "e.") else int(value)
            except ValueError:
                pass
        out[key] = value
    return out


def training_arguments_kwargs(config: RunConfig, **defaults: Any) -> dict[str, Any]:
    """Keyword arguments for ``TrainingArguments``: ``defaults`` overridden by ``config.training``."""
    kwargs = dict(defaults)
    kwargs.update(_coerce_numbers(config.training))
    return kwargs
