"""gRPC hand-written on HTTP/2, on the same uvloop loop as REST (the `h2` transport, the default).

The modules, each one job: `engine` (HTTP/2 itself, hand-written for gRPC's subset: frames,
stream states, flow control both ways), `codes` (HTTP/2 error codes), `hpackin` (request
header blocks through the `hpack` package's Decoder, repeats skipped when the table cannot
have changed), `hpackout` (the server's header blocks, pre-built without the dynamic table),
`inline` (run a handler inline until it first waits), `framing` (gRPC's 5-byte message
prefix, grpc-timeout, grpc-message, gzip), `context` (the `context` handlers get), `call` (one
stream's state), `outbound` (frames under flow control), `responder` (replies, trailers,
resets), `streams` (streaming calls), `protocol` (the asyncio.Protocol per connection),
`options` (channel arguments -> limits), `server` (listen, stop with GOAWAY). It serves the
same method table (grpc/methods.py) as the grpcio transport; docs/grpc.md says what it
implements and how each part is tested.
"""
