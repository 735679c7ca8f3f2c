"""Configuration of MGIPS-CL (Multi-Granularity Interweave + Implicit Positive Sample CL).

Travels with checkpoints (``trust_remote_code``): imports only transformers / stdlib.
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec


class MGIPSCLConfig(PreTrainedConfig):
    """Configuration of :class:`MGIPSCLForTokenClassification`.

    Sub-configs:
        text_config: a BERT-family encoder config (default ``bert``, BERT-base sizes).
        vision_config: a CLIP-style vision transformer config (default ``clip_vision_model``,
            ViT-B/32: image 224, patch 32). Image size and patch resolution are
            ``vision_config.image_size`` / ``vision_config.patch_size``; visual tokens per image
            are ``(image_size // patch_size) ** 2`` patches (+1 class token when
            ``use_class_token``).

    Multimodal encoder (eq. 2-4):
        max_images: image slots per post (the post's images and/or externally supplied crops).
        use_class_token: keep the vision class token among the visual tokens.
        bidirectional_mutual_attention: besides text -> vision prefixes, let every vision layer
            attend to the previous text layer's keys/values (as the authors' code does).

    Fusion (eq. 5-13):
        use_mgi: build the interweave encoder + pre-post gate (ablation "w/o MGI" when False).
        use_row_grained / use_col_grained: MGE granularities (ablations).
        interweave_layers: stacked interweave layers L (L+1 image-guided, L text-guided MGEs,
            shared weights).
        fusion_dropout: dropout in the MGEs and before the emission layer.

    Contrastive learning (eq. 14-19), training only:
        use_ips_cl / ips_cl_weight: IPS-CL term (ablation "w/o IPS-CL" when False).
        use_standard_cl / cl_weight: standard CL term (eq. 17).
        ips_top_k: K implicit positives (clamped to the batch).
        cl_temperature: tau.
        contrastive_dim: width of the projection heads used by both terms.

    CRF head (shared MNERPreTrainedModel):
        constrain_transitions: forbid invalid BIO transitions in the CRF.
        classifier_dropout: dropout before the emission layer (None: text hidden dropout).
        freeze_text / freeze_vision: keep an encoder frozen (requires_grad=False).
        initializer_range: std of the normal init of the new (fusion / head) layers.
    """

    model_type = "mgips_cl"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert"),
        "vision_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="clip_vision_model",
            init_kwargs={"image_size": 224, "patch_size": 32},
        ),
    }

    text_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    max_images: int = 4
    use_class_token: bool = True
    bidirectional_mutual_attention: bool = False
    use_mgi: bool = True
    use_row_grained: bool = True
    use_col_grained: bool = True
    interweave_layers: int = 1
    fusion_dropout: float = 0.1
    use_ips_cl: bool = True
    use_standard_cl: bool = True
    ips_cl_weight: float = 0.5
    cl_weight: float = 0.5
    ips_top_k: int = 3
    cl_temperature: float = 0.1
    contrastive_dim: int = 256
    constrain_transitions: bool = True
    classifier_dropout: float | None = None
    freeze_text: bool = False
    freeze_vision: bool = False
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs) -> None:
        super().__post_init__(**kwargs)
        self._check()

    def _check(self) -> None:
        """Validate values with messages naming the offending field."""
        problems = []
        if self.max_images < 1:
            problems.append(f"max_images must be >= 1, got {self.max_images}")
        if self.interweave_layers < 0:
            problems.append(f"interweave_layers must be >= 0, got {self.interweave_layers}")
        if self.use_mgi and not (self.use_row_grained or self.use_col_grained):
            problems.append("use_mgi=True needs use_row_grained or use_col_grained (the MGE would be empty)")
        if self.ips_top_k < 0:
            problems.append(f"ips_top_k must be >= 0, got {self.ips_top_k}")
        if not self.cl_temperature > 0:
            problems.append(f"cl_temperature must be > 0, got {self.cl_temperature}")
        if self.ips_cl_weight < 0 or self.cl_weight < 0:
            problems.append(f"loss weights must be >= 0, got ips_cl_weight={self.ips_cl_weight}, cl_weight={self.cl_weight}")
        if self.contrastive_dim < 1:
            problems.append(f"contrastive_dim must be >= 1, got {self.contrastive_dim}")
        if not 0.0 <= self.fusion_dropout < 1.0:
            problems.append(f"fusion_dropout must be in [0, 1), got {self.fusion_dropout}")
        vision = self.vision_config
        for attr in ("image_size", "patch_size", "hidden_size", "num_hidden_layers"):
            if not hasattr(vision, attr):
                problems.append(f"vision_config ({type(vision).__name__}) lacks {attr!r}: a CLIP-style ViT config is required")
        if not problems and vision.image_size % vision.patch_size != 0:
            problems.append(
                f"vision_config.image_size ({vision.image_size}) must be a multiple of "
                f"vision_config.patch_size ({vision.patch_size})"
            )
        text = self.text_config
        for attr in ("hidden_size", "num_hidden_layers", "num_attention_heads"):
            if not hasattr(text, attr):
                problems.append(f"text_config ({type(text).__name__}) lacks {attr!r}: a BERT-family config is required")
        if self.id2label is not None and "O" not in set(self.id2label.values()):
            problems.append(f"id2label: the label map must contain the outside tag 'O', got {sorted(self.id2label.values())}")
        if problems:
            raise ValueError("invalid MGIPSCLConfig: " + "; ".join(problems))

    @property
    def visual_tokens_per_image(self) -> int:
        """Number of visual tokens one image contributes (patches + optional class token)."""
        grid = self.vision_config.image_size // self.vision_config.patch_size
        return grid * grid + int(self.use_class_token)


__all__ = ["MGIPSCLConfig"]
