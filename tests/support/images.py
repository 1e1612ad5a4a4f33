"""Images written to order: any format Pillow writes, or a PNG whose header says anything."""

from __future__ import annotations

import io

from PIL import Image

from .data import IMAGES


def encode(image, fmt: str, **options) -> bytes:
    """A PIL image saved in ``fmt`` (JPEG, PNG, WEBP, GIF, ...), as bytes."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png(width: int, height: int, bit_depth: int, colour_type: int, raw: bytes = b"") -> bytes:
    """A PNG written by hand, so its header can say anything."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


JPEG = {"content-type": "image/jpeg"}


def gif() -> bytes:
    """A small GIF: an image format the gateway does not take."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "GIF")
    return buffer.getvalue()


#: Uploads that are not images the gateway takes: (request arguments, status, error code).
BAD_IMAGES = [
    ({"content": b"", "headers": JPEG}, 400, "empty_body"),
    ({"content": b"hello", "headers": JPEG}, 415, "unsupported_image"),
    ({"content": gif(), "headers": {"content-type": "image/gif"}}, 415, "unsupported_image"),
    ({"content": b"{}", "headers": {"content-type": "application/json"}}, 415, "unsupported_media_type"),
    ({"content": IMAGES[0].read_bytes()[:5000], "headers": JPEG}, 422, "invalid_image"),
    ({"files": {"note": (None, "no file here")}}, 400, "missing_file"),
]
