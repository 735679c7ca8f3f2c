"""Model card metadata / tables and the four training plots."""

from __future__ import annotations

import numpy as np
from huggingface_hub import ModelCard
from PIL import Image

from mner_hf.training.model_card import build_model_card
from mner_hf.training.plots import entity_confusion, write_all_plots

RESULTS = {
    "validation": {"overall": {"precision": 0.5, "recall": 0.4, "f1": 0.4444}},
    "test": {
        "overall": {"precision": 0.6, "recall": 0.5, "f1": 0.5455},
        "per_type": {"PER": {"precision": 0.7, "recall": 0.6, "f1": 0.6462, "support": 10},
                     "LOC": {"precision": 0.5, "recall": 0.25, "f1": 0.3333, "support": 4}},
        "per_num_images": {"1": {"precision": 0.7, "recall": 0.6, "f1": 0.6462, "support": 3},
                           "9": {"precision": 0.1, "recall": 0.1, "f1": 0.1, "support": 2}},
    },
}


def _card(**kw):
    args = dict(
        results=RESULTS, model_type="tpm_mi", entity_types=["LOC", "PER"], dataset_name="twitter2017",
        text_encoder="bert-base-uncased", vision_encoder="google/vit-base-patch16-224",
        training_config_yaml="training:\n  learning_rate: 3.0e-05\n", max_images=4, num_parameters=1234,
        split_sizes={"train": 3373, "validation": 723, "test": 723}, plots={"Loss curve": "loss_curve.png"},
    )
    args.update(kw)
    return build_model_card(**args)


def test_card_metadata_and_tables(tmp_path):
    card = _card()
    meta = card.data.to_dict()
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "token-classification"
    assert meta["license"] == "apache-2.0"
    assert meta["base_model"] == ["bert-base-uncased", "google/vit-base-patch16-224"]
    assert meta["datasets"] == ["twitter-2017-mner"]
    results = meta["model-index"][0]["results"]
    test = next(r for r in results if r["dataset"]["split"] == "test")
    assert {m["type"]: m["value"] for m in test["metrics"]} == {"precision": 60.0, "recall": 50.0, "f1": 54.55}
    text = card.content
    assert "| PER | 70.00 | 60.00 | 64.62 | 10 |" in text
    assert "| 9 | 10.00 | 10.00 | 10.00 | 2 |" in text
    assert "| test | 60.00 | 50.00 | 54.55 |" in text
    assert "![Loss curve](loss_curve.png)" in text
    assert "learning_rate: 3.0e-05" in text
    assert "1,234" in text
    # saved and re-read: metadata survives the YAML round trip
    card.save(tmp_path / "README.md")
    back = ModelCard.load(tmp_path / "README.md")
    assert back.data.pipeline_tag == "token-classification"
    assert back.data.eval_results[0].metric_value == 50.0


def test_local_encoders_are_not_base_models():
    meta = _card(text_encoder="minilm", vision_encoder="tiny-random").data.to_dict()
    assert "base_model" not in meta


def test_entity_confusion_counts():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-LOC"]]
    labels, counts = entity_confusion(gold, pred)
    assert labels == ["LOC", "ORG", "PER", "none"]
    i = {t: k for k, t in enumerate(labels)}
    assert counts[i["PER"], i["PER"]] == 1
    assert counts[i["LOC"], i["ORG"]] == 1  # same boundaries, wrong type
    assert counts[i["ORG"], i["none"]] == 1  # missed
    assert counts[i["none"], i["LOC"]] == 1  # spurious
    assert counts.sum() == 4


def test_plots_written(tmp_path):
    history = [
        {"loss": 3.0, "loss_crf": 2.5, "step": 1, "epoch": 0.5},
        {"loss": 2.0, "loss_crf": 1.8, "step": 2, "epoch": 1.0},
        {"eval_loss": 2.2, "eval_f1": 0.3, "step": 2, "epoch": 1.0},
        {"eval_loss": 1.2, "eval_f1": 0.6, "step": 4, "epoch": 2.0},
    ]
    paths = write_all_plots(tmp_path, history, RESULTS["test"]["per_type"], [["B-PER", "O"]], [["B-PER", "O"]])
    assert sorted(p.name for p in paths.values()) == [
        "confusion_matrix.png", "dev_f1.png", "loss_curve.png", "per_type_f1.png"
    ]
    for p in paths.values():
        with Image.open(p) as im:
            arr = np.asarray(im.convert("L"))
        assert arr.shape[0] > 100 and arr.std() > 1  # a real drawing, not a blank canvas
