"""Unit tests of the MGIPS-CL fusion modules and contrastive losses (pure torch, hand values)."""

from __future__ import annotations

import math

import pytest
import torch

from mner_hf.models.mgips_losses import ips_contrastive_loss, standard_contrastive_loss
from mner_hf.models.mgips_modules import (
    InterweaveEncoder,
    MultiGranularityExcavator,
    PrePostAdaptiveGate,
)

S = math.sqrt(0.5)
# 3 posts, one image each, 2-d vectors chosen so that every cosine is 0, +-1 or +-sqrt(1/2).
TEXT = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
IMAGES = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]], [[-3.0, 0.0]]])
ONE = torch.ones(3, 1, dtype=torch.long)
# cos(t_i, v_j):   v0      v1     v2
COS = [[1.0, 0.0, -1.0], [0.0, 1.0, 0.0], [S, S, -S]]


def _lse(row: list[float], tau: float) -> float:
    return math.log(sum(math.exp(c / tau) for c in row))


def test_ips_cl_equals_hand_computed_k1() -> None:
    tau = 0.5
    # positives: own image + the most relevant other image
    #   t0: own v0, others v1 (0) v2 (-1) -> v1 ; t1: own v1, others v0 (0) v2 (0) -> tie, topk
    #   picks the first (v0); t2: own v2, others v0 (S), v1 (S) -> tie, v0.
    pos = [[0, 1], [1, 0], [2, 0]]
    expected = 0.0
    for i in range(3):
        lse = _lse(COS[i], tau)
        expected += -sum(COS[i][p] / tau - lse for p in pos[i]) / len(pos[i])
    expected /= 3
    got = ips_contrastive_loss(TEXT, IMAGES, ONE, top_k=1, temperature=tau)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_ips_cl_k0_is_infonce_and_k_larger_than_batch_is_clamped() -> None:
    tau = 1.0
    k0 = ips_contrastive_loss(TEXT, IMAGES, ONE, top_k=0, temperature=tau)
    expected_k0 = sum(_lse(COS[i], tau) - COS[i][i] / tau for i in range(3)) / 3
    assert k0.item() == pytest.approx(expected_k0, rel=1e-5)
    # K=10 > batch: every image is a positive for every text
    big = ips_contrastive_loss(TEXT, IMAGES, ONE, top_k=10, temperature=tau)
    expected_all = sum(_lse(COS[i], tau) - sum(COS[i]) / (3 * tau) for i in range(3)) / 3
    assert big.item() == pytest.approx(expected_all, rel=1e-5)
    assert torch.isfinite(big)


def test_standard_cl_equals_hand_computed() -> None:
    tau = 0.5
    t2i = sum(_lse(COS[i], tau) - COS[i][i] / tau for i in range(3)) / 3
    cols = [[COS[i][j] for i in range(3)] for j in range(3)]
    i2t = sum(_lse(cols[j], tau) - cols[j][j] / tau for j in range(3)) / 3
    got = standard_contrastive_loss(TEXT, IMAGES, ONE, temperature=tau)
    assert got.item() == pytest.approx(0.5 * (t2i + i2t), rel=1e-5)


def test_losses_ignore_padded_images_and_imageless_posts() -> None:
    # add a padded slot with garbage and a 4th post without images: values must not change
    images = torch.cat([IMAGES, torch.full((3, 1, 2), 7.0)], dim=1)
    images = torch.cat([images, torch.randn(1, 2, 2)], dim=0)
    mask = torch.tensor([[1, 0], [1, 0], [1, 0], [0, 0]])
    text = torch.cat([TEXT, torch.randn(1, 2)])
    for k in (0, 1, 5):
        a = ips_contrastive_loss(TEXT, IMAGES, ONE, top_k=k, temperature=0.3)
        b = ips_contrastive_loss(text, images, mask, top_k=k, temperature=0.3)
        assert a.item() == pytest.approx(b.item(), rel=1e-6)
    a = standard_contrastive_loss(TEXT, IMAGES, ONE, temperature=0.3)
    b = standard_contrastive_loss(text, images, mask, temperature=0.3)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_multi_image_post_own_images_are_positives() -> None:
    # post 0 has two images (v0 and a copy of v1); K=0 -> positives are exactly its own images
    images = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 2.0], [0.0, 0.0]], [[-3.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1], [1, 0], [1, 0]])
    tau = 1.0
    # candidates: v00=(1,0) v01=(0,1) v1=(0,1) v2=(-1,0)
    cos = [[1.0, 0.0, 0.0, -1.0], [0.0, 1.0, 1.0, 0.0], [S, S, S, -S]]
    own = [[0, 1], [2], [3]]
    expected = sum(
        _lse(cos[i], tau) - sum(cos[i][p] for p in own[i]) / (len(own[i]) * tau) for i in range(3)
    ) / 3
    got = ips_contrastive_loss(TEXT, images, mask, top_k=0, temperature=tau)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_losses_zero_but_attached_with_fewer_than_two_image_posts() -> None:
    text = torch.randn(2, 4, requires_grad=True)
    images = torch.randn(2, 1, 4, requires_grad=True)
    mask = torch.tensor([[1], [0]])
    for loss in (
        ips_contrastive_loss(text, images, mask),
        standard_contrastive_loss(text, images, mask),
    ):
        assert loss.item() == 0.0
        loss.backward()
    assert text.grad is not None and torch.all(text.grad == 0)


def test_ips_cl_gradients_flow_to_both_sides() -> None:
    text = torch.randn(4, 8, requires_grad=True)
    images = torch.randn(4, 2, 8, requires_grad=True)
    mask = torch.tensor([[1, 1], [1, 0], [1, 1], [1, 0]])
    loss = ips_contrastive_loss(text, images, mask, top_k=3) + standard_contrastive_loss(text, images, mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert text.grad.abs().sum() > 0
    assert images.grad[mask.bool()].abs().sum() > 0
    assert torch.all(images.grad[~mask.bool()] == 0)


# --------------------------------------------------------------------------- MGE / interweave


def test_mge_weights_row_and_column_normalisation() -> None:
    torch.manual_seed(0)
    n, m, d = 5, 4, 8
    q, g = torch.randn(2, n, d), torch.randn(2, m, d)
    qm = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).bool()
    gm = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]).bool()
    row = MultiGranularityExcavator(d, use_row=True, use_col=False)
    w = row.weights(q, g, qm, gm)
    assert torch.allclose(w[0].sum(-1), torch.ones(n))  # eq. 6: rows sum to 1
    assert torch.allclose(w[1, :3].sum(-1), torch.ones(3))
    assert torch.all(w[1, 3:] == 0) and torch.all(w[1, :, 2:] == 0)
    col = MultiGranularityExcavator(d, use_row=False, use_col=True)
    w = col.weights(q, g, qm, gm)
    assert torch.allclose(w[0].sum(-2), torch.ones(m))  # eq. 8: columns sum to 1
    assert torch.allclose(w[1, :, :2].sum(-2), torch.ones(2))
    assert torch.all(w[1, 3:] == 0) and torch.all(w[1, :, 2:] == 0)
    both = MultiGranularityExcavator(d)
    with torch.no_grad():  # eq. 9: summed weights equal the two granularities with same projections
        row.row_query.load_state_dict(both.row_query.state_dict())
        row.row_key.load_state_dict(both.row_key.state_dict())
        col.col_query.load_state_dict(both.col_query.state_dict())
        col.col_key.load_state_dict(both.col_key.state_dict())
    assert torch.allclose(both.weights(q, g, qm, gm), row.weights(q, g, qm, gm) + col.weights(q, g, qm, gm))


def test_mge_ablation_parameter_counts_and_validation() -> None:
    d = 8
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    full = count(MultiGranularityExcavator(d))
    projection = d * d + d
    assert count(MultiGranularityExcavator(d, use_row=False)) == full - 2 * projection
    assert count(MultiGranularityExcavator(d, use_col=False)) == full - 2 * projection
    with pytest.raises(ValueError, match="at least one"):
        MultiGranularityExcavator(d, use_row=False, use_col=False)


def test_mge_guide_fully_masked_gives_no_update_and_padding_invariance() -> None:
    torch.manual_seed(1)
    d = 8
    mge = MultiGranularityExcavator(d, dropout=0.0).eval()
    q, g = torch.randn(1, 3, d), torch.randn(1, 4, d)
    out = mge(q, g, torch.ones(1, 3, dtype=torch.bool), torch.zeros(1, 4, dtype=torch.bool))
    assert torch.allclose(out, mge.layer_norm(q))
    # padding both sequences with garbage leaves the valid outputs unchanged
    ref = mge(q, g, torch.ones(1, 3, dtype=torch.bool), torch.ones(1, 4, dtype=torch.bool))
    qp = torch.cat([q, 100 * torch.randn(1, 2, d)], 1)
    gp = torch.cat([g, 100 * torch.randn(1, 3, d)], 1)
    qm = torch.tensor([[1, 1, 1, 0, 0]]).bool()
    gm = torch.tensor([[1, 1, 1, 1, 0, 0, 0]]).bool()
    assert torch.allclose(mge(qp, gp, qm, gm)[:, :3], ref, atol=1e-5)


def test_interweave_applies_one_more_image_guided_mge_and_shares_weights() -> None:
    d = 8
    enc = InterweaveEncoder(d, num_layers=2, dropout=0.0).eval()
    calls = {"img": 0, "txt": 0}
    enc.image_guided.register_forward_hook(lambda *a: calls.__setitem__("img", calls["img"] + 1))
    enc.text_guided.register_forward_hook(lambda *a: calls.__setitem__("txt", calls["txt"] + 1))
    t, v = torch.randn(2, 5, d), torch.randn(2, 6, d)
    tm, vm = torch.ones(2, 5, dtype=torch.bool), torch.ones(2, 6, dtype=torch.bool)
    out = enc(t, v, tm, vm)
    assert calls == {"img": 3, "txt": 2}
    # parameters do not grow with the number of stacked layers (MGEs are shared)
    n1 = sum(p.numel() for p in InterweaveEncoder(d, num_layers=1).parameters())
    n4 = sum(p.numel() for p in InterweaveEncoder(d, num_layers=4).parameters())
    assert n1 == n4
    # manual unrolling (eq. 10-11) gives the same result
    with torch.no_grad():
        t1 = enc.image_guided(t, v, tm, vm)
        v1 = enc.text_guided(v, t1, vm, tm)
        t2 = enc.image_guided(t1, v1, tm, vm)
        v2 = enc.text_guided(v1, t2, vm, tm)
        t3 = enc.image_guided(t2, v2, tm, vm)
    assert torch.allclose(out, t3, atol=1e-6)
    out.sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_gate_interpolates_pre_and_post() -> None:
    gate = PrePostAdaptiveGate(4)
    pre, post = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    with torch.no_grad():
        gate.gate.weight.zero_()
        gate.gate.bias.fill_(100.0)  # g -> 1: output = pre (eq. 13)
    assert torch.allclose(gate(pre, post), pre, atol=1e-6)
    with torch.no_grad():
        gate.gate.bias.fill_(0.0)  # g = 0.5
    assert torch.allclose(gate(pre, post), 0.5 * (pre + post), atol=1e-6)
    gate(pre, post).sum().backward()
    assert gate.gate.weight.grad.abs().sum() > 0
