#!/usr/bin/python3
"""Helper backends the integration tests start as holdfast wake commands.

Every mode listens on --listen HOST:PORT and identifies itself with --name, so a test can tell
the real backend's answer from anything holdfast might have made up. Common options:

  --wake-file FILE   append one line to FILE at start (how many times the wake command ran)
  --gate FILE        do not listen before FILE exists (the test decides when the backend is up)

Modes:
  http     HTTP/1.1 keep-alive server. GET answers JSON {backend, method, path, conn_seq, total};
           POST reads the body (Content-Length or chunked) and answers its sha256 and length;
           /slow?ms=N waits N ms before answering; /raw/redirect and /raw/stream write fixed
           bytes (a 302; a chunked stream with extensions and a trailer) and close.
           --refuse-after-first SECONDS: accept one connection (the readiness probe), close the
           listening socket (connects are refused), answer the probe, reopen after SECONDS.
           --close-without-answer: read each request head, then close without a byte.
           --request-log FILE: append one JSON line {method, path, headers} per request head
           it reads (what reached the backend).
  ws       WebSocket echo server (python3-websockets): echoes "<name>:<message>".
  grpc     gRPC over h2c, generic service /holdfast.Echo/Say: answers b"<name>:" + request.
  h2c      minimal HTTP/2 prior-knowledge server: every request gets 200 with body
           "h2c backend <name> stream <id>\n".
  banner   TCP server that speaks first: sends "BANNER <name>\r\n", then echoes lines.
"""
import argparse
import hashlib
import json
import os
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse_listen(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def wait_gate(path):
    if not path:
        return
    deadline = time.monotonic() + 120
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            print("gate never opened", flush=True)
            sys.exit(3)
        time.sleep(0.02)


def say(*words):
    print(*words, flush=True)


# ---- http ----

class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def make_http_handler(args, counter):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            self.conn_seq = 0

        def log_message(self, fmt, *a):
            pass  # 300 requests would flood holdfast's log

        def answer(self, obj, status=200):
            body = (json.dumps(obj) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Backend", args.name)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def base(self):
            self.conn_seq += 1
            with counter["lock"]:
                counter["n"] += 1
                total = counter["n"]
            return {
                "backend": args.name,
                "method": self.command,
                "path": self.path,
                "conn_seq": self.conn_seq,
                "total": total,
            }

        def handle_one_request(self):
            if args.close_without_answer:
                self.raw_requestline = self.rfile.readline(65537)
                # read the head, then hang up without answering
                while True:
                    line = self.rfile.readline(65537)
                    if line in (b"\r\n", b"\n", b""):
                        break
                self.close_connection = True
                return
            super().handle_one_request()

        def parse_request(self):
            ok = super().parse_request()
            if ok and args.request_log:
                line = json.dumps({"method": self.command, "path": self.path,
                                   "headers": {k.lower(): v for k, v in self.headers.items()}})
                with counter["lock"], open(args.request_log, "a") as f:
                    f.write(line + "\n")
            return ok

        def raw(self, u):
            """Answers written byte for byte, to check nothing re-frames them."""
            self.close_connection = True
            if u.path == "/raw/redirect":
                self.wfile.write(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\n"
                                 b"X-Odd-Header:   spaced  \r\nContent-Length: 0\r\n\r\n")
                return
            self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                             b"Content-Type: text/event-stream\r\n\r\n")
            self.wfile.flush()
            for i in range(5):
                data = f"data: {i}\n\n".encode()
                self.wfile.write(b"%x;ext=%d\r\n%s\r\n" % (len(data), i, data))
                self.wfile.flush()
                time.sleep(0.02)
            self.wfile.write(b"0\r\nX-Trailer: end\r\n\r\n")

        def do_GET(self):
            u = urllib.parse.urlsplit(self.path)
            if u.path.startswith("/raw/"):
                return self.raw(u)
            obj = self.base()
            if u.path == "/slow":
                ms = int(urllib.parse.parse_qs(u.query).get("ms", ["1000"])[0])
                time.sleep(ms / 1000)
            obj["headers"] = {k.lower(): v for k, v in self.headers.items()}
            self.answer(obj)

        do_HEAD = do_GET
        do_DELETE = do_GET
        do_OPTIONS = do_GET

        def do_POST(self):
            obj = self.base()
            h = hashlib.sha256()
            n = 0
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b""):
                            pass
                        break
                    left = size
                    while left:
                        chunk = self.rfile.read(min(left, 1 << 16))
                        h.update(chunk)
                        n += len(chunk)
                        left -= len(chunk)
                    self.rfile.readline()
            else:
                left = int(self.headers.get("Content-Length", "0"))
                while left:
                    chunk = self.rfile.read(min(left, 1 << 16))
                    if not chunk:
                        break
                    h.update(chunk)
                    n += len(chunk)
                    left -= len(chunk)
            obj["sha256"] = h.hexdigest()
            obj["bytes"] = n
            self.answer(obj)

        do_PUT = do_POST

    return Handler


def run_http(args):
    host, port = parse_listen(args.listen)
    counter = {"n": 0, "lock": threading.Lock()}
    handler = make_http_handler(args, counter)
    srv = Server((host, port), handler)
    say("http backend", args.name, "listening on", args.listen)
    if args.refuse_after_first:
        conn, addr = srv.socket.accept()
        srv.socket.close()  # from here on, connects are refused
        say("first connection accepted; refusing connections for", args.refuse_after_first, "s")
        srv.process_request(conn, addr)
        time.sleep(args.refuse_after_first)
        srv = Server((host, port), handler)
        say("accepting connections again")
    srv.serve_forever()


# ---- ws ----

def run_ws(args):
    import asyncio
    import websockets

    host, port = parse_listen(args.listen)

    async def echo(ws, path=None):
        async for msg in ws:
            await ws.send(f"{args.name}:{msg}")

    async def main():
        async with websockets.serve(echo, host, port):
            say("ws backend", args.name, "listening on", args.listen)
            await asyncio.Future()

    asyncio.run(main())


# ---- grpc ----

def run_grpc(args):
    from concurrent import futures
    import grpc

    def say_rpc(request, context):
        return args.name.encode() + b":" + request

    handler = grpc.method_handlers_generic_handler(
        "holdfast.Echo", {"Say": grpc.unary_unary_rpc_method_handler(say_rpc)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(args.listen)
    server.start()
    say("grpc backend", args.name, "listening on", args.listen)
    server.wait_for_termination()


# ---- h2c ----

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(
        ">I", stream) + payload


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class H2Handler(socketserver.BaseRequestHandler):
    name = "?"

    def handle(self):
        s = self.request
        if recv_exact(s, len(H2_PREFACE)) != H2_PREFACE:
            return
        s.sendall(h2_frame(0x4, 0, 0))  # our SETTINGS, empty
        while True:
            head = recv_exact(s, 9)
            if head is None:
                return
            length = int.from_bytes(head[:3], "big")
            ftype, flags = head[3], head[4]
            stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            if recv_exact(s, length) is None and length:
                return
            if ftype == 0x4 and not flags & 0x1:  # SETTINGS -> ACK
                s.sendall(h2_frame(0x4, 0x1, 0))
            elif ftype == 0x6 and not flags & 0x1:  # PING -> ACK
                pass
            elif ftype == 0x7:  # GOAWAY
                return
            elif ftype == 0x1 and flags & 0x1:  # HEADERS with END_STREAM: a GET
                body = f"h2c backend {self.name} stream {stream}\n".encode()
                # HPACK: indexed :status 200 (static 8); content-length, literal w/o
                # indexing with indexed name (static 28)
                cl = str(len(body)).encode()
                block = b"\x88" + b"\x0f\x0d" + bytes([len(cl)]) + cl
                s.sendall(h2_frame(0x1, 0x4, stream, block) + h2_frame(0x0, 0x1, stream, body))


def run_h2c(args):
    host, port = parse_listen(args.listen)
    H2Handler.name = args.name
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    srv = socketserver.ThreadingTCPServer((host, port), H2Handler)
    say("h2c backend", args.name, "listening on", args.listen)
    srv.serve_forever()


# ---- banner ----

class BannerHandler(socketserver.StreamRequestHandler):
    name = "?"

    def handle(self):
        try:
            self.wfile.write(f"BANNER {self.name}\r\n".encode())
            self.wfile.flush()
            for line in self.rfile:
                self.wfile.write(f"{self.name} echo {line.decode().strip()}\r\n".encode())
                self.wfile.flush()
        except OSError:
            pass  # the readiness probe hangs up at once


def run_banner(args):
    host, port = parse_listen(args.listen)
    BannerHandler.name = args.name
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    srv = socketserver.ThreadingTCPServer((host, port), BannerHandler)
    say("banner backend", args.name, "listening on", args.listen)
    srv.serve_forever()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["http", "ws", "grpc", "h2c", "banner"])
    p.add_argument("--listen", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--wake-file")
    p.add_argument("--gate")
    p.add_argument("--refuse-after-first", type=float, default=0)
    p.add_argument("--close-without-answer", action="store_true")
    p.add_argument("--request-log")
    args = p.parse_args()
    if args.wake_file:
        with open(args.wake_file, "a") as f:
            f.write(f"{os.getpid()}\n")
    wait_gate(args.gate)
    {"http": run_http, "ws": run_ws, "grpc": run_grpc, "h2c": run_h2c,
     "banner": run_banner}[args.mode](args)


if __name__ == "__main__":
    main()
