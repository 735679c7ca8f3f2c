"""TPM-MI (MNER-MI section 4) and the vision encoder wrapper, with tiny configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BertConfig, BertTokenizerFast, ViTImageProcessorPil

from mner_hf.models import BertCRFConfig, BertCRFForTokenClassification, TPMMIConfig, TPMMIForTokenClassification
from mner_hf.models.vision_encoder import ImageEncoder

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "mner_hf" / "sample"
LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-ORG", 4: "I-ORG", 5: "B-LOC", 6: "I-LOC"}
TEXT = dict(model_type="bert", vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=64)
VIT = dict(model_type="vit", hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
           image_size=32, patch_size=8)
CLIP = dict(model_type="clip_vision_model", hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, image_size=32, patch_size=8)
MOBILENET = dict(model_type="mobilenet_v2", image_size=32, depth_multiplier=0.35)


def _model(vision=VIT, seed: int = 0, **kw) -> TPMMIForTokenClassification:
    torch.manual_seed(seed)
    kw.setdefault("temporal_heads", 4)
    kw.setdefault("temporal_dropout", 0.0)
    kw.setdefault("classifier_dropout", 0.0)
    cfg = TPMMIConfig(text_config=TEXT, vision_config=vision, id2label=LABELS, **kw)
    model = TPMMIForTokenClassification(cfg).eval()
    # the 0.02-std init makes prompts nearly inert at first; larger weights make their effect measurable
    with torch.no_grad():
        for module in [*model.prompt_projections, *model.prefix_key, *model.prefix_value]:
            module.weight.normal_(0.0, 0.5)
        model.temporal_embedding.normal_(0.0, 1.0)
    return model


def _batch(bsz: int = 4, slots: int = 3, seed: int = 1):
    """Posts with 3, 1, 2 and 0 real images in 3 slots; post 1 has text padding."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (bsz, 7), generator=g)
    mask = torch.ones(bsz, 7, dtype=torch.long)
    mask[1, 5:] = 0
    ids[:, 0], ids = 2, ids * mask
    word_ids = torch.tensor([-1, 0, 1, 1, 2, 3, -1]).repeat(bsz, 1)
    word_ids[1, 4:] = -1
    image_mask = torch.zeros(bsz, slots, dtype=torch.long)
    for b in range(bsz):
        image_mask[b, : [3, 1, 2, 0, 2][b % 5]] = 1
    pixel_values = torch.randn(bsz, slots, 3, 32, 32, generator=g) * image_mask[:, :, None, None, None]
    return dict(input_ids=ids, attention_mask=mask, word_ids=word_ids, pixel_values=pixel_values, image_mask=image_mask)


# ---- vision encoder -----------------------------------------------------------------------------
@pytest.mark.parametrize("vision", [VIT, CLIP, MOBILENET], ids=["vit", "clip", "mobilenet_v2"])
def test_image_encoder_skips_padded_slots_exactly(vision) -> None:
    from transformers import AutoConfig

    torch.manual_seed(0)
    cfg = AutoConfig.for_model(**vision)
    enc = ImageEncoder(cfg).eval()
    batch = _batch()
    pv, im = batch["pixel_values"], batch["image_mask"]
    pv = pv + (1 - im)[:, :, None, None, None] * 5.0  # garbage in padded slots must not matter
    skip = enc(pv, im, output_hidden_states=True)
    full = enc(pv, im, output_hidden_states=True, skip_padded=False)
    assert skip.image_embeds.shape == (4, 3, enc.output_dim)
    torch.testing.assert_close(skip.image_embeds, full.image_embeds, atol=1e-5, rtol=1e-4)
    assert (skip.image_embeds[~im.bool()] == 0).all() and (skip.image_embeds[im.bool()].abs().sum(-1) > 0).all()
    for a, b in zip(skip.hidden_states, full.hidden_states):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert skip.patch_tokens.dim() == 4 and skip.patch_tokens.shape[:2] == (4, 3)
    # each real image's vector equals encoding it alone
    alone, _ = enc.encode_images(pv[0, 1:2])
    torch.testing.assert_close(skip.image_embeds[0, 1], alone[0], atol=1e-5, rtol=1e-4)
    empty = enc(pv[3:], im[3:])  # a post without real images -> zero vectors, backbone not called
    assert empty.image_embeds.shape == (1, 3, enc.output_dim) and (empty.image_embeds == 0).all()


# ---- TPM-MI behaviour ---------------------------------------------------------------------------
def test_gradients_reach_every_module_group() -> None:
    model = _model().train()
    batch = _batch()
    labels = torch.full_like(batch["input_ids"], -100)
    starts = batch["word_ids"] != torch.cat([torch.full((4, 1), -1), batch["word_ids"][:, :-1]], 1)
    labels[starts & (batch["word_ids"] >= 0)] = 0
    labels[0, 1] = 3
    out = model(**batch, labels=labels)
    out.loss.backward()
    for name, module in [("vision", model.vision_encoder), ("temporal", model.temporal_encoder),
                         ("prompt", model.prompt_projections), ("phi_k", model.prefix_key),
                         ("phi_v", model.prefix_value), ("crf", model.crf), ("text", model.text_encoder)]:
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and sum(g.abs().sum() for g in grads) > 0, name
    assert model.temporal_embedding.grad.abs().sum() > 0
    groups = model.param_groups()
    assert set(groups) == {"text", "vision", "fusion", "crf"}
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == sum(1 for p in model.parameters() if p.requires_grad)
    assert any(p is model.temporal_embedding for p in groups["fusion"])


def test_skipping_padded_slots_equals_encoding_all() -> None:
    model = _model()
    batch = _batch()
    a = model(**batch).logits
    model.config.encode_padded_images = True
    b = model(**batch).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_image_order_matters_and_batch_order_does_not() -> None:
    model = _model()
    batch = _batch()
    base = model(**batch).logits
    swapped = {k: v.clone() for k, v in batch.items()}
    swapped["pixel_values"][0] = batch["pixel_values"][0, [1, 0, 2]]  # post 0: swap images 1 and 2
    out = model(**swapped).logits
    assert (out[0] - base[0]).abs().max() > 1e-4  # temporal embedding makes order matter
    torch.testing.assert_close(out[1:], base[1:])
    perm = torch.tensor([2, 3, 0, 1])
    permuted = model(**{k: v[perm] for k, v in batch.items()}).logits
    torch.testing.assert_close(permuted, base[perm], atol=1e-5, rtol=1e-4)
    # a post alone (no batch padding of its image slots) gives the same output with masked padding
    solo = model(**{k: v[2:3] for k, v in batch.items()} | {"pixel_values": batch["pixel_values"][2:3, :2],
                                                           "image_mask": batch["image_mask"][2:3, :2]}).logits
    torch.testing.assert_close(solo[0], base[2], atol=1e-5, rtol=1e-4)


def test_paper_mode_attends_zero_vector_prompts() -> None:
    masked, paper = _model(), _model(mask_padded_images=False)
    paper.load_state_dict(masked.state_dict())
    batch = _batch()
    a, b = masked(**batch).logits, paper(**batch).logits
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=1e-4)  # post 0 fills every slot
    assert (a[1] - b[1]).abs().max() > 1e-4  # post 1 has padded slots
    torch.testing.assert_close(a[3:], b[3:])  # a post without images: text path in both modes


def test_sdpa_equals_eager_and_cached_features_equal_pixels() -> None:
    model = _model()
    batch = _batch()
    sdpa = model(**batch).logits
    model.set_attn_implementation("eager")
    assert model.attention_base() == "eager"
    eager = model(**batch).logits
    assert model.text_encoder.config._attn_implementation == "mner_prefix"
    torch.testing.assert_close(sdpa, eager, atol=1e-5, rtol=1e-4)
    feats = model.get_image_features(batch["pixel_values"], batch["image_mask"])
    cached = {k: v for k, v in batch.items() if k != "pixel_values"} | {"image_embeds": feats + 0}
    cached["image_embeds"][~batch["image_mask"].bool()] = 7.0  # cache padding is ignored
    torch.testing.assert_close(model(**cached).logits, eager, atol=1e-5, rtol=1e-4)


def test_gradient_checkpointing_same_gradients() -> None:
    batch = _batch()
    grads = []
    for ckpt in (False, True):
        model = _model().train()
        if ckpt:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model(**batch).logits.pow(2).sum().backward()
        grads.append([model.prefix_key[0].weight.grad, model.vision_encoder.backbone.embeddings.patch_embeddings
                      .projection.weight.grad, model.temporal_embedding.grad])
    for a, b in zip(*grads):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_all_prompts_masked_equals_text_path() -> None:
    model = _model()
    text_only = BertCRFForTokenClassification(BertCRFConfig(text_config=TEXT, id2label=LABELS, classifier_dropout=0.0))
    text_only.text_encoder.load_state_dict(model.text_encoder.state_dict())
    text_only.classifier.load_state_dict(model.classifier.state_dict())
    text_only.crf.load_state_dict(model.crf.state_dict())
    text_only.eval()
    batch = _batch()
    text_batch = {k: batch[k] for k in ("input_ids", "attention_mask", "word_ids")}
    ref = text_only(**text_batch)
    no_images = model(**text_batch, pixel_values=batch["pixel_values"], image_mask=torch.zeros_like(batch["image_mask"]))
    torch.testing.assert_close(no_images.logits, ref.logits, atol=1e-5, rtol=1e-4)
    assert torch.equal(no_images.predictions, ref.predictions)
    torch.testing.assert_close(model(**text_batch).logits, ref.logits, atol=1e-5, rtol=1e-4)
    with_images = model(**batch).logits
    torch.testing.assert_close(with_images[3], ref.logits[3], atol=1e-5, rtol=1e-4)  # post 3 has no image
    assert (with_images[0] - ref.logits[0]).abs().max() > 1e-4


@pytest.mark.parametrize("vision", [CLIP, MOBILENET], ids=["clip", "mobilenet_v2"])
def test_other_vision_backbones(vision) -> None:
    model = _model(vision=vision)
    out = model(**_batch())
    assert out.logits.shape == (4, 4, len(LABELS)) and torch.isfinite(out.logits).all()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="max_images must be an integer >= 1"):
        TPMMIConfig(text_config=TEXT, vision_config=VIT, id2label=LABELS, max_images=0)
    with pytest.raises(ValueError, match="outside tag 'O'"):
        TPMMIConfig(text_config=TEXT, vision_config=VIT, id2label={0: "B-PER", 1: "I-PER"})
    with pytest.raises(ValueError, match="multiple of temporal_heads"):
        TPMMIConfig(text_config=TEXT, vision_config=VIT, id2label=LABELS, temporal_heads=5)
    model = _model(max_images=2)
    with pytest.raises(ValueError, match="exceed max_images=2"):
        model(**_batch())
    clip_full = TPMMIConfig(text_config=TEXT, vision_config={"model_type": "clip", "vision_config": CLIP,
                                                              "text_config": {"hidden_size": 32}},
                            id2label=LABELS, temporal_heads=4)
    assert clip_full.vision_config.model_type == "clip_vision_model"


# ---- real sample posts: overfitting --------------------------------------------------------------
def _sample_posts(n: int, max_chars: int = 24):
    posts, cur = [], None
    for line in (SAMPLE / "example_text").read_text(encoding="utf-8").splitlines():
        if line.startswith("WID:"):
            cur = {"id": line[4:].strip(), "words": [], "tags": []}
            posts.append(cur)
        elif line.strip():
            word, tag = line.split("\t")
            cur["words"].append(word)
            cur["tags"].append(tag)
    out = []
    for p in posts:
        images = sorted((SAMPLE / "images").glob(p["id"] + "_*.jpg"))
        if images and any(t != "O" for t in p["tags"][:max_chars]):
            out.append((p["words"][:max_chars], p["tags"][:max_chars], images[:4]))
    assert len(out) >= n
    return out[:n]


def test_loss_decreases_on_sample_posts(tmp_path: Path) -> None:
    posts = _sample_posts(2, max_chars=16)
    chars = sorted({w for words, _, _ in posts for w in words})
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]))
    tok = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"), do_lower_case=False, tokenize_chinese_chars=True)
    enc = tok([w for w, _, _ in posts], is_split_into_words=True, padding=True, return_tensors="pt")
    label2id = {v: k for k, v in LABELS.items()}
    word_ids = torch.tensor([[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(posts))])
    labels = torch.full_like(word_ids, -100)
    for i, (_, tags, _) in enumerate(posts):
        prev = None
        for j, w in enumerate(word_ids[i].tolist()):
            if w >= 0 and w != prev:
                labels[i, j] = label2id[tags[w]]
            prev = w
    proc = ViTImageProcessorPil(size={"height": 32, "width": 32})
    slots = max(len(imgs) for _, _, imgs in posts)
    pixel_values = torch.zeros(len(posts), slots, 3, 32, 32)
    image_mask = torch.zeros(len(posts), slots, dtype=torch.long)
    for i, (_, _, imgs) in enumerate(posts):
        for j, path in enumerate(imgs):
            with Image.open(path) as im:
                pixel_values[i, j] = torch.as_tensor(np.asarray(proc(im.convert("RGB"), return_tensors="np")["pixel_values"][0]))
            image_mask[i, j] = 1
    text = dict(TEXT, vocab_size=len(tok))
    torch.manual_seed(0)
    model = TPMMIForTokenClassification(TPMMIConfig(text_config=text, vision_config=VIT, id2label=LABELS,
                                                    temporal_heads=4, classifier_dropout=0.0)).train()
    groups = model.param_groups()
    opt = torch.optim.AdamW([{"params": groups["text"] + groups["vision"], "lr": 1e-3},
                             {"params": groups["fusion"], "lr": 1e-3}, {"params": groups["crf"], "lr": 5e-2}])
    batch = dict(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], token_type_ids=enc["token_type_ids"],
                 word_ids=word_ids, labels=labels, pixel_values=pixel_values, image_mask=image_mask)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses
    model.eval()
    out = model(**batch)
    gold = labels[labels != -100]
    assert (out.predictions[out.word_mask] == gold).float().mean() > 0.9, (losses, out.predictions)


def test_from_encoders_with_real_minilm(minilm_path: str, tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.for_model(**VIT)).save_pretrained(tmp_path / "vit")
    model = TPMMIForTokenClassification.from_encoders(
        text=minilm_path, vision=str(tmp_path / "vit"), labels=list(LABELS.values()), temporal_heads=4
    )
    assert not model.training
    vit = AutoModel.from_pretrained(tmp_path / "vit")
    torch.testing.assert_close(model.vision_encoder.backbone.embeddings.cls_token, vit.embeddings.cls_token)
    ref = AutoModel.from_pretrained(minilm_path)
    torch.testing.assert_close(model.text_encoder.embeddings.word_embeddings.weight, ref.embeddings.word_embeddings.weight)
    assert isinstance(model.config.text_config, BertConfig) and model.config.text_config.num_hidden_layers == 6
    tok = AutoTokenizer.from_pretrained(minilm_path)
    enc = tok([["Alice", "visits", "Paris"]], is_split_into_words=True, return_tensors="pt")
    word_ids = torch.tensor([[-1 if w is None else w for w in enc.word_ids(0)]])
    out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], word_ids=word_ids,
                pixel_values=torch.randn(1, 2, 3, 32, 32), image_mask=torch.ones(1, 2, dtype=torch.long),
                return_marginals=True)
    assert out.logits.shape == (1, 3, len(LABELS))
    torch.testing.assert_close(out.marginals.sum(-1), torch.ones(1, 3))
    # all prompts masked: the MiniLM text path is unchanged by the new (random) prompt modules
    masked = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], word_ids=word_ids,
                   pixel_values=torch.randn(1, 2, 3, 32, 32), image_mask=torch.zeros(1, 2, dtype=torch.long))
    ref_states = ref(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    torch.testing.assert_close(masked.logits[0], model.classifier(ref_states[0, masked.word_positions[0]]), atol=1e-5, rtol=1e-4)


def test_mobilenet_batchnorm_keeps_running_statistics_in_training() -> None:
    """transformers' MobileNetV2 uses TF's momentum 0.997; ImageEncoder converts it to PyTorch's 0.003."""
    from transformers import MobileNetV2Config

    torch.manual_seed(0)
    encoder = ImageEncoder(MobileNetV2Config(image_size=32, depth_multiplier=0.35, num_channels=3))
    norms = [m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(abs(m.momentum - 0.003) < 1e-9 for m in norms)
    first = norms[0]
    before = first.running_mean.clone()
    encoder.train()
    pixels = torch.randn(1, 2, 3, 32, 32) * 5 + 3
    encoder(pixels, torch.ones(1, 2, dtype=torch.long))
    batch_mean_shift = (first.running_mean - before).abs().max().item()
    # With PyTorch's default reading of 0.997 the running mean would jump to ~the batch mean (shift >> 0.1).
    assert 0 < batch_mean_shift < 0.1
