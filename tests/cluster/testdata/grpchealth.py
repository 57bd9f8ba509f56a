#!/usr/bin/python3
"""Pod program for the node agent's tests: a gRPC server on $POD_IP:$PORT whose standard health
service (grpc.health.v1.Health/Check) answers SERVING while the file $SERVING_FILE exists (or
always, if SERVING_FILE is unset) and NOT_SERVING otherwise. The two one-field messages are
encoded by hand: status is field 1, a varint (1 SERVING, 2 NOT_SERVING).

LISTEN_DELAY_MS: wait that long before listening. HEALTH_SERVICE: the one service name Check
knows (the request's field 1, a string); any other name, the empty one included, is answered
NOT_FOUND, as the standard health server answers a service it does not know. Unset: every name
is known."""
import os
import signal
import sys
import time
from concurrent import futures

import grpc


def asked_service(request):
    """Field 1 (tag 0x0a, length-delimited) of a HealthCheckRequest; b"" when absent."""
    if len(request) >= 2 and request[0] == 0x0A:
        n, i, shift = 0, 1, 0
        while i < len(request):                      # the length, a varint
            n |= (request[i] & 0x7F) << shift
            shift += 7
            i += 1
            if not request[i - 1] & 0x80:
                break
        return request[i:i + n]
    return b""


def check(request, context):
    known = os.environ.get("HEALTH_SERVICE")
    if known is not None and asked_service(request) != known.encode():
        context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
    f = os.environ.get("SERVING_FILE")
    return b"\x08\x01" if not f or os.path.exists(f) else b"\x08\x02"


time.sleep(int(os.environ.get("LISTEN_DELAY_MS", "0")) / 1000.0)
handler = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
    "Check": grpc.unary_unary_rpc_method_handler(check, request_deserializer=None, response_serializer=None)})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
server.add_generic_rpc_handlers((handler,))
server.add_insecure_port("%s:%s" % (os.environ["POD_IP"], os.environ["PORT"]))
server.start()
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
server.wait_for_termination()
