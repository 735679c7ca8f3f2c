"""Raw readers: real-data counts, fixtures, malformed input, image policies."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mner_hf.models.labels import tags_to_spans
from mner_hf.readers import (
    MissingImageError,
    MNERFormatError,
    ReadReport,
    read_cmner,
    read_jsonl,
    read_twitter,
)
from mner_hf.resources import sample_dir

FIXTURES = Path(__file__).parent / "fixtures" / "data"
SAMPLE_IMAGES = sorted((sample_dir() / "images").glob("*.jpg"))


def _images(folder: Path, names: list[str]) -> Path:
    """Copy real sample photos into ``folder`` under ``names`` (distinct photos, in order)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, src in zip(names, SAMPLE_IMAGES):
        shutil.copyfile(src, folder / name)
    return folder


def _entities(posts) -> int:
    return sum(len(tags_to_spans(p.tags)) for p in posts)


# ---------------------------------------------------------------- real data (skipped when absent)


@pytest.mark.parametrize(
    "split,posts,entities", [("train", 3373, 6049), ("valid", 723, 1324), ("test", 723, 1351)]
)
def test_twitter2017_counts(shared_data, split, posts, entities):
    report = ReadReport()
    got = list(read_twitter(shared_data / "twitter2017" / f"{split}.txt", report=report))
    assert len(got) == report.posts == posts
    assert _entities(got) == report.entities == entities
    assert report.image_dir_missing and report.images_unresolved == posts
    assert all(p.images == [] for p in got)


def test_twitter2015_train_orphans(shared_data):
    path = shared_data / "twitter2015" / "train.txt"
    kept = ReadReport()
    posts = list(read_twitter(path, report=kept))
    assert len(posts) == 4000
    assert kept.orphans == 186 and kept.orphans_repaired == 0
    assert not any(t.endswith("OTHER") for p in posts for t in p.tags)
    repaired = ReadReport()
    fixed = list(read_twitter(path, orphan_policy="repair", report=repaired))
    assert repaired.orphans == repaired.orphans_repaired == 186
    # repairing changes 186 tags but no entity (an orphan starts an entity in seqeval's default mode)
    assert sum(a != b for p, q in zip(posts, fixed) for a, b in zip(p.tags, q.tags)) == 186
    assert kept.entities == repaired.entities == 6166 + 186


@pytest.mark.parametrize("split,posts,entities", [("train", 3000, 16373), ("dev", 1000, 5395)])
def test_cmner_counts_crlf(shared_data, split, posts, entities):
    path = shared_data / "cmner" / f"{split}.txt"
    assert b"\r\n" in path.read_bytes()[:200]
    got = list(read_cmner(path))
    assert len(got) == posts and _entities(got) == entities
    assert all(len(t) == 1 for p in got[:50] for t in p.tokens)
    assert not any("\r" in t for p in got for t in p.tokens + p.tags)


# ---------------------------------------------------------------- bundled sample (CMNER format)


def test_sample_images_sorted_any_number():
    report = ReadReport()
    posts = list(read_cmner(sample_dir() / "example_text", sample_dir() / "images", report=report))
    counts = [len(p.images) for p in posts]
    assert len(posts) == 6 and sum(counts) == 25 == report.images_found
    assert sorted(counts) == [1, 1, 1, 4, 9, 9]
    for p in posts:
        names = [Path(i).name for i in p.images]
        assert names == sorted(names) and all(n.startswith(p.id + "_") for n in names)
        assert all(Path(i).is_absolute() for i in p.images)
    nine = next(p for p in posts if len(p.images) == 9)
    assert nine.id in ("Laxnkk6GQ", "L364I3366")


def test_cmner_post_with_no_image_and_lf(tmp_path):
    (tmp_path / "t.txt").write_text("WID:abc\n我\tO\n在\tO\n北\tB-LOC\n京\tI-LOC\n\nWID:xyz\n好\tO\n")
    img = _images(tmp_path / "img", ["xyz_2.jpg", "xyz_10.jpg", "other_1.jpg"])
    posts = list(read_cmner(tmp_path / "t.txt", img))
    assert [p.id for p in posts] == ["abc", "xyz"]
    assert posts[0].images == [] and posts[0].tags == ["O", "O", "B-LOC", "I-LOC"]
    assert [Path(i).name for i in posts[1].images] == ["xyz_10.jpg", "xyz_2.jpg"]  # sorted by file name
    assert posts[1].source_line == 7


# ---------------------------------------------------------------- fixtures: Twitter and JSON lines


def test_twitter_fixture_with_images(tmp_path):
    img = _images(tmp_path / "img", ["17_06_1.jpg", "O_2144.jpg", "16_05_01_360.jpg"])
    report = ReadReport()
    posts = list(read_twitter(FIXTURES / "twitter" / "train.txt", img, report=report))
    assert [p.id for p in posts] == ["17_06_1", "O_2144", "16_05_01_360"]
    assert posts[0].tags == ["O", "B-MISC", "I-MISC"]
    assert posts[1].tags[0] == "I-PER" and report.orphans == 1
    assert posts[1].images == [str(img / "O_2144.jpg")]
    assert report.images_found == 3 and not report.image_dir_missing
    crlf = list(read_twitter(FIXTURES / "twitter" / "valid.txt"))
    assert crlf[0].tokens == ["hello", "Trump"] and crlf[0].tags == ["O", "B-PER"]


def test_jsonl_mner_mi_fixture(tmp_path):
    img = _images(tmp_path / "images", ["5302_0.jpg", "5302_1.jpg", "5302_2.jpg", "5303_0.jpg", "5303_1.jpg"])
    report = ReadReport()
    posts = list(read_jsonl(FIXTURES / "mner_mi" / "MNER-MI_train.txt", img, report=report))
    assert [p.id for p in posts] == ["5302", "5303", "5304"]
    assert [len(p.images) for p in posts] == [3, 2, 0]
    assert [Path(i).name for i in posts[0].images] == ["5302_0.jpg", "5302_1.jpg", "5302_2.jpg"]
    assert posts[1].tags == ["B-MISC", "I-MISC", "O", "O"]
    assert posts[0].url == "https://twitter.com/i/web/status/5302" and posts[2].url is None
    assert [p.source_line for p in posts] == [1, 2, 4]
    assert report.entities == 4 and report.images_found == 5


def test_jsonl_mner_mi_plus_second_folder(tmp_path):
    img = _images(tmp_path / "images", ["5302_0.jpg", "5302_1.jpg", "5302_2.jpg"])
    img17 = _images(tmp_path / "twitter2017_images", ["O_538.jpg", "17_06_9.jpg"])
    posts = list(read_jsonl(FIXTURES / "mner_mi" / "MNER-UNI_train.txt", img, twitter2017_image_dir=img17))
    assert posts[1].id == "twitter2017-O_538" and posts[1].images == [str(img17 / "O_538.jpg")]
    assert posts[2].images == [str(img17 / "17_06_9.jpg")]  # no image listed: <IMGID>.jpg
    assert posts[2].url is None  # empty url string -> None
    assert all(Path(i).parent == img for i in posts[0].images)


# ---------------------------------------------------------------- image policies


def test_missing_image_policies(tmp_path):
    img = _images(tmp_path / "images", ["5302_0.jpg", "5302_2.jpg"])  # 5302_1 and 5303_* missing
    path = FIXTURES / "mner_mi" / "MNER-MI_train.txt"
    with pytest.raises(MissingImageError, match=r"MNER-MI_train.txt:1: image .*5302_1.jpg not found"):
        list(read_jsonl(path, img))
    skip = ReadReport()
    posts = list(read_jsonl(path, img, image_policy="skip", report=skip))
    assert [len(p.images) for p in posts] == [2, 0, 0] and len(posts) == 3
    assert skip.images_skipped == 3 and skip.images_found == 2
    ph = ReadReport()
    posts = list(read_jsonl(path, img, image_policy="placeholder", report=ph))
    assert posts[0].images == [str(img / "5302_0.jpg"), None, str(img / "5302_2.jpg")]
    assert posts[1].images == [None, None]
    assert ph.images_placeholder == 3 and ph.images_found == 2
    assert ph.missing_examples[0].endswith("5302_1.jpg")


def test_no_image_folder_is_reported_not_an_error():
    report = ReadReport()
    posts = list(read_jsonl(FIXTURES / "mner_mi" / "MNER-MI_train.txt", report=report))
    assert [p.images for p in posts] == [[], [], []]
    assert report.image_dir_missing and report.images_unresolved == 5
    assert "no image folder given" in report.summary()


def test_nonexistent_image_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(read_twitter(FIXTURES / "twitter" / "train.txt", tmp_path / "nope"))


# ---------------------------------------------------------------- malformed input: file:line errors

BLOCK_CASES = [
    ("IMGID:1\nhello\tO\textra\n", 2, "expected 2 tab-separated columns"),
    ("IMGID:1\nhello O\n", 2, "expected 2 tab-separated columns"),
    ("IMGID:1\nhello\tB-FOO\n", 2, "unknown entity type 'FOO'"),
    ("IMGID:1\nhello\tX-PER\n", 2, "unknown tag 'X-PER'"),
    ("IMGID:1\nhello\tS-PER\n", 2, "not a BIO tag"),
    ("IMGID:1\n\tO\n", 2, "empty token"),
    ("hello\tO\n", 1, "token line outside a post"),
    ("IMGID:\nhello\tO\n", 1, "empty post id"),
    ("IMGID:1\n\n\nIMGID:2\n", 1, "no posts: the file is empty"),
    ("IMGID:../../etc/passwd\nhello\tO\n", 1, "leaves the image folder"),
]


@pytest.mark.parametrize("text,line,message", BLOCK_CASES)
def test_twitter_malformed(tmp_path, text, line, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(MNERFormatError) as info:
        list(read_twitter(path))
    assert info.value.line_no == line and message in str(info.value)
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_cmner_malformed_crlf_and_utf8(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes("WID:a\r\n我\tO\r\n在\tB-PERSON\r\n".encode())
    with pytest.raises(MNERFormatError, match=r"bad.txt:3: unknown entity type 'PERSON'"):
        list(read_cmner(path))
    path.write_bytes(b"WID:a\r\n\xff\xfe\tO\r\n")
    with pytest.raises(MNERFormatError, match=r"bad.txt:2: not valid UTF-8"):
        list(read_cmner(path))


JSONL_CASES = [
    ('{"id": 1, "text": ["a"], "label": ["O"]', "invalid JSON"),
    ("{'id': 1, 'text': ['a'], 'label': ['O'], 'x': open}", "invalid JSON"),
    ('[1, 2]', "expected a JSON object"),
    ('{"id": 1, "text": ["a"]}', "missing key(s) label"),
    ('{"id": 1, "text": ["a", "b"], "label": ["O"]}', "label/text length mismatch: 2 tokens but 1 labels"),
    ('{"id": 1, "text": ["a", ""], "label": ["O", "O"]}', "empty token at position 1"),
    ('{"id": 1, "text": ["a"], "label": ["B-CITY"]}', "unknown entity type 'CITY'"),
    ('{"id": 1, "text": ["a"], "label": ["O"], "images": "1.jpg"}', "'images' must be a list of strings"),
    ('{"id": null, "text": ["a"], "label": ["O"]}', "'id' must be a non-empty string or integer"),
    ('{"id": 1, "text": [], "label": []}', "has no tokens"),
    ("[" * 100_000, "nested too deeply"),
    ('{"id": ' + "7" * 5000 + ', "text": ["a"], "label": ["O"]}', "invalid JSON"),
]


@pytest.mark.parametrize("line,message", JSONL_CASES)
def test_jsonl_malformed(tmp_path, line, message):
    path = tmp_path / "MNER-MI_train.txt"
    path.write_text('{"id": 0, "text": ["ok"], "label": ["O"], "images": []}\n' + line + "\n")
    with pytest.raises(MNERFormatError) as info:
        list(read_jsonl(path))
    assert info.value.line_no == 2 and message in str(info.value), str(info.value)


def test_jsonl_duplicate_id_kept_counted_and_never_eval(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text('{"id": 7, "text": ["a"], "label": ["O"]}\n{"id": "7", "text": ["b"], "label": ["O"]}\n')
    report = ReadReport()
    assert [p.tokens for p in read_jsonl(path, report=report)] == [["a"], ["b"]]
    assert report.duplicate_ids == 1 and "x.txt:2: post id '7' repeated (first at line 1)" in report.notes[0]
    marker = tmp_path / "evaluated"
    path.write_text(f"__import__('pathlib').Path({str(marker)!r}).touch()\n")
    with pytest.raises(MNERFormatError, match="invalid JSON"):
        list(read_jsonl(path))
    assert not marker.exists()


def test_bad_policy_names_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="image policy"):
        list(read_twitter(FIXTURES / "twitter" / "train.txt", image_policy="ignore"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="orphan policy"):
        list(read_cmner(sample_dir() / "example_text", orphan_policy="drop"))  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="data file not found"):
        list(read_twitter(tmp_path / "absent.txt"))


# ---------------------------------------------------------------- issue 10: real published data reads


def test_unicode_whitespace_tokens_are_tokens(tmp_path):
    """U+00A0 (Twitter-2015) and U+3000 tokens are kept; only a truly empty token is an error."""
    path = tmp_path / "t.txt"
    path.write_text("IMGID:1\nRT\tO\n\u00a0\tO\nObama\tB-PER\n\nIMGID:2\n\u3000\tO\n北\tB-LOC\n")
    posts = list(read_twitter(path))
    assert posts[0].tokens == ["RT", "\u00a0", "Obama"] and posts[0].tags == ["O", "O", "B-PER"]
    assert posts[1].tokens == ["\u3000", "北"]
    cm = tmp_path / "c.txt"
    cm.write_bytes("WID:a\r\n我\tO\r\n\u3000\tO\r\n京\tB-LOC\r\n".encode())
    assert list(read_cmner(cm))[0].tokens == ["我", "\u3000", "京"]
    js = tmp_path / "MNER-MI_train.txt"
    js.write_text('{"id": 1, "text": ["a", "\\u00a0", "\\u3000"], "label": ["O", "O", "O"]}\n')
    assert list(read_jsonl(js))[0].tokens == ["a", "\u00a0", "\u3000"]


def test_cr_only_line_endings_read_like_lf(tmp_path):
    text = "WID:a\n我\tO\n北\tB-LOC\n京\tI-LOC\n\nWID:b\n好\tO\n"
    lf, cr, mixed = tmp_path / "lf.txt", tmp_path / "cr.txt", tmp_path / "mixed.txt"
    lf.write_bytes(text.encode())
    cr.write_bytes(text.replace("\n", "\r").encode())
    lines = text.split("\n")
    mixed.write_bytes("".join(ln + ("\r\n", "\r", "\n")[i % 3] for i, ln in enumerate(lines[:-1])).encode())
    want = [(p.id, p.tokens, p.tags, p.source_line) for p in read_cmner(lf)]
    for path in (cr, mixed):
        assert [(p.id, p.tokens, p.tags, p.source_line) for p in read_cmner(path)] == want
    # a CR-only file with a bad line: the message names the line and stays short
    bad = tmp_path / "bad.txt"
    bad.write_bytes(("WID:a\r" + "我\tO\r" * 5000 + "x" * 5000 + "\r").encode())
    with pytest.raises(MNERFormatError) as info:
        list(read_cmner(bad))
    assert info.value.line_no == 5002 and len(str(info.value)) < 300


def test_raw_lines_crlf_split_across_chunks(tmp_path):
    from mner_hf.raw_files import iter_raw_lines as _raw_lines

    path = tmp_path / "x.txt"
    path.write_bytes(b"ab\r\ncd\re\n\r\nf")
    for size in (1, 2, 3, 4, 64):
        assert list(_raw_lines(path, chunk_size=size)) == [b"ab", b"cd", b"e", b"", b"f"]
    path.write_bytes("a\u2028b\x85c\tO\n".encode())  # U+2028 / U+0085 never end a line
    assert list(_raw_lines(path)) == ["a\u2028b\x85c\tO".encode()]


def test_empty_posts_skipped_and_counted(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("IMGID:1\nIMGID:2\nb\tO\n\nIMGID:3\n")
    report = ReadReport()
    assert [p.id for p in read_twitter(path, report=report)] == ["2"]
    assert report.empty_posts == 2 and report.posts == 1
    assert "t.txt:1: post '1' has no token lines" in report.notes[0] and "2 empty posts" in report.summary()


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\r\n\r\n", b"\xef\xbb\xbf"])
def test_empty_or_blank_file_names_the_file(tmp_path, content):
    for reader, name in ((read_twitter, "t.txt"), (read_cmner, "c.txt"), (read_jsonl, "MNER-MI_val.txt")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(MNERFormatError, match=rf"{name}:1: no posts: the file is empty"):
            list(reader(path))


def test_jsonl_lone_surrogate_named_with_line_and_character(tmp_path):
    path = tmp_path / "MNER-MI_train.txt"
    path.write_text('{"id": 1, "text": ["ok"], "label": ["O"]}\n{"id": 2, "text": ["a", "b\\ud83d"], "label": ["O", "O"]}\n')
    with pytest.raises(MNERFormatError) as info:
        list(read_jsonl(path))
    assert info.value.line_no == 2
    assert "'text'[1] holds a lone surrogate U+D83D at character 1" in str(info.value)
    path.write_text('{"id": "x\\udc00", "text": ["a"], "label": ["O"]}\n')
    with pytest.raises(MNERFormatError, match=r":1: 'id' holds a lone surrogate U\+DC00"):
        list(read_jsonl(path))
    # a valid pair of surrogate escapes is one emoji, not an error
    path.write_text('{"id": 1, "text": ["\\ud83d\\ude00"], "label": ["O"]}\n')
    assert list(read_jsonl(path))[0].tokens == ["\U0001F600"]


def test_jsonl_python_literal_lines_read_safely(tmp_path):
    path = tmp_path / "MNER-MI_train.txt"
    path.write_text("{'id': 5302, 'text': ['Kevin', 'Durant'], 'images': [], 'label': ['B-PER', 'I-PER'], 'url': None}\n")
    report = ReadReport()
    posts = list(read_jsonl(path, report=report))
    assert posts[0].id == "5302" and posts[0].tags == ["B-PER", "I-PER"] and report.python_literal_lines == 1


@pytest.mark.parametrize("name", ["../secret.jpg", "/etc/passwd", "a/../../b.jpg", "..\\\\x.jpg", "C:\\\\x.jpg", ""])
def test_jsonl_image_paths_confined_to_the_folder(tmp_path, name):
    img = _images(tmp_path / "images", ["1_0.jpg"])
    (tmp_path / "secret.jpg").write_bytes(SAMPLE_IMAGES[0].read_bytes())
    path = tmp_path / "MNER-MI_train.txt"
    row = {"id": 1, "text": ["a"], "label": ["O"], "images": ["1_0.jpg", name]}
    import json

    path.write_text('{"id": 0, "text": ["ok"], "label": ["O"]}\n' + json.dumps(row) + "\n")
    for policy in ("error", "skip", "placeholder"):
        with pytest.raises(MNERFormatError, match=r"MNER-MI_train.txt:2: .*image") as info:
            list(read_jsonl(path, img, image_policy=policy))
        assert info.value.line_no == 2


def test_jsonl_image_in_a_subfolder_is_allowed(tmp_path):
    img = _images(tmp_path / "images" / "sub", ["1_0.jpg"]).parent
    path = tmp_path / "MNER-MI_train.txt"
    path.write_text('{"id": 1, "text": ["a"], "label": ["O"], "images": ["sub/1_0.jpg"]}\n')
    assert list(read_jsonl(path, img))[0].images == [str(img / "sub" / "1_0.jpg")]


def _bad_images(folder: Path) -> dict[str, Path]:
    """A 0-byte file, a truncated JPEG, text named .jpg, and a 70-megapixel PNG bomb."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    data = SAMPLE_IMAGES[0].read_bytes()
    files = {"empty": folder / "e_0.jpg", "truncated": folder / "t_0.jpg", "text": folder / "x_0.jpg",
             "bomb": folder / "b_0.jpg"}
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["text"].write_text("not an image")
    Image.new("1", (10_000, 7_000)).save(files["bomb"], format="PNG")  # small file, 70 MP
    return files


def test_corrupt_images_follow_the_policy_and_are_counted(tmp_path):
    from mner_hf.readers import CorruptImageError, check_image

    files = _bad_images(tmp_path / "images")
    assert check_image(SAMPLE_IMAGES[0]) is None
    assert "not a recognised image" in check_image(files["empty"])
    assert "truncated" in check_image(files["truncated"])
    assert "decompression bomb" in check_image(files["bomb"])
    assert check_image(files["bomb"], max_pixels=None) is None
    path = tmp_path / "t.txt"
    path.write_text("".join(f"IMGID:{k}_0\nw\tO\n\n" for k in "etxb"))
    with pytest.raises(CorruptImageError, match=r"t.txt:1: image .*e_0.jpg unusable: not a recognised"):
        list(read_twitter(path, tmp_path / "images"))
    report = ReadReport()
    posts = list(read_twitter(path, tmp_path / "images", image_policy="placeholder", report=report))
    assert [p.images for p in posts] == [[None]] * 4
    assert report.images_corrupt == report.images_placeholder == 4 and report.images_found == 0
    skip = ReadReport()
    posts = list(read_twitter(path, tmp_path / "images", image_policy="skip", report=skip))
    assert [p.images for p in posts] == [[]] * 4 and skip.images_skipped == 4
    # CMNER: the policy applies to the files found for a post
    cm = tmp_path / "c.txt"
    cm.write_text("WID:t\n我\tO\n\nWID:x\n好\tO\n")
    _images(tmp_path / "images", ["t_1.jpg"])
    rep = ReadReport()
    posts = list(read_cmner(cm, tmp_path / "images", image_policy="placeholder", report=rep))
    assert posts[0].images == [None, str(tmp_path / "images" / "t_1.jpg")] and posts[1].images == [None]
    assert rep.images_corrupt == 2 and rep.images_found == 1


def test_cmner_other_image_formats_counted(tmp_path):
    (tmp_path / "t.txt").write_text("WID:abc\n我\tO\n\nWID:xyz\n好\tO\n")
    img = _images(tmp_path / "img", ["abc_1.jpg", "abc_2.png", "abc_3.gif", "xyz_1.JPEG"])
    report = ReadReport()
    posts = list(read_cmner(tmp_path / "t.txt", img, report=report))
    assert [len(p.images) for p in posts] == [1, 1]
    assert report.images_other_format == 2 and "abc_2.png" in report.notes[0]
    assert "2 image files in other formats" in report.summary()


def test_image_name_longer_than_the_file_system_allows_is_missing_not_a_crash(tmp_path):
    img = _images(tmp_path / "images", ["1_0.jpg"])
    path = tmp_path / "MNER-MI_train.txt"
    path.write_text('{"id": 1, "text": ["a"], "label": ["O"], "images": ["1_0.jpg", "' + "x" * 300 + '.jpg"]}\n')
    report = ReadReport()
    assert list(read_jsonl(path, img, image_policy="placeholder", report=report))[0].images == [str(img / "1_0.jpg"), None]
    assert report.images_placeholder == 1
