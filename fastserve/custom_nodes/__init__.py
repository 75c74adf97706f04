"""Example custom nodes for pipelines, usable as they are by module name in config.json:

    "custom_node_library_config_list": [
        {"name": "crop", "base_path": "fastserve.custom_nodes.image_crop"},
        {"name": "topk", "base_path": "fastserve.custom_nodes.argmax"}
    ]

Each module follows the interface of fastserve/pipelines/custom.py (docs/pipelines.md).
"""
