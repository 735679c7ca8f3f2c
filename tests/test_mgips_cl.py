"""MGIPS-CL model tests on tiny configs (hidden 32, 2 layers, 32x32 images, 16x16 patches)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from mner_hf.models.configuration_mgips_cl import MGIPSCLConfig
from mner_hf.models.mgips_losses import ips_contrastive_loss, standard_contrastive_loss
from mner_hf.models.modeling_mgips_cl import MGIPSCLForTokenClassification

LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC"}
D = 32
TEXT = dict(hidden_size=D, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
VISION = dict(hidden_size=D, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
              patch_size=16)


def make_config(**kw) -> MGIPSCLConfig:
    base = dict(text_config=dict(TEXT), vision_config=dict(VISION), id2label=LABELS,
                label2id={v: k for k, v in LABELS.items()}, max_images=3, fusion_dropout=0.0, contrastive_dim=16,
                max_text_length=12)
    base.update(kw)
    return MGIPSCLConfig(**base)


def make_model(seed: int = 0, **kw) -> MGIPSCLForTokenClassification:
    torch.manual_seed(seed)
    return MGIPSCLForTokenClassification(make_config(**kw))


def make_batch(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (3, 8), generator=g)
    ids[:, 0] = 2
    am = torch.ones(3, 8, dtype=torch.long)
    am[1, 6:] = 0
    labels = torch.full((3, 8), -100)
    labels[:, 1:5] = torch.tensor([[1, 2, 0, 3], [0, 0, 1, 0], [3, 0, 0, 0]])
    pv = torch.randn(3, 2, 3, 32, 32, generator=g)
    mask = torch.tensor([[1, 1], [1, 0], [1, 0]])
    pv[1, 1] = 0
    pv[2, 1] = 0
    return dict(input_ids=ids, attention_mask=am, labels=labels, pixel_values=pv, image_mask=mask)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def split(x: torch.Tensor, heads: int = 2) -> torch.Tensor:
    return x.view(*x.shape[:2], heads, -1).transpose(1, 2)


def test_loss_eq_19_weighted_terms_and_gradient_into_every_parameter() -> None:
    model = make_model(ips_top_k=1, crf_weight=0.5, ips_cl_weight=2.0, cl_weight=3.0).train()
    captured = {}
    model.contrastive_text.register_forward_hook(lambda m, a, o: captured.__setitem__("t", o))
    model.contrastive_visual.register_forward_hook(lambda m, a, o: captured.__setitem__("v", o))
    out = model(**make_batch())
    assert set(out.loss_components) == {"crf", "ips_cl", "cl"}
    t, v = captured["t"], captured["v"]  # g(z), f(X) of the 3 posts (eq. 14), all have images
    ips, cl = ips_contrastive_loss(t, v, 1, 0.5), standard_contrastive_loss(t, v, 0.5)
    assert ips.item() > 0 and cl.item() > 0
    torch.testing.assert_close(out.loss_components["ips_cl"], 2.0 * ips)
    torch.testing.assert_close(out.loss_components["cl"], 3.0 * cl)
    torch.testing.assert_close(out.loss, sum(out.loss_components.values()))  # eq. 19 with weights
    default = make_model(ips_top_k=1).train()
    assert default.config.crf_weight == default.config.ips_cl_weight == default.config.cl_weight == 1.0
    assert default.config.cl_temperature == 0.5
    out = default(**make_batch())
    out.loss.backward()
    no_grad = [n for n, p in default.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert no_grad == []
    groups = default.param_groups()
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == len(list(default.parameters()))
    assert {id(p) for p in default.gate.parameters()} <= {id(p) for p in groups["fusion"]}  # the gate is trained


@pytest.mark.parametrize("vision_attends_text", [True, False])
def test_mutual_attention_directions(vision_attends_text: bool) -> None:
    model = make_model(vision_attends_text=vision_attends_text).eval()
    b = make_batch()
    vision = lambda pv: model._vision_input(3, pv, b["image_mask"], None, None)  # noqa: E731
    with torch.no_grad():
        text, visual, _ = model._mutual_encode(b["input_ids"], b["attention_mask"], None, vision(b["pixel_values"]))
        other_pv = b["pixel_values"].clone()
        other_pv[0, 0] = torch.randn(3, 32, 32)
        text2, _, _ = model._mutual_encode(b["input_ids"], b["attention_mask"], None, vision(other_pv))
        other_ids = b["input_ids"].clone()
        other_ids[0, 2:5] = 9
        _, visual3, _ = model._mutual_encode(other_ids, b["attention_mask"], None, vision(b["pixel_values"]))
    assert not torch.allclose(text[0], text2[0], atol=1e-4)  # text <- vision (eq. 2)
    torch.testing.assert_close(text[1:], text2[1:])  # other posts untouched
    if vision_attends_text:  # vision <- text (eq. 4)
        assert not torch.allclose(visual[0], visual3[0], atol=1e-4)
    else:
        torch.testing.assert_close(visual, visual3)
    torch.testing.assert_close(visual[1:], visual3[1:])


def test_text_and_vision_layers_take_each_others_own_keys_and_values() -> None:
    """eq. 2-4: text layer 1 gets V^e, text layer 2 vision layer 1's own K/V; vision layer 1
    gets S^e, vision layer 2 text layer 1's own K/V (layer counts and widths equal)."""
    model = make_model().eval()
    b = make_batch()
    seen: dict = {}

    def grab(name):
        def hook(module, args, kwargs):
            seen[name] = kwargs["prefix_key_values"][module.layer_idx]
        return hook

    text_layers = model.text_encoder.encoder.layer
    vision_layers = model.vision_encoder.backbone.encoder.layers
    for i in range(2):
        text_layers[i].attention.self.register_forward_pre_hook(grab(f"t{i}"), with_kwargs=True)
        vision_layers[i].self_attn.register_forward_pre_hook(grab(f"v{i}"), with_kwargs=True)
    with torch.no_grad():
        model(b["input_ids"], b["attention_mask"], pixel_values=b["pixel_values"], image_mask=b["image_mask"])
        backbone = model.vision_encoder.backbone
        v_e = backbone.pre_layrnorm(backbone.embeddings(b["pixel_values"][2, :1]))  # post 2: one image, (1, 5, D)
        s_e = model.text_encoder.embeddings(input_ids=b["input_ids"])  # (3, 8, D)
        h = vision_layers[0].layer_norm1(v_e)
        k1, v1 = vision_layers[0].self_attn.k_proj(h), vision_layers[0].self_attn.v_proj(h)
        tk1 = text_layers[0].attention.self.key(s_e)
        tv1 = text_layers[0].attention.self.value(s_e)
    for got, ref in ((seen["t0"][0], split(v_e)), (seen["t0"][1], split(v_e)), (seen["t1"][0], split(k1)), (seen["t1"][1], split(v1))):
        torch.testing.assert_close(got[2, :, :5], ref[0], atol=1e-5, rtol=1e-5)  # post 2, slot 0 tokens
    # vision: image order is post0 (2 images), post1, post2 -> image 3 belongs to post 2
    for got, ref in ((seen["v0"][0], split(s_e)), (seen["v1"][0], split(tk1)), (seen["v1"][1], split(tv1))):
        torch.testing.assert_close(got[3], ref[2], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("vision_attends_text", [True, False])
def test_padding_and_other_posts_do_not_change_a_post(vision_attends_text: bool) -> None:
    model = make_model(vision_attends_text=vision_attends_text).eval()
    batch = make_batch()
    with torch.no_grad():
        out = model(**batch)
        alone = model(  # post 1 alone: no padded text (6 tokens), one image slot only
            input_ids=batch["input_ids"][1:2, :6], attention_mask=batch["attention_mask"][1:2, :6],
            labels=batch["labels"][1:2, :6], pixel_values=batch["pixel_values"][1:2, :1],
            image_mask=batch["image_mask"][1:2, :1],
        )
        noisy = {k: v.clone() for k, v in batch.items()}
        noisy["pixel_values"][1, 1] = 5 * torch.randn(3, 32, 32)  # garbage in a padded image slot
        noisy["input_ids"][1, 6:] = 7  # and in padded tokens
        out_noisy = model(**noisy)
    w = int(alone.word_mask.sum())
    torch.testing.assert_close(out.logits[1, :w], alone.logits[0, :w], atol=1e-5, rtol=1e-5)
    assert torch.equal(out.predictions[1, :w], alone.predictions[0, :w])
    torch.testing.assert_close(out.logits, out_noisy.logits, atol=1e-5, rtol=1e-5)
    assert set(out.loss_components) == {"crf"}  # contrastive terms are training-only


def test_batch_order_invariance_at_inference() -> None:
    model = make_model().eval()
    b = make_batch()
    perm = torch.tensor([2, 0, 1])
    with torch.no_grad():
        ref = model(**b)
        out = model(**{k: v[perm] for k, v in b.items()})
    torch.testing.assert_close(out.logits, ref.logits[perm], atol=1e-5, rtol=1e-5)
    assert torch.equal(out.predictions, ref.predictions[perm])


TABLE_3 = {  # the paper's ablation table -> config switches
    "w/o IPS-CL": {"use_ips_cl": False},
    "w/o MGI": {"use_mgi": False},
    "w/o Row-grained": {"use_row_grained": False},
    "w/o Column-grained": {"use_col_grained": False},
}


def test_ablation_switches_map_to_table_3() -> None:
    full = make_model(ips_top_k=1)
    b = make_batch()
    variants = {name: make_model(ips_top_k=1, **kw) for name, kw in TABLE_3.items()}
    heads, head_dim, max_len = 2, D // 2, 12
    assert n_params(variants["w/o Row-grained"]) == n_params(full) - 2 * heads * head_dim  # m_3 of both MGEs
    assert n_params(variants["w/o Column-grained"]) == n_params(full) - 2 * max_len  # m_4 of both MGEs
    no_mgi = variants["w/o MGI"]
    assert not hasattr(no_mgi, "interweave") and not hasattr(no_mgi, "gate")
    assert n_params(no_mgi) == n_params(full) - n_params(full.interweave) - n_params(full.gate)
    full.train()
    no_ips = variants["w/o IPS-CL"].train()
    out_full, out_no_ips = full(**b), no_ips(**b)
    assert set(out_no_ips.loss_components) == {"crf", "cl"}
    torch.testing.assert_close(out_no_ips.logits, out_full.logits)  # same weights, no IPS-CL term
    torch.testing.assert_close(out_full.loss - out_no_ips.loss, out_full.loss_components["ips_cl"])
    full.eval()
    with torch.no_grad():
        ref = full(**b).logits
        for name in ("w/o MGI", "w/o Row-grained", "w/o Column-grained"):
            assert not torch.allclose(variants[name].eval()(**b).logits, ref, atol=1e-5), name
    with pytest.raises(ValueError, match="use_row_grained or use_col_grained"):
        make_config(use_row_grained=False, use_col_grained=False)


def test_default_image_for_posts_without_images() -> None:
    model = make_model(missing_image="default_image").eval()
    b = make_batch()
    mask = b["image_mask"].clone()
    mask[2] = 0  # post 2 loses its image
    with torch.no_grad():
        out = model(**{**b, "image_mask": mask})
        pv = b["pixel_values"].clone()
        pv[2, 0] = 0.0  # the default (mean) image given explicitly
        explicit = model(**{**b, "pixel_values": pv, "image_mask": b["image_mask"]})
        text_only = model(b["input_ids"], b["attention_mask"], labels=b["labels"])
        masked = make_model(missing_image="mask").eval()
        masked_only = masked(b["input_ids"], b["attention_mask"], labels=b["labels"])
        masked_text = masked(b["input_ids"], b["attention_mask"], labels=b["labels"], pixel_values=b["pixel_values"],
                             image_mask=torch.zeros_like(mask))
    torch.testing.assert_close(out.logits, explicit.logits, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(text_only.logits[0], masked_only.logits[0], atol=1e-4)  # default image vs none
    torch.testing.assert_close(masked_text.logits, masked_only.logits, atol=1e-5, rtol=1e-5)  # all masked == no image


def test_visual_grounding_crops_at_their_own_resolution() -> None:
    b = make_batch()
    whole = make_model().eval()
    one_crop = MGIPSCLForTokenClassification(make_config(crops_per_image=1, crop_size=32)).eval()
    one_crop.load_state_dict(whole.state_dict())  # same architecture: 1 crop at full size == the image
    crops = b["pixel_values"][:, :, None]
    with torch.no_grad():
        torch.testing.assert_close(one_crop(**{**b, "pixel_values": None, "crop_pixel_values": crops}).logits,
                                   whole(**b).logits)
    small = make_model(crops_per_image=3, crop_size=16).eval()  # the paper's form: 3 small crops per image
    assert small.config.visual_tokens_per_image == 1 + 3 * 1
    crops = torch.randn(3, 2, 3, 3, 16, 16)
    with torch.no_grad():
        ref = small(b["input_ids"], b["attention_mask"], crop_pixel_values=crops, image_mask=b["image_mask"]).logits
        crops2 = crops.clone()
        crops2[0, 0, 2] = torch.randn(3, 16, 16)
        out = small(b["input_ids"], b["attention_mask"], crop_pixel_values=crops2, image_mask=b["image_mask"]).logits
    assert not torch.allclose(out[0], ref[0], atol=1e-5) and torch.allclose(out[1:], ref[1:], atol=1e-5)
    with pytest.raises(ValueError, match="crop_pixel_values"):
        small(b["input_ids"], pixel_values=b["pixel_values"])


def test_cached_patch_tokens_equal_the_pixel_path() -> None:
    from mner_hf.training.feature_cache import CachedFeatureCollator

    model = make_model(vision_attends_text=False).eval()
    b = make_batch()
    feats = model.vision_encoder.cache_features(b["pixel_values"], b["image_mask"])
    assert feats.shape == (3, 2, 3, 5, D)  # (B, M, L_v + 1, S, D_v)
    rows = [{"input_ids": b["input_ids"][i].tolist(), "image_embeds": feats[i, : int(b["image_mask"][i].sum())].tolist(),
             "image_mask": [1] * int(b["image_mask"][i].sum())} for i in range(3)]
    collated = CachedFeatureCollator(lambda rs: {"input_ids": torch.tensor([r["input_ids"] for r in rs])})(rows)
    with torch.no_grad():
        ref = model(**b).logits
        out = model(b["input_ids"], b["attention_mask"], labels=b["labels"], image_embeds=collated["image_embeds"],
                    image_mask=collated["image_mask"]).logits
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    mutual = make_model().eval()
    with pytest.raises(ValueError, match="cannot be cached"):
        mutual.vision_encoder.cache_features(b["pixel_values"], b["image_mask"])
    with pytest.raises(ValueError, match="vision_attends_text=False"):
        mutual(b["input_ids"], image_embeds=feats, image_mask=b["image_mask"])


def test_bad_inputs() -> None:
    model = make_model().eval()
    b = make_batch()
    with pytest.raises(ValueError, match="max_images"):
        model(b["input_ids"], pixel_values=torch.randn(3, 4, 3, 32, 32))
    with pytest.raises(ValueError, match="pixel_values must be"):
        model(b["input_ids"], pixel_values=torch.randn(3, 1, 3, 64, 64))
    with pytest.raises(ValueError, match="only one of"):
        model(b["input_ids"], pixel_values=b["pixel_values"], image_embeds=torch.randn(3, 2, 3, 5, D))
    with pytest.raises(ValueError, match="max_text_length=12"):
        model(torch.ones(1, 13, dtype=torch.long))


def test_gradient_checkpointing_same_gradients() -> None:
    batch = make_batch()
    grads = []
    for checkpointing in (False, True):
        model = make_model(ips_top_k=1).train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            assert model.text_encoder.encoder.layer[0].gradient_checkpointing
            assert model.vision_encoder.backbone.encoder.layers[0].gradient_checkpointing
        model(**batch).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    reentrant = make_model().train()
    reentrant.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    with pytest.raises(RuntimeError, match="non-reentrant"):
        reentrant(**batch)
    for name, g in grads[0].items():
        torch.testing.assert_close(g, grads[1][name], atol=1e-5, rtol=1e-4, msg=name)


def test_sdpa_equals_eager() -> None:
    batch = make_batch()
    outs = []
    for impl in ("sdpa", "eager"):
        model = make_model()
        model.set_attn_implementation(impl)
        assert model.attention_base() == impl
        outs.append(model.eval()(**batch).logits)
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)


def test_save_load_round_trip_in_process_and_trust_remote_code(tmp_path) -> None:
    model = make_model(interweave_layers=2).eval()
    batch = make_batch()
    with torch.no_grad():
        ref = model(**batch).logits
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == "mgips_cl" and cfg["interweave_layers"] == 2
    assert cfg["auto_map"]["AutoModelForTokenClassification"] == "modeling_mgips_cl.MGIPSCLForTokenClassification"
    for f in ("modeling_mgips_cl.py", "mgips_modules.py", "mgips_losses.py", "prefix_attention.py", "crf.py"):
        assert (tmp_path / f).exists(), f
    loaded = MGIPSCLForTokenClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, ref, atol=1e-6, rtol=1e-6)
    torch.save(batch, tmp_path / "batch.pt")
    torch.save(ref, tmp_path / "ref.pt")
    script = (
        "import sys; sys.modules['mner_hf'] = None\n"
        "import torch\n"
        "from transformers import AutoModelForTokenClassification\n"
        f"m = AutoModelForTokenClassification.from_pretrained({str(tmp_path)!r}, trust_remote_code=True).eval()\n"
        "assert 'mner_hf' not in type(m).__module__, type(m).__module__\n"
        f"b = torch.load({str(tmp_path / 'batch.pt')!r}); ref = torch.load({str(tmp_path / 'ref.pt')!r})\n"
        "with torch.no_grad(): out = m(**b).logits\n"
        "assert torch.allclose(out, ref, atol=1e-6), (out - ref).abs().max()\n"
        "print('OK', type(m).__name__)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "OK MGIPSCLForTokenClassification" in res.stdout


def test_config_validation_messages_and_projection_only_when_shapes_differ() -> None:
    with pytest.raises(ValueError, match="max_images must be >= 1"):
        make_config(max_images=0)
    with pytest.raises(ValueError, match="cl_temperature must be > 0"):
        make_config(cl_temperature=0.0)
    with pytest.raises(ValueError, match="missing_image"):
        make_config(missing_image="blank")
    with pytest.raises(ValueError, match="multiple of"):
        make_config(vision_config=dict(VISION, image_size=30))
    with pytest.raises(ValueError, match="'O'"):
        make_config(id2label={0: "B-PER", 1: "I-PER"}, label2id={"B-PER": 0, "I-PER": 1})
    assert not hasattr(make_model(), "vision_kv_to_text")  # equal widths and heads: the K/V are used as they are
    wide = make_model(vision_config=dict(VISION, hidden_size=48, num_attention_heads=3), vision_attends_text=True)
    assert len(wide.vision_kv_to_text) == 2 and len(wide.text_kv_to_vision) == 2
    deeper = make_model(vision_config=dict(VISION, num_hidden_layers=4)).eval()  # 2 text vs 4 vision layers
    with torch.no_grad():
        assert torch.isfinite(deeper(**make_batch()).logits).all()
        assert torch.isfinite(wide.eval()(**make_batch()).logits).all()


def test_from_encoders_loads_pretrained_text_and_vision(tmp_path, minilm_path) -> None:
    from transformers import AutoModel, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(3)
    vision_dir = tmp_path / "clip"
    CLIPVisionModel(CLIPVisionConfig(hidden_size=D, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                     image_size=32, patch_size=16)).save_pretrained(vision_dir)
    model = MGIPSCLForTokenClassification.from_encoders(
        text=minilm_path, vision=str(vision_dir), labels=["O", "B-PER", "I-PER"], contrastive_dim=8, max_text_length=40
    )
    ref_text = AutoModel.from_pretrained(minilm_path)
    ref_vision = CLIPVisionModel.from_pretrained(vision_dir)
    assert torch.equal(model.text_encoder.embeddings.word_embeddings.weight, ref_text.embeddings.word_embeddings.weight)
    assert torch.equal(model.vision_encoder.backbone.embeddings.patch_embedding.weight,
                       ref_vision.embeddings.patch_embedding.weight)
    assert model.config.id2label == {0: "O", 1: "B-PER", 2: "I-PER"}
    assert model.config.visual_tokens_per_image == 5  # (32 / 16)^2 patches + class token
    assert len(model.vision_kv_to_text) == 6  # MiniLM 384 wide vs 32: projected K/V per text layer


def test_grounding_crops_file_layout_loader(tmp_path) -> None:
    from pathlib import Path

    from PIL import Image
    from transformers import CLIPImageProcessorPil

    from mner_hf.models.mgips_crops import load_grounding_crops

    images = sorted((Path(__file__).resolve().parents[1] / "src/mner_hf/sample/images").glob("*.jpg"))[:3]
    crop_dir = tmp_path / "crops"
    crop_dir.mkdir()
    photo = Image.open(images[0]).convert("RGB")
    photo.crop((0, 0, 60, 60)).save(crop_dir / f"{images[0].stem}_crop0.jpg")
    photo.crop((20, 20, 90, 90)).save(crop_dir / f"{images[0].stem}_crop1.png")
    proc = CLIPImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    batch, report = load_grounding_crops([[images[0], images[1]], [images[2]]], crop_dir, proc, crops_per_image=3, crop_size=16)
    assert batch["crop_pixel_values"].shape == (2, 2, 3, 3, 16, 16)
    assert batch["image_mask"].tolist() == [[1, 1], [1, 0]]
    assert (report.crops_found, report.whole_image_fill) == (2, 3 + 1 + 3)
    expected = proc(images=[Image.open(crop_dir / f"{images[0].stem}_crop1.png").convert("RGB")], return_tensors="pt")
    torch.testing.assert_close(batch["crop_pixel_values"][0, 0, 1], expected["pixel_values"][0])
    whole = proc(images=[Image.open(images[0]).convert("RGB")], return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(batch["crop_pixel_values"][0, 0, 2], whole)  # missing crop 2: the whole image
    model = make_model(crops_per_image=3, crop_size=16).eval()
    ids = torch.randint(5, 100, (2, 6))
    with torch.no_grad():
        assert torch.isfinite(model(ids, **batch).logits).all()


def test_feature_cache_stores_patch_tokens_for_mgips_cl(tmp_path) -> None:
    import numpy as np

    from checkpoint_factory import tiny_model_and_processor
    from mner_hf.builders import load_dataset
    from mner_hf.training.feature_cache import cache_image_features

    _, proc = tiny_model_and_processor("mgips_cl", tmp_path / "src")
    ds = load_dataset("sample")["train"].select(range(3))
    with pytest.raises(ValueError, match="cannot be cached"):
        cache_image_features(ds, proc, make_model().vision_encoder, tmp_path / "cache")
    enc = make_model(vision_attends_text=False).eval().vision_encoder
    cached = cache_image_features(ds, proc, enc, tmp_path / "cache", batch_size=2)
    from datasets import List, Value

    assert cached.features["image_embeds"] == List(List(List(List(Value("float32")))))  # (n, L+1, S, D) float32
    for i in range(3):
        feats = proc.encode_example(ds[i]["tokens"], None, ds[i]["images"])
        ref = enc.cache_features(torch.from_numpy(np.asarray(feats["pixel_values"]))[None], torch.tensor([feats["image_mask"]]))[0]
        got = torch.tensor(cached[i]["image_embeds"])
        assert got.shape == ref.shape == (len(feats["image_mask"]), 3, 5, D)
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
