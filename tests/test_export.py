"""export_dataset: parquet + card loads with plain datasets.load_dataset in a fresh process."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
import yaml

from mner_hf.builders import load_dataset
from mner_hf.export import export_dataset, register_subcommand
from mner_hf.resources import sample_dir

LOADER = r"""
import hashlib, json, sys, datasets
dd = datasets.load_dataset(sys.argv[1])
out = {}
for split, ds in dd.items():
    feats = ds.features
    rows = []
    for ex in ds.cast_column("images", datasets.List(datasets.Image(decode=False))):
        rows.append({"id": ex["id"], "tokens": ex["tokens"], "ner_tags": ex["ner_tags"],
                     "num_images": ex["num_images"],
                     "images": [hashlib.sha256(i["bytes"]).hexdigest() for i in ex["images"]]})
    out[split] = {"rows": rows, "labels": feats["ner_tags"].feature.names}
print(json.dumps(out))
"""


def test_export_sample_round_trip_fresh_process(tmp_path):
    dd = load_dataset("sample", cache_dir=tmp_path / "cache")
    out = export_dataset("sample", tmp_path / "export", cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in (out / "data").iterdir()) == ["train-00000-of-00001.parquet"]
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["license"] == "mit"
    assert front["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-*.parquet"}]
    assert front["dataset_info"]["splits"][0]["num_examples"] == 6
    assert "| train | 6 | 39 | 25 |" in card
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(tmp_path / "fresh_cache")}
    res = subprocess.run([sys.executable, "-c", LOADER, str(out)], capture_output=True, text=True, env=env,
                         timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["train"]["labels"] == dd["train"].features["ner_tags"].feature.names
    rows = got["train"]["rows"]
    assert [r["id"] for r in rows] == dd["train"]["id"]
    for row, ex in zip(rows, dd["train"]):
        assert row["tokens"] == ex["tokens"] and row["ner_tags"] == ex["ner_tags"]
        assert row["num_images"] == ex["num_images"] == len(row["images"])
    # image bytes are the original files, byte for byte, in post order
    for row in rows:
        files = sorted((sample_dir() / "images").glob(f"{row['id']}_*.jpg"))
        assert row["images"] == [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]


def test_export_shards_and_refuses_to_overwrite(tmp_path):
    out = export_dataset("sample", tmp_path / "e", max_shard_bytes=1_000_000, cache_dir=tmp_path / "c")
    shards = sorted(p.name for p in (out / "data").iterdir())
    assert len(shards) > 1 and shards[0] == f"train-00000-of-{len(shards):05d}.parquet"
    with pytest.raises(FileExistsError, match="not empty"):
        export_dataset("sample", out, cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="needs name="):
        export_dataset(load_dataset("sample", cache_dir=tmp_path / "c"), tmp_path / "x")


def test_cli_export_dataset(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    register_subcommand(parser.add_subparsers())
    args = parser.parse_args(["export-dataset", "sample", "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")])
    assert args.func(args) == 0
    assert (tmp_path / "o" / "README.md").is_file() and "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["export-dataset", "nope", "--out", "x"])


# ---------------------------------------------------------------- issue 10: never delete or mix with the input


def _twitter_dir(tmp_path):
    import shutil
    from pathlib import Path

    root = tmp_path / "data" / "tw"
    (root / "images").mkdir(parents=True)
    shutil.copy(Path(__file__).parent / "fixtures" / "data" / "twitter" / "train.txt", root)
    photos = sorted((sample_dir() / "images").glob("*.jpg"))
    for name, src in zip(["17_06_1.jpg", "O_2144.jpg"], photos):  # 16_05_01_360.jpg is missing
        shutil.copy(src, root / "images" / name)
    return root


def _snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*"))


@pytest.mark.parametrize("where", ["data", "inside_data", "parent_of_data", "images", "inside_images"])
def test_export_refuses_an_output_folder_that_holds_or_is_inside_an_input(tmp_path, where):
    root = _twitter_dir(tmp_path)
    before = _snapshot(tmp_path / "data")
    out = {"data": root, "inside_data": root / "export", "parent_of_data": tmp_path / "data",
           "images": root / "images", "inside_images": root / "images" / "x"}[where]
    with pytest.raises(ValueError, match="refusing to export into"):
        export_dataset("twitter2017", out, data_dir=root, overwrite=True, image_policy="placeholder",
                       cache_dir=tmp_path / "c")
    assert _snapshot(tmp_path / "data") == before  # nothing deleted, nothing written
    # a separate image folder given explicitly is protected too
    with pytest.raises(ValueError, match="is inside the input folder"):
        export_dataset("twitter2017", tmp_path / "data" / "tw" / "images" / "o", data_dir=root,
                       image_dir=root / "images", overwrite=True, cache_dir=tmp_path / "c")
    # a DatasetDict is checked against the files it was read from
    dd = load_dataset("twitter2017", root, image_policy="placeholder", cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="refusing to export into"):
        export_dataset(dd, root, name="twitter2017", overwrite=True)
    assert _snapshot(tmp_path / "data") == before


def test_cli_export_refuses_data_dir_and_accepts_hyphen_name(tmp_path, capsys):
    import argparse

    root = _twitter_dir(tmp_path)
    before = _snapshot(root)
    parser = argparse.ArgumentParser()
    register_subcommand(parser.add_subparsers())
    args = parser.parse_args(["export-dataset", "twitter2017", "--data-dir", str(root), "--out", str(root),
                              "--overwrite", "--image-policy", "placeholder", "--cache-dir", str(tmp_path / "c")])
    with pytest.raises(ValueError, match="refusing to export into"):
        args.func(args)
    assert _snapshot(root) == before
    assert parser.parse_args(["export-dataset", "mner-mi-plus", "--out", "x"]).name == "mner_mi_plus"


def test_export_placeholder_is_null_and_images_decode_for_plain_datasets(tmp_path):
    root = _twitter_dir(tmp_path)
    out = export_dataset("twitter2017", tmp_path / "out", data_dir=root, image_policy="placeholder",
                         cache_dir=tmp_path / "c")
    import datasets

    back = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "fresh"))["train"]
    assert back.features["images"].feature.decode is True
    assert back["num_images"] == [1, 1, 1]
    images = [row["images"][0] for row in back]
    assert images[2] is None and images[0].size == (images[0].width, images[0].height)
    assert "1 null placeholders" in (out / "README.md").read_text()
