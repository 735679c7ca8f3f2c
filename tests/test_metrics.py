"""Metrics: hand-computed seqeval values in default and strict mode, image buckets, Trainer helper."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import EvalPrediction

from mner_hf.metrics import compute_metrics, flatten_metrics, image_bucket, make_compute_metrics, word_level_tags
from mner_hf.models.labels import DEFAULT_LABELS

GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["I-MISC", "O"]]
PRED = [["B-PER", "I-PER", "O", "B-ORG"], ["I-MISC", "O"]]


def test_default_mode_counts_orphan_i():
    r = compute_metrics(GOLD, PRED)
    # gold {PER, LOC, MISC(orphan)}, pred {PER, ORG, MISC(orphan)}: 2 true positives of 3 / 3
    assert r["mode"] == "default" and r["num_posts"] == 2 and r["num_gold_entities"] == 3
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 / 3)
    assert r["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert r["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert r["per_type"]["ORG"]["support"] == 0 and r["per_type"]["ORG"]["precision"] == 0.0
    assert r["per_type"]["MISC"]["f1"] == 1.0


def test_strict_mode_ignores_orphan_i():
    r = compute_metrics(GOLD, PRED, mode="strict")
    # the orphan I-MISC is no entity: gold {PER, LOC}, pred {PER, ORG}: 1 of 2 / 2
    assert r["mode"] == "strict" and r["num_gold_entities"] == 2
    assert (r["precision"], r["recall"], r["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert "MISC" not in r["per_type"]
    # a predicted orphan against a gold B- matches in default mode only
    assert compute_metrics([["B-LOC"]], [["I-LOC"]])["f1"] == 1.0
    assert compute_metrics([["B-LOC"]], [["I-LOC"]], mode="strict")["f1"] == 0.0


def test_partial_match_and_type_normalisation():
    r = compute_metrics([["B-PER", "I-PER", "B-OTHER"]], [["B-PER", "O", "B-MISC"]])
    # PER boundary wrong (no credit), OTHER == MISC: P = 1/2, R = 1/2
    assert (r["precision"], r["recall"]) == pytest.approx((0.5, 0.5))
    assert r["per_type"]["MISC"]["f1"] == 1.0 and "OTHER" not in r["per_type"]


def test_bioes_strict():
    gold = [["S-PER", "B-LOC", "E-LOC"]]
    pred = [["S-PER", "B-LOC", "I-LOC"]]  # unterminated LOC is invalid in strict IOBES
    assert compute_metrics(gold, pred, mode="strict", scheme="BIOES")["recall"] == pytest.approx(0.5)


def test_breakdown_by_number_of_images():
    r = compute_metrics(GOLD, PRED, num_images=[1, 5])
    assert set(r["by_num_images"]) == {"1", "4+"}
    one = r["by_num_images"]["1"]
    assert (one["precision"], one["recall"], one["f1"], one["num_posts"]) == pytest.approx((0.5, 0.5, 0.5, 1))
    assert r["by_num_images"]["4+"]["f1"] == 1.0
    strict = compute_metrics(GOLD, PRED, num_images=[1, 5], mode="strict")
    assert strict["by_num_images"]["4+"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                             "num_gold_entities": 0, "num_posts": 1}
    assert [image_bucket(n) for n in (0, 1, 2, 3, 4, 9)] == ["0", "1", "2", "3", "4+", "4+"]
    flat = flatten_metrics(r)
    assert flat["mode"] == "default" and flat["images_1_f1"] == 0.5 and flat["images_4+_posts"] == 1.0
    assert flat["PER_f1"] == 1.0 and flat["f1"] == pytest.approx(2 / 3)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match=r"post 1: 2 gold tags but 1 predicted"):
        compute_metrics(GOLD, [PRED[0], ["O"]])
    with pytest.raises(ValueError, match=r"pred_tags\[0\]\[3\]: invalid tag 'BPER'"):
        compute_metrics(GOLD, [["B-PER", "I-PER", "O", "BPER"], ["O", "O"]])
    with pytest.raises(ValueError, match="num_images has 1 entries for 2 posts"):
        compute_metrics(GOLD, PRED, num_images=[1])
    with pytest.raises(ValueError, match="mode"):
        compute_metrics(GOLD, PRED, mode="lenient")  # type: ignore[arg-type]


def _trainer_arrays():
    lab = {t: i for i, t in enumerate(DEFAULT_LABELS)}
    # sub-word labels (N, L): first sub-word carries the tag; the second row is shorter (padded -100)
    label_ids = np.array([
        [-100, lab["B-PER"], -100, lab["I-PER"], lab["O"], lab["B-LOC"], -100],
        [-100, lab["I-MISC"], lab["O"], -100, -100, -100, -100],
    ])
    preds = np.array([
        [lab["B-PER"], lab["I-PER"], lab["O"], lab["B-ORG"]],
        [lab["I-MISC"], lab["O"], -100, -100],
    ])
    logits = np.random.default_rng(0).normal(size=(2, 4, len(DEFAULT_LABELS))).astype(np.float32)
    word_mask = preds != -100
    return label_ids, preds, logits, word_mask


def test_trainer_compute_metrics_matches_direct_computation():
    label_ids, preds, logits, word_mask = _trainer_arrays()
    id2label = dict(enumerate(DEFAULT_LABELS))
    true_tags, pred_tags = word_level_tags((logits, word_mask, preds), label_ids, id2label)
    assert true_tags == GOLD and pred_tags == PRED
    fn = make_compute_metrics(id2label, num_images=[1, 5])
    out = fn(EvalPrediction(predictions=(logits, word_mask, preds), label_ids=label_ids))
    assert out == flatten_metrics(compute_metrics(GOLD, PRED, [1, 5]))
    strict = make_compute_metrics(id2label, mode="strict")(EvalPrediction(predictions=preds, label_ids=label_ids))
    assert strict["mode"] == "strict" and strict["f1"] == 0.5
    # logits alone: argmax over the first n_words positions
    from_logits = word_level_tags(logits, label_ids, id2label)[1]
    assert from_logits[0] == [DEFAULT_LABELS[i] for i in logits[0].argmax(-1)[:4]]


def test_trainer_helper_errors():
    label_ids, preds, logits, _ = _trainer_arrays()
    id2label = dict(enumerate(DEFAULT_LABELS))
    bad = preds.copy()
    bad[1, 1] = -100
    with pytest.raises(ValueError, match="post 1: 2 labelled words but 1 predicted"):
        word_level_tags(bad, label_ids, id2label)
    with pytest.raises(ValueError, match="cannot tell which model output"):
        word_level_tags((preds, preds.copy()), label_ids, id2label)
    with pytest.raises(ValueError, match="num_images has 3 entries for 2"):
        make_compute_metrics(id2label, num_images=[1, 2, 3])(EvalPrediction(predictions=preds, label_ids=label_ids))
