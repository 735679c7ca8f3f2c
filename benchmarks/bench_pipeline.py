"""Throughput of the ``multimodal-ner`` pipeline against the model's own forward, same batch size.

A TPM-MI checkpoint (all-MiniLM-L6-v2 text encoder + ImageNet MobileNetV2 when their packages are
installed, else tiny random encoders) is saved with ``save_for_hub`` and loaded the way users load
it: ``pipeline(model=folder, trust_remote_code=True)``. Posts: 24 words, two real JPEG photos each
(the bundled sample photos, about 690x460), and with ``--large`` the same photos re-encoded at
Twitter's "large" size (1200 px wide, JPEG quality 90).

Printed, in posts/s at ``--batch`` posts per forward pass:
  model forward   ``pipe.forward`` on pre-encoded batches (vision encoder + text encoder + CRF
                  marginals, under the pipeline's precision): the ceiling
  pipeline        ``pipe(posts, batch_size=...)`` end to end: image decoding, preprocessing, padding,
                  forward, spans
  text only       the same posts without images
and the ratio pipeline / model forward (target >= 0.70 with two images per post).

    python benchmarks/bench_pipeline.py [--batch 16] [--posts 64] [--threads 1] [--large] [--precision auto]
    python benchmarks/bench_pipeline.py --tiny        # tiny random encoders, seconds (run by the tests)
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
from mfu import add_malloc_argument, apply_malloc, machine_facts, report_allocator  # noqa: E402

SAMPLE_IMAGES = sorted((Path(__file__).resolve().parents[1] / "src" / "mner_hf" / "sample" / "images").glob("*.jpg"))
WORDS = ("Kawhi Leonard and the Raptors celebrate in Toronto after beating Golden State , says ESPN reporter "
         "Adrian Wojnarowski on Twitter tonight at the arena").split()


def build_checkpoint(folder: Path, tiny: bool) -> Path:
    """Save a TPM-MI checkpoint (+ processor + pipeline code) into ``folder``."""
    from mner_hf.checkpoint import save_for_hub
    from mner_hf.training.encoders import resolve_encoders
    from mner_hf.training.run import build_model, build_processor
    from mner_hf.training.run_config import RunConfig

    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
    text, vision = ("tiny-random", "tiny-random") if tiny else ("minilm", "mobilenet-v2-imagenet")
    config = RunConfig.from_dict({"model": {"type": "tpm-mi", "text_encoder": text, "vision_encoder": vision,
                                            "max_images": 4}, "data": {"dataset": "twitter2017", "max_length": 128}})
    text_path, vision_path = resolve_encoders(text, vision, folder / "encoders", [WORDS], 32, 2, 32)
    processor = build_processor(config, text_path, vision_path, labels)
    torch.manual_seed(0)
    model = build_model(config, text_path, vision_path, labels).eval()
    return save_for_hub(model, processor, folder / "checkpoint")


def large_copies(folder: Path, width: int = 1200) -> list[Path]:
    """The sample photos re-encoded at ``width`` px wide (JPEG quality 90)."""
    from PIL import Image

    out = []
    folder.mkdir(parents=True, exist_ok=True)
    for src in SAMPLE_IMAGES:
        with Image.open(src) as im:
            im = im.convert("RGB")
            big = im.resize((width, round(im.height * width / im.width)), Image.Resampling.BICUBIC)
            path = folder / src.name
            big.save(path, quality=90)
            out.append(path)
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--posts", type=int, default=64)
    parser.add_argument("--images-per-post", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as in the issue)")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16, fp16")
    parser.add_argument("--large", action="store_true", help="also photos at 1200 px wide")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs per measurement")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny random encoders, few posts (CI)")
    parser.add_argument("--json", default=None)
    add_malloc_argument(parser)
    args = parser.parse_args(argv)
    apply_malloc(args)
    if args.tiny:
        args.posts, args.batch = min(args.posts, 8), min(args.batch, 4)
    torch.set_num_threads(args.threads)
    from transformers import pipeline

    import mner_hf  # noqa: F401  (registers the task for the in-process reference)

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_checkpoint(Path(tmp), args.tiny)
        pipe = pipeline(model=str(folder), trust_remote_code=True, device=args.device, precision=args.precision)
        facts = machine_facts(args.device)
        print(f"pipeline benchmark: batch={args.batch} posts={args.posts} images/post={args.images_per_post} "
              f"precision={pipe.precision}")
        print("machine: " + ", ".join(f"{k}={v}" for k, v in facts.items()), flush=True)
        report_allocator(args, facts)
        image_sets = [("sample photos ~690x460", SAMPLE_IMAGES)]
        if args.large:
            image_sets.append(("photos 1200 px wide", large_copies(Path(tmp) / "large")))
        text = " ".join(WORDS)

        def best(fn) -> float:
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            return min(times)

        text_posts = [{"text": text} for _ in range(args.posts)]
        pipe(text_posts[: args.batch], batch_size=args.batch)  # warm-up
        t_text = best(lambda: pipe(text_posts, batch_size=args.batch))
        results["text_only_posts_per_s"] = args.posts / t_text
        print(f"{'text only (pipeline)':<44} {args.posts / t_text:8.2f} posts/s", flush=True)
        k = args.images_per_post
        for label, images in image_sets:
            posts = [{"text": text, "images": [str(images[(k * i + j) % len(images)]) for j in range(k)]}
                     for i in range(args.posts)]
            items = [pipe.preprocess(p) for p in posts]
            batches = [pipe.collate(items[i : i + args.batch]) for i in range(0, len(items), args.batch)]
            pipe.forward(batches[0])  # warm-up

            def forward_all() -> None:
                with torch.inference_mode():
                    for b in batches:
                        pipe.forward(b)

            t_model = best(forward_all)
            t_pipe = best(lambda: pipe(posts, batch_size=args.batch))
            key = "large" if "1200" in label else "sample"
            results[f"{key}_model_forward_posts_per_s"] = args.posts / t_model
            results[f"{key}_pipeline_posts_per_s"] = args.posts / t_pipe
            results[f"{key}_ratio"] = t_model / t_pipe
            print(f"{'model forward, ' + label:<44} {args.posts / t_model:8.2f} posts/s")
            print(f"{'pipeline, ' + label:<44} {args.posts / t_pipe:8.2f} posts/s   "
                  f"ratio {t_model / t_pipe:.2f} of the model's forward", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": facts, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
