"""Model card rendering with ``huggingface_hub.ModelCard`` and the ``model_cards/`` template.

The card's YAML metadata carries ``library_name``, ``pipeline_tag: token-classification``,
``base_model``, ``datasets``, ``license``, ``tags`` and a ``model-index`` whose results are the
overall test (and dev) precision / recall / F1 of the run. The card ends with the BibTeX of the
model's paper and of its training data (:func:`mner_hf.citations.model_citation`).

``results`` (what :func:`build_model_card` reads) maps a split name (``"validation"``, ``"test"``)
to a dict with ``overall`` (``precision``, ``recall``, ``f1`` in [0, 1]), and optionally
``per_type`` / ``per_num_images`` mapping a name to the same keys plus ``support``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..citations import model_citation
from ..resources import model_cards_dir

TEMPLATE_NAME = "model_card_template.md"
# encoder names that are not hub ids (built locally), never listed as base_model
_LOCAL_ENCODERS = {"minilm", "tiny-random", "mobilenet-v2-imagenet"}
_HUB_DATASETS = {
    "twitter2017": "twitter-2017-mner",
    "twitter2015": "twitter-2015-mner",
    "cmner": "cmner",
    "mner-mi": "mner-mi",
    "mner-mi-plus": "mner-mi-plus",
    "sample": "cmner-sample",
    "cmner_sample": "cmner",
}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * float(value):.2f}"


def _rows(table: dict[str, dict[str, float]]) -> list[dict[str, str]]:
    def key(name: str) -> tuple[int, Any]:
        return (0, int(name)) if str(name).isdigit() else (1, str(name))

    return [
        {
            "name": str(name),
            "precision": _pct(m.get("precision")),
            "recall": _pct(m.get("recall")),
            "f1": _pct(m.get("f1")),
            "support": str(int(m.get("support", m.get("number", 0)))),
        }
        for name, m in sorted(table.items(), key=lambda kv: key(kv[0]))
    ]


def build_model_card(
    *,
    results: dict[str, dict[str, Any]],
    model_type: str,
    entity_types: list[str],
    dataset_name: str,
    text_encoder: str,
    vision_encoder: str | None,
    training_config_yaml: str,
    license: str = "apache-2.0",
    max_images: int = 0,
    num_parameters: int | None = None,
    split_sizes: dict[str, int] | None = None,
    plots: dict[str, str] | None = None,
    repo_id: str | None = None,
    model_name: str | None = None,
    language: str | list[str] | None = None,
    widget: list[dict[str, str]] | None = None,
    data_note: str = "",
    precision: dict[str, str] | None = None,
) -> ModelCard:
    """Render the card. ``plots`` maps a title to a file name relative to the card's folder;
    ``widget`` holds the Hub widget's text-only examples (``[{"text", "example_title"}]``);
    ``data_note``: Markdown under "Training data" (what reading the data dropped or replaced);
    ``precision`` is the run's ``PrecisionChoice.to_dict()`` (precision, device, reason)."""
    model_name = model_name or f"{model_type}-{dataset_name}"
    repo_id = repo_id or f"your-name/{model_name}"
    dataset_id = _HUB_DATASETS.get(dataset_name.replace("_", "-"), dataset_name)
    base_models = [
        m for m in (text_encoder, vision_encoder) if m and m not in _LOCAL_ENCODERS and not Path(m).exists()
    ]
    eval_results = []
    for split, split_results in results.items():
        overall = split_results.get("overall", {})
        for metric in ("precision", "recall", "f1"):
            if metric in overall:
                eval_results.append(
                    EvalResult(
                        task_type="token-classification",
                        task_name="Multimodal Named Entity Recognition",
                        dataset_type=dataset_id,
                        dataset_name=dataset_name,
                        dataset_split=split,
                        metric_type=metric,
                        metric_name=f"{split} {metric}",
                        metric_value=round(100 * float(overall[metric]), 2),
                    )
                )
    card_data = ModelCardData(
        model_name=model_name,
        base_model=base_models or None,
        datasets=[dataset_id],
        eval_results=eval_results or None,
        language=language,
        library_name="transformers",
        license=license,
        metrics=["seqeval", "precision", "recall", "f1"],
        pipeline_tag="token-classification",
        tags=["mner_hf", "multimodal-ner", "ner", model_type.replace("_", "-")],
        widget=widget or None,
    )
    detail_split = "test" if "test" in results else next(iter(results), "test")
    detail = results.get(detail_split, {})
    overall_rows = [
        {"split": split, **{k: _pct(r.get("overall", {}).get(k)) for k in ("precision", "recall", "f1")}}
        for split, r in results.items()
    ]
    sizes = ", ".join(f"{k}: {v} posts" for k, v in (split_sizes or {}).items()) or "sizes not recorded"
    summary = (
        f"A {model_type} model for multimodal named entity recognition "
        f"({', '.join(entity_types)}) trained on {dataset_name}."
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(model_cards_dir() / TEMPLATE_NAME),
        model_name=model_name,
        model_summary=summary,
        model_type=model_type,
        repo_id=repo_id,
        text_encoder=text_encoder,
        vision_encoder=vision_encoder or "none (text only)",
        max_images=max_images,
        entity_types=", ".join(entity_types),
        num_parameters=f"{num_parameters:,}" if num_parameters else "-",
        dataset_name=dataset_name,
        split_sizes=sizes,
        data_note=data_note,
        selection_split="validation",
        detail_split=detail_split,
        overall_rows=overall_rows,
        per_type_rows=_rows(detail.get("per_type", {})),
        per_images_rows=_rows(detail.get("per_num_images", {})),
        plots=[{"title": t, "file": f} for t, f in (plots or {}).items()],
        training_config=training_config_yaml.strip(),
        precision=precision or None,
        citation=model_citation(model_type, dataset_name),
    )
