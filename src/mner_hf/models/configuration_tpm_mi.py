"""Configuration of TPM-MI (MNER-MI, Huang et al., section 4): temporal prompts from several images.

Public API
----------
``TPMMIConfig``  model_type ``"tpm_mi"``; sub-configs ``text_config`` (BERT-family, default ``bert``)
and ``vision_config`` (any transformers vision backbone, default ``vit``; a CLIP/SigLIP config is
reduced to its ``vision_config``).
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .configuration_bert_crf import check_common_fields


class TPMMIConfig(PreTrainedConfig):
    """TPM-MI configuration.

    Args:
        text_config / vision_config: encoder configs (or dicts with ``model_type``).
        max_images: m, image slots per post (paper: 4); >= 1.
        temporal_layers / temporal_heads / temporal_ffn_dim / temporal_dropout: transformer encoder
            over the m image vectors of each post (``temporal_heads`` must divide the image vector
            size D_v; ``temporal_ffn_dim=None`` means 4 * D_v).
        prompt_length: prompt vectors per image and text layer (eq. 1); P = m * prompt_length.
        mask_padded_images: mask the prompts of padded image slots (True); False reproduces the
            paper's zero-vector prompts. A post without images always runs the text path alone.
        encode_padded_images: run padded slots through the vision encoder too (only for checks
            and benchmarks; results are identical, compute is wasted).
        image_pooling: "auto" | "pooler" | "cls" | "mean" (see ``vision_encoder.ImageEncoder``).
        constrain_transitions / classifier_dropout / freeze_text / freeze_vision: as in BERT-CRF.
    """

    model_type = "tpm_mi"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert"),
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="vit"),
    }

    text_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    max_images: int = 4
    temporal_layers: int = 1
    temporal_heads: int = 8
    temporal_ffn_dim: int | None = None
    temporal_dropout: float = 0.1
    prompt_length: int = 1
    mask_padded_images: bool = True
    encode_padded_images: bool = False
    image_pooling: str = "auto"
    constrain_transitions: bool = True
    classifier_dropout: float | None = None
    freeze_text: bool = False
    freeze_vision: bool = False
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        sub = getattr(self.vision_config, "vision_config", None)
        if isinstance(sub, PreTrainedConfig):  # CLIPConfig / SiglipConfig -> their vision tower
            self.vision_config = sub
        check_common_fields(self)
        name = type(self).__name__
        for field in ("max_images", "temporal_heads", "prompt_length"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {field} must be an integer >= 1, got {value!r}")
        if not isinstance(self.temporal_layers, int) or self.temporal_layers < 0:
            raise ValueError(f"{name}: temporal_layers must be an integer >= 0, got {self.temporal_layers!r}")
        if self.image_pooling not in ("auto", "pooler", "cls", "mean"):
            raise ValueError(f"{name}: image_pooling must be auto, pooler, cls or mean, got {self.image_pooling!r}")
        vision_dim = getattr(self.vision_config, "hidden_size", None)
        if isinstance(vision_dim, int) and vision_dim % self.temporal_heads != 0:
            raise ValueError(
                f"{name}: the image vector size (vision_config.hidden_size={vision_dim}) must be a multiple of "
                f"temporal_heads={self.temporal_heads}"
            )
        if getattr(self.text_config, "num_hidden_layers", None) is None:
            raise ValueError(f"{name}: text_config ({self.text_config.model_type}) has no num_hidden_layers")
