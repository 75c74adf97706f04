"""KServe v2 protocol codec: request decoding and response encoding. Knows no OpenVINO and no sockets."""
