"""TPM-MI: temporal prompts from the several images of a post (MNER-MI, Huang et al., section 4).

Per post, the m image slots give vectors V (B, m, D_v) (padded slots zero, only real images encoded);
C = V + T with a learnable temporal position embedding T (m, D_v); a transformer encoder over the m
vectors of EACH post (batch-first) gives U; per text layer l a projection gives prompts P^l, which
phi_k^l, phi_v^l map to extra keys/values prepended to the layer's own keys/values in its
self-attention (``prefix_attention``). Linear emissions + CRF over words (``modeling_common`` /
``crf``). With ``prompt_projection="shared_mlp"`` (the authors' released code) one tanh MLP maps U
to every layer's prompt keys and values at once, replacing W_p^l and phi_k^l / phi_v^l.

Equation map (MNER-MI paper; the same table is in docs/ARCHITECTURE.md):
eq. 1 ``image_prompts`` (``prompt_projections``); eq. 2 BERT's own query/key/value projections,
received by ``prefix_attention.prefix_attention_forward``; eq. 3 ``image_prompts`` (``prefix_key``,
``prefix_value``); eq. 4 ``prefix_attention.prefix_attention_forward``; eq. 5
``crf.ConditionalRandomField.log_likelihood``; eq. 6 ``crf.ConditionalRandomField._forward_algorithm``;
eq. 7 ``modeling_common.MNERPreTrainedModel._crf_head``.

Public API
----------
``TPMMIForTokenClassification(config: TPMMIConfig)``
    ``forward(input_ids, attention_mask, token_type_ids=None, word_ids=None, labels=None,
              pixel_values=None, image_mask=None, image_embeds=None, return_marginals=False, ...)``
        -> ``MNERTokenClassifierOutput``
    ``get_image_features(pixel_values (B, M, 3, H, W), image_mask (B, M)) -> (B, M, D_v)``
        per-image vectors (the feature cache stores these and passes them back as ``image_embeds``)
    ``image_prompts(image_embeds, image_mask) -> (prefix_key_values, prefix_mask)``
    ``from_encoders(text=..., vision=..., labels=[...], preset=None, **config_kwargs)``;
    ``param_groups()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .configuration_tpm_mi import TPMMIConfig
from .modeling_common import MNERPreTrainedModel, build_text_encoder
from .modeling_outputs import MNERTokenClassifierOutput
from .prefix_attention import prefix_attention_kwargs, use_prefix_attention
from .vision_encoder import ImageEncoder


class TPMMIForTokenClassification(MNERPreTrainedModel):
    """TPM-MI multimodal NER tagger (text encoder with image prompts in every layer + CRF)."""

    config_class = TPMMIConfig

    def __init__(self, config: TPMMIConfig) -> None:
        super().__init__(config)
        self._check_labels()
        text_cfg = config.text_config
        self.text_encoder = build_text_encoder(text_cfg)
        if not self.text_encoder._can_set_attn_implementation():
            raise ValueError(
                f"text encoder {type(self.text_encoder).__name__} does not use transformers' AttentionInterface, "
                "so image prompts cannot be injected; use a BERT-family encoder (BERT, RoBERTa, ...)"
            )
        self.vision_encoder = ImageEncoder(config.vision_config, pooling=config.image_pooling)
        d_v = self.vision_encoder.output_dim
        d_t = text_cfg.hidden_size
        if d_v % config.temporal_heads != 0:
            raise ValueError(f"TPMMIConfig: image vector size {d_v} is not a multiple of temporal_heads={config.temporal_heads}")
        self.num_text_layers = text_cfg.num_hidden_layers
        self.num_heads = text_cfg.num_attention_heads
        self.head_dim = d_t // self.num_heads
        # T: learnable temporal position embedding, one row per image slot
        self.temporal_embedding = nn.Parameter(torch.zeros(config.max_images, d_v))
        if config.temporal_layers > 0:
            layer = nn.TransformerEncoderLayer(
                d_model=d_v,
                nhead=config.temporal_heads,
                dim_feedforward=config.temporal_ffn_dim or 4 * d_v,
                dropout=config.temporal_dropout,
                batch_first=True,  # attend over the images of each post, never across posts
            )
            self.temporal_encoder = nn.TransformerEncoder(layer, config.temporal_layers, enable_nested_tensor=False)
        else:
            self.temporal_encoder = None
        k = config.prompt_length
        if config.prompt_projection == "shared_mlp":
            # the authors' code: U (B, m, D_v) -> (B, m, layers * 2 * k * D_t), keys and values of every layer
            self.prompt_encoder = nn.Sequential(
                nn.Linear(d_v, config.prompt_hidden_size),
                nn.Tanh(),
                nn.Linear(config.prompt_hidden_size, self.num_text_layers * 2 * k * d_t),
            )
        else:
            self.prompt_projections = nn.ModuleList(nn.Linear(d_v, k * d_t) for _ in range(self.num_text_layers))
            self.prefix_key = nn.ModuleList(nn.Linear(d_t, d_t) for _ in range(self.num_text_layers))  # phi_k
            self.prefix_value = nn.ModuleList(nn.Linear(d_t, d_t) for _ in range(self.num_text_layers))  # phi_v
        self._build_crf_head(d_t)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if module is self:
            from transformers import initialization as init

            std = self.config.temporal_init_std
            init.normal_(self.temporal_embedding, mean=0.0, std=self.config.initializer_range if std is None else std)

    # ---- images -------------------------------------------------------------------------------
    def get_image_features(self, pixel_values: torch.Tensor, image_mask: torch.Tensor) -> torch.Tensor:
        """V: (B, M, 3, H, W) images + (B, M) mask -> (B, M, D_v), zero vectors at padded slots."""
        out = self.vision_encoder(pixel_values, image_mask, skip_padded=not self.config.encode_padded_images)
        return out.image_embeds

    def _image_inputs(
        self,
        batch_size: int,
        pixel_values: torch.Tensor | None,
        image_mask: torch.Tensor | None,
        image_embeds: torch.Tensor | None,
        device: torch.device,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Validated (V (B, M, D_v), real (B, M) bool) or (None, None) when the batch has no image slot."""
        if pixel_values is not None and image_embeds is not None:
            raise ValueError("pass either pixel_values or image_embeds, not both")
        source = pixel_values if pixel_values is not None else image_embeds
        if source is None or source.size(1) == 0:
            return None, None
        if source.size(0) != batch_size:
            raise ValueError(f"images are given for {source.size(0)} posts but the text batch has {batch_size}")
        slots = source.size(1)
        if slots > self.config.max_images:
            raise ValueError(f"{slots} image slots per post exceed max_images={self.config.max_images}")
        if image_mask is None:
            image_mask = torch.ones(batch_size, slots, dtype=torch.long, device=device)
        if image_mask.shape != (batch_size, slots):
            raise ValueError(f"image_mask must be (B, M) = {(batch_size, slots)}, got {tuple(image_mask.shape)}")
        real = image_mask.bool()
        if pixel_values is not None:
            feats = self.get_image_features(pixel_values, image_mask)
        else:
            if image_embeds.dim() != 3 or image_embeds.size(-1) != self.vision_encoder.output_dim:
                raise ValueError(
                    f"image_embeds must be (B, M, {self.vision_encoder.output_dim}), got {tuple(image_embeds.shape)}"
                )
            feats = image_embeds.to(self.temporal_embedding.dtype) * real.unsqueeze(-1).to(self.temporal_embedding.dtype)
        return feats, real

    def image_prompts(
        self, image_embeds: torch.Tensor, image_mask: torch.Tensor
    ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """Per-layer prefix keys/values from the image vectors of each post.

        Args:
            image_embeds: V (B, M, D_v), zeros at padded slots.
            image_mask: (B, M) bool/long real slots.

        Returns:
            list (one per text layer) of (key, value) each (B, heads, M * k, head_dim), and the prefix
            mask (B, M * k) bool (k = prompt_length).
        """
        real = image_mask.bool()
        bsz, slots, _ = image_embeds.shape
        c = image_embeds + self.temporal_embedding[:slots].unsqueeze(0)  # C = V + T
        has_image = real.any(dim=1, keepdim=True)  # (B, 1)
        if self.config.mask_padded_images:
            prompt_mask = real
        else:  # the paper: zero-vector slots (plus T) are attended like real images
            prompt_mask = has_image.expand(bsz, slots)
        if self.temporal_encoder is not None:
            # a post without images would have every key masked (NaN); its prompts are masked anyway
            key_padding = ~(prompt_mask | ~has_image)
            u = self.temporal_encoder(c, src_key_padding_mask=key_padding)  # U (B, M, D_v)
        else:
            u = c
        k = self.config.prompt_length
        prompts_mask = prompt_mask.repeat_interleave(k, dim=1)  # (B, M * k)

        def heads(x: torch.Tensor) -> torch.Tensor:  # (B, M * k, D_t) -> (B, heads, M * k, head_dim)
            return x.reshape(bsz, slots * k, self.num_heads, self.head_dim).transpose(1, 2)

        prefix = []
        if self.config.prompt_projection == "shared_mlp":
            # one MLP for all layers; slice l of its output holds [key_l; value_l] (authors' layout)
            kv = self.prompt_encoder(u).view(bsz, slots, self.num_text_layers, 2, k, -1)  # (B, M, L, 2, k, D_t)
            for layer in range(self.num_text_layers):
                prefix.append((heads(kv[:, :, layer, 0]), heads(kv[:, :, layer, 1])))
            return prefix, prompts_mask
        for proj, phi_k, phi_v in zip(self.prompt_projections, self.prefix_key, self.prefix_value):
            p = proj(u).view(bsz, slots * k, -1)  # eq. 1: P^l = W_p^l U, (B, M * k, D_t)
            prefix.append((heads(phi_k(p)), heads(phi_v(p))))  # eq. 3: K_p^l = phi_k^l P^l, V_p^l = phi_v^l P^l
        return prefix, prompts_mask

    @classmethod
    def from_encoders(
        cls,
        text: str,
        vision: str | None = None,
        labels: Sequence[str] | Mapping[int, str] = (),
        preset: str | None = None,
        **config_kwargs: Any,
    ) -> "TPMMIForTokenClassification":
        """Build from pretrained encoders; ``preset="authors"`` starts from the authors' released
        settings (``TPMMIConfig.preset_kwargs``), which ``config_kwargs`` override."""
        if preset is not None:
            config_kwargs = {**TPMMIConfig.preset_kwargs(preset), **config_kwargs}
        return super().from_encoders(text=text, vision=vision, labels=labels, **config_kwargs)

    # ---- forward ------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        word_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        return_marginals: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> MNERTokenClassifierOutput:
        """Tag the words of B posts with the help of their images.

        Args:
            input_ids / attention_mask / token_type_ids / word_ids / labels: (B, L).
            pixel_values: (B, M, 3, H, W) images in post order (padded slots zeros), or
            image_embeds: (B, M, D_v) cached per-image vectors; with image_mask (B, M).
            return_marginals: also return CRF marginals (B, W, C).

        Returns:
            logits (B, W, C) word emissions, word_mask (B, W), predictions (B, W), loss with labels.
        """
        if input_ids is None:
            raise ValueError("input_ids are required")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        feats, real = self._image_inputs(input_ids.size(0), pixel_values, image_mask, image_embeds, input_ids.device)
        prefix, prefix_mask = (None, None) if feats is None else self.image_prompts(feats, real)
        use_prefix_attention(self.text_encoder)  # idempotent; set_attn_implementation may have reset it
        encoder_kwargs = prefix_attention_kwargs(prefix, prefix_mask, self.attention_base())
        if output_hidden_states is not None:
            encoder_kwargs["output_hidden_states"] = output_hidden_states
        if output_attentions is not None:
            encoder_kwargs["output_attentions"] = output_attentions
        if token_type_ids is not None:
            encoder_kwargs["token_type_ids"] = token_type_ids
        out = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask, **encoder_kwargs)
        return self._crf_head(
            out.last_hidden_state,
            attention_mask,
            word_ids=word_ids,
            labels=labels,
            return_marginals=return_marginals,
            hidden_states=getattr(out, "hidden_states", None),
            attentions=getattr(out, "attentions", None),
        )
