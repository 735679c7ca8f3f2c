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
