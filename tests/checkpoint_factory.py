"""Tiny, randomly initialised MNER checkpoints (hidden 32, 2 layers) shared by the inference tests."""

from __future__ import annotations

import functools
import socket
import string
from pathlib import Path

import pytest
import torch
from transformers import BertTokenizer, CLIPImageProcessorPil

from mner_hf.checkpoint import save_for_hub
from mner_hf.models.labels import DEFAULT_LABELS
from mner_hf.models.processing_mner import MNERProcessor
from mner_hf.resources import sample_dir

SAMPLE_IMAGES = sorted((sample_dir() / "images").glob("*.jpg"))
TEXT = "Lionel Messi arrives in Paris with PSG"
KINDS = ("tpm_mi", "mgips_cl", "bert_crf")


# ---------------------------------------------------------------------------- tiny checkpoints
def tiny_tokenizer(folder: Path) -> BertTokenizer:
    """WordPiece tokenizer covering every lowercase word (letters + ##letters)."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *string.ascii_lowercase,
             *("##" + c for c in string.ascii_lowercase), *string.digits, *".,!?#@'"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    return BertTokenizer(str(folder / "vocab.txt"))


def tiny_model_and_processor(kind: str, folder: Path, max_images: int = 3, max_length: int = 64, seed: int = 0):
    """A randomly initialised tiny model of ``kind`` (hidden 32, 2 layers) and its processor."""
    from mner_hf.models.configuration_bert_crf import BertCRFConfig
    from mner_hf.models.configuration_mgips_cl import MGIPSCLConfig
    from mner_hf.models.configuration_tpm_mi import TPMMIConfig
    from mner_hf.models.modeling_bert_crf import BertCRFForTokenClassification
    from mner_hf.models.modeling_mgips_cl import MGIPSCLForTokenClassification
    from mner_hf.models.modeling_tpm_mi import TPMMIForTokenClassification

    tok = tiny_tokenizer(folder / "vocab")
    label2id = {t: i for i, t in enumerate(DEFAULT_LABELS)}
    text = dict(model_type="bert", vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                num_attention_heads=2, intermediate_size=37, max_position_embeddings=128)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                  image_size=32, patch_size=16)
    common = dict(id2label=dict(enumerate(DEFAULT_LABELS)), label2id=label2id)
    torch.manual_seed(seed)
    if kind == "tpm_mi":
        model = TPMMIForTokenClassification(TPMMIConfig(
            text_config=text, vision_config=dict(model_type="vit", **vision), max_images=max_images,
            temporal_heads=2, **common))
    elif kind == "mgips_cl":
        model = MGIPSCLForTokenClassification(MGIPSCLConfig(
            text_config=text, vision_config=dict(model_type="clip_vision_model", **vision),
            max_images=max_images, contrastive_dim=16, **common))
    elif kind == "bert_crf":
        model = BertCRFForTokenClassification(BertCRFConfig(text_config=text, **common))
    else:
        raise ValueError(kind)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = MNERProcessor(image_processor, tok, max_images=max_images, max_length=max_length, label2id=label2id)
    return model.eval(), processor


@functools.lru_cache(maxsize=None)
def _cached_checkpoint(kind: str, root: str) -> Path:
    model, processor = tiny_model_and_processor(kind, Path(root) / f"{kind}-src")
    return save_for_hub(model, processor, Path(root) / kind, card="# tiny test checkpoint\n")


def build_checkpoint(kind: str, tmp_path_factory) -> Path:
    """Saved checkpoint folder of a tiny ``kind`` model (built once per test session)."""
    root = tmp_path_factory.getbasetemp() / "mner_checkpoints"
    root.mkdir(exist_ok=True)
    return _cached_checkpoint(kind, str(root))


def closed_port() -> int:
    """A localhost port with nothing listening (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_same_entities(got, expected, abs_tol: float = 1e-5) -> None:
    """Entity lists (or lists of them) equal, scores within ``abs_tol`` (padding changes float sums)."""
    if expected and isinstance(expected[0], list):
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert_same_entities(g, e, abs_tol)
        return
    strip = lambda ents: [{k: v for k, v in ent.items() if k != "score"} for ent in ents]  # noqa: E731
    assert strip(got) == strip(expected)
    assert [e["score"] for e in got] == pytest.approx([e["score"] for e in expected], abs=abs_tol)
