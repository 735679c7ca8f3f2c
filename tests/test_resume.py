"""A run killed mid-epoch and restarted with --resume ends exactly like an uninterrupted run."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from mner_hf.training.run import run_training
from mner_hf.training.run_config import RunConfig, RunConfigError


class Killed(RuntimeError):
    pass


class KillAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.step:
            raise Killed(f"simulated kill at step {self.step}")


def _config(out_dir):
    raw = {
        "model": {"type": "bert-crf", "text_encoder": "tiny-random", "vision_encoder": None, "use_images": False},
        "data": {"dataset": "sample", "split_ratios": [0.5, 0.25, 0.25], "split_seed": 7, "max_length": 64},
        "optim": {"crf_lr": 5e-2},
        "training": {"output_dir": str(out_dir), "learning_rate": 1e-3, "per_device_train_batch_size": 1,
                     "num_train_epochs": 2, "eval_strategy": "steps", "save_strategy": "steps", "eval_steps": 2,
                     "save_steps": 2, "logging_steps": 1, "use_cpu": True, "seed": 3},
        "output": {"write_plots": False, "write_model_card": False},
    }
    return RunConfig.from_dict(raw, source="test")


def test_resume_matches_uninterrupted(tmp_path):
    full = run_training(_config(tmp_path / "full"))
    cfg = _config(tmp_path / "killed")
    # 2 train posts, batch 1: 2 steps per epoch, 4 in all; step 3 is in the middle of epoch 2
    with pytest.raises(Killed):
        run_training(cfg, callbacks=[KillAt(3)])
    assert (tmp_path / "killed" / "checkpoint-2").is_dir()
    assert not (tmp_path / "killed" / "checkpoint-3").exists()  # the restart must start from step 2
    resumed = run_training(cfg, resume=True)
    assert resumed.results == full.results
    a = load_file(str(full.final_dir / "model.safetensors"))
    b = load_file(str(resumed.final_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    # the same training losses after the restart point
    loss_full = [(h["step"], h["loss"]) for h in full.log_history if "loss" in h and h["step"] > 2]
    loss_res = [(h["step"], h["loss"]) for h in resumed.log_history if "loss" in h and h["step"] > 2]
    assert [s for s, _ in loss_full] == [s for s, _ in loss_res] == [3, 4]
    assert [v for _, v in loss_full] == pytest.approx([v for _, v in loss_res], rel=1e-4)
    assert resumed.log_history[-1]["step"] == full.log_history[-1]["step"] == 4


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(RunConfigError, match="no checkpoint"):
        run_training(_config(tmp_path / "empty"), resume=True)
