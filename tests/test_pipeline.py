"""multimodal-ner pipeline: entity spans and CRF-marginal scores, input forms, batching, bad input,
and loading a saved checkpoint with trust_remote_code in a fresh interpreter without mner_hf.

The tiny-checkpoint builders at the top are imported by test_predict_cli / test_handler /
test_demo_browser as well.
"""

from __future__ import annotations

import base64
import functools
import http.server
import io
import json
import subprocess
import sys
import threading
import time

import pytest
import torch
from PIL import Image
from transformers import pipeline

from mner_hf.checkpoint import widget_examples
from mner_hf.models.labels import tags_to_spans
from mner_hf.models.pipeline_mner import MultimodalNERPipeline, spans_with_scores

from http_servers import serve
from checkpoint_factory import (  # noqa: E402
    KINDS,
    SAMPLE_IMAGES,
    TEXT,
    assert_same_entities,
    build_checkpoint,
    closed_port,
    tiny_model_and_processor,
)


def input_error(match: str):
    """``pytest.raises`` for the pipeline's MNERInputError, whichever copy of the class raised it
    (a pipeline loaded from a folder uses the checkpoint's own copy of pipeline_mner.py)."""
    return pytest.raises(ValueError, match=match)


@pytest.fixture(scope="module")
def tpm(tmp_path_factory):
    folder = build_checkpoint("tpm_mi", tmp_path_factory)
    return pipeline(model=str(folder), trust_remote_code=True, device="cpu")


# ---------------------------------------------------------------------------- spans and scores
def test_spans_with_scores_values():
    words = ["RT", "Lionel", "Messi", "in", "Paris"]
    text = "RT  Lionel Messi in Paris!"
    offsets = [(0, 2), (4, 10), (11, 16), (17, 19), (20, 25)]
    tags = ["O", "B-PER", "I-PER", "O", "B-LOC"]
    probs = [0.9, 0.8, 0.6, 0.99, 0.5]
    out = spans_with_scores(tags, probs, words, offsets, text)
    assert out == [
        {"entity_group": "PER", "score": pytest.approx(0.7), "word": "Lionel Messi", "start": 4, "end": 16,
         "word_indices": [1, 2], "words": ["Lionel", "Messi"]},
        {"entity_group": "LOC", "score": pytest.approx(0.5), "word": "Paris", "start": 20, "end": 25,
         "word_indices": [4], "words": ["Paris"]},
    ]
    # an orphan I- starts an entity, as in tags_to_spans / seqeval default mode
    assert [e["word"] for e in spans_with_scores(["I-ORG", "O"], [0.4, 1.0], ["a", "b"], [(0, 1), (2, 3)], "a b")] == ["a"]


@pytest.mark.parametrize("kind", ["tpm_mi", "mgips_cl"])
def test_pipeline_equals_model_viterbi_and_marginals(kind, tmp_path):
    model, processor = tiny_model_and_processor(kind, tmp_path)
    pipe = MultimodalNERPipeline(model=model, processor=processor, device="cpu")
    images = [str(p) for p in SAMPLE_IMAGES[:2]]
    got = pipe({"text": TEXT, "images": images})

    batch = processor(text=TEXT, images=images)
    processor.pop_metadata(batch)
    with torch.no_grad(), pipe.precision.autocast():  # the pipeline's own precision (auto: bf16 or fp32)
        out = model(**batch, return_marginals=True)
    tags = [model.config.id2label[int(t)] for t in out.predictions[0]]
    probs = out.marginals[0].gather(1, out.predictions[0].unsqueeze(1)).squeeze(1)
    spans = tags_to_spans(tags)
    assert len(got) == len(spans)
    words = TEXT.split()
    for ent, span in zip(got, spans):
        assert ent["entity_group"] == span.type
        assert ent["words"] == words[span.start : span.end]
        assert TEXT[ent["start"] : ent["end"]] == ent["word"] == " ".join(ent["words"])
        assert ent["score"] == pytest.approx(float(probs[span.start : span.end].mean()), abs=1e-6)
        assert 0.0 < ent["score"] <= 1.0 + 1e-6
    # the images reach the model: dropping them changes the emissions
    no_img = processor(text=TEXT)
    processor.pop_metadata(no_img)
    with torch.no_grad():
        text_only = model(input_ids=no_img["input_ids"], attention_mask=no_img["attention_mask"],
                          token_type_ids=no_img["token_type_ids"], word_ids=no_img["word_ids"])
    assert not torch.allclose(text_only.logits, out.logits.float())


def test_input_forms_agree(tpm):
    images = [str(p) for p in SAMPLE_IMAGES[:2]]
    ref = tpm({"text": TEXT, "images": images})
    raw = [p.read_bytes() for p in SAMPLE_IMAGES[:2]]
    as_bytes = tpm({"text": TEXT, "images": raw})
    as_pil = tpm({"text": TEXT, "images": [Image.open(io.BytesIO(b)) for b in raw]})
    as_uri = tpm({"text": TEXT, "images": ["data:image/jpeg;base64," + base64.b64encode(b).decode() for b in raw]})
    as_tokens = tpm({"tokens": TEXT.split(), "images": images})
    assert as_bytes == ref and as_uri == ref and as_tokens == ref
    # a PIL image arrives decoded at full size; paths / bytes / URIs of JPEGs are decoded at reduced
    # scale (MNERProcessor.jpeg_draft): same entities, scores within a small tolerance
    assert [{k: v for k, v in e.items() if k != "score"} for e in as_pil] == [
        {k: v for k, v in e.items() if k != "score"} for e in ref]
    assert [e["score"] for e in as_pil] == pytest.approx([e["score"] for e in ref], abs=0.02)
    # image order carries meaning (temporal position embedding): swapping changes scores
    swapped = tpm({"text": TEXT, "images": images[::-1]})
    assert [e["score"] for e in swapped] != [e["score"] for e in ref]


def test_url_images_served_on_localhost(tpm):
    folder = SAMPLE_IMAGES[0].parent
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a, **k: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        by_url = tpm({"text": TEXT, "images": [base + p.name for p in SAMPLE_IMAGES[:2]]})
        with input_error("image 1: could not fetch image URL .*HTTP 404"):
            tpm({"text": TEXT, "images": [base + SAMPLE_IMAGES[0].name, base + "missing.jpg"]})
    finally:
        server.shutdown()
    assert by_url == tpm({"text": TEXT, "images": [str(p) for p in SAMPLE_IMAGES[:2]]})


def test_batched_equals_one_by_one(tpm):
    posts = [
        {"text": TEXT, "images": [str(p) for p in SAMPLE_IMAGES[:3]]},
        {"text": "no images here at all"},
        {"tokens": ["Paris", "and", "rome", "again", "and", "again", "tonight"], "images": [str(SAMPLE_IMAGES[5])]},
        "a bare string post",
        {"text": "two photos", "images": [str(p) for p in SAMPLE_IMAGES[7:9]]},
    ]
    single = [tpm(p) for p in posts]
    assert_same_entities(tpm(posts, batch_size=2), single)
    assert_same_entities(tpm(posts, batch_size=8), single)
    assert sum(len(s) for s in single) > 0


def test_bad_inputs_give_clear_errors(tpm, tmp_path):
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello, not a picture")
    corrupt = SAMPLE_IMAGES[0].read_bytes()[:300]
    cases = [
        ({"text": "   "}, "empty text"),
        ({"tokens": []}, "empty 'tokens'"),
        ({"tokens": ["ok", ""]}, "token 1 is empty"),
        ({"text": "hi", "tokens": ["hi"]}, "exactly one of 'text'"),
        ({"text": "hi", "image": []}, "unknown keys"),
        (42, "a post must be a dict"),
        ({"text": "hi", "images": [str(not_image)]}, "image 0: not a readable image: .*notes.txt"),
        ({"text": "hi", "images": [corrupt]}, "image 0: not a readable image: <300 bytes>"),
        ({"text": "hi", "images": [str(tmp_path / "nope.jpg")]}, "image 0: image file not found"),
        ({"text": "hi", "images": [str(p) for p in SAMPLE_IMAGES[:4]]}, "4 images but this model takes at most 3"),
        ({"text": "word " * 200}, "text too long: 200 words"),
        ({"text": "hi", "images": 3.5}, "'images' must be a list"),
    ]
    for post, message in cases:
        with input_error(message):
            tpm(post)
    with input_error(r"could not fetch image URL http://127\.0\.0\.1:\d+/x\.jpg"):
        tpm({"text": "hi", "images": [f"http://127.0.0.1:{closed_port()}/x.jpg"]}, timeout=3)
    with pytest.raises(ValueError, match="too_many_images must be one of"):
        tpm("hi", too_many_images="drop")
    # truncate keeps the first max_images, in order
    four = [str(p) for p in SAMPLE_IMAGES[:4]]
    assert tpm({"text": TEXT, "images": four}, too_many_images="truncate") == tpm({"text": TEXT, "images": four[:3]})


def test_empty_list_gives_empty_list(tpm):
    assert tpm([]) == []
    assert tpm([], batch_size=4) == []
    with pytest.raises(TypeError, match="unknown multimodal-ner parameters"):  # parameters still checked
        tpm([], top_k=3)


def test_batch_errors_name_the_post(tpm):
    posts = ["a good post", "another one", {"text": "   "}, "last"]
    for batch_size in (1, 2, 8):
        with input_error(r"^post 2: empty text"):
            tpm(posts, batch_size=batch_size)
    with input_error(r"^post 1: image 0: not a readable image"):
        tpm(["ok", {"text": "x", "images": [b"not an image"]}])
    with input_error(r"^post 3: token 0 is empty"):  # a generator streams: the error comes while iterating
        list(tpm(p for p in ["a", "b", "c", {"tokens": [""]}]))


def test_lone_surrogates_name_the_character(tpm):
    with input_error(r"'text' holds a lone surrogate U\+D800 at character 6"):
        tpm("hello \ud800 world")
    with input_error(r"token 1 holds a lone surrogate U\+DC80 at character 2 of the token"):
        tpm({"tokens": ["fine", "ab\udc80c"]})
    with input_error(r"^post 1: 'text' holds a lone surrogate U\+DFFF at character 0"):
        tpm(["fine", "\udfff tail"])
    # a valid astral character (a surrogate PAIR in UTF-16, one code point here) is fine
    assert isinstance(tpm("Paris \U0001F600 tonight"), list)
    # a token that is one whitespace character (U+00A0 in Twitter-2015) is a word, as in the readers
    ents = tpm({"tokens": ["paris", "\u00a0", "tonight"]})
    assert all(e["word"] == " ".join(e["words"]) for e in ents)


def test_url_download_bounded_in_total_time_and_bytes(tpm):
    image = SAMPLE_IMAGES[0].read_bytes()
    with serve("trickle_body", payload=image, interval=0.05) as server:
        start = time.monotonic()
        with input_error(r"image 0: could not fetch image URL .*took longer than the limit of 1 s"):
            tpm({"text": TEXT, "images": [server.url]}, timeout=1)
        assert time.monotonic() - start < 3.0
    with serve("ok", payload=image) as server:
        with input_error(f"image 0: could not fetch image URL .*more than the limit of 1000 bytes"):
            tpm({"text": TEXT, "images": [server.url]}, max_image_bytes=1000)
        by_url = tpm({"text": TEXT, "images": [server.url]}, max_image_bytes=len(image))
    assert by_url == tpm({"text": TEXT, "images": [str(SAMPLE_IMAGES[0])]})
    with serve("endless") as server:
        with input_error("more than the limit of 33554432 bytes"):  # the default limit, 32 MiB
            tpm({"text": TEXT, "images": [server.url]})
    for bad in (0, -3, "10"):
        with pytest.raises(ValueError, match="max_image_bytes must be a positive integer"):
            tpm("x", max_image_bytes=bad)


def test_text_only_checkpoint_ignores_images(tmp_path_factory):
    pipe = pipeline(model=str(build_checkpoint("bert_crf", tmp_path_factory)), trust_remote_code=True, device="cpu")
    assert pipe.max_images == 0
    ref = pipe(TEXT)
    assert pipe({"text": TEXT, "images": [str(SAMPLE_IMAGES[0])]}) == ref
    with input_error("not a readable image"):  # still validated
        pipe({"text": TEXT, "images": [b"not an image"]})


def test_checkpoint_folder_contents_and_widgets(tmp_path_factory):
    folder = build_checkpoint("mgips_cl", tmp_path_factory)
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"]["multimodal-ner"]["impl"] == "pipeline_mner.MultimodalNERPipeline"
    assert config["auto_map"]["AutoModelForTokenClassification"].startswith("modeling_mgips_cl.")
    processor_config = json.loads((folder / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"] == "processing_mner.MNERProcessor"
    for name in ("pipeline_mner.py", "processing_mner.py", "image_loading.py", "labels.py", "handler.py",
                 "model.safetensors", "README.md"):
        assert (folder / name).is_file(), name
    assert not list(folder.glob("*.bin"))
    widgets = widget_examples()
    assert widgets and all(set(w) == {"text", "example_title"} and w["text"].strip() for w in widgets)


FRESH_SCRIPT = r"""
import sys
sys.modules["mner_hf"] = None  # the package must not be importable
import json
from transformers import pipeline
folders, images = json.loads(sys.argv[1])
out = {}
for kind, folder in folders.items():
    pipe = pipeline(model=folder, trust_remote_code=True, device="cpu")
    assert "mner_hf" not in type(pipe).__module__, type(pipe).__module__
    out[kind] = [pipe({"text": %r, "images": images}), pipe(["second post", {"tokens": ["x", "y"]}], batch_size=2)]
print("RESULT" + json.dumps(out))
""" % TEXT


@pytest.mark.slow
def test_fresh_interpreter_without_mner_hf(tmp_path_factory):
    folders = {kind: str(build_checkpoint(kind, tmp_path_factory)) for kind in KINDS}
    images = [str(p) for p in SAMPLE_IMAGES[:2]]
    proc = subprocess.run([sys.executable, "-c", FRESH_SCRIPT, json.dumps([folders, images])],
                          capture_output=True, text=True, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path_factory.getbasetemp())})
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = json.loads(proc.stdout.split("RESULT", 1)[1])
    for kind, folder in folders.items():
        pipe = pipeline(model=folder, trust_remote_code=True, device="cpu")
        expected = [pipe({"text": TEXT, "images": images}), pipe(["second post", {"tokens": ["x", "y"]}], batch_size=2)]
        assert_same_entities(fresh[kind], expected)
