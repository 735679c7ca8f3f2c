"""Issue 10, data side, across modules: whitespace tokens reach the model as [UNK]; builder
placeholders and corrupt images are masked, never shown as photos; a run reports what the data lost;
every real file reads under every image policy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import BertTokenizerFast, ViTImageProcessorPil

from mner_hf.builders import load_dataset
from mner_hf.collator import MNERDataCollator
from mner_hf.models.processing_mner import MNERProcessor
from mner_hf.readers import IMAGE_POLICIES, ReadReport, read_cmner, read_twitter
from mner_hf.resources import sample_dir

SAMPLE_IMAGES = sorted((sample_dir() / "images").glob("*.jpg"))
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "rt", "obama", "我", "北", "京", "w"]


@pytest.fixture()
def processor(tmp_path) -> MNERProcessor:
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB), encoding="utf-8")
    tok = BertTokenizerFast(str(tmp_path / "vocab.txt"))
    return MNERProcessor(ViTImageProcessorPil(size={"height": 8, "width": 8}), tok, max_length=32)


def test_whitespace_tokens_become_unk_and_keep_their_labels(processor):
    words = ["RT", "\u00a0", "Obama", "\u3000"]
    out = processor(words=words, tags=["O", "O", "B-PER", "O"])
    assert out["replaced_words"] == [2] and out["num_words"] == [4]
    assert out["word_ids"][0].tolist() == [-1, 0, 1, 2, 3, -1]  # every word has its sub-word
    unk = processor.tokenizer.unk_token_id
    assert out["input_ids"][0, 2].item() == unk and out["input_ids"][0, 4].item() == unk
    assert out["labels"][0, 3].item() == processor.label2id["B-PER"]
    with pytest.raises(ValueError, match="word 1: empty"):
        processor(words=["a", ""])


def test_none_image_is_a_masked_slot(processor):
    out = processor(words=["w"], images=[None, str(SAMPLE_IMAGES[0]), None])
    assert out["image_mask"].tolist() == [[0, 1, 0]]
    assert out["pixel_values"].shape[:2] == (1, 3)
    assert torch.count_nonzero(out["pixel_values"][0, 0]) == 0 and torch.count_nonzero(out["pixel_values"][0, 2]) == 0
    assert torch.count_nonzero(out["pixel_values"][0, 1]) > 0
    assert out["image_errors"] == [0]  # counted by the reader, not twice


def _twitter_with_bad_images(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    data = SAMPLE_IMAGES[0].read_bytes()
    (root / "images" / "a.jpg").write_bytes(data)
    (root / "images" / "z.jpg").write_bytes(b"")  # 0 bytes
    (root / "images" / "t.jpg").write_bytes(data[: len(data) // 3])  # truncated
    (root / "train.txt").write_text("".join(f"IMGID:{k}\nw\tO\nobama\tB-PER\n\n" for k in "azt"))
    return root


def test_collator_masks_placeholders_of_corrupt_images(processor, tmp_path):
    root = _twitter_with_bad_images(tmp_path / "tw")
    ds = load_dataset("twitter2017", root, image_policy="placeholder", cache_dir=tmp_path / "c")["train"]
    collator = MNERDataCollator(processor, label_names=ds.features["ner_tags"].feature.names)
    batch = collator([ds[i] for i in range(3)])
    assert batch["image_mask"].tolist() == [[1], [0], [0]]  # the model never sees a fake photo
    assert torch.count_nonzero(batch["pixel_values"][1:]) == 0
    assert collator.report.image_errors == 0 and collator.report.posts == 3


def test_train_with_corrupt_images_other_formats_and_too_many_images(tmp_path):
    """`mner-hf train` with image_policy placeholder: a 0-byte and a truncated image, a .png beside the
    .jpgs and a post with 6 images (max_images 4) -- the run finishes and reports every count."""
    from mner_hf.training.run import run_training
    from mner_hf.training.run_config import RunConfig

    root = tmp_path / "cm"
    img = root / "images"
    img.mkdir(parents=True)
    posts = {"p0": 6, "p1": 1, "p2": 1, "p3": 1, "p4": 0, "p5": 1}
    k = 0
    for wid, n in posts.items():
        for j in range(n):
            shutil.copy(SAMPLE_IMAGES[k % len(SAMPLE_IMAGES)], img / f"{wid}_{j}.jpg")
            k += 1
    (img / "p2_0.jpg").write_bytes(b"")
    (img / "p3_0.jpg").write_bytes(SAMPLE_IMAGES[0].read_bytes()[:2000])
    shutil.copy(SAMPLE_IMAGES[1], img / "p1_1.png")
    chars = "我在北京"
    (root / "train.txt").write_bytes("".join(
        f"WID:{wid}\r\n" + "".join(f"{c}\t{t}\r\n" for c, t in zip(chars, ["O", "O", "B-LOC", "I-LOC"])) + "\r\n"
        for wid in posts).encode())
    raw = {
        "model": {"type": "tpm-mi", "text_encoder": "tiny-random", "vision_encoder": "tiny-random", "max_images": 4},
        "data": {"dataset": "cmner", "data_dir": str(root), "split_ratios": [0.5, 0.25, 0.25], "split_seed": 0},
        "training": {"output_dir": str(tmp_path / "run"), "num_train_epochs": 1, "per_device_train_batch_size": 2,
                     "per_device_eval_batch_size": 2, "use_cpu": True, "save_strategy": "no", "report_to": "none"},
        "output": {"write_plots": False},
    }
    out = run_training(RunConfig.from_dict(raw, source="test"))
    data = json.loads((out.final_dir / "results.json").read_text())["data"]
    read = data["read"]["train"]
    assert read["images_corrupt"] == 2 and read["images_placeholder"] == 2 and read["images_other_format"] == 1
    assert read["posts"] == 6 and read["images_found"] == 8
    assert sum(data["images_dropped_beyond_max_images"].values()) == 2  # p0: 6 images, 4 slots
    card = (out.final_dir / "README.md").read_text()
    assert "2 missing/corrupt images kept as masked placeholders" in card
    assert "1 image files in other formats" in card and "images beyond max_images=4 not used" in card


# ---------------------------------------------------------------- every real file, every image policy


@pytest.mark.parametrize("policy", IMAGE_POLICIES)
def test_every_real_file_reads_under_every_image_policy(shared_data, policy):
    files = [(read_twitter, p) for p in sorted(shared_data.glob("twitter20*/*.txt"))]
    files += [(read_cmner, p) for p in sorted((shared_data / "cmner").glob("*.txt"))]
    assert len(files) >= 6
    for reader, path in files:
        report = ReadReport()
        posts = sum(1 for _ in reader(path, image_policy=policy, report=report))
        assert posts == report.posts > 0 and report.empty_posts == 0
    ex = shared_data / "cmner" / "examples"
    report = ReadReport()
    posts = list(read_cmner(ex / "example_text", ex / "images", image_policy=policy, report=report))
    assert len(posts) == 6 and report.images_found == 25 and report.images_corrupt == 0
