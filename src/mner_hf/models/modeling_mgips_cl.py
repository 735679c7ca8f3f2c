"""MGIPS-CL for multimodal NER (paper section 3), generalised to posts with several images.

Travels with checkpoints (``trust_remote_code``): imports its siblings only relatively and
nothing else from ``mner_hf``.

B posts, L sub-word tokens, M image slots, S visual tokens per image, N real images:

1. Embeddings: text S^e (eq. 1, BERT's embeddings); visual V^e per image (CLIP's class +
   patch + position embeddings, pre-LayerNorm), or per slot ``[class, crop patches...]``.
2. Mutual-attention encoder (eq. 2-4, :meth:`MGIPSCLForTokenClassification._mutual_encode`):
   text layer l+1 attends to ``[K_l^v; own keys]`` / ``[V_l^v; own values]`` where K_l^v, V_l^v
   are the keys/values vision layer l computed itself (V^e for l = 0, eq. 3), over all REAL
   images of the post; vision layer l+1 attends likewise to the text's K_l^t, V_l^t (S^e first),
   text padding masked (eq. 4). The layers' own keys/values are collected by the shared
   ``"mner_prefix"`` attention (``kv_sink``), so nothing is recomputed.
3. Multi-Granularity Interweave (eq. 5-11, ``mgips_modules``) on the text H^t and the
   post's visual sequence H^v, then the pre-post adaptive gate (eq. 12-13) -> z.
4. Word-level emissions + CRF (eq. 18, shared head).
5. Training only: contrastive encoders f, g over z and the interweaved visual sequence
   (eq. 14), IPS-CL (eq. 15-16), standard CL (eq. 17), total loss eq. 19.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .configuration_mgips_cl import MGIPSCLConfig
from .crf import bio_transition_constraints
from .mgips_losses import ips_contrastive_loss, standard_contrastive_loss
from .mgips_modules import ContrastiveEncoder, InterweaveEncoder, PrePostAdaptiveGate
from .modeling_common import MNERPreTrainedModel, build_text_encoder
from .modeling_outputs import MNERTokenClassifierOutput
from .prefix_attention import prefix_attention_kwargs, use_prefix_attention
from .vision_encoder import ImageEncoder, resolve_vision_config


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(N, S, D) -> (N, heads, S, D // heads)."""
    n, s, d = x.shape
    return x.view(n, s, heads, d // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(N, heads, S, d) -> (N, S, heads * d)."""
    return x.transpose(1, 2).flatten(2)


class KeyValueProjection(nn.Module):
    """Learned projection of borrowed keys/values to the other encoder's width and heads (only
    built when the two encoders' widths or head counts differ)."""

    def __init__(self, in_size: int, out_size: int, out_heads: int) -> None:
        super().__init__()
        self.key = nn.Linear(in_size, out_size)
        self.value = nn.Linear(in_size, out_size)
        self.out_heads = out_heads

    def forward(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, h_in, S, d_in) x 2 -> (N, h_out, S, d_out) x 2."""
        return (_split_heads(self.key(_merge_heads(key)), self.out_heads),
                _split_heads(self.value(_merge_heads(value)), self.out_heads))


@dataclass
class VisionInput:
    """The images of a batch: ``real`` (B, M) bool slots; either ``embeds`` (N, S, D_v) vision
    embeddings V^e of the N real images (pixel path) or ``states`` (N, L_v + 1, S, D_v) cached
    per-layer hidden states (feature cache)."""

    real: torch.Tensor
    embeds: torch.Tensor | None = None
    states: torch.Tensor | None = None


class MGIPSCLPreTrainedModel(MNERPreTrainedModel):
    """Config plumbing of MGIPS-CL on the shared MNER base (CRF head, param groups, freezing,
    ``from_encoders``)."""

    config_class = MGIPSCLConfig
    config: MGIPSCLConfig
    base_model_prefix = "mgips_cl"

    def restore_crf_constraints(self) -> None:
        """Rebuild the CRF's non-persistent transition-constraint buffers from ``config``
        (``from_pretrained`` materialises modules from the meta device)."""
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
        # the feature cache stores per-layer hidden states; impossible when vision attends text (eq. 4)
        self.vision_encoder.cache_mode = "unavailable" if config.vision_attends_text else "hidden_states"
        d_t, d_v = text_cfg.hidden_size, vision_cfg.hidden_size
        n_t, n_v = text_cfg.num_hidden_layers, vision_cfg.num_hidden_layers
        self.text_heads, self.vision_heads = text_cfg.num_attention_heads, vision_cfg.num_attention_heads
        for idx, layer in enumerate(self.vision_encoder.backbone.encoder.layers):
            layer.self_attn.layer_idx = idx  # key of the layer in "mner_prefix" (prefix and kv_sink)
        if (d_t, self.text_heads) != (d_v, self.vision_heads):  # generalisation: project borrowed K/V
            self.vision_kv_to_text = nn.ModuleList(KeyValueProjection(d_v, d_t, self.text_heads) for _ in range(n_t))
            if config.vision_attends_text:
                self.text_kv_to_vision = nn.ModuleList(KeyValueProjection(d_t, d_v, self.vision_heads) for _ in range(n_v))
        if config.use_mgi:
            self.interweave = InterweaveEncoder(
                d_t, d_v, num_heads=config.fusion_heads, max_text_length=config.text_length_limit,
                max_visual_length=config.max_visual_length,
                text_intermediate=getattr(text_cfg, "intermediate_size", 4 * d_t),
                visual_intermediate=getattr(vision_cfg, "intermediate_size", 4 * d_v),
                num_layers=config.interweave_layers, use_row=config.use_row_grained,
                use_col=config.use_col_grained, dropout=config.fusion_dropout,
            )
            self.gate = PrePostAdaptiveGate(d_t)
        if self._uses_contrastive:
            dim = config.contrastive_dim or d_t
            self.contrastive_text = ContrastiveEncoder(d_t, dim)  # g of eq. 14
            self.contrastive_visual = ContrastiveEncoder(d_v, dim)  # f of eq. 14
        self._build_crf_head(d_t)  # dropout + emissions + shared CRF
        self.post_init()

    # ------------------------------------------------------------------ structure / plumbing
    @property
    def _uses_contrastive(self) -> bool:
        c = self.config
        return (c.use_ips_cl and c.ips_cl_weight > 0) or (c.use_standard_cl and c.cl_weight > 0)

    def _check_structure(self) -> None:
        if not hasattr(self.text_encoder, "embeddings") or not hasattr(getattr(self.text_encoder, "encoder", None), "layer"):
            raise ValueError(f"MGIPS-CL needs a BERT-family text encoder (embeddings, encoder.layer); "
                             f"got {type(self.text_encoder).__name__}")
        backbone = self.vision_encoder.backbone
        if not (hasattr(backbone, "embeddings") and hasattr(getattr(backbone, "encoder", None), "layers")
                and hasattr(backbone, "pre_layrnorm")):
            raise ValueError(f"vision backbone {type(backbone).__name__} is not CLIP-style "
                             "(needs embeddings, pre_layrnorm, encoder.layers)")

    # ------------------------------------------------------------------ visual inputs
    def _vision_input(
        self,
        batch: int,
        pixel_values: torch.Tensor | None,
        image_mask: torch.Tensor | None,
        image_embeds: torch.Tensor | None,
        crop_pixel_values: torch.Tensor | None,
    ) -> VisionInput | None:
        """Validate the visual inputs, substitute the default image (``missing_image``) and
        embed the real images (V^e) or take their cached hidden states."""
        c = self.config
        given = [n for n, t in (("pixel_values", pixel_values), ("image_embeds", image_embeds),
                                ("crop_pixel_values", crop_pixel_values)) if t is not None]
        if len(given) > 1:
            raise ValueError(f"pass only one of pixel_values / crop_pixel_values / image_embeds, got {given}")
        if c.crops_per_image and pixel_values is not None:
            raise ValueError(f"this MGIPS-CL model takes visual-grounding crops (crops_per_image="
                             f"{c.crops_per_image}): pass crop_pixel_values (B, M, C, 3, {c.crop_size}, {c.crop_size})")
        source = next((t for t in (pixel_values, crop_pixel_values, image_embeds) if t is not None), None)
        if source is not None:
            if source.shape[0] != batch:
                raise ValueError(f"{given[0]} has {source.shape[0]} posts, input_ids has {batch}")
            if source.shape[1] > c.max_images:
                raise ValueError(f"{given[0]} has {source.shape[1]} image slots > config.max_images={c.max_images}")
            real = (torch.ones(source.shape[:2], dtype=torch.bool, device=source.device) if image_mask is None
                    else image_mask.bool())
            if real.shape != source.shape[:2]:
                raise ValueError(f"image_mask must be (B, M) = {tuple(source.shape[:2])}, got {tuple(real.shape)}")
        if image_embeds is not None:
            return self._cached_input(image_embeds, real)
        if pixel_values is not None:
            size = self.vision_encoder.backbone.config.image_size
            if pixel_values.dim() != 5 or pixel_values.shape[2] != 3 or (pixel_values.shape[1] and tuple(pixel_values.shape[-2:]) != (size, size)):
                raise ValueError(f"pixel_values must be (B, M, 3, {size}, {size}), got {tuple(pixel_values.shape)}")
        if crop_pixel_values is not None:
            want = (c.crops_per_image, 3, c.crop_size, c.crop_size)
            if not c.crops_per_image or crop_pixel_values.dim() != 6 or tuple(crop_pixel_values.shape[2:]) != want:
                raise ValueError(f"crop_pixel_values must be (B, M, {', '.join(map(str, want))}) for crops_per_image="
                                 f"{c.crops_per_image}, got {tuple(crop_pixel_values.shape)}")
        pixels = pixel_values if pixel_values is not None else crop_pixel_values
        if c.missing_image == "default_image":  # paper 4.1: a post without images gets the default image
            shape = ((c.crops_per_image, 3, c.crop_size, c.crop_size) if c.crops_per_image
                     else (3, self.config.vision_config.image_size, self.config.vision_config.image_size))
            if pixels is None or pixels.shape[1] == 0:
                device = self.text_encoder.embeddings.word_embeddings.weight.device
                pixels = torch.zeros(batch, 1, *shape, device=device)
                real = torch.zeros(batch, 1, dtype=torch.bool, device=device)
            empty = ~real.any(dim=1)
            if bool(empty.any()):
                pixels, real = pixels.clone(), real.clone()
                pixels[empty, 0] = 0.0  # the mean image: zeros after normalisation
                real[empty, 0] = True
        if pixels is None or not bool(real.any()):
            return None
        return VisionInput(real=real, embeds=self._vision_embeddings(pixels[real]))

    def _vision_embeddings(self, pixels: torch.Tensor) -> torch.Tensor:
        """V^e of N images (N, 3, H, W) or of N slots of crops (N, C, 3, s, s) -> (N, S, D_v)."""
        backbone = self.vision_encoder.backbone
        pixels = pixels.to(next(backbone.parameters()).dtype)
        if pixels.dim() == 4:
            return backbone.pre_layrnorm(backbone.embeddings(pixels))
        n, crops = pixels.shape[:2]
        interpolate = pixels.shape[-1] != backbone.config.image_size
        emb = backbone.embeddings(pixels.flatten(0, 1), interpolate_pos_encoding=interpolate)  # (N*C, 1 + g*g, D)
        emb = emb.view(n, crops, *emb.shape[1:])
        seq = torch.cat([emb[:, 0, :1], emb[:, :, 1:].flatten(1, 2)], dim=1)  # [class, crop_1 patches, ...]
        return backbone.pre_layrnorm(seq)

    def _cached_input(self, states: torch.Tensor, real: torch.Tensor) -> VisionInput | None:
        """Cached per-layer hidden states (B, M, L_v + 1, S, D_v) of a vision encoder that does
        not attend to the text (``vision_attends_text=False``)."""
        c, backbone = self.config, self.vision_encoder.backbone
        layers = len(backbone.encoder.layers) + 1
        tokens = (c.vision_config.image_size // c.vision_config.patch_size) ** 2 + 1
        want = (layers, tokens, c.vision_config.hidden_size)
        if c.vision_attends_text or c.crops_per_image:
            raise ValueError("image_embeds (cached vision features) need vision_attends_text=False and whole images: "
                             "with eq. 4 the vision tokens depend on the text and cannot be cached")
        if states.dim() != 5 or tuple(states.shape[2:]) != want:
            raise ValueError(f"image_embeds for MGIPS-CL are per-layer vision hidden states (B, M, {', '.join(map(str, want))}) "
                             f"(the feature cache's format), got {tuple(states.shape)}")
        states = states.to(next(backbone.parameters()).dtype)
        if c.missing_image == "default_image":
            empty = ~real.any(dim=1)
            if states.shape[1] == 0:
                states = states.new_zeros(states.shape[0], 1, *want)
                real = torch.zeros(states.shape[0], 1, dtype=torch.bool, device=states.device)
            if bool(empty.any()):
                default = backbone(pixel_values=states.new_zeros(1, 3, c.vision_config.image_size, c.vision_config.image_size),
                                   output_hidden_states=True).hidden_states
                states, real = states.clone(), real.clone()
                states[empty, 0] = torch.stack(default, dim=1)[0]
                real[empty, 0] = True
        if not bool(real.any()):
            return None
        return VisionInput(real=real, states=states[real])

    # ------------------------------------------------------------------ mutual attention (eq. 2-4)
    def _per_post(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """(N, h, S, d) of the real images -> (B, h, M*S', d), slot after slot (S' drops the class
        token when ``use_class_token`` is False)."""
        if not self.config.use_class_token:
            x = x[:, :, 1:]
        bsz, slots = real.shape
        out = x.new_zeros(bsz, slots, *x.shape[1:]).masked_scatter(real[:, :, None, None, None], x)
        return out.permute(0, 2, 1, 3, 4).flatten(2, 3)

    def _visual_sequence(self, tokens: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, S, D_v) final vision tokens -> the posts' visual sequences (B, M*S', D_v) and mask."""
        seq = self._per_post(tokens[:, None], real)[:, 0]
        return seq, real[:, :, None].expand(-1, -1, seq.shape[1] // real.shape[1]).flatten(1)

    def _reject_reentrant_checkpointing(self) -> None:
        """The layers' own K/V leave a checkpointed layer through ``kv_sink``; reentrant
        checkpointing would run the layer without autograd and cut their gradients."""
        layer = self.text_encoder.encoder.layer[0]
        func = getattr(layer, "_gradient_checkpointing_func", None)
        if self.training and getattr(layer, "gradient_checkpointing", False) and func is not None:
            if getattr(func, "keywords", {}).get("use_reentrant", True) is not False:
                raise RuntimeError("MGIPS-CL mutual attention needs non-reentrant gradient checkpointing: "
                                   "gradient_checkpointing_enable(gradient_checkpointing_kwargs={'use_reentrant': False})")

    def _mutual_encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        vision: VisionInput | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Mutual-attention encoder (eq. 2-4).

        Returns:
            text H^t (B, L, D_t); the posts' visual sequences H^v (B, P, D_v) and their mask
            (B, P) (None when no post of the batch has an image).
        """
        c, base = self.config, self.attention_base()
        use_prefix_attention(self.text_encoder)
        use_prefix_attention(self.vision_encoder.backbone)
        text_layers = self.text_encoder.encoder.layer
        vision_layers = self.vision_encoder.backbone.encoder.layers
        n_t, n_v = len(text_layers), len(vision_layers)
        hidden = self.text_encoder.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)  # S^e, eq. 1
        key_mask = attention_mask.bool()
        text_mask4 = key_mask[:, None, None, :].expand(-1, 1, key_mask.shape[1], -1)  # (B, 1, L, L)
        if vision is None:
            for layer in text_layers:
                hidden = layer(hidden, text_mask4, **prefix_attention_kwargs(None, None, base))
            return hidden, None, None

        self._reject_reentrant_checkpointing()
        real = vision.real
        owner = torch.arange(real.shape[0], device=real.device)[:, None].expand_as(real)[real]  # (N,)
        text_kv = {0: (_split_heads(hidden, self.text_heads),) * 2}  # K_0^t = V_0^t = S^e (eq. 4, first layer)
        vis_kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        if vision.states is not None:  # cached: K_j^v, V_j^v from the frozen layer j and H_{j-1}^v
            states = vision.states

            def vision_kv(j: int) -> tuple[torch.Tensor, torch.Tensor]:
                if j == 0:
                    return (_split_heads(states[:, 0], self.vision_heads),) * 2
                attn, norm = vision_layers[j - 1].self_attn, vision_layers[j - 1].layer_norm1
                h = norm(states[:, j - 1])
                return _split_heads(attn.k_proj(h), self.vision_heads), _split_heads(attn.v_proj(h), self.vision_heads)

            v_hidden, done_v = states[:, -1], n_v
        else:
            v_hidden, done_v = vision.embeds, 0
            vis_kv[0] = (_split_heads(v_hidden, self.vision_heads),) * 2  # K_0^v = V_0^v = V^e (eq. 3)
            vision_kv = vis_kv.__getitem__
        per_slot = v_hidden.shape[1] - int(not c.use_class_token)
        tok_mask = real[:, :, None].expand(-1, -1, per_slot).flatten(1)  # (B, M*S')
        text_sink: dict = {}
        vision_sink: dict = {}

        def run_vision_layer(j: int, v: torch.Tensor) -> torch.Tensor:
            kwargs = prefix_attention_kwargs(None, None, base, kv_sink=vision_sink)
            if c.vision_attends_text:  # eq. 4: vision layer j+1 attends to K_t^t, V_t^t of the text
                k, val = text_kv[(j * n_t) // n_v]
                if hasattr(self, "text_kv_to_vision"):
                    k, val = self.text_kv_to_vision[j](k, val)
                entries: list = [None] * n_v
                entries[j] = (k[owner], val[owner])
                kwargs = prefix_attention_kwargs(entries, key_mask[owner], base, kv_sink=vision_sink)
            v = vision_layers[j](v, None, **kwargs)
            vis_kv[j + 1] = vision_sink.pop(j)
            return v

        for l, layer in enumerate(text_layers):
            need = (l * n_v) // n_t  # text layer l+1 takes vision layer `need`'s own K/V (eq. 2)
            while done_v < need:
                v_hidden = run_vision_layer(done_v, v_hidden)
                done_v += 1
            k, val = vision_kv(need)
            if hasattr(self, "vision_kv_to_text"):
                k, val = self.vision_kv_to_text[l](k, val)
            entries = [None] * n_t
            entries[l] = (self._per_post(k, real), self._per_post(val, real))
            hidden = layer(hidden, text_mask4, **prefix_attention_kwargs(entries, tok_mask, base, kv_sink=text_sink))  # eq. 2
            text_kv[l + 1] = text_sink.pop(l)
        while done_v < n_v:  # the remaining vision layers (eq. 4)
            v_hidden = run_vision_layer(done_v, v_hidden)
            done_v += 1
        v_hidden = self.vision_encoder.backbone.post_layernorm(v_hidden)  # CLIP's output norm, on every token
        visual, visual_mask = self._visual_sequence(v_hidden, real)
        return hidden, visual, visual_mask

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
        return_marginals: bool = False,
        **kwargs,
    ) -> MNERTokenClassifierOutput:
        """Args (B posts, L tokens, M image slots):
            input_ids / attention_mask / token_type_ids / word_ids / labels: (B, L).
            pixel_values: (B, M, 3, H, W); image_mask: (B, M) 1 = real image.
            crop_pixel_values: (B, M, C, 3, s, s) visual-grounding crops per image slot (models
                with ``crops_per_image`` = C; replaces ``pixel_values``).
            image_embeds: (B, M, L_v + 1, S, D_v) cached per-layer vision hidden states
                (feature cache; needs ``vision_attends_text=False``).
            return_marginals: also return CRF marginals (B, W, C).

        Returns:
            :class:`MNERTokenClassifierOutput`; ``loss_components`` holds ``crf`` and, in
            training mode with images, ``ips_cl`` / ``cl`` (weighted as in eq. 19).
        """
        c = self.config
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (B, L), got {tuple(input_ids.shape)}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if c.use_mgi and input_ids.shape[1] > c.text_length_limit:
            raise ValueError(f"input of {input_ids.shape[1]} tokens > max_text_length={c.text_length_limit} of this "
                             "MGIPS-CL model: truncate (processor max_length) or raise max_text_length")
        vision = self._vision_input(input_ids.shape[0], pixel_values, image_mask, image_embeds, crop_pixel_values)
        text, visual, visual_mask = self._mutual_encode(input_ids, attention_mask, token_type_ids, vision)
        fused = text
        text_mask = attention_mask.bool()
        if c.use_mgi and visual is not None:
            post, visual = self.interweave(text, visual, text_mask, visual_mask)  # eq. 9-11
            fused = self.gate(text, post)  # eq. 12-13

        extra: dict[str, torch.Tensor] = {}
        if labels is not None and self.training and self._uses_contrastive and visual is not None:
            has = visual_mask.any(dim=1)
            t_vec = self.contrastive_text(fused, text_mask)[has]  # g(z), eq. 14
            v_vec = self.contrastive_visual(visual, visual_mask)[has]  # f(X), eq. 14
            if c.use_ips_cl and c.ips_cl_weight > 0:
                extra["ips_cl"] = c.ips_cl_weight * ips_contrastive_loss(t_vec, v_vec, c.ips_top_k, c.cl_temperature)
            if c.use_standard_cl and c.cl_weight > 0:
                extra["cl"] = c.cl_weight * standard_contrastive_loss(t_vec, v_vec, c.cl_temperature)
        # eq. 18: CRF negative log-likelihood of z (mean over posts), plus the weighted extra terms
        out = self._crf_head(fused, attention_mask, word_ids, labels, return_marginals, extra_losses=extra)
        if out.loss is not None and c.crf_weight != 1.0:  # eq. 19 with a configured MNER weight
            out.loss_components["crf"] = c.crf_weight * out.loss_components["crf"]
            out.loss = sum(out.loss_components.values())
        return out


MGIPSCLConfig.register_for_auto_class()
MGIPSCLForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")

__all__ = ["MGIPSCLForTokenClassification", "MGIPSCLPreTrainedModel"]
