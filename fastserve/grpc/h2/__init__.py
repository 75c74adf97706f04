"""gRPC hand-written on HTTP/2 with the `h2` state machine, on the same uvloop loop as REST.

The modules, each one job: `inline` (run a handler inline until it first waits), `framing`
(gRPC's 5-byte message prefix, grpc-timeout, grpc-message, gzip), `context` (the `context`
handlers get), `call` (one stream's state), `outbound` (frames under flow control), `responder`
(replies, trailers, resets), `streams` (streaming calls), `protocol` (the asyncio.Protocol
per connection), `options` (channel arguments -> limits),
`server` (listen, stop with GOAWAY). It serves the same method table (grpc/methods.py) as the
grpcio transport; docs/grpc.md says what it implements and how each part is tested.
"""
