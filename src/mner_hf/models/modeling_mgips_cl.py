"""MGIPS-CL for multimodal NER, generalised to posts with several images.

Travels with checkpoints (``trust_remote_code``): imports its siblings only relatively and
nothing else from ``mner_hf``.

Pipeline for B posts, L sub-word tokens, M image slots, S visual tokens per image:

1. Mutual-attention encoder (eq. 2-4): BERT layer l attends to
   ``[phi_k^l(V^{v(l)}); K^l]`` / ``[phi_v^l(V^{v(l)}); V^l]`` where ``V^{v(l)}`` (B, M*S, D_v)
   are the visual tokens of all REAL images of the post after the matching CLIP layer
   ``v(l) = ((l + 1) * L_v) // L_t``; key and value projections are separate (the reference
   built the value prefix from the keys). With ``bidirectional_mutual_attention`` each vision
   layer also attends to prefixes projected from the previous text layer's states.
   Implemented with the shared ``"mner_prefix"`` attention (prefix_attention.py).
2. Interweave encoder of MGEs (eq. 5-11) + pre-post adaptive gate (eq. 12-13).
3. Word-level emissions + CRF (shared ConditionalRandomField).
4. Training only: IPS-CL (eq. 14-16) and standard CL (eq. 17); total loss eq. 19
   ``L = L_crf + ips_cl_weight * L_ips + cl_weight * L_cl``.
"""

from __future__ import annotations

import torch
from torch import nn
from .configuration_mgips_cl import MGIPSCLConfig
from .crf import bio_transition_constraints
from .mgips_losses import ips_contrastive_loss, standard_contrastive_loss
from .mgips_modules import InterweaveEncoder, PrePostAdaptiveGate
from .modeling_common import MNERPreTrainedModel, build_text_encoder
from .modeling_outputs import MNERTokenClassifierOutput
from .prefix_attention import prefix_attention_kwargs, use_prefix_attention
from .vision_encoder import ImageEncoder, resolve_vision_config


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(N, P, D) -> (N, heads, P, D // heads)."""
    n, p, d = x.shape
    return x.view(n, p, heads, d // heads).transpose(1, 2)


class MGIPSCLPreTrainedModel(MNERPreTrainedModel):
    """Config plumbing of MGIPS-CL on the shared MNER base (CRF head, param groups, freezing,
    ``from_encoders``)."""

    config_class = MGIPSCLConfig
    config: MGIPSCLConfig
    base_model_prefix = "mgips_cl"

    def restore_crf_constraints(self) -> None:
        """Rebuild the CRF's non-persistent transition-constraint buffers from ``config``.

        ``from_pretrained`` materialises modules from the meta device, which leaves those
        buffers (not stored in the checkpoint) uninitialised; this recomputes them.
        """
        crf = getattr(self, "crf", None)
        if crf is None:
            return
        c = crf.num_tags
        if self.config.constrain_transitions:
            trans, start, end = bio_transition_constraints(self.config.id2label)
        else:
            trans, start, end = torch.ones(c, c, dtype=torch.bool), torch.ones(c, dtype=torch.bool), torch.ones(c, dtype=torch.bool)
        device = crf.transitions.device
        crf.allowed_transitions = trans.to(device)
        crf.allowed_start = start.to(device)
        crf.allowed_end = end.to(device)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):  # noqa: D102 - see PreTrainedModel.from_pretrained
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.restore_crf_constraints()
        return loaded


class MGIPSCLForTokenClassification(MGIPSCLPreTrainedModel):
    """MGIPS-CL token classifier; forward follows the model contract of ARCHITECTURE.md."""

    def __init__(self, config: MGIPSCLConfig) -> None:
        super().__init__(config)
        text_cfg, vision_cfg = config.text_config, resolve_vision_config(config.vision_config)
        self.text_encoder = build_text_encoder(text_cfg)
        self.vision_encoder = ImageEncoder(vision_cfg)
        self._check_structure()
        d_t, d_v = text_cfg.hidden_size, vision_cfg.hidden_size
        n_t, n_v = text_cfg.num_hidden_layers, vision_cfg.num_hidden_layers
        self.text_heads, self.vision_heads = text_cfg.num_attention_heads, vision_cfg.num_attention_heads
        # eq. 3-4: per text layer, separate key and value projections of the visual tokens
        self.visual_prefix_key = nn.ModuleList(nn.Linear(d_v, d_t) for _ in range(n_t))
        self.visual_prefix_value = nn.ModuleList(nn.Linear(d_v, d_t) for _ in range(n_t))
        if config.bidirectional_mutual_attention:
            self.text_prefix_key = nn.ModuleList(nn.Linear(d_t, d_v) for _ in range(n_v))
            self.text_prefix_value = nn.ModuleList(nn.Linear(d_t, d_v) for _ in range(n_v))
        for idx, layer in enumerate(self.vision_encoder.backbone.encoder.layers):
            layer.self_attn.layer_idx = idx  # selects the layer's prefix in "mner_prefix"
        if config.use_mgi:
            self.visual_to_text = nn.Linear(d_v, d_t)
            self.interweave = InterweaveEncoder(
                d_t,
                num_layers=config.interweave_layers,
                use_row=config.use_row_grained,
                use_col=config.use_col_grained,
                dropout=config.fusion_dropout,
                layer_norm_eps=getattr(text_cfg, "layer_norm_eps", 1e-12),
            )
            self.gate = PrePostAdaptiveGate(d_t)
        if self._uses_contrastive:
            self.text_projection = nn.Linear(d_t, config.contrastive_dim)
            self.image_projection = nn.Linear(d_v, config.contrastive_dim)
        self._build_crf_head(d_t)  # dropout + emissions (eq. 5) + shared CRF
        self.post_init()

    # ------------------------------------------------------------------ structure / plumbing
    @property
    def _uses_contrastive(self) -> bool:
        c = self.config
        return (c.use_ips_cl and c.ips_cl_weight > 0) or (c.use_standard_cl and c.cl_weight > 0)

    def _check_structure(self) -> None:
        for owner, attrs in ((self.text_encoder, ("embeddings", "encoder")), (self.vision_encoder.backbone, ("embeddings", "encoder"))):
            for attr in attrs:
                if not hasattr(owner, attr):
                    raise ValueError(f"MGIPS-CL needs a BERT-family text encoder and a CLIP-style ViT; "
                                     f"{type(owner).__name__} has no {attr!r}")
        if not hasattr(self.text_encoder.encoder, "layer"):
            raise ValueError(f"text encoder {type(self.text_encoder).__name__} has no encoder.layer list (BERT-family required)")
        backbone = self.vision_encoder.backbone
        if not (hasattr(backbone.encoder, "layers") and hasattr(backbone, "pre_layrnorm") and hasattr(backbone, "post_layernorm")):
            raise ValueError(f"vision backbone {type(backbone).__name__} is not CLIP-style "
                             "(needs embeddings, pre_layrnorm, encoder.layers, post_layernorm)")

    # ------------------------------------------------------------------ inputs
    def _visual_inputs(
        self,
        batch: int,
        pixel_values: torch.Tensor | None,
        image_mask: torch.Tensor | None,
        crop_pixel_values: torch.Tensor | None,
        crop_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Validate and join post images and external crops: (B, M', 3, H, W), (B, M') bool."""
        parts, masks = [], []
        for name, pv, mask in (("pixel_values", pixel_values, image_mask), ("crop_pixel_values", crop_pixel_values, crop_mask)):
            if pv is None:
                continue
            if pv.dim() != 5 or pv.shape[0] != batch or pv.shape[2] != 3:
                raise ValueError(f"{name} must be (B={batch}, M, 3, H, W), got {tuple(pv.shape)}")
            size = self.config.vision_config.image_size
            if pv.shape[1] > 0 and tuple(pv.shape[-2:]) != (size, size):
                raise ValueError(f"{name} images are {tuple(pv.shape[-2:])}, vision_config.image_size is {size}")
            if mask is None:
                mask = torch.ones(pv.shape[:2], dtype=torch.bool, device=pv.device)
            if mask.shape != pv.shape[:2]:
                raise ValueError(f"mask of {name} must be (B, M) = {tuple(pv.shape[:2])}, got {tuple(mask.shape)}")
            parts.append(pv)
            masks.append(mask.bool())
        if pixel_values is not None and pixel_values.shape[1] > self.config.max_images:
            raise ValueError(f"pixel_values has {pixel_values.shape[1]} image slots > config.max_images={self.config.max_images}")
        if not parts:
            return None, None
        return torch.cat(parts, dim=1), torch.cat(masks, dim=1)

    def _visual_tokens(self, flat: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, S, D_v) tokens of the N real images -> (B, M*S', D_v) per post and mask (B, M*S')."""
        if not self.config.use_class_token and flat.shape[1] > 1:
            flat = flat[:, 1:]
        bsz, slots = real.shape
        tokens = flat.new_zeros(bsz, slots, flat.shape[1], flat.shape[2]).masked_scatter(real[:, :, None, None], flat)
        mask = real[:, :, None].expand(-1, -1, flat.shape[1])
        return tokens.flatten(1, 2), mask.flatten(1, 2)

    # ------------------------------------------------------------------ encoder (eq. 2-4)
    def _encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        pixel_values: torch.Tensor | None,
        real: torch.Tensor | None,
        image_embeds: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Mutual-attention encoder.

        Returns:
            text (B, L, D_t); visual tokens (B, P, D_v) and their mask (B, P) (None without
            images); per-image vectors (B, M, D_v) for the contrastive heads (None without images).
        """
        base = self.attention_base()
        use_prefix_attention(self.text_encoder)
        use_prefix_attention(self.vision_encoder.backbone)
        text_layers = self.text_encoder.encoder.layer
        hidden = self.text_encoder.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        key_mask = attention_mask.bool()
        text_mask4 = key_mask[:, None, None, :].expand(-1, 1, key_mask.shape[1], -1)  # (B, 1, L, L)

        v_hidden = owner = None
        static_tokens = static_mask = image_vectors = None
        if image_embeds is not None:  # feature cache: one token per image, the same at every layer
            if image_embeds.dim() != 3 or image_embeds.shape[-1] != self.config.vision_config.hidden_size:
                raise ValueError(f"image_embeds must be (B, M, {self.config.vision_config.hidden_size}), "
                                 f"got {tuple(image_embeds.shape)}")
            static_tokens, static_mask = image_embeds * real[..., None].to(image_embeds.dtype), real
            image_vectors = static_tokens
        elif real is not None and bool(real.any()):
            backbone = self.vision_encoder.backbone
            flat = pixel_values[real].to(next(backbone.parameters()).dtype)  # (N, 3, H, W), real images only
            v_hidden = backbone.pre_layrnorm(backbone.embeddings(flat))  # (N, S, D_v)
            owner = torch.arange(real.shape[0], device=real.device)[:, None].expand_as(real)[real]  # (N,)
        vision_layers = self.vision_encoder.backbone.encoder.layers
        n_t, n_v, done_v = len(text_layers), len(vision_layers), 0

        for l, layer in enumerate(text_layers):
            if v_hidden is not None:
                target = ((l + 1) * n_v) // n_t
                while done_v < target:  # advance the matching vision layers
                    kwargs = prefix_attention_kwargs(None, None, base)
                    if self.config.bidirectional_mutual_attention:  # vision attends to the previous text layer
                        pk = _split_heads(self.text_prefix_key[done_v](hidden)[owner], self.vision_heads)
                        pv = _split_heads(self.text_prefix_value[done_v](hidden)[owner], self.vision_heads)
                        entries = [None] * n_v
                        entries[done_v] = (pk, pv)
                        kwargs = prefix_attention_kwargs(entries, key_mask[owner], base)
                    v_hidden = vision_layers[done_v](v_hidden, None, **kwargs)
                    done_v += 1
                tokens, tok_mask = self._visual_tokens(v_hidden, real)
            else:
                tokens, tok_mask = static_tokens, static_mask
            kwargs = prefix_attention_kwargs(None, None, base)
            if tokens is not None and tokens.shape[1] > 0:
                pk = _split_heads(self.visual_prefix_key[l](tokens), self.text_heads)  # eq. 3
                pv = _split_heads(self.visual_prefix_value[l](tokens), self.text_heads)  # eq. 4
                entries = [None] * n_t
                entries[l] = (pk, pv)
                kwargs = prefix_attention_kwargs(entries, tok_mask, base)
            hidden = layer(hidden, text_mask4, **kwargs)  # eq. 2

        if v_hidden is not None:
            tokens, tok_mask = self._visual_tokens(v_hidden, real)
            pooled = self.vision_encoder.backbone.post_layernorm(v_hidden[:, 0])  # (N, D_v)
            image_vectors = pooled.new_zeros(*real.shape, pooled.shape[-1]).masked_scatter(real[..., None], pooled)
            return hidden, tokens, tok_mask, image_vectors
        return hidden, static_tokens, static_mask, image_vectors

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        word_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        crop_pixel_values: torch.Tensor | None = None,
        crop_mask: torch.Tensor | None = None,
        return_marginals: bool = False,
        **kwargs,
    ) -> MNERTokenClassifierOutput:
        """Args (B posts, L tokens, M image slots, C crop slots):
            input_ids / attention_mask / token_type_ids / word_ids / labels: (B, L).
            pixel_values: (B, M, 3, H, W); image_mask: (B, M) 1 real image.
            image_embeds: (B, M, D_v) precomputed per-image vectors (instead of pixel_values).
            crop_pixel_values: (B, C, 3, H, W) externally supplied crops (e.g. visual-grounding
                regions), appended as extra image slots; crop_mask: (B, C).
            return_marginals: also return CRF marginals (B, W, C).

        Returns:
            :class:`MNERTokenClassifierOutput`; ``loss_components`` holds ``crf`` and, in
            training mode, ``ips_cl`` / ``cl`` when enabled.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (B, L), got {tuple(input_ids.shape)}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        batch = input_ids.shape[0]
        if image_embeds is not None and (pixel_values is not None or crop_pixel_values is not None):
            raise ValueError("pass either pixel_values/crop_pixel_values or image_embeds, not both")
        if image_embeds is not None:
            real = (image_mask if image_mask is not None else torch.ones(image_embeds.shape[:2], device=image_embeds.device)).bool()
            if real.shape != image_embeds.shape[:2]:
                raise ValueError(f"image_mask {tuple(real.shape)} does not match image_embeds {tuple(image_embeds.shape[:2])}")
            pixels = None
        else:
            pixels, real = self._visual_inputs(batch, pixel_values, image_mask, crop_pixel_values, crop_mask)

        text, tokens, tok_mask, image_vectors = self._encode(
            input_ids, attention_mask, token_type_ids, pixels, real, image_embeds
        )
        fused = text
        if self.config.use_mgi:
            text_mask = attention_mask.bool()
            if tokens is None:  # no image in the whole batch: an empty guide, fully masked
                tokens = text.new_zeros(batch, 0, self.config.vision_config.hidden_size)
                tok_mask = torch.zeros(batch, 0, dtype=torch.bool, device=text.device)
            post = self.interweave(text, self.visual_to_text(tokens), text_mask, tok_mask)  # eq. 10-11
            fused = self.gate(text, post)  # eq. 12-13

        extra: dict[str, torch.Tensor] = {}
        if labels is not None and self.training and self._uses_contrastive and image_vectors is not None:
            c = self.config
            text_vec = self.text_projection(text[:, 0])  # [CLS] of the mutual-attention encoder
            image_vec = self.image_projection(image_vectors)  # (B, M, contrastive_dim)
            if c.use_ips_cl and c.ips_cl_weight > 0:  # eq. 14-16, weighted as in eq. 19
                extra["ips_cl"] = c.ips_cl_weight * ips_contrastive_loss(
                    text_vec, image_vec, real, top_k=c.ips_top_k, temperature=c.cl_temperature
                )
            if c.use_standard_cl and c.cl_weight > 0:  # eq. 17, weighted as in eq. 19
                extra["cl"] = c.cl_weight * standard_contrastive_loss(text_vec, image_vec, real, temperature=c.cl_temperature)
        # eq. 19: loss = crf + sum(extra); loss_components = {"crf", "ips_cl", "cl"} (weighted terms)
        return self._crf_head(fused, attention_mask, word_ids, labels, return_marginals, extra_losses=extra)


MGIPSCLConfig.register_for_auto_class()
MGIPSCLForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")

__all__ = ["MGIPSCLForTokenClassification", "MGIPSCLPreTrainedModel"]
