"""Fusion modules of MGIPS-CL: Multi-Granularity Excavator (eq. 5-8), Interweave Encoder
(eq. 9-11), pre-post adaptive gate (eq. 12-13) and the contrastive encoders f, g (eq. 14).

Pure torch; this file travels with checkpoints (``trust_remote_code``) and imports nothing
from ``mner_hf``.

Notation: an MGE updates a sequence X (the *query*) guided by a sequence Y (the *guide*),
``MGE(X, Y)`` as in eq. 9. One of them is the text (length L, at most ``max_text_length``),
the other the visual sequence of a post (length P: the tokens of all its image slots in
order, at most ``max_images`` x tokens per image). As in the authors' code, the *common
length* of eq. 5 is the text's: the visual side is mapped to it by a learned map over
positions (f1 or f2) and, when the visual sequence is the one updated, back by f3 (eq. 8).
A position map is a weight per (output, input) position; padded positions are zeroed
before it, so neither text nor visual padding can change a post's output, and because the
visual sequence is laid out slot by slot, the map keeps which image a token came from.
"""

from __future__ import annotations

import torch
from torch import nn


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax of ``scores`` over ``dim`` where ``mask`` is True, exactly 0 elsewhere.

    A slice without any valid entry gets all-zero weights instead of NaN; ``mask``
    broadcasts to ``scores``.
    """
    mask = mask.expand_as(scores)
    filled = scores.float().masked_fill(~mask, torch.finfo(torch.float32).min)  # finite: no NaN when all masked
    return torch.softmax(filled, dim=dim).to(scores.dtype) * mask.to(scores.dtype)


class PositionMap(nn.Module):
    """Learned linear map over sequence *positions* (the length change of f1, f2, f3).

    ``out[b, o] = sum_i W[o, i] * x[b, i] * mask[b, i] + bias[o]`` for the first ``n_out``
    output and ``N_in`` input positions of the ``(max_out, max_in)`` weight: masked input
    positions contribute nothing, so trailing padding never changes the result.
    """

    def __init__(self, max_in: int, max_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_out, max_in))
        self.bias = nn.Parameter(torch.zeros(max_out))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, n_out: int) -> torch.Tensor:
        """x: (B, N_in, D), mask: (B, N_in) bool -> (B, n_out, D)."""
        n_in = x.shape[1]
        if n_in > self.weight.shape[1] or n_out > self.weight.shape[0]:
            raise ValueError(
                f"sequence of {n_in} -> {n_out} positions exceeds the configured maximum "
                f"{self.weight.shape[1]} -> {self.weight.shape[0]}"
            )
        x = x * mask[..., None].to(x.dtype)
        return torch.einsum("oi,bid->bod", self.weight[:n_out, :n_in].to(x.dtype), x) + self.bias[:n_out, None].to(x.dtype)


class MultiGranularityExcavator(nn.Module):
    """Multi-Granularity Excavator ``MGE(X, Y)`` (eq. 5-8), with ``num_heads`` heads.

    With ``G = f1(Linear_1(Y))`` and ``Q = f2(Linear_2(X))`` both (B, L, D_c), split into heads:

    * eq. 5: ``M_im = G * Q`` element-wise;
    * eq. 6: row-grained ``M_C = softmax_tokens(M_im m_3)``, one weight per token (B, H, L, 1);
      column-grained ``M_F = softmax_channels(sum_t m_4[t] M_im[t])``, one weight per channel
      (B, H, 1, d_h) (m_4: a weight per text position, the authors' ``Linear(40, 1)``);
    * eq. 7: ``V_C = M_C * G`` and ``V_F = M_F * G``: the guide's values re-weighted;
    * eq. 8: ``X' = f3(V_F + V_C)``: back to X's length (a position map when X is visual)
      and width (``output``).

    Args:
        query_size / guide_size: widths of X and Y.
        common_size: D_c, the width of eq. 5 (divisible by ``num_heads``).
        max_text_length: rows of the common length (the text's positions).
        max_visual_length: positions of the visual sequence.
        query_is_text: X is the text (text-guided MGE) or the visual sequence (image-guided).
        use_row / use_col: keep ``M_C`` / ``M_F`` (ablations "w/o Row-/Column-grained").
    """

    def __init__(
        self,
        query_size: int,
        guide_size: int,
        common_size: int,
        num_heads: int,
        max_text_length: int,
        max_visual_length: int,
        query_is_text: bool,
        use_row: bool = True,
        use_col: bool = True,
    ) -> None:
        super().__init__()
        if not (use_row or use_col):
            raise ValueError("MultiGranularityExcavator needs at least one of use_row / use_col")
        if common_size % num_heads:
            raise ValueError(f"common width {common_size} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, common_size // num_heads
        self.query_is_text, self.use_row, self.use_col = query_is_text, use_row, use_col
        self.guide_linear = nn.Linear(guide_size, common_size)  # Linear_1
        self.query_linear = nn.Linear(query_size, common_size)  # Linear_2
        self.to_common = PositionMap(max_visual_length, max_text_length)  # f1 (or f2): visual -> text length
        self.act = nn.GELU()
        if not query_is_text:
            self.from_common = PositionMap(max_text_length, max_visual_length)  # f3 length part
        if use_row:
            self.row_weight = nn.Parameter(torch.empty(num_heads, self.head_dim))  # m_3
            nn.init.normal_(self.row_weight, std=0.02)
        if use_col:
            self.col_weight = nn.Parameter(torch.empty(max_text_length))  # m_4
            nn.init.normal_(self.col_weight, std=0.02)
        self.output = nn.Linear(common_size, query_size)  # f3 width part

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def granularity_weights(self, m_im: torch.Tensor, text_mask: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """eq. 6 on ``M_im`` (B, H, L, d_h): ``M_C`` (B, H, L, 1) and ``M_F`` (B, H, 1, d_h)."""
        rows = text_mask[:, None, :, None]  # (B, 1, L, 1)
        m_c = m_f = None
        if self.use_row:
            scores = (m_im * self.row_weight[None, :, None, :].to(m_im.dtype)).sum(-1, keepdim=True)
            m_c = masked_softmax(scores, rows, dim=-2)  # eq. 6, row-grained: over tokens
        if self.use_col:
            pos = self.col_weight[: m_im.shape[2]].to(m_im.dtype)[None, None, :, None]
            scores = (m_im * pos * rows.to(m_im.dtype)).sum(-2, keepdim=True)  # (B, H, 1, d_h)
            m_f = torch.softmax(scores.float(), dim=-1).to(m_im.dtype)  # eq. 6, column-grained: over channels
        return m_c, m_f

    def forward(
        self, query: torch.Tensor, guide: torch.Tensor, query_mask: torch.Tensor, guide_mask: torch.Tensor
    ) -> torch.Tensor:
        """query X (B, N_x, D_x), guide Y (B, N_y, D_y), masks (B, N) bool -> update (B, N_x, D_x)
        (zero at padded query positions)."""
        if self.query_is_text:
            text_mask, visual, visual_mask = query_mask, guide, guide_mask
        else:
            text_mask, visual, visual_mask = guide_mask, query, query_mask
        length = text_mask.shape[1]
        g = self.guide_linear(guide)
        q = self.query_linear(query)
        if self.query_is_text:  # f1: guide (visual) to the common (text) length
            g = self.act(self.to_common(g, guide_mask, length))
        else:  # f2: query (visual) to the common length
            q = self.act(self.to_common(q, query_mask, length))
        g = self._heads(g * text_mask[..., None].to(g.dtype))
        m_im = g * self._heads(q)  # eq. 5, (B, H, L, d_h)
        m_c, m_f = self.granularity_weights(m_im, text_mask)
        summed = torch.zeros_like(g)
        if m_f is not None:
            summed = summed + m_f * g  # eq. 7, V_F
        if m_c is not None:
            summed = summed + m_c * g  # eq. 7, V_C
        summed = summed.transpose(1, 2).flatten(2)  # (B, L, D_c), zero at padded text rows
        if not self.query_is_text:  # f3: back to the visual length (eq. 8)
            summed = self.from_common(summed, text_mask, visual.shape[1])
        has_visual = visual_mask.any(dim=1).to(summed.dtype)[:, None, None]
        return self.output(summed) * query_mask[..., None].to(summed.dtype) * has_visual  # eq. 8


class MGEBlock(nn.Module):
    """One MGE inside a transformer block (pre-LayerNorm, as CLIP's layers):

    ``U = X + Dropout(MGE(LN(X), LN(Y)))`` (the residual of eq. 10 / 11), then
    ``X' = U + Dropout(FFN(LN(U)))``.
    """

    def __init__(self, mge: MultiGranularityExcavator, query_size: int, guide_size: int,
                 intermediate_size: int, dropout: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm_query = nn.LayerNorm(query_size, eps=eps)
        self.norm_guide = nn.LayerNorm(guide_size, eps=eps)
        self.mge = mge
        self.norm_ffn = nn.LayerNorm(query_size, eps=eps)
        self.ffn = nn.Sequential(nn.Linear(query_size, intermediate_size), nn.GELU(), nn.Linear(intermediate_size, query_size))
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, guide: torch.Tensor, query_mask: torch.Tensor, guide_mask: torch.Tensor) -> torch.Tensor:
        """(B, N_x, D_x), (B, N_y, D_y), masks -> (B, N_x, D_x)."""
        u = query + self.dropout(self.mge(self.norm_query(query), self.norm_guide(guide), query_mask, guide_mask))
        return u + self.dropout(self.ffn(self.norm_ffn(u)))


class InterweaveEncoder(nn.Module):
    """Interweave Encoder (eq. 9-11) with ``num_layers`` stacked layers sharing two MGE blocks.

    ::

        for l in 1..num_layers:
            X_l = X_{l-1} + MGE_img(X_{l-1}, T_{l-1})    # eq. 10, image-guided: updates the visual sequence
            T_l = T_{l-1} + MGE_txt(T_{l-1}, X_l)        # eq. 11, text-guided: updates the text
        X_out = X_L + MGE_img(X_L, T_L)                  # the shared image-guided MGE once more (Fig. 3, "3")

    ``T_L`` goes to the gate (eq. 12-13), ``X_out`` to the contrastive losses (eq. 14). A post
    without visual tokens keeps its text unchanged (``T_L = T_0``).

    Args:
        text_size / visual_size: widths of the text and visual sequences.
        num_heads: heads of both MGEs (common width = ``text_size``).
        max_text_length / max_visual_length: lengths of the position maps.
        text_intermediate / visual_intermediate: feed-forward widths of the two blocks.
    """

    def __init__(
        self,
        text_size: int,
        visual_size: int,
        num_heads: int,
        max_text_length: int,
        max_visual_length: int,
        text_intermediate: int,
        visual_intermediate: int,
        num_layers: int = 1,
        use_row: bool = True,
        use_col: bool = True,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.num_layers = num_layers
        common = dict(common_size=text_size, num_heads=num_heads, max_text_length=max_text_length,
                      max_visual_length=max_visual_length, use_row=use_row, use_col=use_col)
        self.image_guided = MGEBlock(
            MultiGranularityExcavator(visual_size, text_size, query_is_text=False, **common),
            visual_size, text_size, visual_intermediate, dropout)
        self.text_guided = MGEBlock(
            MultiGranularityExcavator(text_size, visual_size, query_is_text=True, **common),
            text_size, visual_size, text_intermediate, dropout)

    def forward(
        self, text: torch.Tensor, visual: torch.Tensor, text_mask: torch.Tensor, visual_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """text T_0 (B, L, D_t), visual X_0 (B, P, D_v), masks (B, L) / (B, P) bool ->
        (T_L (B, L, D_t), X_out (B, P, D_v))."""
        if visual.shape[1] == 0:
            return text, visual
        has_visual = visual_mask.any(dim=1)[:, None, None]
        t, x = text, visual
        for _ in range(self.num_layers):
            x = self.image_guided(x, t, visual_mask, text_mask)  # eq. 10
            t = torch.where(has_visual, self.text_guided(t, x, text_mask, visual_mask), t)  # eq. 11
        x = self.image_guided(x, t, visual_mask, text_mask)  # eq. 9: one more image-guided MGE
        return t, x


class PrePostAdaptiveGate(nn.Module):
    """Pre-post adaptive gate: ``I = sigmoid(W_1 T + W_2 H + b)`` (eq. 12) as one linear layer
    over ``[T; H]``, and ``z = I * H + (1 - I) * T`` (eq. 13), element-wise; H is the text
    before the interweave encoder, T after it. Ordinary trainable parameters ("fusion" group)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * hidden_size, hidden_size)

    def forward(self, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
        """pre H, post T: (B, L, D) -> z (B, L, D)."""
        i = torch.sigmoid(self.gate(torch.cat([post, pre], dim=-1)))  # eq. 12
        return i * pre + (1.0 - i) * post  # eq. 13


class ContrastiveEncoder(nn.Module):
    """A contrastive encoder f or g of eq. 14: ``GELU(Linear(token))`` averaged over the valid
    tokens of the sequence -> one vector per post (padding never enters the mean)."""

    def __init__(self, in_size: int, out_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_size, out_size)
        self.act = nn.GELU()

    def forward(self, sequence: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, N, D_in), (B, N) bool -> (B, out_size); zeros for a post without valid tokens."""
        w = mask[..., None].to(sequence.dtype)
        tokens = self.act(self.proj(sequence)) * w
        return tokens.sum(1) / w.sum(1).clamp(min=1.0)
