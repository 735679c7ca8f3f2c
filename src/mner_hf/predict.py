"""``mner-hf predict``: tag a JSON-lines file of posts with a saved checkpoint.

Input, one JSON object per line (UTF-8)::

    {"id": "p1", "text": "Messi scores in Paris", "images": ["imgs/a.jpg", "imgs/b.jpg"]}
    {"id": "p2", "tokens": ["RT", "@nba", ":", "LeBron", "wins"]}

``text`` (raw string) or ``tokens`` (pre-split words); ``images`` optional, paths relative to the
input file's folder (absolute paths and http(s) URLs also work), in post order. Every other field
(``id`` ...) is copied to the output unchanged. Output: the same objects, in input order, with the
entities (the ``multimodal-ner`` pipeline's entity dicts) added under ``"entities"`` (or the key
given with ``--entities-key``). Blank lines are skipped and counted.

Bad lines are reported on stderr as ``FILE:LINE: message`` and left out of the output; every other
line is still tagged and written. A line is bad when it is not valid UTF-8, not valid JSON
(``NaN`` / ``Infinity`` / numbers too large for a float are not JSON), not an object, has neither
text nor tokens, holds a lone surrogate (``"\\ud800"``: invalid Unicode) in any field, ALREADY HAS
the entities key (it is never overwritten: pass ``--entities-key`` to write under another key),
has an unreadable, corrupt, too slow or too large image, too many images, or too long a text.

Image URLs: ``--timeout`` bounds each download in total (connect to last byte, default 10 s) and
``--max-image-bytes`` its size (default 32 MiB), so a slow or endless server fails its line only.

The output is written to a temporary file in its folder and renamed over ``--output`` at the end:
an existing output is replaced only by a finished run. ``--output`` may not be the input file
(also not through another path, a symlink or a hard link).

Exit code: 0 every post tagged (also for a file without posts); 1 at least one line failed (all
the others are in the output); 2 the job could not run (missing or unloadable checkpoint, missing
or unreadable input, output that is the input, unwritable output, invalid option value). The
``mner-hf`` command adds 130 (interrupted) and 3 (internal error, see ``mner-hf --debug``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cpu_allocator import tune_cpu_allocator
from .models.image_loading import DEFAULT_MAX_DOWNLOAD_BYTES, DEFAULT_URL_TIMEOUT
from .models.processing_mner import find_lone_surrogate

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_BAD_LINES, EXIT_FATAL = 0, 1, 2
DEFAULT_ENTITIES_KEY = "entities"
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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON: {name} is not a JSON value (RFC 8259); write null or a string")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"invalid JSON: the number {text[:30]} is too large for a float")
    return value


def _lone_surrogate(value: Any, path: str = "") -> str | None:
    """Message for the first lone surrogate in a JSON value (keys included), or None.

    ``path`` names the value, e.g. ``meta.tags[2]``.
    """
    if isinstance(value, str):
        i = find_lone_surrogate(value)
        if i < 0:
            return None
        where = f"field {path!r}" if path else "the line"
        return f"{where} holds a lone surrogate U+{ord(value[i]):04X} at character {i} (invalid Unicode)"
    if isinstance(value, dict):
        for key, item in value.items():
            i = find_lone_surrogate(key)
            if i >= 0:
                owner = f"field {path!r}" if path else "the object"
                return f"a key of {owner} holds a lone surrogate U+{ord(key[i]):04X} at character {i} (invalid Unicode)"
            found = _lone_surrogate(item, f"{path}.{key}" if path else key)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _lone_surrogate(item, f"{path}[{i}]")
            if found:
                return found
    return None


def parse_line(raw: str, base: Path, entities_key: str = DEFAULT_ENTITIES_KEY) -> dict[str, Any]:
    """One JSON line -> the record (image paths resolved against ``base``); raises ``ValueError``.

    Refused (``ValueError`` with the reason): invalid JSON (also ``NaN`` / ``Infinity`` / overflowing
    numbers), not an object, neither ``text`` nor ``tokens``, a lone surrogate anywhere, an
    ``images`` that is not a list, and an object that already holds ``entities_key``.
    """
    try:
        record = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    bad = _lone_surrogate(record)
    if bad:
        raise ValueError(bad + "; fix how the file was written")
    if "text" not in record and "tokens" not in record:
        raise ValueError("the object has neither 'text' nor 'tokens'")
    if entities_key in record:
        raise ValueError(
            f"the object already has the field {entities_key!r}, which the output would overwrite; "
            "pass --entities-key NAME to write the entities under another key"
        )
    images = record.get("images")
    if images is not None:
        if not isinstance(images, list):
            raise ValueError("'images' must be a list of paths or URLs")
        record["images"] = [_resolve_image(im, base) for im in images]
    return record


def _decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line, undecodable bytes kept as lone surrogates (surrogateescape)."""
    with path.open(encoding="utf-8", errors="surrogateescape") as handle:
        for line_no, raw in enumerate(handle, start=1):
            yield line_no, raw[1:] if line_no == 1 and raw.startswith("\ufeff") else raw  # UTF-8 BOM


def _read_lines(
    path: Path, summary: PredictSummary, entities_key: str = DEFAULT_ENTITIES_KEY
) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """Yield (line number, record or None, error message or None) for every non-blank line."""
    for line_no, raw in _decoded_lines(path):
        bad = find_lone_surrogate(raw)
        if bad >= 0:  # only undecodable bytes give raw surrogates (JSON escapes are plain ASCII)
            byte = ord(raw[bad]) - 0xDC00
            yield line_no, None, f"not valid UTF-8: byte 0x{byte:02X} at column {bad + 1} (save the file as UTF-8)"
            continue
        if not raw.strip():
            summary.blank += 1
            continue
        try:
            yield line_no, parse_line(raw, path.parent, entities_key), None
        except ValueError as exc:
            yield line_no, None, str(exc)


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same existing file (other path, symlink or hard link)."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _open_temporary(output_path: Path) -> tuple[Any, Path]:
    """A new text file beside ``output_path`` (renamed over it when the run finishes)."""
    output_path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=output_path.parent, prefix=f".{output_path.name}.", suffix=".part")
    try:
        if output_path.exists():
            mode = output_path.stat().st_mode & 0o777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(fd, mode)
        return os.fdopen(fd, "w", encoding="utf-8"), Path(name)
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise


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

    if not hasattr(pipe, "prepare_ahead"):  # pipeline code saved before the split: one line at a time
        for line_no, record, error in lines:
            item = None
            if error is None:
                try:
                    item = pipe.preprocess(post(record), **preprocess_params)
                except (ValueError, TypeError) as exc:  # MNERInputError, processor / image errors
                    error = str(exc)
            yield line_no, record, item, error
        return
    params = {k: preprocess_params[k] for k in ("timeout", "too_many_images", "max_image_bytes")
              if k in preprocess_params}
    items = (((line_no, record, error), post(record) if error is None else None) for line_no, record, error in lines)
    for (line_no, record, error), future in pipe.prepare_ahead(items, params, lookahead):
        item = None
        if future is not None:
            try:
                item = pipe._encode_text(future.result())
            except (ValueError, TypeError) as exc:
                error = str(exc)
        yield line_no, record, item, error


def predict_file(
    pipe: Any,
    input_path: Path,
    output_path: Path,
    batch_size: int = 8,
    pipeline_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
    entities_key: str = DEFAULT_ENTITIES_KEY,
) -> PredictSummary:
    """Tag every line of ``input_path`` into ``output_path`` with a ``multimodal-ner`` pipeline.

    Each post is preprocessed alone (so a bad line fails alone, with its line number); good posts
    are run through the model ``batch_size`` at a time (padding by the processor). The output is
    written to a temporary file renamed over ``output_path`` at the end (also when lines failed);
    on an exception the temporary file is removed and ``output_path`` is left as it was.

    Raises:
        ValueError: ``output_path`` is ``input_path`` (by any path or link) or a folder.
        OSError: the input cannot be read or the output folder cannot be written.
    """
    from tqdm.auto import tqdm

    if same_file(input_path, output_path):
        raise ValueError(f"the output {output_path} is the input file {input_path}: refusing to overwrite it")
    if output_path.is_dir():
        raise ValueError(f"the output {output_path} is a folder, not a file")
    pipeline_kwargs = dict(pipeline_kwargs or {})
    preprocess_params, forward_params, postprocess_params = pipe._sanitize_parameters(**pipeline_kwargs)
    summary = PredictSummary()
    total = sum(1 for _, line in _decoded_lines(input_path) if line.strip())
    start = time.perf_counter()

    def report(line_no: int, message: str) -> None:
        summary.failed += 1
        text = f"{input_path}:{line_no}: {message}"
        summary.errors.append(text)
        tqdm.write(text, file=sys.stderr)

    out, tmp_path = _open_temporary(output_path)
    try:
        with out, tqdm(total=total, desc="tagging", unit="post", disable=not progress, file=sys.stderr) as bar:
            pending: list[tuple[int, dict[str, Any], Any]] = []

            def write(line_no: int, record: dict[str, Any], item: Any, outputs: dict[str, Any], b: int) -> None:
                one = {
                    "predictions": outputs["predictions"][b : b + 1],
                    "marginals": outputs["marginals"][b : b + 1],
                    "word_mask": outputs["word_mask"][b : b + 1],
                    "meta": [outputs["meta"][b]],
                }
                entities = pipe.postprocess(one, **postprocess_params)
                try:
                    line = json.dumps({**record, entities_key: entities}, ensure_ascii=False, allow_nan=False)
                except ValueError:
                    report(line_no, "the model gave a NaN or infinite score (a broken checkpoint or a numeric "
                                    "overflow); the line is not written")
                    return
                out.write(line + "\n")
                summary.entities.update(e["entity_group"] for e in entities)
                summary.images += int(sum(item["features"]["image_mask"])) if pipe.max_images else 0
                summary.tagged += 1

            def run_batch(batch: list[tuple[int, dict[str, Any], Any]]) -> None:
                try:
                    outputs = pipe.forward(pipe.collate([item for _, _, item in batch]), **forward_params)
                except (RuntimeError, ValueError) as exc:
                    if len(batch) > 1:  # find the post that fails; tag the others
                        for one in batch:
                            run_batch([one])
                    else:
                        report(batch[0][0], f"the model failed on this post: {type(exc).__name__}: {exc}")
                    return
                for b, (line_no, record, item) in enumerate(batch):
                    write(line_no, record, item, outputs, b)

            def flush() -> None:
                if pending:
                    run_batch(pending)
                    bar.update(len(pending))
                    pending.clear()

            lines = _read_lines(input_path, summary, entities_key)
            for line_no, record, item, error in _preprocessed_lines(pipe, lines, preprocess_params,
                                                                    lookahead=2 * batch_size):
                if error is not None:
                    report(line_no, error)
                    bar.update(1)
                    continue
                pending.append((line_no, record, item))
                if len(pending) >= batch_size:
                    flush()
            flush()
        os.replace(tmp_path, output_path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
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

    def fatal(message: str) -> int:
        print(f"mner-hf predict: error: {message}", file=sys.stderr)
        return EXIT_FATAL

    if not (model / "config.json").is_file():
        return fatal(f"{model} is not a checkpoint folder (no config.json)")
    if not input_path.is_file():
        return fatal(f"input file {input_path} not found" if not input_path.exists() else f"input {input_path} is not a file")
    if args.batch_size < 1:
        return fatal(f"--batch-size must be >= 1, got {args.batch_size}")
    if not args.timeout > 0:
        return fatal(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.max_image_bytes < 1:
        return fatal(f"--max-image-bytes must be >= 1, got {args.max_image_bytes}")
    if not args.entities_key or args.entities_key in _POST_KEYS:
        return fatal(f"--entities-key must be a new field name, not {args.entities_key!r}")
    if same_file(input_path, output_path):
        return fatal(f"--output {output_path} is the input file {input_path}: refusing to overwrite the input")
    if output_path.is_dir():
        return fatal(f"--output {output_path} is a folder, not a file")
    try:  # fail now, not after loading the model: is the input readable, the output folder writable?
        with input_path.open("rb") as handle:
            handle.read(1)
        probe, probe_path = _open_temporary(output_path)
        probe.close()
        probe_path.unlink()
    except OSError as exc:
        return fatal(f"{exc.filename or output_path}: {exc.strerror or exc}")
    try:
        pipe = load_pipeline(str(model), device=args.device, precision=args.precision)
    except Exception as exc:  # noqa: BLE001 -- any failure to load means the job cannot run
        return fatal(f"cannot load the checkpoint {model}: {type(exc).__name__}: {exc}")
    if hasattr(pipe, "precision"):
        print(f"precision: {pipe.precision}", file=sys.stderr)
    if getattr(getattr(pipe, "device", None), "type", "cpu") == "cpu":
        print(f"cpu allocator: {tune_cpu_allocator()}", file=sys.stderr)
    kwargs: dict[str, Any] = {"timeout": args.timeout, "too_many_images": args.too_many_images,
                              "max_image_bytes": args.max_image_bytes}
    try:
        summary = predict_file(pipe, input_path, output_path, args.batch_size, kwargs,
                               progress=not args.no_progress, entities_key=args.entities_key)
    except OSError as exc:
        return fatal(f"{exc.filename or input_path}: {exc.strerror or exc}")
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
    p.add_argument("--output", required=True, help="tagged.jsonl to write (never the input file)")
    p.add_argument("--batch-size", type=int, default=8, help="posts per forward pass (default 8)")
    p.add_argument("--timeout", type=float, default=DEFAULT_URL_TIMEOUT,
                   help=f"seconds allowed for each image URL download in total, connect to last byte "
                        f"(default {DEFAULT_URL_TIMEOUT:g})")
    p.add_argument("--max-image-bytes", type=int, default=DEFAULT_MAX_DOWNLOAD_BYTES,
                   help=f"largest image download accepted from a URL (default {DEFAULT_MAX_DOWNLOAD_BYTES}, 32 MiB)")
    p.add_argument("--too-many-images", choices=("error", "truncate"), default="error",
                   help="posts with more images than the model takes: fail the line or keep the first ones")
    p.add_argument("--entities-key", default=DEFAULT_ENTITIES_KEY,
                   help="output field for the entities (default 'entities'); a line that already has it fails")
    p.add_argument("--device", default=None, help="torch device (cpu, cuda, cuda:1; default: the pipeline's)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto (default): bf16 autocast where the CPU/GPU has fast bf16, else fp32")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
