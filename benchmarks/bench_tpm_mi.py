"""TPM-MI train / inference step at the paper's size (BERT-base + ViT-B/16, random weights): counted
model FLOPs per step, achieved FLOP/s, the machine's measured matmul peak and MFU, per precision.

Batch 8 posts of 64 tokens, 2..4 real images per post (MNER-MI mix, mean 2.8 of 4 slots). Paths:
  images   pixel values, only real images go through ViT (the model's default)
  cached   precomputed per-image vectors (``image_embeds``: the frozen-vision feature cache)
  all-slots  (``--paths all-slots``) every slot through ViT, padded ones too (the authors' way)
Training steps run forward + backward + ``AdamW(fused=True)`` (what ``MNERTrainer`` uses by default:
``optim="adamw_torch_fused"``), inside ``torch.autocast`` for bf16/fp16 like the Trainer.

    python benchmarks/bench_tpm_mi.py                      # fp32 and bf16, both paths, CPU
    python benchmarks/bench_tpm_mi.py --device cuda --steps 10
    python benchmarks/bench_tpm_mi.py --tiny               # shapes only, seconds (run by the tests)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mfu import DTYPES, StepResult, add_common_arguments, finish, linear_rate, measure, model_steps, print_header, setup  # noqa: E402

from mner_hf.models import TPMMIConfig, TPMMIForTokenClassification  # noqa: E402

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
PATHS = ("images", "cached", "all-slots")


def image_counts(batch: int, generator: torch.Generator) -> torch.Tensor:
    """2..4 images per post with mean 2.8 (probabilities 0.4 / 0.4 / 0.2 for 2 / 3 / 4)."""
    u = torch.rand(batch, generator=generator)
    return torch.where(u < 0.4, 2, torch.where(u < 0.8, 3, 4))


def make_batch(batch: int, length: int, image_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    counts = image_counts(batch, generator)
    image_mask = (torch.arange(4)[None, :] < counts[:, None]).long()
    words = length - 2
    word_ids = torch.cat([torch.full((batch, 1), -1), torch.arange(words).repeat(batch, 1), torch.full((batch, 1), -1)], 1)
    labels = torch.full((batch, length), -100)
    labels[:, 1:-1] = 0
    return {
        "input_ids": torch.randint(1000, 30000, (batch, length), generator=generator),
        "attention_mask": torch.ones(batch, length, dtype=torch.long),
        "word_ids": word_ids,
        "labels": labels,
        "pixel_values": torch.randn(batch, 4, 3, image_size, image_size, generator=generator)
        * image_mask[:, :, None, None, None],
        "image_mask": image_mask,
    }


def build_config(tiny: bool) -> TPMMIConfig:
    if tiny:
        text = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                "intermediate_size": 64, "vocab_size": 30522}
        vision = {"model_type": "vit", "image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
                  "num_attention_heads": 2, "intermediate_size": 64}
    else:
        text = {"model_type": "bert"}  # BERT-base shapes
        vision = {"model_type": "vit", "image_size": 224, "patch_size": 16}  # ViT-B/16 shapes
    return TPMMIConfig(text_config=text, vision_config=vision, id2label=dict(enumerate(LABELS)), max_images=4)


def make_optimizer(name: str, params) -> torch.optim.Optimizer:
    """AdamW: ``fused`` (one kernel over all parameters: the Trainer's default ``adamw_torch_fused``),
    ``foreach`` (multi-tensor ops) or ``forloop`` (one set of ops per parameter)."""
    kwargs = {"fused": {"fused": True}, "foreach": {"foreach": True}, "forloop": {"foreach": False}}[name]
    return torch.optim.AdamW(params, lr=1e-5, **kwargs)


def main(argv: list[str] | None = None) -> list[StepResult]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--paths", default="images,cached", help=f"comma list of {', '.join(PATHS)}")
    parser.add_argument("--attn", default="sdpa", choices=("sdpa", "eager"), help="attention of both encoders")
    parser.add_argument("--vision-attn", default=None, choices=("sdpa", "eager"), help="attention of the ViT only")
    parser.add_argument("--optimizer", default="fused", choices=("fused", "foreach", "forloop"))
    parser.add_argument("--layers", type=int, default=None, help="encoder depth (default 12: BERT-base, ViT-B)")
    parser.add_argument("--no-infer", action="store_true", help="training steps only")
    args = parser.parse_args(argv)
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if any(p not in PATHS for p in paths):
        raise SystemExit(f"--paths must be among {PATHS}")
    precisions, peaks = setup(args)

    torch.manual_seed(0)
    config = build_config(args.tiny)
    if args.layers:
        config.text_config.num_hidden_layers = config.vision_config.num_hidden_layers = args.layers
    model = TPMMIForTokenClassification(config).to(args.device)
    if args.attn != "sdpa":
        model.set_attn_implementation(args.attn)
    if args.vision_attn:
        model.vision_encoder.backbone.set_attn_implementation(args.vision_attn)
    image_size = config.vision_config.image_size
    batch = {k: v.to(args.device) for k, v in make_batch(args.batch, args.seq_len, image_size,
                                                         torch.Generator().manual_seed(0)).items()}
    with torch.no_grad():
        feats = model.get_image_features(batch["pixel_values"], batch["image_mask"])
    cached = {k: v for k, v in batch.items() if k != "pixel_values"} | {"image_embeds": feats}
    optimizer = make_optimizer(args.optimizer, model.parameters())
    # the model's largest GEMM: the ViT MLP over all real images' tokens (N images x 197 tokens)
    tokens = int(batch["image_mask"].sum()) * (1 + (image_size // config.vision_config.patch_size) ** 2)
    d, ffn = config.vision_config.hidden_size, config.vision_config.intermediate_size
    rates = {p: linear_rate(DTYPES[p], args.device, tokens, d, ffn, repeats=1 if args.tiny else 3) for p in precisions}
    gemm_line = f"matmul rate at the model's largest GEMM ({tokens}x{d} @ {d}x{ffn}): " + ", ".join(
        f"{p} {r / 1e9:.1f} GFLOP/s = {100 * r / peaks[p]:.0f}% of peak" for p, r in rates.items())
    facts = print_header(
        f"TPM-MI device={args.device} batch={args.batch} seq_len={args.seq_len} layers="
        f"{config.text_config.num_hidden_layers} attn={args.attn} vision_attn="
        f"{model.vision_encoder.backbone.config._attn_implementation} optimizer=AdamW({args.optimizer}) "
        f"real images={int(batch['image_mask'].sum())}/{batch['image_mask'].numel()} slots", args, peaks, (gemm_line,))
    results: list[StepResult] = []
    for precision in precisions:
        for path in paths:
            inputs = cached if path == "cached" else batch
            model.config.encode_padded_images = path == "all-slots"

            steps = model_steps(model, optimizer, inputs, precision, args.device, infer=not args.no_infer)
            for kind, fn in steps:
                result = measure(f"{kind} {path}", precision, fn, args.batch, args, peaks[precision])
                print(result.row(), flush=True)
                results.append(result)
    model.config.encode_padded_images = False
    results = finish(results, peaks, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": facts, "results": [r.to_dict() for r in results]}, indent=2))
    return results


if __name__ == "__main__":
    main()
