"""`mner-hf export-dataset NAME --push-to-hub ORG/NAME`: the exact Hub calls and files, offline, and
the uploaded files load with plain `datasets.load_dataset` in a process where mner_hf is blocked."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mner_hf import hub_dataset
from mner_hf.builders import load_dataset
from mner_hf.export import export_dataset, register_subcommand

LOADER = r"""
import sys
sys.modules["mner_hf"] = None  # the package is installed editable: make it unimportable
try:
    import mner_hf  # noqa: F401
    raise SystemExit("mner_hf is importable")
except ImportError:
    pass
import json, datasets
dd = datasets.load_dataset(sys.argv[1])
ds = dd["train"]
first = ds[0]
print(json.dumps({"splits": list(dd), "rows": len(ds), "ids": list(ds["id"]), "tokens": list(ds["tokens"]),
                  "ner_tags": list(ds["ner_tags"]), "labels": ds.features["ner_tags"].feature.names,
                  "image_sizes": [list(im.size) for im in first["images"]],
                  "image_type": type(first["images"][0]).__module__}))
"""


class FakeHfApi:
    """Records what ``push_dataset`` asks of ``huggingface_hub.HfApi`` (no network)."""

    instances: list["FakeHfApi"] = []

    def __init__(self, token=None):
        self.token = token
        self.calls: list[tuple[str, tuple, dict]] = []
        FakeHfApi.instances.append(self)

    def create_repo(self, *args, **kwargs):
        self.calls.append(("create_repo", args, kwargs))

    def upload_folder(self, *args, **kwargs):
        self.calls.append(("upload_folder", args, kwargs))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    return export_dataset("sample", tmp / "sample", max_shard_bytes=1_000_000, cache_dir=tmp / "cache")


@pytest.fixture
def fake_api(monkeypatch):
    import huggingface_hub

    FakeHfApi.instances = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    return FakeHfApi


def test_files_and_checks(exported: Path, tmp_path: Path) -> None:
    shards = sorted(p.name for p in (exported / "data").iterdir())
    assert len(shards) > 1
    assert hub_dataset.check_dataset_folder(exported) == ["README.md", *(f"data/{s}" for s in shards)]
    folder = tmp_path / "copy"
    shutil.copytree(exported, folder)
    (folder / "notes.txt").write_text("local notes")  # never uploaded
    assert "notes.txt" not in hub_dataset.dataset_files(folder)
    (folder / "data" / "extra-00000-of-00001.parquet").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"extra-00000-of-00001\.parquet'\] belong to no split"):
        hub_dataset.check_dataset_folder(folder)
    for shard in (folder / "data").glob("*.parquet"):
        shard.unlink()
    with pytest.raises(ValueError, match=r"split 'train' of config 'default' names 'data/train-\*\.parquet'"):
        hub_dataset.check_dataset_folder(folder)
    (folder / "README.md").write_text("# no front matter\n")
    with pytest.raises(ValueError, match=r"README\.md:1: the dataset card has no YAML front matter"):
        hub_dataset.check_dataset_folder(folder)
    (folder / "README.md").unlink()
    with pytest.raises(ValueError, match="missing README.md"):
        hub_dataset.check_dataset_folder(folder)


def test_push_calls_hf_api_exactly(exported: Path, fake_api) -> None:
    files = hub_dataset.push_dataset(exported, "me/mner_sample", private=True, token="hf_x")
    (api,) = fake_api.instances
    assert api.token == "hf_x"
    assert api.calls == [
        ("create_repo", ("me/mner_sample",), {"repo_type": "dataset", "private": True, "exist_ok": True}),
        ("upload_folder", (), {
            "repo_id": "me/mner_sample", "repo_type": "dataset", "folder_path": str(exported),
            "allow_patterns": ["README.md", "data/*.parquet"], "delete_patterns": ["data/*.parquet"],
            "commit_message": "Upload MNER dataset exported with mner_hf",
        }),
    ]
    assert files == hub_dataset.dataset_files(exported)
    fake_api.instances = []
    assert hub_dataset.push_dataset(exported, "me/mner_sample", dry_run=True) == files
    assert fake_api.instances == []  # a dry run never builds an HfApi
    with pytest.raises(ValueError, match="Repo id"):
        hub_dataset.push_dataset(exported, "not a/valid/repo", dry_run=True)


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register_subcommand(parser.add_subparsers())
    return parser.parse_args(["export-dataset", "sample", *argv])


def test_cli_push_to_hub(tmp_path: Path, fake_api, capsys) -> None:
    cache = ["--cache-dir", str(tmp_path / "cache")]
    args = _cli(["--push-to-hub", "org/mner_sample", "--private", *cache])  # no --out: a temporary folder
    assert args.func(args) == 0
    (api,) = fake_api.instances
    (create, upload) = api.calls
    assert create == ("create_repo", ("org/mner_sample",), {"repo_type": "dataset", "private": True, "exist_ok": True})
    assert upload[2]["repo_type"] == "dataset" and upload[2]["repo_id"] == "org/mner_sample"
    assert not Path(upload[2]["folder_path"]).exists()  # the temporary export is cleaned up
    out = capsys.readouterr().out
    assert "uploaded 2 files to https://huggingface.co/datasets/org/mner_sample" in out
    assert "data/train-00000-of-00001.parquet" in out and "datasets.load_dataset('org/mner_sample')" in out
    fake_api.instances = []
    args = _cli(["--out", str(tmp_path / "o"), "--push-to-hub", "org/mner_sample", "--dry-run", *cache])
    assert args.func(args) == 0 and fake_api.instances == []
    out = capsys.readouterr().out
    assert "would upload 2 files" in out and (tmp_path / "o" / "README.md").is_file()
    args = _cli(["--dry-run", "--out", str(tmp_path / "p"), *cache])
    assert args.func(args) == 2 and "apply to --push-to-hub" in capsys.readouterr().out
    args = _cli(cache)
    assert args.func(args) == 2 and "give --out FOLDER, --push-to-hub ORG/NAME, or both" in capsys.readouterr().out


def test_uploaded_files_load_with_plain_datasets(exported: Path, tmp_path: Path) -> None:
    """Only the files that would be uploaded, in a fresh process where mner_hf cannot be imported:
    what ``datasets.load_dataset("ORG/NAME")`` reads from the Hub repository."""
    repo = tmp_path / "hub_repo"
    for rel in hub_dataset.dataset_files(exported):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(exported / rel, repo / rel)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(tmp_path / "fresh_cache")}
    res = subprocess.run([sys.executable, "-c", LOADER, str(repo)], capture_output=True, text=True, env=env,
                         timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    ref = load_dataset("sample", cache_dir=tmp_path / "cache")["train"]
    assert got["splits"] == ["train"] and got["rows"] == len(ref) == 6
    assert got["ids"] == list(ref["id"]) and got["tokens"] == list(ref["tokens"])
    assert got["ner_tags"] == list(ref["ner_tags"])
    assert got["labels"] == ref.features["ner_tags"].feature.names
    from PIL import Image

    sizes = []
    for image in ref[0]["images"]:  # the builders keep images undecoded: {"bytes", "path"}
        with Image.open(io.BytesIO(image["bytes"]) if image["bytes"] else image["path"]) as im:
            sizes.append(list(im.size))
    assert got["image_sizes"] == sizes and len(sizes) == ref[0]["num_images"] > 1
    assert got["image_type"].startswith("PIL")  # plain datasets decodes them to PIL images
