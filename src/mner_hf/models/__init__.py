"""MNER models that travel with checkpoints (trust_remote_code); Auto-class registration on import.

Registers every model type with ``AutoConfig``, ``AutoModel`` and ``AutoModelForTokenClassification``
and marks the classes with ``register_for_auto_class`` so that a saved folder's ``config.json``
carries an ``auto_map`` for ``AutoConfig``, ``AutoModel`` and ``AutoModelForTokenClassification``.
"""

from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification

from .configuration_bert_crf import BertCRFConfig
from .configuration_mgips_cl import MGIPSCLConfig
from .configuration_tpm_mi import TPMMIConfig
from .modeling_bert_crf import BertCRFForTokenClassification
from .modeling_mgips_cl import MGIPSCLForTokenClassification
from .modeling_tpm_mi import TPMMIForTokenClassification


def _register(config_cls, model_cls) -> None:
    AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
    AutoModel.register(config_cls, model_cls, exist_ok=True)
    AutoModelForTokenClassification.register(config_cls, model_cls, exist_ok=True)
    config_cls.register_for_auto_class()
    model_cls.register_for_auto_class("AutoModelForTokenClassification")  # save_pretrained adds AutoModel


_register(BertCRFConfig, BertCRFForTokenClassification)
_register(TPMMIConfig, TPMMIForTokenClassification)
_register(MGIPSCLConfig, MGIPSCLForTokenClassification)

__all__ = [
    "BertCRFConfig",
    "BertCRFForTokenClassification",
    "TPMMIConfig",
    "TPMMIForTokenClassification",
    "MGIPSCLConfig",
    "MGIPSCLForTokenClassification",
]
