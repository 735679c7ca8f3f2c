"""Vectorised linear-chain conditional random field (MNER-MI eq. 5-6).

Public API
----------
``ConditionalRandomField(num_tags, allowed=None)``
    ``log_likelihood(emissions, tags, mask) -> (B,)``   log p(y | H) (eq. 5), log Z by the forward algorithm (eq. 6)
    ``decode(emissions, mask) -> (B, T)``               Viterbi, -100 at masked steps
    ``marginals(emissions, mask) -> (B, T, C)``         forward-backward per-step tag posteriors
    ``invalid_transitions(tags, mask) -> (B, T) bool``  gold steps that break the constraints
``bio_transition_constraints(id2label) -> (allowed (C, C), allowed_start (C,), allowed_end (C,))``
    forbids O -> I-X, B-X -> I-Y, I-X -> I-Y and start -> I-X (BIO/IOB2); BIOES tags get the
    corresponding BIOES rules.

All functions loop over time only; the batch is processed at once. ``mask`` (B, T) must be
left-aligned (valid steps first), as produced by ``word_level.locate_words``. A sequence with no
valid step has log-likelihood 0, no decoded tags and zero marginals.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

# Score given to forbidden transitions. Large and finite so that log-sum-exp and its gradient
# stay finite (exp(-1e4) underflows to exactly 0 in float32 and bfloat16).
FORBIDDEN_SCORE = -1.0e4


def _split_tag(tag: str) -> tuple[str, str | None]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", None)``."""
    if tag == "O":
        return "O", None
    if len(tag) > 2 and tag[1] in "-_" and tag[0] in "BIESU":
        prefix = "S" if tag[0] == "U" else tag[0]
        return prefix, tag[2:]
    raise ValueError(
        f"cannot derive CRF transition constraints from tag {tag!r}: expected 'O' or "
        "'<B|I|E|S>-<TYPE>' (BIO/IOB2 or BIOES); pass constrain_transitions=False for other tag sets"
    )


def bio_transition_constraints(
    id2label: Mapping[int, str],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Allowed transitions of a BIO (or BIOES) tag set.

    Args:
        id2label: tag id -> tag name, ids ``0 .. C-1``.

    Returns:
        ``allowed`` (C, C) bool, ``allowed[i, j]`` = tag j may follow tag i;
        ``allowed_start`` (C,) bool, tag may open a sequence;
        ``allowed_end`` (C,) bool, tag may close a sequence.
    """
    num = len(id2label)
    parts = [_split_tag(id2label[i]) for i in range(num)]
    bioes = any(p in ("E", "S") for p, _ in parts)
    allowed = torch.ones(num, num, dtype=torch.bool)
    start = torch.ones(num, dtype=torch.bool)
    end = torch.ones(num, dtype=torch.bool)
    for j, (pj, tj) in enumerate(parts):
        if pj in ("I", "E"):
            start[j] = False  # start -> I-X (and E-X) forbidden
        if bioes and pj in ("B", "I"):
            end[j] = False  # an open BIOES entity must be closed by E-X
        for i, (pi, ti) in enumerate(parts):
            if bioes:
                inside_i = pi in ("B", "I")
                if pj in ("I", "E"):
                    ok = inside_i and ti == tj
                else:
                    ok = not inside_i
            else:
                ok = pj != "I" or (pi in ("B", "I") and ti == tj)  # O -> I-X, B-X -> I-Y forbidden
            allowed[i, j] = ok
    return allowed, start, end


class ConditionalRandomField(nn.Module):
    """Linear-chain CRF over ``num_tags`` tags with start/end scores.

    Parameters: ``transitions`` (C, C) score of moving from tag i to tag j, ``start_transitions``
    (C,), ``end_transitions`` (C,). With ``allowed`` constraints (see
    :func:`bio_transition_constraints`) forbidden moves score ``FORBIDDEN_SCORE`` in training,
    decoding and marginals alike.
    """

    def __init__(
        self,
        num_tags: int,
        allowed: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"a CRF needs at least one tag, got num_tags={num_tags}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        self.reset_parameters()
        if allowed is None:
            allowed = (
                torch.ones(num_tags, num_tags, dtype=torch.bool),
                torch.ones(num_tags, dtype=torch.bool),
                torch.ones(num_tags, dtype=torch.bool),
            )
        trans, start, end = allowed
        if trans.shape != (num_tags, num_tags) or start.shape != (num_tags,) or end.shape != (num_tags,):
            raise ValueError(f"constraint shapes {tuple(trans.shape)}, {tuple(start.shape)}, {tuple(end.shape)} "
                             f"do not match num_tags={num_tags}")
        # derived from the label names at construction, so not saved in checkpoints
        self.register_buffer("allowed_transitions", trans.clone().bool(), persistent=False)
        self.register_buffer("allowed_start", start.clone().bool(), persistent=False)
        self.register_buffer("allowed_end", end.clone().bool(), persistent=False)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.uniform_(self.transitions, -0.1, 0.1)
        nn.init.uniform_(self.start_transitions, -0.1, 0.1)
        nn.init.uniform_(self.end_transitions, -0.1, 0.1)

    @property
    def constrained(self) -> bool:
        return not bool(
            self.allowed_transitions.all() and self.allowed_start.all() and self.allowed_end.all()
        )

    def _scores(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Constrained (transitions (C, C), start (C,), end (C,)) in ``dtype``."""
        trans = self.transitions.masked_fill(~self.allowed_transitions, FORBIDDEN_SCORE)
        start = self.start_transitions.masked_fill(~self.allowed_start, FORBIDDEN_SCORE)
        end = self.end_transitions.masked_fill(~self.allowed_end, FORBIDDEN_SCORE)
        return trans.to(dtype), start.to(dtype), end.to(dtype)

    def _check(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if emissions.dim() != 3 or emissions.size(-1) != self.num_tags:
            raise ValueError(f"emissions must be (B, T, {self.num_tags}), got {tuple(emissions.shape)}")
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"mask {tuple(mask.shape)} does not match emissions {tuple(emissions.shape[:2])}")
        mask = mask.bool()
        if mask.size(1) > 1 and bool((mask[:, 1:] & ~mask[:, :-1]).any()):
            raise ValueError("CRF mask must be left-aligned: a valid step follows a masked one")
        return mask

    def log_likelihood(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log p(tags | emissions) per sequence: gold-path score minus log Z (MNER-MI eq. 5).

        Args:
            emissions: (B, T, C) float emission scores E.
            tags: (B, T) long gold tags; values at masked steps are ignored.
            mask: (B, T) bool/long, left-aligned valid steps.

        Returns:
            (B,) float32 log-likelihoods (0 for sequences without valid steps).
        """
        mask = self._check(emissions, mask)
        emissions = emissions.float()
        bsz, steps, _ = emissions.shape
        if steps == 0:
            return emissions.new_zeros(bsz)
        trans, start, end = self._scores(emissions.dtype)
        tags = tags.masked_fill(~mask, 0).long()
        maskf = mask.to(emissions.dtype)
        lengths = mask.sum(1)
        has_any = lengths > 0

        # score of the gold path
        emit = emissions.gather(2, tags.unsqueeze(-1)).squeeze(-1)  # (B, T)
        gold = start[tags[:, 0]] + (emit * maskf).sum(1)
        if steps > 1:
            gold = gold + (trans[tags[:, :-1], tags[:, 1:]] * maskf[:, 1:]).sum(1)
        last_tag = tags.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        gold = gold + end[last_tag]

        log_z = self._forward_algorithm(emissions, mask, trans, start, end)
        return torch.where(has_any, gold - log_z, torch.zeros_like(gold))

    @staticmethod
    def _forward_algorithm(emissions, mask, trans, start, end) -> torch.Tensor:
        """log Z, the log partition function (MNER-MI eq. 6), (B,)."""
        alpha = start.unsqueeze(0) + emissions[:, 0]  # (B, C)
        for t in range(1, emissions.size(1)):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + trans.unsqueeze(0), dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t : t + 1], nxt, alpha)
        return torch.logsumexp(alpha + end.unsqueeze(0), dim=1)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Viterbi best tag sequence.

        Args:
            emissions: (B, T, C); mask: (B, T) left-aligned.

        Returns:
            (B, T) long tags, -100 at masked steps.
        """
        mask = self._check(emissions, mask)
        emissions = emissions.float()
        bsz, steps, num = emissions.shape
        out = torch.full((bsz, steps), -100, dtype=torch.long, device=emissions.device)
        if steps == 0:
            return out
        trans, start, end = self._scores(emissions.dtype)
        score = start.unsqueeze(0) + emissions[:, 0]
        identity = torch.arange(num, device=emissions.device).expand(bsz, num)
        history = []
        for t in range(1, steps):
            cand = score.unsqueeze(2) + trans.unsqueeze(0)  # (B, prev, cur)
            best, idx = cand.max(dim=1)
            keep = mask[:, t : t + 1]
            score = torch.where(keep, best + emissions[:, t], score)
            history.append(torch.where(keep, idx, identity))  # padded steps: identity back-pointers
        score = score + end.unsqueeze(0)
        best_last = score.argmax(dim=1)
        path = [best_last]
        for idx in reversed(history):
            best_last = idx.gather(1, best_last.unsqueeze(1)).squeeze(1)
            path.append(best_last)
        path.reverse()
        tags = torch.stack(path, dim=1)
        return torch.where(mask, tags, out)

    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Posterior p(tag_t = c | emissions) by forward-backward.

        Args:
            emissions: (B, T, C); mask: (B, T) left-aligned.

        Returns:
            (B, T, C) float32 probabilities summing to 1 over C at valid steps, 0 at masked steps.
        """
        mask = self._check(emissions, mask)
        emissions = emissions.float()
        bsz, steps, num = emissions.shape
        if steps == 0:
            return emissions.new_zeros(bsz, 0, num)
        trans, start, end = self._scores(emissions.dtype)
        alphas = [start.unsqueeze(0) + emissions[:, 0]]
        for t in range(1, steps):
            nxt = torch.logsumexp(alphas[-1].unsqueeze(2) + trans.unsqueeze(0), dim=1) + emissions[:, t]
            alphas.append(torch.where(mask[:, t : t + 1], nxt, alphas[-1]))
        beta = end.unsqueeze(0).expand(bsz, num)
        betas = [beta]
        for t in range(steps - 2, -1, -1):
            nxt = torch.logsumexp(trans.unsqueeze(0) + (emissions[:, t + 1] + beta).unsqueeze(1), dim=2)
            beta = torch.where(mask[:, t + 1 : t + 2], nxt, beta)  # past the end: beta = end scores
            betas.append(beta)
        betas.reverse()
        alpha = torch.stack(alphas, 1)
        beta = torch.stack(betas, 1)
        log_z = torch.logsumexp(alphas[-1] + end.unsqueeze(0), dim=1)
        probs = torch.exp(alpha + beta - log_z[:, None, None])
        return probs * mask.unsqueeze(-1).to(probs.dtype)

    @torch.no_grad()
    def invalid_transitions(self, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T) bool: steps whose gold tag is a forbidden move (from start, from the previous tag,
        or to the end). All False for an unconstrained CRF."""
        mask = mask.bool()
        tags = tags.masked_fill(~mask, 0).long()
        bad = torch.zeros_like(mask)
        if tags.size(1) == 0:
            return bad
        bad[:, 0] = mask[:, 0] & ~self.allowed_start[tags[:, 0]]
        if tags.size(1) > 1:
            bad[:, 1:] = mask[:, 1:] & ~self.allowed_transitions[tags[:, :-1], tags[:, 1:]]
        lengths = mask.sum(1)
        last = (lengths - 1).clamp(min=0)
        end_bad = (lengths > 0) & ~self.allowed_end[tags.gather(1, last.unsqueeze(1)).squeeze(1)]
        bad[torch.arange(bad.size(0), device=bad.device), last] |= end_bad
        return bad
