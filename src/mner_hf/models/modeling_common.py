"""Shared machinery of the MNER token classifiers (BERT-CRF, TPM-MI, MGIPS-CL).

Public API
----------
``build_text_encoder(text_config) -> PreTrainedModel``   ``AutoModel.from_config`` without pooler
``labels_to_id2label(labels) -> dict[int, str]``          list / mapping of tag names, "O" required
``MNERPreTrainedModel`` (``PreTrainedModel``) base class; subclasses create the modules
``text_encoder`` (required), ``vision_encoder`` (optional), their fusion modules, then call
``self._build_crf_head(hidden_size)`` and ``self.post_init()``. It provides:
    ``_crf_head(sequence_output (B, L, H), attention_mask, word_ids, labels, return_marginals,
                extra_losses=None) -> MNERTokenClassifierOutput``   dropout + linear emissions + CRF (MNER-MI eq. 5-7)
    ``param_groups() -> {"text", "vision", "fusion", "crf"}``      every trainable parameter once
                                                     ("crf" holds the emission classifier and the CRF)
    ``attention_base() -> "sdpa" | "eager"``                        from the standard attn_implementation
    ``from_encoders(text=..., vision=None, labels=[...], **config_kwargs)``  pretrained encoders,
                                                     new modules freshly initialised
    freezing of ``text_encoder`` / ``vision_encoder`` from ``config.freeze_text`` / ``freeze_vision``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init

from .configuration_bert_crf import validate_label_map
from .crf import ConditionalRandomField, bio_transition_constraints
from .modeling_outputs import MNERTokenClassifierOutput
from .vision_encoder import resolve_vision_config
from .word_level import gather_word_labels, gather_words, locate_words


def build_text_encoder(text_config: PreTrainedConfig) -> PreTrainedModel:
    """Text encoder from its config, without the (unused) pooling layer when the class has one."""
    try:
        return AutoModel.from_config(text_config, add_pooling_layer=False)
    except TypeError:  # encoders without a pooler option (e.g. DistilBERT)
        return AutoModel.from_config(text_config)


def labels_to_id2label(labels: Sequence[str] | Mapping[int, str]) -> dict[int, str]:
    """``["O", "B-PER", ...]`` or ``{0: "O", ...}`` -> ``{0: "O", ...}`` (validated)."""
    id2label = {int(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else dict(enumerate(labels))
    validate_label_map(id2label, "labels")
    return id2label


class MNERPreTrainedModel(PreTrainedModel):
    """Base class: CRF head over words, parameter groups, freezing, ``from_encoders``."""

    base_model_prefix = "mner"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False
    # parameter-name prefixes of each group; parameters matching none of them are "fusion"
    _param_group_prefixes: ClassVar[dict[str, tuple[str, ...]]] = {
        "text": ("text_encoder.",),
        "vision": ("vision_encoder.",),
        "crf": ("classifier.", "crf."),
    }

    # ---- construction helpers -------------------------------------------------------------
    def _check_labels(self) -> None:
        """The model needs a real BIO label map (the config may hold transformers' placeholder)."""
        validate_label_map(self.config.id2label, f"{type(self).__name__} config")

    def _build_crf_head(self, hidden_size: int) -> None:
        """dropout + linear emissions + CRF (MNER-MI eq. 5-7) over ``config.id2label``."""
        num_labels = len(self.config.id2label)
        dropout = getattr(self.config, "classifier_dropout", None)
        if dropout is None:
            dropout = getattr(self.config.text_config, "hidden_dropout_prob", 0.1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)
        allowed = bio_transition_constraints(self.config.id2label) if self.config.constrain_transitions else None
        self.crf = ConditionalRandomField(num_labels, allowed)

    def _apply_freezing(self) -> None:
        """``requires_grad=False`` on the encoders named by ``freeze_text`` / ``freeze_vision``."""
        if getattr(self.config, "freeze_text", False):
            self.text_encoder.requires_grad_(False)
        if getattr(self.config, "freeze_vision", False) and getattr(self, "vision_encoder", None) is not None:
            self.vision_encoder.requires_grad_(False)

    def post_init(self) -> None:
        super().post_init()
        self._apply_freezing()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, ConditionalRandomField):
            init.uniform_(module.transitions, -0.1, 0.1)
            init.uniform_(module.start_transitions, -0.1, 0.1)
            init.uniform_(module.end_transitions, -0.1, 0.1)
            # non-persistent constraint buffers are not in checkpoints: rebuild them from the labels
            # (from_pretrained creates modules on the meta device, leaving them uninitialised)
            num = module.num_tags
            if self.config.constrain_transitions:
                allowed = bio_transition_constraints(self.config.id2label)
            else:
                allowed = (torch.ones(num, num, dtype=torch.bool), torch.ones(num, dtype=torch.bool),
                           torch.ones(num, dtype=torch.bool))
            init.copy_(module.allowed_transitions, allowed[0])
            init.copy_(module.allowed_start, allowed[1])
            init.copy_(module.allowed_end, allowed[2])

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        """``PreTrainedModel.save_pretrained`` (safetensors); for a class registered with
        ``register_for_auto_class`` the saved ``auto_map`` names it for both ``AutoModel`` and
        ``AutoModelForTokenClassification``."""
        if self._auto_class is not None:
            name = f"{type(self).__module__.split('.')[-1]}.{type(self).__name__}"
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map.update({"AutoModel": name, "AutoModelForTokenClassification": name})
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    # ---- public helpers -------------------------------------------------------------------
    def attention_base(self) -> str:
        """"sdpa" or "eager": the attention implementation chosen with the standard
        ``attn_implementation`` argument (anything else, e.g. flash, runs on sdpa)."""
        impl = self.config._attn_implementation
        return impl if impl in ("sdpa", "eager") else "sdpa"

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by group: ``text``, ``vision``, ``fusion`` (image-prompt / fusion
        modules) and ``crf`` (emission classifier + CRF). Empty groups are omitted."""
        groups: dict[str, list[nn.Parameter]] = {}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            group = next(
                (g for g, prefixes in self._param_group_prefixes.items() if name.startswith(prefixes)), "fusion"
            )
            groups.setdefault(group, []).append(param)
        return groups

    # ---- CRF head -------------------------------------------------------------------------
    def _crf_head(
        self,
        sequence_output: torch.Tensor,
        attention_mask: torch.Tensor,
        word_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_marginals: bool = False,
        extra_losses: Mapping[str, torch.Tensor] | None = None,
        hidden_states: tuple[torch.Tensor, ...] | None = None,
        attentions: tuple[torch.Tensor, ...] | None = None,
    ) -> MNERTokenClassifierOutput:
        """Word emissions, CRF loss, Viterbi tags and (optionally) marginals.

        Args:
            sequence_output: (B, L, H) final token states of the text encoder.
            attention_mask: (B, L); word_ids: (B, L) or None; labels: (B, L) or None.
            extra_losses: weighted auxiliary terms added to the CRF loss (MGIPS-CL).

        Returns:
            :class:`MNERTokenClassifierOutput` with logits (B, W, C), word_mask (B, W),
            predictions (B, W), loss () when labels are given.
        """
        words = locate_words(attention_mask, word_ids, labels)
        word_states = gather_words(sequence_output, words)  # (B, W, H)
        logits = self.classifier(self.dropout(word_states))  # emissions E: (B, W, C)
        loss = None
        components: dict[str, torch.Tensor] = {}
        if labels is not None:
            tags = gather_word_labels(labels, words)  # (B, W)
            num_labels = logits.size(-1)
            if bool((words.mask & (tags >= num_labels)).any()):
                raise ValueError(f"labels contain tag ids >= num_labels={num_labels}: {tags[words.mask].unique().tolist()}")
            if self.crf.constrained:
                bad = self.crf.invalid_transitions(tags, words.mask)
                if bool(bad.any()):
                    b, w = (int(i) for i in bad.nonzero()[0])
                    seq = [self.config.id2label[int(t)] for t in tags[b][words.mask[b]]]
                    raise ValueError(
                        f"post {b} of the batch, word {w}: gold tags {seq} contain a transition that "
                        "constrain_transitions=True forbids (e.g. O -> I-X); repair the tags with the "
                        "orphan-I policy of mner_hf.labels or set constrain_transitions=False"
                    )
            nll = -self.crf.log_likelihood(logits, tags, words.mask).mean()  # MNER-MI eq. 7: mean over posts
            components["crf"] = nll
            loss = nll
            for name, value in (extra_losses or {}).items():
                components[name] = value
                loss = loss + value
        predictions = self.crf.decode(logits.detach(), words.mask)  # Viterbi
        marginals = self.crf.marginals(logits, words.mask) if return_marginals else None
        return MNERTokenClassifierOutput(
            loss=loss,
            logits=logits,
            word_mask=words.mask,
            predictions=predictions,
            marginals=marginals,
            loss_components=components,
            word_positions=words.positions,
            hidden_states=hidden_states,
            attentions=attentions,
        )

    # ---- construction from pretrained encoders ----------------------------------------------
    @classmethod
    def from_encoders(
        cls,
        text: str,
        vision: str | None = None,
        labels: Sequence[str] | Mapping[int, str] = (),
        **config_kwargs: Any,
    ) -> MNERPreTrainedModel:
        """Build a model whose text (and vision) encoder come from pretrained checkpoints (local
        folder or Hub id); the fusion modules, classifier and CRF are freshly initialised.

        ``config_kwargs`` go to the model's config class (e.g. ``max_images=4``).
        """
        id2label = labels_to_id2label(labels)
        kwargs: dict[str, Any] = dict(config_kwargs)
        kwargs["text_config"] = AutoConfig.from_pretrained(text)
        if vision is not None:
            if "vision_config" not in cls.config_class.sub_configs:
                raise ValueError(f"{cls.__name__} is text-only: do not pass vision={vision!r}")
            kwargs["vision_config"] = resolve_vision_config(AutoConfig.from_pretrained(vision))
        config = cls.config_class(id2label=id2label, label2id={v: k for k, v in id2label.items()}, **kwargs)
        model = cls(config)
        pretrained = AutoModel.from_pretrained(text)
        missing, unexpected = model.text_encoder.load_state_dict(pretrained.state_dict(), strict=False)
        unexpected = [k for k in unexpected if not k.startswith("pooler.")]
        if missing or unexpected:
            raise ValueError(
                f"text checkpoint {text!r} does not fit the text encoder: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        del pretrained
        if vision is not None:
            model.vision_encoder.load_pretrained(vision)
        model._apply_freezing()
        return model.eval()  # like from_pretrained; the Trainer switches to train mode
