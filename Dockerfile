# syntax=docker/dockerfile:1
# fastserve: a KServe v2 REST model server for OpenVINO IR / ONNX models, run like OVMS's image:
#
#   docker build -t fastserve .
#   docker run --rm -p 8000:8000 -v $PWD/models:/models fastserve --config_path /models/config.json
#   docker run --rm -p 8000:8000 -v $PWD/models:/models fastserve --model_name resnet --model_path /models/resnet
#   docker run --rm -p 8000:8000 -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_REGION \
#     fastserve --model_name resnet --model_path s3://bucket/resnet --remote_cache_dir /tmp/models
#
# The image has the `cloud` extra (S3, Google Cloud Storage, Azure Blob and Files clients), so
# OVMS's cloud deployments (s3://, gs://, az://, azfs:// with their environment variables) run
# as they are. Remote models are cached under --remote_cache_dir (default: the temp folder): with
# a read-only root filesystem, mount a writable volume (an emptyDir) there.
#
# Rules (checked by tests/test_dockerfile.py; no Docker engine is needed for that):
# - slim Python base; the final stage gets only fastserve and its runtime dependencies, as
#   wheels built in the first stage (no test extras, no compilers, no pip cache);
# - runs as a non-root user, uid/gid 5000 like OVMS's image (numeric, so Kubernetes'
#   runAsNonRoot can verify it); nothing is written at run time (the .pyc files are compiled at
#   install time), so a read-only root filesystem works;
# - EXPOSE 8000 (fastserve's default --rest_port); ENTRYPOINT ["fastserve"], so the arguments of
#   `docker run` are fastserve's (OVMS's) flags; HEALTHCHECK on /v2/health/live.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fastserve ./fastserve
# fastserve's wheel plus a wheel of every runtime dependency and of the cloud extra's clients
# (test extras are not installed).
RUN pip wheel --wheel-dir /wheels '.[cloud]'

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FASTSERVE_HEALTH_URL=http://127.0.0.1:8000/v2/health/live
RUN groupadd --gid 5000 fastserve \
    && useradd --uid 5000 --gid 5000 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin fastserve
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels 'fastserve[cloud]'
USER 5000:5000
WORKDIR /models
EXPOSE 8000
# Set FASTSERVE_HEALTH_URL when serving on another --rest_port. python, not curl: the slim image has none.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['FASTSERVE_HEALTH_URL'], timeout=2)"]
ENTRYPOINT ["fastserve"]
