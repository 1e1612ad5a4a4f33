import io
import threading
import warnings

import numpy as np
import pytest
from PIL import Image

from gateway.imagenet.decode import CROP, ImageError, decode_image, image_to_tensor, preprocess

from tests.support.data import IMAGES
from tests.support.images import encode

LIMIT = 40_000_000


@pytest.fixture(scope="module")
def jpeg_bytes(shared_data) -> bytes:
    return (shared_data / "images" / "n02129604_tiger.JPEG").read_bytes()


def test_real_jpegs_become_normalised_chw_tensors(shared_data):
    for path in sorted((shared_data / "images").glob("*.JPEG")):
        tensor = image_to_tensor(path.read_bytes(), LIMIT)
        assert tensor.shape == (3, CROP, CROP) and tensor.dtype == np.float32
        assert tensor.flags["C_CONTIGUOUS"]
        # ImageNet normalisation keeps values within (0-0.485)/0.229 .. (1-0.406)/0.225
        assert tensor.min() > -2.2 and tensor.max() < 2.7


def test_preprocess_normalises_known_colours():
    red = preprocess(Image.new("RGB", (300, 400), (255, 0, 0)))
    assert red[0].mean() == pytest.approx((1 - 0.485) / 0.229, abs=1e-4)
    assert red[1].mean() == pytest.approx((0 - 0.456) / 0.224, abs=1e-4)


def test_preprocess_centre_crops_after_resizing_the_short_side():
    # A 512x256 image: short side to 256 keeps 512x256, the crop takes x in [144, 368).
    image = Image.new("RGB", (512, 256), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 140, 256))      # left band, outside the crop
    image.paste((255, 255, 255), (372, 0, 512, 256))    # right band, outside the crop
    tensor = preprocess(image)
    assert tensor.max() == pytest.approx((0 - 0.406) / 0.225, abs=1e-3)  # all black inside the crop


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_png_and_webp_are_accepted(fmt):
    data = encode(Image.new("RGB", (64, 48), (10, 200, 30)), fmt)
    assert image_to_tensor(data, LIMIT).shape == (3, CROP, CROP)


@pytest.mark.parametrize("image", [
    Image.new("CMYK", (80, 60), (0, 255, 255, 0)),
    Image.new("L", (80, 60), 128),
    Image.new("RGBA", (80, 60), (0, 0, 255, 128)),
    Image.new("P", (80, 60), 3),
], ids=["cmyk", "grey", "rgba", "palette"])
def test_other_modes_are_converted_to_rgb(image):
    fmt = "JPEG" if image.mode == "CMYK" else "PNG"
    decoded = decode_image(encode(image, fmt), LIMIT)
    assert decoded.mode == "RGB"


def test_16_bit_greyscale_is_scaled_not_clipped():
    array = np.linspace(0, 65535, 64 * 64, dtype=np.uint16).reshape(64, 64)
    image = Image.fromarray(array)
    assert image.mode == "I;16"
    data = encode(image, "PNG")
    decoded = np.asarray(decode_image(data, LIMIT))
    assert decoded.min() == 0 and decoded.max() == 255 and len(np.unique(decoded)) > 200


def test_animated_webp_uses_the_first_frame():
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    decoded = decode_image(buffer.getvalue(), LIMIT)
    assert decoded.getpixel((5, 5)) == (255, 0, 0)


@pytest.mark.parametrize("data, status, message", [
    (b"", 400, "empty"),
    (b"definitely not an image", 415, "not a readable image"),
    (encode(Image.new("RGB", (8, 8)), "GIF"), 415, "unsupported image format GIF"),
    (encode(Image.new("RGB", (8, 8)), "BMP"), 415, "unsupported image format BMP"),
])
def test_unusable_bodies_are_refused(data, status, message):
    with pytest.raises(ImageError) as caught:
        decode_image(data, LIMIT)
    assert caught.value.status == status and message in str(caught.value)


def test_truncated_jpeg_is_refused(jpeg_bytes):
    with pytest.raises(ImageError) as caught:
        decode_image(jpeg_bytes[: len(jpeg_bytes) // 2], LIMIT)
    assert caught.value.status == 422 and "truncated" in str(caught.value)


def test_corrupt_jpeg_is_refused(jpeg_bytes):
    sof = jpeg_bytes.find(b"\xff\xc0")
    corrupt = jpeg_bytes[: sof + 200] + bytes(5000) + jpeg_bytes[sof + 5200:]  # entropy data zeroed
    with pytest.raises(ImageError) as caught:
        decode_image(corrupt, LIMIT)
    assert caught.value.status == 422 and "corrupt" in str(caught.value)


def test_jpeg_with_zero_dimensions_is_refused(jpeg_bytes):
    sof = jpeg_bytes.find(b"\xff\xc0")
    corrupt = jpeg_bytes[: sof + 5] + bytes(4) + jpeg_bytes[sof + 9:]
    with pytest.raises(ImageError) as caught:
        decode_image(corrupt, LIMIT)
    assert caught.value.status == 415


def test_decompression_bomb_is_refused_before_decoding():
    bomb = encode(Image.new("1", (8000, 6000)), "PNG")  # 48 Mpx, a few kB on the wire
    assert len(bomb) < 100_000
    with pytest.raises(ImageError) as caught:
        decode_image(bomb, LIMIT)
    assert caught.value.status == 413 and "8000x6000" in str(caught.value)


def test_decoding_leaves_the_process_warning_filters_alone(jpeg_bytes):
    """Decoding runs on worker threads: swapping the process's warning filters there (catch_warnings) raced
    with the event loop's own, and a FastAPI warning it silences escaped as an error in CI."""
    before = warnings.filters
    done = threading.Event()
    swapped = []

    def decode_many() -> None:
        for _ in range(20):
            decode_image(jpeg_bytes, LIMIT)
        done.set()

    worker = threading.Thread(target=decode_many)
    worker.start()
    while not done.is_set():
        swapped.append(warnings.filters is not before)
    worker.join()
    assert not any(swapped)


def test_the_fused_normalisation_equals_torchvisions_steps_on_every_shared_image():
    """ToTensor (x / 255) then Normalize ((x - mean) / std) in HWC, transposed: float rounding apart, the same."""
    from gateway.imagenet.decode import center_crop, normalise

    for path in IMAGES:
        crop = center_crop(decode_image(path.read_bytes(), 40_000_000))
        reference = torchvision_normalize(crop)
        tensor = normalise(crop)
        assert tensor.shape == (3, CROP, CROP) and tensor.dtype == np.float32 and tensor.flags["C_CONTIGUOUS"]
        assert np.abs(tensor - reference).max() < 1e-5, path.name


# Same preprocessing, same classes. torchvision's ImageNet eval transform, step by step as torchvision defines
# it: Resize(256) truncates the long side, CenterCrop(224) rounds its offsets, ToTensor, Normalize.
def torchvision_eval_transform(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    width, height = image.size
    size = (256, int(256 * height / width)) if width <= height else (int(256 * width / height), 256)
    resized = image.resize(size, Image.Resampling.BILINEAR)
    top, left = round((size[1] - CROP) / 2.0), round((size[0] - CROP) / 2.0)
    return torchvision_normalize(resized.crop((left, top, left + CROP, top + CROP)))


def torchvision_normalize(crop: Image.Image) -> np.ndarray:
    """ToTensor (x / 255) then Normalize ((x - mean) / std) in HWC, transposed to CHW."""
    from gateway.imagenet.decode import IMAGENET_MEAN, IMAGENET_STD

    return ((np.asarray(crop, dtype=np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


def levels(difference: np.ndarray) -> np.ndarray:
    """A difference between normalised CHW tensors, in 8-bit levels of the image."""
    from gateway.imagenet.decode import IMAGENET_STD

    return np.abs(difference) * 255 * IMAGENET_STD.reshape(3, 1, 1)


def probe_top5(tensors: np.ndarray) -> np.ndarray:
    """The top-5 classes of a fixed-weight classifier: seeded weights over the image pooled to 16x16.

    Unlike a ResNet with random weights (which ranks the same classes first for every photo), its ranking
    follows the picture: swapping two colour channels changes it, so equal rankings mean something.
    """
    pooled = tensors.reshape(len(tensors), 3, 16, 14, 16, 14).mean(axis=(3, 5)).reshape(len(tensors), -1)
    weights = np.random.default_rng(0).standard_normal((1000, pooled.shape[1])).astype(np.float32)
    return np.argsort(-(pooled @ weights.T), axis=1)[:, :5]


@pytest.fixture(scope="module")
def shared_jpegs() -> list[bytes]:
    return [path.read_bytes() for path in IMAGES]


@pytest.fixture(scope="module")
def gateway_tensors(shared_jpegs) -> np.ndarray:
    return np.stack([image_to_tensor(data, LIMIT) for data in shared_jpegs])


@pytest.fixture(scope="module")
def torchvision_tensors(shared_jpegs) -> np.ndarray:
    return np.stack([torchvision_eval_transform(data) for data in shared_jpegs])


def test_the_gateways_pixels_are_torchvisions_within_one_level_on_every_shared_jpeg(gateway_tensors,
                                                                                      torchvision_tensors):
    for path, ours, reference in zip(IMAGES, gateway_tensors, torchvision_tensors, strict=True):
        difference = levels(ours - reference)
        assert difference.max() <= 1.0 + 1e-3, path.name
        assert difference.mean() < 0.25, path.name


def test_a_fixed_weight_classifier_ranks_the_same_top5_as_with_torchvision(gateway_tensors, torchvision_tensors):
    ours, reference = probe_top5(gateway_tensors), probe_top5(torchvision_tensors)
    assert len(set(reference[:, 0])) > len(IMAGES) // 2  # the probe tells the photos apart
    np.testing.assert_array_equal(ours, reference)


def test_the_probe_notices_a_preprocessing_mistake(gateway_tensors):
    swapped = probe_top5(np.ascontiguousarray(gateway_tensors[:, ::-1]))  # BGR instead of RGB
    same = sum(set(a) == set(b) for a, b in zip(probe_top5(gateway_tensors), swapped, strict=True))
    assert same <= 2


def test_large_jpegs_decoded_at_reduced_scale_keep_torchvisions_top5(shared_jpegs):
    """Photos of 3000x2000 or so decode at half scale. The top-5 stays torchvision's as a set (two neighbours
    may swap places), and pixels stay within half a level on average."""
    large = []
    for data in shared_jpegs[:8]:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        large.append(encode(image.resize((image.width * 6, image.height * 6), Image.Resampling.BICUBIC), "JPEG",
                            quality=92))
    assert decode_image(large[0], LIMIT).width == Image.open(io.BytesIO(large[0])).width // 2  # DCT-scaled
    ours = np.stack([image_to_tensor(data, LIMIT) for data in large])
    reference = np.stack([torchvision_eval_transform(data) for data in large])
    assert levels(ours - reference).mean() < 0.5
    for mine, theirs in zip(probe_top5(ours), probe_top5(reference), strict=True):
        assert set(mine) == set(theirs)
