#!/usr/bin/python3
"""Pod program of the e2e suite's app (image e2e/echo): an HTTP/1.1 server on
$POD_IP:$PORT.

- GET /ready: 200 (readiness probe).
- GET /stream?n=N&ms=M: a chunked response of N chunks "<pod> i\\n", M ms apart (a response that
  lasts longer than a mode switch).
- anything else (any method): 200, JSON {"pod", "method", "path", "headers": [[name, value], ...]
  in arrival order, "body"} - the request as the pod saw it.
"""
import http.server
import json
import os
import signal
import sys
import time
import urllib.parse

signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
POD = os.environ.get("POD_NAME", "?")


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        u = urllib.parse.urlsplit(self.path)
        if u.path == "/stream":
            q = urllib.parse.parse_qs(u.query)
            count, ms = int(q.get("n", ["10"])[0]), int(q.get("ms", ["100"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(count):
                data = ("%s %d\n" % (POD, i)).encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                time.sleep(ms / 1000.0)
            self.wfile.write(b"0\r\n\r\n")
            return
        out = json.dumps({"pod": POD, "method": self.command, "path": self.path,
                          "headers": [[k, v] for k, v in self.headers.items()],
                          "body": body.decode(errors="replace")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_HEAD = _answer

    def log_message(self, *a):
        pass


http.server.ThreadingHTTPServer.request_queue_size = 1024
srv = http.server.ThreadingHTTPServer((os.environ["POD_IP"], int(os.environ["PORT"])), H)
srv.daemon_threads = True
srv.serve_forever()
