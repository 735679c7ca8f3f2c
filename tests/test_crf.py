"""CRF against brute-force enumeration of every tag sequence."""

from __future__ import annotations

import itertools

import pytest
import torch

from mner_hf.models.crf import ConditionalRandomField, bio_transition_constraints

LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}


def _path_score(crf: ConditionalRandomField, emissions: torch.Tensor, path) -> torch.Tensor:
    trans, start, end = crf._scores(torch.float32)
    s = start[path[0]] + emissions[0, path[0]]
    for a, b, t in zip(path[:-1], path[1:], range(1, len(path))):
        s = s + trans[a, b] + emissions[t, b]
    return s + end[path[-1]]


def _brute(crf, emissions, length):
    """(log Z, best path, marginals (length, C)) of one sequence by enumeration."""
    num = emissions.size(-1)
    paths = list(itertools.product(range(num), repeat=length))
    scores = torch.stack([_path_score(crf, emissions, p) for p in paths])
    log_z = torch.logsumexp(scores, 0)
    best = paths[int(scores.argmax())]
    probs = torch.exp(scores - log_z)
    marg = torch.zeros(length, num)
    for p, pr in zip(paths, probs):
        for t, tag in enumerate(p):
            marg[t, tag] += pr
    return log_z, best, marg


@pytest.fixture(params=[False, True], ids=["free", "constrained"])
def crf(request) -> ConditionalRandomField:
    torch.manual_seed(0)
    allowed = bio_transition_constraints(LABELS) if request.param else None
    crf = ConditionalRandomField(len(LABELS), allowed)
    with torch.no_grad():  # larger scores than the default init so the test is not trivial
        crf.transitions.normal_(0, 1.0)
        crf.start_transitions.normal_(0, 1.0)
        crf.end_transitions.normal_(0, 1.0)
    return crf


def test_brute_force_agreement(crf: ConditionalRandomField) -> None:
    torch.manual_seed(1)
    lengths = [4, 1, 3, 0]
    bsz, steps, num = len(lengths), max(lengths), len(LABELS)
    emissions = torch.randn(bsz, steps, num) * 2
    mask = torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]
    # gold paths valid under the constraints (O / B-X only) so the comparison stays finite
    tags = torch.tensor([0, 1, 3])[torch.randint(0, 3, (bsz, steps))]

    ll = crf.log_likelihood(emissions, tags, mask)
    decoded = crf.decode(emissions, mask)
    marg = crf.marginals(emissions, mask)
    for b, length in enumerate(lengths):
        if length == 0:
            assert ll[b] == 0
            assert (decoded[b] == -100).all()
            assert (marg[b] == 0).all()
            continue
        log_z, best, bmarg = _brute(crf, emissions[b], length)
        gold = _path_score(crf, emissions[b], tags[b, :length].tolist())
        torch.testing.assert_close(ll[b], gold - log_z, atol=1e-4, rtol=1e-5)
        assert decoded[b, :length].tolist() == list(best)
        assert (decoded[b, length:] == -100).all()
        torch.testing.assert_close(marg[b, :length], bmarg, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(marg[b, :length].sum(-1), torch.ones(length))
        assert (marg[b, length:] == 0).all()


def test_gradients_and_loss_decrease() -> None:
    torch.manual_seed(0)
    crf = ConditionalRandomField(len(LABELS), bio_transition_constraints(LABELS))
    emissions = torch.randn(3, 5, len(LABELS), requires_grad=True)
    tags = torch.tensor([[1, 2, 0, 3, 4], [0, 0, 1, 0, 0], [3, 4, 4, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]]).bool()
    opt = torch.optim.SGD([emissions, *crf.parameters()], lr=0.5)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = -crf.log_likelihood(emissions, tags, mask).mean()
        loss.backward()
        assert torch.isfinite(crf.transitions.grad).all() and crf.transitions.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    assert torch.equal(crf.decode(emissions, mask)[mask], tags[mask])


def test_constrained_decoding_never_emits_invalid_bio() -> None:
    crf = ConditionalRandomField(len(LABELS), bio_transition_constraints(LABELS))
    emissions = torch.zeros(2, 4, len(LABELS))
    emissions[:, :, 2] = 10.0  # I-PER everywhere is strongly preferred
    emissions[1, 1, 0] = 30.0  # ... and an O in the middle of the second post
    emissions[0, 2, 4] = 30.0  # I-LOC after I-PER
    mask = torch.ones(2, 4, dtype=torch.bool)
    tags = crf.decode(emissions, mask)
    for row in tags.tolist():
        prev = "O"
        for tag in row:
            name = LABELS[tag]
            if name.startswith("I-"):
                assert prev in (f"B-{name[2:]}", name), (row, prev, name)
            prev = name
    free = ConditionalRandomField(len(LABELS))
    with torch.no_grad():
        free.transitions.zero_(), free.start_transitions.zero_(), free.end_transitions.zero_()
    assert free.decode(emissions, mask)[0, 0].item() == 2  # without constraints I-PER starts the post


def test_constraint_table_and_invalid_gold_detection() -> None:
    allowed, start, end = bio_transition_constraints(LABELS)
    assert not allowed[0, 2] and not allowed[1, 4] and not allowed[2, 4]
    assert allowed[1, 2] and allowed[2, 2] and allowed[0, 1] and allowed[2, 0]
    assert start.tolist() == [True, True, False, True, False] and end.all()
    crf = ConditionalRandomField(len(LABELS), (allowed, start, end))
    tags = torch.tensor([[0, 2, 0], [2, 0, 0], [1, 2, 2]])
    bad = crf.invalid_transitions(tags, torch.ones(3, 3, dtype=torch.bool))
    assert bad.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    with pytest.raises(ValueError, match="cannot derive CRF transition constraints"):
        bio_transition_constraints({0: "O", 1: "PERSON"})


def test_bioes_constraints() -> None:
    labels = {0: "O", 1: "B-PER", 2: "I-PER", 3: "E-PER", 4: "S-PER"}
    allowed, start, end = bio_transition_constraints(labels)
    assert allowed[1, 3] and allowed[1, 2] and allowed[2, 3] and not allowed[1, 0] and not allowed[0, 3]
    assert start.tolist() == [True, True, False, False, True]
    assert end.tolist() == [True, False, False, True, True]


def test_mask_must_be_left_aligned() -> None:
    crf = ConditionalRandomField(3)
    with pytest.raises(ValueError, match="left-aligned"):
        crf.decode(torch.zeros(1, 3, 3), torch.tensor([[0, 1, 1]]))
