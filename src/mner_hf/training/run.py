"""The end-to-end job behind ``mner-hf train`` / ``examples/train.py``.

dataset (``mner_hf.builders.load_dataset``; a seeded train/dev/test split when only ``train``
exists; a seeded low-resource fraction of train) -> encoders (hub ids, the packaged MiniLM or tiny
random ones) -> MNERProcessor + MNERDataCollator -> model ``from_encoders`` -> (frozen vision:
cached image features) -> :class:`MNERTrainer` (best checkpoint by DEV F1) -> one TEST evaluation
-> final folder: weights + processor + code (``save_for_hub``), model card, plots,
``predictions_{validation,test}.jsonl``, ``results.json``, ``run_config.yaml``.

Works unchanged under ``python`` and ``accelerate launch`` (the Trainer reads the accelerate
environment); only the main process writes the final folder.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .predictions import format_tagged_post, prediction_records, read_jsonl, summary_table, write_jsonl
from .run_config import RunConfig, RunConfigError, training_arguments_kwargs
from .thread_binding import thread_cpus
from .splits import ensure_splits, take_fraction

logger = logging.getLogger(__name__)

# model.type -> (module under mner_hf.models, class name)
MODEL_CLASSES = {
    "tpm-mi": ("modeling_tpm_mi", "TPMMIForTokenClassification"),
    "bert-crf": ("modeling_bert_crf", "BertCRFForTokenClassification"),
    "mgips-cl": ("modeling_mgips_cl", "MGIPSCLForTokenClassification"),
}


# datasets whose words are single characters (raw text is split per character at inference)
CHAR_DATASETS = ("cmner", "sample", "cmner_sample")


def model_class(model_type: str) -> type:
    module, name = MODEL_CLASSES[model_type]
    return getattr(importlib.import_module(f"mner_hf.models.{module}"), name)


@dataclass
class RunOutput:
    """What a run produced: per-split results, the final folder and the written files."""

    results: dict[str, dict[str, Any]]
    final_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    log_history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    #: the precision training and evaluation ran at and why (``PrecisionChoice.to_dict()``)
    precision: dict[str, str] = field(default_factory=dict)
    data_report: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # printed with the report (e.g. vocabulary extension)
    word_joiner: str = " "  # "" for character-split datasets (CMNER) when posts are printed


def load_run_data(config: RunConfig):
    """DatasetDict with ``train`` / ``validation`` / ``test`` per the data section."""
    from ..builders import load_dataset

    from .data_report import build_data_report

    d = config.data
    dd = load_dataset(
        d.dataset, data_dir=d.data_dir, image_dir=d.image_dir, image_policy=d.image_policy,
        orphan_policy=d.orphan_policy,
    )
    read_reports = dict(getattr(dd, "read_reports", {}) or {})
    dd = ensure_splits(dd, list(d.split_ratios), d.split_seed)
    dd["train"] = take_fraction(dd["train"], float(d.train_fraction), d.fraction_seed)
    if d.max_train_samples:
        dd["train"] = dd["train"].select(range(min(d.max_train_samples, len(dd["train"]))))
    for split in ("validation", "test"):
        if d.max_eval_samples:
            dd[split] = dd[split].select(range(min(d.max_eval_samples, len(dd[split]))))
    images_used = config.model.use_images and config.model.type != "bert-crf"
    if not images_used:
        dd = dd.remove_columns([c for c in ("images",) if c in dd["train"].column_names])
    dd.data_report = build_data_report(read_reports, dd, config.model.max_images, images_used)
    return dd


def label_names(dd) -> list[str]:
    """Tag names of the dataset's ``ner_tags`` ClassLabel."""
    return list(dd["train"].features["ner_tags"].feature.names)


def build_processor(config: RunConfig, text_path: str, vision_path: str | None, labels: list[str]):
    """MNERProcessor from the text tokenizer and the vision encoder's PIL image processor."""
    from transformers import AutoImageProcessor, AutoTokenizer, ViTImageProcessorPil

    from ..models.processing_mner import MNERProcessor

    tokenizer = AutoTokenizer.from_pretrained(text_path)
    if vision_path:
        image_processor = AutoImageProcessor.from_pretrained(vision_path, backend="pil")
    else:  # text-only model: images are never loaded, a small processor fills the slot
        image_processor = ViTImageProcessorPil(size={"height": 32, "width": 32})
    return MNERProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        max_images=max(1, config.model.max_images),
        max_length=config.data.max_length,
        label2id={t: i for i, t in enumerate(labels)},
        on_image_error=config.data.image_policy,
        word_split="char" if config.data.dataset in CHAR_DATASETS else "whitespace",
    )


def build_model(config: RunConfig, text_path: str, vision_path: str | None, labels: list[str]):
    """``from_encoders`` of the configured model class; frozen vision encoder when asked."""
    cls = model_class(config.model.type)
    kwargs = dict(config.model.config_overrides)
    if config.model.type == "bert-crf":
        return cls.from_encoders(text=text_path, labels=labels, **kwargs)
    kwargs.setdefault("max_images", max(1, config.model.max_images))
    model = cls.from_encoders(text=text_path, vision=vision_path, labels=labels, **kwargs)
    if config.model.freeze_vision:
        from .feature_cache import find_image_encoder

        find_image_encoder(model).requires_grad_(False)
        model.config.freeze_vision = True
    return model


def image_decoding_workers(training_kwargs: dict[str, Any]) -> int:
    """Default ``dataloader_num_workers`` when the collator decodes images on the fly (no feature cache).

    On CUDA, worker processes decode and preprocess the next batches while the GPU computes:
    ``min(4, CPUs // 2)``. On CPU the model and the decoding share the same cores, and a worker
    process measured no faster than decoding in the main process (``benchmarks/README.md``,
    ``bench_training_input.py``): 0. ``training.dataloader_num_workers`` overrides either.
    """
    import os

    from .precision import training_device

    if training_device(training_kwargs) == "cuda":
        return max(1, min(4, (os.cpu_count() or 2) // 2))
    return 0


def _split_results(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in details.items() if k in ("overall", "per_type", "per_num_images", "mode")}


def run_training(
    config: RunConfig, resume: bool | str | None = None, do_test: bool = True, callbacks: list | None = None
) -> RunOutput:
    """Train, select on dev, evaluate test once, write the final folder. See the module docstring."""
    import torch
    from transformers import set_seed

    from ..collator import MNERDataCollator
    from .encoders import VOCAB_INFO, resolve_encoders
    from .trainer import MNERTrainer, mner_training_arguments

    start = time.time()
    targs = training_arguments_kwargs(config, output_dir="runs/mner")
    output_dir = Path(targs["output_dir"])
    seed = int(targs.get("seed", 42))
    set_seed(seed)

    dd = load_run_data(config)
    data_report = getattr(dd, "data_report", {})
    data_lines = _data_lines(data_report)
    clean = data_lines == _data_lines({"read": {}})
    for line in data_lines:
        (logger.info if clean else logger.warning)("data: %s", line)
    labels = label_names(dd)
    use_vision = config.model.type != "bert-crf" and config.model.use_images
    text_path, vision_path = resolve_encoders(
        config.model.text_encoder, config.model.vision_encoder if use_vision else None, output_dir / "encoders",
        dd["train"]["tokens"], config.model.tiny_hidden_size, config.model.tiny_num_layers,
        config.model.tiny_image_size, extend_vocab=config.model.extend_vocabulary,
        vocab_min_count=config.model.vocab_min_count,
        vision_kind="clip" if config.model.type == "mgips-cl" else "vit",
    )
    processor = build_processor(config, text_path, vision_path, labels)
    set_seed(seed)
    model = build_model(config, text_path, vision_path, labels)
    collator = MNERDataCollator(processor, label_names=labels)

    use_cache = use_vision and config.model.freeze_vision and config.model.cache_frozen_vision
    if use_cache:
        from .feature_cache import CachedFeatureCollator, cache_image_features, find_image_encoder

        encoder = find_image_encoder(model)
        if getattr(encoder, "cache_mode", "pooled") == "unavailable":
            # MGIPS-CL with mutual attention (eq. 4): the frozen encoder's tokens depend on the text,
            # so there is nothing text-independent to cache; train from pixels and say so.
            logger.warning("frozen-vision feature cache off: this model's vision features depend on the text "
                           "(MGIPS-CL vision_attends_text=True, eq. 4); images are encoded every step")
            use_cache = False
    if use_cache:
        for split in list(dd):
            dd[split] = cache_image_features(dd[split], processor, encoder, output_dir / "feature_cache")
        collator = CachedFeatureCollator(collator)
    elif use_vision and "dataloader_num_workers" not in targs:
        targs["dataloader_num_workers"] = image_decoding_workers(targs)

    args = mner_training_arguments(precision=config.compute.precision, **targs)
    trainer = MNERTrainer(
        model=model, args=args, train_dataset=dd["train"], eval_dataset=dd["validation"],
        processing_class=processor, data_collator=collator, optim_config=config.optim, callbacks=callbacks,
    )
    if resume is True:
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
        if last is None:
            raise RunConfigError(f"--resume: no checkpoint-* folder in {output_dir}")
        resume = last
    trainer.train(resume_from_checkpoint=resume or None)
    precision = trainer.precision.to_dict()

    results: dict[str, dict[str, Any]] = {}
    trainer.evaluate(dd["validation"], metric_key_prefix="validation")
    results["validation"] = _split_results(trainer.last_eval_details["validation"])
    if do_test:
        trainer.evaluate(dd["test"], metric_key_prefix="test")
        results["test"] = _split_results(trainer.last_eval_details["test"])

    final_dir = Path(config.output.final_dir or output_dir / "final")
    out = RunOutput(results=results, final_dir=final_dir, log_history=list(trainer.state.log_history),
                    precision=precision, data_report=data_report, word_joiner="" if config.data.dataset in CHAR_DATASETS else " ")
    vocab_info = Path(text_path) / VOCAB_INFO
    if config.model.extend_vocabulary and vocab_info.is_file():
        info = json.loads(vocab_info.read_text())
        out.notes.append(
            f"vocabulary: +{info['added']} training-corpus characters ({info['vocab_size'][0]} -> "
            f"{info['vocab_size'][1]} tokens); [UNK] share of training characters "
            f"{100 * info['unk_rate_before']:.1f}% -> {100 * info['unk_rate_after']:.1f}%"
        )
    if trainer.is_world_process_zero():
        out.files = write_final_folder(config, trainer, processor, dd, results, final_dir, text_path, vision_path)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    out.seconds = time.time() - start
    return out


def write_final_folder(config, trainer, processor, dd, results, final_dir: Path, text_path, vision_path) -> dict[str, Path]:
    """Checkpoint + processor + code, predictions, results, plots and card into ``final_dir``."""
    from ..checkpoint import widget_examples
    from .model_card import build_model_card
    from .plots import write_all_plots

    final_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for split in results:
        details = trainer.last_eval_details[split]
        ds = dd[split]
        words = [list(w)[: len(g)] if len(w) > len(g) else list(w) for w, g in zip(ds["tokens"], details["gold_tags"])]
        recs = prediction_records(ds["id"], words, details["gold_tags"], details["pred_tags"], ds["num_images"])
        if config.output.write_predictions:
            files[f"predictions_{split}"] = write_jsonl(recs, final_dir / f"predictions_{split}.jsonl")
    precision = trainer.precision.to_dict()
    data_report = getattr(dd, "data_report", None)
    (final_dir / "results.json").write_text(
        json.dumps({**results, "data": data_report or {}, "precision": precision,
                    "cpu_allocator": trainer.cpu_allocator.to_dict(),
                    "cpu_threads": {**trainer.cpu_threads, "thread_cpus": thread_cpus()}}, indent=2))
    files["results"] = final_dir / "results.json"
    (final_dir / "run_config.yaml").write_text(config.to_yaml())
    files["run_config"] = final_dir / "run_config.yaml"
    plots: dict[str, str] = {}
    detail_split = "test" if "test" in results else "validation"
    if config.output.write_plots:
        d = trainer.last_eval_details[detail_split]
        written = write_all_plots(
            final_dir, trainer.state.log_history, results[detail_split].get("per_type", {}), d["gold_tags"],
            d["pred_tags"], types=sorted({t[2:] for t in trainer.id2label.values() if t != "O"}),
        )
        plots = {title: p.name for title, p in written.items()}
        files.update({f"plot_{p.stem}": p for p in written.values()})
    card = None
    if config.output.write_model_card:
        card = build_model_card(
            results=results, model_type=config.model.type, dataset_name=config.data.dataset,
            entity_types=sorted({t[2:] for t in trainer.id2label.values() if t != "O"}),
            text_encoder=config.model.text_encoder if config.model.text_encoder not in ("minilm",) else "sentence-transformers/all-MiniLM-L6-v2",
            vision_encoder=vision_path and config.model.vision_encoder, training_config_yaml=config.to_yaml(),
            license=config.output.license, max_images=config.model.max_images,
            num_parameters=sum(p.numel() for p in trainer.model.parameters()),
            split_sizes={s: len(dd[s]) for s in ("train", "validation", "test")}, plots=plots,
            repo_id=config.output.hub_repo_id, widget=widget_examples(processor), precision=precision,
            data_note="\n".join(f"- {line}" for line in _data_lines(data_report)),
        )
    save_checkpoint(trainer.model, processor, final_dir, card)
    files["model"] = final_dir / "model.safetensors"
    files["config"] = final_dir / "config.json"
    if (final_dir / "processor_config.json").is_file():
        files["processor"] = final_dir / "processor_config.json"
    if card is not None:
        files["card"] = final_dir / "README.md"
    return files


def save_checkpoint(model, processor, folder: Path, card=None) -> None:
    """``mner_hf.checkpoint.save_for_hub`` when available, else save_pretrained of both + card."""
    try:
        from ..checkpoint import save_for_hub
    except ImportError:
        save_for_hub = None
    if save_for_hub is not None:
        save_for_hub(model, processor, folder, card=card)
        return
    model.save_pretrained(str(folder))
    processor.save_pretrained(str(folder))
    if card is not None:
        card.save(folder / "README.md")


def _data_lines(report: dict[str, Any] | None) -> list[str]:
    from .data_report import data_report_lines

    return data_report_lines(report) if report else []


def print_report(out: RunOutput) -> None:
    """Readable summary table + where everything was written."""
    rows: dict[str, dict[str, float]] = {}
    for split, res in out.results.items():
        rows[f"{split} overall"] = res["overall"]
        if split == "test":
            for t, m in sorted(res.get("per_type", {}).items()):
                rows[f"  test {t}"] = m
            for n, m in res.get("per_num_images", {}).items():
                rows[f"  test {n} image(s)"] = m
    print()
    print(summary_table(rows, title=f"Results (entity-level seqeval, {out.seconds:.0f} s)"))
    if out.precision:
        print(f"precision: {out.precision['precision']} on {out.precision['device_type']} ({out.precision['reason']})")
    losses = [entry["loss"] for entry in out.log_history if "loss" in entry]
    if len(losses) >= 2:
        print(f"training loss: {losses[0]:.4g} (first step) -> {losses[-1]:.4g} (last step)")
    dev_f1 = [(entry.get("epoch", 0), 100 * entry["eval_f1"]) for entry in out.log_history if "eval_f1" in entry]
    if dev_f1:
        print("dev F1 per epoch: " + ", ".join(f"{f1:.2f} (epoch {epoch:g})" for epoch, f1 in dev_f1))
    for note in out.notes:
        print(note)
    preds = out.files.get("predictions_test")
    if preds is not None and Path(preds).is_file():
        records = read_jsonl(preds)
        shown = [r for r in records if r["num_images"] > 0][:3] + [r for r in records if not r["num_images"]][:2]
        if shown:
            print()
            print("Tagged test posts ([words]TYPE = predicted; + agrees with gold/prediction, - does not):")
            for rec in shown:
                print("\n".join(format_tagged_post(rec, joiner=out.word_joiner)))
    support = sum(res["overall"].get("support", 0) for res in out.results.values())
    if support < 50:
        print(
            f"note: only {support} gold entities in dev + test: these scores show that the pipeline runs "
            "end to end, not model quality (README 'Results' has real-data numbers)."
        )
    for line in _data_lines(out.data_report):
        print(f"data: {line}")
    print()
    print(f"final checkpoint: {out.final_dir}")
    for name, path in sorted(out.files.items()):
        print(f"  {name:<24} {path}")


def main_from_args(args: argparse.Namespace) -> int:
    """``mner-hf train`` / ``examples/train.py``: parse config + overrides, run, print the report."""
    overrides = list(args.overrides or [])
    if getattr(args, "output_dir", None):
        overrides.append(f"training.output_dir={args.output_dir}")
    if getattr(args, "fraction", None) is not None:
        overrides.append(f"data.train_fraction={args.fraction}")
    try:
        config = RunConfig.from_yaml(args.config, overrides)
    except RunConfigError as err:
        print(f"mner-hf train: {err}")
        return 2
    if getattr(args, "restart_argv", None) is not None:
        from .thread_binding import maybe_rebind

        maybe_rebind(training_arguments_kwargs(config), args.restart_argv)  # re-starts when binding helps
    out = run_training(config, resume=getattr(args, "resume", None), do_test=not getattr(args, "no_test", False))
    if out.files:
        print_report(out)
    return 0
