"""Word location helpers and the text-only BERT-CRF baseline."""

from __future__ import annotations

import pytest
import torch

from mner_hf.models import BertCRFConfig, BertCRFForTokenClassification
from mner_hf.models.word_level import gather_word_labels, gather_words, locate_words

LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
TEXT = dict(model_type="bert", vocab_size=80, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=64)


def _batch():
    """Two posts: [CLS] w0 w1a w1b w2 [SEP] and [CLS] w0 w1 [SEP] pad pad."""
    input_ids = torch.tensor([[2, 10, 11, 12, 13, 3], [2, 20, 21, 3, 0, 0]])
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    word_ids = torch.tensor([[-1, 0, 1, 1, 2, -1], [-1, 0, 1, -1, -1, -1]])
    labels = torch.tensor([[-100, 1, 2, -100, 0, -100], [-100, 3, 4, -100, -100, -100]])
    return input_ids, attention_mask, word_ids, labels


def test_locate_words_three_ways_agree() -> None:
    _, mask, word_ids, labels = _batch()
    by_ids = locate_words(mask, word_ids=word_ids)
    by_labels = locate_words(mask, labels=labels)
    assert by_ids.positions.tolist() == [[1, 2, 4], [1, 2, 0]]
    assert by_ids.mask.tolist() == [[True, True, True], [True, True, False]]
    assert torch.equal(by_ids.positions, by_labels.positions) and torch.equal(by_ids.mask, by_labels.mask)
    every = locate_words(mask)  # every attended non-special token
    assert every.positions.tolist() == [[1, 2, 3, 4], [1, 2, 0, 0]]
    hidden = torch.arange(2 * 6 * 2, dtype=torch.float).view(2, 6, 2)
    words = gather_words(hidden, by_ids)
    assert torch.equal(words[0, 2], hidden[0, 4]) and (words[1, 2] == 0).all()
    assert gather_word_labels(labels, by_ids).tolist() == [[1, 2, 0], [3, 4, -100]]


def test_missing_word_label_is_an_error_not_a_drop() -> None:
    _, mask, word_ids, labels = _batch()
    labels[0, 4] = -100  # word 2 of post 0 lost its tag
    with pytest.raises(ValueError, match="post 0 of the batch: word 2"):
        gather_word_labels(labels, locate_words(mask, word_ids=word_ids))


def _model(**kw) -> BertCRFForTokenClassification:
    torch.manual_seed(0)
    return BertCRFForTokenClassification(BertCRFConfig(text_config=TEXT, id2label=LABELS, **kw))


def test_forward_outputs_and_loss_is_crf_nll() -> None:
    model = _model().eval()
    ids, mask, word_ids, labels = _batch()
    out = model(ids, mask, word_ids=word_ids, labels=labels, return_marginals=True)
    assert out.logits.shape == (2, 3, 5) and out.word_mask.tolist() == [[True] * 3, [True, True, False]]
    assert out.predictions[1, 2] == -100 and (out.predictions[out.word_mask] >= 0).all()
    tags = torch.tensor([[1, 2, 0], [3, 4, 0]])
    expected = -model.crf.log_likelihood(out.logits, tags, out.word_mask).mean()
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.loss_components["crf"], expected)
    torch.testing.assert_close(out.marginals.sum(-1)[out.word_mask], torch.ones(5))
    # the decoded tag of each word is consistent with Viterbi on the emissions
    assert torch.equal(out.predictions, model.crf.decode(out.logits, out.word_mask))
    # images are accepted and ignored by the text-only model
    out2 = model(ids, mask, word_ids=word_ids, pixel_values=torch.randn(2, 1, 3, 8, 8), image_mask=torch.ones(2, 1))
    torch.testing.assert_close(out2.logits, out.logits)


def test_overfits_and_gradients_reach_every_group() -> None:
    model = _model(classifier_dropout=0.0).train()
    ids, mask, word_ids, labels = _batch()
    groups = model.param_groups()
    assert set(groups) == {"text", "crf"}
    all_params = [p for ps in groups.values() for p in ps]
    assert len(all_params) == len({id(p) for p in all_params}) == sum(1 for p in model.parameters() if p.requires_grad)
    opt = torch.optim.AdamW([{"params": groups["text"], "lr": 1e-3}, {"params": groups["crf"], "lr": 5e-2}])
    losses = []
    for step in range(25):
        opt.zero_grad()
        loss = model(ids, mask, word_ids=word_ids, labels=labels).loss
        loss.backward()
        if step == 0:
            assert model.crf.transitions.grad.abs().sum() > 0
            assert model.text_encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    model.eval()
    pred = model(ids, mask, word_ids=word_ids).predictions
    assert pred.tolist() == [[1, 2, 0], [3, 4, -100]]


def test_freeze_text_and_constraints_in_training() -> None:
    model = _model(freeze_text=True)
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    assert set(model.param_groups()) == {"crf"}
    ids, mask, word_ids, labels = _batch()
    labels[0, 1] = 2  # I-PER opens the post: invalid under constrain_transitions
    with pytest.raises(ValueError, match="constrain_transitions=True forbids"):
        model(ids, mask, word_ids=word_ids, labels=labels)
    free = _model(constrain_transitions=False)
    assert torch.isfinite(free(ids, mask, word_ids=word_ids, labels=labels).loss)


def test_config_validation_messages() -> None:
    with pytest.raises(ValueError, match="must contain the outside tag 'O'"):
        BertCRFConfig(text_config=TEXT, id2label={0: "B-PER", 1: "I-PER"})
    with pytest.raises(ValueError, match="not a multiple of num_attention_heads"):
        BertCRFConfig(text_config={**TEXT, "hidden_size": 30}, id2label=LABELS)
    with pytest.raises(ValueError, match="label map"):
        BertCRFForTokenClassification(BertCRFConfig(text_config=TEXT))  # placeholder LABEL_0/LABEL_1
    cfg = BertCRFConfig(text_config=TEXT, id2label=LABELS)
    assert cfg.label2id == {v: k for k, v in LABELS.items()}
    again = BertCRFConfig.from_dict(cfg.to_dict())
    assert again.id2label == LABELS and again.text_config.hidden_size == 32
