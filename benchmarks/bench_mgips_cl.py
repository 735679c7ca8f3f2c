"""MGIPS-CL train / inference step at paper-size shapes (BERT-base + CLIP ViT-B/32, random weights):
counted model FLOPs per step, achieved FLOP/s, the machine's measured matmul peak and MFU, per precision.

Batch 4 posts of 40 sub-word tokens, up to 3 images of 224x224 per post (the first post has 3, the
others 1..3). Training steps: forward with every loss term (CRF + IPS-CL + contrastive), backward,
``AdamW(fused=True)`` (the ``MNERTrainer`` default), under ``torch.autocast`` for bf16/fp16. Paths:
  images   pixel values through the CLIP vision tower
  cached   the frozen-vision feature cache (per-layer vision hidden states as ``image_embeds``; the vision
           tower is not run); only with ``--one-way``, where the vision tokens do not depend on the text

    python benchmarks/bench_mgips_cl.py [--batch 4] [--tokens 40] [--images 3] [--one-way]
    python benchmarks/bench_mgips_cl.py --device cuda --steps 10
    python benchmarks/bench_mgips_cl.py --tiny           # shapes only, seconds (run by the tests)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mfu import StepResult, add_common_arguments, finish, measure, model_steps, print_header, setup  # noqa: E402

from mner_hf.models.configuration_mgips_cl import MGIPSCLConfig  # noqa: E402
from mner_hf.models.modeling_mgips_cl import MGIPSCLForTokenClassification  # noqa: E402

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


def build_config(args: argparse.Namespace) -> MGIPSCLConfig:
    if args.tiny:
        text = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                "intermediate_size": 64, "vocab_size": 30522}
        vision = {"model_type": "clip_vision_model", "image_size": 32, "patch_size": 8, "hidden_size": 32,
                  "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    else:
        text = {"model_type": "bert"}  # BERT-base sizes
        vision = {"model_type": "clip_vision_model", "image_size": 224, "patch_size": 32}  # ViT-B/32
    return MGIPSCLConfig(
        text_config=text, vision_config=vision, id2label=dict(enumerate(LABELS)),
        label2id={t: i for i, t in enumerate(LABELS)}, max_images=args.images,
        vision_attends_text=not args.one_way,
        max_text_length=max(40, args.tokens),  # paper 4.3: 40
    )


@torch.no_grad()
def cached_features(model: MGIPSCLForTokenClassification, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """What the feature cache stores for MGIPS-CL: per-layer vision hidden states (B, M, L_v + 1, S, D_v)."""
    model.eval()
    out = model.vision_encoder(batch["pixel_values"], batch["image_mask"], output_hidden_states=True)
    return torch.stack(out.hidden_states, dim=2)


def main(argv: list[str] | None = None) -> list[StepResult]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--paths", default="images,cached", help="comma list of images, cached")
    parser.add_argument("--one-way", action="store_true", help="vision_attends_text=False (no vision <- text, eq. 4)")
    parser.add_argument("--no-infer", action="store_true", help="training steps only")
    args = parser.parse_args(argv)
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if any(p not in ("images", "cached") for p in paths):
        raise SystemExit("--paths must be among images, cached")
    if "cached" in paths and not args.one_way:
        print("note: the cached path needs --one-way (with eq. 4 the vision tokens depend on the text); skipped")
        paths = [p for p in paths if p != "cached"]
    precisions, peaks = setup(args)

    torch.manual_seed(0)
    config = build_config(args)
    model = MGIPSCLForTokenClassification(config).to(args.device)
    image_size = config.vision_config.image_size
    batch = {k: v.to(args.device) for k, v in make_batch(args.batch, args.tokens, args.images, image_size,
                                                          config.text_config.vocab_size).items()}
    inputs_by_path = {"images": batch}
    if "cached" in paths:
        inputs_by_path["cached"] = {k: v for k, v in batch.items() if k != "pixel_values"} | {
            "image_embeds": cached_features(model, batch)}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    facts = print_header(
        f"MGIPS-CL device={args.device} batch={args.batch} tokens={args.tokens} images<={args.images} "
        f"params={sum(p.numel() for p in model.parameters()) / 1e6:.1f}M", args, peaks)
    results: list[StepResult] = []
    for precision in precisions:
        for path in paths:
            inputs = inputs_by_path[path]

            steps = model_steps(model, optimizer, inputs, precision, args.device, infer=not args.no_infer)
            for kind, fn in steps:
                result = measure(f"{kind} {path}", precision, fn, args.batch, args, peaks[precision])
                print(result.row(), flush=True)
                results.append(result)
    results = finish(results, peaks, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": facts, "results": [r.to_dict() for r in results]}, indent=2))
    return results


if __name__ == "__main__":
    main()
