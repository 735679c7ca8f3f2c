"""Write a checkpoint folder that a user can load with one line, serve, and publish.

:func:`save_for_hub` writes into one folder:

* the model: ``model.safetensors``, ``config.json`` with ``auto_map`` (``AutoConfig``,
  ``AutoModel``, ``AutoModelForTokenClassification``) and the modeling code files;
* the processor: ``processor_config.json`` (with ``auto_map`` -> ``AutoProcessor``), tokenizer and
  image-processor files, and ``processing_mner.py``;
* the custom pipeline: ``custom_pipelines`` in ``config.json`` (task ``multimodal-ner``) and
  ``pipeline_mner.py`` with the files it imports, so that
  ``transformers.pipeline(model=folder, trust_remote_code=True)`` works without mner_hf;
* ``handler.py`` (Inference Endpoints ``EndpointHandler``);
* ``README.md``, the model card, when one is given.

:func:`widget_examples` gives the model card's ``widget:`` metadata for the text-only path.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .models.pipeline_mner import MultimodalNERPipeline

__all__ = ["HANDLER_SOURCE", "save_for_hub", "widget_examples"]

#: Source of the Inference Endpoints handler copied into every checkpoint.
HANDLER_SOURCE = Path(__file__).resolve().parent / "models" / "handler.py"

_WIDGET_TEXT = {
    "whitespace": [
        ("Lionel Messi arrives in Paris to sign with PSG", "English post (text only)"),
        ("Watching the Lakers game at Staples Center with John tonight", "English post (text only)"),
    ],
    "char": [
        ("我在北京的故宫看到了苹果公司的广告", "Chinese post (text only)"),
        ("周杰伦昨天在上海开演唱会", "Chinese post (text only)"),
    ],
}


def widget_examples(processor: Any | None = None) -> list[dict[str, str]]:
    """Model-card ``widget`` entries for the text-only path (``[{"text", "example_title"}]``).

    Chinese examples for a processor that splits raw text into characters (``word_split="char"``,
    CMNER), English ones otherwise. Image inputs cannot be expressed in the Hub's text widget;
    the card's usage section shows the pipeline call with images instead.
    """
    mode = getattr(processor, "word_split", "whitespace") if processor is not None else "whitespace"
    return [{"text": text, "example_title": title} for text, title in _WIDGET_TEXT.get(mode, _WIDGET_TEXT["whitespace"])]


def save_for_hub(model: Any, processor: Any, folder: str | Path, card: Any | None = None) -> Path:
    """Save model, processor, custom pipeline, endpoint handler and card into ``folder``.

    Args:
        model: an MNER token classifier (BERT-CRF, TPM-MI or MGIPS-CL) whose class is registered
            for the auto classes (its ``save_pretrained`` copies the modeling code).
        processor: the :class:`~mner_hf.models.processing_mner.MNERProcessor` it was trained with.
        folder: output folder (created; existing files with the same names are overwritten).
        card: a ``huggingface_hub.ModelCard`` (anything with ``save(path)``) or the card text.

    Returns:
        The folder as a ``Path``.

    Note: sets ``model.config.custom_pipelines`` (what ``Pipeline.save_pretrained`` records).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    labels = set(model.config.id2label.values())
    if labels != set(processor.label2id):
        raise ValueError(
            f"model labels {sorted(labels)} differ from the processor's {sorted(processor.label2id)}; "
            "save the processor the model was trained with"
        )
    pipe = MultimodalNERPipeline(model=model, processor=processor, device=model.device)
    pipe.save_pretrained(folder)  # model + config.custom_pipelines + pipeline_mner.py and its imports
    processor.save_pretrained(folder)
    shutil.copyfile(HANDLER_SOURCE, folder / "handler.py")
    if card is not None:
        if hasattr(card, "save"):
            card.save(folder / "README.md")
        else:
            (folder / "README.md").write_text(str(card), encoding="utf-8")
    return folder
