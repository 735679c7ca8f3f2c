"""Locate the data files that ship with the package.

In an installed wheel, ``dataset_scripts/`` and ``model_cards/`` are copied into the package
(see ``pyproject.toml``); in an editable checkout they stay at the repository root.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parents[1] / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"mner_hf resource folder {name!r} not found in {_PACKAGE_DIR} or in the repository root "
        f"{_PACKAGE_DIR.parents[1]}; reinstall the package."
    )


def sample_dir() -> Path:
    """Folder holding the bundled CMNER sample (``example_text``, ``images/``, ``LICENSE``)."""
    return _PACKAGE_DIR / "sample"


def dataset_scripts_dir() -> Path:
    """Folder holding dataset card templates and per-dataset metadata."""
    return _find("dataset_scripts")


def model_cards_dir() -> Path:
    """Folder holding the model card template."""
    return _find("model_cards")
