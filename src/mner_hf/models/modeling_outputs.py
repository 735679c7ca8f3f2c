"""Output type shared by the BERT-CRF, TPM-MI and MGIPS-CL token classifiers.

Public API
----------
``MNERTokenClassifierOutput`` (a ``transformers.utils.ModelOutput``):
    loss             () float, CRF negative log-likelihood (mean over posts) + weighted auxiliary terms
    logits           (B, W, C) word-level emissions (eq. 5), W = max words in the batch
    word_mask        (B, W) bool, valid words
    predictions      (B, W) long Viterbi tags (eq. 7), -100 at invalid words
    marginals        (B, W, C) CRF per-word tag posteriors (only with ``return_marginals=True``)
    loss_components  dict[str, Tensor] of every loss term, e.g. ``{"crf": ...}``
    word_positions   (B, W) long token position of each word's first sub-word
    hidden_states / attentions of the text encoder (when requested)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class MNERTokenClassifierOutput(ModelOutput):
    """Word-level output of an MNER token classifier; see the module docstring for shapes."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    word_mask: torch.Tensor | None = None
    predictions: torch.Tensor | None = None
    marginals: torch.Tensor | None = None
    loss_components: dict[str, torch.Tensor] | None = None
    word_positions: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
