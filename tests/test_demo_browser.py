"""`mner-hf demo`: the Gradio app driven in headless Chromium (Playwright + Debian chromium).

Skips cleanly when gradio, playwright or /usr/bin/chromium is missing (`.ci/install_browser.sh`
installs them)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from checkpoint_factory import SAMPLE_IMAGES, TEXT, build_checkpoint

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CARD_RESULTS = {
    "validation": {"overall": {"precision": 0.5, "recall": 0.25, "f1": 1 / 3}},
    "test": {"overall": {"precision": 0.6667, "recall": 0.5714, "f1": 0.6154}},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    pytest.importorskip("gradio")
    from transformers import pipeline

    from mner_hf.demo import build_demo

    from mner_hf.training.model_card import build_model_card

    # a copy of the tiny checkpoint with a real model card (model-index scores, as training writes it)
    folder = tmp_path_factory.mktemp("carded") / "final"
    shutil.copytree(build_checkpoint("tpm_mi", tmp_path_factory), folder)
    build_model_card(results=CARD_RESULTS, model_type="tpm_mi", dataset_name="cmner_sample",
                     entity_types=["LOC", "MISC", "ORG", "PER"], text_encoder="minilm", vision_encoder=None,
                     training_config_yaml="model: {}").save(folder / "README.md")
    pipe = pipeline(model=str(folder), trust_remote_code=True, device="cpu")
    demo = build_demo(pipe)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield pipe, f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def page(app):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (see .ci/install_browser.sh)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser.new_page(viewport={"width": 1280, "height": 1000})
        browser.close()


def _submit(page, url: str, text: str, files: list[str], leave_one_out: bool = False, thumbnails: bool = False) -> str:
    page.goto(url)
    page.locator("#post-text textarea").fill(text)
    if files:
        page.locator("#post-images input[type=file]").set_input_files(files)
        names = [Path(f).stem for f in files]  # wait until every upload is listed
        page.wait_for_function(
            "names => names.every(n => document.querySelector('#post-images').innerText.includes(n))",
            arg=names, timeout=30_000,
        )
    if thumbnails:
        _wait_for_thumbnails(page, [Path(f).name for f in files])
    if leave_one_out:
        page.locator("#leave-one-out input[type=checkbox]").check()
    page.locator("#status").evaluate("el => el.setAttribute('data-before', el.innerText)")
    page.locator("#submit").click()
    page.wait_for_function(
        "() => { const s = document.querySelector('#status'); return s && s.innerText.trim().length > 0 "
        "&& !document.querySelector('#entities .pending, #status .pending'); }",
        timeout=60_000,
    )
    page.wait_for_timeout(300)
    return page.locator("#status").inner_text().strip()


def _wait_for_thumbnails(page, names: list[str]) -> None:
    """Wait until the gallery shows one loaded thumbnail per image, captioned "i. name" in order."""
    captions = [f"{i + 1}. {n}" for i, n in enumerate(names)]
    page.wait_for_function(
        """captions => {
            const g = document.querySelector('#post-gallery');
            if (!g) return false;
            const imgs = [...g.querySelectorAll('img')].filter(i => i.complete && i.naturalWidth > 0);
            const text = g.innerText;
            let at = 0;
            for (const c of captions) { const k = text.indexOf(c, at); if (k < 0) return false; at = k + c.length; }
            return imgs.length >= captions.length;
        }""",
        arg=captions, timeout=30_000,
    )


def _highlighted(page) -> list[tuple[str, str]]:
    tokens = page.locator("#entities .token.highlighted")
    return [(tokens.nth(i).locator(".text").inner_text().strip(), tokens.nth(i).locator(".label").inner_text().strip())
            for i in range(tokens.count())]


def test_demo_tags_a_post_with_two_photos(app, page, tmp_path):
    pipe, url = app
    photos = [str(p) for p in SAMPLE_IMAGES[:2]]
    status = _submit(page, url, TEXT, photos, leave_one_out=True, thumbnails=True)
    expected = pipe({"text": TEXT, "images": photos})
    assert status == f"{len(expected)} entities found using 2 image(s)."
    assert expected, "the tiny model should tag something in this post"
    assert _highlighted(page) == [(e["word"], e["entity_group"]) for e in expected]
    # leave-one-out table: one row for all images, one per left-out image, matching the pipeline
    table = page.locator("#leave-one-out-table").inner_text()
    assert "all images" in table
    for i, left_out in enumerate(photos):
        assert f"without image {i + 1} ({Path(left_out).name})" in table
        rest = pipe({"text": TEXT, "images": photos[:i] + photos[i + 1 :]})
        assert "; ".join(f"{e['word']} ({e['entity_group']})" for e in rest) in table
    page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def test_demo_title_shows_model_dataset_and_card_scores(app, page):
    _, url = app
    page.goto(url)
    title = page.locator("#title").inner_text()
    assert "TPM-MI on cmner_sample: test F1 61.54 (P 66.67, R 57.14)" in title, title
    assert "final" not in title.split(":")[0]  # not the folder name
    assert page.title() == title.splitlines()[0].lstrip("# ").strip()


def test_demo_sample_posts_are_one_click_examples(app, page):
    from mner_hf.demo import sample_examples

    pipe, url = app
    rows = sample_examples(pipe.max_images)
    assert len(rows) == 6 and sorted(len(imgs) for _, imgs, _ in rows) == [1, 1, 1, 3, 3, 3]
    page.goto(url)
    page.get_by_text(rows[0][2], exact=False).first.click()
    text, images, _ = rows[0]
    page.wait_for_function("t => document.querySelector('#post-text textarea').value === t", arg=text,
                           timeout=30_000)
    _wait_for_thumbnails(page, [Path(p).name for p in images])
    page.locator("#status").evaluate("el => el.setAttribute('data-before', el.innerText)")
    page.locator("#submit").click()
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('image(s)')", timeout=60_000)
    expected = pipe({"text": text, "images": images})
    assert page.locator("#status").inner_text().strip() == f"{len(expected)} entities found using {len(images)} image(s)."
    assert _highlighted(page) == [(e["word"], e["entity_group"]) for e in expected]


def test_demo_bad_input_shows_messages_and_survives(app, page, tmp_path):
    _, url = app
    note = tmp_path / "notes.txt"
    note.write_text("not a picture")
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(SAMPLE_IMAGES[0].read_bytes()[:300])
    cases = [
        ("   ", [], "empty text"),
        ("word " * 200, [], "text too long"),
        ("hello there", [str(note)], "image 1 (notes.txt): not a readable image"),
        ("hello there", [str(corrupt)], "image 1 (broken.jpg): not a readable image"),
        ("hello there", [str(p) for p in SAMPLE_IMAGES[:4]], "4 images uploaded, but this model takes at most 3"),
    ]
    for text, files, message in cases:
        status = _submit(page, url, text, files)
        assert status.startswith("Error:") and message in status, (message, status)
        assert "Traceback" not in page.content()
    # the server is still up and answers a good request
    assert _submit(page, url, TEXT, []).endswith("using 0 image(s).")
    page.screenshot(path=str(tmp_path / "after_errors.png"), full_page=True)
