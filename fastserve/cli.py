"""Command line: OVMS's flags (same names, same meaning) -> ServerSettings -> server.run().

Rules: knows argparse, logging set-up and the settings; nothing of HTTP, KServe or OpenVINO
internals (the server module, which imports OpenVINO, is imported only once the settings are
valid, so --help, --version and flag errors stay instant). A configuration problem prints
ONE line naming the file and field, or the flag, and exits with code 2 (argparse's own code
for bad flags).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from fastserve import __version__
from fastserve.errors import ConfigError
from fastserve.grpc.flags import add_grpc_flags, grpc_settings
from fastserve.settings import DEFAULT_MAX_REQUEST_SIZE, ServerSettings

log = logging.getLogger("fastserve")
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR")
CONFIG_ERROR_EXIT = 2
DEFAULT_REST_PORT = 8000
# Flags that describe the one model of --model_name/--model_path; --config_path excludes them.
SINGLE_MODEL_FLAGS = ("model_name", "model_path", "model_version_policy", "nireq", "target_device", "plugin_config",
                      "shape", "batch_size", "layout", "mean", "scale", "color_format", "precision",
                      "max_batch_size")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastserve",
        description="A KServe v2 REST model server for OpenVINO models; takes OpenVINO Model Server's flags. "
        "With no model flags it serves the bundled demo models.",
        epilog="Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when the server fails, "
        "2 for a bad configuration or flag.",
    )
    p.add_argument("--version", action="version", version=f"fastserve {__version__}")
    models = p.add_argument_group("models (as OVMS)")
    models.add_argument("--config_path", help="config.json with model_config_list (excludes the single-model flags)")
    models.add_argument("--model_name", help="name of the single model to serve (with --model_path)")
    models.add_argument("--model_path", help="folder with <version>/model.xml|model.onnx, or one model file")
    models.add_argument("--model_version_policy", help='e.g. {"latest": {"num_versions": 2}}, {"all": {}}')
    models.add_argument("--nireq", type=int, help="infer requests per model version (0: OpenVINO's optimal number)")
    models.add_argument("--target_device", help="OpenVINO device: CPU (default), GPU, NPU, AUTO, HETERO:...")
    models.add_argument("--plugin_config", help='OpenVINO properties as JSON, e.g. {"PERFORMANCE_HINT": "THROUGHPUT"}')
    models.add_argument("--shape", help='"(1,3,224,224)", "auto", or JSON per input; dims may be -1 or a:b')
    models.add_argument("--batch_size", help="batch size, or auto for a dynamic batch dimension")
    models.add_argument("--max_batch_size", type=int,
                        help="fastserve's own: join concurrent requests into batches of up to N rows; 0: never; "
                        "unset: where a load-time probe shows batches pay (docs/batching.md)")
    models.add_argument("--layout", help='input layout, e.g. "NHWC" or "NHWC:NCHW" (request:model)')
    models.add_argument("--mean", help='subtracted from the input: one value or per channel, "[123.675,116.28,103.53]"')
    models.add_argument("--scale", help='divides after mean: one value or per channel, "[58.395,57.12,57.375]"')
    models.add_argument("--color_format", help='"<model format>:<format sent>", e.g. BGR:RGB (RGB, BGR, GRAY, NV12, '
                        'NV12_2, I420, I420_3)')
    models.add_argument("--precision", help='"<datatype sent>:<model datatype>", e.g. UINT8:FP32')
    models.add_argument("--cache_dir", help="OpenVINO model cache folder")
    models.add_argument("--remote_cache_dir",
                        help="where s3/gs/az/azfs models are cached (default: fastserve-remote-<uid> in /tmp)")
    rest = p.add_argument_group("REST server")
    rest.add_argument("--rest_port", type=int, help=f"port (default {DEFAULT_REST_PORT}; 0 picks a free one)")
    rest.add_argument("--rest_bind_address", default="0.0.0.0", help="address(es) to bind, comma-separated")
    rest.add_argument("--rest_workers", type=int, default=1,
                      help="server processes sharing the port (SO_REUSEPORT), restarted if they die; 1: no "
                      "supervisor process (each worker holds its own copy of the models)")
    rest.add_argument("--max_request_size", type=int, default=DEFAULT_MAX_REQUEST_SIZE, help="body limit in bytes")
    rest.add_argument("--max_connections", type=int, default=10_000, help="open connections at most")
    rest.add_argument("--keep_alive_timeout", type=float, default=60.0, help="idle keep-alive seconds")
    rest.add_argument("--header_timeout", type=float, default=10.0, help="seconds to send a request's headers, 0 off")
    rest.add_argument("--body_timeout", type=float, default=30.0, help="seconds a body may stall either way, 0 off")
    rest.add_argument("--shutdown_timeout", type=float, default=30.0, help="seconds in-flight requests get on SIGTERM")
    ops = p.add_argument_group("operations")
    ops.add_argument("--log_level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                     help="INFO by default; DEBUG also logs every request")
    ops.add_argument("--log_path", help="log to this file instead of stderr")
    ops.add_argument("--metrics_enable", action="store_true", help="serve Prometheus metrics at /metrics")
    add_operations_flags(p, ops)
    ops.add_argument("--file_system_poll_wait_seconds", type=int, default=1,
                     help="seconds between checks of config.json and version folders (hot reload); "
                     "0: only on POST /v1/config/reload")
    add_grpc_flags(p)
    return p


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """Validate the flags and read the configuration they point at; ConfigError names what is wrong."""
    from fastserve.config import load_config_file, model_from_flags, pipelines_from_doc
    from fastserve.storage.location import scheme_of, set_cache_root

    given = [f"--{flag}" for flag in SINGLE_MODEL_FLAGS if getattr(args, flag) is not None]
    config_path = None
    doc: dict[str, Any] = {}
    set_cache_root(Path(args.remote_cache_dir).expanduser().resolve() if args.remote_cache_dir else None)
    if args.config_path:
        if given:
            raise ConfigError(f"--config_path excludes the single-model flags ({', '.join(given)})")
        if scheme_of(args.config_path):  # s3://...: a local copy, fetched again at every reload poll
            from fastserve.storage.configfile import fetch_config

            config_path = fetch_config(args.config_path)
        else:
            config_path = Path(args.config_path).expanduser().resolve()
        models, doc = load_config_file(config_path)
    elif args.model_name is not None or args.model_path is not None:
        if args.model_path is None:
            raise ConfigError("--model_name needs --model_path (the model's folder or file)")
        if args.model_name is None:
            raise ConfigError("--model_path needs --model_name (the name clients use in /v2/models/<name>)")
        models = [
            model_from_flags(
                args.model_name,
                args.model_path,
                version_policy=args.model_version_policy,
                nireq=args.nireq,
                target_device=args.target_device,
                plugin_config=args.plugin_config,
                shape=args.shape,
                batch_size=args.batch_size,
                layout=args.layout,
                max_batch_size=args.max_batch_size,
                preprocess={key: getattr(args, key) for key in ("mean", "scale", "color_format", "precision")},
            )
        ]
    elif given:
        raise ConfigError(f"{', '.join(given)}: needs --model_name and --model_path (or put it in config.json)")
    else:
        from fastserve.demo import DEMO_CONFIG

        config_path = DEMO_CONFIG
        models, doc = load_config_file(DEMO_CONFIG)
    rest_port = DEFAULT_REST_PORT if args.rest_port is None else args.rest_port
    if not 0 <= rest_port <= 65535:
        raise ConfigError(f"--rest_port: {rest_port} is not a port (0-65535; 0 picks a free one)")
    if not any(host.strip() for host in args.rest_bind_address.split(",")):
        raise ConfigError("--rest_bind_address: no address given")
    for flag in ("rest_workers", "max_connections"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag}: must be at least 1")
    for flag in ("max_request_size", "keep_alive_timeout", "header_timeout", "body_timeout",
                 "shutdown_timeout", "file_system_poll_wait_seconds"):
        if getattr(args, flag) < 0:
            raise ConfigError(f"--{flag}: must not be negative")
    return ServerSettings(
        models=tuple(models),
        pipelines=pipelines_from_doc(doc, config_path, models) if config_path is not None else (),
        config_path=config_path,
        rest_port=rest_port,
        rest_bind_address=args.rest_bind_address,
        max_request_size=args.max_request_size,
        log_level=args.log_level,
        log_path=Path(args.log_path) if args.log_path else None,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        max_connections=args.max_connections,
        keep_alive_timeout=args.keep_alive_timeout,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        shutdown_timeout=args.shutdown_timeout,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        rest_workers=max(args.rest_workers, args.grpc_workers if args.port else 1),
        **operations_settings(args, doc, config_path),
        **grpc_settings(args),
    )


def add_operations_flags(p: argparse.ArgumentParser, ops: Any) -> None:
    """Metrics, Server-Timing, CORS, overload and compression flags (see docs/operations.md)."""
    ops.add_argument("--metrics_list", help="comma-separated metric families (default: OVMS's default set)")
    ops.add_argument("--server_timing_enable", action="store_true",
                     help="add a Server-Timing header (decode, queue, infer, encode ms) to infer responses")
    cors = p.add_argument_group("CORS (no CORS headers at all unless --allowed_origins is given)")
    cors.add_argument("--allowed_origins", help='origins allowed to call from a browser, comma-separated, or "*"')
    cors.add_argument("--allowed_methods", default="*", help='methods allowed in a preflight (default "*")')
    cors.add_argument("--allowed_headers", default="*", help='request headers allowed in a preflight (default "*")')
    cors.add_argument("--allow_credentials", action="store_true", help="allow cookies/credentials cross-origin")
    limits = p.add_argument_group("overload and compression")
    limits.add_argument("--max_queue_size", type=int, default=4096,
                        help="requests waiting for an infer request per model version, and inline requests per turn "
                        "of the event loop per worker; more get 503")
    limits.add_argument("--request_timeout_seconds", type=float, default=30.0,
                        help="seconds a request may wait for an infer request before a 503 (0: no limit)")
    limits.add_argument("--max_decompressed_size", type=int, default=64 << 20,
                        help="gzip/deflate request bodies may inflate to this many bytes (413 beyond)")
    limits.add_argument("--compression_min_size", type=int, default=1024,
                        help="gzip/deflate responses of at least this many bytes when asked (0: never)")


def operations_settings(args: argparse.Namespace, doc: dict[str, Any], config_path: Path | None) -> dict[str, Any]:
    """ServerSettings fields of add_operations_flags, with config.json's OVMS `monitoring` section."""
    from fastserve.cors import check_header_value
    from fastserve.metrics import parse_families

    where = f"{config_path}: monitoring.metrics"
    metrics = doc.get("monitoring", {}).get("metrics", {})
    if not isinstance(metrics, dict) or not set(metrics) <= {"enable", "metrics_list"}:
        raise ConfigError(f"{where}: must be an object with enable and metrics_list")
    if not isinstance(metrics.get("enable", False), bool):
        raise ConfigError(f"{where}.enable: must be true or false")
    listed = metrics.get("metrics_list", [])
    if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
        raise ConfigError(f"{where}.metrics_list: must be a list of metric names")
    flag = "--metrics_list" if args.metrics_list is not None else f"{where}.metrics_list"
    try:
        families = parse_families(args.metrics_list if args.metrics_list is not None else ",".join(listed))
        for name in ("allowed_origins", "allowed_methods", "allowed_headers"):
            if getattr(args, name) is not None:
                flag = f"--{name}"
                check_header_value(flag, getattr(args, name))
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc}") from None
    for name in ("max_queue_size", "request_timeout_seconds", "max_decompressed_size", "compression_min_size"):
        if getattr(args, name) < 0:
            raise ConfigError(f"--{name}: must not be negative")
    return {
        "metrics_enable": args.metrics_enable or metrics.get("enable", False),
        "metrics_list": families,
        "server_timing": args.server_timing_enable,
        "allowed_origins": args.allowed_origins or None,
        "allowed_methods": args.allowed_methods,
        "allowed_headers": args.allowed_headers,
        "allow_credentials": args.allow_credentials,
        "max_queue_size": args.max_queue_size,
        "request_timeout_seconds": args.request_timeout_seconds,
        "max_decompressed_size": args.max_decompressed_size,
        "compression_min_size": args.compression_min_size,
    }


def configure_logging(level: str, path: Path | None) -> None:
    """One handler on the root logger: stderr, or the --log_path file (TRACE is DEBUG here)."""
    try:
        handler: logging.Handler = logging.FileHandler(path) if path else logging.StreamHandler(sys.stderr)
    except OSError as exc:
        raise ConfigError(f"--log_path: cannot open {path}: {exc.strerror}") from None
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s][%(name)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel({"TRACE": "DEBUG"}.get(level, level))


def log_grpc_mapping(args: argparse.Namespace) -> None:
    """Say what the gRPC flags that have no one-to-one grpcio setting do here."""
    if args.grpc_max_threads is not None:
        log.info("--grpc_max_threads %d: gRPC calls run on the event loop, no thread per call; nothing to bound",
                 args.grpc_max_threads)
    if args.port and args.grpc_workers > args.rest_workers:
        log.info("--grpc_workers %d: %d worker processes serve REST and gRPC", args.grpc_workers, args.grpc_workers)
    if not args.port and args.grpc_workers > 1:
        log.warning("--grpc_workers %d: no gRPC server without --port", args.grpc_workers)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    to_file = False
    try:
        settings = settings_from_args(args)
        configure_logging(settings.log_level, settings.log_path)
        to_file = settings.log_path is not None
        log_grpc_mapping(args)
        if settings.config_path is not None and not args.config_path:
            log.info("no --config_path or --model_path given: serving the bundled demo models")
        if settings.rest_workers > 1:
            from fastserve.workers import supervise  # forks the workers; this process loads no model

            return supervise(settings)
        from fastserve.server import run

        return run(settings)
    except ConfigError as exc:
        print(f"fastserve: error: {exc}", file=sys.stderr, flush=True)
        if to_file:
            log.error("%s", exc)
        return CONFIG_ERROR_EXIT
