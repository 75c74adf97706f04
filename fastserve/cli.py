"""Command line: OVMS's flags (same names, same meaning) -> ServerSettings -> server.run().

Rules: knows argparse and the settings, nothing of HTTP, KServe or OpenVINO internals.
A configuration problem prints one line naming the file or flag and exits with code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from fastserve import __version__
from fastserve.errors import ConfigError
from fastserve.settings import DEFAULT_MAX_REQUEST_SIZE, ModelSettings, ServerSettings

log = logging.getLogger("fastserve")
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR")
SINGLE_MODEL_FLAGS = ("model_path", "nireq", "target_device", "plugin_config", "model_version_policy", "shape",
                      "batch_size", "layout")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastserve",
        description="A KServe v2 REST model server for OpenVINO models; takes OpenVINO Model Server's flags. "
        "With no model flags it serves the bundled demo models.",
    )
    p.add_argument("--version", action="version", version=f"fastserve {__version__}")
    models = p.add_argument_group("models (as OVMS)")
    models.add_argument("--config_path", help="config.json with model_config_list (excludes the single-model flags)")
    models.add_argument("--model_name", help="name of the single model to serve")
    models.add_argument("--model_path", help="folder with <version>/model.xml|model.onnx, or one model file")
    models.add_argument("--model_version_policy", help='e.g. {"latest": {"num_versions": 2}}, {"all": {}}')
    models.add_argument("--nireq", type=int, help="infer requests per model version (0: OpenVINO's optimal number)")
    models.add_argument("--target_device", help="OpenVINO device: CPU (default), GPU, NPU, AUTO, HETERO:...")
    models.add_argument("--plugin_config", help='OpenVINO properties as JSON, e.g. {"PERFORMANCE_HINT": "THROUGHPUT"}')
    models.add_argument("--shape", help='"(1,3,224,224)", "auto", or JSON per input; dims may be -1 or a:b')
    models.add_argument("--batch_size", help="batch size, or auto for a dynamic batch dimension")
    models.add_argument("--layout", help='input layout, e.g. "NHWC" or "NHWC:NCHW" (request:model)')
    models.add_argument("--cache_dir", help="OpenVINO model cache folder")
    rest = p.add_argument_group("REST server")
    rest.add_argument("--rest_port", type=int, help="port (default 8000; 0 picks a free one)")
    rest.add_argument("--rest_bind_address", default="0.0.0.0", help="address(es) to bind, comma-separated")
    rest.add_argument("--rest_workers", type=int, default=1, help="server processes sharing the port")
    rest.add_argument("--max_request_size", type=int, default=DEFAULT_MAX_REQUEST_SIZE, help="body limit in bytes")
    rest.add_argument("--max_connections", type=int, default=10_000, help="open connections at most")
    rest.add_argument("--keep_alive_timeout", type=float, default=60.0, help="idle keep-alive seconds")
    rest.add_argument("--shutdown_timeout", type=float, default=30.0, help="seconds in-flight requests get on SIGTERM")
    ops = p.add_argument_group("operations")
    ops.add_argument("--log_level", default="INFO", type=str.upper, choices=LOG_LEVELS)
    ops.add_argument("--log_path", help="log to this file instead of stderr")
    ops.add_argument("--metrics_enable", action="store_true", help="serve Prometheus metrics at /metrics")
    ops.add_argument("--file_system_poll_wait_seconds", type=int, default=1, help="config/model poll interval, 0 off")
    ignored = p.add_argument_group("accepted for OVMS compatibility, not used (no gRPC)")
    for flag in ("--port", "--grpc_workers", "--grpc_bind_address", "--grpc_max_threads", "--grpc_memory_quota",
                 "--grpc_channel_arguments"):
        ignored.add_argument(flag, help=argparse.SUPPRESS)
    return p


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    from fastserve.config import (
        load_config_file,
        parse_batch_size,
        parse_plugin_config,
        parse_shape,
        parse_version_policy,
    )

    config_path = None
    if args.config_path:
        given = [f"--{flag}" for flag in SINGLE_MODEL_FLAGS + ("model_name",) if getattr(args, flag) is not None]
        if given:
            raise ConfigError(f"--config_path excludes the single-model flags ({', '.join(given)})")
        config_path = Path(args.config_path).resolve()
        models, _ = load_config_file(config_path)
    elif args.model_path or args.model_name:
        if not (args.model_path and args.model_name):
            raise ConfigError("--model_name and --model_path go together")
        path = Path(args.model_path).expanduser().resolve()
        if not path.exists():
            raise ConfigError(f"--model_path: {path} does not exist")
        models = [
            ModelSettings(
                name=args.model_name,
                base_path=path,
                version_policy=parse_version_policy(args.model_version_policy, "--model_version_policy"),
                nireq=args.nireq or 0,
                target_device=args.target_device or "CPU",
                plugin_config=parse_plugin_config(args.plugin_config, "--plugin_config"),
                shape=parse_shape(args.shape, "--shape"),
                batch_size=parse_batch_size(args.batch_size, "--batch_size"),
                layout=args.layout or None,
            )
        ]
    else:
        from fastserve.demo import DEMO_CONFIG

        config_path = DEMO_CONFIG
        models, _ = load_config_file(DEMO_CONFIG)
    if args.rest_workers < 1:
        raise ConfigError("--rest_workers must be at least 1")
    return ServerSettings(
        models=tuple(models),
        config_path=config_path,
        rest_port=8000 if args.rest_port is None else args.rest_port,
        rest_bind_address=args.rest_bind_address,
        max_request_size=args.max_request_size,
        log_level=args.log_level,
        log_path=Path(args.log_path) if args.log_path else None,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        max_connections=args.max_connections,
        keep_alive_timeout=args.keep_alive_timeout,
        shutdown_timeout=args.shutdown_timeout,
        metrics_enable=args.metrics_enable,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        rest_workers=args.rest_workers,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fastserve.server import configure_logging, run

    configure_logging(args.log_level, args.log_path)
    if args.port not in (None, "0"):
        log.warning("--port %s: fastserve has no gRPC endpoint; serving REST only", args.port)
    try:
        settings = settings_from_args(args)
        if settings.config_path is not None and not args.config_path:
            log.info("no --config_path or --model_path given: serving the bundled demo models")
        return run(settings)
    except ConfigError as exc:
        print(f"fastserve: error: {exc}", file=sys.stderr)
        return 2
