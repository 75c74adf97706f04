"""Crops detected boxes out of an image: the detection -> classification demultiplexer node.

The classic OVMS pipeline: a detector finds N objects, this node cuts each out and resizes it,
and (with `demultiply_count: -1` on this node) a classifier runs once per crop.

inputs:
  image      FP32 [1,C,H,W] (layout NCHW, the default) or [1,H,W,C] (layout NHWC)
  detection  FP32 [1,1,N,7]: rows [image_id, label, confidence, x_min, y_min, x_max, y_max],
             coordinates relative to the image (0..1): the SSD DetectionOutput format
outputs (K = boxes kept, in detection order):
  images       FP32 [K,1,C,h,w] (or [K,1,h,w,C] for NHWC): each crop resized bilinearly
  coordinates  FP32 [K,1,4]: x_min, y_min, x_max, y_max of each crop, relative, clipped to 0..1
  confidences  FP32 [K,1,1]
params (strings, as OVMS passes them):
  target_image_width, target_image_height  the crop size (required)
  confidence_threshold  keep boxes above it (default 0.5)
  max_output_batch      keep at most this many (default 100)
  filter_label_id       keep only this label (default: any)
  layout                NCHW (default) or NHWC
Boxes with an image_id of -1 end the list (SSD pads with them); empty boxes are skipped.
"""

from __future__ import annotations

import numpy as np

RUN_INLINE = False  # resizing many crops can take milliseconds: run on the custom node threads


def _size(params: dict[str, str]) -> tuple[int, int]:
    try:
        return int(params["target_image_height"]), int(params["target_image_width"])
    except KeyError as exc:
        raise ValueError(f"param {exc.args[0]} is required") from None


def _nchw(params: dict[str, str]) -> bool:
    layout = params.get("layout", "NCHW").upper()
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be NCHW or NHWC, not {layout}")
    return layout == "NCHW"


def inputs_info(params: dict[str, str]) -> dict[str, tuple[str, list[int]]]:
    return {"image": ("FP32", [1, -1, -1, -1]), "detection": ("FP32", [1, 1, -1, 7])}


def outputs_info(params: dict[str, str]) -> dict[str, tuple[str, list[int]]]:
    height, width = _size(params)
    crop = [-1, height, width] if _nchw(params) else [height, width, -1]
    return {"images": ("FP32", [-1, 1, *crop]), "coordinates": ("FP32", [-1, 1, 4]),
            "confidences": ("FP32", [-1, 1, 1])}


def execute(inputs: dict[str, np.ndarray], params: dict[str, str]) -> dict[str, np.ndarray]:
    height, width = _size(params)
    nchw = _nchw(params)
    threshold = float(params.get("confidence_threshold", "0.5"))
    limit = int(params.get("max_output_batch", "100"))
    label = params.get("filter_label_id")
    image = inputs["image"][0]
    chw = image if nchw else image.transpose(2, 0, 1)
    crops, boxes, scores = [], [], []
    for row in inputs["detection"].reshape(-1, 7):
        if row[0] < 0:
            break
        if row[2] <= threshold or (label is not None and int(row[1]) != int(label)):
            continue
        box = np.clip(row[3:7], 0.0, 1.0)
        crop = crop_resize(chw, box, height, width)
        if crop is None:
            continue
        crops.append(crop if nchw else crop.transpose(1, 2, 0))
        boxes.append(box)
        scores.append(row[2])
        if len(crops) == limit:
            break
    shape = (0, 1, chw.shape[0], height, width) if nchw else (0, 1, height, width, chw.shape[0])
    images = np.stack(crops)[:, None] if crops else np.zeros(shape, np.float32)
    return {
        "images": images.astype(np.float32, copy=False),
        "coordinates": np.array(boxes, np.float32).reshape(-1, 1, 4),
        "confidences": np.array(scores, np.float32).reshape(-1, 1, 1),
    }


def crop_resize(chw: np.ndarray, box: np.ndarray, height: int, width: int) -> np.ndarray | None:
    """The box (relative x_min, y_min, x_max, y_max) of a [C,H,W] image, resized to [C,height,width].

    Bilinear with pixel centres at +0.5 (as cv2.resize INTER_LINEAR on the cropped region); a
    crop already of the target size comes back as the exact pixels. None for an empty box.
    """
    _, rows, cols = chw.shape
    left, top = int(round(box[0] * cols)), int(round(box[1] * rows))
    right, bottom = int(round(box[2] * cols)), int(round(box[3] * rows))
    if right <= left or bottom <= top:
        return None
    y_lo, y_hi, y_w = _taps(top, bottom - top, height)
    x_lo, x_hi, x_w = _taps(left, right - left, width)
    upper = chw[:, y_lo][:, :, x_lo] * (1 - x_w) + chw[:, y_lo][:, :, x_hi] * x_w
    lower = chw[:, y_hi][:, :, x_lo] * (1 - x_w) + chw[:, y_hi][:, :, x_hi] * x_w
    return (upper * (1 - y_w)[:, None] + lower * y_w[:, None]).astype(np.float32)


def _taps(start: int, length: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (low, high) and weights for `target` samples over [start, start+length)."""
    position = (np.arange(target) + 0.5) * (length / target) - 0.5
    position = np.clip(position, 0, length - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, length - 1)
    return start + low, start + high, (position - low).astype(np.float32)
