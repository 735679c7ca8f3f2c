""""mner_prefix" attention: prefix keys/values in every BERT layer (TPM-MI eq. 3-4)."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import BertConfig, BertModel

from mner_hf.models.prefix_attention import (
    PREFIX_ATTENTION,
    prefix_attention_forward,
    prefix_attention_kwargs,
    use_prefix_attention,
)

LAYERS, HEADS, HEAD_DIM = 2, 4, 8


def _bert(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=60, hidden_size=HEADS * HEAD_DIM, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=64, max_position_embeddings=32,
    )
    return BertModel(cfg, add_pooling_layer=False).eval()


def _inputs(bsz: int = 3, length: int = 9):
    torch.manual_seed(1)
    ids = torch.randint(1, 60, (bsz, length))
    mask = torch.ones(bsz, length, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    ids = ids * mask
    return ids, mask


def _prefix(bsz: int, num: int, requires_grad: bool = False):
    torch.manual_seed(2)
    return [
        (torch.randn(bsz, HEADS, num, HEAD_DIM, requires_grad=requires_grad),
         torch.randn(bsz, HEADS, num, HEAD_DIM, requires_grad=requires_grad))
        for _ in range(LAYERS)
    ]


def test_empty_or_fully_masked_prefix_equals_plain_bert() -> None:
    model = _bert()
    ids, mask = _inputs()
    ref = model(ids, attention_mask=mask).last_hidden_state
    use_prefix_attention(model)
    assert model.config._attn_implementation == PREFIX_ATTENTION
    for base in ("sdpa", "eager"):
        no_prefix = model(ids, attention_mask=mask, **prefix_attention_kwargs(None, None, base)).last_hidden_state
        empty = model(ids, attention_mask=mask, **prefix_attention_kwargs(_prefix(3, 0), torch.ones(3, 0, dtype=torch.bool), base)).last_hidden_state
        masked = model(ids, attention_mask=mask, **prefix_attention_kwargs(_prefix(3, 4), torch.zeros(3, 4, dtype=torch.bool), base)).last_hidden_state
        for out in (no_prefix, empty, masked):
            torch.testing.assert_close(out[mask.bool()], ref[mask.bool()], atol=1e-5, rtol=1e-5)
    # an active prefix does change the output
    active = model(ids, attention_mask=mask, **prefix_attention_kwargs(_prefix(3, 4), None)).last_hidden_state
    assert (active - ref)[mask.bool()].abs().max() > 1e-2


def test_prefix_matches_explicit_concatenation() -> None:
    """The prefix equals keys/values of extra tokens: check one layer against hand-written attention."""
    model = _bert()
    attn = model.encoder.layer[0].attention.self
    torch.manual_seed(3)
    q, k, v = (torch.randn(2, HEADS, 5, HEAD_DIM) for _ in range(3))
    pk, pv = torch.randn(2, HEADS, 3, HEAD_DIM), torch.randn(2, HEADS, 3, HEAD_DIM)
    pmask = torch.tensor([[True, False, True], [True, True, True]])
    out, _ = prefix_attention_forward(attn, q, k, v, None, scaling=HEAD_DIM**-0.5,
                                      prefix_key_values=[(pk, pv)], prefix_mask=pmask)
    keys, values = torch.cat([pk, k], 2), torch.cat([pv, v], 2)
    scores = q @ keys.transpose(-1, -2) * HEAD_DIM**-0.5
    allowed = torch.cat([pmask, torch.ones(2, 5, dtype=torch.bool)], 1)[:, None, None, :]
    ref = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1) @ values
    torch.testing.assert_close(out, ref.transpose(1, 2), atol=1e-5, rtol=1e-5)


def test_masked_prefix_positions_have_no_effect_and_sdpa_equals_eager() -> None:
    model = _bert()
    use_prefix_attention(model)
    ids, mask = _inputs()
    prefix = _prefix(3, 4)
    pmask = torch.tensor([[True, True, False, False], [True, False, False, False], [False, True, True, True]])
    changed = [(k.clone(), v.clone()) for k, v in prefix]
    for k, v in changed:  # scramble only the masked positions
        k[~pmask[:, None, :, None].expand_as(k)] = 100.0
        v[~pmask[:, None, :, None].expand_as(v)] = -100.0
    outs = {}
    for base in ("sdpa", "eager"):
        a = model(ids, attention_mask=mask, **prefix_attention_kwargs(prefix, pmask, base)).last_hidden_state
        b = model(ids, attention_mask=mask, **prefix_attention_kwargs(changed, pmask, base)).last_hidden_state
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        outs[base] = a
    torch.testing.assert_close(outs["sdpa"], outs["eager"], atol=1e-5, rtol=1e-5)


def test_padding_mask_still_applies() -> None:
    """Text padding must stay invisible: the real tokens of a post do not depend on its padding."""
    model = _bert()
    use_prefix_attention(model)
    ids, mask = _inputs()
    prefix = _prefix(3, 2)
    pmask = torch.ones(3, 2, dtype=torch.bool)
    for base in ("sdpa", "eager"):
        a = model(ids, attention_mask=mask, **prefix_attention_kwargs(prefix, pmask, base)).last_hidden_state
        ids2 = ids.clone()
        ids2[~mask.bool()] = 7  # different padding tokens
        b = model(ids2, attention_mask=mask, **prefix_attention_kwargs(prefix, pmask, base)).last_hidden_state
        torch.testing.assert_close(a[mask.bool()], b[mask.bool()], atol=1e-5, rtol=1e-5)
        # and post 2 alone (no padding) gives the same real-token states
        solo = model(ids[2:, :3], attention_mask=mask[2:, :3],
                     **prefix_attention_kwargs([(k[2:], v[2:]) for k, v in prefix], pmask[2:], base)).last_hidden_state
        torch.testing.assert_close(a[2, :3], solo[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("base", ["sdpa", "eager"])
def test_gradient_checkpointing_same_gradients(base: str) -> None:
    ids, mask = _inputs()
    grads = []
    for checkpointing in (False, True):
        model = _bert()
        model.train()  # dropout is the only randomness: disable it to compare
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        use_prefix_attention(model)
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        calls = []
        model.encoder.layer[0].attention.self.register_forward_hook(lambda *a: calls.append(1))
        prefix = _prefix(3, 3, requires_grad=True)
        out = model(ids, attention_mask=mask, **prefix_attention_kwargs(prefix, torch.ones(3, 3, dtype=torch.bool), base))
        out.last_hidden_state.pow(2).sum().backward()
        assert len(calls) == (2 if checkpointing else 1)  # checkpointing recomputed the layer in backward
        grads.append((prefix[0][0].grad.clone(), prefix[1][1].grad.clone(),
                      model.encoder.layer[0].attention.self.query.weight.grad.clone()))
    assert grads[0][0].abs().sum() > 0 and grads[0][1].abs().sum() > 0
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_bad_prefix_shapes_raise_clear_errors() -> None:
    model = _bert()
    use_prefix_attention(model)
    ids, mask = _inputs()
    with pytest.raises(ValueError, match="prefix_mask must be"):
        model(ids, attention_mask=mask, **prefix_attention_kwargs(_prefix(3, 2), torch.ones(3, 5, dtype=torch.bool)))
    with pytest.raises(ValueError, match="layers but the attention module"):
        model(ids, attention_mask=mask, **prefix_attention_kwargs(_prefix(3, 2)[:1], None))
    with pytest.raises(ValueError, match="attention base"):
        prefix_attention_kwargs(None, None, "flash")
    copy.deepcopy(model)  # the registered function keeps the model picklable/deep-copyable
