"""Frozen-vision feature cache: values, on-disk reuse keyed by the encoder, collation."""

from __future__ import annotations

import pytest
import torch

from mner_hf.training.encoders import tiny_text_encoder, tiny_vision_encoder
from mner_hf.training.feature_cache import CachedFeatureCollator, cache_image_features, image_input_settings, vision_fingerprint


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

    from mner_hf.builders import load_dataset
    from mner_hf.models.processing_mner import MNERProcessor
    from mner_hf.models.vision_encoder import ImageEncoder

    tmp = tmp_path_factory.mktemp("fc")
    ds = load_dataset("sample")["train"]
    text = tiny_text_encoder(tmp / "text", ds["tokens"])
    vision = tiny_vision_encoder(tmp / "vision")
    proc = MNERProcessor(
        image_processor=AutoImageProcessor.from_pretrained(vision, backend="pil"),
        tokenizer=AutoTokenizer.from_pretrained(text), max_images=4, max_length=128,
        label2id={t: i for i, t in enumerate(ds.features["ner_tags"].feature.names)},
    )
    torch.manual_seed(0)
    enc = ImageEncoder(AutoConfig.from_pretrained(vision))
    enc.load_pretrained(vision)
    enc.eval()
    return ds, proc, enc, tmp


def test_cached_features_equal_encoder_and_are_reused(setup):
    ds, proc, enc, tmp = setup
    cached = cache_image_features(ds, proc, enc, tmp / "cache", batch_size=4)
    assert cached["num_images"] == ds["num_images"]
    from datasets import List, Value

    # typed columns: float32 vectors (inferred from Python floats they were float64: twice the size)
    assert cached.features["image_embeds"] == List(List(Value("float32")))
    assert cached.features["image_mask"] == List(Value("int64"))
    for i in (0, 3):
        row = ds[i]
        feats = proc.encode_example(row["tokens"], None, row["images"])
        with torch.no_grad():
            ref = enc(torch.from_numpy(feats["pixel_values"])[None], torch.tensor([feats["image_mask"]])).image_embeds[0]
        got = torch.tensor(cached[i]["image_embeds"])
        assert got.shape == ref.shape == (min(4, row["num_images"]), enc.output_dim)
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    files = sorted(p.name for p in (tmp / "cache").glob("*.arrow"))
    assert len(files) == 1 and vision_fingerprint(enc, proc.image_processor, 4, image_input_settings(proc)) in files[0]
    # second call: same file, loaded not recomputed (a poisoned encoder would change values)
    poisoned = lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed"))  # noqa: E731
    orig_forward = enc.forward
    enc.forward = poisoned
    try:
        again = cache_image_features(ds, proc, enc, tmp / "cache", batch_size=4)
    finally:
        enc.forward = orig_forward
    assert again[0]["image_embeds"] == cached[0]["image_embeds"]
    # other weights -> other key -> other file
    with torch.no_grad():
        next(enc.parameters()).add_(1.0)
    key2 = vision_fingerprint(enc, proc.image_processor, 4, image_input_settings(proc))
    with torch.no_grad():
        next(enc.parameters()).sub_(1.0)
    assert key2 not in files[0]


def test_cached_collator_pads_embeds(setup):
    ds, proc, enc, tmp = setup
    cached = cache_image_features(ds, proc, enc, tmp / "cache", batch_size=4)

    def base(rows):
        return proc.pad_batch([proc.encode_example(r["tokens"], r["ner_tags"], None) for r in rows])

    rows = [cached[i] for i in range(len(cached))]
    batch = CachedFeatureCollator(base)(rows)
    assert "pixel_values" not in batch
    b, m, d = batch["image_embeds"].shape
    assert (b, d) == (len(rows), enc.output_dim) and m == max(min(4, n) for n in ds["num_images"])
    assert batch["image_mask"].sum(1).tolist() == [min(4, n) for n in ds["num_images"]]
    for i, r in enumerate(rows):
        n = len(r["image_mask"])
        torch.testing.assert_close(batch["image_embeds"][i, :n], torch.tensor(r["image_embeds"]))
        assert batch["image_embeds"][i, n:].abs().sum() == 0
    with pytest.raises(KeyError, match="image_embeds"):
        CachedFeatureCollator(base)([ds[0]])


def test_posts_with_and_without_images_share_a_batch(setup, tmp_path):
    """A batch mixing photo posts and text-only posts, and a batch without any image, both cache."""
    ds, proc, enc, _ = setup
    with_images = next(i for i in range(len(ds)) if ds[i]["num_images"])
    mixed = ds.select([with_images, with_images]).map(lambda r, i: {"images": r["images"] if i == 0 else []},
                                                      with_indices=True)
    cached = cache_image_features(mixed, proc, enc, tmp_path / "mixed", batch_size=2)
    assert len(cached[0]["image_embeds"]) == min(4, ds[with_images]["num_images"]) and cached[1]["image_embeds"] == []
    assert cached[1]["image_mask"] == []
    none = mixed.map(lambda r: {"images": []})
    assert cache_image_features(none, proc, enc, tmp_path / "none", batch_size=2)["image_embeds"] == [[], []]


def test_cache_key_follows_the_processors_image_loading(setup):
    """A cache built with reduced-scale JPEG decoding is not reused for full-size decoding (or for
    another error policy): those settings change the pixels, so they are part of the key."""
    import copy

    ds, proc, enc, tmp = setup
    full = copy.copy(proc)
    full.jpeg_draft = False
    assert proc.decode_size() is not None and full.decode_size() is None
    placeholder = copy.copy(proc)
    placeholder.on_image_error = "placeholder"
    keys = {vision_fingerprint(enc, p.image_processor, 4, image_input_settings(p)) for p in (proc, full, placeholder)}
    assert len(keys) == 3
    folder = tmp / "cache_draft"
    drafted = cache_image_features(ds, proc, enc, folder, batch_size=4)
    decoded = cache_image_features(ds, full, enc, folder, batch_size=4)
    assert len(list(folder.glob("*.arrow"))) == 2  # a second file, not the drafted one reused
    row = next(i for i in range(len(ds)) if ds[i]["num_images"])
    a, b = torch.tensor(drafted[row]["image_embeds"]), torch.tensor(decoded[row]["image_embeds"])
    assert a.shape == b.shape and not torch.equal(a, b)  # the two decodings give other pixels
    # and the full-size cache holds what the encoder computes from full-size decoding
    feats = full.encode_example(ds[row]["tokens"], None, ds[row]["images"])
    with torch.no_grad():
        ref = enc(torch.from_numpy(feats["pixel_values"])[None], torch.tensor([feats["image_mask"]])).image_embeds[0]
    torch.testing.assert_close(b, ref, atol=1e-5, rtol=1e-4)
