"""MNERTrainer: the HF ``Trainer`` with the defaults and evaluation of multimodal NER.

* ``remove_unused_columns=False`` (the collator needs ``tokens`` / ``images``), the processor
  as ``processing_class``, best checkpoint by DEV entity F1 (``metric_for_best_model="f1"``,
  ``load_best_model_at_end=True``): see :func:`mner_training_arguments`.
* per-module learning rates / weight decays (text, vision, fusion, crf; no decay on bias and
  LayerNorm): :meth:`MNERTrainer.create_optimizer` with :mod:`mner_hf.training.optim`.
* every loss term of ``outputs.loss_components`` is logged (``loss_crf``, ``loss_ips_cl``, ...),
  averaged over the steps since the last log and over processes.
* CNN vision encoders get channels-last weights (oneDNN's fast convolution layout).
* evaluation decodes with the model's Viterbi ``outputs.predictions`` (B, W) (never an argmax
  of logits) and scores with seqeval through :mod:`mner_hf.metrics`: overall, per type and per
  number of images of the post (read from the evaluated dataset's ``num_images`` column; the
  evaluation sampler is sequential and ``gather_for_metrics`` drops distributed padding, so
  prediction row i is dataset row i, each post evaluated exactly once).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainingArguments

from ..cpu_allocator import AllocatorTuning, tune_cpu_allocator
from .optim import build_optimizer_groups
from .precision import ARGS_ATTRIBUTE, choose_training_precision, precision_flags, precision_of
from .run_config import OptimSection
from .thread_binding import current_binding

IGNORE = -100


def mner_training_arguments(precision: str | None = "auto", **kwargs: Any) -> TrainingArguments:
    """``TrainingArguments`` with MNER defaults; explicit ``kwargs`` win.

    Defaults: ``remove_unused_columns=False``, ``metric_for_best_model="f1"``,
    ``greater_is_better=True``, ``load_best_model_at_end=True`` (when evaluation and saving are
    both per epoch or per step), ``label_names=["labels"]``, ``report_to="none"``,
    ``save_safetensors`` weights, ``logging_first_step=True``.

    ``precision`` ("auto" | "fp32" | "bf16" | "fp16", :mod:`mner_hf.training.precision`): ``auto``
    turns on bf16 autocast (training and evaluation) on CUDA with bf16 and on CPUs that report
    AVX512-BF16 or AMX, fp32 elsewhere. ``bf16=True`` / ``fp16=True`` in ``kwargs`` win. bf16 on a
    machine without CUDA means CPU autocast (``use_cpu=True``), which transformers otherwise
    rejects. The choice and its reason are kept on the returned arguments
    (:func:`~mner_hf.training.precision.precision_of`).
    """
    defaults: dict[str, Any] = {
        "remove_unused_columns": False,
        "metric_for_best_model": "f1",
        "greater_is_better": True,
        "label_names": ["labels"],
        "report_to": "none",
        "logging_first_step": True,
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
    }
    defaults.update(kwargs)
    if "load_best_model_at_end" not in kwargs:
        defaults["load_best_model_at_end"] = defaults["eval_strategy"] != "no" and str(
            defaults["save_strategy"]
        ) == str(defaults["eval_strategy"])
    choice = choose_training_precision(precision, defaults)
    for key, value in precision_flags(choice).items():
        if key == "use_cpu" and "use_cpu" in kwargs:
            continue
        defaults[key] = value
    if defaults["remove_unused_columns"]:
        raise ValueError("MNERTrainer needs remove_unused_columns=False (the collator reads tokens and images)")
    args = TrainingArguments(**defaults)
    setattr(args, ARGS_ATTRIBUTE, choice.to_dict())
    return args


def word_level_labels(labels: torch.Tensor, width: int) -> torch.Tensor:
    """Gold word tags from sub-word ``labels`` (B, L): the non-ignored positions in order.

    Per the tensor contract labels sit on the FIRST sub-word of each word, so row b's w-th
    non-ignored label is word w's tag. Returns (B, width) long, -100 after the last word.
    """
    out = labels.new_full((labels.size(0), width), IGNORE)
    for b in range(labels.size(0)):
        gold = labels[b][labels[b] != IGNORE]
        n = min(gold.numel(), width)
        out[b, :n] = gold[:n]
    return out


class MNERTrainer(Trainer):
    """``Trainer`` for the three MNER models (see the module docstring).

    Args:
        optim_config: per-module learning rates / weight decays (default: all equal to
            ``args.learning_rate`` / ``args.weight_decay``).
        id2label: tag names for scoring (default ``model.config.id2label``).
        metric_mode: seqeval mode, ``"default"`` (conlleval, published numbers) or ``"strict"``.
        other arguments: as ``transformers.Trainer``; ``processing_class`` is the MNERProcessor.
    """

    def __init__(
        self,
        *args: Any,
        optim_config: OptimSection | None = None,
        id2label: dict | None = None,
        metric_mode: str = "default",
        **kwargs: Any,
    ):
        targs = kwargs.get("args") if "args" in kwargs else (args[1] if len(args) > 1 else None)
        if targs is not None and targs.remove_unused_columns:
            raise ValueError("MNERTrainer needs TrainingArguments(remove_unused_columns=False); use mner_training_arguments()")
        if kwargs.get("compute_metrics") is None:
            kwargs["compute_metrics"] = self._compute_metrics
        model = kwargs.get("model", args[0] if args else None)
        if isinstance(model, torch.nn.Module) and any(
            isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1) for m in model.modules()
        ):
            # oneDNN runs convolutions about 2x faster on channels-last (NHWC) weights (MobileNetV2:
            # benchmarks/README.md); the activations follow the weights' layout
            model.to(memory_format=torch.channels_last)
        super().__init__(*args, **kwargs)
        self.optim_config = optim_config or OptimSection()
        self.metric_mode = metric_mode
        mapping = id2label if id2label is not None else self.model.config.id2label
        self.id2label = {int(k): v for k, v in mapping.items()}
        self._component_sums: dict[str, float] = defaultdict(float)
        self._component_steps = 0
        self._metric_dataset = None
        self.last_eval_details: dict[str, dict[str, Any]] = {}
        #: the precision training and evaluation run at, and why (``PrecisionChoice``)
        self.precision = precision_of(self.args)
        #: glibc malloc settings of this process (:mod:`mner_hf.cpu_allocator`): tuned for CPU training
        self.cpu_allocator = (tune_cpu_allocator() if self.precision.device_type == "cpu"
                              else AllocatorTuning(False, f"training on {self.precision.device_type}"))
        #: torch threads of this process and whether they are bound to cores (:mod:`.thread_binding`)
        binding = current_binding()
        self.cpu_threads = {"torch_threads": torch.get_num_threads(), **binding.to_dict()}
        if self.is_world_process_zero():
            print(f"precision: {self.precision}", flush=True)
            print(f"cpu allocator: {self.cpu_allocator}", flush=True)
            if self.precision.device_type == "cpu":
                print(f"cpu threads: {self.cpu_threads['torch_threads']}, {binding}", flush=True)

    # ------------------------------------------------------------------ optimizer
    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """AdamW (or ``args.optim``) over per-module groups: one lr / weight decay per module."""
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            groups = build_optimizer_groups(
                opt_model, self.optim_config, self.args.learning_rate, self.args.weight_decay
            )
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            optimizer_kwargs.pop("lr", None)
            optimizer_kwargs.pop("params", None)
            self.optimizer = optimizer_cls(groups, lr=self.args.learning_rate, **optimizer_kwargs)
        return self.optimizer

    # ------------------------------------------------------------------ checkpoint loading
    def _reload_weights(self, folder: str) -> bool:
        """Load the weights saved in ``folder`` through ``from_pretrained`` (True when done).

        ``Trainer`` reloads checkpoints (best model at the end, ``--resume``) with a raw
        ``load_state_dict`` of the safetensors file; in transformers 5 that misses the key renames
        that ``save_pretrained`` reverses for nested backbones (e.g. ViT's ``encoder.layer.N`` <->
        ``layers.N``), leaving those weights at their initial values. ``from_pretrained`` applies
        the conversions; its state dict is then copied strictly into the live model.
        """
        from transformers import PreTrainedModel

        model = self.accelerator.unwrap_model(self.model)
        if self.is_deepspeed_enabled or self.is_fsdp_enabled or not isinstance(model, PreTrainedModel):
            return False
        loaded = type(model).from_pretrained(folder, config=model.config)
        model.load_state_dict(loaded.state_dict(), strict=True)
        del loaded
        return True

    def _determine_best_metric(self, metrics: dict[str, float], trial: Any) -> bool:
        """Best checkpoint by dev F1 (``metric_for_best_model``); an exact tie goes to the lower dev loss.

        The ``Trainer`` keeps the earliest of tied checkpoints; with dev F1 still 0 in the first
        epochs (or flat on a tiny dev set) that is a barely trained model. The best checkpoint's dev
        loss is read back from ``state.log_history``, so the rule holds across ``--resume``.
        """
        previous_best, previous_step = self.state.best_metric, self.state.best_global_step
        if super()._determine_best_metric(metrics, trial):
            return True
        key = self.args.metric_for_best_model or ""
        key = key if key.startswith("eval_") else f"eval_{key}"
        loss = metrics.get("eval_loss")
        if previous_best is None or metrics.get(key) != previous_best or loss is None:
            return False
        best_loss = next(
            (e["eval_loss"] for e in self.state.log_history if e.get("step") == previous_step and "eval_loss" in e),
            None,
        )
        if best_loss is None or not loss < best_loss:
            return False
        self.state.best_global_step = self.state.global_step
        return True

    def _load_best_model(self) -> None:
        if not self._reload_weights(self.state.best_model_checkpoint):
            super()._load_best_model()

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        if model is not None or not self._reload_weights(resume_from_checkpoint):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    # ------------------------------------------------------------------ loss + logging
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Model loss (CRF NLL mean over posts + auxiliary terms); records ``loss_components``."""
        outputs = model(**inputs)
        loss = outputs.loss
        if loss is None:
            raise ValueError("the model returned no loss: the batch has no 'labels'")
        if model.training:
            comps = getattr(outputs, "loss_components", None) or {}
            for name, value in comps.items():
                self._component_sums[name] += float(value.detach().float())
            self._component_steps += 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Add the mean of every loss component since the last training log (``loss_<name>``) and
        the current learning rate of every module group (``lr_<group>``: the Trainer's own
        ``learning_rate`` is the first group's only)."""
        if "loss" in logs and self.optimizer is not None:
            for group in self.optimizer.param_groups:
                name = str(group.get("group_name", "")).removesuffix("_no_decay")
                if name:
                    logs[f"lr_{name}"] = group["lr"]
        if "loss" in logs and self._component_steps:
            names = sorted(self._component_sums)
            values = torch.tensor([self._component_sums[n] / self._component_steps for n in names], device=self.args.device)
            if self.args.world_size > 1:
                values = self.accelerator.reduce(values, reduction="mean")
            for n, v in zip(names, values.tolist()):
                logs[f"loss_{n}"] = round(v, 4)
            self._component_sums.clear()
            self._component_steps = 0
        super().log(logs, *args, **kwargs)

    # ------------------------------------------------------------------ evaluation
    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Returns (loss, Viterbi predictions (B, W), gold word tags (B, W)); -100 padding."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            with self.compute_loss_context_manager():
                outputs = model(**inputs)
        loss = outputs.loss.detach().mean() if getattr(outputs, "loss", None) is not None else None
        if prediction_loss_only:
            return loss, None, None
        preds = outputs.predictions.detach()
        labels = inputs.get("labels")
        gold = word_level_labels(labels, preds.size(1)) if labels is not None else None
        return loss, preds, gold

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        """As ``Trainer.evaluate``; metrics per type / per number of images are kept in
        ``last_eval_details[metric_key_prefix]`` and flattened into the returned dict."""
        self._metric_dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        self._metric_prefix = metric_key_prefix
        try:
            return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        finally:
            self._metric_dataset = None

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix: str = "test"):
        self._metric_dataset = test_dataset
        self._metric_prefix = metric_key_prefix
        try:
            return super().predict(test_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        finally:
            self._metric_dataset = None

    def decode(self, ids: np.ndarray) -> list[list[str]]:
        """(N, W) tag ids with -100 padding -> N lists of tag strings."""
        return [[self.id2label[int(t)] for t in row if t != IGNORE] for row in np.asarray(ids)]

    def _compute_metrics(self, eval_pred) -> dict[str, float]:
        """seqeval scores (``mner_hf.metrics``) of the Viterbi predictions.

        When the evaluated dataset has ``ner_tags``, the gold tags are the dataset's FULL tag
        sequences (row i of the predictions is dataset row i) and words cut by ``max_length``
        count as predicted ``O``: an entity lost to truncation is a miss, never dropped.
        The model's gold (from ``labels``) must equal the prefix of the dataset tags.
        """
        from ..metrics import compute_metrics, flatten_metrics

        preds = np.asarray(eval_pred.predictions)
        gold_tags = self.decode(np.asarray(eval_pred.label_ids))
        pred_tags = []
        for i, (p_row, g_row) in enumerate(zip(preds, gold_tags)):
            p = [self.id2label[int(t)] for t in p_row if t != IGNORE]
            if len(p) != len(g_row):
                raise ValueError(f"post {i}: {len(p)} predicted tags for {len(g_row)} gold words")
            pred_tags.append(p)
        num_images = None
        truncated_words = 0
        ds = self._metric_dataset
        columns = getattr(ds, "column_names", None) or []
        if ds is not None and len(ds) != len(gold_tags):
            raise ValueError(f"{len(gold_tags)} evaluated posts for {len(ds)} dataset rows")
        if "ner_tags" in columns:
            names = ds.features["ner_tags"].feature.names
            full = [[names[t] for t in row] for row in ds["ner_tags"]]
            ids = ds["id"] if "id" in columns else list(range(len(full)))
            for i, (f, g) in enumerate(zip(full, gold_tags)):
                if f[: len(g)] != g:
                    raise ValueError(f"post {ids[i]}: model labels disagree with the dataset tags (alignment broken)")
                truncated_words += len(f) - len(g)
                pred_tags[i] = pred_tags[i] + ["O"] * (len(f) - len(g))
            gold_tags = full
        if "num_images" in columns:
            num_images = list(ds["num_images"])
        result = compute_metrics(gold_tags, pred_tags, num_images, mode=self.metric_mode)
        self.last_eval_details[getattr(self, "_metric_prefix", "eval")] = {
            **to_results(result), "gold_tags": gold_tags, "pred_tags": pred_tags,
            "truncated_words": truncated_words,
        }
        flat = {k: v for k, v in flatten_metrics(result).items() if not isinstance(v, str)}
        flat["truncated_words"] = float(truncated_words)
        return flat


def to_results(result: dict[str, Any]) -> dict[str, Any]:
    """``mner_hf.metrics.compute_metrics`` output -> ``{"mode", "overall", "per_type",
    "per_num_images"}`` (the layout of results.json and the model card), supports included."""

    def pick(m: dict[str, Any]) -> dict[str, Any]:
        out = {k: float(m[k]) for k in ("precision", "recall", "f1")}
        out["support"] = int(m.get("num_gold_entities", m.get("support", 0)))
        if "num_posts" in m:
            out["num_posts"] = int(m["num_posts"])
        return out

    return {
        "mode": result.get("mode", "default"),
        "overall": pick(result),
        "per_type": {t: pick(m) for t, m in result.get("per_type", {}).items()},
        "per_num_images": {b: pick(m) for b, m in result.get("by_num_images", {}).items()},
    }
