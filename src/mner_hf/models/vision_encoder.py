"""Any transformers vision backbone -> one vector per image (and per-layer patch tokens).

Public API
----------
``resolve_vision_config(config) -> PreTrainedConfig``
    the vision part of a config (``CLIPConfig`` / ``SiglipConfig`` -> their ``vision_config``).
``ImageEncoder(vision_config, pooling="auto")``  (nn.Module)
    ``.backbone``           ``AutoModel.from_config(vision_config)`` (ViTModel, CLIPVisionModel,
                            MobileNetV2Model, ResNetModel, ...)
    ``.output_dim``         D_v, size of one image vector
    ``.encode_images(pixel_values (N, 3, H, W), output_hidden_states=False)``
                            -> ``(pooled (N, D_v), hidden_states tuple of (N, S, D_l) or None)``
    ``.forward(pixel_values (B, M, 3, H, W), image_mask (B, M), output_hidden_states=False,
               skip_padded=True) -> ImageEncoderOutput``
                            ``image_embeds`` (B, M, D_v), zero vectors at padded slots;
                            ``hidden_states`` tuple (one per backbone layer, embeddings first) of
                            (B, M, S, D_l), zeros at padded slots (only with output_hidden_states);
                            ``patch_tokens`` = last of them.
    ``.load_pretrained(path_or_id)`` copy the weights of a pretrained backbone into ``.backbone``.
    ``.cache_mode``         set by the owning model: "pooled" | "hidden_states" | "unavailable"
    ``.cache_features(pixel_values, image_mask)`` what the frozen-vision feature cache stores:
                            (B, M, D_v) or (B, M, L + 1, S, D_v); ``.check_cacheable()`` raises
                            when the features depend on more than the image.

Only REAL images are encoded (``skip_padded=True``): the real slots of the (B, M, ...) batch are
gathered by ``image_mask``, encoded as one (N, 3, H, W) batch and scattered back. ``skip_padded=False``
encodes every slot and zeroes the padded ones afterwards (same result, more compute; for checks
and benchmarks).

Pooling (``pooling="auto"``): ``pooler_output`` when the backbone has one ((N, D) or CNN (N, D, 1, 1)),
else the CLS token of a (N, S, D) ``last_hidden_state``, or the spatial mean of a (N, C, h, w) one.
``"cls"`` and ``"mean"`` force those. CNN feature maps (N, C, h, w) become tokens (N, h*w, C).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, PreTrainedConfig

POOLING_MODES = ("auto", "pooler", "cls", "mean")


def resolve_vision_config(config: PreTrainedConfig) -> PreTrainedConfig:
    """Return the vision sub-config of a dual-encoder config (CLIP, SigLIP, ...) or ``config`` itself."""
    sub = getattr(config, "vision_config", None)
    if isinstance(sub, PreTrainedConfig):
        return sub
    return config


def _to_tokens(hidden: torch.Tensor) -> torch.Tensor:
    """(N, S, D) stays; CNN (N, C, h, w) -> (N, h*w, C)."""
    if hidden.dim() == 4:
        return hidden.flatten(2).transpose(1, 2)
    return hidden


@dataclass
class ImageEncoderOutput:
    """``image_embeds`` (B, M, D_v); ``hidden_states`` tuple of (B, M, S, D_l) or None;
    ``patch_tokens`` (B, M, S, D) or None."""

    image_embeds: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None
    patch_tokens: torch.Tensor | None = None


def _use_torch_batchnorm_momentum(backbone: nn.Module) -> None:
    """Give batch-norm layers PyTorch's meaning of ``momentum``.

    transformers' MobileNet ports keep TensorFlow's batch-norm momentum (0.997, the weight of the OLD
    running statistics), but PyTorch reads ``momentum`` as the weight of the NEW batch: one training
    batch would then overwrite the pretrained running statistics (measured: an ImageNet MobileNetV2's
    espresso probability on skimage's coffee photo fell from 0.994 to 0.411 after one train-mode
    forward on two other photos). ``1 - momentum`` is the same statistic in PyTorch's convention.
    """
    for module in backbone.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.momentum is not None:
            if module.momentum > 0.5:
                module.momentum = 1.0 - module.momentum


class ImageEncoder(nn.Module):
    """Wrap a transformers vision backbone built from ``vision_config``."""

    def __init__(self, vision_config: PreTrainedConfig, pooling: str = "auto") -> None:
        super().__init__()
        if pooling not in POOLING_MODES:
            raise ValueError(f"image pooling must be one of {POOLING_MODES}, got {pooling!r}")
        vision_config = resolve_vision_config(vision_config)
        self.pooling = pooling
        self.backbone = AutoModel.from_config(vision_config)
        _use_torch_batchnorm_momentum(self.backbone)
        self.output_dim = self._infer_output_dim(vision_config)
        # what the frozen-vision feature cache stores (set by the owning model):
        # "pooled" (B, M, D_v) vectors, "hidden_states" (B, M, L+1, S, D_v) per-layer tokens,
        # or "unavailable" (the vision features depend on more than the image)
        self.cache_mode = "pooled"

    def _infer_output_dim(self, config: PreTrainedConfig) -> int:
        """D_v from the config (hidden_size / hidden_sizes[-1]) or the backbone's last conv layer."""
        size = getattr(config, "hidden_size", None)
        if isinstance(size, int):
            return size
        sizes = getattr(config, "hidden_sizes", None)
        if isinstance(sizes, (list, tuple)) and sizes:
            return int(sizes[-1])
        convs = [m for m in self.backbone.modules() if isinstance(m, nn.Conv2d)]
        if convs:
            return int(convs[-1].out_channels)
        raise ValueError(
            f"cannot tell the image vector size of a {type(self.backbone).__name__} backbone "
            f"(model_type={config.model_type!r}): its config has neither hidden_size nor hidden_sizes"
        )

    def _pool(self, outputs) -> torch.Tensor:
        pooled = getattr(outputs, "pooler_output", None)
        if self.pooling in ("auto", "pooler") and pooled is not None:
            return pooled.flatten(1)  # (N, D) or (N, D, 1, 1) -> (N, D)
        if self.pooling == "pooler":
            raise ValueError(f"{type(self.backbone).__name__} returns no pooler_output; use pooling='cls' or 'mean'")
        last = outputs.last_hidden_state
        if last.dim() == 4:  # CNN feature map
            return last.mean(dim=(2, 3))
        if self.pooling == "mean":
            return last.mean(dim=1)
        return last[:, 0]

    def encode_images(
        self, pixel_values: torch.Tensor, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Encode a flat batch of images.

        Args:
            pixel_values: (N, 3, H, W).
        Returns:
            pooled (N, D_v) and, with ``output_hidden_states``, the per-layer tokens (N, S, D_l).
        """
        outputs = self.backbone(pixel_values=pixel_values, output_hidden_states=output_hidden_states)
        pooled = self._pool(outputs)
        hidden = None
        if output_hidden_states:
            hidden = tuple(_to_tokens(h) for h in outputs.hidden_states)
        return pooled, hidden

    def forward(
        self,
        pixel_values: torch.Tensor,
        image_mask: torch.Tensor,
        output_hidden_states: bool = False,
        skip_padded: bool = True,
    ) -> ImageEncoderOutput:
        """Encode the images of B posts with M slots.

        Args:
            pixel_values: (B, M, 3, H, W), padded slots arbitrary (zeros from the processor).
            image_mask: (B, M), 1 real image, 0 padded slot.
            output_hidden_states: also return per-layer tokens (B, M, S, D_l).
            skip_padded: encode only real slots (True) or every slot (False).
        """
        if pixel_values.dim() != 5:
            raise ValueError(f"pixel_values must be (B, M, 3, H, W), got {tuple(pixel_values.shape)}")
        bsz, slots = pixel_values.shape[:2]
        if image_mask.shape != (bsz, slots):
            raise ValueError(f"image_mask must be (B, M) = {(bsz, slots)}, got {tuple(image_mask.shape)}")
        real = image_mask.bool()
        dtype = next(self.backbone.parameters()).dtype
        pixel_values = pixel_values.to(dtype)
        if skip_padded:
            flat = pixel_values[real]  # (N, 3, H, W), N = number of real images
            if flat.size(0) == 0:
                return ImageEncoderOutput(pixel_values.new_zeros(bsz, slots, self.output_dim))
            pooled, hidden = self.encode_images(flat, output_hidden_states)
            embeds = pooled.new_zeros(bsz, slots, pooled.size(-1))
            embeds = embeds.masked_scatter(real.unsqueeze(-1), pooled)  # zero vectors at padded slots
            if hidden is not None:
                hidden = tuple(
                    h.new_zeros(bsz, slots, *h.shape[1:]).masked_scatter(real[:, :, None, None], h) for h in hidden
                )
        else:
            if bsz * slots == 0:
                return ImageEncoderOutput(pixel_values.new_zeros(bsz, slots, self.output_dim))
            pooled, hidden = self.encode_images(pixel_values.flatten(0, 1), output_hidden_states)
            keep = real.reshape(-1, 1).to(pooled.dtype)
            embeds = (pooled * keep).view(bsz, slots, -1)
            if hidden is not None:
                hidden = tuple((h * keep[:, :, None]).view(bsz, slots, *h.shape[1:]) for h in hidden)
        return ImageEncoderOutput(
            image_embeds=embeds,
            hidden_states=hidden,
            patch_tokens=hidden[-1] if hidden is not None else None,
        )

    def check_cacheable(self) -> None:
        """Raise a clear error when the owning model's vision features cannot be cached."""
        if self.cache_mode == "unavailable":
            raise ValueError("this model's vision features depend on the text (MGIPS-CL with vision_attends_text=True, "
                             "eq. 4) and cannot be cached: set vision_attends_text=False or do not freeze the vision encoder")

    @torch.no_grad()
    def cache_features(self, pixel_values: torch.Tensor, image_mask: torch.Tensor) -> torch.Tensor:
        """Features the frozen-vision cache stores, per ``cache_mode``: ``image_embeds`` (B, M, D_v)
        or the stacked per-layer tokens (B, M, L + 1, S, D_v) (embeddings first); zeros at padded slots."""
        self.check_cacheable()
        if self.cache_mode == "hidden_states":
            if not bool(image_mask.bool().any()):  # no real image: zeros of the feature shape
                probe = pixel_values.new_zeros(1, 1, *pixel_values.shape[2:])
                shape = self.cache_features(probe, torch.ones(1, 1, dtype=torch.long)).shape[2:]
                return pixel_values.new_zeros(*image_mask.shape, *shape)
            out = self.forward(pixel_values, image_mask, output_hidden_states=True)
            return torch.stack(out.hidden_states, dim=2)
        return self.forward(pixel_values, image_mask).image_embeds

    def load_pretrained(self, path_or_id: str, **kwargs) -> None:
        """Copy the weights of a pretrained backbone (local folder or Hub id) into ``.backbone``.

        Raises:
            ValueError: the checkpoint lacks some of the backbone's weights.
        """
        loaded = type(self.backbone).from_pretrained(path_or_id, config=self.backbone.config, **kwargs)
        missing, _ = self.backbone.load_state_dict(loaded.state_dict(), strict=False)
        if missing:
            raise ValueError(f"vision checkpoint {path_or_id!r} lacks weights: {missing[:5]}")
