"""``mner-hf push FOLDER --repo-id USER/NAME``: publish a trained checkpoint folder to the Hub.

The folder written by a training run (``save_for_hub``) holds the model (safetensors +
``config.json`` with ``auto_map``), the processor, the modeling code files, ``handler.py``,
the model card ``README.md`` and the plots. :func:`files_to_upload` lists exactly what
``huggingface_hub.upload_folder`` would send (same pattern filter, same default ignores), and
:func:`check_folder` refuses a folder that would not load on the Hub (missing weights, config,
card, or a code file named in ``auto_map``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from huggingface_hub.utils import filter_repo_objects

# training leftovers never published
IGNORE_PATTERNS = [
    "checkpoint-*/**",
    "runs/**",
    "**/__pycache__/**",
    "*.pyc",
    "optimizer.pt",
    "scheduler.pt",
    "rng_state*.pth",
    "training_args.bin",
    "trainer_state.json",
    ".cache/**",
]


def files_to_upload(folder: str | Path, ignore_patterns: list[str] | None = None) -> list[str]:
    """Relative POSIX paths (sorted) that ``upload_folder`` would upload from ``folder``."""
    from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS

    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    rel = [p.relative_to(folder).as_posix() for p in sorted(folder.glob("**/*")) if p.is_file()]
    patterns = list(ignore_patterns if ignore_patterns is not None else IGNORE_PATTERNS) + list(
        DEFAULT_IGNORE_PATTERNS
    )
    return sorted(filter_repo_objects(rel, ignore_patterns=patterns))


def check_folder(folder: str | Path, files: list[str] | None = None) -> list[str]:
    """Raise ``ValueError`` (naming the folder and what is missing) unless the folder is publishable.

    Returns the file list. Required: ``config.json``, weights (``model.safetensors`` or a sharded
    index), ``README.md`` and every ``.py`` module named in ``config.json``'s ``auto_map``.
    """
    folder = Path(folder)
    files = files if files is not None else files_to_upload(folder)
    present = set(files)
    problems = []
    if "config.json" not in present:
        problems.append("config.json")
    if not ({"model.safetensors", "model.safetensors.index.json"} & present):
        problems.append("model.safetensors (or model.safetensors.index.json)")
    if "README.md" not in present:
        problems.append("README.md (model card)")
    if "config.json" in present:
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{folder / 'config.json'}:{err.lineno}: invalid JSON: {err.msg}") from err
        for ref in (config.get("auto_map") or {}).values():
            refs = ref if isinstance(ref, list) else [ref]
            for r in refs:
                if r and "--" not in r:  # "module.Class", not "repo--module.Class"
                    module = r.rsplit(".", 1)[0].replace(".", "/") + ".py"
                    if module not in present:
                        problems.append(f"{module} (named in config.json auto_map)")
    if problems:
        raise ValueError(f"{folder}: cannot publish, missing {sorted(set(problems))}")
    return files


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload MNER model trained with mner_hf",
    dry_run: bool = False,
) -> list[str]:
    """Check ``folder`` and upload it to ``repo_id`` (created if needed). Returns the file list.

    With ``dry_run=True`` nothing touches the network: the checked file list is returned.
    """
    files = check_folder(folder)
    if dry_run:
        return files
    from huggingface_hub import create_repo, upload_folder

    create_repo(repo_id, private=private, token=token, exist_ok=True)
    upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        ignore_patterns=list(IGNORE_PATTERNS),
        commit_message=commit_message,
        token=token,
    )
    return files


def run_push(args: argparse.Namespace) -> int:
    """``mner-hf push`` handler."""
    try:
        files = push_folder(
            args.folder,
            args.repo_id,
            private=args.private,
            token=args.token,
            commit_message=args.commit_message,
            dry_run=args.dry_run,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"mner-hf push: {err}")
        return 2
    verb = "would upload" if args.dry_run else "uploaded"
    print(f"{verb} {len(files)} files to https://huggingface.co/{args.repo_id}:")
    for f in files:
        print(f"  {f}")
    return 0


def add_push_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``mner-hf push``."""
    p = subparsers.add_parser("push", help="upload a trained checkpoint folder to the Hugging Face Hub")
    p.add_argument("folder", help="folder written by `mner-hf train` (the final checkpoint)")
    p.add_argument("--repo-id", required=True, help="USER/NAME on the Hub")
    p.add_argument("--private", action="store_true")
    p.add_argument("--token", default=None, help="Hub token (default: the logged-in one)")
    p.add_argument("--commit-message", default="Upload MNER model trained with mner_hf")
    p.add_argument("--dry-run", action="store_true", help="list the files, upload nothing")
    p.set_defaults(func=run_push)
