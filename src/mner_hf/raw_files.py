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
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["DEFAULT_MAX_PIXELS", "CMNER_IMAGE_SUFFIXES", "OTHER_IMAGE_SUFFIXES", "check_image",
           "index_images_by_prefix", "iter_raw_lines"]

CMNER_IMAGE_SUFFIXES = (".jpg", ".jpeg")
#: other image files seen next to CMNER images (not used, counted in ``images_other_format``)
OTHER_IMAGE_SUFFIXES = (".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".jfif", ".heic", ".avif")
#: default pixel limit per image (same value as ``models.image_loading.DEFAULT_MAX_PIXELS``)
DEFAULT_MAX_PIXELS = 64_000_000
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

    The same checks as the processor's loader (``models.image_loading.load_image``): the file opens
    as an image, has at most ``max_pixels`` pixels (checked from the header, before decoding), and
    decodes completely (a JPEG is decoded at 1/8 scale, which still reads every byte, so a truncated
    file fails here).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if max_pixels is not None and width * height > max_pixels:
                    return (
                        f"image has {width}x{height} = {width * height} pixels, more than the limit of {max_pixels} "
                        "(possible decompression bomb)"
                    )
                if image.format == "JPEG":
                    image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                image.load()
    except UnidentifiedImageError:
        return "not a recognised image format (empty, corrupt or not an image)"
    except Image.DecompressionBombError as exc:
        return f"decompression bomb refused by PIL: {exc}"
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        return f"cannot decode image (truncated or corrupt): {exc}"
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
