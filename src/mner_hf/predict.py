"""``mner-hf predict``: tag a JSON-lines file of posts with a saved checkpoint.

Input, one JSON object per line::

    {"id": "p1", "text": "Messi scores in Paris", "images": ["imgs/a.jpg", "imgs/b.jpg"]}
    {"id": "p2", "tokens": ["RT", "@nba", ":", "LeBron", "wins"]}

``text`` (raw string) or ``tokens`` (pre-split words); ``images`` optional, paths relative to the
input file's folder (absolute paths and http(s) URLs also work), in post order. Every other field
(``id`` ...) is copied to the output unchanged. Output: the same objects, in input order, with
``"entities"`` added (the ``multimodal-ner`` pipeline's entity dicts). Blank lines are skipped
and counted.

Bad lines (invalid JSON, missing text, unreadable or corrupt image, too many images, text too
long, ...) are reported on stderr as ``FILE:LINE: message``; the other lines are still tagged.

Exit code: 0 every line tagged; 1 at least one line failed (the others are in the output);
2 the job could not run (missing model folder or input file, unwritable output).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_BAD_LINES, EXIT_FATAL = 0, 1, 2
_POST_KEYS = ("text", "tokens", "images")


@dataclass
class PredictSummary:
    """What a prediction run did (printed at the end and returned by :func:`predict_file`)."""

    tagged: int = 0
    failed: int = 0
    blank: int = 0
    images: int = 0
    entities: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def render(self) -> str:
        """Human-readable summary table."""
        rate = self.tagged / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"posts tagged     {self.tagged}",
            f"lines failed     {self.failed}",
            f"blank lines      {self.blank}",
            f"images used      {self.images}",
            f"entities         {sum(self.entities.values())}"
            + (" (" + ", ".join(f"{t}: {n}" for t, n in sorted(self.entities.items())) + ")" if self.entities else ""),
            f"time             {self.seconds:.1f} s ({rate:.1f} posts/s)",
        ]
        return "\n".join(lines)


def _resolve_image(src: Any, base: Path) -> Any:
    if isinstance(src, str) and not src.lower().startswith(("http://", "https://", "data:")):
        path = Path(src)
        return str(path if path.is_absolute() else base / path)
    return src


def parse_line(raw: str, base: Path) -> dict[str, Any]:
    """One JSON line -> the record (image paths resolved against ``base``); raises ``ValueError``."""
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if "text" not in record and "tokens" not in record:
        raise ValueError("the object has neither 'text' nor 'tokens'")
    images = record.get("images")
    if images is not None:
        if not isinstance(images, list):
            raise ValueError("'images' must be a list of paths or URLs")
        record["images"] = [_resolve_image(im, base) for im in images]
    return record


def _read_lines(path: Path, summary: PredictSummary) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """Yield (line number, record or None, error message or None) for every non-blank line."""
    with path.open(encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                summary.blank += 1
                continue
            try:
                yield line_no, parse_line(raw, path.parent), None
            except ValueError as exc:
                yield line_no, None, str(exc)


def _preprocessed_lines(
    pipe: Any, lines: Iterator[tuple[int, dict[str, Any] | None, str | None]], preprocess_params: dict[str, Any],
    lookahead: int,
) -> Iterator[tuple[int, dict[str, Any] | None, Any, str | None]]:
    """(line number, record, preprocessed item or None, error or None) in input order.

    With a pipeline that splits its preprocessing (``_prepare_post`` opens and encodes images and is
    thread-safe; ``_encode_text`` tokenizes), the images of the next ``lookahead`` lines are decoded
    in a thread pool while the model runs; each line still fails alone with its own message."""
    def post(record: dict[str, Any]) -> dict[str, Any]:
        return {k: record[k] for k in _POST_KEYS if k in record}

    if not hasattr(pipe, "_prepare_post"):  # pipeline code saved before the split: one line at a time
        for line_no, record, error in lines:
            item = None
            if error is None:
                try:
                    item = pipe.preprocess(post(record), **preprocess_params)
                except (ValueError, TypeError) as exc:  # MNERInputError, processor / image errors
                    error = str(exc)
            yield line_no, record, item, error
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    params = {"timeout": preprocess_params.get("timeout", 10.0),
              "too_many_images": preprocess_params.get("too_many_images", "error")}

    def finish(line_no, record, future, error):
        item = None
        if future is not None:
            try:
                item = pipe._encode_text(future.result())
            except (ValueError, TypeError) as exc:
                error = str(exc)
        return line_no, record, item, error

    threads = getattr(pipe, "decode_threads", None) or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mner-predict") as pool:
        pending: deque = deque()
        for line_no, record, error in lines:
            future = pool.submit(pipe._prepare_post, post(record), **params) if error is None else None
            pending.append((line_no, record, future, error))
            if len(pending) > lookahead:
                yield finish(*pending.popleft())
        while pending:
            yield finish(*pending.popleft())


def predict_file(
    pipe: Any,
    input_path: Path,
    output_path: Path,
    batch_size: int = 8,
    pipeline_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
) -> PredictSummary:
    """Tag every line of ``input_path`` into ``output_path`` with a ``multimodal-ner`` pipeline.

    Each post is preprocessed alone (so a bad line fails alone, with its line number); good posts
    are run through the model ``batch_size`` at a time (padding by the processor).
    """
    from tqdm.auto import tqdm

    pipeline_kwargs = dict(pipeline_kwargs or {})
    preprocess_params, forward_params, postprocess_params = pipe._sanitize_parameters(**pipeline_kwargs)
    summary = PredictSummary()
    with input_path.open(encoding="utf-8") as handle:
        total = sum(1 for line in handle if line.strip())
    start = time.perf_counter()

    def report(line_no: int, message: str) -> None:
        summary.failed += 1
        text = f"{input_path}:{line_no}: {message}"
        summary.errors.append(text)
        tqdm.write(text, file=sys.stderr)

    with output_path.open("w", encoding="utf-8") as out, tqdm(
        total=total, desc="tagging", unit="post", disable=not progress, file=sys.stderr
    ) as bar:
        pending: list[tuple[int, dict[str, Any], Any]] = []

        def flush() -> None:
            if not pending:
                return
            outputs = pipe.forward(pipe.collate([item for _, _, item in pending]), **forward_params)
            for b, (_, record, _) in enumerate(pending):
                one = {
                    "predictions": outputs["predictions"][b : b + 1],
                    "marginals": outputs["marginals"][b : b + 1],
                    "word_mask": outputs["word_mask"][b : b + 1],
                    "meta": [outputs["meta"][b]],
                }
                entities = pipe.postprocess(one, **postprocess_params)
                summary.entities.update(e["entity_group"] for e in entities)
                summary.images += len(record.get("images") or []) if pipe.max_images else 0
                summary.tagged += 1
                out.write(json.dumps({**record, "entities": entities}, ensure_ascii=False) + "\n")
            bar.update(len(pending))
            pending.clear()

        for line_no, record, item, error in _preprocessed_lines(pipe, _read_lines(input_path, summary),
                                                                preprocess_params, lookahead=2 * batch_size):
            if error is not None:
                report(line_no, error)
                bar.update(1)
                continue
            pending.append((line_no, record, item))
            if len(pending) >= batch_size:
                flush()
        flush()
    summary.seconds = time.perf_counter() - start
    return summary


def load_pipeline(model: str, device: str | int | None = None, precision: str = "auto") -> Any:
    """The checkpoint's own ``multimodal-ner`` pipeline (its saved code, ``trust_remote_code``).

    ``precision``: ``auto`` (bf16 autocast where the hardware has fast bf16, else fp32), ``fp32``,
    ``bf16`` or ``fp16``. Checkpoints saved before the pipeline took ``precision`` run fp32."""
    from transformers import pipeline

    pipe = pipeline(task="multimodal-ner", model=model, trust_remote_code=True, device=device)
    if hasattr(type(pipe), "precision"):
        pipe._precision = None
        _, forward, _ = pipe._sanitize_parameters(precision=precision)
        pipe._precision = forward["precision"]
    elif precision not in ("auto", "fp32"):
        raise ValueError(f"the pipeline code saved in {model} predates precision={precision!r}; re-save the checkpoint")
    return pipe


def run(args: argparse.Namespace) -> int:
    """Entry point of ``mner-hf predict``; returns the exit code (module docstring)."""
    model, input_path, output_path = Path(args.model), Path(args.input), Path(args.output)
    if not (model / "config.json").is_file():
        print(f"error: {model} is not a checkpoint folder (no config.json)", file=sys.stderr)
        return EXIT_FATAL
    if not input_path.is_file():
        print(f"error: input file {input_path} not found", file=sys.stderr)
        return EXIT_FATAL
    if args.batch_size < 1:
        print(f"error: --batch-size must be >= 1, got {args.batch_size}", file=sys.stderr)
        return EXIT_FATAL
    try:
        output_path.parent.mkdir(parents=True, exist_ok=True)
        output_path.touch()
    except OSError as exc:
        print(f"error: cannot write {output_path}: {exc}", file=sys.stderr)
        return EXIT_FATAL
    try:
        pipe = load_pipeline(str(model), device=args.device, precision=args.precision)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    if hasattr(pipe, "precision"):
        print(f"precision: {pipe.precision}", file=sys.stderr)
    kwargs: dict[str, Any] = {"timeout": args.timeout, "too_many_images": args.too_many_images}
    summary = predict_file(pipe, input_path, output_path, args.batch_size, kwargs, progress=not args.no_progress)
    print(summary.render())
    print(f"output: {output_path}")
    if summary.failed:
        print(f"{summary.failed} line(s) failed (see the messages above); exit code {EXIT_BAD_LINES}", file=sys.stderr)
        return EXIT_BAD_LINES
    return EXIT_OK


def register_subcommand(subparsers: argparse._SubParsersAction) -> None:
    """Add ``predict`` to the ``mner-hf`` command line."""
    p = subparsers.add_parser(
        "predict",
        help="tag a JSON-lines file of posts with a checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="checkpoint folder (written by save_for_hub / mner-hf train)")
    p.add_argument("--input", required=True, help="posts.jsonl: text or tokens, images relative to the file")
    p.add_argument("--output", required=True, help="tagged.jsonl to write")
    p.add_argument("--batch-size", type=int, default=8, help="posts per forward pass (default 8)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each image URL")
    p.add_argument("--too-many-images", choices=("error", "truncate"), default="error",
                   help="posts with more images than the model takes: fail the line or keep the first ones")
    p.add_argument("--device", default=None, help="torch device (cpu, cuda, cuda:1; default: the pipeline's)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto (default): bf16 autocast where the CPU/GPU has fast bf16, else fp32")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
