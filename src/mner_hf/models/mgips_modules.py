"""Fusion modules of MGIPS-CL: Multi-Granularity Excavator, Interweave encoder, pre-post gate.

Pure torch; this file travels with checkpoints (``trust_remote_code``) and imports nothing
from ``mner_hf``.

Notation (paper section 3): ``X`` (B, N, D) is the *query* sequence that is updated, ``Y``
(B, M, D) the *guide* sequence it excavates information from. For the image-guided MGE the
query is the text (N sub-word tokens) and the guide the visual tokens of all real images of
the post (M = images x tokens per image); for the text-guided MGE the roles swap.

All lengths come from masks: nothing here assumes 40 text tokens or 49 visual tokens.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_NEG = -1e4  # large negative used before softmax; finite so fully masked rows stay finite


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax of ``scores`` over ``dim`` where ``mask`` is True; exactly 0 elsewhere.

    A slice with no valid entry (a post without images) gets all-zero weights instead of NaN.
    ``scores`` and ``mask`` broadcast to the same shape.
    """
    mask = mask.expand_as(scores)
    scores = scores.masked_fill(~mask, _NEG)
    weights = torch.softmax(scores.float(), dim=dim).to(scores.dtype)
    return weights * mask.to(weights.dtype)


class MultiGranularityExcavator(nn.Module):
    """Multi-Granularity Excavator (MGE, eq. 5-9) for one guiding direction.

    Affinities between query and guide tokens are scored twice, with separate projections:

    * row-grained (eq. 5-6): ``A_row = softmax_j(Q_r K_r^T / sqrt(d))`` -- each query token
      distributes its attention over the guide tokens (normalised along a row);
    * column-grained (eq. 7-8): ``A_col = softmax_i(Q_c K_c^T / sqrt(d))`` -- each guide token
      distributes its attention over the query tokens (normalised along a column), telling
      how much a query token matters to the guide *relative to the other query tokens*;
    * the weights are summed (eq. 9): ``A = A_row + A_col`` and
      ``X' = LayerNorm(X + Dropout((A V) W_o))`` with ``V = Y W_v`` (residual form used by
      the interweave encoder, eq. 10-11).

    Disabling a granularity (ablation) removes its projections, so the parameter count drops.

    Args:
        hidden_size: D, model width of both sequences.
        use_row: keep the row-grained weights.
        use_col: keep the column-grained weights.
        dropout: dropout on the excavated update.
        layer_norm_eps: LayerNorm epsilon.
    """

    def __init__(
        self,
        hidden_size: int,
        use_row: bool = True,
        use_col: bool = True,
        dropout: float = 0.1,
        layer_norm_eps: float = 1e-12,
    ) -> None:
        super().__init__()
        if not (use_row or use_col):
            raise ValueError("MultiGranularityExcavator needs at least one of use_row / use_col")
        self.hidden_size = hidden_size
        self.use_row = use_row
        self.use_col = use_col
        if use_row:
            self.row_query = nn.Linear(hidden_size, hidden_size)
            self.row_key = nn.Linear(hidden_size, hidden_size)
        if use_col:
            self.col_query = nn.Linear(hidden_size, hidden_size)
            self.col_key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.output = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def weights(
        self,
        query: torch.Tensor,
        guide: torch.Tensor,
        query_mask: torch.Tensor,
        guide_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Summed multi-granularity weights ``A`` (eq. 9), shape (B, N, M).

        Args:
            query: (B, N, D). guide: (B, M, D).
            query_mask: (B, N) bool. guide_mask: (B, M) bool.
        """
        scale = 1.0 / math.sqrt(self.hidden_size)
        pair_mask = query_mask[:, :, None] & guide_mask[:, None, :]  # (B, N, M)
        total = query.new_zeros(query.shape[0], query.shape[1], guide.shape[1])
        if self.use_row:
            s_row = self.row_query(query) @ self.row_key(guide).transpose(1, 2) * scale  # eq. 5
            total = total + _masked_softmax(s_row, pair_mask, dim=-1)  # eq. 6, over guide tokens
        if self.use_col:
            s_col = self.col_query(query) @ self.col_key(guide).transpose(1, 2) * scale  # eq. 7
            total = total + _masked_softmax(s_col, pair_mask, dim=-2)  # eq. 8, over query tokens
        return total

    def forward(
        self,
        query: torch.Tensor,
        guide: torch.Tensor,
        query_mask: torch.Tensor,
        guide_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Excavate guide information into the query sequence.

        Args:
            query: (B, N, D) sequence to update. guide: (B, M, D) guiding sequence.
            query_mask: (B, N) bool, valid query tokens. guide_mask: (B, M) bool, valid guide
                tokens (False for every token of a padded image slot).

        Returns:
            (B, N, D) updated query; a post whose guide is fully masked gets
            ``LayerNorm(query)`` (no excavated update).
        """
        weights = self.weights(query, guide, query_mask, guide_mask)  # (B, N, M), eq. 9
        update = self.output(weights @ self.value(guide))
        has_guide = guide_mask.any(dim=1).to(update.dtype)[:, None, None]  # (B, 1, 1)
        update = update * has_guide  # no image: no update (not even the output bias)
        return self.layer_norm(query + self.dropout(update))


class InterweaveEncoder(nn.Module):
    """Interweave encoder (eq. 10-11): alternating image-guided and text-guided MGE.

    With ``num_layers = L`` the two MGE modules are *shared* across the stacked layers and
    applied as::

        T_1 = MGE_img(T_0, V_0)                       # eq. 10
        for l in 1..L:
            V_l     = MGE_txt(V_{l-1}, T_l)           # eq. 11
            T_{l+1} = MGE_img(T_l, V_l)               # eq. 10

    i.e. L+1 image-guided and L text-guided applications (one more image-guided MGE than
    text-guided), every application residual (inside :class:`MultiGranularityExcavator`).

    Args:
        hidden_size: D.
        num_layers: L >= 0 (0 means a single image-guided MGE).
        use_row / use_col: ablation switches forwarded to both MGEs.
        dropout / layer_norm_eps: forwarded to both MGEs.
    """

    def __init__(
        self,
        hidden_size: int,
        num_layers: int = 1,
        use_row: bool = True,
        use_col: bool = True,
        dropout: float = 0.1,
        layer_norm_eps: float = 1e-12,
    ) -> None:
        super().__init__()
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        self.num_layers = num_layers
        self.image_guided = MultiGranularityExcavator(hidden_size, use_row, use_col, dropout, layer_norm_eps)
        self.text_guided = MultiGranularityExcavator(hidden_size, use_row, use_col, dropout, layer_norm_eps)

    def forward(
        self,
        text: torch.Tensor,
        visual: torch.Tensor,
        text_mask: torch.Tensor,
        visual_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Args:
            text: (B, N, D) text tokens T_0. visual: (B, M, D) visual tokens V_0.
            text_mask: (B, N) bool. visual_mask: (B, M) bool.

        Returns:
            (B, N, D) the interwoven text representation T_{L+1}.
        """
        t = self.image_guided(text, visual, text_mask, visual_mask)  # eq. 10
        v = visual
        for _ in range(self.num_layers):
            v = self.text_guided(v, t, visual_mask, text_mask)  # eq. 11
            t = self.image_guided(t, v, text_mask, visual_mask)  # eq. 10
        return t


class PrePostAdaptiveGate(nn.Module):
    """Pre-post adaptive gate (eq. 12-13).

    ``g = sigmoid(W_g [H_pre; H_post] + b_g)`` (eq. 12) and
    ``H = g * H_pre + (1 - g) * H_post`` (eq. 13), element-wise, where ``H_pre`` is the text
    representation before the interweave encoder and ``H_post`` after it.
    Its parameters are ordinary trainable parameters (in the ``fusion`` group), unlike the
    reference code, which left them out of the optimiser.
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * hidden_size, hidden_size)

    def forward(self, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
        """pre, post: (B, N, D) -> (B, N, D)."""
        g = torch.sigmoid(self.gate(torch.cat([pre, post], dim=-1)))  # eq. 12
        return g * pre + (1.0 - g) * post  # eq. 13
