"""Publish an exported dataset folder (``mner-hf export-dataset``) as a Hub dataset repository.

The repository then holds exactly what :func:`mner_hf.export.export_dataset` wrote: the dataset
card ``README.md`` (whose YAML ``configs:`` block maps each split to its parquet files) and
``data/<split>-0000i-of-0000N.parquet`` with the image bytes embedded, so that
``datasets.load_dataset("ORG/NAME")`` reads it with no code of ours.

Public API
----------
``DATASET_FILE_PATTERNS``  what is uploaded: ``README.md`` and ``data/*.parquet``
``dataset_files(folder) -> list[str]``         relative paths (sorted) that would be uploaded
``check_dataset_folder(folder) -> list[str]``  the same list, or ``ValueError`` naming the folder and
                                               what would keep ``load_dataset`` from reading it
``push_dataset(folder, repo_id, *, private=False, token=None, commit_message=..., dry_run=False)
    -> list[str]``  ``HfApi.create_repo`` (``repo_type="dataset"``) + ``HfApi.upload_folder``;
    shards of an earlier push that this one does not rewrite are deleted in the same commit
    (``delete_patterns``), so a re-export with fewer shards never leaves stale rows behind.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import yaml
from huggingface_hub.utils import filter_repo_objects, validate_repo_id

__all__ = ["DATASET_FILE_PATTERNS", "check_dataset_folder", "dataset_files", "push_dataset"]

DATASET_FILE_PATTERNS = ["README.md", "data/*.parquet"]
STALE_SHARD_PATTERNS = ["data/*.parquet"]
DEFAULT_COMMIT_MESSAGE = "Upload MNER dataset exported with mner_hf"


def dataset_files(folder: str | Path) -> list[str]:
    """Relative POSIX paths (sorted) of ``folder`` that :func:`push_dataset` uploads."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    rel = [p.relative_to(folder).as_posix() for p in sorted(folder.glob("**/*")) if p.is_file()]
    return sorted(filter_repo_objects(rel, allow_patterns=DATASET_FILE_PATTERNS))


def _front_matter(card: Path) -> dict:
    text = card.read_text(encoding="utf-8")
    if not text.startswith("---\n") or "\n---" not in text[4:]:
        raise ValueError(f"{card}:1: the dataset card has no YAML front matter (--- ... ---)")
    try:
        front = yaml.safe_load(text[4 : text.index("\n---", 4)])
    except yaml.YAMLError as err:
        raise ValueError(f"{card}: invalid YAML front matter: {err}") from err
    if not isinstance(front, dict):
        raise ValueError(f"{card}: the YAML front matter is not a mapping")
    return front


def check_dataset_folder(folder: str | Path) -> list[str]:
    """Raise ``ValueError`` unless ``datasets.load_dataset`` can read ``folder`` once uploaded.

    Required: ``README.md`` whose front matter has a ``configs`` block, every split's ``path`` glob
    matching at least one uploaded parquet file, and every uploaded parquet file belonging to a split.
    Returns the file list of :func:`dataset_files`.
    """
    folder = Path(folder)
    files = dataset_files(folder)
    if "README.md" not in files:
        raise ValueError(f"{folder}: cannot publish, missing README.md (the dataset card); run export-dataset first")
    front = _front_matter(folder / "README.md")
    configs = front.get("configs")
    if not configs:
        raise ValueError(f"{folder / 'README.md'}: the front matter has no 'configs' block naming the data files")
    parquet = [f for f in files if f.endswith(".parquet")]
    claimed: set[str] = set()
    for config in configs:
        for entry in config.get("data_files", []):
            matched = [f for f in parquet if fnmatch.fnmatch(f, entry["path"])]
            if not matched:
                raise ValueError(
                    f"{folder}: split {entry.get('split')!r} of config {config.get('config_name')!r} names "
                    f"{entry['path']!r} but no such parquet file is in the folder"
                )
            claimed.update(matched)
    unclaimed = sorted(set(parquet) - claimed)
    if unclaimed:
        raise ValueError(f"{folder}: parquet file(s) {unclaimed} belong to no split of the card's 'configs' block")
    return files


def push_dataset(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    dry_run: bool = False,
) -> list[str]:
    """Check ``folder`` and upload it to the dataset repository ``repo_id`` (created if needed).

    With ``dry_run=True`` nothing touches the network: the checked file list is returned.
    """
    validate_repo_id(repo_id)
    files = check_dataset_folder(folder)
    if dry_run:
        return files
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=str(folder),
        allow_patterns=list(DATASET_FILE_PATTERNS),
        delete_patterns=list(STALE_SHARD_PATTERNS),
        commit_message=commit_message,
    )
    return files
