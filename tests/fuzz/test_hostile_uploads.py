"""Hostile uploads over real HTTP to a real gateway process: each gets its specific 4xx JSON answer or a
200, quickly, and the gateway keeps serving. Cases not already in tests/rest/test_errors.py."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.support.data import IMAGES
from tests.support.images import encode, png

pytestmark = pytest.mark.integration


FRAMES = [Image.new("RGB", (32, 32), colour) for colour in ((0, 200, 0), (200, 0, 0))]
SIXTEEN_BIT = Image.fromarray(np.linspace(0, 65535, 64 * 64, dtype=np.uint16).reshape(64, 64))


@pytest.mark.parametrize("content, content_type, status, code", [
    (encode(FRAMES[0], "GIF", save_all=True, append_images=FRAMES[1:]), "image/gif", 415, "unsupported_image"),
    (encode(FRAMES[0], "WEBP", save_all=True, append_images=FRAMES[1:]), "image/webp", 200, None),
    (encode(FRAMES[0], "PNG", save_all=True, append_images=FRAMES[1:]), "image/png", 200, None),
    (encode(Image.new("CMYK", (64, 48), (0, 255, 0, 0)), "JPEG"), "image/jpeg", 200, None),
    (encode(SIXTEEN_BIT, "PNG"), "image/png", 200, None),
    (encode(Image.new("RGB", (1, 40_000)), "PNG"), "image/png", 200, None),     # was 36 s and 10 GB
    (png(2**31 - 1, 2**31 - 1, 8, 2), "image/png", 413, "image_too_large"),  # huge dimensions
    (encode(Image.new("1", (8000, 6000)), "PNG"), "image/png", 413, "image_too_large"),  # bomb
    (png(0, 0, 8, 2), "image/png", 415, "unsupported_image"),
    (IMAGES[0].read_bytes()[:200], "image/jpeg", 422, "invalid_image"),  # truncated in the header
    (IMAGES[0].read_bytes(), "text/plain", 415, "unsupported_media_type"),
    (IMAGES[0].read_bytes(), "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (b"", "application/octet-stream", 400, "empty_body"),
], ids=["animated-gif", "animated-webp", "apng", "cmyk", "png-16bit", "1x40000-strip", "huge-dimensions",
        "decompression-bomb", "zero-dimensions", "truncated-header", "text-plain", "form-urlencoded", "zero-bytes"])
def test_hostile_images(gateway_url, content, content_type, status, code):
    started = time.perf_counter()
    response = httpx.post(f"{gateway_url}/v1/classify", content=content, headers={"content-type": content_type},
                          timeout=30)
    assert time.perf_counter() - started < 10
    assert response.status_code == status, response.text[:300]
    if code is not None:
        assert response.json()["error"] == code and response.json()["detail"]
    else:
        assert response.json()["predictions"]


def test_zero_byte_multipart_file(gateway_url):
    response = httpx.post(f"{gateway_url}/v1/classify", files={"file": ("empty.jpg", b"", "image/jpeg")}, timeout=30)
    assert response.status_code == 400 and response.json()["error"] == "empty_body"


@pytest.mark.parametrize("route, kwargs", [
    ("/v1/classify", {"files": {"file": ("big.jpg", b"\xff" * (11 * 1024 * 1024), "image/jpeg")}}),
    ("/v1/classify", {"content": b"\xff" * (11 * 1024 * 1024), "headers": {"content-type": "image/jpeg"}}),
    ("/v2/models/auto/infer", {"content": b"[" * (11 * 1024 * 1024), "headers": {"content-type": "application/json"}}),
], ids=["multipart", "raw", "tensor-route"])
def test_oversized_uploads(gateway_url, route, kwargs):
    response = httpx.post(f"{gateway_url}{route}", timeout=30, **kwargs)
    code = response.json()["code" if route.startswith("/v2/") else "error"]  # the protocol's shape under /v2
    assert response.status_code == 413 and code == "payload_too_large"


def test_deeply_nested_json_on_the_tensor_route(gateway_url):
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}"):
        response = httpx.post(f"{gateway_url}/v2/models/auto/infer", content=body,
                              headers={"content-type": "application/json"}, timeout=30)
        assert response.status_code == 400 and set(response.json()) == {"error", "code"}


def test_still_serving_after_all_that(gateway_url):
    response = httpx.post(f"{gateway_url}/v1/classify", content=IMAGES[0].read_bytes(),
                          headers={"content-type": "image/jpeg"}, timeout=30)
    assert response.status_code == 200 and httpx.get(f"{gateway_url}/readyz", timeout=10).status_code == 200
