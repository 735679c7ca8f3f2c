"""Training input path defaults: feature cache whenever the vision encoder is frozen, DataLoader
workers for image decoding where they help (CUDA), explicit settings win."""

from __future__ import annotations

import torch

from mner_hf.training.run import image_decoding_workers
from mner_hf.training.run_config import RunConfig


def test_feature_cache_is_on_by_default_when_frozen() -> None:
    config = RunConfig.from_dict({"model": {"freeze_vision": True}})
    assert config.model.cache_frozen_vision is True
    off = config.replace(["model.cache_frozen_vision=false"])
    assert off.model.cache_frozen_vision is False and off.model.freeze_vision is True


def test_image_decoding_workers_follow_the_device(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert image_decoding_workers({}) == 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert image_decoding_workers({}) == 4
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert image_decoding_workers({}) == 1
    assert image_decoding_workers({"use_cpu": True}) == 0
