"""Files of a raw data release on disk: lines with any line ending, image files checked and indexed.

* :func:`iter_raw_lines`: the lines of a file as bytes; LF, CRLF and CR alone all end a line
  (a CR-only file is read line by line, never as one huge line).
* :func:`check_image`: the processor's loader checks (opens, pixel limit, decodes) on a file, at
  a fraction of the cost (JPEG decoded at 1/8 scale), so a dataset build can apply its image policy.
* :func:`index_images_by_prefix`: ``<prefix>_*.jpg`` of every prefix in one pass over a folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from .models.image_loading import DEFAULT_MAX_PIXELS, ImageLoadError, load_image

__all__ = ["DEFAULT_MAX_PIXELS", "CMNER_IMAGE_SUFFIXES", "OTHER_IMAGE_SUFFIXES", "check_image",
           "index_images_by_prefix", "iter_raw_lines"]

CMNER_IMAGE_SUFFIXES = (".jpg", ".jpeg")
#: other image files seen next to CMNER images (not used, counted in ``images_other_format``)
OTHER_IMAGE_SUFFIXES = (".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".jfif", ".heic", ".avif")
_NEWLINE = re.compile(rb"\r\n|\r|\n")


def iter_raw_lines(path: Path, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Lines of ``path`` as bytes without their ending; LF, CRLF and CR alone all end a line.

    Only these three end a line (not U+0085 / U+2028, which may occur inside tokens).
    """
    buf = b""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(chunk_size)
            buf += chunk
            if chunk and buf.endswith(b"\r"):
                continue  # a CR at the end of a chunk may be the first half of CRLF
            pos = 0
            for m in _NEWLINE.finditer(buf):
                yield buf[pos : m.start()]
                pos = m.end()
            buf = buf[pos:]
            if not chunk:
                break
    if buf:
        yield buf


def check_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> str | None:
    """Why the image file at ``path`` cannot be used (``None`` when it is fine).

    Runs the processor's own loader (:func:`mner_hf.models.image_loading.load_image`: opens, pixel
    limit from the header before decoding, full decode) with a JPEG decoded at 1/8 scale, which
    still reads every byte, so a truncated file fails here as it would in the processor.
    """
    try:
        load_image(path, max_pixels=max_pixels, draft_size=(1, 1))
    except ImageLoadError as error:
        return error.reason
    return None


def index_images_by_prefix(folder: Path, suffixes: Sequence[str] = CMNER_IMAGE_SUFFIXES) -> dict[str, list[str]]:
    """Map every possible ``<prefix>`` of files named ``<prefix>_<rest><suffix>`` to sorted paths.

    Equivalent to globbing ``<prefix>_*.jpg`` for each post, in one pass over the folder.
    """
    index: dict[str, list[str]] = {}
    for entry in os.scandir(folder):
        name = entry.name
        if not name.lower().endswith(tuple(suffixes)) or not entry.is_file():
            continue
        for i, ch in enumerate(name):
            if ch == "_":
                index.setdefault(name[:i], []).append(name)
    return {k: [str(folder / n) for n in sorted(v)] for k, v in index.items()}
