"""MNERTrainer + the run on a tiny BERT-CRF over the bundled sample (CPU, seconds)."""

from __future__ import annotations

import json

import pytest
import torch

from mner_hf.training.run import run_training
from mner_hf.training.run_config import RunConfig


def tiny_config(tmp_path, model="bert-crf", **training):
    raw = {
        "model": {"type": model, "text_encoder": "tiny-random",
                  "vision_encoder": None if model == "bert-crf" else "tiny-random",
                  "use_images": model != "bert-crf", "max_images": 4},
        "data": {"dataset": "sample", "split_ratios": [0.5, 0.25, 0.25], "split_seed": 7},
        "optim": {"crf_lr": 5e-2, "text_weight_decay": 0.0},
        "training": {"output_dir": str(tmp_path / "run"), "learning_rate": 1e-3, "per_device_train_batch_size": 2,
                     "per_device_eval_batch_size": 2, "num_train_epochs": 3, "logging_steps": 1,
                     "use_cpu": True, "save_total_limit": 2, "seed": 0, **training},
        "output": {"write_plots": False},
    }
    return RunConfig.from_dict(raw, source="test")


@pytest.fixture(scope="module")
def bert_crf_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bc")
    seen = {}

    from transformers import TrainerCallback

    class Spy(TrainerCallback):
        def on_train_begin(self, args, state, control, optimizer=None, **kw):
            seen["trainer_optimizer"] = optimizer

        def on_step_end(self, args, state, control, optimizer=None, **kw):
            if "groups" not in seen and optimizer is not None:
                seen["groups"] = [(g.get("group_name"), g["lr"], g["weight_decay"]) for g in optimizer.param_groups]

    out = run_training(tiny_config(tmp), callbacks=[Spy()])
    return out, seen, tmp


def test_run_writes_results_and_predictions(bert_crf_run):
    out, _, tmp = bert_crf_run
    res = json.loads((out.final_dir / "results.json").read_text())
    assert set(res) == {"validation", "test", "data", "precision", "cpu_allocator", "cpu_threads"}
    assert res.pop("cpu_threads")["torch_threads"] == torch.get_num_threads()
    from mner_hf.cpu_allocator import tune_cpu_allocator

    assert res.pop("cpu_allocator") == tune_cpu_allocator().to_dict()  # the process-wide setting it trained with
    assert res["data"]["read"]["train"]["posts"] == 6 and res["data"]["images_used"] is False
    # the precision the run used and why ("auto" resolved for this machine), also in the card
    from mner_hf.models.precision import resolve_precision

    expected = resolve_precision("auto", "cpu")
    assert res.pop("precision") == expected.to_dict() == out.precision
    card = (out.final_dir / "README.md").read_text()
    assert f"Precision: **{expected.precision}** on cpu ({expected.reason})" in card
    for split in ("validation", "test"):
        o = res[split]["overall"]
        assert 0.0 <= o["f1"] <= 1.0 and o["support"] > 0
        # per number of images: buckets of the split's posts, supports add up to the total
        assert sum(m["support"] for m in res[split]["per_num_images"].values()) == o["support"]
        assert sum(m["support"] for m in res[split]["per_type"].values()) == o["support"]
    preds = [json.loads(l) for l in (out.final_dir / "predictions_test.jsonl").read_text().splitlines()]
    assert len(preds) == 2  # 6 posts: 3 train / 1.5 -> 2 dev ... split sizes add to 6
    for rec in preds:
        assert len(rec["words"]) == len(rec["gold_tags"]) == len(rec["pred_tags"])
        assert rec["num_images"] >= 1
    # the gold spans written equal the entities the test metrics counted
    assert sum(len(r["gold_spans"]) for r in preds) == res["test"]["overall"]["support"]
    assert (out.final_dir / "README.md").is_file() and (out.final_dir / "model.safetensors").is_file()


def test_loss_components_logged_and_best_checkpoint_by_dev_f1(bert_crf_run):
    out, _, _ = bert_crf_run
    train_logs = [h for h in out.log_history if "loss" in h]
    assert train_logs and all("loss_crf" in h for h in train_logs)
    # with one loss term the component equals the logged loss (mean over the same steps)
    for h in train_logs:
        assert h["loss_crf"] == pytest.approx(h["loss"], rel=1e-3, abs=1e-3)
    evals = [h for h in out.log_history if "eval_f1" in h]
    assert len(evals) == 3
    best = max(h["eval_f1"] for h in evals)
    assert out.results["validation"]["overall"]["f1"] == pytest.approx(best)
    assert train_logs[-1]["loss"] < train_logs[0]["loss"]


def test_per_module_learning_rates(bert_crf_run):
    _, seen, _ = bert_crf_run
    groups = {name: (lr, wd) for name, lr, wd in seen["groups"]}
    assert set(groups) == {"text", "text_no_decay", "crf", "crf_no_decay"}
    assert groups["text_no_decay"][1] == 0.0 and groups["crf_no_decay"][1] == 0.0
    assert groups["text"][1] == 0.0  # text_weight_decay override
    assert groups["crf"][1] == pytest.approx(0.0)  # training.weight_decay default 0
    # linear schedule: after the first step the ratio between group lrs is the configured one
    assert groups["crf"][0] / groups["text"][0] == pytest.approx(50.0)


def test_every_group_learning_rate_is_logged(bert_crf_run):
    out, _, _ = bert_crf_run
    train_logs = [h for h in out.log_history if "loss" in h and "eval_loss" not in h]
    assert train_logs and all({"lr_text", "lr_crf"} <= set(h) for h in train_logs)
    later = [h for h in train_logs if h["lr_text"] > 0]
    assert later and all(h["lr_crf"] / h["lr_text"] == pytest.approx(50.0) for h in later)


def test_evaluation_uses_viterbi_predictions_and_counts_truncated_entities(tmp_path):
    from mner_hf.training.run import build_model, build_processor, label_names, load_run_data
    from mner_hf.training.encoders import resolve_encoders
    from mner_hf.training.trainer import MNERTrainer, mner_training_arguments
    from mner_hf.collator import MNERDataCollator
    from mner_hf.metrics import compute_metrics

    cfg = tiny_config(tmp_path)
    cfg.data.max_length = 24  # CMNER posts are longer: words are cut
    dd = load_run_data(cfg)
    labels = label_names(dd)
    text, _ = resolve_encoders("tiny-random", None, tmp_path / "enc", dd["train"]["tokens"])
    proc = build_processor(cfg, text, None, labels)
    torch.manual_seed(0)
    model = build_model(cfg, text, None, labels)
    # make the emissions favour a tag everywhere so that predictions are non-trivial
    with torch.no_grad():
        model.classifier.bias[labels.index("B-PER")] += 3.0
    collator = MNERDataCollator(proc, label_names=labels)
    trainer = MNERTrainer(model=model, args=mner_training_arguments(output_dir=str(tmp_path / "o"), use_cpu=True,
                          per_device_eval_batch_size=2, eval_strategy="no"),
                          processing_class=proc, data_collator=collator)
    metrics = trainer.evaluate(dd["train"], metric_key_prefix="dev")
    d = trainer.last_eval_details["dev"]
    # reference: the model's own Viterbi decode, truncated words predicted O, full gold tags
    model.eval()
    ref_pred, ref_gold, n_scored = [], [], 0
    for i in range(len(dd["train"])):
        row = dd["train"][i]
        batch = collator([row])
        with torch.no_grad():
            p = model(**batch).predictions[0]
        tags = [labels[int(t)] for t in p if t != -100]
        gold = [labels[t] for t in row["ner_tags"]]
        n_scored += len(tags)
        ref_pred.append(tags + ["O"] * (len(gold) - len(tags)))
        ref_gold.append(gold)
    assert d["pred_tags"] == ref_pred and d["gold_tags"] == ref_gold
    ref = compute_metrics(ref_gold, ref_pred, dd["train"]["num_images"])
    assert metrics["dev_f1"] == pytest.approx(ref["f1"]) and metrics["dev_recall"] == pytest.approx(ref["recall"])
    assert metrics["dev_truncated_words"] == sum(len(t) for t in dd["train"]["tokens"]) - n_scored > 0
    assert d["overall"]["support"] == sum(
        sum(1 for t in g if t.startswith("B-")) for g in ref_gold
    )  # every gold entity counted, including those cut by max_length


def test_remove_unused_columns_must_be_false(tmp_path):
    from transformers import TrainingArguments

    from mner_hf.training.trainer import MNERTrainer, mner_training_arguments

    args = mner_training_arguments(output_dir=str(tmp_path))
    assert args.remove_unused_columns is False and args.metric_for_best_model == "f1"
    assert args.load_best_model_at_end is True and args.greater_is_better is True
    with pytest.raises(ValueError, match="remove_unused_columns"):
        MNERTrainer(model=torch.nn.Linear(1, 1), args=TrainingArguments(output_dir=str(tmp_path)))


TWITTER_FIXTURE = __import__("pathlib").Path(__file__).parent / "fixtures" / "data" / "twitter"


def _twitter2015_config(tmp_path, **data):
    config = tiny_config(tmp_path, num_train_epochs=1)
    config.data.dataset = "twitter2015"
    config.data.data_dir = str(TWITTER_FIXTURE)
    for key, value in data.items():
        setattr(config.data, key, value)
    return config


def test_orphan_i_tags_are_repaired_for_the_constrained_crf(tmp_path):
    """The fixture's 'obama I-PER' has no B-PER: the default policy repairs it, so training runs and
    every gold entity (the orphan included) is still counted in evaluation."""
    out = run_training(_twitter2015_config(tmp_path))
    res = json.loads((out.final_dir / "results.json").read_text())
    gold = [json.loads(l) for split in ("validation", "test")
            for l in (out.final_dir / f"predictions_{split}.jsonl").read_text().splitlines()]
    n_gold = sum(len(rec["gold_spans"]) for rec in gold)
    assert res["validation"]["overall"]["support"] + res["test"]["overall"]["support"] == n_gold
    words = [rec["words"] for rec in gold]
    if ["obama", "in", "Paris"] in words:  # the orphan post landed in dev/test: its PER span is gold
        rec = gold[words.index(["obama", "in", "Paris"])]
        assert any(span["type"] == "PER" and span["start"] == 0 for span in rec["gold_spans"])


def test_kept_orphans_with_constrained_crf_fail_with_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match="(?i)repair"):
        run_training(_twitter2015_config(tmp_path / "keep", orphan_policy="keep", split_seed=1))


def test_bf16_without_cuda_means_cpu_autocast():
    from mner_hf.training.trainer import mner_training_arguments

    if torch.cuda.is_available():
        pytest.skip("checks the CPU fallback")
    args = mner_training_arguments(output_dir="unused", bf16=True)
    assert args.use_cpu and args.bf16 and args.device.type == "cpu"


def test_best_checkpoint_tie_on_dev_f1_goes_to_lower_dev_loss():
    from transformers import TrainerState

    from mner_hf.training.trainer import MNERTrainer, mner_training_arguments

    trainer = object.__new__(MNERTrainer)  # only args + state are used by the selection rule
    trainer.args = mner_training_arguments(output_dir="unused", use_cpu=True)
    trainer.state = TrainerState()

    def evaluate(step, f1, loss):
        trainer.state.global_step = step
        metrics = {"eval_f1": f1, "eval_loss": loss}
        trainer.state.log_history.append({**metrics, "step": step})
        return trainer._determine_best_metric(metrics, None)

    assert evaluate(1, 0.0, 90.0)  # first evaluation is the best so far
    assert evaluate(2, 0.0, 80.0) and trainer.state.best_global_step == 2  # tie, lower loss
    assert not evaluate(3, 0.0, 85.0) and trainer.state.best_global_step == 2  # tie, higher loss
    assert evaluate(4, 0.5, 99.0) and trainer.state.best_global_step == 4  # higher F1 wins whatever the loss
    assert not evaluate(5, 0.4, 1.0) and trainer.state.best_global_step == 4
    assert trainer.state.best_metric == 0.5


@pytest.mark.parametrize("vision_attends_text", [True, False])
def test_frozen_vision_mgips_cl_caches_only_text_independent_features(tmp_path, caplog, vision_attends_text):
    """The default-on frozen-vision cache must not stop an MGIPS-CL run whose vision tokens depend on
    the text (eq. 4): it trains from pixels and says so; the one-way model trains from the cache."""
    config = tiny_config(tmp_path, model="mgips-cl", num_train_epochs=1)
    config.model.freeze_vision = True
    config.model.config_overrides = {"vision_attends_text": vision_attends_text}
    with caplog.at_level("WARNING", logger="mner_hf.training.run"):
        out = run_training(config)
    cache_dir = tmp_path / "run" / "feature_cache"
    cached = cache_dir.is_dir() and any(cache_dir.iterdir())
    assert cached is (not vision_attends_text)
    assert ("feature cache off" in caplog.text) is vision_attends_text
    results = json.loads((out.final_dir / "results.json").read_text())
    assert results["data"]["images_used"] is True and "f1" in results["test"]["overall"]
    saved = json.loads((out.final_dir / "config.json").read_text())
    assert saved["model_type"] == "mgips_cl" and saved["vision_attends_text"] is vision_attends_text
