#!/usr/bin/python3
"""Pod program for the tests' clusters (a command of an image map): an HTTP server on
$POD_IP:$PORT answering with its pod name. (tests/kubesim/testdata/httpserver.py links here for
the soak's kubesim mode until the soak moves.)

Env: LISTEN_DELAY_MS (wait before listening), IGNORE_SIGTERM=1 (keep running on SIGTERM),
TERM_DELAY_MS (on SIGTERM keep serving that long, then exit: what a preStop sleep gives a pod),
READY_FILE (GET /ready answers 200 only while this file exists), ANSWER_DELAY_MS (wait that long
before each answer; with SLOW_FILE, only while that file exists).

For readiness probes run by someone else than the kubelet (the early readiness tests and
bench/coldstart):
  PROBE_PATH    the probe's path. It answers 200 only with PROBE_HEADER, if set, and 503
                without; with PROBE_PORT it is answered there and the main port answers it 503.
  PROBE_HEADER  "Name: value": the header a request for PROBE_PATH must carry.
  PROBE_PORT    a second port, on $POD_IP, listening when the main one does: PROBE_PATH as above,
                every other path 503.
  PROBE_TLS_CERT, PROBE_TLS_KEY  PEM files: the probe port speaks HTTPS with them.
  STARTUP_AFTER_MS  GET /started (either port) answers 503 until this long after listening, then
                200 (a startupProbe that passes late).
Every answer of either port carries the app's own wall clock, epoch seconds with nanoseconds:
X-Started-At (the process started), X-Listening-At (both ports bound, right after the bind),
X-Answered-At (this answer), and X-Probe-Passes (how many PROBE_PATH requests were answered 200
so far)."""
import http.server
import os
import signal
import sys
import threading
import time

STARTED_NS = time.time_ns()
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

PROBE_PATH = os.environ.get("PROBE_PATH")
PROBE_PORT = os.environ.get("PROBE_PORT")
PROBE_HEADER = None
if os.environ.get("PROBE_HEADER"):
    _name, _value = os.environ["PROBE_HEADER"].split(":", 1)
    PROBE_HEADER = (_name.strip(), _value.strip())
STARTUP_AFTER_NS = int(os.environ.get("STARTUP_AFTER_MS", "0")) * 1000000
listening_ns = None          # set once every port is bound, before any request is served
probe_passes = 0
passes_lock = threading.Lock()


def epoch(ns):
    return "%d.%09d" % divmod(ns, 1000000000)


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    probe_port = False       # the class serving PROBE_PORT says True

    def probe_answer(self):
        """(code, body) for PROBE_PATH, counting the passes."""
        global probe_passes
        if PROBE_HEADER and self.headers.get(PROBE_HEADER[0]) != PROBE_HEADER[1]:
            return 503, b"probe header missing\n"
        with passes_lock:
            probe_passes += 1
        return 200, b"ok\n"

    def answer(self):
        path = self.path.split("?", 1)[0]
        if path == "/started" and STARTUP_AFTER_NS:
            if time.time_ns() < listening_ns + STARTUP_AFTER_NS:
                return 503, b"starting\n"
            return 200, b"started\n"
        if PROBE_PATH and path == PROBE_PATH:
            if PROBE_PORT and not self.probe_port:
                return 503, b"the probe path is on the probe port\n"
            return self.probe_answer()
        if self.probe_port:
            return 503, b"not a probe path\n"
        if path == "/ready" and os.environ.get("READY_FILE") and not os.path.exists(os.environ["READY_FILE"]):
            return 503, b"not ready\n"
        return 200, ("%s\n" % os.environ.get("POD_NAME", "?")).encode()

    def do_GET(self):
        if not os.environ.get("SLOW_FILE") or os.path.exists(os.environ["SLOW_FILE"]):
            time.sleep(int(os.environ.get("ANSWER_DELAY_MS", "0")) / 1000.0)
        code, body = self.answer()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Started-At", epoch(STARTED_NS))
        self.send_header("X-Listening-At", epoch(listening_ns))
        self.send_header("X-Answered-At", epoch(time.time_ns()))
        self.send_header("X-Probe-Passes", str(probe_passes))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class ProbeH(H):
    probe_port = True


http.server.ThreadingHTTPServer.request_queue_size = 1024
srv = http.server.ThreadingHTTPServer((os.environ["POD_IP"], int(os.environ["PORT"])), H)
srv.daemon_threads = True
probe_srv = None
if PROBE_PORT:
    probe_srv = http.server.ThreadingHTTPServer((os.environ["POD_IP"], int(PROBE_PORT)), ProbeH)
    probe_srv.daemon_threads = True
    if os.environ.get("PROBE_TLS_CERT"):
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.environ["PROBE_TLS_CERT"], os.environ["PROBE_TLS_KEY"])
        # the handshake in the request's thread (on its first read), not in the accepting one
        probe_srv.socket = ctx.wrap_socket(probe_srv.socket, server_side=True, do_handshake_on_connect=False)
listening_ns = time.time_ns()
if probe_srv:
    threading.Thread(target=probe_srv.serve_forever, daemon=True).start()
srv.serve_forever()
