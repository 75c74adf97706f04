"""HTTP/1.1 on httptools + uvloop: bytes in, Response objects out. Knows nothing of KServe or models."""
