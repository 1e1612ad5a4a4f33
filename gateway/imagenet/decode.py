"""Image decoding and ImageNet preprocessing, with errors that say what is wrong with the input.

Runs in a worker thread (Pillow releases the GIL while decoding), never on the event loop.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..arrays import Float32Array
from ..errors import EmptyImage, ImageError, ImageTooLarge, UnsupportedImage

__all__ = ["ImageError", "decode_image", "image_error_from", "image_error_message", "image_to_tensor", "preprocess"]

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_SCALE = (1.0 / (255.0 * IMAGENET_STD)).reshape(3, 1, 1)
_OFFSET = (-IMAGENET_MEAN / IMAGENET_STD).reshape(3, 1, 1)
RESIZE = 256
CROP = 224
DRAFT_SHORT_SIDE = 3 * RESIZE


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode an upload to RGB, refusing empty, truncated, oversized and unsupported images."""
    if not data:
        raise EmptyImage("the request body is empty; send an image (JPEG, PNG or WebP)")
    try:
        # No warnings.catch_warnings() here: this runs on worker threads, and that context manager swaps the
        # process's warning filters, so another thread's filters could be restored under it (a race CI hit).
        # Pillow refuses the worst bombs itself; our pixel limit refuses the rest before decoding.
        image = Image.open(io.BytesIO(data))
        image_format = image.format
        if image_format not in ALLOWED_FORMATS:
            raise UnsupportedImage(f"unsupported image format {image_format or 'unknown'}; send JPEG, PNG or WebP")
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLarge(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
        if image_format == "JPEG":
            # A large JPEG decodes at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling), several times cheaper,
            # while its short side stays 3x the resize target. At 2x, torchvision's top-5 changed on
            # some photos; at 3x it does not (tests/imagenet/test_decode.py).
            image.draft("RGB", (DRAFT_SHORT_SIDE, DRAFT_SHORT_SIDE))
        image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image refused as a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedImage("the body is not a readable image (JPEG, PNG or WebP expected)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"the image is corrupt or truncated: {exc}") from exc
    if getattr(image, "is_animated", False):
        image.seek(0)  # classify the first frame of an animation
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits rather than clipping.
        array = np.asarray(image, dtype=np.float32)
        peak = float(array.max()) or 1.0
        image = Image.fromarray(np.clip(array / peak * 255.0, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def preprocess(image: Image.Image) -> Float32Array:
    """torchvision's ImageNet eval transform: resize short side to 256, centre-crop 224, normalise.

    Returns a float32 CHW array.
    """
    return normalise(center_crop(image))


def center_crop(image: Image.Image) -> Image.Image:
    """torchvision's ``Resize(256)`` then ``CenterCrop(224)``, bilinear: the same sizes and offsets, so the
    same pixels up to rounding to the nearest 8-bit level here and there."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_long = int(RESIZE * long / short)  # torchvision truncates the long side; it does not round it
    resized_width, resized_height = (RESIZE, new_long) if width <= height else (new_long, RESIZE)
    left = round((resized_width - CROP) / 2.0)
    top = round((resized_height - CROP) / 2.0)  # and rounds the offsets (halves to even)
    # Resample only the crop, without materialising the resized image (a 1x40000 strip would resize to
    # 256x10,240,000, gigabytes): Pillow's filter still reads the source pixels around the box's edges.
    x_step, y_step = width / resized_width, height / resized_height
    box = (left * x_step, top * y_step, (left + CROP) * x_step, (top + CROP) * y_step)
    return image.resize((CROP, CROP), Image.Resampling.BILINEAR, box=box)


def normalise(image: Image.Image) -> Float32Array:
    """``(x / 255 - mean) / std`` per channel, as a float32 CHW array.

    One multiply-add per channel, on the planes PIL splits out as CHW: a third of the CPU of normalising
    the HWC array step by step and transposing it.
    """
    chw = np.stack([np.asarray(channel) for channel in image.split()]).astype(np.float32)
    chw *= _SCALE
    chw += _OFFSET
    return chw


#: What Triton's ``image`` model (``gateway/modelzoo/triton_image_model.py``) says about a bad upload: the code.
_IMAGE_ERRORS: dict[str, type[ImageError]] = {cls.code: cls for cls in (ImageError, EmptyImage, ImageTooLarge,
                                                                         UnsupportedImage)}


def image_error_message(exc: BaseException) -> str | None:
    """An upload's fault as text that survives a trip through Triton (``<code>: <message>``); None for others."""
    return f"{exc.code}: {exc}" if isinstance(exc, ImageError) else None


def image_error_from(message: str) -> ImageError | None:
    """The error ``image_error_message`` wrote into ``message`` (Triton may have wrapped it), or None."""
    for code, error in _IMAGE_ERRORS.items():
        at = message.find(f"{code}: ")
        if at >= 0:
            return error(message[at + len(code) + 2:])
    return None


def image_to_tensor(data: bytes, max_pixels: int) -> Float32Array:
    """Bytes of an upload to the model's input tensor, shape (3, 224, 224)."""
    return preprocess(decode_image(data, max_pixels))
