"""A decoded v2 request bound to a pipeline's inputs: the same checks as for a model.

Rules: reuses v2.validate.bind_inputs against the pipeline's input TensorSpecs, with two
pipeline-only cases: an input only the response reads takes whatever datatype and shape
the request sends, and a 5-D image input of a demultiplexing pipeline ([D,1,H,W,C]) takes N
encoded images as [N] BYTES, decoded like a 4-D input and given the extra dim of 1.
Knows the v2 types, never HTTP or OpenVINO.
"""

from __future__ import annotations

import numpy as np

from fastserve.pipelines.graph import Compiled
from fastserve.v2.datatypes import BYTES
from fastserve.v2.images import image_input_bytes
from fastserve.v2.types import InferRequest, TensorSpec
from fastserve.v2.validate import bind_inputs


def bind_pipeline_inputs(decoded: InferRequest, compiled: Compiled) -> list[np.ndarray]:
    """The request's arrays in the pipeline's input order; InvalidInput as for a model."""
    if not compiled.passthrough and not compiled.image_specs:
        return bind_inputs(decoded, compiled.inputs)
    specs = dict(compiled.inputs)
    given = {item.name: item for item in decoded.inputs}
    for name in compiled.passthrough:
        item = given.get(name)
        if item is not None:
            specs[name] = TensorSpec(name, item.datatype, item.datatype.ov_name, None, specs[name].index)
    images = []
    for name, image_spec in compiled.image_specs.items():
        item = given.get(name)
        if item is not None and item.datatype is BYTES:
            specs[name] = image_spec
            images.append(image_spec.index)
    arrays = bind_inputs(decoded, specs)
    for index in images:
        batch = arrays[index]
        arrays[index] = batch.reshape(batch.shape[0], 1, *batch.shape[1:])
    return arrays


def image_bytes(decoded: InferRequest, compiled: Compiled) -> int:
    """Encoded image bytes the request carries for the pipeline (to decide on decoding off the loop)."""
    if not compiled.image_specs:
        return image_input_bytes(decoded, compiled.inputs)
    return image_input_bytes(decoded, {**compiled.inputs, **compiled.image_specs})
