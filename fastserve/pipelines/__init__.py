"""DAG pipelines as OVMS defines them in config.json (pipeline_config_list), with Python custom nodes.

config.py parses and checks the structure, custom.py loads custom node libraries, graph.py
binds a pipeline to loaded models and checks tensor specs, executor.py runs a request,
registry.py keeps the served pipelines (replaceable whole, for hot reload: rebuild_pipelines),
binding.py binds a decoded v2 request. Submodules are imported where used, so parsing a
config does not load OpenVINO. See docs/pipelines.md.
"""
