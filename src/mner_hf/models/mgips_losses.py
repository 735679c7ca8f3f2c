"""Contrastive objectives of MGIPS-CL: IPS-CL (eq. 14-16) and the standard CL (eq. 17).

Pure torch; travels with checkpoints and imports nothing from ``mner_hf``.

Both losses compare every post's text vector with the images of *every* post in the batch,
so they are training-only terms: at inference a post's output must not depend on the other
posts of its batch, and the model never calls these functions then.

Generalisation to several images per post: every real image of every post is a candidate.
A post's own images are its explicit positives; IPS-CL adds the K images of *other* posts
most relevant to the text as implicit positives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _zero_like_graph(*tensors: torch.Tensor) -> torch.Tensor:
    """A scalar 0 connected to the graph of ``tensors`` (keeps every parameter in backward)."""
    return sum(t.sum() for t in tensors) * 0.0


def ips_contrastive_loss(
    text_embeds: torch.Tensor,
    image_embeds: torch.Tensor,
    image_mask: torch.Tensor,
    top_k: int = 3,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Implicit Positive Sample contrastive loss (eq. 14-16).

    Args:
        text_embeds: (B, D) one vector per post's text.
        image_embeds: (B, M, D) one vector per image slot.
        image_mask: (B, M) bool/long, 1 for real images.
        top_k: K, number of implicit positives per text; clamped to the number of real images
            of the *other* posts in the batch.
        temperature: tau.

    Computation, over the P = sum(image_mask) real images ``v_p`` and the anchor texts
    ``t_i`` of posts having at least one image:

    * eq. 14 relevance ``r_ip = cos(t_i, v_p)`` (detached: it only *selects* positives);
    * eq. 15 positives ``P_i = own_i  U  TopK_{p not own_i} r_ip``;
    * eq. 16 ``L_i = -1/|P_i| sum_{p in P_i} log( exp(s_ip) / sum_q exp(s_iq) )`` with
      ``s_ip = cos(t_i, v_p) / tau``; the loss is the mean of ``L_i`` over anchors.

    Returns a scalar; 0 (still attached to the graph) when fewer than two posts have images,
    since then there is no negative to contrast with.
    """
    if text_embeds.dim() != 2 or image_embeds.dim() != 3:
        raise ValueError(
            f"ips_contrastive_loss expects text (B, D) and images (B, M, D), got "
            f"{tuple(text_embeds.shape)} and {tuple(image_embeds.shape)}"
        )
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    mask = image_mask.bool()
    has_image = mask.any(dim=1)  # (B,)
    if int(has_image.sum()) < 2:
        return _zero_like_graph(text_embeds, image_embeds)

    owner = torch.arange(mask.shape[0], device=mask.device)[:, None].expand_as(mask)[mask]  # (P,)
    images = F.normalize(image_embeds[mask].float(), dim=-1)  # (P, D)
    anchors = torch.nonzero(has_image).squeeze(1)  # (A,)
    texts = F.normalize(text_embeds[anchors].float(), dim=-1)  # (A, D)

    cosine = texts @ images.T  # (A, P)
    relevance = cosine.detach()  # eq. 14
    own = owner[None, :] == anchors[:, None]  # (A, P) explicit positives
    positives = own.clone()
    num_other = int((~own).sum(dim=1).min())
    k = min(top_k, num_other)
    if k > 0:  # eq. 15: the K most relevant images of other posts
        top = relevance.masked_fill(own, float("-inf")).topk(k, dim=1).indices
        positives.scatter_(1, top, True)

    log_prob = torch.log_softmax(cosine / temperature, dim=1)  # (A, P)
    per_anchor = -(log_prob * positives).sum(1) / positives.sum(1)  # eq. 16
    return per_anchor.mean().to(text_embeds.dtype)


def standard_contrastive_loss(
    text_embeds: torch.Tensor,
    image_embeds: torch.Tensor,
    image_mask: torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Standard (CLIP-style, symmetric InfoNCE) text-image contrastive loss (eq. 17).

    Each post's image vector is the normalised mean of its real images' vectors;
    ``S_ij = cos(t_i, u_j) / tau`` over the posts with at least one image and
    ``L = (CE(S, diag) + CE(S^T, diag)) / 2``.

    Args:
        text_embeds: (B, D). image_embeds: (B, M, D). image_mask: (B, M).
        temperature: tau.

    Returns a scalar; 0 (attached to the graph) when fewer than two posts have images.
    """
    mask = image_mask.bool()
    has_image = mask.any(dim=1)
    if int(has_image.sum()) < 2:
        return _zero_like_graph(text_embeds, image_embeds)
    weights = mask[has_image].to(torch.float32)[:, :, None]  # (A, M, 1)
    per_image = F.normalize(image_embeds[has_image].float(), dim=-1)
    post_images = F.normalize((per_image * weights).sum(1) / weights.sum(1), dim=-1)  # (A, D)
    texts = F.normalize(text_embeds[has_image].float(), dim=-1)
    logits = texts @ post_images.T / temperature  # (A, A)
    target = torch.arange(logits.shape[0], device=logits.device)
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))  # eq. 17
    return loss.to(text_embeds.dtype)
