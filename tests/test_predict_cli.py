"""`mner-hf predict`: batched tagging of a JSONL file, relative image paths, bad lines reported with
their numbers while the rest is tagged, exit codes."""

from __future__ import annotations

import json
import shutil

import pytest
from transformers import pipeline

from mner_hf.cli import main
from checkpoint_factory import SAMPLE_IMAGES, TEXT, assert_same_entities, build_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_checkpoint("tpm_mi", tmp_path_factory)


def test_predict_tags_good_lines_and_reports_bad_ones(checkpoint, tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    for p in SAMPLE_IMAGES[:4]:
        shutil.copy(p, tmp_path / "imgs" / p.name)
    (tmp_path / "imgs" / "broken.jpg").write_bytes(SAMPLE_IMAGES[0].read_bytes()[:200])
    rel = [f"imgs/{p.name}" for p in SAMPLE_IMAGES[:4]]
    lines = [
        json.dumps({"id": "a", "text": TEXT, "images": rel[:2]}),                 # 1 ok
        json.dumps({"id": "b", "tokens": ["paris", "again"]}),                     # 2 ok
        "{not json",                                                                # 3 bad JSON
        "",                                                                         # 4 blank
        json.dumps({"id": "c", "text": "   "}),                                    # 5 empty text
        json.dumps({"id": "d", "text": "x", "images": ["imgs/broken.jpg"]}),       # 6 corrupt image
        json.dumps({"id": "e", "text": "x", "images": rel}),                       # 7 too many images
        json.dumps({"id": "f", "images": rel[:1]}),                                # 8 no text
        json.dumps({"id": "g", "text": "third good post", "images": [rel[3]]}),    # 9 ok
    ]
    src = tmp_path / "posts.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out" / "tagged.jsonl"
    code = main(["predict", "--model", str(checkpoint), "--input", str(src), "--output", str(out),
                 "--batch-size", "2", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    for line_no, message in [(3, "invalid JSON"), (5, "empty text"), (6, "image 0: not a readable image"),
                             (7, "the post has 4 images but this model takes at most 3"), (8, "the object has neither 'text' nor 'tokens'")]:
        assert f"{src}:{line_no}: {message}" in captured.err, (line_no, captured.err)
    assert "posts tagged     3" in captured.out and "lines failed     5" in captured.out
    assert "blank lines      1" in captured.out
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "g"]
    assert rows[0]["images"] == [str(tmp_path / r) for r in rel[:2]]
    pipe = pipeline(model=str(checkpoint), trust_remote_code=True, device="cpu")
    assert_same_entities(rows[0]["entities"], pipe({"text": TEXT, "images": [str(tmp_path / r) for r in rel[:2]]}))
    assert_same_entities(rows[1]["entities"], pipe({"tokens": ["paris", "again"]}))
    assert_same_entities(rows[2]["entities"], pipe({"text": "third good post", "images": [str(tmp_path / rel[3])]}))
    total = sum(len(r["entities"]) for r in rows)
    assert f"entities         {total}" in captured.out


def test_predict_all_good_truncate_option_and_fatal_errors(checkpoint, tmp_path, capsys):
    src = tmp_path / "posts.jsonl"
    src.write_text(json.dumps({"text": TEXT, "images": [str(p) for p in SAMPLE_IMAGES[:5]]}) + "\n")
    out = tmp_path / "tagged.jsonl"
    assert main(["predict", "--model", str(checkpoint), "--input", str(src), "--output", str(out),
                 "--too-many-images", "truncate", "--no-progress"]) == 0
    assert len(out.read_text().splitlines()) == 1
    assert main(["predict", "--model", str(tmp_path), "--input", str(src), "--output", str(out)]) == 2
    assert main(["predict", "--model", str(checkpoint), "--input", str(tmp_path / "nope.jsonl"),
                 "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is not a checkpoint folder" in err and "nope.jsonl not found" in err
