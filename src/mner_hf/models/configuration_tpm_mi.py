"""Configuration of TPM-MI (MNER-MI, Huang et al., section 4): temporal prompts from several images.

Public API
----------
``TPMMIConfig``  model_type ``"tpm_mi"``; sub-configs ``text_config`` (BERT-family, default ``bert``)
and ``vision_config`` (any transformers vision backbone, default ``vit``; a CLIP/SigLIP config is
reduced to its ``vision_config``).
``TPMMIConfig.from_preset(name, **overrides)`` / ``TPMMIConfig.preset_kwargs(name) -> dict``
``TPM_MI_PRESETS``  ``"paper"`` (the defaults) and ``"authors"`` (the released code's settings).

Defaults ("paper") and the authors' released code (``preset="authors"``, github.com/JinFish/MNER-MI,
``models/BERTModels.py`` and ``run.py``), side by side:

=========================  ======================================  =====================================
setting                    default (paper, eq. 1-4, with fixes)    ``"authors"`` preset
=========================  ======================================  =====================================
prompt keys / values       per layer: P^l = W_p^l U (eq. 1), then  one shared MLP U -> tanh(1024) ->
                           phi_k^l P^l, phi_v^l P^l (eq. 3)        layers x 2 x d_t, sliced per layer
                           (``prompt_projection="per_layer"``)     (``prompt_projection="shared_mlp"``)
padded image slots         masked (``mask_padded_images=True``)    attended: zero vector + T_i
temporal embedding init    N(0, initializer_range=0.02)            N(0, 1) (an ``nn.Embedding``)
image transformer FFN      4 x D_v (3072 for ViT-B)                2048 (``nn.TransformerEncoderLayer``)
classifier dropout         the text encoder's (0.1)                0.0
run config (examples/)     lr 3e-5, batch 16, 10 epochs, warm-up   lr 5e-5, batch 8, 15 epochs, warm-up
                           0.1, max length 128                     0.01, max length 64
=========================  ======================================  =====================================

Kept in both (deliberate fixes): the image transformer attends over the images of EACH post
(the released code feeds (B, m, D) to a sequence-first layer, so it attends across the posts of
a batch), and only real images go through the vision encoder (the released code encodes the
all-zero padding images). The paper tunes lr in [1e-5, 7e-5] and batch size in [8, 32] on dev
(section 5.2; ``mner_hf.training.grid_search.PAPER_TPM_MI_GRID``).
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .configuration_bert_crf import check_common_fields

PROMPT_PROJECTIONS = ("per_layer", "shared_mlp")

# Named settings; a preset only lists the fields in which it differs from the defaults.
TPM_MI_PRESETS: dict[str, dict] = {
    "paper": {},
    "authors": {
        "prompt_projection": "shared_mlp",
        "prompt_hidden_size": 1024,
        "mask_padded_images": False,
        "temporal_init_std": 1.0,
        "temporal_ffn_dim": 2048,
        "classifier_dropout": 0.0,
    },
}


class TPMMIConfig(PreTrainedConfig):
    """TPM-MI configuration.

    Args:
        text_config / vision_config: encoder configs (or dicts with ``model_type``).
        max_images: m, image slots per post (paper: 4); >= 1.
        temporal_layers / temporal_heads / temporal_ffn_dim / temporal_dropout: transformer encoder
            over the m image vectors of each post (``temporal_heads`` must divide the image vector
            size D_v; ``temporal_ffn_dim=None`` means 4 * D_v).
        prompt_length: prompt vectors per image and text layer (eq. 1); P = m * prompt_length.
        prompt_projection: ``"per_layer"`` (the paper: W_p^l of eq. 1 and phi_k^l / phi_v^l of eq. 3
            for every text layer l) or ``"shared_mlp"`` (the authors' code: one MLP
            D_v -> prompt_hidden_size -> tanh -> layers * 2 * prompt_length * D_t gives every
            layer's prompt keys and values at once).
        prompt_hidden_size: hidden width of the shared MLP (authors: 1024); unused by "per_layer".
        mask_padded_images: mask the prompts of padded image slots (True); False attends them like
            real images, as the paper's zero-vector filling and the authors' code do. A post without
            images always runs the text path alone.
        temporal_init_std: std of the N(0, std) initialisation of the temporal position embedding T;
            None means ``initializer_range`` (authors: 1.0, an ``nn.Embedding``).
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
    prompt_projection: str = "per_layer"
    prompt_hidden_size: int = 1024
    mask_padded_images: bool = True
    temporal_init_std: float | None = None
    encode_padded_images: bool = False
    image_pooling: str = "auto"
    constrain_transitions: bool = True
    classifier_dropout: float | None = None
    freeze_text: bool = False
    freeze_vision: bool = False
    initializer_range: float = 0.02

    @staticmethod
    def preset_kwargs(name: str) -> dict:
        """The config fields of the named preset (see the module docstring)."""
        if name not in TPM_MI_PRESETS:
            raise ValueError(f"unknown TPM-MI preset {name!r}; choose one of {sorted(TPM_MI_PRESETS)}")
        return dict(TPM_MI_PRESETS[name])

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> "TPMMIConfig":
        """Config of the named preset; ``kwargs`` (encoder configs, labels, any field) override it."""
        return cls(**{**cls.preset_kwargs(name), **kwargs})

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        sub = getattr(self.vision_config, "vision_config", None)
        if isinstance(sub, PreTrainedConfig):  # CLIPConfig / SiglipConfig -> their vision tower
            self.vision_config = sub
        check_common_fields(self)
        name = type(self).__name__
        for field in ("max_images", "temporal_heads", "prompt_length", "prompt_hidden_size"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {field} must be an integer >= 1, got {value!r}")
        if not isinstance(self.temporal_layers, int) or self.temporal_layers < 0:
            raise ValueError(f"{name}: temporal_layers must be an integer >= 0, got {self.temporal_layers!r}")
        if self.prompt_projection not in PROMPT_PROJECTIONS:
            raise ValueError(
                f"{name}: prompt_projection must be one of {PROMPT_PROJECTIONS}, got {self.prompt_projection!r}"
            )
        if self.temporal_init_std is not None and not float(self.temporal_init_std) > 0:
            raise ValueError(f"{name}: temporal_init_std must be > 0 or None, got {self.temporal_init_std!r}")
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
