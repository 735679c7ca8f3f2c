"""TPM-MI throughput at the paper's size (BERT-base text encoder, ViT-B/16 vision encoder, random weights).

Prints training examples/s and inference posts/s, batch 8, for three image paths:
  all-slots   every one of the m=4 image slots goes through ViT (padded ones too)
  skip-padded only real images go through ViT (the default)
  cached      precomputed per-image vectors (``image_embeds``), ViT not run at all
Image counts follow the MNER-MI mix: 2..4 real images per post, mean 2.8 of 4 slots.

    python benchmarks/bench_tpm_mi.py [--steps 1] [--warmup 0] [--batch 8] [--seq-len 64] [--bf16] [--device cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from mner_hf.models import TPMMIConfig, TPMMIForTokenClassification

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]


def image_counts(batch: int, generator: torch.Generator) -> torch.Tensor:
    """2..4 images per post with mean 2.8 (probabilities 0.4 / 0.4 / 0.2 for 2 / 3 / 4)."""
    u = torch.rand(batch, generator=generator)
    return torch.where(u < 0.4, 2, torch.where(u < 0.8, 3, 4))


def make_batch(args: argparse.Namespace, generator: torch.Generator) -> dict[str, torch.Tensor]:
    b, length = args.batch, args.seq_len
    counts = image_counts(b, generator)
    image_mask = (torch.arange(4)[None, :] < counts[:, None]).long()
    words = length - 2
    word_ids = torch.cat([torch.full((b, 1), -1), torch.arange(words).repeat(b, 1), torch.full((b, 1), -1)], 1)
    labels = torch.full((b, length), -100)
    labels[:, 1:-1] = 0
    return {
        "input_ids": torch.randint(1000, 30000, (b, length), generator=generator),
        "attention_mask": torch.ones(b, length, dtype=torch.long),
        "word_ids": word_ids,
        "labels": labels,
        "pixel_values": torch.randn(b, 4, 3, 224, 224, generator=generator) * image_mask[:, :, None, None, None],
        "image_mask": image_mask,
    }


def timed(fn, steps: int, device: str, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1, help="timed steps per path and mode")
    parser.add_argument("--warmup", type=int, default=0, help="untimed steps first (use 1+ on GPU)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--bf16", action="store_true", help="autocast to bfloat16")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    config = TPMMIConfig(
        text_config={"model_type": "bert"},  # BERT-base shapes
        vision_config={"model_type": "vit", "image_size": 224, "patch_size": 16},  # ViT-B/16 shapes
        id2label=dict(enumerate(LABELS)),
        max_images=4,
    )
    model = TPMMIForTokenClassification(config).to(args.device)
    generator = torch.Generator().manual_seed(0)
    batch = {k: v.to(args.device) for k, v in make_batch(args, generator).items()}
    with torch.no_grad():
        feats = model.get_image_features(batch["pixel_values"], batch["image_mask"])
    cached = {k: v for k, v in batch.items() if k != "pixel_values"} | {"image_embeds": feats}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    autocast = (
        torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16)
        if args.bf16
        else contextlib.nullcontext()
    )
    print(f"device={args.device} bf16={args.bf16} batch={args.batch} seq_len={args.seq_len} steps={args.steps} "
          f"real images={int(batch['image_mask'].sum())}/{batch['image_mask'].numel()} slots "
          f"threads={torch.get_num_threads()}")
    print(f"{'path':<12} {'train ex/s':>11} {'infer posts/s':>14}")
    for name, inputs, encode_padded in [("all-slots", batch, True), ("skip-padded", batch, False),
                                        ("cached", cached, False)]:
        model.config.encode_padded_images = encode_padded

        def train_step(inputs=inputs):
            model.train()
            optimizer.zero_grad()
            with autocast:
                loss = model(**inputs).loss
            loss.backward()
            optimizer.step()

        def infer_step(inputs=inputs):
            model.eval()
            with torch.no_grad(), autocast:
                model(**{k: v for k, v in inputs.items() if k != "labels"})

        t_train = timed(train_step, args.steps, args.device, args.warmup)
        t_infer = timed(infer_step, args.steps, args.device, args.warmup)
        n = args.steps * args.batch
        print(f"{name:<12} {n / t_train:>11.2f} {n / t_infer:>14.2f}", flush=True)


if __name__ == "__main__":
    main()
