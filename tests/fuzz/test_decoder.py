"""Hostile bytes into the decoder: only ``ImageError`` with a 4xx comes out, and any success is a sane tensor.

Deterministic (``derandomize``), bounded in examples and time; the cases the fuzzers found are kept below
as plain examples.
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from gateway.imagenet.decode import CROP, ImageError, decode_image, image_to_tensor

from tests.support.data import IMAGES
from tests.support.images import encode, png

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns on corrupt EXIF

LIMIT = 40_000_000
FUZZ = settings(max_examples=400, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@lru_cache(maxsize=1)
def seeds() -> tuple[bytes, ...]:
    """Small real images in each accepted format (small so each decode is cheap), and a few odd ones."""
    photo = Image.open(IMAGES[0]).convert("RGB").resize((48, 40))
    return (
        IMAGES[1].read_bytes(),
        encode(photo, "JPEG", quality=80),
        encode(photo, "JPEG", quality=80, progressive=True),
        encode(photo, "PNG"),
        encode(photo.convert("P"), "PNG"),
        encode(photo, "WEBP"),
        encode(photo, "WEBP", lossless=True),
        encode(photo.convert("CMYK"), "JPEG"),
        png(4, 4, 16, 2, b"".join(b"\x00" + b"\xff\xff\x00\x00\x00\x00" * 4 for _ in range(4))),
    )


def check(data: bytes) -> None:
    try:
        tensor = image_to_tensor(data, LIMIT)
    except ImageError as exc:
        assert 400 <= exc.status < 500, exc.status
        assert str(exc)
        return
    assert tensor.shape == (3, CROP, CROP) and tensor.dtype == np.float32
    assert np.isfinite(tensor).all()


MAGIC = st.sampled_from([b"", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb", b"\x89PNG\r\n\x1a\n",
                         b"RIFF\x00\x00\x00\x00WEBPVP8 ",
                         b"RIFF\x00\x00\x00\x00WEBPVP8L", b"GIF89a", b"BM", b"II*\x00", b"\x00\x00\x01\x00"])


@FUZZ
@given(magic=MAGIC, tail=st.binary(max_size=4096))
def test_arbitrary_bytes(magic, tail):
    check(magic + tail)


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete", "duplicate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0xD8, 0xD9, 0xC0]))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 256))]
        elif kind == "duplicate":
            data[at:at] = data[at:at + draw(st.integers(1, 512))]
    return bytes(data)


@FUZZ
@given(data=mutated())
def test_mutated_real_images(data):
    check(data)


@FUZZ
@given(width=st.integers(0, 2**31 - 1), height=st.integers(0, 2**31 - 1),
       depth_and_type=st.sampled_from([(1, 0), (8, 0), (16, 0), (8, 2), (16, 2), (8, 3), (8, 4), (16, 4), (8, 6),
                                       (16, 6),
                                       (3, 2), (16, 3)]),
       raw=st.binary(max_size=256))
def test_png_headers_with_any_dimensions(width, height, depth_and_type, raw):
    check(png(width, height, *depth_and_type, raw))


# --- cases the fuzzers and probes found, kept as examples -------------------------------------------------


def test_extreme_aspect_ratio_is_cheap():
    """Found: a 1x40000 PNG (a few hundred bytes) resized to 256x10,240,000 first: 36 s and 10 GB of RSS."""
    strip = encode(Image.new("RGB", (1, 40_000), (200, 10, 10)), "PNG")
    started = time.perf_counter()
    tensor = image_to_tensor(strip, LIMIT)
    assert time.perf_counter() - started < 2.0
    assert tensor.shape == (3, CROP, CROP) and np.isfinite(tensor).all()


def test_strip_at_the_pixel_limit_does_not_overflow():
    """Found: 2x20,000,000 pixels (within the limit) raised OverflowError in Image.resize: a 500.

    Any strip whose resized long side passes 2**31 did; 1x9,000,000 is the cheap one to test."""
    strip = encode(Image.new("L", (1, 9_000_000)), "PNG")
    assert image_to_tensor(strip, LIMIT).shape == (3, CROP, CROP)


@pytest.mark.parametrize("data, status", [
    (png(2**31 - 1, 2**31 - 1, 8, 2), 413),   # huge dimensions in the header, no pixels
    (png(100_000, 100_000, 1, 0), 413),          # 10 Gpx bomb of 1-bit pixels
    (png(0, 0, 8, 2), 415),                      # zero dimensions
    (png(0, 5, 8, 2), 415),
])
def test_dimension_headers(data, status):
    with pytest.raises(ImageError) as caught:
        decode_image(data, LIMIT)
    assert caught.value.status == status


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_truncated_png_and_webp(fmt):
    photo = Image.open(IMAGES[0]).convert("RGB").resize((120, 90))
    data = encode(photo, fmt)
    for end in (8, 30, len(data) // 2, len(data) - 10):
        check(data[:end])
    for end in (8, 30, len(data) // 2):
        with pytest.raises(ImageError):
            decode_image(data[:end], LIMIT)


def test_png_with_a_bad_crc_is_refused():
    data = bytearray(encode(Image.new("RGB", (16, 16), (1, 2, 3)), "PNG"))
    idat = data.find(b"IDAT")
    data[idat + 6] ^= 0xFF
    with pytest.raises(ImageError) as caught:
        decode_image(bytes(data), LIMIT)
    assert caught.value.status == 422


@pytest.mark.parametrize("bit_depth, colour_type, pixel", [
    (16, 2, b"\xff\xff\x00\x00\x80\x00"),           # 16-bit RGB
    (16, 6, b"\xff\xff\x00\x00\x00\x00\x80\x00"),   # 16-bit RGBA
    (16, 4, b"\xff\xff\x80\x00"),                   # 16-bit grey + alpha
    (16, 0, b"\x00\x00"),                           # 16-bit grey, all black (peak 0)
])
def test_16_bit_pngs(bit_depth, colour_type, pixel):
    data = png(4, 4, bit_depth, colour_type, b"".join(b"\x00" + pixel * 4 for _ in range(4)))
    check(data)
    assert decode_image(data, LIMIT).mode == "RGB"


def test_animated_png_uses_the_first_frame():
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((0, 255, 0), (255, 0, 0))]
    data = encode(frames[0], "PNG", save_all=True, append_images=frames[1:])
    assert decode_image(data, LIMIT).getpixel((3, 3)) == (0, 255, 0)


def test_animated_lossy_webp_and_gif():
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((0, 255, 0), (255, 0, 0))]
    check(encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]))
    with pytest.raises(ImageError) as caught:
        decode_image(encode(frames[0], "GIF", save_all=True, append_images=frames[1:]), LIMIT)
    assert caught.value.status == 415


def test_cmyk_jpeg_and_other_modes():
    for image, fmt in ((Image.new("CMYK", (30, 20), (0, 0, 0, 255)), "JPEG"), (Image.new("1", (30, 20)), "PNG"),
                       (Image.new("LA", (30, 20)), "PNG"), (Image.new("RGBA", (30, 20)), "WEBP")):
        check(encode(image, fmt))
