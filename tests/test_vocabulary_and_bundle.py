"""Vocabulary extension of a pretrained text encoder, its optimizer group, the bundled CMNER
text (``cmner_sample``) and the tagged-post lines of the main job's report."""

from __future__ import annotations

import gzip

import pytest
import torch

from mner_hf.training.encoders import VOCAB_INFO, extend_vocabulary, tiny_text_encoder, unknown_characters

CORPUS = [["旅", "游", "在", "北", "京"], ["北", "京", "a", "b"], ["旅", "行"]]


@pytest.fixture()
def tiny_text(tmp_path):
    """A tiny random BERT whose WordPiece vocabulary knows English words only (no Chinese). Its
    vocabulary must be larger than hidden size + 1: transformers' mean_resizing samples new rows only
    when the pretrained rows' covariance is positive definite (else every new row is their mean)."""
    words = ["a", "b", "alpha", "beta", "gamma"] + [f"{c}{d}" for c in "xyz" for d in "klmnopqrstuv"]
    return tiny_text_encoder(tmp_path / "text", [words] * 5)


def test_unknown_characters_by_frequency(tiny_text):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_text)
    assert unknown_characters(tok, CORPUS) == ["旅", "北", "京", "游", "在", "行"]  # a, b are known
    assert unknown_characters(tok, CORPUS, min_count=2) == ["旅", "北", "京"]


def test_extend_vocabulary_adds_rows_from_the_pretrained_distribution(tiny_text, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    folder, info = extend_vocabulary(tiny_text, CORPUS, tmp_path / "ext")
    old_tok, new_tok = AutoTokenizer.from_pretrained(tiny_text), AutoTokenizer.from_pretrained(folder)
    assert info["added"] == 6 and info["vocab_size"] == [len(old_tok), len(old_tok) + 6]
    assert info["unk_rate_before"] == pytest.approx(9 / 11) and info["unk_rate_after"] == 0.0
    ids = new_tok(["旅", "游", "a"], is_split_into_words=True, add_special_tokens=False)["input_ids"]
    assert ids[:2] == [len(old_tok), len(old_tok) + 3] and ids[2] == old_tok.convert_tokens_to_ids("a")
    old = AutoModel.from_pretrained(tiny_text).get_input_embeddings().weight.detach()
    assert len(old) > old.shape[1] + 1  # the fixture's premise (see tiny_text)
    new = AutoModel.from_pretrained(folder).get_input_embeddings().weight.detach()
    assert new.shape == (len(old_tok) + 6, old.shape[1])
    torch.testing.assert_close(new[: len(old)], old)  # pretrained rows untouched
    rows = new[len(old):]
    assert not torch.allclose(rows[0], rows[1])  # sampled, not one shared vector
    # drawn around the pretrained mean (transformers' mean_resizing: a normal with the pretrained
    # rows' mean and a shrunken covariance): closer to it than the pretrained rows are, not zeros
    mean = old[5:].mean(0)  # (the tiny BERT's [PAD] row is zero)
    assert (rows - mean).norm(dim=1).max() < 0.5 * (old[5:] - mean).norm(dim=1).mean()
    assert rows.norm(dim=1).min() > 0.5 * mean.norm()
    # same input -> the saved folder is reused
    again, info2 = extend_vocabulary(tiny_text, CORPUS, tmp_path / "ext")
    assert again == folder and info2 == info and (tmp_path / "ext" / VOCAB_INFO).is_file()


def test_embeddings_get_their_own_optimizer_group(tiny_text, tmp_path):
    from mner_hf.models.labels import DEFAULT_LABELS
    from mner_hf.models.modeling_bert_crf import BertCRFForTokenClassification
    from mner_hf.training.optim import build_optimizer_groups
    from mner_hf.training.run_config import OptimSection

    folder, _ = extend_vocabulary(tiny_text, CORPUS, tmp_path / "ext")
    model = BertCRFForTokenClassification.from_encoders(text=folder, labels=list(DEFAULT_LABELS))
    plain = build_optimizer_groups(model, OptimSection(), learning_rate=1e-4, weight_decay=0.01)
    assert "embeddings" not in {g["group_name"] for g in plain}  # default: the matrix stays in "text"
    groups = build_optimizer_groups(model, OptimSection(embeddings_lr=3e-3), learning_rate=1e-4, weight_decay=0.01)
    by_name = {g["group_name"]: g for g in groups}
    assert by_name["embeddings"]["lr"] == 3e-3 and by_name["text"]["lr"] == 1e-4
    [param] = by_name["embeddings"]["params"]
    name = next(n for n, p in model.named_parameters() if p is param)
    assert name.endswith("word_embeddings.weight")
    assert param.shape[0] == model.config.text_config.vocab_size
    all_params = [p for g in groups for p in g["params"]]
    assert len(all_params) == len({id(p) for p in all_params}) == sum(1 for p in model.parameters() if p.requires_grad)
    # one AdamW step moves the embedding rows by about the embeddings' lr, the rest by about the text lr
    opt = torch.optim.AdamW(groups)
    before = {id(p): p.detach().clone() for p in all_params}
    batch = {"input_ids": torch.tensor([[2, 5, 6, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long),
             "labels": torch.tensor([[-100, 1, 2, -100]])}
    model(**batch).loss.backward()
    opt.step()
    step = (param - before[id(param)]).abs().max().item()
    assert step == pytest.approx(3e-3, rel=0.05)
    other = by_name["text"]["params"][0]
    assert (other - before[id(other)]).abs().max().item() == pytest.approx(1e-4, rel=0.05)


def test_bundled_cmner_sample_splits():
    from mner_hf.builders import load_dataset

    dd = load_dataset("cmner_sample")
    assert {k: len(v) for k, v in dd.items()} == {"train": 2994, "validation": 500, "test": 506}
    photo = load_dataset("sample")["train"]
    assert dd["test"]["id"][:6] == photo["id"] and dd["test"]["num_images"][:6] == photo["num_images"]
    assert sorted(photo["num_images"]) == [1, 1, 1, 4, 9, 9]
    assert set(dd["test"]["num_images"][6:]) == {0} and set(dd["train"]["num_images"]) == {0}
    assert not set(photo["id"]) & (set(dd["train"]["id"]) | set(dd["validation"]["id"]))
    assert dd["test"][0]["tokens"] == photo[0]["tokens"] and dd["test"][0]["ner_tags"] == photo[0]["ner_tags"]
    # 16,373 entities in CMNER train; the 6 photo posts hold the rest
    assert dd.read_reports["train"].entities + sum(
        len([t for t in tags if t % 2 == 1]) for tags in photo["ner_tags"]) >= 16300
    assert str(dd.read_reports["train"].sources[0]).endswith("cmner_train.txt.gz")


def test_bundle_is_reproducible_from_cmner(shared_data, tmp_path):
    from mner_hf.resources import sample_dir
    from mner_hf.sample.build_bundle import build

    counts = build(shared_data / "cmner", tmp_path)
    assert counts == {"cmner_train.txt.gz": 2994, "cmner_dev.txt.gz": 500, "cmner_test.txt.gz": 506}
    for name in counts:
        assert (tmp_path / name).read_bytes() == (sample_dir() / name).read_bytes(), name
    text = gzip.decompress((tmp_path / "cmner_dev.txt.gz").read_bytes()).decode()
    assert "\r" not in text and text.startswith("WID:")


def test_format_tagged_post_marks_predictions_and_agreement():
    from mner_hf.training.predictions import format_tagged_post, prediction_records

    [rec] = prediction_records(["p1"], [list("苹果在北京")], [["B-ORG", "I-ORG", "O", "B-LOC", "I-LOC"]],
                               [["B-ORG", "I-ORG", "O", "B-PER", "I-PER"]], [4])
    lines = format_tagged_post(rec, joiner="")
    assert lines == ["p1 (4 images): [苹果]ORG在[北京]PER", "    gold: +苹果/ORG, -北京/LOC",
                     "    pred: +苹果/ORG, -北京/PER"]
