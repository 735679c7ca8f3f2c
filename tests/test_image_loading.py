"""Image loading: mode conversion, EXIF orientation, corrupt data, bomb limit, policies, stitching,
and URL downloads bounded in total time and bytes (against real misbehaving local servers)."""

from __future__ import annotations

import io
import socket
import time

import numpy as np
import pytest
from PIL import Image

from http_servers import serve
from mner_hf.models.image_loading import (
    ImageLoadError,
    ImageLoadReport,
    download_url,
    load_image,
    load_images,
    stitch_images,
)


def _png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_rgba_composited_on_white():
    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[..., 0] = 200  # red channel
    arr[:2, :, 3] = 255  # top half opaque, bottom half fully transparent
    arr[2:, :, 3] = 0
    out = load_image(_png_bytes(Image.fromarray(arr, "RGBA")))
    px = np.asarray(out)
    assert out.mode == "RGB"
    assert tuple(px[0, 0]) == (200, 0, 0)
    assert tuple(px[3, 3]) == (255, 255, 255)


def test_half_transparent_rgba_blends():
    arr = np.zeros((2, 2, 4), dtype=np.uint8)
    arr[..., 3] = 128  # black at ~50 % alpha over white -> ~127
    px = np.asarray(load_image(Image.fromarray(arr, "RGBA")))
    assert np.all(np.abs(px.astype(int) - 127) <= 1)


def test_palette_with_transparency():
    pal = Image.new("P", (3, 1))
    pal.putpalette([10, 20, 30, 40, 50, 60] + [0] * (256 * 3 - 6))
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    pal.putpixel((2, 0), 1)
    data = _png_bytes(pal, transparency=0)  # index 0 is transparent
    px = np.asarray(load_image(data))
    assert tuple(px[0, 0]) == (255, 255, 255)
    assert tuple(px[0, 1]) == (40, 50, 60)


def test_palette_without_transparency():
    pal = Image.new("P", (1, 1))
    pal.putpalette([7, 8, 9] + [0] * 765)
    px = np.asarray(load_image(_png_bytes(pal)))
    assert tuple(px[0, 0]) == (7, 8, 9)


def test_grayscale_modes():
    gray = Image.fromarray(np.array([[0, 100, 255]], dtype=np.uint8), "L")
    px = np.asarray(load_image(_png_bytes(gray)))
    assert px.shape == (1, 3, 3) and list(px[0, :, 1]) == [0, 100, 255]
    la = Image.fromarray(np.array([[[50, 255], [50, 0]]], dtype=np.uint8), "LA")
    px = np.asarray(load_image(la))
    assert tuple(px[0, 0]) == (50, 50, 50) and tuple(px[0, 1]) == (255, 255, 255)
    i16 = Image.fromarray(np.array([[0, 65535]], dtype=np.uint16))  # mode I;16
    px = np.asarray(load_image(_png_bytes(i16)))
    assert tuple(px[0, 0]) == (0, 0, 0) and tuple(px[0, 1]) == (255, 255, 255)
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    px = np.asarray(load_image(f))
    assert list(px[0, :, 0]) == [0, 128, 255]


def test_cmyk_jpeg_to_rgb():
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    out = load_image(_png_bytes(cmyk, "JPEG", quality=100))
    px = np.asarray(out).astype(int)
    assert out.mode == "RGB"
    assert px[..., 0].mean() > 240 and px[..., 1].mean() < 15 and px[..., 2].mean() < 15


def test_exif_orientation_applied():
    # 6 wide x 2 high, left column red; orientation 6 = "rotate 90 CW to display"
    arr = np.zeros((2, 6, 3), dtype=np.uint8)
    arr[:, 0] = (255, 0, 0)
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _png_bytes(img, "PNG", exif=exif.tobytes())
    out = load_image(data)
    assert out.size == (2, 6)  # width and height swapped
    px = np.asarray(out)
    # rotating 90 degrees clockwise moves the left column to the top row
    assert np.all(px[0, :, 0] == 255) and np.all(px[1:, :, 0] == 0)


def test_path_and_dict_sources(tmp_path):
    img = Image.fromarray(np.full((3, 5, 3), 77, dtype=np.uint8))
    p = tmp_path / "a.png"
    img.save(p)
    for src in (p, str(p), {"bytes": None, "path": str(p)}, {"bytes": p.read_bytes(), "path": "x.png"}):
        out = load_image(src)
        assert out.size == (5, 3) and np.asarray(out)[0, 0, 0] == 77
    original = Image.fromarray(np.full((2, 2, 3), 5, dtype=np.uint8))
    copy = load_image(original)
    assert copy is not original and np.array_equal(np.asarray(copy), np.asarray(original))


def test_missing_corrupt_truncated_name_the_source(tmp_path):
    with pytest.raises(ImageLoadError, match="nope.jpg.*not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageLoadError, match=r"<12 bytes of 'bad.jpg'>.*not a recognised"):
        load_image({"bytes": b"not an image", "path": "bad.jpg"})
    good = _png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageLoadError, match=r"cut\.jpg.*truncated"):
        load_image(cut)


def test_decompression_bomb_limit():
    big = Image.new("L", (200, 100))
    data = _png_bytes(big)
    with pytest.raises(ImageLoadError, match="20000 pixels, more than the limit of 10000"):
        load_image(data, max_pixels=10_000)
    assert load_image(data, max_pixels=20_000).size == (200, 100)
    assert load_image(data, max_pixels=None).size == (200, 100)


def test_policies_count_and_keep_order():
    a = Image.new("RGB", (2, 2), (1, 1, 1))
    b = Image.new("RGB", (2, 2), (2, 2, 2))
    srcs = [a, b"garbage", b]
    with pytest.raises(ImageLoadError, match="<7 bytes>"):
        load_images(srcs, on_error="error")
    rep = ImageLoadReport()
    out = load_images(srcs, on_error="skip", report=rep)
    assert [np.asarray(x)[0, 0, 0] for x in out] == [1, 2]
    assert (rep.loaded, rep.skipped, rep.placeholders, rep.errors) == (2, 1, 0, 1)
    assert rep.messages and "<7 bytes>" in rep.messages[0]
    rep2 = ImageLoadReport()
    out = load_images(srcs, on_error="placeholder", report=rep2)
    assert out[1] is None and len(out) == 3 and rep2.placeholders == 1
    rep.update(rep2)
    assert rep.errors == 2 and rep.loaded == 4
    with pytest.raises(ValueError, match="on_error"):
        load_images(srcs, on_error="ignore")  # type: ignore[arg-type]


def test_stitch_grid_layout():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    imgs = [Image.new("RGB", (20, 10), c) for c in colours]  # 2:1 images
    grid = stitch_images(imgs, tile_size=(40, 40))
    assert grid.size == (3 * 40, 2 * 40)  # ceil(sqrt(5)) = 3 columns, 2 rows
    px = np.asarray(grid)
    for i, c in enumerate(colours):
        r, col = divmod(i, 3)
        assert tuple(px[r * 40 + 20, col * 40 + 20]) == c  # centre of each tile
        assert tuple(px[r * 40 + 2, col * 40 + 20]) == (0, 0, 0)  # letterbox above the 40x20 image
    assert tuple(px[60, 100]) == (0, 0, 0)  # the sixth cell is empty
    single = Image.new("L", (7, 3), 9)
    s = stitch_images([single])
    assert s.mode == "RGB" and s.size == (7, 3)
    with pytest.raises(ValueError):
        stitch_images([])


# ---------------------------------------------------------------------------- URL downloads
def test_download_returns_the_exact_body_plain_and_chunked():
    payload = bytes(range(256)) * 300  # 76.8 kB: several reads
    for mode in ("ok", "chunked"):
        with serve(mode, payload) as server:
            assert download_url(server.url, timeout=5, max_bytes=len(payload)) == payload
    with serve("ok", payload) as server:  # exactly at the limit passes, one byte less does not
        with pytest.raises(ImageLoadError, match=f"announces {len(payload)} bytes, more than the limit of {len(payload) - 1}"):
            download_url(server.url, timeout=5, max_bytes=len(payload) - 1)


@pytest.mark.parametrize("mode", ["trickle_body", "trickle_headers"])
def test_trickling_server_is_cut_at_the_total_timeout(mode):
    # one byte every 50 ms: every socket read succeeds long before a per-read timeout would fire
    with serve(mode, payload=b"\xff" * 5000, interval=0.05) as server:
        start = time.monotonic()
        with pytest.raises(ImageLoadError, match=r"took longer than the limit of 1 s \(timeout\)") as info:
            download_url(server.url, timeout=1.0)
        elapsed = time.monotonic() - start
    assert info.value.source == server.url
    assert 0.9 < elapsed < 3.0, elapsed


def test_endless_and_oversized_bodies_are_refused_early():
    with serve("endless") as server:
        start = time.monotonic()
        with pytest.raises(ImageLoadError, match="sent more than the limit of 100000 bytes"):
            download_url(server.url, timeout=10, max_bytes=100_000)
        assert time.monotonic() - start < 3.0
    with serve("huge_announced", max_seconds=5) as server:
        start = time.monotonic()
        with pytest.raises(ImageLoadError, match="announces 1000000000000 bytes"):
            download_url(server.url, timeout=10)  # default limit: 32 MiB
        assert time.monotonic() - start < 2.0  # refused on the header, not after the 5 s stall


def test_download_arguments_are_checked():
    for bad in (0, -1, float("nan"), "5", True):
        with pytest.raises(ValueError, match="timeout must be a positive number"):
            download_url("http://127.0.0.1:9/x.jpg", timeout=bad)
    with pytest.raises(ValueError, match="max_bytes must be a positive integer"):
        download_url("http://127.0.0.1:9/x.jpg", max_bytes=0)
    with pytest.raises(ValueError, match="only http"):
        download_url("file:///etc/passwd")


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_silent_server_is_cut_at_the_total_timeout(scheme):
    # accepts the connection, then never answers (the TLS handshake itself stalls for https)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"{scheme}://127.0.0.1:{listener.getsockname()[1]}/x.jpg"
        start = time.monotonic()
        with pytest.raises(ImageLoadError, match="took longer than the limit of 0.5 s"):
            download_url(url, timeout=0.5)
        assert time.monotonic() - start < 2.0
