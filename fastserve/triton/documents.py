"""The config and statistics documents for a model name and version: the lookups both transports share.

Rules: OVMS's lookup order (a model version, then a DAG pipeline, whose version is ignored) and
its errors (ModelNotFound / VersionNotFound: 404 over REST, NOT_FOUND over gRPC; a version still
loading: 503 / UNAVAILABLE). Returns dicts in Triton's JSON form; knows no transport.
"""

from __future__ import annotations

from typing import Any

from fastserve.core.inference import InferenceCore
from fastserve.errors import ModelNotFound
from fastserve.pipelines.graph import PIPELINE_VERSION
from fastserve.triton.config import model_config, pipeline_config


def config_document(core: InferenceCore, name: str, version: int | None) -> dict[str, Any]:
    """GET /v2/models/{name}[/versions/{version}]/config: the latest served version without one."""
    repository = core.repository
    try:
        servable = repository.get(name, version)
    except ModelNotFound:
        target = core.pipeline(name)
        return pipeline_config(target.name, target.inputs, target.outputs)
    return model_config(servable, repository.model(name).settings)


def stats_document(core: InferenceCore, name: str | None, version: int | None) -> dict[str, Any]:
    """GET /v2/models[/{name}[/versions/{version}]]/stats: every served version of every model and
    pipeline, of one model (every version, as Triton answers without a version), or of one version."""
    repository = core.repository
    stats = []
    if name is None:
        for model_name, model in sorted(repository.models.items()):
            stats += [s.stats.document(model_name, s.version_text) for _, s in sorted(model.versions.items())]
        pipelines = repository.pipelines
        for pipeline_name, pipeline in sorted(pipelines.pipelines.items() if pipelines is not None else ()):
            stats.append(pipeline.stats.document(pipeline_name, PIPELINE_VERSION))
        return {"model_stats": stats}
    if name in repository.models:
        if version is not None:
            servables = [repository.get(name, version)]
        else:
            model = repository.model(name)
            if not model.versions:
                repository.get(name, None)  # raises: still loading (503), or nothing loaded (404)
            servables = [s for _, s in sorted(model.versions.items())]
        return {"model_stats": [s.stats.document(name, s.version_text) for s in servables]}
    pipelines = repository.pipelines
    pipeline = pipelines.get(name) if pipelines is not None else None
    if pipeline is None:
        raise ModelNotFound()
    return {"model_stats": [pipeline.stats.document(name, PIPELINE_VERSION)]}
