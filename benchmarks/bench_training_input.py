"""Training input path: examples/s of TPM-MI training steps with images decoded by the collator in the
main process, in DataLoader worker processes, or replaced by the frozen-vision feature cache.

Model: all-MiniLM-L6-v2 + ImageNet MobileNetV2 when installed (else tiny random encoders), frozen
vision encoder (so the three paths train the same parameters), batch 8, posts of 24 words with two
real JPEG photos each (the bundled sample photos). Each configuration runs ``--steps`` optimizer steps
after one warm-up step, under the precision ``auto`` picks, with ``AdamW(fused=True)``.

    python benchmarks/bench_training_input.py [--steps 8] [--workers 0,1,2] [--threads 2]

Rows: each ``--workers`` value with channels-last conv weights (what ``MNERTrainer`` sets), then
workers 0 with the default contiguous layout, then the feature cache.
    python benchmarks/bench_training_input.py --tiny
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import SAMPLE_IMAGES, WORDS  # noqa: E402
from mfu import machine_facts  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", default="0,1", help="comma list of dataloader_num_workers to time")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tiny:
        args.steps, args.batch = min(args.steps, 2), min(args.batch, 2)
    from datasets import ClassLabel, Dataset, Features, Sequence, Value
    from torch.utils.data import DataLoader

    from mner_hf.collator import MNERDataCollator
    from mner_hf.models.precision import resolve_precision
    from mner_hf.training.encoders import resolve_encoders
    from mner_hf.training.feature_cache import CachedFeatureCollator, cache_image_features, find_image_encoder
    from mner_hf.training.run import build_model, build_processor
    from mner_hf.training.run_config import RunConfig

    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
    text, vision = ("tiny-random", "tiny-random") if args.tiny else ("minilm", "mobilenet-v2-imagenet")
    n = args.batch * (args.steps + 1)
    rows = {
        "id": [str(i) for i in range(n)],
        "tokens": [list(WORDS)] * n,
        "ner_tags": [[0] * len(WORDS)] * n,
        "images": [[str(SAMPLE_IMAGES[(2 * i + j) % len(SAMPLE_IMAGES)]) for j in range(2)] for i in range(n)],
        "num_images": [2] * n,
    }
    features = Features({"id": Value("string"), "tokens": Sequence(Value("string")),
                         "ner_tags": Sequence(ClassLabel(names=labels)), "images": Sequence(Value("string")),
                         "num_images": Value("int32")})
    dataset = Dataset.from_dict(rows, features=features)
    choice = resolve_precision("auto", "cpu")
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig.from_dict({"model": {"type": "tpm-mi", "text_encoder": text, "vision_encoder": vision,
                                                "freeze_vision": True}, "data": {"max_length": 128}})
        text_path, vision_path = resolve_encoders(text, vision, Path(tmp) / "enc", [WORDS], 32, 2, 32)
        processor = build_processor(config, text_path, vision_path, labels)
        torch.manual_seed(0)
        model = build_model(config, text_path, vision_path, labels)
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=True)
        collator = MNERDataCollator(processor, label_names=labels)
        print(f"training input path: batch={args.batch} steps={args.steps} images/post=2 precision={choice}")
        print("machine: " + ", ".join(f"{k}={v}" for k, v in machine_facts("cpu").items()), flush=True)

        def run(loader) -> float:
            it = iter(loader)
            for i in range(args.steps + 1):
                if i == 1:
                    start = time.perf_counter()
                batch = next(it)
                optimizer.zero_grad(set_to_none=True)
                with choice.autocast():
                    loss = model(**batch).loss
                loss.backward()
                optimizer.step()
            return args.batch * args.steps / (time.perf_counter() - start)

        # MNERTrainer gives CNN vision encoders channels-last weights; "contiguous" is the layout before
        configs = [(int(w), "channels_last") for w in args.workers.split(",") if w.strip()] + [(0, "contiguous")]
        for workers, layout in configs:
            model.to(memory_format=getattr(torch, f"{layout}_format" if layout == "contiguous" else layout))
            loader = DataLoader(dataset, batch_size=args.batch, collate_fn=collator, num_workers=workers,
                                prefetch_factor=2 if workers else None)
            eps = run(loader)
            results[f"decode_workers_{workers}_{layout}"] = eps
            label = f"images decoded, dataloader_num_workers={workers}, {layout}"
            print(f"{label:<64} {eps:8.2f} examples/s", flush=True)
        model.to(memory_format=torch.channels_last)
        start = time.perf_counter()
        cached = cache_image_features(dataset, processor, find_image_encoder(model), Path(tmp) / "cache")
        cache_s = time.perf_counter() - start
        loader = DataLoader(cached, batch_size=args.batch, collate_fn=CachedFeatureCollator(collator))
        eps = run(loader)
        results["feature_cache"] = eps
        results["feature_cache_build_s"] = cache_s
        print(f"{'frozen-vision feature cache':<64} {eps:8.2f} examples/s  (cache built once: {cache_s:.1f} s "
              f"for {n} posts)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
