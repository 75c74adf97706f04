"""images.py on its own: decoding (PNG via Pillow/pypng, JPEG via simplejpeg), channel fitting,
conversion, the bilinear resize against a scalar reference written here, and batch binding."""

from __future__ import annotations

import io

import numpy as np
import png
import pytest
import simplejpeg
from PIL import Image

from fastserve.errors import InvalidInput
from fastserve.v2 import images
from fastserve.v2.datatypes import BY_NAME, BYTES
from fastserve.v2.types import InferInput, TensorSpec

RNG = np.random.default_rng(7)


def png_bytes(pixels: np.ndarray, mode: str | None = None) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels, mode).save(out, "PNG")
    return out.getvalue()


def png16_bytes(pixels: np.ndarray) -> bytes:
    """16-bit PNG through pypng: [H,W] gray, [H,W,3] RGB or [H,W,4] RGBA."""
    height, width = pixels.shape[:2]
    planes = 1 if pixels.ndim == 2 else pixels.shape[2]
    writer = png.Writer(width, height, greyscale=planes in (1, 2), alpha=planes in (2, 4), bitdepth=16)
    out = io.BytesIO()
    writer.write(out, pixels.reshape(height, width * planes).tolist())
    return out.getvalue()


def spec(shape: list[tuple[int, int] | int], datatype: str = "FP32") -> TensorSpec:
    dims = tuple(d if isinstance(d, tuple) else ((0, -1) if d == -1 else (d, d)) for d in shape)
    return TensorSpec("img", BY_NAME[datatype], datatype.lower(), dims)


def bind(elements: list[bytes], model: TensorSpec) -> np.ndarray:
    item = InferInput("img", BYTES, (len(elements),), {})
    return images.decode_images(elements, item, model)


def reference_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scalar half-pixel-centre bilinear (OpenCV INTER_LINEAR rules), float64, one pixel at a time."""
    src_h, src_w, channels = image.shape
    out = np.zeros((height, width, channels), dtype=np.float64)

    def taps(d: int, src: int, dst: int) -> tuple[int, int, float]:
        x = (d + 0.5) * src / dst - 0.5
        i = int(np.floor(x))
        f = x - i
        if i < 0:
            i, f = 0, 0.0
        if i >= src - 1:
            i, f = src - 1, 0.0
        return i, min(i + 1, src - 1), f

    for r in range(height):
        r0, r1, fy = taps(r, src_h, height)
        for c in range(width):
            c0, c1, fx = taps(c, src_w, width)
            top = image[r0, c0] * (1 - fx) + image[r0, c1] * fx
            bottom = image[r1, c0] * (1 - fx) + image[r1, c1] * fx
            out[r, c] = top * (1 - fy) + bottom * fy
    return out


# Decoding


def test_rgb_png_comes_back_bgr_exactly() -> None:
    rgb = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    decoded = images.decode_image(png_bytes(rgb), "x")
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, rgb[:, :, ::-1])


def test_png_modes_follow_opencv_unchanged() -> None:
    gray = RNG.integers(0, 256, (4, 6), dtype=np.uint8)
    np.testing.assert_array_equal(images.decode_image(png_bytes(gray), "x"), gray[:, :, None])
    rgba = RNG.integers(0, 256, (4, 6, 4), dtype=np.uint8)
    np.testing.assert_array_equal(images.decode_image(png_bytes(rgba), "x"), rgba[:, :, [2, 1, 0, 3]])
    la = RNG.integers(0, 256, (4, 6, 2), dtype=np.uint8)
    np.testing.assert_array_equal(images.decode_image(png_bytes(la, "LA"), "x"), la[:, :, [0, 0, 0, 1]])
    palette = Image.fromarray(rgba[:, :, :3]).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    out = io.BytesIO()
    palette.save(out, "PNG")
    expected = np.asarray(palette.convert("RGB"))[:, :, ::-1]
    np.testing.assert_array_equal(images.decode_image(out.getvalue(), "x"), expected)


def test_bilevel_png_is_0_and_255() -> None:
    bits = np.array([[0, 1, 1], [1, 0, 0]], dtype=bool)
    decoded = images.decode_image(png_bytes(bits), "x")
    np.testing.assert_array_equal(decoded[:, :, 0], bits.astype(np.uint8) * 255)


def test_16bit_pngs_keep_16_bits() -> None:
    gray = RNG.integers(0, 65536, (3, 5), dtype=np.uint16)
    decoded = images.decode_image(png16_bytes(gray), "x")
    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded[:, :, 0], gray)
    rgb = RNG.integers(0, 65536, (3, 5, 3), dtype=np.uint16)
    decoded = images.decode_image(png16_bytes(rgb), "x")
    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded, rgb[:, :, ::-1])


def test_jpeg_close_to_pillow_reference() -> None:
    y, x = np.mgrid[0:32, 0:48]
    rgb = np.stack([x * 5, y * 7, (x + y) * 3], axis=-1).clip(0, 255).astype(np.uint8)
    data = simplejpeg.encode_jpeg(rgb, quality=95, colorspace="RGB")
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[:, :, ::-1].astype(int)
    decoded = images.decode_image(data, "x")
    assert decoded.shape == (32, 48, 3)
    assert np.abs(decoded.astype(int) - reference).max() <= 2


def test_gray_jpeg_stays_one_channel() -> None:
    gray = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (16, 1))[:, :, None]
    data = simplejpeg.encode_jpeg(gray, quality=95, colorspace="GRAY")
    decoded = images.decode_image(data, "x")
    assert decoded.shape == (16, 32, 1)
    assert np.abs(decoded.astype(int) - gray).max() <= 3


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"GIF89a....", "neither a JPEG nor a PNG"),
        (b"", "neither a JPEG nor a PNG"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 40, "corrupt or unsupported JPEG"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 8, "no IHDR"),
    ],
)
def test_corrupt_images_are_refused_by_name(data: bytes, words: str) -> None:
    with pytest.raises(InvalidInput, match=words) as info:
        images.decode_image(data, "input img, image 1 of 1")
    assert "input img, image 1 of 1" in info.value.message
    assert info.value.status == 400


def test_truncated_png_is_refused() -> None:
    data = png_bytes(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(InvalidInput, match="corrupt or unsupported PNG"):
        images.decode_image(data[: len(data) // 2], "x")


def test_huge_dimensions_refused_before_decoding() -> None:
    data = bytearray(png_bytes(np.zeros((2, 2), dtype=np.uint8)))
    data[16:24] = (100_000).to_bytes(4, "big") + (100_000).to_bytes(4, "big")  # the IHDR says 100k x 100k
    with pytest.raises(InvalidInput, match="too large"):
        images.decode_image(bytes(data), "x")


# Channels and conversion


def test_fit_channels() -> None:
    gray = RNG.integers(0, 256, (2, 3, 1), dtype=np.uint8)
    np.testing.assert_array_equal(images.fit_channels(gray, 3, "x"), np.repeat(gray, 3, axis=2))
    bgra = RNG.integers(0, 256, (2, 3, 4), dtype=np.uint8)
    np.testing.assert_array_equal(images.fit_channels(bgra, 3, "x"), bgra[:, :, :3])
    for image, channels in ((bgra[:, :, :3], 1), (bgra[:, :, :3], 4), (gray, 4), (bgra, 1)):
        with pytest.raises(InvalidInput, match="Invalid number of channels"):
            images.fit_channels(image, channels, "x")


def test_convert_saturates_without_scaling() -> None:
    values = np.array([0, 100, 127, 128, 255], dtype=np.uint8).reshape(1, 5, 1)
    np.testing.assert_array_equal(images.convert(values, np.dtype(np.int8)).ravel(), [0, 100, 127, 127, 127])
    np.testing.assert_array_equal(images.convert(values, np.dtype(np.float32)).ravel(), [0, 100, 127, 128, 255])
    wide = np.array([0, 300, 65535], dtype=np.uint16).reshape(1, 3, 1)
    np.testing.assert_array_equal(images.convert(wide, np.dtype(np.uint8)).ravel(), [0, 255, 255])
    np.testing.assert_array_equal(images.convert(wide, np.dtype(np.int16)).ravel(), [0, 300, 32767])
    np.testing.assert_array_equal(images.convert(wide, np.dtype(np.int64)).ravel(), [0, 300, 65535])


# Resize


@pytest.mark.parametrize(("src", "dst"), [((5, 7), (9, 4)), ((16, 16), (8, 8)), ((3, 3), (7, 11)), ((10, 1), (4, 3))])
def test_resize_matches_scalar_reference(src: tuple[int, int], dst: tuple[int, int]) -> None:
    image = RNG.random((*src, 3), dtype=np.float32) * 255
    got = images.resize_bilinear(image, *dst)
    assert got.shape == (*dst, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, reference_resize(image, *dst), rtol=0, atol=1e-3)


def test_resize_integer_rounds_and_saturates() -> None:
    image = RNG.integers(0, 256, (6, 5, 1), dtype=np.uint8)
    got = images.resize_bilinear(image, 11, 3)
    assert got.dtype == np.uint8
    expected = np.clip(np.rint(reference_resize(image.astype(np.float64), 11, 3)), 0, 255)
    assert np.abs(got.astype(int) - expected).max() == 0


def test_resize_exact_2x_down_is_2x2_mean() -> None:
    image = RNG.random((8, 6, 2)).astype(np.float32)
    got = images.resize_bilinear(image, 4, 3)
    expected = image.reshape(4, 2, 3, 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_resize_identity_size_is_unchanged() -> None:
    image = RNG.random((4, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(images.resize_bilinear(image, 4, 5), image, atol=1e-6)


# Batches


def test_batch_static_resize_and_convert() -> None:
    first = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    second = RNG.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    out = bind([png_bytes(first), png_bytes(second)], spec([-1, 5, 5, 3], "FP32"))
    assert out.shape == (2, 5, 5, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], reference_resize(first[:, :, ::-1].astype(np.float64), 5, 5), atol=1e-3)
    np.testing.assert_allclose(out[1], reference_resize(second[:, :, ::-1].astype(np.float64), 5, 5), atol=1e-3)


def test_batch_dynamic_takes_first_image_size() -> None:
    first = RNG.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    out = bind([png_bytes(first), png_bytes(first[::-1])], spec([-1, -1, -1, 3], "UINT8"))
    assert out.shape == (2, 3, 4, 3)
    np.testing.assert_array_equal(out[0], first[:, :, ::-1])
    np.testing.assert_array_equal(out[1], first[::-1, :, ::-1])
    with pytest.raises(InvalidInput, match="same resolution"):
        bind([png_bytes(first), png_bytes(first[:2])], spec([-1, -1, -1, 3], "UINT8"))


def test_ranges_clamp_to_the_nearest_bound() -> None:
    image = RNG.integers(0, 256, (20, 2, 1), dtype=np.uint8)
    out = bind([png_bytes(image[:, :, 0])], spec([1, (4, 8), (3, 6), 1], "FP32"))
    assert out.shape == (1, 8, 3, 1)
    inside = bind([png_bytes(image[:5, :, 0])], spec([1, (4, 8), (1, 6), 1], "FP32"))
    assert inside.shape == (1, 5, 2, 1)


def test_dynamic_channels_follow_the_first_image() -> None:
    gray = RNG.integers(0, 256, (3, 3), dtype=np.uint8)
    rgb = RNG.integers(0, 256, (3, 3, 3), dtype=np.uint8)
    out = bind([png_bytes(rgb), png_bytes(gray)], spec([-1, 3, 3, -1], "UINT8"))
    assert out.shape == (2, 3, 3, 3)
    np.testing.assert_array_equal(out[1], np.repeat(gray[:, :, None], 3, axis=2))


@pytest.mark.parametrize(
    ("model", "count", "shape", "words"),
    [
        (spec([1, 4, 4, 3]), 2, None, "Invalid input batch size"),
        (spec([(2, 3), 4, 4, 3]), 1, None, "Invalid input batch size"),
        (spec([-1, 4, 4, 3], "BOOL"), 1, None, "BOOL"),
        (spec([-1, 4, 4, 3]), 1, (1, 1), r"Expected: \[N\]"),
    ],
)
def test_batch_errors(model: TensorSpec, count: int, shape: tuple[int, ...] | None, words: str) -> None:
    data = [png_bytes(np.zeros((4, 4, 3), dtype=np.uint8))] * count
    item = InferInput("img", BYTES, shape or (count,), {})
    with pytest.raises(InvalidInput, match=words):
        images.decode_images(data, item, model)


def test_names_the_bad_image_in_a_batch() -> None:
    good = png_bytes(np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(InvalidInput, match="input img, image 2 of 3"):
        bind([good, b"not an image", good], spec([-1, 4, 4, 3]))


def test_only_image_inputs_count_towards_the_off_loop_threshold() -> None:
    from fastserve.v2.types import InferRequest

    encoded = b"\x00" * 5000
    image = InferInput("img", BYTES, (1,), {}, raw=memoryview(encoded))
    text = InferInput("text", BYTES, (1,), {}, raw=memoryview(b"\x00" * 9000))
    request = InferRequest(None, {}, [image, text], None)
    specs = {"img": spec([-1, 4, 4, 3], "UINT8"), "text": TensorSpec("text", BYTES, "string", ((0, -1),))}
    assert images.image_input_bytes(request, specs) == 5000
    specs["img"] = TensorSpec("img", BY_NAME["FP32"], "f32", ((0, -1), (0, -1)))  # 2-D: not an image input
    assert images.image_input_bytes(request, specs) == 0
