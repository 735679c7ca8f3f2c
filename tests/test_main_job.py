"""The README's main job (examples/configs/sample_tpm_mi.yaml), shortened: CLI -> folder -> reload."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "examples" / "configs" / "sample_tpm_mi.yaml"


@pytest.mark.slow
def test_main_job_end_to_end(tmp_path):
    out_dir = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "examples" / "train.py"), "--config", str(CONFIG),
           "--set", f"training.output_dir={out_dir}", "--set", "training.num_train_epochs=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    final = out_dir / "final"
    assert f"final checkpoint: {final}" in proc.stdout
    assert "test overall" in proc.stdout
    first, last = map(float, re.search(r"training loss: (\S+) \(first step\) -> (\S+) \(last step\)", proc.stdout).groups())
    assert math.isfinite(first) and math.isfinite(last) and first > 0
    assert "only" in proc.stdout and "not model quality" in proc.stdout  # 6-post sample: honest note
    for name in ("model.safetensors", "config.json", "README.md", "results.json", "predictions_test.jsonl",
                 "loss_curve.png", "dev_f1.png", "per_type_f1.png", "confusion_matrix.png", "run_config.yaml"):
        assert (final / name).is_file(), name
        assert str(final / name) in proc.stdout  # printed where it was written
    # frozen vision: image features were cached on disk
    assert list((out_dir / "feature_cache").glob("image_features_*.arrow"))

    card = (final / "README.md").read_text()
    assert "pipeline_tag: token-classification" in card and "model-index" in card
    # text-only widget examples; the sample is CMNER (character-split Chinese), so Chinese text
    from huggingface_hub import ModelCard

    widget = ModelCard.load(final / "README.md").data.to_dict()["widget"]
    assert widget and all(set(w) == {"text", "example_title"} for w in widget)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in widget[0]["text"])

    # the folder loads without mner_hf's classes being passed explicitly, and reproduces the
    # predictions written by the run
    from transformers import AutoModelForTokenClassification, AutoProcessor

    model = AutoModelForTokenClassification.from_pretrained(str(final), trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(str(final), trust_remote_code=True)
    from mner_hf.builders import load_dataset

    records = [json.loads(l) for l in (final / "predictions_test.jsonl").read_text().splitlines()]
    sample = {r["id"]: r for r in load_dataset("sample")["train"]}
    for rec in records:
        row = sample[rec["id"]]
        batch = processor(words=row["tokens"], images=row["images"], return_tensors="pt")
        processor.pop_metadata(batch)
        with torch.no_grad():
            pred = model(**batch).predictions[0]
        tags = [model.config.id2label[int(t)] for t in pred if t != -100]
        assert tags == rec["pred_tags"][: len(tags)]
        assert rec["num_images"] == row["num_images"]
