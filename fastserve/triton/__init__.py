"""Triton's model configuration and statistics extensions, derived from what fastserve serves.

OVMS has neither; Triton's tools (perf_analyzer, model_analyzer) read them. config.py builds a
ModelConfig document, stats.py keeps the always-on counters the core fills and renders them.
Both produce plain dicts in Triton's JSON form; REST sends them as JSON, gRPC parses them into
the ModelConfig / ModelStatistics messages. Knows no transport.
"""
