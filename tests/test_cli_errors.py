"""`mner-hf` error reporting (issue 10): a user error in any sub-command prints ONE line,
``mner-hf COMMAND: error: ...``, and exits 2; ``--debug`` (before or after the sub-command) shows the
traceback; bugs exit 3 and Ctrl-C 130 (the exit codes documented in ``mner_hf.cli``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import mner_hf.statistics
from mner_hf.cli import main


@pytest.fixture()
def bad_twitter(tmp_path):
    """A Twitter-format folder whose train.txt line 3 lacks its tag column."""
    folder = tmp_path / "bad17"
    folder.mkdir()
    for split in ("train", "valid", "test"):
        (folder / f"{split}.txt").write_text("IMGID:1\nhello\tB-PER\nworld\nx\tO\n", encoding="utf-8")
    return folder


def _error_lines(err: str, command: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"mner-hf {command}: error:")]


def test_user_errors_print_one_line_and_exit_2(tmp_path, bad_twitter, capsys):
    missing = tmp_path / "missing"
    broken_ckpt = tmp_path / "ckpt"
    broken_ckpt.mkdir()
    (broken_ckpt / "config.json").write_text('{"model_type": "no_such_model"}')
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"text": "hello"}\n')
    cases = [
        (["stats", "twitter2017", "--data-dir", missing, "--cache-dir", tmp_path / "c1"], "stats",
         f"data_dir {missing} for dataset 'twitter2017' does not exist"),
        (["stats", "twitter2017", "--data-dir", bad_twitter, "--cache-dir", tmp_path / "c2"], "stats",
         f"{bad_twitter / 'train.txt'}:3: expected 2 tab-separated columns"),  # raised inside `datasets`
        (["export-dataset", "twitter2017", "--data-dir", missing, "--out", tmp_path / "hub",
          "--cache-dir", tmp_path / "c3"], "export-dataset", "does not exist"),
        (["predict", "--model", broken_ckpt, "--input", posts, "--output", tmp_path / "o.jsonl", "--no-progress"],
         "predict", "cannot load the checkpoint"),
    ]
    for argv, command, message in cases:
        assert main([str(a) for a in argv]) == 2, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err, err
        lines = _error_lines(err, command)
        assert len(lines) == 1 and message in lines[0], (argv, err)


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_flag_shows_the_traceback(tmp_path, where):
    argv = ["stats", "twitter2017", "--data-dir", str(tmp_path / "missing")]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(argv)


def test_internal_errors_and_interrupts(monkeypatch, capsys):
    def boom(*args, **kwargs):
        raise RuntimeError("unexpected state")

    monkeypatch.setattr(mner_hf.statistics, "load_dataset", boom)
    assert main(["stats", "sample"]) == 3
    line = _error_lines(capsys.readouterr().err, "stats")
    assert line == ["mner-hf stats: error: internal error RuntimeError: unexpected state "
                    "(a bug: rerun with --debug and report the traceback)"]
    with pytest.raises(RuntimeError):
        main(["--debug", "stats", "sample"])

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mner_hf.statistics, "load_dataset", interrupt)
    assert main(["stats", "sample"]) == 130
    assert "mner-hf stats: interrupted" in capsys.readouterr().err


@pytest.mark.slow
def test_console_process_prints_one_line_without_traceback(tmp_path):
    """The real process (one only: importing mner_hf takes ~10 s of CPU; --debug is checked in-process)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    argv = [sys.executable, "-m", "mner_hf.cli", "stats", "twitter2017", "--data-dir", str(tmp_path / "missing")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("mner-hf stats: error: data_dir")
