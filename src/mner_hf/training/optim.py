"""Per-module parameter groups for the optimizer (text, vision, fusion, crf).

Every model exposes ``model.param_groups() -> dict[str, list[nn.Parameter]]`` (see
ARCHITECTURE.md). Each module group is split in two: parameters with weight decay and
parameters without (biases and LayerNorm / norm weights, found with the same rule as the
HF ``Trainer``). Learning rates and weight decays per module come from :class:`OptimSection`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .run_config import OptimSection

MODULE_GROUPS = ("text", "vision", "fusion", "crf")
_NO_DECAY_PATTERNS = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]


def decay_parameter_names(model: nn.Module) -> set[str]:
    """Names of parameters that receive weight decay (not bias, not LayerNorm)."""
    from transformers.trainer_pt_utils import get_parameter_names

    return set(get_parameter_names(model, [nn.LayerNorm], _NO_DECAY_PATTERNS))


def module_parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """``model.param_groups()`` checked: every trainable parameter in exactly one group.

    Models without ``param_groups`` put everything in ``"text"``.
    """
    trainable = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    if hasattr(model, "param_groups"):
        groups = {k: [p for p in v if p.requires_grad] for k, v in model.param_groups().items()}
    else:
        groups = {"text": [p for p in model.parameters() if p.requires_grad]}
    unknown = sorted(set(groups) - set(MODULE_GROUPS))
    if unknown:
        raise ValueError(f"{type(model).__name__}.param_groups() returned unknown group(s) {unknown}")
    seen: dict[int, str] = {}
    for name, params in groups.items():
        for p in params:
            if id(p) in seen:
                raise ValueError(
                    f"parameter {trainable.get(id(p), '?')} is in groups {seen[id(p)]!r} and {name!r}"
                )
            seen[id(p)] = name
    missing = [n for i, n in trainable.items() if i not in seen]
    if missing:
        raise ValueError(f"{type(model).__name__}.param_groups() misses trainable parameters: {missing[:5]}")
    return groups


def build_optimizer_groups(
    model: nn.Module, optim: OptimSection, learning_rate: float, weight_decay: float
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: one (decay) + one (no decay) group per module group.

    Each dict has ``params``, ``lr``, ``weight_decay`` and ``group_name`` (e.g. ``"vision"`` or
    ``"vision_no_decay"``); empty groups are dropped. With ``optim.embeddings_lr`` set, the text
    encoder's word-embedding matrix leaves ``text`` for its own ``"embeddings"`` group.
    """
    decay = decay_parameter_names(model)
    name_of = {id(p): n for n, p in model.named_parameters()}
    groups = module_parameter_groups(model)
    if optim.embeddings_lr is not None and "text" in groups:
        # the word-embedding matrix as its own group (new rows of an extended vocabulary)
        embeddings = [p for p in groups["text"] if name_of[id(p)].endswith("word_embeddings.weight")]
        if embeddings:
            groups["text"] = [p for p in groups["text"] if all(p is not e for e in embeddings)]
            groups["embeddings"] = embeddings
    out: list[dict[str, Any]] = []
    for group, params in groups.items():
        lr = optim.lr_for(group, learning_rate)
        wd = optim.wd_for(group, weight_decay)
        with_decay = [p for p in params if name_of[id(p)] in decay]
        without = [p for p in params if name_of[id(p)] not in decay]
        if with_decay:
            out.append({"params": with_decay, "lr": lr, "weight_decay": wd, "group_name": group})
        if without:
            out.append({"params": without, "lr": lr, "weight_decay": 0.0, "group_name": f"{group}_no_decay"})
    return out
