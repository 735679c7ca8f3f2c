"""Open post images robustly: RGB conversion, EXIF orientation, bomb limit, error policy, stitching.

Everything here works on PIL images; tensors are produced later by the image processor
(:class:`~.processing_mner.MNERProcessor`). This module travels with checkpoints
(``trust_remote_code``), so it imports only the standard library, numpy and PIL.

Error policy (``on_error``), applied per image by :func:`load_images` and the processor:

* ``"error"``: raise :class:`ImageLoadError` naming the source;
* ``"skip"``: drop that image and keep the post (its other images keep their order);
* ``"placeholder"``: keep an image *slot* for it (zeros after normalisation = the mean image)
  which is MASKED OUT (``image_mask == 0``), so the model never attends to it.

Every skipped / placeholder image is counted in an :class:`ImageLoadReport` returned to
the caller, with the messages, so nothing is dropped silently.

Image URLs are fetched by :func:`download_url`, which bounds the WHOLE download (connect, headers,
body: ``timeout`` seconds, default :data:`DEFAULT_URL_TIMEOUT`) and its size (``max_bytes``,
default :data:`DEFAULT_MAX_DOWNLOAD_BYTES`), so a server that trickles bytes or streams without
end cannot hold the caller.
"""

from __future__ import annotations

import http.client
import io
import math
import os
import socket
import threading
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_DOWNLOAD_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_URL_TIMEOUT",
    "ImageErrorPolicy",
    "ImageLoadError",
    "ImageLoadReport",
    "ImageSource",
    "describe_source",
    "download_url",
    "load_image",
    "load_images",
    "stitch_images",
    "to_rgb",
]

#: Default pixel-count limit (width * height) against decompression bombs: 64 megapixels,
#: far above any social-media photo (Twitter serves at most 4096 x 4096 = 16.8 MP).
DEFAULT_MAX_PIXELS = 64_000_000

ImageErrorPolicy = Literal["error", "skip", "placeholder"]
_POLICIES = ("error", "skip", "placeholder")

#: What :func:`load_image` accepts: a path, raw bytes, a PIL image, a HWC uint8 numpy array, or the
#: ``{"bytes": ..., "path": ...}`` dict that ``datasets.Image(decode=False)`` yields.
ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray, dict]


class ImageLoadError(ValueError):
    """An image could not be opened or decoded; ``source`` names it (path or a short description)."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


@dataclass
class ImageLoadReport:
    """Counts of what the error policy did (filled by :func:`load_images` and the processor).

    Attributes:
        loaded: images opened successfully.
        skipped: images dropped under ``on_error="skip"``.
        placeholders: masked placeholder slots under ``on_error="placeholder"``.
        dropped_too_many: images beyond ``max_images`` dropped under ``too_many_images="truncate"``.
        messages: one ``"<source>: <reason>"`` line per failed image.
    """

    loaded: int = 0
    skipped: int = 0
    placeholders: int = 0
    dropped_too_many: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        """Number of images that failed to load (skipped + placeholders)."""
        return self.skipped + self.placeholders

    def update(self, other: "ImageLoadReport") -> None:
        """Add the counts and messages of ``other`` to this report in place."""
        self.loaded += other.loaded
        self.skipped += other.skipped
        self.placeholders += other.placeholders
        self.dropped_too_many += other.dropped_too_many
        self.messages.extend(other.messages)


def describe_source(src: Any) -> str:
    """A short human-readable name for an image source, used in error messages."""
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    if isinstance(src, dict):
        path = src.get("path")
        if src.get("bytes") is not None:
            return f"<{len(src['bytes'])} bytes of {path!r}>" if path else f"<{len(src['bytes'])} bytes>"
        return str(path) if path else "<empty image dict>"
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes>"
    if isinstance(src, Image.Image):
        name = getattr(src, "filename", "") or ""
        return name if name else f"<PIL {src.mode} image {src.size[0]}x{src.size[1]}>"
    if isinstance(src, np.ndarray):
        return f"<array {tuple(src.shape)} {src.dtype}>"
    return f"<{type(src).__name__}>"


def _scale_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Map a single-channel integer / float image to 0..255 (modes I, I;16*, F)."""
    arr = arr.astype(np.float64)
    if mode.startswith("I;16"):
        arr = arr / 65535.0 * 255.0
    else:
        lo, hi = float(np.nanmin(arr)) if arr.size else 0.0, float(np.nanmax(arr)) if arr.size else 0.0
        if mode == "F" and lo >= 0.0 and hi <= 1.0:
            arr = arr * 255.0  # float image in [0, 1]
        elif lo >= 0.0 and hi <= 255.0:
            pass  # already 8-bit range
        elif lo >= 0.0 and hi <= 65535.0 and mode != "F":
            arr = arr / 65535.0 * 255.0  # 16-bit data stored as mode I
        else:
            arr = (arr - lo) / max(hi - lo, 1e-12) * 255.0  # arbitrary range: min-max
    return np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any PIL mode to RGB.

    Transparent modes (RGBA, LA, PA, P or L/RGB with a ``transparency`` entry) are alpha-composited
    on ``background`` (white by default); palette, grayscale, 1-bit, CMYK and YCbCr go through
    PIL's conversion; 16/32-bit integer and float images are rescaled to 0..255 first.
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, background + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if mode in ("I", "F") or mode.startswith("I;16"):
        gray = _scale_to_uint8(np.asarray(image), mode)
        return Image.fromarray(gray, mode="L").convert("RGB")
    return image.convert("RGB")


def _open(src: ImageSource, name: str) -> Image.Image:
    if isinstance(src, Image.Image):
        return src
    if isinstance(src, np.ndarray):
        arr = src
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
            raise ImageLoadError(name, "array must be HxW, HxWx3 or HxWx4")
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.min() >= 0 and arr.max() <= 1:
                arr = arr * 255.0
            arr = np.clip(arr, 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr)
    if isinstance(src, dict):
        if src.get("bytes") is not None:
            return Image.open(io.BytesIO(bytes(src["bytes"])))
        if src.get("path"):
            return Image.open(src["path"])
        raise ImageLoadError(name, "image dict has neither 'bytes' nor 'path'")
    if isinstance(src, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(bytes(src)))
    if isinstance(src, (str, os.PathLike)):
        return Image.open(src)
    raise ImageLoadError(name, f"unsupported image source type {type(src).__name__}")


def load_image(
    src: ImageSource,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Open ``src`` as a fully decoded RGB PIL image with its EXIF orientation applied.

    Args:
        src: a path, bytes, a PIL image, a HxW[xC] numpy array or a ``{"bytes", "path"}`` dict
            (bytes win over the path, as in ``datasets.Image``).
        max_pixels: refuse images with more than this many pixels (width * height) before
            decoding them (decompression-bomb guard); ``None`` disables the check.
        background: colour that transparent pixels are composited on.
        draft_size: (width, height) the caller will resize to at most: a JPEG is then decoded at
            the smallest of libjpeg's 1/1, 1/2, 1/4, 1/8 scales that is still at least this large in
            both dimensions (PIL ``Image.draft``: DCT-domain downscaling, several times faster for
            photos much larger than the model's input). ``None``: full size.

    Returns:
        An RGB ``PIL.Image.Image`` (a new object; the input is never modified).

    Raises:
        ImageLoadError: missing file, unknown format, truncated or corrupt data, too many pixels,
            unsupported source; the message starts with the source's name.
    """
    name = describe_source(src)
    try:
        with warnings.catch_warnings():
            # Our own limit below replaces PIL's global one (a warning at 89 MP, an error at 179 MP).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = _open(src, name)
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageLoadError(
                    name,
                    f"image has {width}x{height} = {width * height} pixels, more than the limit of "
                    f"{max_pixels} (possible decompression bomb; raise max_pixels to allow it)",
                )
            if draft_size is not None and image.format == "JPEG" and not isinstance(src, Image.Image):
                image.draft(None, (int(draft_size[0]), int(draft_size[1])))
            image.load()  # decode now so truncated / corrupt data fails here, not in a worker
            image = ImageOps.exif_transpose(image) or image
            rgb = to_rgb(image, background)
            if rgb is image and isinstance(src, Image.Image):
                rgb = image.copy()
            return rgb
    except ImageLoadError:
        raise
    except FileNotFoundError as exc:
        raise ImageLoadError(name, f"file not found ({exc.strerror or exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(name, "not a recognised image format (corrupt or not an image)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(name, f"decompression bomb refused by PIL: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(name, f"cannot decode image (truncated or corrupt): {exc}") from exc


def load_images(
    sources: Sequence[ImageSource],
    *,
    on_error: ImageErrorPolicy = "error",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    report: ImageLoadReport | None = None,
    draft_size: tuple[int, int] | None = None,
) -> list[Image.Image | None]:
    """Load the images of one post in order, applying the error policy (``draft_size``: see
    :func:`load_image`).

    Returns:
        One entry per kept image, in order: an RGB image, or ``None`` for a placeholder slot
        (``on_error="placeholder"``). Under ``"skip"`` failed images are left out. ``report``
        (when given) is updated with the counts and messages.
    """
    if on_error not in _POLICIES:
        raise ValueError(f"on_error must be one of {_POLICIES}, got {on_error!r}")
    report = report if report is not None else ImageLoadReport()
    out: list[Image.Image | None] = []
    for src in sources:
        try:
            out.append(load_image(src, max_pixels=max_pixels, draft_size=draft_size))
            report.loaded += 1
        except ImageLoadError as exc:
            if on_error == "error":
                raise
            report.messages.append(str(exc))
            if on_error == "skip":
                report.skipped += 1
            else:
                report.placeholders += 1
                out.append(None)
    return out


def stitch_images(
    images: Sequence[Image.Image],
    *,
    tile_size: tuple[int, int] = (224, 224),
    columns: int | None = None,
    background: tuple[int, int, int] = (0, 0, 0),
) -> Image.Image:
    """Tile all images of a post into one grid image (the paper's "-MI" baseline construction).

    The grid has ``columns = ceil(sqrt(n))`` columns (unless given) and ``ceil(n / columns)``
    rows, filled row by row in post order. Each image is resized to fit its ``tile_size``
    (width, height) cell keeping its aspect ratio and centred on ``background``. A single image
    is returned unchanged (as RGB), so ``stitch`` and ``first`` agree on one-image posts.

    Returns:
        An RGB image of size (columns * tile_w, rows * tile_h).
    """
    if len(images) == 0:
        raise ValueError("stitch_images needs at least one image")
    if len(images) == 1:
        return to_rgb(images[0]).copy()
    n = len(images)
    cols = columns if columns is not None else math.ceil(math.sqrt(n))
    if cols < 1:
        raise ValueError(f"columns must be >= 1, got {cols}")
    rows = math.ceil(n / cols)
    tile_w, tile_h = tile_size
    canvas = Image.new("RGB", (cols * tile_w, rows * tile_h), background)
    for i, img in enumerate(images):
        img = to_rgb(img)
        scale = min(tile_w / img.width, tile_h / img.height)
        new_w, new_h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
        tile = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
        r, c = divmod(i, cols)
        canvas.paste(tile, (c * tile_w + (tile_w - new_w) // 2, r * tile_h + (tile_h - new_h) // 2))
    return canvas


# ---------------------------------------------------------------------------- URL downloads
#: Seconds allowed for one image URL, from connecting to the last byte of the body.
DEFAULT_URL_TIMEOUT = 10.0
#: Largest image body accepted from a URL (bytes): 32 MiB, far above any social-media photo.
DEFAULT_MAX_DOWNLOAD_BYTES = 32 * 1024 * 1024
_CHUNK = 64 * 1024


class _Deadline:
    """Wall-clock limit of one download: sockets registered here are shut down when it expires.

    A socket timeout bounds each ``recv`` only; shutting the socket down from a timer thread
    wakes a blocked ``recv`` (it returns end-of-file), whatever phase the download is in.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return max(self.end - time.monotonic(), 0.0)

    def create_connection(self, address: Any, timeout: Any = None, source_address: Any = None, **kwargs: Any):
        """``socket.create_connection`` whose socket is watched (the raw socket, before any TLS)."""
        if self.remaining() <= 0:
            raise TimeoutError("no time left to connect")
        sock = socket.create_connection(address, self.remaining(), source_address, **kwargs)
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                self._shutdown(sock)
        return sock

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        try:  # the plain socket's shutdown (also for an SSLSocket): wakes a blocked reader
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._shutdown(sock)


def _watched_opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """An opener for http(s) only (redirects included) whose connections ``deadline`` watches."""

    class _Watched:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = deadline.create_connection

    class _HTTPConnection(_Watched, http.client.HTTPConnection):
        pass

    class _HTTPSConnection(_Watched, http.client.HTTPSConnection):
        pass

    class _HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(_HTTPConnection, req)

    class _HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(_HTTPSConnection, req, context=self._context)

    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),  # ftp:, file: ... (also after a redirect) are refused
        _HTTPHandler(),
        _HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def download_url(
    url: str, *, timeout: float = DEFAULT_URL_TIMEOUT, max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES
) -> bytes:
    """Download an http(s) ``url`` within ``timeout`` seconds IN TOTAL and at most ``max_bytes``.

    ``timeout`` covers connecting, redirects, the response headers and the whole body (a timer
    shuts the connection down when it runs out, so a server trickling one byte at a time cannot
    hold the caller); a body announced (``Content-Length``) or received beyond ``max_bytes`` is
    refused as soon as that is known, without reading the rest.

    Raises:
        ValueError: ``timeout`` or ``max_bytes`` not positive, or a URL that is not http(s).
        ImageLoadError: (``source`` = the URL) unreachable host, HTTP error status, timeout, too
            large a body, a connection closed early.
    """
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    if not url[:8].lower().startswith(("http://", "https://")):
        raise ValueError(f"only http(s) URLs can be downloaded, got {url[:50]!r}")
    deadline = _Deadline(float(timeout))
    timer = threading.Timer(float(timeout), deadline.expire)
    timer.daemon = True
    too_slow = f"the download took longer than the limit of {timeout:g} s (timeout)"
    request = urllib.request.Request(url, headers={"User-Agent": "mner_hf-pipeline"})
    timer.start()
    try:
        with _watched_opener(deadline).open(request, timeout=float(timeout)) as response:
            length = response.headers.get("Content-Length", "")
            if length.strip().isdigit() and int(length) > max_bytes:
                raise ImageLoadError(url, f"the server announces {int(length)} bytes, more than the limit "
                                          f"of {max_bytes} bytes (max_bytes)")
            chunks, total = [], 0
            while True:
                chunk = response.read1(_CHUNK)  # returns after one socket read
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise ImageLoadError(url, f"the server sent more than the limit of {max_bytes} bytes (max_bytes)")
                chunks.append(chunk)
                if deadline.expired:
                    break
    except ImageLoadError:
        raise
    except urllib.error.HTTPError as exc:
        raise ImageLoadError(url, f"HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        timed_out = isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError)
        if deadline.expired or timed_out:
            raise ImageLoadError(url, too_slow) from exc
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else f"{type(exc).__name__}: {exc}"
        raise ImageLoadError(url, str(reason)) from exc
    finally:
        timer.cancel()
    if deadline.expired:  # the shutdown looks like end-of-file: the body is incomplete
        raise ImageLoadError(url, too_slow)
    return b"".join(chunks)
