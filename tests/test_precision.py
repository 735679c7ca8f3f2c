"""Precision chosen by the hardware (``auto``), its plumbing into training / pipeline, and bf16 vs fp32
numerical agreement of the models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mner_hf.models import TPMMIConfig, TPMMIForTokenClassification
from mner_hf.models import precision as P
from mner_hf.training.precision import choose_training_precision, precision_flags, precision_of
from mner_hf.training.run_config import RunConfig, RunConfigError
from mner_hf.training.trainer import mner_training_arguments

SAMPLE_PHOTOS = sorted((Path(__file__).resolve().parents[1] / "src" / "mner_hf" / "sample" / "images").glob("*.jpg"))


def _stub_cpu(monkeypatch, avx512_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected", "words"),
    [
        (True, True, "bf16", ["AVX512-BF16 and AMX"]),
        (True, False, "bf16", ["AVX512-BF16"]),
        (False, True, "bf16", ["AMX"]),
        (False, False, "fp32", ["neither", "emulated"]),
    ],
)
def test_auto_on_cpu_follows_the_capability_probes(monkeypatch, avx512_bf16, amx, expected, words) -> None:
    _stub_cpu(monkeypatch, avx512_bf16, amx)
    choice = P.resolve_precision("auto", "cpu")
    assert (choice.precision, choice.requested, choice.device_type) == (expected, "auto", "cpu")
    assert all(w in choice.reason for w in words), choice.reason
    assert choice.dtype == (torch.bfloat16 if expected == "bf16" else None)
    assert P.cpu_bf16_capabilities() == {"avx512_bf16": avx512_bf16, "amx_tile": amx}


def test_missing_or_failing_probe_counts_as_unsupported(monkeypatch) -> None:
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)

    def boom() -> bool:
        raise RuntimeError("no cpuinfo")

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", boom, raising=False)
    assert P.resolve_precision(None, "cpu").precision == "fp32"


def test_explicit_precisions_are_kept_and_validated(monkeypatch) -> None:
    _stub_cpu(monkeypatch, False, False)
    assert P.resolve_precision("fp32", "cpu").precision == "fp32"
    slow = P.resolve_precision("bf16", "cpu")
    assert slow.precision == "bf16" and "emulated" in slow.reason
    assert P.resolve_precision("float16").precision == "fp16"  # alias
    assert P.resolve_precision("BF16").requested == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        P.resolve_precision("int8")


@pytest.mark.parametrize(("bf16_ok", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda_follows_is_bf16_supported(monkeypatch, bf16_ok, expected) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_ok)
    choice = P.resolve_precision("auto", "cuda:0")
    assert (choice.precision, choice.device_type) == (expected, "cuda")
    if not bf16_ok:
        with pytest.raises(ValueError, match="lacks bf16"):
            P.resolve_precision("bf16", "cuda")
        assert P.resolve_precision("fp16", "cuda").precision == "fp16"


def test_autocast_context_matches_the_choice(monkeypatch) -> None:
    _stub_cpu(monkeypatch, True, True)
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with P.resolve_precision("auto", "cpu").autocast():
        assert (a @ b).dtype == torch.bfloat16
    with P.resolve_precision("fp32", "cpu").autocast():
        assert (a @ b).dtype == torch.float32


@pytest.mark.parametrize(("probe", "bf16"), [(True, True), (False, False)])
def test_training_arguments_default_to_auto(monkeypatch, tmp_path, probe, bf16) -> None:
    _stub_cpu(monkeypatch, probe, probe)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = mner_training_arguments(output_dir=str(tmp_path))
    assert args.bf16 is bf16 and args.fp16 is False
    assert args.mixed_precision == ("bf16" if bf16 else "no")
    if bf16:
        assert args.use_cpu is True  # CPU autocast; transformers rejects bf16 on CPU otherwise
    choice = precision_of(args)
    assert choice.precision == ("bf16" if bf16 else "fp32") and choice.requested == "auto"
    assert ("neither" in choice.reason) is not bf16


def test_explicit_training_flags_win_over_precision(monkeypatch, tmp_path) -> None:
    _stub_cpu(monkeypatch, False, False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = mner_training_arguments(precision="fp32", bf16=True, output_dir=str(tmp_path))
    assert args.bf16 is True
    choice = precision_of(args)
    assert choice.precision == "bf16" and choice.requested == "training.bf16" and "emulated" in choice.reason
    fp32 = mner_training_arguments(precision="fp32", output_dir=str(tmp_path))
    assert fp32.bf16 is False and precision_of(fp32).precision == "fp32"
    assert precision_flags(choose_training_precision("fp16", {})) == {"bf16": False, "fp16": True, "use_cpu": True}


def test_accelerate_mixed_precision_wins_over_auto(monkeypatch) -> None:
    _stub_cpu(monkeypatch, True, True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    choice = choose_training_precision("auto", {})
    assert choice.precision == "fp16" and "accelerate launch" in choice.reason
    assert choose_training_precision("fp32", {}).precision == "fp32"  # an explicit request still wins
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert choose_training_precision("auto", {}).precision == "bf16"


def test_run_config_compute_section() -> None:
    assert RunConfig.from_dict({}).compute.precision == "auto"
    assert RunConfig.from_dict({"compute": {"precision": "bf16"}}).compute.precision == "bf16"
    with pytest.raises(RunConfigError, match="compute.precision"):
        RunConfig.from_dict({"compute": {"precision": "fp8"}}, source="x.yaml")
    with pytest.raises(RunConfigError, match="compute.threads"):
        RunConfig.from_dict({"compute": {"threads": 2}}, source="x.yaml")


# ---- numerical agreement ------------------------------------------------------------------------
#: bf16 keeps 8 mantissa bits (relative rounding 2**-9 = 0.2 %); through two encoder layers the word
#: logits of these tiny random models stay within 3 % of their range and the CRF tag marginals
#: within 0.05 (absolute). Measured here: about a third of each bound.
LOGIT_TOL = 0.03
MARGINAL_TOL = 0.05


def _tiny_tpm_mi() -> TPMMIForTokenClassification:
    torch.manual_seed(0)
    text = dict(model_type="bert", vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=128, max_position_embeddings=64)
    vit = dict(model_type="vit", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
               image_size=32, patch_size=8)
    labels = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
    cfg = TPMMIConfig(text_config=text, vision_config=vit, id2label=labels, max_images=3, temporal_heads=4,
                      classifier_dropout=0.0, temporal_dropout=0.0)
    return TPMMIForTokenClassification(cfg).eval()


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 120, (4, 12), generator=g)
    ids[:, 0] = 2
    image_mask = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0], [0, 0, 0]])
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids),
                pixel_values=torch.randn(4, 3, 3, 32, 32, generator=g) * image_mask[:, :, None, None, None],
                image_mask=image_mask, labels=torch.randint(0, 5, (4, 12), generator=g).masked_fill(
                    torch.arange(12) == 0, -100))


def test_bf16_autocast_agrees_with_fp32() -> None:
    model, inputs = _tiny_tpm_mi(), _inputs()
    inputs["labels"][inputs["labels"] > 0] = 0  # all "O": valid under the BIO constraints
    with torch.no_grad():
        ref = model(**inputs, return_marginals=True)
        with P.PrecisionChoice("bf16", "bf16", "cpu", "test").autocast():
            low = model(**inputs, return_marginals=True)
    assert low.logits.dtype == torch.bfloat16 and ref.logits.dtype == torch.float32
    assert low.marginals.dtype == torch.float32  # the CRF computes in float32 under autocast
    scale = float(ref.logits.abs().max())
    logit_err = float((low.logits.float() - ref.logits).abs().max()) / scale
    marginal_err = float((low.marginals - ref.marginals).abs().max())
    assert 0 < logit_err <= LOGIT_TOL, logit_err  # > 0: autocast really ran in bf16
    assert marginal_err <= MARGINAL_TOL, marginal_err
    assert abs(float(low.loss) - float(ref.loss)) <= 0.02 * abs(float(ref.loss))


# ---- pipeline / predict -------------------------------------------------------------------------
@pytest.mark.parametrize(("probe", "expected"), [(True, "bf16"), (False, "fp32")])
def test_pipeline_precision_defaults_to_auto(monkeypatch, tmp_path, probe, expected) -> None:
    from checkpoint_factory import tiny_model_and_processor

    from mner_hf.models.pipeline_mner import MultimodalNERPipeline

    _stub_cpu(monkeypatch, probe, probe)
    model, processor = tiny_model_and_processor("tpm_mi", tmp_path)
    pipe = MultimodalNERPipeline(model=model, processor=processor, device="cpu")
    assert pipe.precision.precision == expected and pipe.precision.requested == "auto"
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append(o.logits.dtype))
    post = {"text": "Messi scores in Paris", "images": [str(p) for p in SAMPLE_PHOTOS[:2]]}
    pipe(post)
    assert seen[-1] == (torch.bfloat16 if expected == "bf16" else torch.float32)
    # a per-call / per-pipeline precision overrides auto; results stay within bf16 tolerance
    ref = pipe(post, precision="fp32")
    assert seen[-1] == torch.float32
    fixed = MultimodalNERPipeline(model=model, processor=processor, device="cpu", precision="bf16")
    assert fixed.precision.precision == "bf16" and fixed.precision.requested == "bf16"
    low = fixed(post)
    assert seen[-1] == torch.bfloat16
    assert [e["score"] for e in low] == pytest.approx([e["score"] for e in ref], abs=MARGINAL_TOL)


def test_predict_cli_takes_precision(tmp_path) -> None:
    from checkpoint_factory import tiny_model_and_processor

    from mner_hf.checkpoint import save_for_hub
    from mner_hf.predict import load_pipeline

    model, processor = tiny_model_and_processor("bert_crf", tmp_path)
    folder = save_for_hub(model, processor, tmp_path / "ckpt")
    assert (folder / "precision.py").is_file()  # travels with the pipeline code
    assert load_pipeline(str(folder), precision="fp32").precision.precision == "fp32"
    assert load_pipeline(str(folder), precision="bf16").precision.requested == "bf16"
