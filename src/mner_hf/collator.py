"""MNERDataCollator: dataset rows -> one padded batch of the tensor contract, for ``Trainer``.

Rows may be

* raw builder rows ``{"tokens": [...], "ner_tags": [ids], "images": [...]}`` where ``images`` are
  PIL images (``datasets.Image()``) or ``{"bytes", "path"}`` dicts (``Image(decode=False)``) and
  ``ner_tags`` are ``ClassLabel`` ids (or tag strings); they are encoded on the fly with
  :meth:`MNERProcessor.encode_example`;
* pre-encoded rows (from ``dataset.map(processor.encode_example ...)``), recognised by their
  ``input_ids``.

Padding is :meth:`MNERProcessor.pad_batch` (one implementation): text to the longest post,
images to M = the largest number of image slots in the batch. The batch holds only model inputs;
what truncation and the image policies did is accumulated in :attr:`MNERDataCollator.report`
(per process: with ``dataloader_num_workers > 0`` each worker keeps its own) and logged.

With raw rows, ``Trainer`` must keep the dataset columns: ``TrainingArguments(remove_unused_columns=False)``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from transformers import BatchFeature

from .models.processing_mner import MNERProcessor

__all__ = ["CollatorReport", "MNERDataCollator"]

logger = logging.getLogger(__name__)


@dataclass
class CollatorReport:
    """Running totals over every row the collator has encoded (``messages``: the first failures)."""

    posts: int = 0
    truncated_words: int = 0
    truncated_entities: int = 0
    replaced_words: int = 0
    images_dropped: int = 0
    image_errors: int = 0
    messages: list[str] = field(default_factory=list)

    #: at most this many messages are kept (the counts are always complete)
    MAX_MESSAGES: ClassVar[int] = 200

    def add(self, feature: Mapping[str, Any]) -> None:
        """Add the statistics of one encoded example."""
        self.posts += 1
        for key in ("truncated_words", "truncated_entities", "replaced_words", "images_dropped", "image_errors"):
            setattr(self, key, getattr(self, key) + int(feature.get(key, 0) or 0))
        room = self.MAX_MESSAGES - len(self.messages)
        if room > 0:
            self.messages.extend((feature.get("image_error_messages", []) or [])[:room])


class MNERDataCollator:
    """Collate dataset rows into the padded batch of ``docs/ARCHITECTURE.md``'s tensor contract.

    Args:
        processor: the :class:`MNERProcessor` (its options decide image mode, policies, max_length).
        label_names: the dataset's ``ClassLabel`` names for ``ner_tags`` ids (e.g.
            ``ds.features["ner_tags"].feature.names``); ids are mapped through them to the
            processor's ``label2id``. ``None``: ids are taken to be processor ids already.
        tokens_key / tags_key / images_key / id_key: column names of raw rows.
        return_tensors: ``"pt"`` (default) or ``"np"``.
    """

    def __init__(
        self,
        processor: MNERProcessor,
        *,
        label_names: Sequence[str] | None = None,
        tokens_key: str = "tokens",
        tags_key: str = "ner_tags",
        images_key: str = "images",
        id_key: str = "id",
        return_tensors: str = "pt",
    ) -> None:
        self.processor = processor
        self.label_names = list(label_names) if label_names is not None else None
        if self.label_names is not None:
            unknown = [n for n in self.label_names if n not in processor.label2id]
            if unknown:
                raise ValueError(f"dataset labels {unknown} are not in the processor's label2id {processor.label2id}")
        self.tokens_key = tokens_key
        self.tags_key = tags_key
        self.images_key = images_key
        self.id_key = id_key
        self.return_tensors = return_tensors
        self.report = CollatorReport()

    def _tags(self, row: Mapping[str, Any], where: str) -> list[Any] | None:
        tags = row.get(self.tags_key)
        if tags is None:
            return None
        if self.label_names is None:
            return list(tags)
        out = []
        for j, t in enumerate(tags):
            if isinstance(t, str):
                out.append(t)
            elif not 0 <= int(t) < len(self.label_names):
                raise ValueError(f"{where}, word {j}: tag id {int(t)} outside the dataset's {len(self.label_names)} labels")
            else:
                out.append(self.label_names[int(t)])
        return out

    def encode(self, row: Mapping[str, Any], index: int = 0) -> dict[str, Any]:
        """Encode one raw row (or return a pre-encoded one unchanged)."""
        if "input_ids" in row:
            return dict(row)
        if self.tokens_key not in row:
            raise KeyError(
                f"row {index} has neither 'input_ids' nor {self.tokens_key!r} (keys: {sorted(row)}); with raw rows "
                "set TrainingArguments(remove_unused_columns=False)"
            )
        where = f"post {row[self.id_key]!r}" if self.id_key in row else f"row {index}"
        return self.processor.encode_example(
            row[self.tokens_key], self._tags(row, where), row.get(self.images_key) or [], where=where
        )

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> BatchFeature:
        """Encode (if needed) and pad ``features`` into a ``BatchFeature`` of model inputs only."""
        encoded = [self.encode(row, i) for i, row in enumerate(features)]
        cut = 0
        for feat in encoded:
            self.report.add(feat)
            cut += int(feat.get("truncated_entities", 0) or 0)
        if cut:
            logger.warning(
                "truncation to max_length=%d cut %d gold entities in this batch (%d so far)",
                self.processor.max_length, cut, self.report.truncated_entities,
            )
        return self.processor.pad_batch(encoded, return_tensors=self.return_tensors)
