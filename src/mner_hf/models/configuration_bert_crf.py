"""Configuration of the text-only BERT-CRF baseline (the paper's BERT-CRF row).

Public API
----------
``BertCRFConfig``  model_type ``"bert_crf"``; sub-config ``text_config`` (any BERT-family encoder,
    default ``bert``); fields ``constrain_transitions``, ``classifier_dropout``, ``freeze_text``,
    ``initializer_range``; ``id2label`` / ``label2id`` hold the BIO tag set ("O" required).
``validate_label_map(id2label, where)`` / ``label_map_is_placeholder(id2label)``  shared by the
    MNER configs (TPM-MI, MGIPS-CL) and models.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

_PLACEHOLDER = re.compile(r"LABEL_\d+")


def label_map_is_placeholder(id2label: Mapping[int, str] | None) -> bool:
    """True for the ``{0: "LABEL_0", ...}`` map transformers fills in when no labels were given."""
    return not id2label or all(_PLACEHOLDER.fullmatch(str(v)) for v in id2label.values())


def validate_label_map(id2label: Mapping[int, str] | None, where: str = "config") -> None:
    """Raise a clear ``ValueError`` unless ids are 0..C-1, names unique and "O" present."""
    if not id2label:
        raise ValueError(f"{where}: a label map (id2label) is required, e.g. ['O', 'B-PER', 'I-PER']")
    ids = sorted(int(i) for i in id2label)
    if ids != list(range(len(ids))):
        raise ValueError(f"{where}: label ids must be 0..{len(ids) - 1}, got {ids}")
    names = [str(v) for v in id2label.values()]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: duplicate tag names in {names}")
    if "O" not in names:
        raise ValueError(f"{where}: the label map must contain the outside tag 'O', got {names}")


def check_common_fields(config: PreTrainedConfig) -> None:
    """Validation shared by the MNER configs (called from ``__post_init__``); fills ``label2id``."""
    name = type(config).__name__
    if not label_map_is_placeholder(config.id2label):
        validate_label_map(config.id2label, name)
        if config.label2id is None:
            config.label2id = {label: idx for idx, label in config.id2label.items()}
        elif {int(v): k for k, v in config.label2id.items()} != config.id2label:
            raise ValueError(f"{name}: label2id {config.label2id} is not the inverse of id2label {config.id2label}")
    dropout = config.classifier_dropout
    if dropout is not None and not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"{name}: classifier_dropout must be in [0, 1), got {dropout}")
    text = config.text_config
    heads = getattr(text, "num_attention_heads", None)
    hidden = getattr(text, "hidden_size", None)
    if isinstance(heads, int) and isinstance(hidden, int) and hidden % heads != 0:
        raise ValueError(f"{name}: text_config.hidden_size={hidden} is not a multiple of num_attention_heads={heads}")


class BertCRFConfig(PreTrainedConfig):
    """BERT-family encoder + linear emissions + CRF over words.

    Args:
        text_config: config (or dict) of the text encoder.
        constrain_transitions: forbid invalid BIO moves (O -> I-X, B-X -> I-Y, start -> I-X) in the CRF.
        classifier_dropout: dropout before the emission layer (None: the encoder's hidden dropout).
        freeze_text: do not train the text encoder.
    """

    model_type = "bert_crf"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    text_config: dict | PreTrainedConfig | None = None
    constrain_transitions: bool = True
    classifier_dropout: float | None = None
    freeze_text: bool = False
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_common_fields(self)
