"""`mner-hf predict`: batched tagging of a JSONL file, relative image paths, bad lines reported with
their numbers while the rest is tagged, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from transformers import pipeline

from mner_hf.cli import main
from mner_hf.predict import predict_file
from checkpoint_factory import SAMPLE_IMAGES, TEXT, assert_same_entities, build_checkpoint
from http_servers import serve


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


# ---------------------------------------------------------------------------- issue 10 regressions
def _strict_json(line: str):
    """json.loads that refuses NaN / Infinity (what every other JSON parser does)."""
    def refuse(name):
        raise AssertionError(f"{name} written into JSON: {line}")
    return json.loads(line, parse_constant=refuse)


def _predict(checkpoint, src, out, *extra):
    return main(["predict", "--model", str(checkpoint), "--input", str(src), "--output", str(out), "--no-progress",
                 *map(str, extra)])


def test_output_that_is_the_input_is_refused_by_any_path(checkpoint, tmp_path, capsys):
    src = tmp_path / "posts.jsonl"
    content = (json.dumps({"id": "a", "text": TEXT}) + "\n").encode()
    src.write_bytes(content)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.jsonl").symlink_to(src)
    os.link(src, tmp_path / "hard.jsonl")
    for same in (src, tmp_path / "sub" / ".." / "posts.jsonl", tmp_path / "link.jsonl", tmp_path / "hard.jsonl"):
        assert _predict(checkpoint, src, same) == 2, same
        err = capsys.readouterr().err
        assert "is the input file" in err and "refusing to overwrite" in err and "Traceback" not in err
        assert src.read_bytes() == content  # before: emptied, exit code 0
    # the symlinked input, written to its target, is refused as well
    assert _predict(checkpoint, tmp_path / "link.jsonl", src) == 2
    assert src.read_bytes() == content


def test_existing_output_survives_an_interrupted_run(checkpoint, tmp_path, monkeypatch):
    src = tmp_path / "posts.jsonl"
    src.write_text("\n".join(json.dumps({"text": f"post number {i}"}) for i in range(5)) + "\n")
    out = tmp_path / "tagged.jsonl"
    out.write_text("previous results\n")
    pipe = pipeline(model=str(checkpoint), trust_remote_code=True, device="cpu")
    calls = []

    def forward(batch, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return type(pipe).forward(pipe, batch, **kw)

    monkeypatch.setattr(pipe, "forward", forward)
    with pytest.raises(KeyboardInterrupt):
        predict_file(pipe, src, out, batch_size=2, progress=False)
    assert out.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["posts.jsonl", "tagged.jsonl"]  # no temporary left
    monkeypatch.undo()
    summary = predict_file(pipe, src, out, batch_size=2, progress=False)
    assert summary.tagged == 5 and len(out.read_text().splitlines()) == 5


def test_bad_bytes_nan_surrogates_and_existing_entities_are_skipped_lines(checkpoint, tmp_path, capsys):
    good = [json.dumps({"id": f"g{i}", "text": f"good post {i}"}) for i in range(4)]
    lines = [
        "\ufeff" + good[0],                                              # 1 ok (UTF-8 BOM first)
        '{"id": "latin1", "text": "caf\xe9 au lait"}',                   # 2 not UTF-8 (0xE9 byte)
        good[1],                                                         # 3 ok
        '{"id": "n", "text": "x", "score": NaN}',                        # 4 NaN is not JSON
        '{"id": "i", "text": "x", "w": -Infinity}',                      # 5
        '{"id": "big", "text": "x", "w": 1e999}',                        # 6 overflows to inf
        '{"id": "\\ud800", "text": "surrogate in a passed-through field"}',  # 7 lone surrogate (JSON escape)
        '{"id": "t", "text": "hello \\udc80 world"}',                    # 8 lone surrogate in the text
        json.dumps({"id": "e", "text": "x", "entities": ["mine"]}),      # 9 would be overwritten
        good[2],                                                         # 10 ok
        '{"id": "meta", "text": "x", "meta": {"k": ["ok", "\\udfff"]}}',  # 11 nested surrogate
        good[3],                                                         # 12 ok
    ]
    src = tmp_path / "posts.jsonl"
    with src.open("wb") as handle:
        for line in lines:
            handle.write(line.encode("latin-1" if "caf\xe9" in line else "utf-8") + b"\r\n")
    out = tmp_path / "tagged.jsonl"
    assert _predict(checkpoint, src, out) == 1
    err = capsys.readouterr().err
    expected = {
        2: "not valid UTF-8: byte 0xE9 at column 30",
        4: "invalid JSON: NaN is not a JSON value",
        5: "invalid JSON: -Infinity is not a JSON value",
        6: "invalid JSON: the number 1e999 is too large for a float",
        7: "field 'id' holds a lone surrogate U+D800 at character 0",
        8: "field 'text' holds a lone surrogate U+DC80 at character 6",
        9: "the object already has the field 'entities', which the output would overwrite; pass --entities-key",
        11: "field 'meta.k[1]' holds a lone surrogate U+DFFF at character 0",
    }
    for line_no, message in expected.items():
        assert f"{src}:{line_no}: {message}" in err, (line_no, err)
    assert "Traceback" not in err
    rows = [_strict_json(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["g0", "g1", "g2", "g3"]  # every good line, in order
    # --entities-key writes under another key; the line that had "entities" is now kept intact
    out2 = tmp_path / "tagged2.jsonl"
    assert _predict(checkpoint, src, out2, "--entities-key", "mner_entities") == 1
    rows2 = [_strict_json(x) for x in out2.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows2] == ["g0", "g1", "e", "g2", "g3"]
    assert rows2[2]["entities"] == ["mine"] and isinstance(rows2[2]["mner_entities"], list)
    assert [r["mner_entities"] for r in rows2 if r["id"] != "e"] == [r["entities"] for r in rows]


def test_nan_score_fails_its_line_only(checkpoint, tmp_path, capsys, monkeypatch):
    src = tmp_path / "posts.jsonl"
    src.write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t in
                             enumerate(["paris again", "poison post", "rome again"])) + "\n")
    pipe = pipeline(model=str(checkpoint), trust_remote_code=True, device="cpu")

    def postprocess(outputs, **kw):
        entities = type(pipe).postprocess(pipe, outputs, **kw)
        if outputs["meta"][0]["words"][0] == "poison":
            entities = [{"entity_group": "PER", "score": float("nan"), "word": "poison"}]
        return entities

    monkeypatch.setattr(pipe, "postprocess", postprocess)
    out = tmp_path / "tagged.jsonl"
    summary = predict_file(pipe, src, out, batch_size=3, progress=False)
    assert summary.tagged == 2 and summary.failed == 1
    assert f"{src}:2: the model gave a NaN or infinite score" in capsys.readouterr().err
    assert [_strict_json(x)["id"] for x in out.read_text().splitlines()] == [0, 2]


def test_exit_codes_match_the_documentation(checkpoint, tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"text": TEXT}) + "\n")
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps({"text": TEXT}) + "\n{broken\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    broken_ckpt = tmp_path / "broken_ckpt"
    broken_ckpt.mkdir()
    (broken_ckpt / "config.json").write_text("{not json")
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "o.jsonl"
    cases = [
        (0, [good, out], [], None),
        (0, [empty, out], [], None),
        (1, [mixed, out], [], "mixed.jsonl:2: invalid JSON"),
        (2, [good, out], ["--model", tmp_path], "is not a checkpoint folder"),
        (2, [good, out], ["--model", broken_ckpt], "cannot load the checkpoint"),
        (2, [tmp_path / "nope.jsonl", out], [], "nope.jsonl not found"),
        (2, [tmp_path, out], [], "is not a file"),
        (2, [good, good], [], "is the input file"),
        (2, [good, tmp_path], [], "is a folder, not a file"),
        (2, [good, tmp_path / "afile" / "o.jsonl"], [], "afile"),
        (2, [good, out], ["--batch-size", 0], "--batch-size must be >= 1"),
        (2, [good, out], ["--timeout", 0], "--timeout must be a positive number"),
        (2, [good, out], ["--max-image-bytes", 0], "--max-image-bytes must be >= 1"),
        (2, [good, out], ["--entities-key", "text"], "--entities-key must be a new field name"),
    ]
    for code, (src, dst), extra, message in cases:
        args = ["predict", "--model", str(checkpoint), "--input", str(src), "--output", str(dst), "--no-progress"]
        args += [str(x) for x in extra]
        assert main(args) == code, (code, src, dst, extra)
        err = capsys.readouterr().err
        assert "Traceback" not in err
        if message:
            assert message in err, (message, err)
        if code == 2:
            assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    with pytest.raises(SystemExit) as info:  # argparse usage errors: 2 as well
        main(["predict", "--model", str(checkpoint), "--input", str(good), "--output", str(out),
              "--too-many-images", "drop"])
    assert info.value.code == 2
    assert not list(tmp_path.glob(".*.part"))  # no temporary file left behind


def test_trickling_image_url_fails_its_line_within_the_timeout(checkpoint, tmp_path, capsys):
    src = tmp_path / "posts.jsonl"
    with serve("trickle_body", payload=SAMPLE_IMAGES[0].read_bytes(), interval=0.05) as server:
        src.write_text(json.dumps({"id": "slow", "text": TEXT, "images": [server.url]}) + "\n"
                       + json.dumps({"id": "fine", "text": TEXT}) + "\n")
        start = time.monotonic()
        code = _predict(checkpoint, src, tmp_path / "o.jsonl", "--timeout", 1)
        assert time.monotonic() - start < 10.0
    assert code == 1
    assert f"{src}:1: image 0: could not fetch image URL {server.url}: the download took longer" in capsys.readouterr().err
    with serve("endless") as server:
        src.write_text(json.dumps({"id": "big", "text": TEXT, "images": [server.url]}) + "\n")
        assert _predict(checkpoint, src, tmp_path / "o.jsonl", "--max-image-bytes", 5000) == 1
    assert "more than the limit of 5000 bytes" in capsys.readouterr().err
    assert [_strict_json(x)["id"] for x in (tmp_path / "o.jsonl").read_text().splitlines()] == []


def test_cr_only_line_endings_are_lines(checkpoint, tmp_path, capsys):
    src = tmp_path / "posts.jsonl"
    src.write_bytes(b'{"id": 1, "text": "paris again"}\r{broken\r{"id": 3, "tokens": ["rome"]}\r')
    out = tmp_path / "tagged.jsonl"
    assert _predict(checkpoint, src, out) == 1
    err = capsys.readouterr().err
    assert f"{src}:2: invalid JSON (Expecting property name enclosed in double quotes at column 2)" in err
    assert "paris again" not in err  # the message is about line 2 only, not the whole file
    assert [_strict_json(x)["id"] for x in out.read_text().splitlines()] == [1, 3]
