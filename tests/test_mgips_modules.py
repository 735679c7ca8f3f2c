"""MGIPS-CL fusion modules and contrastive losses against hand computations on tiny tensors
(eq. 5-8, 10-11, 12-13, 14, 16, 17)."""

from __future__ import annotations

import math

import pytest
import torch

from mner_hf.models.mgips_losses import ips_contrastive_loss, relevance, standard_contrastive_loss
from mner_hf.models.mgips_modules import (
    ContrastiveEncoder,
    InterweaveEncoder,
    MGEBlock,
    MultiGranularityExcavator,
    PrePostAdaptiveGate,
)


def _gelu(x: float) -> float:
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


def _softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def _set_identity(mge: MultiGranularityExcavator) -> None:
    with torch.no_grad():
        for lin in (mge.guide_linear, mge.query_linear, mge.output):
            lin.weight.copy_(torch.eye(lin.weight.shape[0], lin.weight.shape[1]))
            lin.bias.zero_()


def _reference_mge(query, guide, text_is_query, w_map, b_map, w_back, b_back, m3, m4, use_row=True, use_col=True):
    """Eq. 5-8 with python loops, one head, identity Linear_1/Linear_2/output (D_c = D)."""
    text, visual = (query, guide) if text_is_query else (guide, query)
    L, P, D = len(text), len(visual), len(text[0])
    mapped = [[_gelu(sum(w_map[o][p] * visual[p][d] for p in range(P)) + b_map[o]) for d in range(D)] for o in range(L)]
    g, q = (mapped, text) if text_is_query else (text, mapped)  # f1 / f2 to the common length
    m_im = [[g[t][d] * q[t][d] for d in range(D)] for t in range(L)]  # eq. 5
    m_c = _softmax([sum(m_im[t][d] * m3[d] for d in range(D)) for t in range(L)])  # eq. 6 rows
    m_f = _softmax([sum(m4[t] * m_im[t][d] for t in range(L)) for d in range(D)])  # eq. 6 columns
    summed = [[(m_f[d] if use_col else 0.0) * g[t][d] + (m_c[t] if use_row else 0.0) * g[t][d] for d in range(D)]
              for t in range(L)]  # eq. 7: V_F + V_C
    if text_is_query:
        return summed
    return [[sum(w_back[p][t] * summed[t][d] for t in range(L)) + b_back[p] for d in range(D)] for p in range(P)]  # eq. 8


@pytest.mark.parametrize("text_is_query", [True, False])
@pytest.mark.parametrize("row,col", [(True, True), (True, False), (False, True)])
def test_mge_equals_hand_computation(text_is_query: bool, row: bool, col: bool) -> None:
    torch.manual_seed(0)
    L, P, D = 3, 4, 2
    mge = MultiGranularityExcavator(D, D, D, num_heads=1, max_text_length=5, max_visual_length=6,
                                    query_is_text=text_is_query, use_row=row, use_col=col)
    _set_identity(mge)
    with torch.no_grad():
        mge.to_common.bias.normal_()
        if not text_is_query:
            mge.from_common.weight.normal_()
            mge.from_common.bias.normal_()
        if row:
            mge.row_weight.normal_()
        if col:
            mge.col_weight.normal_()
    text, visual = torch.randn(L, D), torch.randn(P, D)
    query, guide = (text, visual) if text_is_query else (visual, text)
    ones = lambda n: torch.ones(1, n, dtype=torch.bool)  # noqa: E731
    got = mge(query[None], guide[None], ones(query.shape[0]), ones(guide.shape[0]))[0]
    w = mge.to_common.weight[:L, :P].tolist()
    back = (mge.from_common.weight[:P, :L].tolist(), mge.from_common.bias[:P].tolist()) if not text_is_query else (None, None)
    ref = _reference_mge(query.tolist(), guide.tolist(), text_is_query, w, mge.to_common.bias[:L].tolist(), *back,
                         mge.row_weight[0].tolist() if row else [0.0] * D, mge.col_weight[:L].tolist() if col else [0.0] * L,
                         use_row=row, use_col=col)
    torch.testing.assert_close(got, torch.tensor(ref), atol=1e-5, rtol=1e-5)


def test_mge_row_and_column_weights_are_one_per_token_and_one_per_channel() -> None:
    torch.manual_seed(1)
    mge = MultiGranularityExcavator(8, 8, 8, num_heads=2, max_text_length=6, max_visual_length=5, query_is_text=True)
    m_im = torch.randn(2, 2, 6, 4)
    text_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]).bool()
    m_c, m_f = mge.granularity_weights(m_im, text_mask)
    assert m_c.shape == (2, 2, 6, 1) and m_f.shape == (2, 2, 1, 4)
    torch.testing.assert_close(m_c.sum(dim=2), torch.ones(2, 2, 1))  # softmax over tokens (eq. 6, row)
    assert torch.all(m_c[1, :, 3:] == 0)  # padded tokens get no weight
    torch.testing.assert_close(m_f.sum(dim=-1), torch.ones(2, 2, 1))  # softmax over channels (eq. 6, column)
    # padded rows never enter M_F: garbage there changes nothing
    noisy = m_im.clone()
    noisy[1, :, 3:] = 100.0
    torch.testing.assert_close(mge.granularity_weights(noisy, text_mask)[1][1], m_f[1])


@pytest.mark.parametrize("text_is_query", [True, False])
def test_mge_padding_invariance_and_no_visual_no_update(text_is_query: bool) -> None:
    torch.manual_seed(2)
    mge = MultiGranularityExcavator(8, 8, 8, num_heads=2, max_text_length=7, max_visual_length=9,
                                    query_is_text=text_is_query).eval()
    text, visual = torch.randn(1, 3, 8), torch.randn(1, 4, 8)
    t_mask, v_mask = torch.ones(1, 3, dtype=torch.bool), torch.ones(1, 4, dtype=torch.bool)
    args = lambda t, v, tm, vm: (t, v, tm, vm) if text_is_query else (v, t, vm, tm)  # noqa: E731
    ref = mge(*args(text, visual, t_mask, v_mask))
    text_p = torch.cat([text, 50 * torch.randn(1, 2, 8)], 1)
    visual_p = torch.cat([visual, 50 * torch.randn(1, 3, 8)], 1)
    tm_p = torch.tensor([[1, 1, 1, 0, 0]]).bool()
    vm_p = torch.tensor([[1, 1, 1, 1, 0, 0, 0]]).bool()
    padded = mge(*args(text_p, visual_p, tm_p, vm_p))
    n = ref.shape[1]
    torch.testing.assert_close(padded[:, :n], ref, atol=1e-5, rtol=1e-5)
    assert torch.all(padded[:, n:] == 0)
    none = mge(*args(text, visual, t_mask, torch.zeros(1, 4, dtype=torch.bool)))
    assert torch.all(none == 0)


def test_mge_block_is_residual_mge_then_feed_forward() -> None:
    torch.manual_seed(3)
    mge = MultiGranularityExcavator(8, 6, 6, num_heads=2, max_text_length=5, max_visual_length=7, query_is_text=False)
    block = MGEBlock(mge, 8, 6, 16, dropout=0.0).eval()
    x, y = torch.randn(2, 7, 8), torch.randn(2, 5, 6)
    xm, ym = torch.ones(2, 7, dtype=torch.bool), torch.ones(2, 5, dtype=torch.bool)
    u = x + mge(block.norm_query(x), block.norm_guide(y), xm, ym)  # eq. 10 residual
    torch.testing.assert_close(block(x, y, xm, ym), u + block.ffn(block.norm_ffn(u)))


def test_interweave_order_eq_9_to_11() -> None:
    torch.manual_seed(4)
    enc = InterweaveEncoder(8, 6, num_heads=2, max_text_length=5, max_visual_length=7, text_intermediate=16,
                            visual_intermediate=12, num_layers=2, dropout=0.0).eval()
    calls: list[str] = []
    enc.image_guided.register_forward_hook(lambda *a: calls.append("img"))
    enc.text_guided.register_forward_hook(lambda *a: calls.append("txt"))
    t0, x0 = torch.randn(2, 5, 8), torch.randn(2, 7, 6)
    tm, xm = torch.ones(2, 5, dtype=torch.bool), torch.ones(2, 7, dtype=torch.bool)
    xm[1, 4:] = False
    t_out, x_out = enc(t0, x0, tm, xm)
    assert calls == ["img", "txt", "img", "txt", "img"]  # one more image-guided than text-guided
    with torch.no_grad():
        x1 = enc.image_guided(x0, t0, xm, tm)  # eq. 10
        t1 = enc.text_guided(t0, x1, tm, xm)  # eq. 11
        x2 = enc.image_guided(x1, t1, xm, tm)
        t2 = enc.text_guided(t1, x2, tm, xm)
        x3 = enc.image_guided(x2, t2, xm, tm)  # the shared image-guided MGE once more
    torch.testing.assert_close(t_out, t2)
    torch.testing.assert_close(x_out, x3)
    # shared weights: stacking more layers adds no parameters
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    deeper = InterweaveEncoder(8, 6, 2, 5, 7, 16, 12, num_layers=4)
    assert count(deeper) == count(enc)
    # a post without visual tokens keeps its text
    t_none, _ = enc(t0, x0, tm, torch.zeros(2, 7, dtype=torch.bool))
    torch.testing.assert_close(t_none, t0)


def test_gate_eq_12_13() -> None:
    torch.manual_seed(5)
    gate = PrePostAdaptiveGate(4)
    pre, post = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    w1, w2, b = gate.gate.weight[:, :4], gate.gate.weight[:, 4:], gate.gate.bias
    i = torch.sigmoid(post @ w1.T + pre @ w2.T + b)  # eq. 12: W_1 T + W_2 H + b
    torch.testing.assert_close(gate(pre, post), i * pre + (1 - i) * post)  # eq. 13
    gate(pre, post).sum().backward()
    assert gate.gate.weight.grad.abs().sum() > 0


def test_contrastive_encoder_and_relevance_eq_14() -> None:
    torch.manual_seed(6)
    enc = ContrastiveEncoder(3, 2)
    seq = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]).bool()
    got = enc(seq, mask)
    for b, n in ((0, 2), (1, 4)):
        rows = [[_gelu(v) for v in (enc.proj.weight @ seq[b, t] + enc.proj.bias).tolist()] for t in range(n)]
        ref = [sum(r[d] for r in rows) / n for d in range(2)]
        torch.testing.assert_close(got[b], torch.tensor(ref), atol=1e-6, rtol=1e-5)
    text, vis = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 2.0], [3.0, 3.0]])
    s = math.sqrt(0.5)
    torch.testing.assert_close(relevance(text, vis), torch.tensor([[0.0, s], [s, 1.0]]))  # eq. 14: cosines


# 3 posts: cos(t_i, v_j) chosen by construction
S = math.sqrt(0.5)
TEXT = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
VIS = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
COS = [[1.0, 0.0, -1.0], [0.0, 1.0, 0.0], [S, S, -S]]


def _ips_hand(cos: list[list[float]], k: int, tau: float) -> float:
    total = 0.0
    for row in cos:
        top = sorted(row, reverse=True)[:k]
        total += -math.log(sum(math.exp(c / tau) for c in top) / sum(math.exp(c / tau) for c in row))  # eq. 16
    return total / len(cos)


def test_ips_cl_eq_16_own_image_in_and_not_in_top_k() -> None:
    tau = 0.5
    # K=1: t0, t1 pick their own image; t2's most relevant are v0/v1 (cos S), its own v2 is NOT in V_K
    got = ips_contrastive_loss(TEXT, VIS, top_k=1, temperature=tau)
    term = lambda i, pos: -math.log(math.exp(pos / tau) / sum(math.exp(c / tau) for c in COS[i]))  # noqa: E731
    explicit = (term(0, COS[0][0]) + term(1, COS[1][1]) + term(2, S)) / 3  # t2: v0 (cos S), not its own v2 (-S)
    assert got.item() == pytest.approx(explicit, rel=1e-5)
    assert got.item() == pytest.approx(_ips_hand(COS, 1, tau), rel=1e-5)
    # K=2: the sum is inside the log (not an average of per-positive logs)
    got2 = ips_contrastive_loss(TEXT, VIS, top_k=2, temperature=tau)
    assert got2.item() == pytest.approx(_ips_hand(COS, 2, tau), rel=1e-5)
    # K >= N: every image is a positive -> log 1 = 0
    assert ips_contrastive_loss(TEXT, VIS, top_k=3, temperature=tau).item() == pytest.approx(0.0, abs=1e-6)


def test_standard_cl_eq_17_is_text_to_image_only() -> None:
    tau = 0.5
    ref = sum(-math.log(math.exp(COS[i][i] / tau) / sum(math.exp(c / tau) for c in COS[i])) for i in range(3)) / 3
    got = standard_contrastive_loss(TEXT, VIS, temperature=tau)
    assert got.item() == pytest.approx(ref, rel=1e-5)
    cols = [[COS[i][j] for i in range(3)] for j in range(3)]
    image_to_text = sum(-math.log(math.exp(cols[j][j] / tau) / sum(math.exp(c / tau) for c in cols[j])) for j in range(3)) / 3
    assert abs(image_to_text - ref) > 1e-3  # the symmetric version would differ


def test_losses_zero_but_attached_below_two_posts_and_gradients() -> None:
    t = torch.randn(1, 4, requires_grad=True)
    v = torch.randn(1, 4, requires_grad=True)
    for loss in (ips_contrastive_loss(t, v), standard_contrastive_loss(t, v)):
        assert loss.item() == 0.0
        loss.backward()
    t = torch.randn(5, 4, requires_grad=True)
    v = torch.randn(5, 4, requires_grad=True)
    (ips_contrastive_loss(t, v, top_k=2) + standard_contrastive_loss(t, v)).backward()
    assert t.grad.abs().sum() > 0 and v.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="top_k"):
        ips_contrastive_loss(t, v, top_k=0)
    with pytest.raises(ValueError, match="one shape"):
        standard_contrastive_loss(t, v[:3])
