"""BibTeX entries of the papers behind the datasets and models, for dataset and model cards.

The entries live in ``citations.bib`` beside this module; every field is read from the papers in
``../shared/papers`` (their first pages and reference lists) and a field that cannot be read there
is left out (``tests/test_citations.py`` checks each one against that text).

Public API
----------
``MODEL_CITATIONS``                          model type -> BibTeX keys
``dataset_citation_keys(name) -> list[str]``  the ``citations:`` keys of ``dataset_scripts/<name>.yaml``
``bibliography() -> dict[str, str]``         key -> entry text, in file order
``bibtex(keys) -> str``                      the entries of ``keys`` (duplicates once), blank-line separated
``dataset_citation(name) -> str``            BibTeX for a dataset (``twitter2017``, ``mner-mi``, ...)
``model_citation(model_type, dataset_name=None) -> str``  the model's paper(s), then the dataset's
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path

import yaml

from .resources import dataset_scripts_dir

__all__ = ["MODEL_CITATIONS", "bibliography", "bibtex", "dataset_citation", "dataset_citation_keys", "model_citation"]

BIB_PATH = Path(__file__).with_name("citations.bib")

MODEL_CITATIONS: dict[str, tuple[str, ...]] = {
    "tpm_mi": ("huang-mner-mi",),
    "mgips_cl": ("mgips-cl",),
    "bert_crf": ("devlin2019bert", "lafferty2001conditional"),
}

_ENTRY = re.compile(r"^@\w+\{([^,\s]+),.*?^\}", re.M | re.S)


def _name(name: str) -> str:
    return name.strip().lower().replace("-", "_")


@functools.cache
def bibliography() -> dict[str, str]:
    """Key -> BibTeX entry text (``@type{key, ... }``) of ``citations.bib``, in file order."""
    text = BIB_PATH.read_text(encoding="utf-8")
    entries = {m.group(1): m.group(0) for m in _ENTRY.finditer(text)}
    if not entries:
        raise ValueError(f"{BIB_PATH}: no BibTeX entries found")
    return entries


def bibtex(keys: Iterable[str]) -> str:
    """The entries of ``keys`` in order (each once), separated by a blank line."""
    bib = bibliography()
    out: list[str] = []
    for key in dict.fromkeys(keys):
        if key not in bib:
            raise KeyError(f"{BIB_PATH}: no entry {key!r}; known: {sorted(bib)}")
        out.append(bib[key])
    return "\n\n".join(out)


def dataset_citation_keys(name: str) -> list[str]:
    """The ``citations:`` keys of ``dataset_scripts/<name>.yaml`` (``"mner-mi"`` and ``"mner_mi"``
    alike); ``[]`` for a dataset without metadata. Twitter-2015 is Zhang et al. (AAAI 2018);
    Twitter-2017 was collected by Lu et al. (ACL 2018) and is used in the version of Yu et al.
    (ACL 2020), which is how the MNER-MI and CMNER papers cite it."""
    path = dataset_scripts_dir() / f"{_name(name)}.yaml"
    if not path.is_file():
        return []
    keys = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("citations") or []
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"{path}: 'citations' must be a list of BibTeX keys of {BIB_PATH.name}, got {keys!r}")
    return keys


def dataset_citation(name: str) -> str:
    """BibTeX of the dataset ``name``; ``""`` when none is recorded."""
    return bibtex(dataset_citation_keys(name))


def model_citation(model_type: str, dataset_name: str | None = None) -> str:
    """BibTeX of the model's paper(s) and, when given, of its training dataset."""
    keys = list(MODEL_CITATIONS.get(_name(model_type), ()))
    if dataset_name:
        keys += dataset_citation_keys(dataset_name)
    return bibtex(keys)
