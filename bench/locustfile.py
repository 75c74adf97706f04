"""User scenarios for your own locust runs against fastserve (or any KServe v2 server with the demo models).

Rules: every request is checked, not just its status: a wrong answer is a locust failure.
Payloads are built once at import from the bundled demo samples (fastserve/demo/samples):
- health: GET /v2/health/live and /v2/health/ready (empty 200s);
- json_infer: the `add` model with a JSON body (checks the sums);
- binary_infer: the `digits` model, FP32 image as a binary tensor, probabilities back as binary;
- jpeg_infer: the `digits` model fed a JPEG (BYTES input, encoded from a sample PNG; checks the digit).
Run: fastserve  (serves the demo models on :8000), then
     locust -f bench/locustfile.py --host http://127.0.0.1:8000   (web UI), or add
     --headless -u 32 -r 8 -t 1m; pick scenarios with --tags health json binary jpeg.
Model names can be changed with LOCUST_ADD_MODEL / LOCUST_DIGITS_MODEL.
"""

from __future__ import annotations

import json
import os

import numpy as np
import png
import simplejpeg
from locust import FastHttpUser, between, tag, task

from fastserve.demo import DEMO_SAMPLES_DIR

ADD_MODEL = os.environ.get("LOCUST_ADD_MODEL", "add")
DIGITS_MODEL = os.environ.get("LOCUST_DIGITS_MODEL", "digits")
JPEG_LABEL = 7  # samples/digit_7.png
JSON_DIGIT_LABEL = 8  # samples/digits_request.json holds an 8


def _add_body() -> tuple[bytes, list[float]]:
    doc = json.loads((DEMO_SAMPLES_DIR / "add_request.json").read_text())
    a, b = (np.asarray(item["data"], dtype=np.float32) for item in doc["inputs"])
    return json.dumps(doc).encode(), (a + b).tolist()


def _binary_digits_body() -> tuple[bytes, int]:
    """The JSON sample's image as one FP32 binary tensor; label as JSON, probabilities as binary."""
    sample = json.loads((DEMO_SAMPLES_DIR / "digits_request.json").read_text())["inputs"][0]
    image = np.asarray(sample["data"], dtype=np.float32).reshape(sample["shape"])
    head = json.dumps({
        "inputs": [{"name": sample["name"], "shape": list(image.shape), "datatype": "FP32",
                    "parameters": {"binary_data_size": image.nbytes}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": False}},
                    {"name": "probabilities", "parameters": {"binary_data": True}}],
    }).encode()
    return head + image.tobytes(), len(head)


def _jpeg_digits_body() -> tuple[bytes, int]:
    """digit_7.png re-encoded as a gray JPEG, sent as the single BYTES element of `image`."""
    width, height, rows, info = png.Reader(filename=str(DEMO_SAMPLES_DIR / f"digit_{JPEG_LABEL}.png")).asDirect()
    planes = info["planes"]
    pixels = np.vstack([np.asarray(row, dtype=np.uint8) for row in rows]).reshape(height, width, planes)
    jpeg = simplejpeg.encode_jpeg(np.ascontiguousarray(pixels), quality=95, colorspace="GRAY" if planes == 1 else "RGB")
    head = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES"}],
                       "outputs": [{"name": "label"}]}).encode()
    return head + len(jpeg).to_bytes(4, "little") + jpeg, len(head)


ADD_BODY, ADD_SUMS = _add_body()
BINARY_BODY, BINARY_HEAD = _binary_digits_body()
JPEG_BODY, JPEG_HEAD = _jpeg_digits_body()
JSON_HEADERS = {"Content-Type": "application/json"}


def _label(doc: dict) -> int | None:
    for output in doc.get("outputs", []):
        if output.get("name") == "label" and output.get("data"):
            return int(output["data"][0])
    return None


class KServeUser(FastHttpUser):
    """One client: mostly inference of the three kinds, now and then a health check."""

    wait_time = between(0, 0.01)

    @tag("health")
    @task(1)
    def health(self) -> None:
        for path in ("/v2/health/live", "/v2/health/ready"):
            with self.client.get(path, name=path, catch_response=True) as reply:
                if reply.status_code != 200:
                    reply.failure(f"{path}: HTTP {reply.status_code}")

    @tag("json")
    @task(3)
    def json_infer(self) -> None:
        with self.client.post(f"/v2/models/{ADD_MODEL}/infer", data=ADD_BODY, headers=JSON_HEADERS,
                              name="json_infer add", catch_response=True) as reply:
            if reply.status_code != 200:
                reply.failure(f"HTTP {reply.status_code}: {reply.text[:200]}")
                return
            outputs = {o["name"]: o for o in reply.json()["outputs"]}
            if outputs.get("sum", {}).get("data") != ADD_SUMS:
                reply.failure(f"wrong sums: {reply.text[:200]}")

    @tag("binary")
    @task(3)
    def binary_infer(self) -> None:
        headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(BINARY_HEAD)}
        with self.client.post(f"/v2/models/{DIGITS_MODEL}/infer", data=BINARY_BODY, headers=headers,
                              name="binary_infer digits", catch_response=True) as reply:
            if reply.status_code != 200:
                reply.failure(f"HTTP {reply.status_code}: {reply.text[:200]}")
                return
            head_length = int(reply.headers.get("Inference-Header-Content-Length", "-1"))
            content = reply.content or b""
            if head_length < 0 or len(content) - head_length != 10 * 4:
                reply.failure(f"expected 10 FP32 probabilities after a {head_length}-byte JSON head")
            elif _label(json.loads(content[:head_length])) != JSON_DIGIT_LABEL:
                reply.failure(f"wrong digit: {content[:head_length]!r}")

    @tag("jpeg")
    @task(3)
    def jpeg_infer(self) -> None:
        headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(JPEG_HEAD)}
        with self.client.post(f"/v2/models/{DIGITS_MODEL}/infer", data=JPEG_BODY, headers=headers,
                              name="jpeg_infer digits", catch_response=True) as reply:
            if reply.status_code != 200:
                reply.failure(f"HTTP {reply.status_code}: {reply.text[:200]}")
            elif _label(reply.json()) != JPEG_LABEL:
                reply.failure(f"wrong digit: {reply.text[:200]}")
