"""Settings: frozen dataclasses built by the CLI and the config loader.

Rules: validation only, no I/O. Field names follow OVMS (`nireq`, `target_device`, ...),
so what a user wrote in an OVMS config means the same thing here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# OVMS's limit: Drogon's client_max_body_size is set to 1 GiB.
DEFAULT_MAX_REQUEST_SIZE = 1 << 30


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    """OVMS `model_version_policy`: latest N (default 1), specific versions, or all."""

    kind: str = "latest"  # "latest" | "specific" | "all"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: list[int]) -> list[int]:
        """The versions to serve out of those on disk, ascending."""
        ordered = sorted(available)
        if self.kind == "all":
            return ordered
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered[-self.num_versions :] if self.num_versions > 0 else []

    def describe(self) -> str:
        if self.kind == "specific":
            return f"specific {list(self.versions)}"
        return "all" if self.kind == "all" else f"latest {self.num_versions}"


@dataclass(frozen=True, slots=True)
class ModelSettings:
    name: str
    base_path: Path  # a remote base path's local mirror (fastserve/storage/) when `remote` is set
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    nireq: int = 0  # 0: OpenVINO's optimal number of infer requests
    target_device: str = "CPU"
    plugin_config: dict[str, Any] = field(default_factory=dict)
    # None: the model's own shape; "auto": every dim dynamic; str: "(1,3,224,224)" for all inputs;
    # dict: per-input shape strings.
    shape: str | dict[str, str] | None = None
    batch_size: int | str | None = None  # int, "auto" (dynamic batch) or None
    layout: str | dict[str, str] | None = None
    # OVMS's preprocessing options, normalized by fastserve/preprocess_config.py and built into the
    # model by fastserve/models/preprocess.py: one float or one per channel; "BGR:RGB"; "UINT8:FP32".
    mean: float | tuple[float, ...] | None = None
    scale: float | tuple[float, ...] | None = None
    color_format: str | None = None
    precision: str | None = None
    # fastserve's own keys (OVMS has no dynamic batching). max_batch_size None (unset): batching where a
    # load-time probe shows it pays (models/batching.py); 0: off; N > 0: on, up to N rows. The delay
    # None: 0 with an explicit max_batch_size, chosen from the probe by default.
    max_batch_size: int | None = None
    max_queue_delay_microseconds: int | None = None
    # "auto" picks inline or async per model by a warm-up probe; see models/servable.py.
    execution_mode: str = "auto"
    # The remote base path (s3://bucket/path) mirrored into base_path before versions are listed; "" for local.
    remote: str = ""
    # Where the model was configured, for error messages: "<config.json>: model_config_list[2].config",
    # or "" for the single-model CLI flags.
    source: str = ""

    def where(self, key: str) -> str:
        """The config field (or CLI flag) that sets `key`, so an error names what to fix."""
        if self.source:
            return f"{self.source}.{key}"
        return "--" + CLI_FLAGS.get(key, key)


# Config key -> single-model CLI flag, where the names differ.
CLI_FLAGS = {"name": "model_name", "base_path": "model_path"}


@dataclass(frozen=True, slots=True)
class ServerSettings:
    models: tuple[ModelSettings, ...] = ()
    config_path: Path | None = None
    rest_port: int = 8000
    rest_bind_address: str = "0.0.0.0"
    max_request_size: int = DEFAULT_MAX_REQUEST_SIZE
    log_level: str = "INFO"
    log_path: Path | None = None
    cache_dir: Path | None = None
    # Connections beyond this get 503 and are closed; each costs a socket and ~10 KB.
    max_connections: int = 10_000
    # uvicorn uses 5 s; locust and tritonclient keep connections idle between bursts, so longer.
    keep_alive_timeout: float = 60.0
    # A client must send complete headers within this time (slowloris).
    header_timeout: float = 10.0
    # A started request body, and a response being sent, must make progress at least this often.
    body_timeout: float = 30.0
    # On SIGTERM, in-flight requests get this long to finish.
    shutdown_timeout: float = 30.0
    metrics_enable: bool = False
    file_system_poll_wait_seconds: int = 1
    rest_workers: int = 1
    # Metric families to report (OVMS names); empty: OVMS's default set.
    metrics_list: tuple[str, ...] = ()
    # CORS: no headers at all unless origins are given (OVMS sends "*" by default).
    allowed_origins: str | None = None
    allowed_methods: str = "*"
    allowed_headers: str = "*"
    allow_credentials: bool = False
    server_timing: bool = False
    # Overload: requests waiting for an infer request, per model version, and how long each may
    # wait; past either the answer is 503 with Retry-After (see models/pool.py).
    max_queue_size: int = 4096
    request_timeout_seconds: float = 30.0
    # A gzip/deflate request body may inflate to this much (413 beyond): Triton's default input
    # limit, 64 MiB, so a 64 KiB "zip bomb" cannot make the server allocate 1 GiB.
    max_decompressed_size: int = 64 << 20
    # Responses at least this big are compressed when Accept-Encoding asks (Drogon, hence OVMS,
    # uses 1 KiB); 0 never compresses.
    compression_min_size: int = 1024
    pipelines: tuple[Any, ...] = ()
    # gRPC (fastserve/grpc/flags.py has OVMS's flags and defaults): port 0 serves no gRPC.
    grpc_port: int = 0
    grpc_bind_address: str = "0.0.0.0"
    grpc_workers: int = 1
    grpc_max_threads: int | None = None
    grpc_memory_quota: int = 2 << 30
    grpc_channel_arguments: tuple[tuple[str, int | str], ...] = ()
    grpc_transport: str = "h2"  # or "grpcio" (fastserve's --grpc_transport)
