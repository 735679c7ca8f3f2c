"""dataset_statistics: Table 1 columns on the sample, fixtures and real data."""

from __future__ import annotations

import argparse
import json

import pytest

from mner_hf.builders import load_dataset
from mner_hf.statistics import dataset_statistics, format_statistics, image_bucket, register_subcommand


def test_sample_statistics(tmp_path):
    stats = dataset_statistics(load_dataset("sample", cache_dir=tmp_path))
    s = stats["train"]
    assert s["posts"] == 6 and s["images"] == 25 and s["max_images"] == 9
    assert s["posts_by_images"] == {"0": 0, "1": 3, "2": 0, "3": 0, "4+": 3}
    assert s["images_per_post"] == pytest.approx(25 / 6)
    assert s["entities"]["total"] == 39 == sum(v for k, v in s["entities"].items() if k != "total")
    assert "all" not in stats
    table = format_statistics(stats)
    assert table.splitlines()[0].split()[:6] == ["split", "posts", "PER", "LOC", "ORG", "MISC"]
    assert table.splitlines()[2].split()[-2:] == ["25", "4.17"]


def test_image_bucket():
    assert [image_bucket(n) for n in (0, 1, 2, 3, 4, 18)] == ["0", "1", "2", "3", "4+", "4+"]
    with pytest.raises(ValueError):
        image_bucket(-1)


def test_twitter2017_statistics(shared_data, tmp_path):
    stats = dataset_statistics(load_dataset("twitter2017", shared_data / "twitter2017", cache_dir=tmp_path))
    assert [stats[s]["entities"]["total"] for s in ("train", "validation", "test")] == [6049, 1324, 1351]
    assert stats["train"]["entities"] == {"PER": 2943, "LOC": 731, "ORG": 1674, "MISC": 701, "total": 6049}
    assert stats["all"]["posts"] == 3373 + 723 + 723 and stats["all"]["entities"]["total"] == 8724
    assert stats["train"]["posts_by_images"]["0"] == 3373  # images not distributed here


def test_cli_stats_json(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register_subcommand(parser.add_subparsers())
    args = parser.parse_args(["stats", "sample", "--json", "--cache-dir", str(tmp_path)])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["train"]["images"] == 25
    args = parser.parse_args(["stats", "sample", "--cache-dir", str(tmp_path)])
    assert args.func(args) == 0
    assert "25 found" in capsys.readouterr().out
