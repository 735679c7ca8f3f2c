"""Save -> load round trips: in-process and in a fresh interpreter where mner_hf cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification

from mner_hf.models import BertCRFConfig, BertCRFForTokenClassification, TPMMIConfig, TPMMIForTokenClassification

LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
TEXT = dict(model_type="bert", vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=32)
VIT = dict(model_type="vit", hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
           image_size=16, patch_size=8)


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 60, (2, 6), generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    word_ids = torch.tensor([[-1, 0, 1, 1, 2, -1], [-1, 0, 1, -1, -1, -1]])
    image_mask = torch.tensor([[1, 1], [1, 0]])
    pixel_values = torch.randn(2, 2, 3, 16, 16, generator=g) * image_mask[:, :, None, None, None]
    return dict(input_ids=ids * mask, attention_mask=mask, word_ids=word_ids, pixel_values=pixel_values,
                image_mask=image_mask)


def _models():
    torch.manual_seed(0)
    tpm = TPMMIForTokenClassification(TPMMIConfig(text_config=TEXT, vision_config=VIT, id2label=LABELS,
                                                  temporal_heads=4, max_images=2))
    with torch.no_grad():  # non-trivial CRF and prompt weights so a lost weight would show
        tpm.crf.transitions.normal_(0, 1)
        for m in tpm.prefix_key:
            m.weight.normal_(0, 0.5)
    torch.manual_seed(1)
    crf = BertCRFForTokenClassification(BertCRFConfig(text_config=TEXT, id2label=LABELS))
    with torch.no_grad():
        crf.crf.transitions.normal_(0, 1)
    return {"tpm_mi": tpm.eval(), "bert_crf": crf.eval()}


@pytest.mark.parametrize("kind", ["tpm_mi", "bert_crf"])
def test_round_trip_in_process(kind: str, tmp_path: Path) -> None:
    model = _models()[kind]
    inputs = _inputs()
    ref = model(**inputs)
    model.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pth")) for f in files)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == kind
    assert set(cfg["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForTokenClassification"}
    assert cfg["id2label"] == {str(k): v for k, v in LABELS.items()}
    for auto in (AutoModelForTokenClassification, AutoModel):
        loaded = auto.from_pretrained(tmp_path).eval()
        assert type(loaded) is type(model)
        out = loaded(**inputs)
        assert torch.equal(out.logits, ref.logits) and torch.equal(out.predictions, ref.predictions)
    assert AutoConfig.from_pretrained(tmp_path).to_dict()["text_config"]["hidden_size"] == 32


_SUBPROCESS = r"""
import sys
sys.modules["mner_hf"] = None  # the package is installed editable: make it unimportable
import json, torch
from transformers import AutoModelForTokenClassification
folder, inputs_path, out_path = sys.argv[1:4]
try:
    import mner_hf  # noqa: F401
    raise SystemExit("mner_hf is importable")
except ImportError:
    pass
model = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
inputs = torch.load(inputs_path)
with torch.no_grad():
    out = model(**inputs, return_marginals=True)
torch.save({"logits": out.logits, "predictions": out.predictions, "marginals": out.marginals,
            "module": type(model).__module__}, out_path)
"""


@pytest.mark.parametrize("kind", ["tpm_mi", "bert_crf"])
def test_round_trip_in_subprocess_without_mner_hf(kind: str, tmp_path: Path) -> None:
    model = _models()[kind]
    inputs = _inputs()
    with torch.no_grad():
        ref = model(**inputs, return_marginals=True)
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder)
    torch.save(inputs, tmp_path / "inputs.pt")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    proc = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS, str(folder), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = torch.load(tmp_path / "out.pt")
    assert torch.equal(out["logits"], ref.logits)
    assert torch.equal(out["predictions"], ref.predictions)
    assert torch.equal(out["marginals"], ref.marginals)
