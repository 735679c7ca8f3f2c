"""Prefix keys/values for every self-attention layer of a BERT-family encoder (MNER-MI eq. 3-4).

Registers the attention implementation ``"mner_prefix"`` in transformers' ``AttentionInterface``
AND ``AttentionMaskInterface`` (without the mask registration the encoder would build no padding
mask at all for an unknown implementation). The implementation prepends per-layer prefix keys and
values to the layer's own keys/values and delegates to transformers' ``sdpa`` or ``eager``
attention underneath.

Public API
----------
``PREFIX_ATTENTION = "mner_prefix"``
``use_prefix_attention(encoder, base="sdpa")``
    switch a ``PreTrainedModel`` encoder to ``"mner_prefix"`` running on ``base`` ("sdpa"/"eager");
    idempotent, cheap, call it before every forward (``set_attn_implementation`` may have reset it).
``prefix_attention_kwargs(prefix_key_values, prefix_mask, base) -> dict``
    the keyword arguments to pass to the encoder's ``forward``:
    ``prefix_key_values``: list (one per layer) of ``(key, value)`` each (B, heads, P, head_dim);
    ``prefix_mask``: (B, P) bool, True = the prefix position may be attended;
    ``prefix_attention_base``: "sdpa" or "eager".
BERT-family encoders pass these forward kwargs unchanged down to every attention call (also
through ``GradientCheckpointingLayer``); ``module.layer_idx`` selects the layer's prefix. No
``Cache`` object is involved, so gradient checkpointing recomputes the prefix path correctly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.models.bert.modeling_bert import eager_attention_forward

PREFIX_ATTENTION = "mner_prefix"
BASE_IMPLEMENTATIONS = ("sdpa", "eager")


def prefix_attention_mask(*args, **kwargs) -> torch.Tensor | None:
    """Mask factory for ``"mner_prefix"``: boolean (B, 1, Q, K) masks (True = attend) as for sdpa,
    or ``None`` when there is no padding; the attention function converts for eager."""
    kwargs.pop("dtype", None)
    kwargs.pop("config", None)
    return sdpa_mask(*args, **kwargs)


def prefix_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    prefix_key_values: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
    prefix_mask: torch.Tensor | None = None,
    prefix_attention_base: str = "sdpa",
    kv_sink: dict | None = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention with per-layer prefix keys/values, MNER-MI eq. 4: H^l = softmax(Q [K_p; K] / sqrt(d)) [V_p; V].

    Args:
        query/key/value: (B, heads, L, head_dim) of the text tokens: the layer's own Q^l, K^l, V^l
            (MNER-MI eq. 2, computed by the encoder's self-attention before it calls this function).
        attention_mask: (B, 1, L, L) bool (True = attend) or None (no padding).
        prefix_key_values: per layer ``(K_p, V_p)`` each (B, heads, P, head_dim); P may be 0.
        prefix_mask: (B, P) bool, True = attend to that prefix position; None = all attended.
        prefix_attention_base: "sdpa" or "eager" implementation to run underneath.
        kv_sink: when given, receives ``kv_sink[module.layer_idx] = (key, value)``, the layer's
            OWN keys/values (B, heads, L, head_dim) before any prefix (MGIPS-CL eq. 2-4 hands
            them to the other encoder).

    Returns:
        ``(attn_output (B, L, heads, head_dim), attn_weights (B, heads, L, P + L) or None)``.
    """
    if prefix_attention_base not in BASE_IMPLEMENTATIONS:
        raise ValueError(f"prefix_attention_base must be one of {BASE_IMPLEMENTATIONS}, got {prefix_attention_base!r}")
    if attention_mask is not None and attention_mask.dtype != torch.bool:
        attention_mask = attention_mask >= 0  # an additive mask from elsewhere: 0 = attend
    if kv_sink is not None:
        kv_sink[getattr(module, "layer_idx", None)] = (key, value)
    if prefix_key_values is not None:
        layer_idx = getattr(module, "layer_idx", None)
        if layer_idx is None or layer_idx >= len(prefix_key_values):
            raise ValueError(
                f"prefix_key_values has {len(prefix_key_values)} layers but the attention module has "
                f"layer_idx={layer_idx}"
            )
        pk, pv = prefix_key_values[layer_idx]
        bsz, _, q_len, _ = query.shape
        num_prefix = pk.size(2)
        if pk.shape[:2] != key.shape[:2] or pk.size(-1) != key.size(-1) or pv.shape != pk.shape:
            raise ValueError(f"prefix key/value {tuple(pk.shape)}/{tuple(pv.shape)} do not fit keys {tuple(key.shape)}")
        if num_prefix > 0:
            key = torch.cat([pk.to(key.dtype), key], dim=2)
            value = torch.cat([pv.to(value.dtype), value], dim=2)
            text_mask = (
                attention_mask
                if attention_mask is not None
                else torch.ones(bsz, 1, q_len, key.size(2) - num_prefix, dtype=torch.bool, device=query.device)
            )
            if prefix_mask is None:
                pmask = torch.ones(bsz, 1, q_len, num_prefix, dtype=torch.bool, device=query.device)
            else:
                if prefix_mask.shape != (bsz, num_prefix):
                    raise ValueError(f"prefix_mask must be (B, P) = {(bsz, num_prefix)}, got {tuple(prefix_mask.shape)}")
                pmask = prefix_mask.bool()[:, None, None, :].expand(bsz, 1, q_len, num_prefix)
            attention_mask = torch.cat([pmask.expand(-1, text_mask.size(1), -1, -1), text_mask], dim=-1)
    if prefix_attention_base == "sdpa":
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=False, **kwargs
        )
    if attention_mask is not None:
        attention_mask = torch.where(
            attention_mask,
            torch.zeros((), dtype=query.dtype, device=query.device),
            torch.finfo(query.dtype).min,
        )
    return eager_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)


AttentionInterface.register(PREFIX_ATTENTION, prefix_attention_forward)
AttentionMaskInterface.register(PREFIX_ATTENTION, prefix_attention_mask)


def use_prefix_attention(encoder: PreTrainedModel) -> None:
    """Make ``encoder`` (and its config) use ``"mner_prefix"`` attention. Idempotent."""
    if encoder.config._attn_implementation != PREFIX_ATTENTION:
        encoder.config._attn_implementation_internal = PREFIX_ATTENTION


def prefix_attention_kwargs(
    prefix_key_values: Sequence[tuple[torch.Tensor, torch.Tensor]] | None,
    prefix_mask: torch.Tensor | None,
    base: str = "sdpa",
    kv_sink: dict | None = None,
) -> dict:
    """Forward kwargs for an encoder switched by :func:`use_prefix_attention` (``kv_sink``: see
    :func:`prefix_attention_forward`)."""
    if base not in BASE_IMPLEMENTATIONS:
        raise ValueError(f"attention base must be one of {BASE_IMPLEMENTATIONS}, got {base!r}")
    kwargs: dict = {"prefix_attention_base": base}
    if kv_sink is not None:
        kwargs["kv_sink"] = kv_sink
    if prefix_key_values is not None:
        kwargs["prefix_key_values"] = list(prefix_key_values)
        kwargs["prefix_mask"] = prefix_mask
    return kwargs
