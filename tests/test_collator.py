"""MNERDataCollator: raw and pre-encoded rows, ClassLabel remapping, dynamic padding, Trainer."""

from __future__ import annotations

import io

import datasets
import pytest
import torch
from PIL import Image
from torch import nn
from transformers import BertTokenizer, Trainer, TrainingArguments, ViTImageProcessorPil

from mner_hf.collator import MNERDataCollator
from mner_hf.models.processing_mner import MNERProcessor

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "kaw", "##hi", "leonard", "plays", "in",
         "toronto", "the", "raptors", "win", "a", "b", "c", "."]
# the dataset's ClassLabel order differs from the processor's label2id on purpose
DATASET_LABELS = ["O", "B-ORG", "I-ORG", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


@pytest.fixture()
def processor(tmp_path) -> MNERProcessor:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB), encoding="utf-8")
    return MNERProcessor(ViTImageProcessorPil(size={"height": 8, "width": 8}), BertTokenizer(str(vocab)),
                         max_images=3, max_length=16)


def _png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (10, 10), colour).save(buf, format="PNG")
    return buf.getvalue()


def _dataset(decode: bool = True) -> datasets.Dataset:
    rows = {
        "id": ["p0", "p1", "p2", "p3"],
        "tokens": [["Kawhi", "Leonard", "plays"], ["the", "Raptors", "win"], ["a"], ["Toronto", "plays", "b", "c"]],
        "ner_tags": [[3, 4, 0], [0, 1, 0], [0], [5, 0, 0, 7]],
        "images": [
            [{"bytes": _png((255, 0, 0)), "path": None}],
            [{"bytes": _png((0, 255, 0)), "path": None}, {"bytes": _png((0, 0, 255)), "path": None}],
            [],
            [{"bytes": _png((255, 255, 0)), "path": None}] * 5,
        ],
    }
    features = datasets.Features({
        "id": datasets.Value("string"),
        "tokens": datasets.List(datasets.Value("string")),
        "ner_tags": datasets.List(datasets.ClassLabel(names=DATASET_LABELS)),
        "images": datasets.List(datasets.Image(decode=decode)),
    })
    return datasets.Dataset.from_dict(rows, features=features)


def test_raw_rows_match_processor_and_remap_labels(processor):
    ds = _dataset()
    names = ds.features["ner_tags"].feature.names
    collator = MNERDataCollator(processor, label_names=names)
    batch = collator([ds[0], ds[1], ds[2]])
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "word_ids", "labels",
                          "pixel_values", "image_mask"}
    direct = processor(
        words=[ds[i]["tokens"] for i in range(3)],
        tags=[[names[t] for t in ds[i]["ner_tags"]] for i in range(3)],
        images=[ds[i]["images"] for i in range(3)],
    )
    for key in batch:
        assert torch.equal(batch[key], direct[key]), key
    lab = processor.label2id
    # "Kawhi Leonard plays" = dataset ids 3, 4, 0 = B-PER, I-PER, O in the DATASET's order
    assert batch["labels"][0].tolist()[:5] == [-100, lab["B-PER"], -100, lab["I-PER"], lab["O"]]
    assert batch["labels"][1].tolist()[:4] == [-100, lab["O"], lab["B-ORG"], lab["O"]]
    assert batch["pixel_values"].shape == (3, 2, 3, 8, 8)  # M = 2 = most images in this batch
    assert batch["image_mask"].tolist() == [[1, 0], [1, 1], [0, 0]]
    assert collator.report.posts == 3 and collator.report.images_dropped == 0


def test_undecoded_images_pre_encoded_rows_and_report(processor):
    names = DATASET_LABELS
    raw = MNERDataCollator(processor, label_names=names)
    decoded = _dataset(decode=True)
    undecoded = _dataset(decode=False)
    a = raw([decoded[i] for i in range(4)])
    b = raw([undecoded[i] for i in range(4)])
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert a["image_mask"].tolist()[3] == [1, 1, 1]  # 5 images, max_images=3
    assert raw.report.images_dropped == 4 and raw.report.posts == 8  # 2 per call

    def encode(row):
        return processor.encode_example(row["tokens"], [names[t] for t in row["ner_tags"]], row["images"])

    pre = decoded.map(encode, remove_columns=decoded.column_names)
    assert pre[3]["images_dropped"] == 2
    c = MNERDataCollator(processor)([pre[i] for i in range(4)])
    for key in a:
        assert torch.equal(a[key], c[key]), key


def test_errors_name_the_post(processor):
    collator = MNERDataCollator(processor, label_names=DATASET_LABELS)
    with pytest.raises(ValueError, match=r"post 'x', word 0: tag id 12 outside"):
        collator([{"id": "x", "tokens": ["a"], "ner_tags": [12], "images": []}])
    with pytest.raises(KeyError, match="remove_unused_columns=False"):
        collator([{"labels": [0]}])
    with pytest.raises(ValueError, match="not in the processor's label2id"):
        MNERDataCollator(processor, label_names=["O", "B-FOO"])


class TinyTaggerModel(nn.Module):
    """Consumes the contract keys: token embedding + masked mean image feature -> tag logits."""

    def __init__(self, vocab_size: int, num_labels: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 16)
        self.image_proj = nn.Linear(3, 16)
        self.head = nn.Linear(16, num_labels)

    def forward(self, input_ids, attention_mask, word_ids, pixel_values, image_mask, labels=None,
                token_type_ids=None):
        assert word_ids.shape == input_ids.shape and pixel_values.dim() == 5
        img = self.image_proj(pixel_values.mean(dim=(-1, -2)))  # (B, M, 16)
        weights = image_mask.unsqueeze(-1).float()
        pooled = (img * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, 16)
        hidden = self.embed(input_ids) * attention_mask.unsqueeze(-1) + pooled.unsqueeze(1)
        logits = self.head(torch.tanh(hidden))
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return {"loss": loss, "logits": logits}


def test_collator_feeds_trainer(processor, tmp_path):
    torch.manual_seed(0)
    ds = _dataset()
    collator = MNERDataCollator(processor, label_names=ds.features["ner_tags"].feature.names)
    model = TinyTaggerModel(len(VOCAB), len(processor.label2id))
    batch = collator([ds[i] for i in range(4)])
    with torch.no_grad():
        before = model(**batch)["loss"].item()
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, max_steps=8, learning_rate=0.05,
        logging_steps=1, report_to=[], remove_unused_columns=False, use_cpu=True, save_strategy="no",
        dataloader_num_workers=0, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=collator)
    trainer.train()
    with torch.no_grad():
        after = model(**batch)["loss"].item()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 8
    assert after < before * 0.7, (before, after)
    # 4 posts for `batch` above + 8 steps x 2 posts; post p3 (5 images, max 3) drops 2 each time
    assert collator.report.posts == 20 and collator.report.images_dropped == 2 * 5


def test_report_counts_bad_images_and_truncation(processor):
    proc = MNERProcessor(processor.image_processor, processor.tokenizer, max_length=4, on_image_error="placeholder")
    collator = MNERDataCollator(proc, label_names=DATASET_LABELS)
    rows = [{"id": "bad", "tokens": ["Toronto", "plays", "b"], "ner_tags": [5, 0, 7],
             "images": [{"bytes": b"\x89PNG broken", "path": "bad.png"}, {"bytes": _png((0, 0, 255)), "path": None}]}]
    batch = collator(rows)
    assert batch["image_mask"].tolist() == [[0, 1]] and torch.all(batch["pixel_values"][0, 0] == 0)
    assert batch["word_ids"].tolist() == [[-1, 0, 1, -1]]  # "b" (B-MISC) cut by max_length=4
    r = collator.report
    assert (r.posts, r.image_errors, r.truncated_words, r.truncated_entities) == (1, 1, 1, 1)
    assert len(r.messages) == 1 and "bad.png" in r.messages[0]
