"""Helpers of the integration tests: addresses, the Holdfast process wrapper, HTTP/1.1
clients that read responses one after another, metrics parsing, bounded waits."""
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BACKEND = os.path.join(HERE, "backends", "backend.py")
PYTHON = "/usr/bin/python3"
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")


def holdfast_bin():
    return os.environ.get("HOLDFAST_BIN", os.path.join(REPO, "build", "holdfast"))


def wait_for(pred, timeout=20.0, interval=0.02, what="condition"):
    """Polls pred() until it returns a truthy value (returned), or fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(interval)


# ---- addresses ----

_host_counter = itertools.count(2)


class Addrs:
    """Hands out (host, port) pairs, each on its own loopback address."""

    def _free(self, prefix):
        n = next(_host_counter) % 250 + 2
        host = f"{prefix}.{n}"
        with socket.socket() as s:
            s.bind((host, 0))
            return host, s.getsockname()[1]

    def backend(self):
        return self._free("127.0.1")

    def listener(self):
        return self._free("127.0.3")

    def admin(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return "127.0.0.1", s.getsockname()[1]


def hp(addr):
    return f"{addr[0]}:{addr[1]}"


# ---- backends ----

# ---- metrics ----

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {labels}, value)] of a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m:
            out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


# ---- holdfast ----

class Holdfast:
    def __init__(self, tmp_path, addrs):
        self.tmp = tmp_path
        self.addrs = addrs
        self.proc = None
        self.admin = None
        self.config_path = None
        self.stderr_path = None
        self._stderr = None
        self.exit_code = None

    def start(self, config, workers=2, drain_timeout=3, log_level="debug", wait_ready=True, extra_args=()):
        self.admin = self.addrs.admin()
        self.config_path = self.tmp / "holdfast.json"
        self.config_path.write_text(json.dumps(config, indent=2))
        self.stderr_path = self.tmp / "holdfast.stderr"
        self._stderr = open(self.stderr_path, "wb")
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.proc = subprocess.Popen(
            [holdfast_bin(), "run", "--config", str(self.config_path), "--admin-listen",
             hp(self.admin), "--workers", str(workers), "--log-level", log_level,
             "--drain-timeout", str(drain_timeout)] + list(extra_args),
            stdout=subprocess.DEVNULL, stderr=self._stderr, env=env, cwd=str(self.tmp))
        if wait_ready:
            wait_for(self.ready, timeout=20, what="holdfast /readyz")
        return self

    @property
    def pid(self):
        return self.proc.pid

    def admin_get(self, path, timeout=5):
        url = f"http://{hp(self.admin)}{path}"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=timeout) as r:
            return r.status, r.read().decode()

    def ready(self):
        if self.proc.poll() is not None:
            pytest.fail(f"holdfast exited with {self.proc.returncode}:\n{self.stderr_text()}")
        try:
            return self.admin_get("/readyz", timeout=1)[0] == 200
        except OSError:
            return False

    def metrics_text(self):
        return self.admin_get("/metrics")[1]

    def metric(self, name, **labels):
        """Sum of the samples of `name` whose labels include `labels`."""
        total = 0.0
        for n, l, v in parse_metrics(self.metrics_text()):
            if n == name and all(l.get(k) == str(want) for k, want in labels.items()):
                total += v
        return total

    def stderr_text(self):
        if not self.stderr_path or not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_bytes().decode(errors="replace")

    def logs(self):
        """holdfast's log lines that are JSON objects, parsed."""
        out = []
        for line in self.stderr_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def log_lines(self, msg, **fields):
        return [l for l in self.logs() if l.get("msg") == msg and
                all(l.get(k) == v for k, v in fields.items())]

    def wake_output(self):
        return [l.get("line", "") for l in self.log_lines("wake command output")]

    def wait_log(self, msg, count=1, timeout=20, **fields):
        return wait_for(lambda: len(self.log_lines(msg, **fields)) >= count and
                        self.log_lines(msg, **fields), timeout=timeout, what=f"log {msg!r}")

    def vm_hwm_kb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def wake_pids(self):
        return [l["pid"] for l in self.log_lines("wake command started") if "pid" in l]

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        try:
            self.exit_code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.exit_code

    def stop(self):
        if not self.proc:
            return
        wake_pids = self.wake_pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait_exit(1) is None:
                self.proc.send_signal(signal.SIGTERM)  # second signal: stop now
                if self.wait_exit(20) is None:
                    self.proc.kill()
                    self.proc.wait()
        self.exit_code = self.proc.returncode
        for pid in wake_pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        self._stderr.close()

    def sanitizer_report(self):
        text = self.stderr_text()
        for marker in SANITIZER_MARKERS:
            i = text.find(marker)
            if i >= 0:
                return text[max(0, i - 200):i + 6000]
        return None


# ---- services and clients ----

def service(name, listen, backends, wake=None, **extra):
    """A standalone service entry with test-friendly defaults (fast probes, short holds)."""
    s = {
        "namespace": "default",
        "name": name,
        "listen": [hp(a) for a in listen],
        "backends": [hp(a) for a in backends],
        "readinessPeriodMs": 50,
        "holdTimeoutSeconds": 30,
    }
    if wake:
        s["wake"] = {"command": wake}
    s.update(extra)
    return s


class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-cased name -> value (last wins)
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.headers} {self.body[:300]!r}>"


class Reader:
    """Reads HTTP/1.1 responses one after another from a socket (keep-alive, pipelining)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_response(self, head_request=False):
        status_line = self._line().decode()
        version, status, *reason = status_line.split(" ", 2)
        headers = {}
        while True:
            line = self._line()
            if not line:
                break
            k, v = line.decode().split(":", 1)
            headers[k.strip().lower()] = v.strip()
        status = int(status)
        if head_request or status in (204, 304):
            body = b""
        elif "content-length" in headers:
            body = self._exact(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exact(size)
                self._line()
        else:
            body = self.buf
            self.buf = b""
            try:
                while True:
                    self._fill()
                    body += self.buf
                    self.buf = b""
            except (EOFError, ConnectionResetError):
                pass
        return Response(status, reason[0] if reason else "", headers, body)

    def at_eof(self, timeout=10):
        """True when the peer closed the connection (nothing more to read)."""
        self.sock.settimeout(timeout)
        try:
            return not self.buf and self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def connect(addr, timeout=30):
    s = socket.create_connection(addr, timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def get_request(path="/", host="example", extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


def http_exchange(addr, raw, timeout=30, head_request=False):
    """Sends raw bytes on a new connection and reads one response."""
    with connect(addr, timeout) as s:
        s.sendall(raw)
        return Reader(s).read_response(head_request=head_request)


def http_get(addr, path="/", host="example", extra="", timeout=30):
    return http_exchange(addr, get_request(path, host, extra + "Connection: close\r\n"), timeout)
