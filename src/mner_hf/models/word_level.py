"""Sub-word -> word gathering (words are represented by their first sub-word).

Public API
----------
``locate_words(attention_mask, word_ids=None, labels=None) -> WordIndex``
    ``WordIndex.positions`` (B, W) long token position of each word's first sub-word (0 where invalid),
    ``WordIndex.mask`` (B, W) bool valid words (left-aligned).
``gather_words(hidden, words) -> (B, W, H)``      token states at the words' first sub-words (0 at invalid)
``gather_word_labels(labels, words) -> (B, W)``   gold tag per word, -100 at invalid words; raises
                                                   ``ValueError`` when a located word has no tag

Word location rule (ARCHITECTURE.md): from ``word_ids`` when given (first position of each word id,
i.e. where the id differs from the previous token's), else from ``labels != -100``, else every
attended token except the first ([CLS]) and the last attended one ([SEP]).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class WordIndex:
    """Positions of the words' first sub-words. ``positions`` (B, W) long, ``mask`` (B, W) bool."""

    positions: torch.Tensor
    mask: torch.Tensor


def _word_starts(
    attention_mask: torch.Tensor,
    word_ids: torch.Tensor | None,
    labels: torch.Tensor | None,
) -> torch.Tensor:
    """(B, L) bool: token is the first sub-word of a word."""
    attended = attention_mask.bool()
    if word_ids is not None:
        if word_ids.shape != attention_mask.shape:
            raise ValueError(f"word_ids {tuple(word_ids.shape)} must match attention_mask {tuple(attention_mask.shape)}")
        prev = torch.cat([torch.full_like(word_ids[:, :1], -1), word_ids[:, :-1]], dim=1)
        return (word_ids >= 0) & (word_ids != prev) & attended
    if labels is not None:
        if labels.shape != attention_mask.shape:
            raise ValueError(f"labels {tuple(labels.shape)} must match attention_mask {tuple(attention_mask.shape)}")
        return (labels != -100) & attended
    positions = torch.arange(attended.size(1), device=attended.device).unsqueeze(0)
    last = attended.long().sum(1, keepdim=True) - 1
    return attended & (positions > 0) & (positions < last)


def locate_words(
    attention_mask: torch.Tensor,
    word_ids: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
) -> WordIndex:
    """Locate words by their first sub-word.

    Args:
        attention_mask: (B, L) 1 real token, 0 padding.
        word_ids: (B, L) long word index per token, -1 for special tokens / padding.
        labels: (B, L) long tag on the first sub-word of each word, -100 elsewhere.

    Returns:
        :class:`WordIndex` with (B, W) positions and mask, W = max words in the batch; word w of a
        post is its w-th first sub-word in token order.
    """
    starts = _word_starts(attention_mask, word_ids, labels)
    counts = starts.long().sum(1)
    num_words = int(counts.max()) if counts.numel() else 0
    # stable sort puts the word starts first, in token order
    order = torch.argsort((~starts).to(torch.int8), dim=1, stable=True)[:, :num_words]
    mask = torch.arange(num_words, device=starts.device).unsqueeze(0) < counts.unsqueeze(1)
    return WordIndex(positions=torch.where(mask, order, torch.zeros_like(order)), mask=mask)


def gather_words(hidden: torch.Tensor, words: WordIndex) -> torch.Tensor:
    """(B, L, H) token states -> (B, W, H) word states (zeros at invalid words)."""
    idx = words.positions.unsqueeze(-1).expand(-1, -1, hidden.size(-1))
    out = hidden.gather(1, idx)
    return out * words.mask.unsqueeze(-1).to(out.dtype)


def gather_word_labels(labels: torch.Tensor, words: WordIndex) -> torch.Tensor:
    """(B, L) token labels -> (B, W) word tags, -100 at invalid words.

    Raises:
        ValueError: a located word carries -100 (its tag would be silently dropped otherwise).
    """
    tags = labels.gather(1, words.positions)
    missing = words.mask & (tags < 0)
    if bool(missing.any()):
        b, w = (int(i) for i in missing.nonzero()[0])
        raise ValueError(
            f"post {b} of the batch: word {w} (token position {int(words.positions[b, w])}) has no tag "
            "(label -100 on its first sub-word); labels must be set on the first sub-word of every word"
        )
    return torch.where(words.mask, tags, torch.full_like(tags, -100))
