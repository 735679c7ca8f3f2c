"""Configuration of MGIPS-CL (Multi-Granularity Interweave + Implicit Positive Sample CL).

Travels with checkpoints (``trust_remote_code``): imports only transformers / stdlib.
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

MISSING_IMAGE_MODES = ("mask", "default_image")


class MGIPSCLConfig(PreTrainedConfig):
    """Configuration of :class:`MGIPSCLForTokenClassification` (paper section 3; defaults follow
    section 4.3 where it gives a value).

    Sub-configs:
        text_config: a BERT-family encoder config (default ``bert``, BERT-base: 12 layers, 12 heads).
        vision_config: a CLIP-style vision transformer (default ``clip_vision_model``, ViT-B/32).

    Visual input:
        max_images: image slots per post. A post's visual sequence is the tokens of all its real
            images, slot after slot (at most ``max_images * visual_tokens_per_image``).
        use_class_token: keep each image's class token among its visual tokens.
        missing_image: ``"mask"`` (a post without images has no visual tokens: text path, left
            out of the contrastive losses) or ``"default_image"`` (paper 4.1: such a post gets
            one default image, the mean image, i.e. zeros after normalisation).
        crops_per_image / crop_size: 0 (default) = whole images. C > 0 = the paper's
            visual-grounding input (3 crops of 128x128): ``crop_pixel_values`` (B, M, C, 3, s, s)
            replace the whole images; each slot's sequence is ``[class token, crop_1 patches,
            ..., crop_C patches]`` with the vision position embeddings interpolated to s x s.

    Mutual-attention encoder (eq. 2-4):
        Text layer l+1 takes the vision encoder's own keys/values of layer l (K_l^v, V_l^v; the
        vision embeddings V^e for the first layer, eq. 3) as extra keys/values (eq. 2), and vision
        layer l+1 takes the text encoder's K_l^t, V_l^t (the text embeddings S^e first), text
        padding masked (eq. 4). Generalisations: when the text and vision widths or head counts
        differ, the borrowed keys/values go through a learned linear projection per layer (only
        then; equal shapes, as BERT-base + ViT-B, use them as they are); when the layer counts
        differ, text layer l+1 takes vision layer ``(l * L_v) // L_t`` and vision layer j+1 text
        layer ``(j * L_t) // L_v``.
        vision_attends_text: the vision <- text direction (eq. 4); False gives a one-way encoder
            whose vision features depend on the image only (required by the feature cache).

    Multi-Granularity Interweave (eq. 5-13):
        use_mgi: interweave encoder + gate (False: ablation "w/o MGI", encoder text to the CRF).
        use_row_grained / use_col_grained: M_C / M_F of eq. 6 (ablations "w/o Row-grained",
            "w/o Column-grained").
        interweave_layers: stacked interweave layers (paper: 1), MGE weights shared.
        interweave_heads: heads of the MGEs (None: the text encoder's, 12 for BERT-base).
        max_text_length: the longest text (sub-word tokens) the MGE's position maps take (the
            authors fix 40; None: ``text_config.max_position_embeddings``).
        fusion_dropout: dropout in the MGE blocks.

    Contrastive learning (eq. 14-19), training only:
        use_ips_cl / use_standard_cl: IPS-CL (eq. 16; False: ablation "w/o IPS-CL") and CL (eq. 17).
        crf_weight / ips_cl_weight / cl_weight: weights of eq. 19 (paper: 1, 1, 1).
        ips_top_k: K implicit positives (section 4.3: 3).
        cl_temperature: tau; the paper gives none, the authors' released code uses 0.5
            (``contrastiveLossTopkb(0.5, k)``, IFA_model.py, github.com/chenchenhtd/MGIPS-CL).
        contrastive_dim: output width of the encoders f, g (None: the text width).

    CRF head (shared MNERPreTrainedModel):
        constrain_transitions, classifier_dropout, freeze_text / freeze_vision, initializer_range.
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
    missing_image: str = "mask"
    crops_per_image: int = 0
    crop_size: int = 128
    vision_attends_text: bool = True
    use_mgi: bool = True
    use_row_grained: bool = True
    use_col_grained: bool = True
    interweave_layers: int = 1
    interweave_heads: int | None = None
    max_text_length: int | None = None
    fusion_dropout: float = 0.1
    use_ips_cl: bool = True
    use_standard_cl: bool = True
    crf_weight: float = 1.0
    ips_cl_weight: float = 1.0
    cl_weight: float = 1.0
    ips_top_k: int = 3
    cl_temperature: float = 0.5
    contrastive_dim: int | None = None
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
        if self.missing_image not in MISSING_IMAGE_MODES:
            problems.append(f"missing_image must be one of {MISSING_IMAGE_MODES}, got {self.missing_image!r}")
        if self.crops_per_image < 0:
            problems.append(f"crops_per_image must be >= 0, got {self.crops_per_image}")
        if self.interweave_layers < 1:
            problems.append(f"interweave_layers must be >= 1, got {self.interweave_layers}")
        if self.use_mgi and not (self.use_row_grained or self.use_col_grained):
            problems.append("use_mgi=True needs use_row_grained or use_col_grained (the MGE would be empty)")
        if self.ips_top_k < 1:
            problems.append(f"ips_top_k must be >= 1, got {self.ips_top_k}")
        if not self.cl_temperature > 0:
            problems.append(f"cl_temperature must be > 0, got {self.cl_temperature}")
        if min(self.crf_weight, self.ips_cl_weight, self.cl_weight) < 0:
            problems.append(f"loss weights must be >= 0, got crf_weight={self.crf_weight}, "
                            f"ips_cl_weight={self.ips_cl_weight}, cl_weight={self.cl_weight}")
        if self.contrastive_dim is not None and self.contrastive_dim < 1:
            problems.append(f"contrastive_dim must be >= 1, got {self.contrastive_dim}")
        if self.max_text_length is not None and self.max_text_length < 2:
            problems.append(f"max_text_length must be >= 2, got {self.max_text_length}")
        if not 0.0 <= self.fusion_dropout < 1.0:
            problems.append(f"fusion_dropout must be in [0, 1), got {self.fusion_dropout}")
        vision = self.vision_config
        for attr in ("image_size", "patch_size", "hidden_size", "num_hidden_layers", "num_attention_heads"):
            if not hasattr(vision, attr):
                problems.append(f"vision_config ({type(vision).__name__}) lacks {attr!r}: a CLIP-style ViT config is required")
        if not problems:
            for name, size in (("vision_config.image_size", vision.image_size), ("crop_size", self.crop_size)):
                if size % vision.patch_size != 0:
                    problems.append(f"{name} ({size}) must be a multiple of vision_config.patch_size ({vision.patch_size})")
        text = self.text_config
        for attr in ("hidden_size", "num_hidden_layers", "num_attention_heads"):
            if not hasattr(text, attr):
                problems.append(f"text_config ({type(text).__name__}) lacks {attr!r}: a BERT-family config is required")
        if not problems and text.hidden_size % self.fusion_heads:
            problems.append(f"interweave_heads ({self.fusion_heads}) must divide text hidden_size ({text.hidden_size})")
        if self.id2label is not None and "O" not in set(self.id2label.values()):
            problems.append(f"id2label: the label map must contain the outside tag 'O', got {sorted(self.id2label.values())}")
        if problems:
            raise ValueError("invalid MGIPSCLConfig: " + "; ".join(problems))

    @property
    def fusion_heads(self) -> int:
        """Heads of the MGEs: ``interweave_heads`` or the text encoder's."""
        return self.interweave_heads or self.text_config.num_attention_heads

    @property
    def text_length_limit(self) -> int:
        """Longest text the position maps of the MGE accept."""
        return self.max_text_length or getattr(self.text_config, "max_position_embeddings", 512)

    @property
    def visual_tokens_per_image(self) -> int:
        """Visual tokens one image slot contributes (patches of the image or of its crops, + class token)."""
        patch = self.vision_config.patch_size
        if self.crops_per_image:
            patches = self.crops_per_image * (self.crop_size // patch) ** 2
        else:
            patches = (self.vision_config.image_size // patch) ** 2
        return patches + int(self.use_class_token)

    @property
    def max_visual_length(self) -> int:
        """Longest visual sequence of a post: ``max_images * visual_tokens_per_image``."""
        return self.max_images * self.visual_tokens_per_image


__all__ = ["MGIPSCLConfig"]
