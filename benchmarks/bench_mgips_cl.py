"""Throughput of MGIPS-CL at paper-size shapes (BERT-base + CLIP ViT-B/32, random weights).

Reports training examples/s (forward + backward + AdamW step, all loss terms) and inference
posts/s (eval mode, no labels). Default run: batch 4, 40 sub-word tokens, up to 3 images of
224x224 per post, 1 warm-up + 2 timed steps; under 3 minutes on 2 CPU cores.

    python benchmarks/bench_mgips_cl.py [--batch 4] [--tokens 40] [--images 3] [--steps 2] [--one-way]

``--one-way`` turns the vision <- text direction of the mutual attention (eq. 4) off.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from mner_hf.models.configuration_mgips_cl import MGIPSCLConfig
from mner_hf.models.modeling_mgips_cl import MGIPSCLForTokenClassification

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]


def make_batch(batch: int, tokens: int, images: int, image_size: int, vocab: int) -> dict[str, torch.Tensor]:
    """Random posts: first post with ``images`` images, the others alternating 1..images."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (batch, tokens), generator=g)
    labels = torch.full((batch, tokens), -100)
    labels[:, 1:-1] = 0
    labels[:, 2] = 1
    labels[:, 3] = 2
    mask = torch.zeros(batch, images, dtype=torch.long)
    for i in range(batch):
        mask[i, : 1 + (i % images) if i else images] = 1
    return dict(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        labels=labels,
        pixel_values=torch.randn(batch, images, 3, image_size, image_size, generator=g),
        image_mask=mask,
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--one-way", action="store_true", help="vision_attends_text=False")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    config = MGIPSCLConfig(
        text_config={"model_type": "bert"},  # BERT-base sizes
        vision_config={"model_type": "clip_vision_model", "image_size": 224, "patch_size": 32},  # ViT-B/32
        id2label=dict(enumerate(LABELS)),
        label2id={t: i for i, t in enumerate(LABELS)},
        max_images=args.images,
        vision_attends_text=not args.one_way,
        max_text_length=max(40, args.tokens),  # paper 4.3: 40
    )
    model = MGIPSCLForTokenClassification(config).to(args.device)
    batch = {k: v.to(args.device) for k, v in make_batch(args.batch, args.tokens, args.images, 224,
                                                          config.text_config.vocab_size).items()}
    optim = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    model.train()
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync()
            start = time.perf_counter()
        optim.zero_grad()
        out = model(**batch)
        out.loss.backward()
        optim.step()
    sync()
    train_eps = args.batch * args.steps / (time.perf_counter() - start)
    components = {k: round(float(v.detach()), 4) for k, v in out.loss_components.items()}

    model.eval()
    infer = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        for step in range(args.warmup + args.steps):
            if step == args.warmup:
                sync()
                start = time.perf_counter()
            model(**infer)
    sync()
    infer_pps = args.batch * args.steps / (time.perf_counter() - start)
    result = {
        "device": args.device,
        "params_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "train_examples_per_s": round(train_eps, 2),
        "inference_posts_per_s": round(infer_pps, 2),
        "batch": args.batch,
        "tokens": args.tokens,
        "images": args.images,
        "visual_tokens_per_image": config.visual_tokens_per_image,
        "last_loss_components": components,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
