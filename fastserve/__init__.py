"""fastserve: a KServe v2 REST model server for OpenVINO models.

Nothing heavy is imported here: `fastserve --help` must stay instant.
"""

__version__ = "0.1.0"
SERVER_NAME = "fastserve"
