#!/usr/bin/python3
"""Pod program of tests/e2e/test_protocols.py (image e2e/python: the container's args are
this script's path, a mode and its flags). Every answer names the pod ($POD_NAME), so a test
can tell the pod's answer from anything holdfast could make up. Listens on $POD_IP.

Modes:
  grpc --port P     gRPC over h2c, generic service holdfast.Proto (bytes in, bytes out):
                    Say (unary): b"<pod> <peer>:" + request (peer: the connection's
                    client address as the pod sees it, e.g. ipv4:127.0.0.9:41234);
                    Count (server streaming): request b"N,MS": N messages b"<pod> i", MS ms apart.
  ws --port P       WebSocket echo (python3-websockets): each message m answered "<pod>:m";
                    plain GET /ready answers 200 (readiness probe).
  tls --port P --cert C --key K
                    HTTP/1.1 over TLS (python ssl, the pod's own certificate): any request is
                    answered 200 JSON {"pod", "path", "sni", "tls"}; "sni" is the server name the
                    client sent in its ClientHello, as the pod saw it. /ready too.
  http --listen PORT:ROLE [--listen PORT:ROLE ...]
                    one HTTP/1.1 server per PORT; any request answered 200 JSON
                    {"pod", "role", "port", "path", "host"}.
"""
import argparse
import http.server
import json
import os
import signal
import ssl
import threading
import time

POD = os.environ.get("POD_NAME", "?")
IP = os.environ.get("POD_IP", "127.0.0.1")
# SIGTERM (the pod deleted): exit at once, whatever threads grpc/asyncio still run
signal.signal(signal.SIGTERM, lambda *a: os._exit(0))


def run_grpc(args):
    from concurrent import futures

    import grpc

    def say(request, context):
        return ("%s %s:" % (POD, context.peer())).encode() + request

    def count(request, context):
        n, ms = (int(x) for x in request.decode().split(","))
        for i in range(n):
            yield ("%s %d" % (POD, i)).encode()
            time.sleep(ms / 1000.0)

    handler = grpc.method_handlers_generic_handler("holdfast.Proto", {
        "Say": grpc.unary_unary_rpc_method_handler(say),
        "Count": grpc.unary_stream_rpc_method_handler(count)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port("%s:%d" % (IP, args.port))
    server.start()
    print("grpc on %s:%d" % (IP, args.port), flush=True)
    server.wait_for_termination()


def run_ws(args):
    import asyncio

    import websockets
    from websockets.datastructures import Headers

    async def echo(ws, path=None):
        async for msg in ws:
            await ws.send("%s:%s" % (POD, msg))

    async def ready(path, headers):
        if path == "/ready":
            return http.HTTPStatus.OK, Headers([("Content-Type", "text/plain")]), b"ok\n"
        return None

    async def main():
        async with websockets.serve(echo, IP, args.port, process_request=ready, max_size=1 << 20,
                                    ping_interval=None):
            print("ws on %s:%d" % (IP, args.port), flush=True)
            await asyncio.Future()

    asyncio.run(main())


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


def json_handler(extra):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            obj = {"pod": POD, "path": self.path, "host": self.headers.get("Host")}
            obj.update(extra(self))
            out = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    return H


def run_tls(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)

    def on_sni(sslsock, name, context):
        sslsock.sni = name  # the SSLSocket being handshaken: the name as the pod received it

    ctx.sni_callback = on_sni
    handler = json_handler(lambda h: {"sni": getattr(h.connection, "sni", None),
                                      "tls": h.connection.version()})

    class TLSServer(Server):
        def finish_request(self, request, client_address):
            # the handshake in the connection's own thread: a probe that connects and hangs up
            # (or a slow client) never blocks the accept loop
            try:
                conn = ctx.wrap_socket(request, server_side=True)
            except OSError:
                return
            self.RequestHandlerClass(conn, client_address, self)

    srv = TLSServer((IP, args.port), handler)
    print("tls on %s:%d" % (IP, args.port), flush=True)
    srv.serve_forever()


def run_http(args):
    servers = []
    for spec in args.listen:
        port, role = spec.split(":", 1)
        port = int(port)
        h = json_handler(lambda h, role=role, port=port: {"role": role, "port": port})
        servers.append(Server((IP, port), h))
        print("http %s on %s:%d" % (role, IP, port), flush=True)
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    servers[0].serve_forever()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["grpc", "ws", "tls", "http"])
    p.add_argument("--port", type=int)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--listen", action="append", default=[])
    args = p.parse_args()
    {"grpc": run_grpc, "ws": run_ws, "tls": run_tls, "http": run_http}[args.mode](args)


if __name__ == "__main__":
    main()
