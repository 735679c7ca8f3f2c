"""mner_hf: HuggingFace-native multimodal named entity recognition for posts with several images.

Importing the package registers the models with the ``Auto`` classes (``AutoConfig``,
``AutoModel``, ``AutoModelForTokenClassification``), the processor with ``AutoProcessor``, and the
``multimodal-ner`` task with the ``pipeline`` registry.
"""

__version__ = "0.1.0"

from .builders import load_dataset
from .collator import MNERDataCollator
from .metrics import compute_metrics
from .models import (
    BertCRFConfig,
    BertCRFForTokenClassification,
    MGIPSCLConfig,
    MGIPSCLForTokenClassification,
    TPMMIConfig,
    TPMMIForTokenClassification,
)
from .models.pipeline_mner import MultimodalNERPipeline
from .models.processing_mner import MNERProcessor

__all__ = [
    "__version__",
    "load_dataset",
    "MNERDataCollator",
    "compute_metrics",
    "MNERProcessor",
    "MultimodalNERPipeline",
    "BertCRFConfig",
    "BertCRFForTokenClassification",
    "TPMMIConfig",
    "TPMMIForTokenClassification",
    "MGIPSCLConfig",
    "MGIPSCLForTokenClassification",
]
