"""Citations: every BibTeX field is read from the papers in ../shared/papers, and every dataset and
model card renders the right entries."""

from __future__ import annotations

import re
from pathlib import Path

import datasets
import pytest
import yaml

from mner_hf.builders import DATASET_NAMES, mner_features
from mner_hf.citations import BIB_PATH, MODEL_CITATIONS, bibliography, bibtex, dataset_citation_keys, model_citation
from mner_hf.export import render_card
from mner_hf.training.model_card import build_model_card

PAPERS = Path(__file__).resolve().parents[2] / "shared" / "papers"
# where each entry is read: its own first page ("title page"), or a reference list that cites it
SOURCES = {
    "huang-mner-mi": ("mner-mi-tpm-mi.md", "title page"),
    "ji-cmner": ("cmner.md", "title page"),
    "mgips-cl": ("mgips-cl.md", "title page"),
    "zhang2018adaptive": ("mner-mi-tpm-mi.md", "references"),
    "lu2018visual": ("mner-mi-tpm-mi.md", "references"),
    "yu2020improving": ("mner-mi-tpm-mi.md", "references"),
    "devlin2019bert": ("mner-mi-tpm-mi.md", "references"),
    "lafferty2001conditional": ("mner-mi-tpm-mi.md", "references"),
}
DATASET_KEYS = {
    "twitter2015": ["zhang2018adaptive"],
    "twitter2017": ["lu2018visual", "yu2020improving"],
    "cmner": ["ji-cmner"],
    "sample": ["ji-cmner"],
    "cmner_sample": ["ji-cmner"],
    "mner_mi": ["huang-mner-mi"],
    "mner_mi_plus": ["huang-mner-mi", "lu2018visual", "yu2020improving"],
}


def _fields(entry: str) -> dict[str, str]:
    """``name = {value}`` fields of one entry (values may hold nested braces), braces removed."""
    body = entry[entry.index(",") + 1 : entry.rindex("}")]
    fields, i = {}, 0
    for match in re.finditer(r"(\w+)\s*=\s*\{", body):
        if match.start() < i:
            continue
        depth, j = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(body[j], 0)
            j += 1
        assert match.group(1) not in fields, entry
        fields[match.group(1)] = body[match.end() : j - 1].replace("{", "").replace("}", "")
        i = j
    return fields


def _norm(text: str) -> str:
    text = re.sub(r"-\*?\s*\n\s*\n-\s*", "", text)  # a word hyphenated across a page break of the conversion
    return re.sub(r"\s+", " ", text.replace("*", "").replace("–", "--")).strip().lower()


def _author_names(value: str) -> list[str]:
    names = []
    for author in value.split(" and "):
        last, first = (part.strip() for part in author.split(","))
        names.append(f"{first} {last}".lower())
    return names


@pytest.fixture(scope="module")
def papers() -> Path:
    if not PAPERS.is_dir():
        pytest.skip(f"papers not available at {PAPERS}")
    return PAPERS


def test_bibliography_parses_and_every_key_is_used() -> None:
    bib = bibliography()
    assert list(bib) == list(SOURCES)
    text = BIB_PATH.read_text(encoding="utf-8")
    assert text.count("\n@") == len(bib)
    for key, entry in bib.items():
        assert entry.count("{") == entry.count("}"), key
        assert {"title"} <= set(_fields(entry)), key
    used = {k for keys in MODEL_CITATIONS.values() for k in keys} | {k for keys in DATASET_KEYS.values() for k in keys}
    assert used == set(bib)
    with pytest.raises(KeyError, match="no entry 'nope'"):
        bibtex(["nope"])


@pytest.mark.parametrize("key", list(SOURCES))
def test_every_field_is_read_from_the_papers(papers: Path, key: str) -> None:
    """Title, authors, venue, pages, year, url... each must be in the paper's text: a field that
    cannot be read there must not be in the entry."""
    paper, where = SOURCES[key]
    raw = (papers / paper).read_text(encoding="utf-8")
    fields = _fields(bibliography()[key])
    if where == "title page":
        head = _norm(raw[: raw.index("Abstract") if "Abstract" in raw else raw.index("ABSTRACT")])
        assert _norm(fields.pop("title")) in head, key
        if "author" in fields:
            for name in _author_names(fields.pop("author")):
                assert name in head, (key, name)
        if "url" in fields:
            assert fields.pop("url") in raw, key
        assert not fields, f"{key}: fields {sorted(fields)} cannot be read from {paper}'s first page"
        return
    refs = raw[raw.index("Bibliographical References") :]
    items = [_norm(item) for item in re.sub(r"-\*?\s*\n\s*\n-\s*", "", refs).split("\n- ")]
    title = _norm(fields.pop("title"))
    (item,) = [i for i in items if title in i]
    for name in _author_names(fields.pop("author")):
        assert name in item, (key, name)
    for field in ("booktitle", "year", "volume", "pages", "address", "publisher"):
        if field in fields:
            assert _norm(fields.pop(field)) in item, (key, field, item)
    assert not fields, f"{key}: fields {sorted(fields)} are not checked against {paper}"


def _tiny(name: str) -> datasets.DatasetDict:
    has_url = name.startswith("mner_mi")
    row = {"id": ["1"], "tokens": [["Alice", "visits", "Paris"]], "ner_tags": [[1, 0, 5]], "images": [[]],
           "num_images": [0]}
    if has_url:
        row["url"] = [None]
    return datasets.DatasetDict({"train": datasets.Dataset.from_dict(row, features=mner_features(has_url))})


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_dataset_card_renders_its_bibtex(name: str) -> None:
    assert dataset_citation_keys(name) == DATASET_KEYS[name] == dataset_citation_keys(name.replace("_", "-"))
    card = render_card(name, _tiny(name))
    block = card.split("## Citation", 1)[1]
    assert "```bibtex\n" + bibtex(DATASET_KEYS[name]) + "\n```" in block
    rendered_keys = re.findall(r"^@\w+\{([^,]+),", block, flags=re.M)
    assert rendered_keys == DATASET_KEYS[name]
    assert yaml.safe_load(card.split("---")[1])["pretty_name"]  # the front matter still parses


@pytest.mark.parametrize(
    ("model_type", "dataset", "keys"),
    [
        ("tpm-mi", "mner-mi", ["huang-mner-mi"]),  # the paper introduces both: cited once
        ("tpm-mi", "twitter2017", ["huang-mner-mi", "lu2018visual", "yu2020improving"]),
        ("mgips-cl", "twitter2015", ["mgips-cl", "zhang2018adaptive"]),
        ("bert-crf", "cmner", ["devlin2019bert", "lafferty2001conditional", "ji-cmner"]),
        ("bert-crf", "my_own_posts", ["devlin2019bert", "lafferty2001conditional"]),
    ],
)
def test_model_card_renders_model_and_dataset_bibtex(model_type: str, dataset: str, keys: list[str]) -> None:
    assert model_citation(model_type, dataset) == bibtex(keys)
    card = build_model_card(
        results={"test": {"overall": {"precision": 0.5, "recall": 0.4, "f1": 0.444}}}, model_type=model_type,
        entity_types=["LOC", "PER"], dataset_name=dataset, text_encoder="bert-base-uncased", vision_encoder=None,
        training_config_yaml="model: {}",
    )
    text = str(card)
    block = text.split("## Citation", 1)[1]
    assert "```bibtex\n" + bibtex(keys) + "\n```" in block
    assert re.findall(r"^@\w+\{([^,]+),", block, flags=re.M) == keys
    assert card.data.to_dict()["pipeline_tag"] == "token-classification"
