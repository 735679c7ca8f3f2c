"""`mner-hf push`: the exact file list it would upload, checked offline (no network call)."""

from __future__ import annotations

import json

import pytest

from mner_hf.training import push as push_mod


def _folder(tmp_path):
    f = tmp_path / "final"
    (f / "checkpoint-3").mkdir(parents=True)
    (f / "__pycache__").mkdir()
    (f / ".git").mkdir()
    files = {
        "config.json": json.dumps({"auto_map": {"AutoConfig": "configuration_tpm_mi.TPMMIConfig",
                                                "AutoModelForTokenClassification": "modeling_tpm_mi.TPMMIForMNER"}}),
        "model.safetensors": "x", "README.md": "---\nlicense: mit\n---\n# card\n",
        "configuration_tpm_mi.py": "", "modeling_tpm_mi.py": "", "processor_config.json": "{}",
        "handler.py": "", "loss_curve.png": "png", "predictions_test.jsonl": "{}\n",
        "training_args.bin": "x", "checkpoint-3/optimizer.pt": "x", "__pycache__/a.pyc": "x", ".git/HEAD": "x",
    }
    for name, text in files.items():
        (f / name).write_text(text)
    return f


def test_files_to_upload_excludes_training_leftovers(tmp_path):
    f = _folder(tmp_path)
    assert push_mod.files_to_upload(f) == [
        "README.md", "config.json", "configuration_tpm_mi.py", "handler.py", "loss_curve.png",
        "model.safetensors", "modeling_tpm_mi.py", "predictions_test.jsonl", "processor_config.json",
    ]


def test_missing_code_file_is_refused(tmp_path):
    f = _folder(tmp_path)
    (f / "modeling_tpm_mi.py").unlink()
    with pytest.raises(ValueError, match=r"modeling_tpm_mi\.py \(named in config.json auto_map\)"):
        push_mod.check_folder(f)
    (f / "README.md").unlink()
    with pytest.raises(ValueError, match="README.md"):
        push_mod.check_folder(f)


def test_push_calls_hub_with_the_folder(tmp_path, monkeypatch):
    f = _folder(tmp_path)
    calls = {}
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo_id, **kw: calls.setdefault("create", (repo_id, kw)))
    monkeypatch.setattr(huggingface_hub, "upload_folder", lambda **kw: calls.setdefault("upload", kw))
    files = push_mod.push_folder(f, "me/tpm-mi", private=True)
    assert calls["create"][0] == "me/tpm-mi" and calls["create"][1]["private"] is True
    assert calls["upload"]["folder_path"] == str(f) and calls["upload"]["repo_id"] == "me/tpm-mi"
    assert "checkpoint-*/**" in calls["upload"]["ignore_patterns"]
    assert "model.safetensors" in files


def test_cli_dry_run(tmp_path, capsys):
    import argparse

    from mner_hf.training.cli import register_subcommand

    f = _folder(tmp_path)
    parser = argparse.ArgumentParser()
    register_subcommand(parser.add_subparsers())
    args = parser.parse_args(["push", str(f), "--repo-id", "me/x", "--dry-run"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "would upload 9 files" in out and "modeling_tpm_mi.py" in out and "optimizer.pt" not in out
