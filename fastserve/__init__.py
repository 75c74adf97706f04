"""fastserve: a KServe v2 REST model server for OpenVINO models.

Nothing heavy is imported here: `fastserve --help` must stay instant.
"""

from fastserve import telemetry

__version__ = "0.1.0"
SERVER_NAME = "fastserve"

# Before anything imports openvino: its package would report each start to a web service.
telemetry.install()
