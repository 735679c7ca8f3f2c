"""``mner-hf demo --model FOLDER [--port N]``: a Gradio app to tag one post in the browser.

Layout: a title naming the model type, its training dataset and its scores (read from the
checkpoint's model card, :func:`checkpoint_title`); a text box for the post, one multi-file upload
for up to ``max_images`` images with their thumbnails in post order (``Gallery``, captions
"1. name.jpg"), a "leave each image out" check box, a submit button, and the bundled sample posts
with their photos as one-click examples (:func:`sample_examples`); results: the highlighted
entities (``HighlightedText``), a status line and, with the check box, a table comparing the
entities found with all images against the entities found with each image left out (each row
names the image it leaves out by number and file name, as in the thumbnails' captions).

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
MODEL_NAMES = {"tpm_mi": "TPM-MI", "mgips_cl": "MGIPS-CL", "bert_crf": "BERT-CRF"}


def card_scores(folder: str | Path) -> tuple[str | None, dict[str, dict[str, float]]]:
    """(dataset name, ``{split: {metric: value}}``) from the model card's ``model-index``.

    Values are as written in the card (percentages). ``(None, {})`` when the folder has no card
    or the card has no evaluation results.
    """
    path = Path(folder) / "README.md"
    if not path.is_file():
        return None, {}
    from huggingface_hub import ModelCard

    try:
        data = ModelCard.load(path).data
    except Exception as exc:  # noqa: BLE001 -- a malformed card must not stop the demo
        logger.warning("model card %s unreadable: %s", path, exc)
        return None, {}
    dataset, scores = None, {}
    for result in data.eval_results or []:
        dataset = dataset or result.dataset_name
        split = result.dataset_split or "eval"
        scores.setdefault(split, {})[result.metric_type] = float(result.metric_value)
    if dataset is None and data.datasets:
        dataset = data.datasets[0]
    return dataset, scores


def checkpoint_title(model: Any) -> str:
    """"TPM-MI on cmner_sample: test F1 48.20 (P 51.00, R 45.70)" from the config and model card.

    The scores come from the split ``test`` when the card has one, else the first split listed.
    """
    model_type = getattr(model.config, "model_type", "")
    name = MODEL_NAMES.get(model_type, model_type or type(model).__name__)
    dataset, scores = card_scores(getattr(model, "name_or_path", "") or "")
    title = f"{name} on {dataset}" if dataset else name
    split = "test" if "test" in scores else next(iter(scores), None)
    if split is not None:
        m = scores[split]
        parts = [f"{split} F1 {m['f1']:.2f}"] if "f1" in m else []
        pr = ", ".join(f"{k[0].upper()} {m[k]:.2f}" for k in ("precision", "recall") if k in m)
        title += ": " + " ".join(parts + ([f"({pr})"] if pr else []))
    return title


def sample_examples(max_images: int) -> list[tuple[str, list[str], str]]:
    """The bundled sample posts (6 CMNER posts, 25 photos) as ``(text, image paths, label)``.

    Text is the post's characters joined without spaces (as a user would paste it); at most
    ``max_images`` photos per post, in post order (the label says when some were left out).
    """
    from .readers import read_cmner
    from .resources import sample_dir

    out = []
    for post in read_cmner(sample_dir() / "example_text", sample_dir() / "images"):
        images = [p for p in post.images if p][:max_images]
        n = len([p for p in post.images if p])
        shown = f"{len(images)} of {n} photos" if len(images) < n else f"{n} photo{'s' if n != 1 else ''}"
        text = "".join(post.tokens)
        out.append((text, images, f"{text[:18]}... ({shown})"))
    return out


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


def thumbnails(files: list[Any] | None) -> list[tuple[str, str]]:
    """Gallery value for the uploads: ``(path, "1. name.jpg")`` in post (upload) order.

    A file that is not a readable image gets no thumbnail (the numbers of the others stay their
    post positions); submitting then shows the error in the status line.
    """
    from PIL import Image

    out = []
    for i, item in enumerate(files or []):
        path = _file_path(item)
        try:
            with Image.open(path) as img:
                img.verify()
        except Exception:  # noqa: BLE001 -- any unreadable upload: no thumbnail
            continue
        out.append((path, f"{i + 1}. {Path(path).name}"))
    return out


def build_demo(pipe: Any, title: str | None = None, examples: bool = True) -> Any:
    """The Gradio ``Blocks`` app for a ``multimodal-ner`` pipeline.

    ``title`` defaults to :func:`checkpoint_title` (model type, dataset and scores from the card);
    ``examples`` adds the bundled sample posts with their photos as one-click examples.
    """
    import gradio as gr

    limit = pipe.max_images
    title = title or checkpoint_title(pipe.model)
    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"# {title}\nTag the named entities of a post; images are used in upload order.",
                    elem_id="title")
        text = gr.Textbox(label="Post text", lines=3, elem_id="post-text")
        files = gr.File(
            label=f"Images (up to {limit}, in post order)" if limit else "Images (this model is text-only)",
            file_count="multiple", elem_id="post-images", visible=True,
        )
        gallery = gr.Gallery(label="Images in post order", columns=6, fit_columns=False, height=220, object_fit="contain",
                             elem_id="post-gallery", interactive=False, visible=bool(limit))
        files.change(thumbnails, inputs=files, outputs=gallery)
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
        if examples:
            rows = sample_examples(limit)
            gr.Examples(
                examples=[[t, imgs] if limit else [t] for t, imgs, _ in rows],
                inputs=[text, files] if limit else [text],
                example_labels=[label for _, _, label in rows],
                label="Bundled sample posts (CMNER, MIT): click one to load its text and photos",
                elem_id="examples",
            )
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
    demo = build_demo(pipe)
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
