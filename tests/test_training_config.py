"""Run config, optimizer groups, seeded splits, predictions JSONL, grid search (no model needed)."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset, DatasetDict
from torch import nn

from mner_hf.training.grid_search import expand_grid, grid_search
from mner_hf.training.optim import build_optimizer_groups, module_parameter_groups
from mner_hf.training.predictions import prediction_records, read_jsonl, summary_table, write_jsonl
from mner_hf.training.run_config import OptimSection, RunConfig, RunConfigError, parse_override
from mner_hf.training.splits import ensure_splits, take_fraction


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_yaml_and_overrides(tmp_path):
    p = _write(
        tmp_path,
        "model:\n  type: bert-crf\n  text_encoder: tiny-random\ntraining:\n  learning_rate: 5e-5\n"
        "  warmup_steps: 0.06\n",
    )
    cfg = RunConfig.from_yaml(p, ["training.learning_rate=3e-5", "data.train_fraction=0.1", "model.freeze_vision=true"])
    assert cfg.model.type == "bert-crf"
    assert cfg.training["learning_rate"] == pytest.approx(3e-5)
    assert isinstance(cfg.training["learning_rate"], float)
    assert cfg.training["warmup_steps"] == pytest.approx(0.06)
    assert cfg.data.train_fraction == pytest.approx(0.1)
    assert cfg.model.freeze_vision is True
    # round trip through YAML
    again = RunConfig.from_dict(__import__("yaml").safe_load(cfg.to_yaml()))
    assert again.to_dict() == cfg.to_dict()


def test_parse_override_values():
    assert parse_override("a.b=1e-5") == (["a", "b"], 1e-5)
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a.b=null") == (["a", "b"], None)
    assert parse_override("a.b=hello") == (["a", "b"], "hello")
    with pytest.raises(RunConfigError, match="section.key=value"):
        parse_override("nonsense")


@pytest.mark.parametrize(
    "text, match",
    [
        ("model:\n  tpye: tpm-mi\n", r"model\.tpye"),
        ("training:\n  warmup_ratio: 0.1\n", "warmup_steps"),
        ("model:\n  type: lstm\n", "model.type"),
        ("data:\n  train_fraction: 1.5\n", "train_fraction"),
        ("bogus: {}\n", "unknown section"),
        ("model: [\n", r"c\.yaml:\d+: invalid YAML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, match):
    p = _write(tmp_path, text)
    with pytest.raises(RunConfigError, match=match) as info:
        RunConfig.from_yaml(p)
    assert "c.yaml" in str(info.value)


def test_example_configs_are_valid():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "examples" / "configs"
    files = sorted(folder.glob("*.yaml"))
    assert len(files) >= 7  # 3 models x 2 datasets + the sample job
    for f in files:
        cfg = RunConfig.from_yaml(f)
        if cfg.model.type == "mgips-cl":
            assert cfg.training["learning_rate"] == pytest.approx(5e-5)
            assert cfg.optim.vision_lr == pytest.approx(3e-5)
            assert cfg.training["weight_decay"] == pytest.approx(1e-2)
            assert cfg.training["warmup_steps"] == pytest.approx(0.06)
            assert cfg.training["num_train_epochs"] == 40


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.text = nn.Linear(3, 3)
        self.norm = nn.LayerNorm(3)
        self.vision = nn.Linear(3, 3)
        self.crf = nn.Parameter(torch.zeros(2, 2))

    def param_groups(self):
        return {
            "text": [*self.text.parameters(), *self.norm.parameters()],
            "vision": list(self.vision.parameters()),
            "crf": [self.crf],
        }


def test_optimizer_groups_lr_and_no_decay():
    model = _Toy()
    optim = OptimSection(vision_lr=0.0, crf_lr=1e-1, text_weight_decay=0.5)
    groups = build_optimizer_groups(model, optim, learning_rate=1e-2, weight_decay=0.01)
    by_name = {g["group_name"]: g for g in groups}
    assert set(by_name) == {"text", "text_no_decay", "vision", "vision_no_decay", "crf"}
    assert {id(p) for p in by_name["text_no_decay"]["params"]} == {
        id(model.text.bias), id(model.norm.weight), id(model.norm.bias)
    }
    assert by_name["text"]["weight_decay"] == 0.5 and by_name["text_no_decay"]["weight_decay"] == 0.0
    assert by_name["crf"]["lr"] == pytest.approx(0.1) and by_name["crf"]["weight_decay"] == 0.01
    # the groups drive a real optimizer: vision lr 0 keeps the vision weights fixed
    opt = torch.optim.AdamW(groups)
    before_v = model.vision.weight.detach().clone()
    before_t = model.text.weight.detach().clone()
    loss = (model.vision(model.norm(model.text(torch.ones(1, 3))))).sum() + model.crf.sum()
    loss.backward()
    opt.step()
    assert torch.equal(model.vision.weight, before_v)
    assert not torch.equal(model.text.weight, before_t)


def test_param_groups_must_cover_every_parameter():
    model = _Toy()
    model.param_groups = lambda: {"text": list(model.text.parameters())}
    with pytest.raises(ValueError, match="misses trainable parameters"):
        module_parameter_groups(model)
    model.param_groups = lambda: {"text": [model.crf], "crf": [model.crf]}
    with pytest.raises(ValueError, match="is in groups"):
        module_parameter_groups(model)


def test_fraction_seeded_and_nested():
    ds = Dataset.from_dict({"id": [str(i) for i in range(100)]})
    a = take_fraction(ds, 0.1, seed=3)
    b = take_fraction(ds, 0.1, seed=3)
    c = take_fraction(ds, 0.3, seed=3)
    d = take_fraction(ds, 0.1, seed=4)
    assert len(a) == 10 and a["id"] == b["id"]
    assert set(a["id"]) <= set(c["id"]) and len(c) == 30
    assert a["id"] != d["id"]
    assert take_fraction(ds, 1.0, seed=0) is ds
    with pytest.raises(ValueError):
        take_fraction(ds, 0.0, seed=0)


def test_ensure_splits_partitions_train():
    ds = DatasetDict({"train": Dataset.from_dict({"id": [str(i) for i in range(6)]})})
    out = ensure_splits(ds, [0.6, 0.2, 0.2], seed=1)
    ids = [set(out[s]["id"]) for s in ("train", "validation", "test")]
    assert sum(map(len, ids)) == 6 and set.union(*ids) == {str(i) for i in range(6)}
    assert all(ids) and not (ids[0] & ids[1]) and not (ids[1] & ids[2])
    assert ensure_splits(ds, [0.6, 0.2, 0.2], seed=1)["test"]["id"] == out["test"]["id"]
    renamed = ensure_splits(DatasetDict({"train": ds["train"], "dev": ds["train"], "test": ds["train"]}), [1, 0, 0], 0)
    assert set(renamed) == {"train", "validation", "test"}


def test_predictions_jsonl_round_trip(tmp_path):
    recs = prediction_records(
        ["p1"], [["Anna", "visits", "New", "York", "城"]], [["B-PER", "O", "B-LOC", "I-LOC", "O"]],
        [["B-PER", "O", "B-LOC", "O", "B-ORG"]], [3],
    )
    path = write_jsonl(recs, tmp_path / "pred.jsonl")
    back = read_jsonl(path)
    assert back == json.loads(json.dumps(recs))
    r = back[0]
    assert r["num_images"] == 3
    assert r["gold_spans"] == [
        {"type": "PER", "start": 0, "end": 1, "text": "Anna"},
        {"type": "LOC", "start": 2, "end": 4, "text": "New York"},
    ]
    assert [s["text"] for s in r["pred_spans"]] == ["Anna", "New", "城"]
    with pytest.raises(ValueError, match="post p2: 2 words, 1 gold"):
        prediction_records(["p2"], [["a", "b"]], [["O"]], [["O", "O"]], [0])
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        read_jsonl(tmp_path / "bad.jsonl")


def test_summary_table_values():
    text = summary_table({"test overall": {"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "support": 8}})
    row = text.splitlines()[-1].split()
    assert row[-4:] == ["50.00", "25.00", "33.33", "8"]


def test_grid_search_selects_on_dev_not_test():
    base = RunConfig.from_dict({"model": {"type": "bert-crf"}})
    dev = {1e-5: 0.5, 3e-5: 0.7, 5e-5: 0.6}
    test = {1e-5: 0.9, 3e-5: 0.1, 5e-5: 0.2}
    seen = []

    def run(cfg):
        lr = cfg.training["learning_rate"]
        seen.append((lr, cfg.training["per_device_train_batch_size"]))
        return {"validation": {"overall": {"f1": dev[lr]}}, "test": {"overall": {"f1": test[lr]}}}

    grid = {"training.learning_rate": [1e-5, 3e-5, 5e-5], "training.per_device_train_batch_size": [8, 16]}
    res = grid_search(base, grid, run)
    assert len(seen) == 6 and len(expand_grid(grid)) == 6
    assert res.best.overrides["training.learning_rate"] == 3e-5
    assert res.best.overrides["training.per_device_train_batch_size"] == 8  # tie -> first
    assert res.best.results["test"]["overall"]["f1"] == 0.1
    assert "*" in res.table()


# ---------------------------------------------------------------- issue 10


def test_config_overrides_typo_is_an_error_listing_valid_keys(tmp_path):
    from mner_hf.training.run_config import config_override_keys

    p = _write(tmp_path, "model:\n  type: tpm-mi\n  config_overrides:\n    prompt_lenght: 4\n")
    with pytest.raises(RunConfigError) as info:
        RunConfig.from_yaml(p)
    msg = str(info.value)
    assert "model.config_overrides.prompt_lenght" in msg and "prompt_length" in msg and "c.yaml" in msg
    assert "prompt_length" in config_override_keys("tpm-mi") and "ips_top_k" in config_override_keys("mgips-cl")
    assert "ips_top_k" not in config_override_keys("tpm-mi") and "text_config" not in config_override_keys("bert-crf")
    # a key valid for one model is an error for another, also through --set
    with pytest.raises(RunConfigError, match="ips_top_k"):
        RunConfig.from_yaml(_write(tmp_path, "model:\n  type: bert-crf\n"), ["model.config_overrides.ips_top_k=3"])
    p = _write(tmp_path, "model:\n  type: tpm-mi\n  config_overrides:\n    prompt_lenght: 4\n")
    ok = RunConfig.from_yaml(p, ["model.config_overrides={prompt_length: 4}"])
    assert ok.model.config_overrides == {"prompt_length": 4}


def test_unknown_dataset_name_is_a_config_error(tmp_path):
    with pytest.raises(RunConfigError, match=r"data.dataset: unknown dataset 'twiter2017'"):
        RunConfig.from_yaml(_write(tmp_path, "data:\n  dataset: twiter2017\n"))
    assert RunConfig.from_yaml(_write(tmp_path, "data:\n  dataset: MNER-MI-Plus\n")).data.dataset == "MNER-MI-Plus"


SHIPPED_CONFIGS = sorted((__import__("pathlib").Path(__file__).parents[1] / "examples" / "configs").glob("*.yaml"))


_FIXTURE_DIRS = {"twitter2017": "twitter", "twitter2015": "twitter", "mner_mi": "mner_mi", "mner_mi_plus": "mner_mi"}


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_names_a_dataset_load_dataset_accepts(path, tmp_path):
    from mner_hf.builders import BUNDLED, SPECS, load_dataset, normalize_dataset_name
    from mner_hf.training.run_config import config_override_keys, training_arguments_kwargs

    cfg = RunConfig.from_yaml(path)
    name = normalize_dataset_name(cfg.data.dataset)
    assert name in SPECS
    # the configured spelling goes through load_dataset itself (on a fixture copy of the format)
    fixtures = __import__("pathlib").Path(__file__).parent / "fixtures" / "data"
    data_dir = None
    if name not in BUNDLED:  # the bundled datasets need no data_dir
        data_dir = fixtures / _FIXTURE_DIRS[name]
    dd = load_dataset(cfg.data.dataset, data_dir=data_dir, cache_dir=tmp_path / "c", check_images=False)
    assert len(dd["train"]) > 0
    assert set(cfg.model.config_overrides) <= set(config_override_keys(cfg.model.type))
    from transformers import TrainingArguments

    kwargs = training_arguments_kwargs(cfg, output_dir=str(path.parent / "unused"))
    assert set(kwargs) <= {f.name for f in __import__("dataclasses").fields(TrainingArguments)}


def test_shipped_configs_cover_every_model_and_the_mner_mi_spelling():
    assert len(SHIPPED_CONFIGS) >= 7
    names = {p.name for p in SHIPPED_CONFIGS}
    assert {"tpm_mi_mner_mi.yaml", "mgips_cl_mner_mi.yaml", "bert_crf_mner_mi.yaml"} <= names
