"""Builders and load_dataset: features, real counts, placeholders, caching, errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import datasets
import pytest
from PIL import Image

from mner_hf.builders import SampleBuilder, load_dataset, normalize_dataset_name
from mner_hf.models.image_loading import load_image
from mner_hf.models.labels import DEFAULT_LABELS, tags_to_spans
from mner_hf.readers import MissingImageError, MNERFormatError
from mner_hf.resources import sample_dir

FIXTURES = Path(__file__).parent / "fixtures" / "data"
SAMPLE_IMAGES = sorted((sample_dir() / "images").glob("*.jpg"))


def _entities(ds: datasets.Dataset) -> int:
    names = ds.features["ner_tags"].feature.names
    return sum(len(tags_to_spans([names[i] for i in t])) for t in ds["ner_tags"])


def test_sample_features_and_images(tmp_path):
    dd, reports = load_dataset("sample", cache_dir=tmp_path, return_report=True)
    assert list(dd) == ["train"] and dd.read_reports is reports
    ds = dd["train"]
    assert ds.features["ner_tags"].feature.names == DEFAULT_LABELS
    assert isinstance(ds.features["images"].feature, datasets.Image)
    assert ds.features["images"].feature.decode is False  # decoding is the processor's job
    assert len(ds) == 6 and sum(ds["num_images"]) == 25 == reports["train"].images_found
    assert sorted(ds["num_images"]) == [1, 1, 1, 4, 9, 9]
    nine = ds[ds["num_images"].index(9)]
    files = sorted(p for p in SAMPLE_IMAGES if p.name.startswith(nine["id"] + "_"))
    assert len(nine["images"]) == 9
    for img, path in zip(nine["images"], files):  # same file, same order; the processor's loader opens it
        assert img == {"path": str(path), "bytes": None}
        assert load_image(img).tobytes() == Image.open(path).convert("RGB").tobytes()
    assert "url" not in ds.features


def test_sample_builder_class_directly(tmp_path):
    builder = SampleBuilder(cache_dir=str(tmp_path))
    builder.download_and_prepare()
    assert builder.as_dataset()["train"].num_rows == 6


def test_twitter2017_real_counts(shared_data, tmp_path):
    dd = load_dataset("twitter2017", shared_data / "twitter2017", cache_dir=tmp_path)
    assert {s: len(d) for s, d in dd.items()} == {"train": 3373, "validation": 723, "test": 723}
    assert [_entities(dd[s]) for s in ("train", "validation", "test")] == [6049, 1324, 1351]
    assert set(dd["train"]["num_images"]) == {0}
    assert dd.read_reports["train"].image_dir_missing


def test_twitter2015_and_cmner_real_counts(shared_data, tmp_path):
    tw = load_dataset("twitter2015", shared_data / "twitter2015", cache_dir=tmp_path)
    assert list(tw) == ["train"] and len(tw["train"]) == 4000
    assert tw.read_reports["train"].orphans == 186
    cm = load_dataset("cmner", shared_data / "cmner", cache_dir=tmp_path)
    assert {s: len(d) for s, d in cm.items()} == {"train": 3000, "validation": 1000}
    assert [_entities(cm[s]) for s in ("train", "validation")] == [16373, 5395]


def _mner_mi_plus_dir(tmp_path: Path) -> Path:
    root = tmp_path / "mnermi"
    (root / "images").mkdir(parents=True)
    (root / "twitter2017_images").mkdir()
    shutil.copy(FIXTURES / "mner_mi" / "MNER-UNI_train.txt", root)
    for name, src in zip(["5302_0.jpg", "5302_1.jpg", "5302_2.jpg"], SAMPLE_IMAGES):
        shutil.copy(src, root / "images" / name)
    shutil.copy(SAMPLE_IMAGES[5], root / "twitter2017_images" / "O_538.jpg")
    return root


def test_mner_mi_plus_default_folders_and_placeholder(tmp_path):
    root = _mner_mi_plus_dir(tmp_path)
    with pytest.raises(MissingImageError, match=r"MNER-UNI_train.txt:3: image .*17_06_9.jpg not found"):
        load_dataset("mner_mi_plus", root, cache_dir=tmp_path / "c")
    dd = load_dataset("mner_mi_plus", root, image_policy="placeholder", cache_dir=tmp_path / "c")
    ds = dd["train"]
    assert ds["id"] == ["5302", "twitter2017-O_538", "twitter2017-17_06_9"]
    assert ds["num_images"] == [3, 1, 1] and ds["url"][1] == "https://twitter.com/i/web/status/538"
    assert load_image(ds[1]["images"][0]).tobytes() == Image.open(SAMPLE_IMAGES[5]).convert("RGB").tobytes()
    assert ds[2]["images"] == [None]  # a placeholder is a null image, never a fake photo
    assert dd.read_reports["train"].images_placeholder == 1
    skipped = load_dataset("mner_mi_plus", root, image_policy="skip", cache_dir=tmp_path / "c")
    assert skipped["train"]["num_images"] == [3, 1, 0]


def test_mner_mi_splits_present_only(tmp_path):
    root = tmp_path / "mi"
    root.mkdir()
    shutil.copy(FIXTURES / "mner_mi" / "MNER-MI_train.txt", root)
    shutil.copy(FIXTURES / "mner_mi" / "MNER-MI_test.txt", root)
    dd = load_dataset("mner_mi", root, cache_dir=tmp_path / "c")  # no images/ folder: 0 images
    assert list(dd) == ["train", "test"] and len(dd["train"]) == 3 and len(dd["test"]) == 1
    assert dd["train"]["num_images"] == [0, 0, 0] and dd.read_reports["train"].images_unresolved == 5
    names = dd["train"].features["ner_tags"].feature.names
    assert [names[i] for i in dd["train"][1]["ner_tags"]] == ["B-MISC", "I-MISC", "O", "O"]


def test_cache_is_rebuilt_when_the_file_changes(tmp_path):
    root = tmp_path / "tw"
    root.mkdir()
    shutil.copy(FIXTURES / "twitter" / "train.txt", root)
    first = load_dataset("twitter2017", root, cache_dir=tmp_path / "c")
    assert len(first["train"]) == 3
    with open(root / "train.txt", "a") as f:
        f.write("\nIMGID:new\nhi\tO\n")
    st = os.stat(root / "train.txt")
    os.utime(root / "train.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = load_dataset("twitter2017", root, cache_dir=tmp_path / "c")
    assert len(second["train"]) == 4 and second["train"]["id"][-1] == "new"
    # repair policy is another cache entry with its own report
    rep = load_dataset("twitter2017", root, orphan_policy="repair", cache_dir=tmp_path / "c")
    assert rep.read_reports["train"].orphans_repaired == 1
    names = rep["train"].features["ner_tags"].feature.names
    assert names[rep["train"][1]["ner_tags"][0]] == "B-PER"
    again = load_dataset("twitter2017", root, cache_dir=tmp_path / "c")  # cache hit keeps the report
    assert again.read_reports["train"].orphans == 1 and again.read_reports["train"].orphans_repaired == 0


def test_errors_say_what_was_expected_where(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"expected at least one of train.txt, valid.txt, test.txt"):
        load_dataset("twitter2017", tmp_path, cache_dir=tmp_path / "c")
    with pytest.raises(FileNotFoundError, match=r"does not exist; expected a folder with train.txt, dev.txt"):
        load_dataset("cmner", tmp_path / "nope", cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="needs data_dir"):
        load_dataset("mner_mi")
    with pytest.raises(ValueError, match="unknown dataset 'foo'.*'-' and '_' both work"):
        load_dataset("foo")
    with pytest.raises(ValueError, match="image policy"):
        load_dataset("sample", image_policy="drop")


# ---------------------------------------------------------------- issue 10


def test_dataset_names_accept_hyphen_and_underscore(tmp_path):
    assert normalize_dataset_name("mner-mi") == normalize_dataset_name("MNER_MI") == "mner_mi"
    assert normalize_dataset_name("mner-mi-plus") == "mner_mi_plus"
    root = tmp_path / "mi"
    root.mkdir()
    shutil.copy(FIXTURES / "mner_mi" / "MNER-MI_train.txt", root)
    a = load_dataset("mner-mi", root, cache_dir=tmp_path / "c")
    b = load_dataset("mner_mi", root, cache_dir=tmp_path / "c")
    assert a["train"]["id"] == b["train"]["id"] == ["5302", "5303", "5304"]


@pytest.mark.parametrize("content", [b"", b"\n \n\t\n", b"\r\n\r\n"])
def test_empty_split_file_names_the_file(tmp_path, content):
    root = tmp_path / "tw"
    root.mkdir()
    shutil.copy(FIXTURES / "twitter" / "train.txt", root)
    (root / "valid.txt").write_bytes(content)
    with pytest.raises(MNERFormatError, match=r"valid.txt:1: no posts: the file is empty or holds only blank lines"):
        load_dataset("twitter2017", root, cache_dir=tmp_path / "c")


def test_lone_surrogate_names_file_line_and_character(tmp_path):
    root = tmp_path / "mi"
    root.mkdir()
    (root / "MNER-MI_train.txt").write_text(
        '{"id": 1, "text": ["ok"], "label": ["O"]}\n{"id": 2, "text": ["x\\udfff"], "label": ["O"]}\n'
    )
    with pytest.raises(MNERFormatError, match=r"MNER-MI_train.txt:2: 'text'\[0\] holds a lone surrogate U\+DFFF"):
        load_dataset("mner_mi", root, cache_dir=tmp_path / "c")


def test_corrupt_and_bomb_images_follow_the_policy_at_build_time(tmp_path):
    """A 0-byte, a truncated and a 70-megapixel image: placeholder/skip never crash, error names the line."""
    root = tmp_path / "tw"
    (root / "images").mkdir(parents=True)
    data = SAMPLE_IMAGES[0].read_bytes()
    (root / "images" / "a.jpg").write_bytes(data)
    (root / "images" / "z.jpg").write_bytes(b"")
    (root / "images" / "t.jpg").write_bytes(data[: len(data) // 3])
    Image.new("1", (10_000, 7_000)).save(root / "images" / "b.jpg", format="PNG")
    (root / "train.txt").write_text("".join(f"IMGID:{k}\nw\tO\n\n" for k in "aztb"))
    with pytest.raises(MNERFormatError, match=r"train.txt:4: image .*z.jpg unusable"):
        load_dataset("twitter2017", root, cache_dir=tmp_path / "c")
    dd = load_dataset("twitter2017", root, image_policy="placeholder", cache_dir=tmp_path / "c")
    ds = dd["train"]
    assert ds["num_images"] == [1, 1, 1, 1] and [r["images"][0] is None for r in ds] == [False, True, True, True]
    rep = dd.read_reports["train"]
    assert rep.images_corrupt == 3 and rep.images_placeholder == 3 and rep.images_found == 1
    skip = load_dataset("twitter2017", root, image_policy="skip", cache_dir=tmp_path / "c")
    assert skip["train"]["num_images"] == [1, 0, 0, 0]
    # the bomb limit is part of the options (and of the cache key)
    big = load_dataset("twitter2017", root, image_policy="placeholder", max_pixels=None, cache_dir=tmp_path / "c")
    assert big["train"]["num_images"] == [1, 1, 1, 1] and big.read_reports["train"].images_corrupt == 2
