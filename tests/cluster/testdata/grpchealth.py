#!/usr/bin/python3
"""Pod program for the node agent's tests: a gRPC server on $POD_IP:$PORT whose standard health
service (grpc.health.v1.Health/Check) answers SERVING while the file $SERVING_FILE exists (or
always, if SERVING_FILE is unset) and NOT_SERVING otherwise. The two one-field messages are
encoded by hand: status is field 1, a varint (1 SERVING, 2 NOT_SERVING)."""
import os
import signal
import sys
from concurrent import futures

import grpc


def check(request, context):
    f = os.environ.get("SERVING_FILE")
    return b"\x08\x01" if not f or os.path.exists(f) else b"\x08\x02"


handler = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
    "Check": grpc.unary_unary_rpc_method_handler(check, request_deserializer=None, response_serializer=None)})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
server.add_generic_rpc_handlers((handler,))
server.add_insecure_port("%s:%s" % (os.environ["POD_IP"], os.environ["PORT"]))
server.start()
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
server.wait_for_termination()
