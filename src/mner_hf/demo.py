"""``mner-hf demo --model FOLDER [--port N]``: a Gradio app to tag one post in the browser.

Layout: a text box for the post, one multi-file upload for up to ``max_images`` images (in post
order), a "leave each image out" check box, a submit button; results: the highlighted entities
(``HighlightedText``), a status line and, with the check box, a table comparing the entities
found with all images against the entities found with each image left out (what every image
contributed).

Bad input (empty or too long text, a non-image or corrupt upload, more images than the model
takes) is shown as a message in the status line; the server never crashes and no stack trace is
shown. Gradio is an optional dependency (``pip install mner_hf[demo]``) imported only here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ENTITY_COLORS = {"PER": "#fca5a5", "LOC": "#93c5fd", "ORG": "#86efac", "MISC": "#fde68a"}


def _file_path(item: Any) -> str:
    """Path of one uploaded file (gradio gives str paths or objects with ``.name`` / ``.path``)."""
    if isinstance(item, (str, Path)):
        return str(item)
    for attr in ("path", "name"):
        value = getattr(item, attr, None)
        if isinstance(value, str):
            return value
    if isinstance(item, dict) and "path" in item:
        return str(item["path"])
    raise ValueError(f"unexpected upload object {type(item).__name__}")


def _describe(entities: list[dict[str, Any]]) -> str:
    return "; ".join(f"{e['word']} ({e['entity_group']})" for e in entities) or "(none)"


def tag_post(pipe: Any, text: str, files: list[Any] | None, leave_one_out: bool) -> tuple[dict, str, list[list[str]]]:
    """Run the pipeline for the demo.

    Returns:
        (HighlightedText value ``{"text", "entities": [{"entity", "start", "end"}]}``, status
        message (Markdown), leave-one-out rows ``[run, entities, lost, gained]``).
    """
    empty = {"text": text or "", "entities": []}
    paths = [_file_path(f) for f in (files or [])]
    names = [Path(p).name for p in paths]
    limit = pipe.max_images
    if limit == 0 and paths:
        return empty, "This model is text-only: remove the images (they would be ignored).", []
    if len(paths) > limit:
        return empty, f"**Error:** {len(paths)} images uploaded, but this model takes at most {limit}.", []
    try:
        entities = pipe({"text": text or "", "images": paths})
    except ValueError as exc:  # MNERInputError (bad text / image / URL) and processor errors
        message = str(exc)
        for i, name in enumerate(names):  # name the upload, not its temporary path
            message = message.replace(f"image {i}:", f"image {i + 1} ({name}):")
        return empty, f"**Error:** {message}", []
    value = {
        "text": text,
        "entities": [{"entity": e["entity_group"], "start": e["start"], "end": e["end"]} for e in entities],
    }
    status = f"{len(entities)} entities found using {len(paths)} image(s)."
    rows: list[list[str]] = []
    if leave_one_out and paths:
        full = {(e["start"], e["end"], e["entity_group"]) for e in entities}
        rows.append(["all images", _describe(entities), "", ""])
        for i, name in enumerate(names):
            others = paths[:i] + paths[i + 1 :]
            ents = pipe({"text": text, "images": others})
            keys = {(e["start"], e["end"], e["entity_group"]) for e in ents}
            lost = [e for e in entities if (e["start"], e["end"], e["entity_group"]) not in keys]
            gained = [e for e in ents if (e["start"], e["end"], e["entity_group"]) not in full]
            rows.append([f"without image {i + 1} ({name})", _describe(ents),
                         _describe(lost) if lost else "", _describe(gained) if gained else ""])
    return value, status, rows


def build_demo(pipe: Any, title: str = "Multimodal NER") -> Any:
    """The Gradio ``Blocks`` app for a ``multimodal-ner`` pipeline."""
    import gradio as gr

    limit = pipe.max_images
    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"# {title}\nTag the named entities of a post; images are used in upload order.")
        text = gr.Textbox(label="Post text", lines=3, elem_id="post-text")
        files = gr.File(
            label=f"Images (up to {limit}, in post order)" if limit else "Images (this model is text-only)",
            file_count="multiple", elem_id="post-images", visible=True,
        )
        loo = gr.Checkbox(label="Also rerun with each image left out", value=False, elem_id="leave-one-out")
        button = gr.Button("Tag entities", variant="primary", elem_id="submit")
        status = gr.Markdown(elem_id="status")
        highlighted = gr.HighlightedText(label="Entities", combine_adjacent=False, show_legend=False,
                                         show_inline_category=True,
                                         color_map=ENTITY_COLORS, elem_id="entities")
        table = gr.Dataframe(headers=["run", "entities", "lost vs all images", "gained vs all images"],
                             label="What every image contributed", elem_id="leave-one-out-table",
                             interactive=False)

        def _run(t: str, f: list[Any] | None, l: bool):
            try:
                value, message, rows = tag_post(pipe, t, f, l)
            except Exception as exc:  # noqa: BLE001 -- keep the server up, show the message
                logger.exception("demo request failed")
                value, message, rows = {"text": t or "", "entities": []}, f"**Error:** {type(exc).__name__}: {exc}", []
            return value, message, rows

        button.click(_run, inputs=[text, files, loo], outputs=[highlighted, status, table])
    return demo


def run(args: argparse.Namespace) -> int:
    """Entry point of ``mner-hf demo``."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("error: the demo needs gradio: pip install 'mner_hf[demo]'", file=sys.stderr)
        return 2
    if not (Path(args.model) / "config.json").is_file():
        print(f"error: {args.model} is not a checkpoint folder (no config.json)", file=sys.stderr)
        return 2
    from .predict import load_pipeline

    pipe = load_pipeline(args.model, device=args.device)
    demo = build_demo(pipe, title=f"Multimodal NER: {Path(args.model).name}")
    demo.queue().launch(server_name=args.host, server_port=args.port, share=False, prevent_thread_lock=False)
    return 0


def register_subcommand(subparsers: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the ``mner-hf`` command line."""
    p = subparsers.add_parser("demo", help="web demo (Gradio) for a checkpoint")
    p.add_argument("--model", required=True, help="checkpoint folder")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--device", default=None, help="torch device (default: the pipeline's)")
    p.set_defaults(func=run)
