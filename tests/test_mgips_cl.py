"""MGIPS-CL model tests on tiny configs (hidden 32, 2 layers, 32x32 images, 16x16 patches)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from mner_hf.models.configuration_mgips_cl import MGIPSCLConfig
from mner_hf.models.modeling_mgips_cl import MGIPSCLForTokenClassification

LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC"}
D = 32


def make_config(**kw) -> MGIPSCLConfig:
    text = dict(hidden_size=D, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    vision = dict(hidden_size=D, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
                  patch_size=16)
    base = dict(text_config=text, vision_config=vision, id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
                max_images=3, fusion_dropout=0.0, contrastive_dim=16)
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


def test_losses_finite_with_gradients_into_every_module() -> None:
    model = make_model(bidirectional_mutual_attention=True).train()
    b = make_batch()
    out = model(**b)
    assert set(out.loss_components) == {"crf", "ips_cl", "cl"}
    for value in out.loss_components.values():
        assert torch.isfinite(value) and value.item() > 0
    assert torch.allclose(out.loss, sum(out.loss_components.values()))  # eq. 19 (weighted terms)
    # the weighted IPS-CL term equals the loss function on the model's own projections
    with torch.no_grad():
        text, _, _, vectors = model._encode(b["input_ids"], b["attention_mask"], None, b["pixel_values"],
                                            b["image_mask"].bool(), None)
    assert vectors is not None and text.shape == (3, 8, D)
    # each contrastive term alone reaches its projection heads and both encoders
    out.loss_components["ips_cl"].backward(retain_graph=True)
    assert model.text_projection.weight.grad.abs().sum() > 0
    assert model.image_projection.weight.grad.abs().sum() > 0
    assert model.vision_encoder.backbone.embeddings.patch_embedding.weight.grad.abs().sum() > 0
    model.zero_grad()
    out.loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert no_grad == []
    groups = model.param_groups()
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert set(groups) == {"text", "vision", "fusion", "crf"}
    gate_ids = {id(p) for p in model.gate.parameters()}
    assert gate_ids <= {id(p) for p in groups["fusion"]}  # gate is optimised


def test_ablation_switches_remove_exactly_their_module() -> None:
    full = make_model()
    lin = D * D + D
    no_mgi = make_model(use_mgi=False)
    removed = n_params(full.interweave) + n_params(full.gate) + n_params(full.visual_to_text)
    assert n_params(no_mgi) == n_params(full) - removed and not hasattr(no_mgi, "interweave")
    assert n_params(make_model(use_row_grained=False)) == n_params(full) - 2 * 2 * lin  # 2 MGEs x (q, k)
    assert n_params(make_model(use_col_grained=False)) == n_params(full) - 2 * 2 * lin
    heads = n_params(full.text_projection) + n_params(full.image_projection)
    assert n_params(make_model(use_ips_cl=False, use_standard_cl=False)) == n_params(full) - heads
    batch = make_batch()
    full.train()
    no_ips = make_model(use_ips_cl=False).train()
    out_full, out_no_ips = full(**batch), no_ips(**batch)
    assert set(out_no_ips.loss_components) == {"crf", "cl"}
    assert torch.allclose(out_no_ips.logits, out_full.logits)  # same weights (seed), same emissions
    assert torch.allclose(out_full.loss - out_no_ips.loss, out_full.loss_components["ips_cl"])
    full.eval()
    for kw in ({"use_mgi": False}, {"use_row_grained": False}, {"use_col_grained": False}):
        other = make_model(**kw).eval()
        assert not torch.allclose(other(**batch).logits, full(**batch).logits), kw
    with pytest.raises(ValueError, match="use_row_grained or use_col_grained"):
        make_config(use_row_grained=False, use_col_grained=False)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_and_other_posts_do_not_change_a_post(bidirectional: bool) -> None:
    model = make_model(bidirectional_mutual_attention=bidirectional).eval()
    batch = make_batch()
    with torch.no_grad():
        out = model(**batch)
        # post 1 alone: no padded text (6 tokens), one image slot only
        alone = model(
            input_ids=batch["input_ids"][1:2, :6], attention_mask=batch["attention_mask"][1:2, :6],
            labels=batch["labels"][1:2, :6], pixel_values=batch["pixel_values"][1:2, :1],
            image_mask=batch["image_mask"][1:2, :1],
        )
        # garbage in the padded image slot and padded tokens must not matter
        noisy = {k: v.clone() for k, v in batch.items()}
        noisy["pixel_values"][1, 1] = 5 * torch.randn(3, 32, 32)
        noisy["input_ids"][1, 6:] = 7
        out_noisy = model(**noisy)
    w = int(alone.word_mask.sum())
    assert torch.allclose(out.logits[1, :w], alone.logits[0, :w], atol=1e-5)
    assert torch.equal(out.predictions[1, :w], alone.predictions[0, :w])
    assert torch.allclose(out.logits, out_noisy.logits, atol=1e-5)
    assert set(out.loss_components) == {"crf"}  # contrastive terms are training-only


def test_images_change_the_output_and_crops_are_extra_slots() -> None:
    model = make_model().eval()
    b = make_batch()
    with torch.no_grad():
        with_img = model(**b).logits
        text_only = model(b["input_ids"], b["attention_mask"], labels=b["labels"]).logits
        as_crops = model(b["input_ids"], b["attention_mask"], labels=b["labels"],
                         pixel_values=b["pixel_values"][:, :1], image_mask=b["image_mask"][:, :1],
                         crop_pixel_values=b["pixel_values"][:, 1:], crop_mask=b["image_mask"][:, 1:]).logits
        no_image_mask = model(b["input_ids"], b["attention_mask"], labels=b["labels"],
                              pixel_values=b["pixel_values"], image_mask=torch.zeros(3, 2, dtype=torch.long)).logits
    assert not torch.allclose(with_img, text_only, atol=1e-4)
    assert torch.allclose(with_img, as_crops, atol=1e-6)
    assert torch.allclose(no_image_mask, text_only, atol=1e-5)  # all images masked == no images


def test_image_embeds_input_and_bad_inputs() -> None:
    model = make_model().train()
    b = make_batch()
    embeds = torch.randn(3, 2, D)
    out = model(b["input_ids"], b["attention_mask"], labels=b["labels"], image_embeds=embeds, image_mask=b["image_mask"])
    assert set(out.loss_components) == {"crf", "ips_cl", "cl"} and torch.isfinite(out.loss)
    with pytest.raises(ValueError, match="image_embeds must be"):
        model(b["input_ids"], image_embeds=torch.randn(3, 2, D + 1))
    with pytest.raises(ValueError, match="max_images"):
        model(b["input_ids"], pixel_values=torch.randn(3, 4, 3, 32, 32))
    with pytest.raises(ValueError, match="image_size"):
        model(b["input_ids"], pixel_values=torch.randn(3, 1, 3, 64, 64))
    with pytest.raises(ValueError, match="either pixel_values"):
        model(b["input_ids"], pixel_values=b["pixel_values"], image_embeds=embeds)


def test_gradient_checkpointing_same_gradients() -> None:
    batch = make_batch()
    grads = []
    for checkpointing in (False, True):
        model = make_model(bidirectional_mutual_attention=True).train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model(**batch).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], atol=1e-5), name


def test_sdpa_equals_eager() -> None:
    batch = make_batch()
    outs = []
    for impl in ("sdpa", "eager"):
        model = make_model(bidirectional_mutual_attention=True)
        model.set_attn_implementation(impl)
        assert model.attention_base() == impl
        outs.append(model.eval()(**batch).logits)
    assert torch.allclose(outs[0], outs[1], atol=1e-5)


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
        assert torch.allclose(loaded(**batch).logits, ref, atol=1e-6)
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


def test_config_validation_messages() -> None:
    with pytest.raises(ValueError, match="max_images must be >= 1"):
        make_config(max_images=0)
    with pytest.raises(ValueError, match="cl_temperature must be > 0"):
        make_config(cl_temperature=0.0)
    with pytest.raises(ValueError, match="multiple of"):
        make_config(vision_config=dict(hidden_size=D, num_hidden_layers=1, num_attention_heads=2, image_size=30, patch_size=16))
    with pytest.raises(ValueError, match="'O'"):
        make_config(id2label={0: "B-PER", 1: "I-PER"}, label2id={"B-PER": 0, "I-PER": 1})


def test_from_encoders_loads_pretrained_text_and_vision(tmp_path, minilm_path) -> None:
    from transformers import AutoModel, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(3)
    vision_dir = tmp_path / "clip"
    CLIPVisionModel(CLIPVisionConfig(hidden_size=D, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                     image_size=32, patch_size=16)).save_pretrained(vision_dir)
    model = MGIPSCLForTokenClassification.from_encoders(
        text=minilm_path, vision=str(vision_dir), labels=["O", "B-PER", "I-PER"], contrastive_dim=8
    )
    ref_text = AutoModel.from_pretrained(minilm_path)
    ref_vision = CLIPVisionModel.from_pretrained(vision_dir)
    assert torch.equal(model.text_encoder.embeddings.word_embeddings.weight, ref_text.embeddings.word_embeddings.weight)
    assert torch.equal(model.vision_encoder.backbone.embeddings.patch_embedding.weight,
                       ref_vision.embeddings.patch_embedding.weight)
    assert model.config.id2label == {0: "O", 1: "B-PER", 2: "I-PER"}
    assert model.config.visual_tokens_per_image == 5  # (32 / 16)^2 patches + class token
