"""DDP on CPU: `accelerate launch --multi_gpu --num_processes 2 --cpu` (gloo) trains and
evaluates the same data as one process; every dev/test post is evaluated exactly once."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path: Path, out: str, batch: int) -> Path:
    from mner_hf.builders import load_dataset
    from mner_hf.training.encoders import tiny_text_encoder

    # built once, before launching, so that both processes (and the single run) read the same files
    text = tiny_text_encoder(tmp_path / "tiny_text", load_dataset("sample")["train"]["tokens"])
    raw = {
        "model": {"type": "bert-crf", "text_encoder": text, "vision_encoder": None, "use_images": False},
        # 6 posts -> 1 train / 3 dev / 2 test: 3 dev posts over 2 processes needs padding
        "data": {"dataset": "sample", "split_ratios": [0.2, 0.5, 0.3], "split_seed": 7, "max_length": 64},
        "optim": {"crf_lr": 5e-2},
        "training": {"output_dir": str(tmp_path / out), "learning_rate": 1e-3, "per_device_train_batch_size": batch,
                     "per_device_eval_batch_size": 1, "num_train_epochs": 2, "logging_steps": 1, "seed": 0,
                     "save_total_limit": 2, "dataloader_num_workers": 0},
        "output": {"write_plots": False, "write_model_card": False},
    }
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_two_cpu_processes_match_one(tmp_path):
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cfg = _config(tmp_path, "ddp", batch=1)
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(REPO / "examples" / "train.py"), "--config", str(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    ddp = json.loads((tmp_path / "ddp" / "final" / "results.json").read_text())
    ddp_steps = max(json.loads(p.read_text())["global_step"] for p in (tmp_path / "ddp").glob("checkpoint-*/trainer_state.json"))

    from mner_hf.training.run import run_training
    from mner_hf.training.run_config import RunConfig

    single = run_training(RunConfig.from_yaml(_config(tmp_path, "single", batch=1)))
    from mner_hf.builders import load_dataset
    from mner_hf.training.splits import ensure_splits

    dd = ensure_splits(load_dataset("sample"), [0.2, 0.5, 0.3], 7)
    for split in ("validation", "test"):
        n_gold = sum(sum(1 for t in row if dd[split].features["ner_tags"].feature.names[t].startswith("B-"))
                     for row in dd[split]["ner_tags"])
        # each post exactly once: supports equal the split's gold entities (no duplicate padding rows)
        assert ddp[split]["overall"]["support"] == single.results[split]["overall"]["support"] == n_gold
        assert sum(b["num_posts"] for b in ddp[split]["per_num_images"].values()) == len(dd[split])
        for key in ("precision", "recall", "f1"):
            assert ddp[split]["overall"][key] == pytest.approx(single.results[split]["overall"][key], abs=0.15)
    # same data seen: 1 train post, batch 1 per process -> the same number of optimizer steps per epoch
    single_steps = max(h["step"] for h in single.log_history)
    assert ddp_steps == single_steps == 2
    # predictions written once per post
    lines = (tmp_path / "ddp" / "final" / "predictions_validation.jsonl").read_text().splitlines()
    assert sorted(json.loads(l)["id"] for l in lines) == sorted(dd["validation"]["id"])
