"""Contrastive objectives of MGIPS-CL: relevance (eq. 14), IPS-CL (eq. 15-16), standard CL (eq. 17).

Pure torch; travels with checkpoints and imports nothing from ``mner_hf``.

Inputs are one vector per post: ``text`` t_i = g(z_i) and ``visual`` v_j = f(X_j), the
contrastive encoders of the fused sequences (``ContrastiveEncoder``). With several images per
post, a post's "image" is its whole visual sequence (all its real images), so the N x N
relevance matrix is over the N posts of the batch that have visual tokens. Both terms compare
a post with the other posts of the batch, so they are training-only.

Temperature: the paper gives no value; the authors' released code uses 0.5
(``contrastiveLossTopkb(0.5, k)`` in ``IFA_model.py`` of github.com/chenchenhtd/MGIPS-CL).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _zero_like_graph(*tensors: torch.Tensor) -> torch.Tensor:
    """A scalar 0 connected to the graph of ``tensors`` (keeps every parameter in backward)."""
    return sum(t.sum() for t in tensors) * 0.0


def _check(text: torch.Tensor, visual: torch.Tensor) -> None:
    if text.dim() != 2 or visual.dim() != 2 or text.shape != visual.shape:
        raise ValueError(f"contrastive losses expect text and visual (N, D) of one shape, got "
                         f"{tuple(text.shape)} and {tuple(visual.shape)}")


def relevance(text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
    """eq. 14: ``sim[i, j] = f(v_j)^T g(t_i) / (|f(v_j)| |g(t_i)|)``, (N, N), rows = texts."""
    return F.normalize(text.float(), dim=-1) @ F.normalize(visual.float(), dim=-1).T  # eq. 14


def ips_contrastive_loss(text: torch.Tensor, visual: torch.Tensor, top_k: int = 3, temperature: float = 0.5) -> torch.Tensor:
    """Implicit Positive Sample contrastive loss (eq. 15-16).

    For each text t_i the K images most relevant to it among all N images of the batch
    (its own counts only when it is among them) form V_K (eq. 15), and

    ``L = 1/N sum_i -log( sum_{m<=K} exp(sim(t_i, v_Km)/tau) / sum_{j<=N} exp(sim(t_i, v_j)/tau) )`` (eq. 16).

    Args:
        text, visual: (N, D) vectors of the N posts with visual tokens.
        top_k: K (clamped to N; with K >= N the loss is 0).
        temperature: tau.

    Returns a scalar; 0 (attached to the graph) when N < 2.
    """
    _check(text, visual)
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if text.shape[0] < 2:
        return _zero_like_graph(text, visual)
    logits = relevance(text, visual) / temperature
    top = logits.topk(min(top_k, logits.shape[1]), dim=1).values  # eq. 15
    loss = (torch.logsumexp(logits, dim=1) - torch.logsumexp(top, dim=1)).mean()  # eq. 16
    return loss.to(text.dtype)


def standard_contrastive_loss(text: torch.Tensor, visual: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Standard contrastive loss, text -> image only (eq. 17):
    ``L = 1/N sum_i -log( exp(sim(t_i, v_i)/tau) / sum_j exp(sim(t_i, v_j)/tau) )``.

    Args: text, visual (N, D); temperature tau. Returns a scalar; 0 (attached) when N < 2.
    """
    _check(text, visual)
    if text.shape[0] < 2:
        return _zero_like_graph(text, visual)
    logits = relevance(text, visual) / temperature
    target = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, target).to(text.dtype)  # eq. 17
