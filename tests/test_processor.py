"""MNERProcessor: label alignment, raw text, image modes and policies, truncation, save/load."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, BertTokenizer, ViTImageProcessorPil

from mner_hf.models.image_loading import ImageLoadError, stitch_images
from mner_hf.models.labels import DEFAULT_LABELS
from mner_hf.models.processing_mner import MNERProcessor

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "kaw", "##hi", "leonard", "plays", "in",
         "toronto", "the", "raptors", "win", "a", "b", "c", "d", "e", "."]
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
           (128, 0, 0), (0, 128, 0), (0, 0, 128)]


@pytest.fixture()
def tiny_tokenizer(tmp_path) -> BertTokenizer:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB), encoding="utf-8")
    return BertTokenizer(str(vocab))


@pytest.fixture()
def image_processor() -> ViTImageProcessorPil:
    return ViTImageProcessorPil(size={"height": 8, "width": 8})


@pytest.fixture()
def proc(tiny_tokenizer, image_processor) -> MNERProcessor:
    return MNERProcessor(image_processor, tiny_tokenizer, max_length=32)


def _solid(colour, size=(12, 10)) -> Image.Image:
    return Image.new("RGB", size, colour)


def _slot_colour(pixel_values: torch.Tensor) -> tuple[int, int, int]:
    """Recover the RGB colour of a solid processed image (ViT normalisation: x / 255 * 2 - 1)."""
    rgb = ((pixel_values.mean(dim=(-1, -2)) + 1) / 2 * 255).round().to(torch.int64)
    return tuple(int(v) for v in rgb)


def test_wordpiece_alignment_minilm(minilm_path, image_processor):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_path)
    proc = MNERProcessor(image_processor, tok)
    words = ["Kawhi", "Leonard", "plays", "for", "Toronto", "Raptors"]
    tags = ["B-PER", "I-PER", "O", "O", "B-ORG", "I-ORG"]
    out = proc(words=words, tags=tags)
    tokens = tok.convert_ids_to_tokens(out["input_ids"][0].tolist())
    assert tokens == ["[CLS]", "ka", "##w", "##hi", "leonard", "plays", "for", "toronto", "rap", "##tors", "[SEP]"]
    assert out["word_ids"][0].tolist() == [-1, 0, 0, 0, 1, 2, 3, 4, 5, 5, -1]
    lab = {t: i for i, t in enumerate(DEFAULT_LABELS)}
    expected = [-100, lab["B-PER"], -100, -100, lab["I-PER"], 0, 0, lab["B-ORG"], lab["I-ORG"], -100, -100]
    assert out["labels"][0].tolist() == expected
    assert "token_type_ids" in out and out["token_type_ids"].shape == out["input_ids"].shape
    assert out["num_words"] == [6] and out["truncated_entities"] == [0]


def test_batch_padding_and_tag_forms(proc):
    lab = proc.label2id
    out = proc(
        words=[["Kawhi", "plays"], ["the", "Raptors", "win", "."]],
        tags=[["B-PER", "O"], [0, lab["B-ORG"], "O", "O"]],
    )
    assert out["input_ids"].shape == (2, 6)
    assert out["input_ids"][0].tolist() == [2, 5, 6, 8, 3, 0]
    assert out["attention_mask"][0].tolist() == [1, 1, 1, 1, 1, 0]
    assert out["word_ids"][0].tolist() == [-1, 0, 0, 1, -1, -1]
    assert out["labels"][0].tolist() == [-100, lab["B-PER"], -100, 0, -100, -100]
    assert out["labels"][1].tolist() == [-100, 0, lab["B-ORG"], 0, 0, -100]
    assert out["input_ids"].dtype == torch.long and out["word_ids"].dtype == torch.long
    # type normalisation: OTHER -> MISC
    other = proc(words=["a"], tags=["B-OTHER"])
    assert other["labels"][0, 1].item() == lab["B-MISC"]


def test_bad_tags_and_words_are_clear_errors(proc):
    with pytest.raises(ValueError, match=r"post 1, word 1: unknown tag 'B-FOO'"):
        proc(words=[["a"], ["a", "b"]], tags=[["O"], ["O", "B-FOO"]])
    with pytest.raises(ValueError, match=r"post 0, word 0: invalid tag 'X-PER'"):
        proc(words=["a"], tags=["X-PER"])
    with pytest.raises(ValueError, match=r"tag id 9 outside 0..8"):
        proc(words=["a"], tags=[9])
    with pytest.raises(ValueError, match="2 tags for 1 words"):
        proc(words=["a"], tags=["O", "O"])
    with pytest.raises(ValueError, match=r"word 1: empty"):
        proc(words=["a", ""])
    with pytest.raises(ValueError, match="exactly one of"):
        proc(text="a", words=["a"])


def test_raw_text_offsets_and_empty_text(proc):
    text = "  the   Raptors win.\n kawhi "
    out = proc(text=text)
    offsets = out["word_offsets"][0]
    assert [text[s:e] for s, e in offsets] == ["the", "Raptors", "win.", "kawhi"]
    assert out["num_words"] == [4]
    assert int(out["word_ids"][0].max()) == 3
    with pytest.raises(ValueError, match="post 1: empty text"):
        proc(text=["a", "  \n "])
    chars = MNERProcessor(proc.image_processor, proc.tokenizer, word_split="char")
    out = chars(text="ab c")
    assert [("ab c")[s:e] for s, e in out["word_offsets"][0]] == ["a", "b", "c"]
    model_inputs = dict(out)
    meta = MNERProcessor.pop_metadata(model_inputs)
    assert "word_offsets" in meta and set(model_inputs) == {"input_ids", "attention_mask", "token_type_ids",
                                                            "word_ids", "pixel_values", "image_mask"}


def test_word_without_subwords_is_replaced_not_dropped(proc):
    out = proc(words=["a", "\u200b", "b"], tags=["O", "B-PER", "O"])
    assert out["replaced_words"] == [1]
    assert out["word_ids"][0].tolist() == [-1, 0, 1, 2, -1]
    assert out["input_ids"][0, 2].item() == proc.tokenizer.unk_token_id
    assert out["labels"][0, 2].item() == proc.label2id["B-PER"]


def test_images_order_padding_and_values(proc):
    posts = [[_solid(COLOURS[0]), _solid(COLOURS[1])], [], [_solid(COLOURS[2])]]
    out = proc(words=[["a"], ["b"], ["c"]], images=posts)
    assert out["pixel_values"].shape == (3, 2, 3, 8, 8) and out["pixel_values"].dtype == torch.float32
    assert out["image_mask"].tolist() == [[1, 1], [0, 0], [1, 0]]
    assert _slot_colour(out["pixel_values"][0, 0]) == COLOURS[0]
    assert _slot_colour(out["pixel_values"][0, 1]) == COLOURS[1]
    assert _slot_colour(out["pixel_values"][2, 0]) == COLOURS[2]
    assert torch.all(out["pixel_values"][1] == 0) and torch.all(out["pixel_values"][2, 1] == 0)
    # red normalises to exactly (1, -1, -1)
    assert torch.allclose(out["pixel_values"][0, 0, 0], torch.ones(8, 8))
    assert torch.allclose(out["pixel_values"][0, 0, 1], -torch.ones(8, 8))
    none = proc(words=[["a"], ["b"]])
    assert none["pixel_values"].shape == (2, 0, 3, 8, 8) and none["image_mask"].shape == (2, 0)


def test_nine_images_truncate_and_error(proc, tiny_tokenizer, image_processor):
    nine = [_solid(c) for c in COLOURS]
    out = proc(words=["a"], images=nine)
    assert out["images_dropped"] == [5]
    assert out["image_mask"].tolist() == [[1, 1, 1, 1]]
    assert [_slot_colour(out["pixel_values"][0, m]) for m in range(4)] == COLOURS[:4]
    strict = MNERProcessor(image_processor, tiny_tokenizer, too_many_images="error")
    with pytest.raises(ValueError, match="post 0: 9 images but max_images=4"):
        strict(words=["a"], images=nine)


def test_first_and_stitch_modes(tiny_tokenizer, image_processor):
    imgs = [_solid(c, (16, 16)) for c in COLOURS[:4]]
    first = MNERProcessor(image_processor, tiny_tokenizer, image_mode="first")
    out = first(words=["a"], images=imgs)
    assert out["image_mask"].tolist() == [[1]] and _slot_colour(out["pixel_values"][0, 0]) == COLOURS[0]
    stitch = MNERProcessor(image_processor, tiny_tokenizer, image_mode="stitch", stitch_tile_size=16)
    out = stitch(words=[["a"], ["b"]], images=[imgs, [imgs[3]]])
    assert out["pixel_values"].shape == (2, 1, 3, 8, 8) and out["image_mask"].tolist() == [[1], [1]]
    grid = stitch_images(imgs, tile_size=(16, 16))
    expected = torch.from_numpy(image_processor(images=[grid], return_tensors="np")["pixel_values"][0])
    assert torch.allclose(out["pixel_values"][0, 0], expected)
    # 2x2 grid of 4 colours downsized to 8x8: the top-left quadrant is the first image's colour
    assert _slot_colour(out["pixel_values"][0, 0, :, :2, :2]) == COLOURS[0]
    assert _slot_colour(out["pixel_values"][0, 0, :, 6:, 6:]) == COLOURS[3]
    assert _slot_colour(out["pixel_values"][1, 0]) == COLOURS[3]


def test_corrupt_image_policies_in_a_batch(tiny_tokenizer, image_processor):
    buf = io.BytesIO()
    _solid(COLOURS[1]).save(buf, format="JPEG")
    truncated = {"bytes": buf.getvalue()[:60], "path": "post1_b.jpg"}
    posts = [[_solid(COLOURS[0])], [_solid(COLOURS[2]), truncated, _solid(COLOURS[3])]]
    words = [["a"], ["b"]]
    err = MNERProcessor(image_processor, tiny_tokenizer, on_image_error="error")
    with pytest.raises(ImageLoadError, match=r"post 1: <60 bytes of 'post1_b.jpg'>"):
        err(words=words, images=posts)
    skip = MNERProcessor(image_processor, tiny_tokenizer, on_image_error="skip")
    out = skip(words=words, images=posts)
    assert out["image_mask"].tolist() == [[1, 0], [1, 1]] and out["image_errors"] == [0, 1]
    assert _slot_colour(out["pixel_values"][1, 1]) == COLOURS[3]
    assert "post1_b.jpg" in out["image_error_messages"][1][0]
    ph = MNERProcessor(image_processor, tiny_tokenizer, on_image_error="placeholder")
    out = ph(words=words, images=posts)
    assert out["image_mask"].tolist() == [[1, 0, 0], [1, 0, 1]] and out["image_errors"] == [0, 1]
    assert torch.all(out["pixel_values"][1, 1] == 0)
    assert _slot_colour(out["pixel_values"][1, 2]) == COLOURS[3]


def test_truncation_counts_cut_entities(tiny_tokenizer, image_processor):
    proc = MNERProcessor(image_processor, tiny_tokenizer, max_length=6)
    words = ["a", "b", "Kawhi", "c", "d", "e"]  # 7 sub-words + 2 specials = 9 > 6
    tags = ["B-PER", "O", "B-PER", "I-PER", "O", "B-LOC"]
    out = proc(words=words, tags=tags)
    assert out["input_ids"].shape == (1, 6)
    assert out["word_ids"][0].tolist() == [-1, 0, 1, 2, 2, -1]
    assert out["truncated_words"] == [3]
    # "Kawhi c" (PER, words 2-3) loses its second word and "e" (LOC) is gone; the first PER is kept
    assert out["truncated_entities"] == [2]
    assert out["labels"][0].tolist() == [-100, 1, 0, 1, -100, -100]
    untouched = MNERProcessor(image_processor, tiny_tokenizer, max_length=9)(words=words, tags=tags)
    assert untouched["truncated_entities"] == [0] and untouched["truncated_words"] == [0]


def test_invalid_options(tiny_tokenizer, image_processor):
    for bad in ({"image_mode": "all"}, {"too_many_images": "drop"}, {"on_image_error": "ignore"},
                {"max_images": 0}, {"label2id": {"B-PER": 0}}, {"max_length": 2}):
        with pytest.raises(ValueError):
            MNERProcessor(image_processor, tiny_tokenizer, **bad)


def test_save_and_load_round_trip(tmp_path, tiny_tokenizer, image_processor):
    labels = ["O", "B-PER", "I-PER", "E-PER", "S-PER"]
    proc = MNERProcessor(image_processor, tiny_tokenizer, max_images=2, image_mode="multi", on_image_error="skip",
                         max_length=20, label2id={t: i for i, t in enumerate(labels)}, word_split="char")
    proc.save_pretrained(tmp_path / "proc")
    assert (tmp_path / "proc" / "processing_mner.py").is_file()
    assert (tmp_path / "proc" / "image_loading.py").is_file() and (tmp_path / "proc" / "labels.py").is_file()
    auto = AutoProcessor.from_pretrained(tmp_path / "proc", trust_remote_code=True)
    direct = MNERProcessor.from_pretrained(tmp_path / "proc")
    assert type(auto).__name__ == "MNERProcessor" and type(auto) is not MNERProcessor  # the saved code
    kwargs = dict(text=["abc", "d e"], tags=[["S-PER", "O", "O"], ["B-PER", "E-PER"]],
                  images=[[_solid(COLOURS[0]), b"junk", _solid(COLOURS[1]), _solid(COLOURS[2])], None])
    ref = proc(**kwargs)
    for loaded in (auto, direct):
        assert loaded.label2id == proc.label2id and loaded.max_images == 2 and loaded.word_split == "char"
        assert loaded.on_image_error == "skip" and loaded.max_length == 20 and loaded.scheme == "BIOES"
        out = loaded(**kwargs)
        assert set(out) == set(ref)
        for key in ref:
            if isinstance(ref[key], torch.Tensor):
                assert torch.equal(out[key], ref[key]), key
            else:
                assert out[key] == ref[key], key
    assert ref["image_errors"] == [1, 0] and ref["images_dropped"] == [2, 0]
    assert ref["image_mask"].tolist() == [[1], [0]] and ref["labels"][0, 1].item() == 4  # S-PER


def test_real_sample_post_with_nine_photos(tiny_tokenizer, image_processor):
    from mner_hf.resources import sample_dir

    photos = sorted((sample_dir() / "images").glob("L364I3366_*.jpg"))
    assert len(photos) == 9
    proc = MNERProcessor(image_processor, tiny_tokenizer)
    out = proc(words=["a", "b"], images=photos)
    assert out["images_dropped"] == [5] and out["image_errors"] == [0]
    assert out["image_mask"].tolist() == [[1, 1, 1, 1]]
    # every slot holds the right photo, in post order (JPEGs decoded at reduced scale: jpeg_draft)
    full = MNERProcessor(image_processor, tiny_tokenizer, jpeg_draft=False)(words=["a", "b"], images=photos)
    assert proc.decode_size() is not None and full["image_mask"].tolist() == [[1, 1, 1, 1]]
    for m, path in enumerate(photos[:4]):
        with Image.open(path) as im:
            im.draft(None, proc.decode_size())
            assert max(im.size) < 690  # the draft really decoded a smaller image
            expected = image_processor(images=[im.convert("RGB")], return_tensors="np")["pixel_values"][0]
        assert torch.allclose(out["pixel_values"][0, m], torch.from_numpy(expected), atol=1e-6)
        with Image.open(path) as im:
            expected_full = image_processor(images=[im.convert("RGB")], return_tensors="np")["pixel_values"][0]
        assert torch.allclose(full["pixel_values"][0, m], torch.from_numpy(expected_full), atol=1e-6)
        # DCT-domain downscaling is a good downscale: the two differ by little (pixel values ~[-1, 1])
        assert float((out["pixel_values"][0, m] - full["pixel_values"][0, m]).abs().mean()) < 0.05
    # the decompression-bomb limit applies through the processor: placeholders, masked, counted
    tiny_limit = MNERProcessor(image_processor, tiny_tokenizer, max_pixels=1000, on_image_error="placeholder")
    out = tiny_limit(words=["a"], images=photos[:2])
    assert out["image_mask"].tolist() == [[0, 0]] and out["image_errors"] == [2]
    assert "more than the limit of 1000" in out["image_error_messages"][0][0]


def test_encode_example_single_image_source(proc, tmp_path):
    path = tmp_path / "one.png"
    _solid(COLOURS[4]).save(path)
    for src in (str(path), path, _solid(COLOURS[4])):
        feat = proc.encode_example(["a"], images=src)
        assert feat["image_mask"] == [1] and feat["pixel_values"].shape == (1, 3, 8, 8)
        assert _slot_colour(torch.from_numpy(feat["pixel_values"][0])) == COLOURS[4]
