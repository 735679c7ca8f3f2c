"""Text-only BERT-CRF baseline: encoder + dropout + linear emissions + CRF (MNER-MI eq. 5-7) over words.

Public API
----------
``BertCRFForTokenClassification(config: BertCRFConfig)``
    ``forward(input_ids, attention_mask, token_type_ids=None, word_ids=None, labels=None,
              pixel_values=None, image_mask=None, image_embeds=None, return_marginals=False, ...)``
    -> ``MNERTokenClassifierOutput`` (images are accepted for a uniform interface and ignored).
    ``from_encoders(text=path_or_id, labels=[...], **config_kwargs)``; ``param_groups()`` -> text, crf.
"""

from __future__ import annotations

import torch

from .configuration_bert_crf import BertCRFConfig
from .modeling_common import MNERPreTrainedModel, build_text_encoder
from .modeling_outputs import MNERTokenClassifierOutput


class BertCRFForTokenClassification(MNERPreTrainedModel):
    """BERT-family encoder + CRF tagger over words (the paper's BERT-CRF baseline)."""

    config_class = BertCRFConfig

    def __init__(self, config: BertCRFConfig) -> None:
        super().__init__(config)
        self._check_labels()
        self.text_encoder = build_text_encoder(config.text_config)
        self._build_crf_head(config.text_config.hidden_size)
        self.post_init()

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
        """Tag the words of B posts.

        Args:
            input_ids / attention_mask / token_type_ids / word_ids / labels: (B, L).
            pixel_values (B, M, 3, H, W), image_mask (B, M), image_embeds (B, M, D): ignored
                (text-only baseline; accepted so every MNER model takes the same batch).
            return_marginals: also return CRF marginals (B, W, C).

        Returns:
            logits (B, W, C), word_mask (B, W), predictions (B, W), loss when labels are given.
        """
        if input_ids is None:
            raise ValueError("input_ids are required")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        encoder_kwargs = {}
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
