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


# ---- the authors' released settings as a preset --------------------------------------------------
def _authors_model(seed: int = 0, **kw) -> TPMMIForTokenClassification:
    torch.manual_seed(seed)
    kw.setdefault("temporal_heads", 4)
    kw.setdefault("temporal_dropout", 0.0)
    cfg = TPMMIConfig.from_preset("authors", text_config=TEXT, vision_config=VIT, id2label=LABELS, **kw)
    return TPMMIForTokenClassification(cfg).eval()


def test_authors_preset_fields_and_defaults_side_by_side() -> None:
    default = TPMMIConfig(text_config=TEXT, vision_config=VIT, id2label=LABELS, temporal_heads=4)
    authors = TPMMIConfig.from_preset("authors", text_config=TEXT, vision_config=VIT, id2label=LABELS, temporal_heads=4)
    assert (default.prompt_projection, authors.prompt_projection) == ("per_layer", "shared_mlp")
    assert (default.mask_padded_images, authors.mask_padded_images) == (True, False)
    assert (default.temporal_init_std, authors.temporal_init_std) == (None, 1.0)
    assert (default.temporal_ffn_dim, authors.temporal_ffn_dim) == (None, 2048)
    assert (default.classifier_dropout, authors.classifier_dropout) == (None, 0.0)
    assert authors.prompt_hidden_size == 1024 and authors.temporal_layers == 1 and authors.prompt_length == 1
    assert TPMMIConfig.from_preset("paper", text_config=TEXT, vision_config=VIT, id2label=LABELS,
                                   temporal_heads=4).to_dict() == default.to_dict()
    # explicit keyword arguments override the preset
    assert TPMMIConfig.from_preset("authors", text_config=TEXT, vision_config=VIT, id2label=LABELS, temporal_heads=4,
                                   mask_padded_images=True).mask_padded_images is True
    with pytest.raises(ValueError, match="unknown TPM-MI preset 'author'"):
        TPMMIConfig.from_preset("author")
    with pytest.raises(ValueError, match="prompt_projection must be one of"):
        TPMMIConfig(text_config=TEXT, vision_config=VIT, id2label=LABELS, temporal_heads=4, prompt_projection="mlp")
    model = _authors_model()
    assert model.classifier is not None and model.dropout.p == 0.0
    assert model.temporal_encoder.layers[0].linear1.out_features == 2048
    mlp = model.prompt_encoder
    assert (mlp[0].in_features, mlp[0].out_features, mlp[2].out_features) == (32, 1024, 2 * 2 * 32)  # layers x 2 x D_t
    assert not hasattr(model, "prompt_projections") and not hasattr(model, "prefix_key")


def test_temporal_embedding_initialisation_follows_the_preset() -> None:
    stds = []
    for seed in range(3):
        torch.manual_seed(seed)
        authors = TPMMIForTokenClassification(TPMMIConfig.from_preset(
            "authors", text_config=TEXT, vision_config=dict(VIT, hidden_size=64), id2label=LABELS, temporal_heads=4))
        default = TPMMIForTokenClassification(TPMMIConfig(
            text_config=TEXT, vision_config=dict(VIT, hidden_size=64), id2label=LABELS, temporal_heads=4))
        stds.append((authors.temporal_embedding.std().item(), default.temporal_embedding.std().item()))
    for authors_std, default_std in stds:  # 4 x 64 draws each: the sample std is within ~10 % of the true one
        assert 0.8 < authors_std < 1.2 and 0.016 < default_std < 0.024, stds


def test_shared_mlp_prompts_by_hand() -> None:
    """Without the image transformer U = C = V + T; keys/values of layer l are slice l of tanh-MLP(U)."""
    model = _authors_model(temporal_layers=0)
    batch = _batch()
    feats = model.get_image_features(batch["pixel_values"], batch["image_mask"])
    prefix, pmask = model.image_prompts(feats, batch["image_mask"])
    lin1, lin2 = model.prompt_encoder[0], model.prompt_encoder[2]
    u = feats + model.temporal_embedding[:3]  # padded slots: zero vector + T (the paper's zero filling)
    out = torch.tanh(u @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias  # (B, M, 2 layers * 2 * 32)
    d_t, heads = 32, 4
    for layer in range(2):
        for which in (0, 1):  # 0: keys, 1: values
            start = (2 * layer + which) * d_t
            expect = out[..., start : start + d_t].reshape(4, 3, heads, d_t // heads).transpose(1, 2)
            torch.testing.assert_close(prefix[layer][which], expect, atol=1e-5, rtol=1e-4)
    # padded slots are attended (mask_padded_images=False) for every post that has an image
    assert pmask.tolist() == [[True] * 3, [True] * 3, [True] * 3, [False] * 3]


def test_shared_mlp_output_feeds_every_layer() -> None:
    """Changing only the rows of the MLP that produce layer l's keys (or values) changes the final
    text states of every post with images and leaves the post without images alone, for every l."""
    model = _authors_model()
    batch = _batch()

    def states() -> torch.Tensor:
        return model(**batch, output_hidden_states=True).hidden_states[-1]  # (B, L, D_t) after the last layer

    base = states()
    lin2, d_t = model.prompt_encoder[2], 32
    for layer in range(2):
        for which in (0, 1):  # keys, values
            rows = slice((2 * layer + which) * d_t, (2 * layer + which + 1) * d_t)
            saved = lin2.weight.data[rows].clone(), lin2.bias.data[rows].clone()
            with torch.no_grad():
                lin2.weight[rows] = torch.randn_like(saved[0])
                lin2.bias[rows] = torch.randn_like(saved[1])
            out = states()
            with torch.no_grad():
                lin2.weight[rows], lin2.bias[rows] = saved
            assert (out[:3] - base[:3]).abs().amax(dim=(1, 2)).min() > 1e-4, (layer, which)  # float noise ~1e-6
            torch.testing.assert_close(out[3], base[3])  # no image: text path only
    torch.testing.assert_close(states(), base)


def test_authors_padded_slots_attended_change_outputs_vs_masked() -> None:
    attended = _authors_model()
    masked = _authors_model(mask_padded_images=True)
    masked.load_state_dict(attended.state_dict())
    batch = _batch()
    a, m = attended(**batch).logits, masked(**batch).logits
    torch.testing.assert_close(a[0], m[0], atol=1e-5, rtol=1e-4)  # post 0 fills its 3 slots
    assert (a[1] - m[1]).abs().max() > 1e-4 and (a[2] - m[2]).abs().max() > 1e-4  # padded slots
    torch.testing.assert_close(a[3], m[3])  # no image at all: text path in both
    # attended padding makes the output depend on how many slots the batch pads to
    solo = {k: v[1:2] for k, v in batch.items()} | {"pixel_values": batch["pixel_values"][1:2, :1],
                                                     "image_mask": batch["image_mask"][1:2, :1]}
    words = int(attended(**solo).word_mask.sum())  # post 1 has text padding: compare its words only
    assert (attended(**solo).logits[0, :words] - a[1, :words]).abs().max() > 1e-4
    torch.testing.assert_close(masked(**solo).logits[0, :words], m[1, :words], atol=1e-5, rtol=1e-4)


def test_authors_preset_gradient_reaches_every_parameter() -> None:
    model = _authors_model().train()
    batch = _batch()
    labels = torch.full_like(batch["input_ids"], -100)
    starts = batch["word_ids"] != torch.cat([torch.full((4, 1), -1), batch["word_ids"][:, :-1]], 1)
    labels[starts & (batch["word_ids"] >= 0)] = 0
    labels[0, 1], labels[2, 4] = 1, 5
    model(**batch, labels=labels, token_type_ids=torch.zeros_like(batch["input_ids"])).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing
    groups = model.param_groups()
    assert any(p is model.prompt_encoder[2].weight for p in groups["fusion"])


def test_authors_preset_round_trips_save_and_trust_remote_code(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from transformers import AutoModelForTokenClassification

    import mner_hf  # noqa: F401  (registers the Auto classes)

    model = _authors_model()
    batch = _batch()
    ref = model(**batch).logits
    model.save_pretrained(tmp_path / "ckpt")
    loaded = TPMMIForTokenClassification.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.config.prompt_projection == "shared_mlp" and loaded.config.mask_padded_images is False
    assert loaded.config.temporal_init_std == 1.0 and loaded.config.temporal_ffn_dim == 2048
    assert torch.equal(loaded(**batch).logits, ref)
    auto = AutoModelForTokenClassification.from_pretrained(tmp_path / "ckpt").eval()
    assert torch.equal(auto(**batch).logits, ref)
    torch.save(batch, tmp_path / "batch.pt")
    script = (
        "import sys; sys.modules['mner_hf'] = None\n"
        "import torch\nfrom transformers import AutoModelForTokenClassification\n"
        "m = AutoModelForTokenClassification.from_pretrained(sys.argv[1], trust_remote_code=True).eval()\n"
        "assert type(m).__module__.startswith('transformers_modules'), type(m).__module__\n"
        "assert m.config.prompt_projection == 'shared_mlp' and not m.config.mask_padded_images\n"
        "with torch.no_grad():\n    torch.save(m(**torch.load(sys.argv[2])).logits, sys.argv[3])\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "ckpt"), str(tmp_path / "batch.pt"),
                           str(tmp_path / "out.pt")], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), ref.detach(), atol=1e-6, rtol=1e-5)  # other threads


def test_from_encoders_and_run_configs_use_the_authors_preset(tmp_path: Path) -> None:
    from mner_hf.training.encoders import tiny_text_encoder, tiny_vision_encoder
    from mner_hf.training.run import build_model
    from mner_hf.training.run_config import RunConfig, RunConfigError

    text = tiny_text_encoder(tmp_path / "text", [["alice", "visits", "paris"]], hidden_size=32, num_layers=2)
    vision = tiny_vision_encoder(tmp_path / "vision", hidden_size=32, num_layers=1, image_size=32)
    labels = list(LABELS.values())
    model = TPMMIForTokenClassification.from_encoders(text=text, vision=vision, labels=labels, preset="authors",
                                                      temporal_heads=2)
    assert model.config.prompt_projection == "shared_mlp" and model.config.temporal_heads == 2
    configs = sorted((Path(__file__).resolve().parents[1] / "examples" / "configs").glob("tpm_mi_*_authors.yaml"))
    assert [c.name for c in configs] == ["tpm_mi_mner_mi_authors.yaml", "tpm_mi_mner_mi_plus_authors.yaml"]
    for path in configs:
        run = RunConfig.from_yaml(path, ["model.config_overrides.temporal_heads=2"])
        assert run.model.config_overrides["preset"] == "authors" and run.model.max_images == 4
        assert run.data.max_length == 64
        t = run.training
        assert (float(t["learning_rate"]), t["per_device_train_batch_size"], t["num_train_epochs"]) == (5e-5, 8, 15)
        assert float(t["warmup_steps"]) == 0.01 and t["lr_scheduler_type"] == "linear"
        built = build_model(run, text, vision, labels)
        with pytest.raises(RunConfigError, match="preset: unknown TPM-MI preset 'author'"):
            RunConfig.from_yaml(path, ["model.config_overrides.preset=author"])
        assert built.config.prompt_projection == "shared_mlp" and not built.config.mask_padded_images
        assert built.config.temporal_ffn_dim == 2048 and built.config.max_images == 4


def test_equation_map_names_every_equation() -> None:
    """Every row of the TPM-MI equation map in docs/ARCHITECTURE.md names a function that exists
    and whose source carries that equation number (MNER-MI eq. 1-7)."""
    import importlib
    import inspect
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = doc.split("## TPM-MI equation map", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d) \| .*?\| .*?`([\w.]+)`", section, flags=re.M)
    assert [int(n) for n, _ in rows] == list(range(1, 8)), rows
    for number, dotted in rows:
        module, *attrs = dotted.split(".")
        obj = importlib.import_module(f"mner_hf.models.{module}")
        for attr in attrs:
            obj = getattr(obj, attr)
        assert re.search(rf"eq\. {number}\b", inspect.getsource(obj)), (number, dotted)
