"""Training and evaluation: MNERTrainer, YAML run configs, feature cache, model cards, plots,
grid search, push to the Hub, and the end-to-end run behind ``mner-hf train``.

Public API (imported lazily so that ``import mner_hf.training`` stays light)::

    RunConfig                      run_config.RunConfig.from_yaml(path, overrides)
    MNERTrainer, mner_training_arguments   trainer
    run_training(config, resume=None)      run
    cache_image_features, CachedFeatureCollator   feature_cache
    build_model_card               model_card
    grid_search, PAPER_TPM_MI_GRID grid_search
    push_folder, files_to_upload   push
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RunConfig": "run_config",
    "RunConfigError": "run_config",
    "MNERTrainer": "trainer",
    "mner_training_arguments": "trainer",
    "run_training": "run",
    "cache_image_features": "feature_cache",
    "CachedFeatureCollator": "feature_cache",
    "build_model_card": "model_card",
    "grid_search": "grid_search",
    "PAPER_TPM_MI_GRID": "grid_search",
    "push_folder": "push",
    "files_to_upload": "push",
    "take_fraction": "splits",
    "build_optimizer_groups": "optim",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
