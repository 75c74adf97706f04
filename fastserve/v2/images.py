"""Encoded image inputs: JPEG/PNG elements of a BYTES input bound to a 4-D NHWC numeric input.

Rules: OVMS's conversion, done with numpy. Each element is decoded as OpenCV's
imdecode(IMREAD_UNCHANGED) would (BGR or BGRA order, gray kept 1-channel, 16-bit PNGs kept
16-bit, EXIF orientation ignored), its channels fitted to the model's C, converted to the
input's element type without scaling (saturating, like cv::Mat::convertTo), then resized
with half-pixel-centre bilinear interpolation (cv::resize INTER_LINEAR) to the model's H
and W. The images stack into the batch [N,H,W,C]. Every problem is an InvalidInput (400)
naming the input and the image. Knows TensorSpec and numpy, never OpenVINO or sockets.

Sizes (per dimension of H, W and C):
- static: every image is resized (H, W) or channel-fitted (C) to it;
- a range a..b: the first image's size clamped into the range, then as static;
- fully dynamic (-1): the first image's size, and every other image must have the same.
Unlike OVMS, a dynamic batch dimension does not turn resizing off (OVMS resizes only when
no dim at all is -1), and a gray image feeds a 3-channel input (replicated) and a BGRA
image a 3-channel one (alpha dropped), where OVMS answers "invalid number of channels".
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fastserve.errors import InvalidInput
from fastserve.v2.datatypes import BYTES
from fastserve.v2.types import InferInput, InferRequest, TensorSpec

# Requests whose images add up to more than this are decoded on a worker thread: a 22 KB
# 224x224 JPEG takes ~1.2 ms to decode on the 2-core CI machine (a 96 KB PNG ~4.5 ms),
# against ~0.1 ms for the thread hop, and the loop should not stall much beyond 0.5 ms.
INLINE_IMAGE_BYTES = 16 * 1024
# Decompression-bomb guard, checked from the header before decoding: 8192 x 8192 pixels
# (Pillow warns from 89 M pixels; OpenCV's own limit is 1 G pixels).
MAX_IMAGE_PIXELS = 8192 * 8192

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_FLOAT_TYPES = frozenset("FP16 FP32 FP64".split())
_executor: ThreadPoolExecutor | None = None


def image_input_bytes(request: InferRequest, specs: dict[str, TensorSpec]) -> int:
    """Total encoded bytes of the request's inputs that will be decoded as images (0: none)."""
    total = 0
    for item in request.inputs:
        if item.datatype is BYTES:
            spec = specs.get(item.name)
            if spec is not None and is_image_input(spec):
                total += len(item.raw) if item.raw is not None else _json_bytes(item)
    return total


def is_image_input(spec: TensorSpec) -> bool:
    """A BYTES request input is taken as encoded images when the model input is numeric and 4-D."""
    return spec.rank == 4 and spec.datatype is not None and spec.datatype is not BYTES


def executor() -> ThreadPoolExecutor:
    """Worker threads for heavy decodes; both decoders release the GIL while they work."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="fastserve-images")
    return _executor


def _json_bytes(item: InferInput) -> int:
    return 0 if item.data is None else sum(len(v) for v in item.data.reshape(-1))


# Binding


def decode_images(elements: Sequence[bytes | str], item: InferInput, spec: TensorSpec) -> np.ndarray:
    """The batch [N,H,W,C] of the input's element type from N encoded images."""
    assert spec.dims is not None and spec.datatype is not None
    name = item.name
    if spec.datatype.name == "BOOL":
        raise InvalidInput(f"Input {name} is BOOL: encoded images can only feed numeric inputs")
    if len(item.shape) != 1:
        raise InvalidInput(
            f"Invalid shape of binary image input {name} - Expected: [N], the number of images; "
            f"Actual: {list(item.shape)}"
        )
    count = len(elements)
    (batch_low, batch_high), height_dim, width_dim, channel_dim = spec.dims
    if count == 0:
        raise InvalidInput(f"Input {name} holds no images")
    if count < batch_low or (batch_high != -1 and count > batch_high):
        raise InvalidInput(
            f"Invalid input batch size - Expected: {spec.describe_shape()}; Actual: {count} images; input name: {name}"
        )
    dtype = spec.datatype.numpy
    out: np.ndarray | None = None
    target: tuple[int, int, int] = (0, 0, 0)
    for index, data in enumerate(elements):
        where = f"input {name}, image {index + 1} of {count}"
        image = decode_image(data.encode() if isinstance(data, str) else data, where)
        if out is None:
            target = (
                _target(height_dim, image.shape[0]),
                _target(width_dim, image.shape[1]),
                _target(channel_dim, image.shape[2]),
            )
            if min(target) <= 0:
                raise InvalidInput(f"Image of {where} has an empty size after fitting to {spec.describe_shape()}")
            out = np.empty((count, *target), dtype=dtype)
        else:
            _check_dynamic(image, (height_dim, width_dim), target, where)
        image = fit_channels(image, target[2], where)
        image = convert(image, dtype)
        if image.shape[:2] != target[:2]:
            image = resize_bilinear(image, target[0], target[1])
        out[index] = image
    assert out is not None
    return out


def _target(dim: tuple[int, int], size: int) -> int:
    low, high = dim
    if low == high:
        return low
    if high != -1 and size > high:
        return high
    return max(size, low)


def _check_dynamic(
    image: np.ndarray, dims: tuple[tuple[int, int], ...], target: tuple[int, int, int], where: str
) -> None:
    for axis, (low, high) in enumerate(dims):
        if low != high and high == -1 and low <= 0 and image.shape[axis] != target[axis]:
            raise InvalidInput(
                f"Binary input images for this endpoint are required to have the same resolution - "
                f"first image {target[0]}x{target[1]}, {where} is {image.shape[0]}x{image.shape[1]} (HxW)"
            )


# Decoding


def decode_image(data: bytes | memoryview, where: str) -> np.ndarray:
    """JPEG or PNG bytes -> uint8/uint16 array [H,W,C], C 1 (gray), 3 (BGR) or 4 (BGRA)."""
    head = bytes(data[:8])
    if head.startswith(_JPEG_MAGIC):
        return _decode_jpeg(data, where)
    if head == _PNG_MAGIC:
        return _decode_png(data, where)
    raise InvalidInput(f"Image parsing failed for {where}: the data is neither a JPEG nor a PNG image")


def _decode_jpeg(data: bytes | memoryview, where: str) -> np.ndarray:
    import simplejpeg

    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        _check_pixels(width, height, where)
        if colorspace == "Gray":
            image = simplejpeg.decode_jpeg(data, colorspace="GRAY")
        else:
            image = simplejpeg.decode_jpeg(data, colorspace="BGR")
    except (ValueError, RuntimeError, TypeError) as exc:
        raise InvalidInput(f"Image parsing failed for {where}: corrupt or unsupported JPEG ({exc})") from None
    return image.reshape(image.shape[0], image.shape[1], -1)


def _decode_png(data: bytes | memoryview, where: str) -> np.ndarray:
    if len(data) < 33 or bytes(data[12:16]) != b"IHDR":
        raise InvalidInput(f"Image parsing failed for {where}: corrupt PNG (no IHDR chunk)")
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    bit_depth, color_type = data[24], data[25]
    _check_pixels(width, height, where)
    try:
        if bit_depth == 16 and color_type != 0:
            return _png16_color(data)  # Pillow would cut 16-bit colour to 8 bits; OpenCV keeps 16
        return _png_pillow(data)
    except InvalidInput:
        raise
    except Exception as exc:  # Pillow and pypng raise many types (OSError, SyntaxError, zlib.error...)
        raise InvalidInput(f"Image parsing failed for {where}: corrupt or unsupported PNG ({exc})") from None


def _png_pillow(data: bytes | memoryview) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data), formats=("PNG",)) as image:
        mode = image.mode
        transparent = "transparency" in image.info
        if mode in ("1", "L", "I;16", "I;16B", "I;16L", "I"):
            # Gray stays 1-channel (a tRNS key in a gray PNG is ignored, as OpenCV does).
            gray = np.asarray(image.convert("L") if mode == "1" else image)
            if gray.dtype != np.uint8:
                gray = gray.astype(np.uint16)
            return gray[:, :, None]
        if mode == "LA":
            la = np.asarray(image)
            return np.ascontiguousarray(la[:, :, [0, 0, 0, 1]])
        if mode == "RGBA" or mode == "PA" or (transparent and mode in ("P", "RGB")):
            rgba = np.asarray(image.convert("RGBA"))
            return np.ascontiguousarray(rgba[:, :, [2, 1, 0, 3]])
        rgb = np.asarray(image.convert("RGB"))
        return np.ascontiguousarray(rgb[:, :, ::-1])


def _png16_color(data: bytes | memoryview) -> np.ndarray:
    import png  # pypng: the rare 16-bit colour PNG, which Pillow only reads as 8-bit

    width, height, rows, info = png.Reader(bytes=bytes(data)).asDirect()
    planes = info["planes"]
    pixels = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, planes)
    order = {2: [0, 0, 0, 1], 3: [2, 1, 0], 4: [2, 1, 0, 3]}.get(planes)
    if order is None:
        return pixels
    return np.ascontiguousarray(pixels[:, :, order])


def _check_pixels(width: int, height: int, where: str) -> None:
    if width <= 0 or height <= 0:
        raise InvalidInput(f"Image parsing failed for {where}: the image has no pixels ({width}x{height})")
    if width * height > MAX_IMAGE_PIXELS:
        raise InvalidInput(
            f"Image of {where} is too large: {width}x{height} pixels, the limit is {MAX_IMAGE_PIXELS} pixels"
        )


# Conversion


def fit_channels(image: np.ndarray, channels: int, where: str) -> np.ndarray:
    """Gray to 3 channels by replication, BGRA to BGR by dropping alpha; other mismatches are refused."""
    have = image.shape[2]
    if have == channels:
        return image
    if channels == 3 and have == 1:
        return np.repeat(image, 3, axis=2)
    if channels == 3 and have == 4:
        return image[:, :, :3]
    kinds = {1: "gray", 3: "BGR", 4: "BGRA"}
    hint = ""
    if channels > 4:  # a [N,3,H,W] input read as NHWC: C is really W
        hint = " (the input looks NCHW: images need NHWC, e.g. the model option \"layout\": \"NHWC:NCHW\")"
    raise InvalidInput(
        f"Invalid number of channels in binary input - Expected: {channels}; Actual: {have} "
        f"({kinds.get(have, 'unknown')}); {where}{hint}"
    )


def convert(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """To the element type without scaling; integers saturate as cv::saturate_cast does."""
    if image.dtype == dtype:
        return image
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if info.max < np.iinfo(image.dtype).max or info.min > 0:
            image = np.clip(image, max(info.min, 0), info.max)
    return image.astype(dtype)


def _axis_taps(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output index: the two source indices and the weight of the second (OpenCV's rule).

    The centre of output pixel d maps to source x = (d + 0.5) * source / target - 0.5. Left of
    the first pixel the weight is 0 (x clamps to 0); at or past the last pixel both taps are
    the last pixel.
    """
    scale = source / target
    x = (np.arange(target, dtype=np.float64) + 0.5) * scale - 0.5
    low = np.floor(x)
    weight = x - low
    low = low.astype(np.int64)
    before = low < 0
    weight[before] = 0.0
    low[before] = 0
    after = low >= source - 1
    weight[after] = 0.0
    low[after] = source - 1
    high = np.minimum(low + 1, source - 1)
    return low, high, weight.astype(np.float32)


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """[H,W,C] -> [height,width,C], bilinear with half-pixel centres, as cv::resize(INTER_LINEAR).

    Computed in float32 (float64 for FP64 input); integer results are rounded to nearest and
    saturated. OpenCV's 8-bit path uses 11-bit fixed-point weights, so 8-bit results can differ
    from it by 1.
    """
    work = np.float64 if image.dtype == np.float64 else np.float32
    y0, y1, wy = _axis_taps(image.shape[0], height)
    x0, x1, wx = _axis_taps(image.shape[1], width)
    # Rows first: only `height` source rows are ever converted to float.
    top = image[y0].astype(work)
    bottom = image[y1].astype(work)
    wy = wy.astype(work)[:, None, None]
    rows = top + (bottom - top) * wy
    wx = wx.astype(work)[None, :, None]
    left = rows[:, x0]
    result = left + (rows[:, x1] - left) * wx
    dtype = image.dtype
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        np.rint(result, out=result)
        np.clip(result, info.min, info.max, out=result)
    return result.astype(dtype)
