#!/usr/bin/python3
"""Pod program for the tests' clusters (a command of an image map): an HTTP server on
$POD_IP:$PORT answering with its pod name. (tests/kubesim/testdata/httpserver.py links here for
the soak's kubesim mode until the soak moves.)

Env: LISTEN_DELAY_MS (wait before listening), IGNORE_SIGTERM=1 (keep running on SIGTERM),
TERM_DELAY_MS (on SIGTERM keep serving that long, then exit: what a preStop sleep gives a pod),
READY_FILE (GET /ready answers 200 only while this file exists), ANSWER_DELAY_MS (wait that long
before each answer; with SLOW_FILE, only while that file exists)."""
import http.server
import os
import signal
import sys
import threading
import time

time.sleep(int(os.environ.get("LISTEN_DELAY_MS", "0")) / 1000.0)
if os.environ.get("IGNORE_SIGTERM") == "1":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif os.environ.get("TERM_DELAY_MS"):
    def _later(*a):
        t = threading.Timer(int(os.environ["TERM_DELAY_MS"]) / 1000.0, os._exit, (0,))
        t.daemon = True
        t.start()
    signal.signal(signal.SIGTERM, _later)
else:
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if not os.environ.get("SLOW_FILE") or os.path.exists(os.environ["SLOW_FILE"]):
            time.sleep(int(os.environ.get("ANSWER_DELAY_MS", "0")) / 1000.0)
        if self.path == "/ready" and os.environ.get("READY_FILE") and not os.path.exists(os.environ["READY_FILE"]):
            code, body = 503, b"not ready\n"
        else:
            code, body = 200, ("%s\n" % os.environ.get("POD_NAME", "?")).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


http.server.ThreadingHTTPServer.request_queue_size = 1024
srv = http.server.ThreadingHTTPServer((os.environ["POD_IP"], int(os.environ["PORT"])), H)
srv.daemon_threads = True
srv.serve_forever()
