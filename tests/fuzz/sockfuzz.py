#!/usr/bin/python3
"""sockfuzz: a socket-level fuzzer for holdfast's data plane.

It starts holdfast (best the ASan+UBSan build) in standalone mode with a config made to reach
every path of a connection's life: a held HTTP service with probeResponse rules (Exact,
PathPrefix, RegularExpression, header and query matches) whose wake never produces a backend,
a tiny held service whose hold limits are reached at once, a relayed service (a ready backend
this script starts), a mirror service (its backend echoes), a service whose wake starts a
backend after a short delay that exits again seconds later (so it flips between held and
relayed), a `tcp` service that wakes only sometimes, and the shared Host-routed port. Limits are
low so the bounds are reached (maxHeadBytes 2048, holdBufferBytes 4096, held connections and
bytes per service and overall, a 2 s head timeout, 3 s hold timeouts, an open-file limit of
128). Then client threads open connections to random listeners and send generated inputs:
valid, pipelined and probe-matching requests, requests split at random byte boundaries with
pauses, malformed and smuggling-shaped requests (CL+TE, bad chunking, obs-fold, NULs, bare LF,
duplicate headers), huge heads, HTTP/0.9, TLS and h2c bytes, upgrades, uploads, garbage, bursts
of connections; they half-close, close at once, reset (SO_LINGER 0), never read, or read
slowly. At the end, SIGTERM comes with 40 connections still open in every state.

It fails (exit status 1, with the reason, the saved log and how to replay) on:
  - a sanitizer report in holdfast's stderr (ASan and LSan with detect_leaks=1, UBSan with
    halt_on_error=1);
  - holdfast dying;
  - holdfast's RSS (VmRSS/VmHWM) above a bound derived from the configured limits;
  - /healthz not answering 200 for 15 s;
  - a wrong answer from holdfast itself: probe-matching requests to the never-ready service
    answered other than by their rules, or not all of them; bytes on that service's port that
    are not complete HTTP/1.1 answers (every byte there comes from holdfast);
  - a relay that is not transparent: what the mirror's backend echoes back after a half-close
    differs from what was sent;
  - holdfast reading a flood of pipelined probes without bound from a client that reads none
    of the answers (past what socket buffers explain);
  - connections or held requests still counted once every client has gone;
  - after SIGTERM (drain), an exit status other than 0, no exit in time, or a sanitizer report
    (LeakSanitizer runs at exit).

Every connection's input is generated from its own RNG seeded by (seed, client, index), so
`--seed S` replays a run's inputs (timing differs), and `--conns C:I,... --isolate` replays
each chosen connection alone against a fresh holdfast (`--copies` at once, `--repeat` rounds)
to tell which one does it. `--skip KIND,...` leaves out plan kinds, to look past a known
finding.

Usage:
  tests/fuzz/sockfuzz.py [--holdfast BIN] [--seed N] [--seconds 45] [--max-connections N]
                         [--clients 12] [--artifacts DIR] [--skip KIND,...]
  tests/fuzz/sockfuzz.py --seed N --conns C:I,... [--isolate] [--repeat N] [--copies N]
  HOLDFAST_BIN=build-asan/holdfast tests/fuzz/sockfuzz.py

Standard library only; Debian's /usr/bin/python3. Loopback only (a 127.x.y.1 of its own).
"""
import argparse
import collections
import ctypes
import json
import os
import random
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
SELF = os.path.abspath(__file__)

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: UndefinedBehaviorSanitizer", "WARNING: ThreadSanitizer",
                     "ERROR: ThreadSanitizer")
NAMESPACE = "fuzz"

# Limits written to the config (low, so the bounds are reached under fuzzing).
LIMITS = {
    "maxHeldConnections": 40,
    "maxHeldBytes": 262144,
    "holdBufferBytes": 4096,
    "maxHeadBytes": 2048,
    "headTimeoutSeconds": 2,
    "idleTimeoutSeconds": 5,
    "connectTimeoutMs": 300,
}
LINGER_S = 2          # holdfast lingers this long after an error answer (conn.c LINGER_MS)
RELAY_CHUNK = 65536   # one relay read per direction (worker scratch buffer)
DRAIN_TIMEOUT = 5     # --drain-timeout given to holdfast
MAX_BURST = 30        # connections a client opens at once, at most
NOFILE = 128          # holdfast's open-file limit: bursts run it out of descriptors
QUARANTINE_MB = 64    # ASan's quarantine of freed memory (counted in the RSS bound)
# A client that never reads may get this much into holdfast's direction before its sends block:
# both kernels' socket buffers (tcp_rmem's 32 MiB max on this kind of machine, autotuned) and
# holdfast's bounded buffers. Past it, holdfast is reading without bound.
FLOOD_LIMIT = 64 << 20
FLOOD_MAX_BYTES = 128 << 20

# probeResponse rules of the held services: (rule, status, body).
PROBE_RULES = [
    {"path": {"type": "Exact", "value": "/healthz"},
     "response": {"status": 200, "body": "{\"ok\":true}"}},
    {"method": "GET", "path": {"type": "PathPrefix", "value": "/health"},
     "response": {"status": 204}},
    {"path": {"type": "RegularExpression", "value": "^/ready(z)?$"},
     "response": {"status": 503, "body": "{\"ready\":false}"}},
    {"method": "HEAD", "path": {"type": "Exact", "value": "/ping"},
     "response": {"status": 200, "body": "pong"}},
    {"headers": [{"name": "User-Agent", "value": "^ELB-HealthChecker/",
                  "type": "RegularExpression"}],
     "response": {"body": "elb"}},
    {"headers": [{"name": "X-Probe", "value": "yes"}],
     "queryParams": [{"name": "probe", "value": "1"}],
     "response": {"status": 404, "body": "{\"probe\":\"query\"}"}},
    {"path": {"type": "RegularExpression", "value": "^/(a+)+$"},
     "response": {"status": 200, "body": "catastrophic"}},
]
PROBE_ANSWERS = {(r["response"].get("status", 200), r["response"].get("body", "").encode())
                 for r in PROBE_RULES}


# =============================================================================================
# Backends (run as separate processes: the relayed service's, and the wake commands')
# =============================================================================================

def serve_backend(args):
    """A small backend: `http` answers each request head, `echo` echoes (tcp). Each connection
    gets a random behaviour (answer, close without answering, reset, big answer, slow answer).
    Exits after --lifetime seconds, or when --watch-pid is gone."""
    rng = random.Random()
    if rng.random() >= args.chance:
        time.sleep(args.delay)
        sys.exit(1)  # this wake "fails"
    time.sleep(args.delay)
    host, port = args.serve_backend.rsplit(":", 1)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        ls.bind((host, int(port)))
    except OSError:
        sys.exit(3)  # an earlier run still holds the port
    ls.listen(512)
    ls.settimeout(0.2)
    end = time.monotonic() + args.lifetime
    active = [0]
    lock = threading.Lock()

    def conn_main(s):
        try:
            # The mirror never ends a connection first (within the longest plan); the others
            # may drop an idle one.
            s.settimeout(2 if args.kind != "mirror" else 30)
            behave = rng.random() if args.kind != "mirror" else 1.0
            if behave < 0.04:
                return  # close at once
            if behave < 0.08:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return  # reset
            deadline = time.monotonic() + (10 if args.kind != "mirror" else 60)
            if args.kind in ("echo", "mirror"):
                if args.kind == "echo" and rng.random() < 0.2:
                    s.sendall(b"BANNER sockfuzz\r\n")
                total = 0
                while time.monotonic() < deadline and total < (16 << 20):
                    data = s.recv(65536)
                    if not data:
                        s.shutdown(socket.SHUT_WR)
                        return
                    total += len(data)
                    s.sendall(data)
                return
            tail = b""
            while time.monotonic() < deadline:
                data = s.recv(65536)
                if not data:
                    return
                tail += data
                heads = tail.count(b"\r\n\r\n") + tail.count(b"\n\n")
                tail = tail[-3:]
                for _ in range(heads):
                    r = rng.random()
                    if r < 0.06:
                        return  # close without answering: holdfast's 502
                    if r < 0.10:
                        body = b"x" * rng.randrange(65536, 400000)
                        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
                                  + body)
                        continue
                    if r < 0.15:
                        time.sleep(rng.uniform(0.05, 0.5))
                    body = b"backend sockfuzz\n"
                    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                              b"Content-Length: %d\r\n\r\n" % len(body) + body)
        except OSError:
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass
            with lock:
                active[0] -= 1

    while time.monotonic() < end:
        if args.watch_pid:
            try:
                os.kill(args.watch_pid, 0)
            except ProcessLookupError:
                break
        try:
            s, _ = ls.accept()
        except socket.timeout:
            continue
        except OSError:
            time.sleep(0.05)
            continue
        with lock:
            if active[0] >= 256:
                s.close()
                continue
            active[0] += 1
        threading.Thread(target=conn_main, args=(s,), daemon=True).start()
    if args.kind == "mirror":
        # Gone from the listening side (connects are refused, readiness fails), but the
        # connections already relayed end as their clients end them (bounded).
        ls.close()
        stop = time.monotonic() + 65
        while time.monotonic() < stop:
            with lock:
                if active[0] == 0:
                    break
            time.sleep(0.05)
    os._exit(0)


# =============================================================================================
# Input generation: a connection's plan, from its own RNG
# =============================================================================================

class Plan:
    """What one client connection (or a burst of them) does."""

    def __init__(self, cid, kind, target):
        self.cid = cid          # "client:index"
        self.kind = kind        # a short label of the generator used
        self.target = target    # listener name
        self.steps = []         # ("send", bytes) | ("pause", seconds) | ("peek",)
        self.end = ("close",)   # how the connection ends (see Client.finish)
        self.rcvbuf = 0         # SO_RCVBUF before connect (slow reader), 0 = default
        self.burst = 0          # > 0: this many connections get the same steps
        self.expect = None      # [(status, body)] expected answers (oracle), or None
        self.holdfast_only = False  # every byte read comes from holdfast (structure checked)

    def payload(self):
        return b"".join(s[1] for s in self.steps if s[0] == "send")

    def describe(self):
        out = [f"# connection {self.cid}: {self.kind} -> {self.target}"
               + (f" x{self.burst}" if self.burst else "")
               + (f" rcvbuf={self.rcvbuf}" if self.rcvbuf else "")]
        for s in self.steps:
            if s[0] == "flood":
                out.append(f"flood {s[1]!r} repeated, up to {s[2] >> 20} MiB or "
                           f"{s[3]:.1f} s, reading nothing")
            elif s[0] == "duplex":
                data = s[1]
                out.append(f"send {len(data)} bytes while reading {s[2]} bytes every {s[3]} s: "
                           f"{data[:300]!r}..., then shutdown(SHUT_WR) and read to the end")
            elif s[0] == "send":
                data = s[1]
                shown = repr(data) if len(data) <= 600 else (
                    repr(data[:300]) + f" ...({len(data)} bytes)... " + repr(data[-100:]))
                out.append(f"send {shown}")
            elif s[0] == "pause":
                out.append(f"pause {s[1]:.3f}s")
            else:
                out.append(s[0])
        out.append(f"end {self.end}")
        if self.expect is not None:
            out.append(f"expect {self.expect}")
        return "\n".join(out)


PLAN_KINDS = ("burst", "mirror", "pipelined", "probe-flood", "probe-halfclose", "probe-oracle",
              "silent", "single", "slow-head", "special", "stream")

METHODS = [b"GET", b"GET", b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH",
           b"get", b"CONNECT", b"TRACE", b"PRI", b"BREW", b"M-SEARCH"]
PATHS = [b"/", b"/index.html", b"/api/v1/items?id=3&x=%41", b"/healthzz", b"/ping", b"/readyzz",
         b"/a%2Fb", b"/x%zz", b"/x%4", b"*", b"http://h/path", b"/%00", b"/" + b"a" * 40 + b"b",
         b"/search?q=a+b&probe=1", b"//double", b"/..%2F..%2Fetc", b"/\xff\xfe", b"/%E2%82%AC"]


class Gen:
    """Builds plans. Every choice comes from the plan's own RNG."""

    def __init__(self, targets, skip=()):
        self.targets = targets  # name -> weight
        self.skip = set(skip)   # plan kinds not to generate

    # ---- pieces ----

    def host_for(self, rng, target):
        if target != "shared":
            return rng.choice([b"example", b"x", b"held.fuzz", b"127.0.0.1", b""])
        return rng.choice([
            b"held.fuzz", b"held.fuzz.svc", b"held.fuzz.svc.cluster.local:80",
            b"relay.fuzz", b"relay.fuzz.svc:8080", b"flip.fuzz", b"flip.fuzz.svc.cluster.local",
            b"tiny.fuzz", b"raw.fuzz", b"mirror.fuzz", b"tmirror.fuzz", b"unknown.fuzz",
            b"held", b"held.", b".fuzz",
            b"held.fuzz.svc.cluster", b"held.fuzz:99999999999999", b"held.fuzz:", b":80",
            b"HELD.FUZZ", b"a" * 300 + b".fuzz", b"held.fuzz.svc.cluster.local.evil",
            b"held.fuzz\x00x", b"\xffheld.fuzz"])

    def probe_request(self, rng):
        """A request that one of PROBE_RULES answers: (method, target, extra header lines)."""
        which = rng.randrange(9)
        if which == 0:
            return b"GET", rng.choice([b"/healthz", b"/healthz?x=1", b"/%68ealthz"]), []
        if which == 1:
            return b"GET", rng.choice([b"/health", b"/health/", b"/health/live?full=1"]), []
        if which == 2:
            return rng.choice([b"GET", b"POST", b"DELETE"]), rng.choice([b"/ready", b"/readyz"]), []
        if which == 3:
            return b"HEAD", b"/ping", []
        if which == 4:
            return b"GET", rng.choice([b"/", b"/anything"]), [b"User-Agent: ELB-HealthChecker/2.0"]
        if which == 5:
            return b"GET", b"/q?probe=1&z=2", [b"X-Probe: yes"]
        if which == 6:
            return b"GET", b"/" + b"a" * rng.randrange(1, 30), []
        if which == 7:
            return b"GET", b"http://held.fuzz/healthz", []
        return b"OPTIONS", b"/healthz?probe=1", [b"X-Probe:  yes "]

    def plain_request(self, rng):
        return rng.choice(METHODS), rng.choice(PATHS), []

    def request(self, rng, target, probe, close=False, body_ok=True, version=b"HTTP/1.1"):
        """One request's bytes."""
        method, path, extra = self.probe_request(rng) if probe else self.plain_request(rng)
        lines = [method + b" " + path + b" " + version]
        host = self.host_for(rng, target)
        if rng.random() < 0.95 or target == "shared":
            lines.append(b"Host: " + host)
        lines += extra
        for _ in range(rng.choice([0, 0, 1, 2, 5])):
            lines.append(rng.choice([b"Accept: */*", b"X-Trace: %d" % rng.randrange(1 << 30),
                                     b"Cookie: a=b; c=d", b"Pragma: no-cache",
                                     b"Connection: keep-alive", b"Accept-Encoding: gzip",
                                     b"X-Empty:", b"X-Tab:\tv\t"]))
        if close:
            lines.append(b"Connection: close")
        body = b""
        if body_ok and method not in (b"HEAD", b"GET") and rng.random() < 0.6:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
            if rng.random() < 0.7:
                lines.append(b"Content-Length: %d" % len(body))
            else:
                lines.append(b"Transfer-Encoding: chunked")
                body = self.chunked(rng, body)
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def chunked(self, rng, body):
        out = b""
        i = 0
        while i < len(body):
            n = rng.randrange(1, 100)
            piece = body[i:i + n]
            ext = rng.choice([b"", b"", b";a=b"])
            out += b"%x" % len(piece) + ext + b"\r\n" + piece + b"\r\n"
            i += n
        return out + b"0\r\n\r\n"

    def special(self, rng, target):
        """Bytes of something odd."""
        host = b"Host: " + self.host_for(rng, target) + b"\r\n"
        k = rng.randrange(22)
        if k == 0:  # TLS ClientHello-shaped
            hello = bytes(rng.randrange(256) for _ in range(rng.randrange(40, 300)))
            return b"\x16\x03\x01" + struct.pack(">H", len(hello) + 4) + b"\x01\x00" + \
                struct.pack(">H", len(hello)) + hello
        if k == 1:  # h2c prior knowledge, then a SETTINGS frame and junk frames
            frames = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
            frames += bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
            return b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frames
        if k == 2:  # a cut h2 preface
            return b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[:rng.randrange(1, 24)]
        if k == 3:  # HTTP/0.9
            return b"GET /\r\n" if rng.random() < 0.5 else b"GET /healthz\r\n\r\n"
        if k == 4:  # garbage
            return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
        if k == 5:  # head larger than maxHeadBytes
            return b"GET /healthz HTTP/1.1\r\n" + host + b"X-Big: " + \
                b"a" * rng.randrange(1500, 12000) + b"\r\n\r\n"
        if k == 6:  # more than 128 header fields
            return b"GET /healthz HTTP/1.1\r\n" + host + \
                b"".join(b"X-%d: v\r\n" % i for i in range(rng.randrange(100, 200))) + b"\r\n"
        if k == 7:  # CL + TE
            return b"POST /healthz HTTP/1.1\r\n" + host + \
                b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + \
                b"GET /healthz HTTP/1.1\r\n" + host + b"\r\n"
        if k == 8:  # bad chunking
            return b"POST /healthz HTTP/1.1\r\n" + host + b"Transfer-Encoding: chunked\r\n\r\n" + \
                rng.choice([b"zz\r\nabc\r\n", b"fffffffffffffffffff\r\n", b"3\r\nabcd\r\n",
                            b"3 \r\nabc\r\n0\r\n\r\n", b"-1\r\n", b"3\nabc\n0\n\n",
                            b"5;" + b"e" * 3000 + b"\r\n"])
        if k == 9:  # obs-fold
            return b"GET /healthz HTTP/1.1\r\n" + host + b"X-Fold: a\r\n b\r\n\tc\r\n\r\n"
        if k == 10:  # duplicate / conflicting Content-Length
            return b"POST /ready HTTP/1.1\r\n" + host + rng.choice(
                [b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
                 b"Content-Length: -1\r\n\r\n", b"Content-Length: 99999999999999999999\r\n\r\n",
                 b"Content-Length: 3,3\r\n\r\nabc", b"Content-Length: 0x10\r\n\r\n"])
        if k == 11:  # a large upload (holdBufferBytes backpressure: most of it is never read)
            n = rng.choice([rng.randrange(5000, 300000), rng.randrange(1 << 20, 8 << 20)])
            return b"POST /upload HTTP/1.1\r\n" + host + b"Content-Length: %d\r\n\r\n" % n + \
                b"u" * n
        if k == 12:  # WebSocket upgrade, then frames
            return b"GET /ws HTTP/1.1\r\n" + host + \
                b"Upgrade: websocket\r\nConnection: Upgrade\r\n" \
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" \
                b"\r\n\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
        if k == 13:  # CONNECT
            return b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n" + host + b"\r\nrawbytes"
        if k == 14:  # Expect: 100-continue with a body
            return b"POST /healthz HTTP/1.1\r\n" + host + \
                b"Expect: 100-continue\r\nContent-Length: 10\r\n\r\n0123456789"
        if k == 15:  # bare LF line ends
            return b"GET /healthz HTTP/1.1\n" + host.replace(b"\r\n", b"\n") + b"\n"
        if k == 16:  # NUL, spaces, bad names
            return b"GET /healthz HTTP/1.1\r\n" + host + rng.choice(
                [b"X-A\x00: b\r\n", b"X-A : b\r\n", b" X-A: b\r\n", b"X-A: b\x00c\r\n",
                 b": empty\r\n", b"X\x7f: v\r\n"]) + b"\r\n"
        if k == 17:  # odd request lines
            return rng.choice([b"GET  /healthz HTTP/1.1\r\n", b"GET /healthz HTTP/1.1 \r\n",
                               b"GET /healthz HTTP/9.9\r\n", b"GET /healthz HTTP/1.0\r\n",
                               b"GET\t/healthz HTTP/1.1\r\n", b"GET /healthz\r\n",
                               b"/healthz HTTP/1.1\r\n", b"GET /" + b"p" * 3000 + b" HTTP/1.1\r\n",
                               b"\r\n\r\nGET /healthz HTTP/1.1\r\n"]) + host + b"\r\n"
        if k == 18:  # a probe with a body, chunked or not, then another probe
            body = b"b" * rng.randrange(0, 5000)
            first = b"POST /ready HTTP/1.1\r\n" + host + (
                b"Content-Length: %d\r\n\r\n" % len(body) + body if rng.random() < 0.5 else
                b"Transfer-Encoding: chunked\r\n\r\n" + self.chunked(rng, body))
            return first + b"GET /healthz HTTP/1.1\r\n" + host + b"\r\n"
        if k == 19:  # HTTP/1.0 probes, keep-alive or not
            return b"GET /healthz HTTP/1.0\r\n" + host + rng.choice(
                [b"", b"Connection: keep-alive\r\n"]) + b"\r\n" + \
                b"GET /healthz HTTP/1.0\r\n" + host + b"\r\n"
        if k == 20:  # a catastrophic regex input
            return b"GET /" + b"a" * rng.randrange(500, 1900) + b"! HTTP/1.1\r\n" + host + b"\r\n"
        # Transfer-Encoding oddities
        return b"POST /healthz HTTP/1.1\r\n" + host + rng.choice(
            [b"Transfer-Encoding: gzip, chunked\r\n", b"Transfer-Encoding: chunked, gzip\r\n",
             b"Transfer-Encoding: identity\r\n", b"Transfer-Encoding: chunked\r\n"
             b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding:\x0bchunked\r\n"]) + \
            b"\r\n5\r\nhello\r\n0\r\n\r\n"

    def mutate(self, rng, data):
        """A few random edits of data."""
        data = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            if not data:
                data += b"\r\n"
            i = rng.randrange(len(data))
            op = rng.randrange(8)
            if op == 0:
                data[i] ^= 1 << rng.randrange(8)
            elif op == 1:
                data[i:i] = rng.choice([b"\r", b"\n", b"\x00", b" ", b":", b"\r\n", b"\t", b"%"])
            elif op == 2:
                del data[i:i + rng.randrange(1, 20)]
            elif op == 3:
                j = rng.randrange(i, min(len(data), i + 200) + 1)
                data[j:j] = data[i:j]
            elif op == 4:
                del data[rng.randrange(len(data)):]
            elif op == 5:  # duplicate a header line
                lines = bytes(data).split(b"\r\n")
                if len(lines) > 2:
                    k = rng.randrange(1, len(lines))
                    lines.insert(k, lines[k])
                    data = bytearray(b"\r\n".join(lines))
            elif op == 6:
                data[i] = rng.randrange(256)
            else:
                data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        return bytes(data)

    def split_sends(self, rng, plan, data, pauses=True, long_pause=0.0, max_pauses=1.0):
        """Adds data to the plan as sends cut at random byte boundaries, with pauses (at most
        max_pauses seconds of them, less than headTimeoutSeconds)."""
        if not data:
            return
        style = rng.random()
        if style < 0.45 or len(data) < 2:
            plan.steps.append(("send", data))
            return
        if style < 0.6:  # byte by byte (bounded)
            cuts = list(range(1, min(len(data), 64)))
        else:
            cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(1, 6))))
        prev = 0
        budget = max_pauses
        for c in cuts + [len(data)]:
            plan.steps.append(("send", data[prev:c]))
            prev = c
            if c != len(data) and pauses:
                t = min(budget, rng.choice([0, 0, 0.001, 0.01, 0.05, 0.2]))
                budget -= t
                plan.steps.append(("pause", t))
        if long_pause:
            i = rng.randrange(len(plan.steps))
            plan.steps.insert(i, ("pause", long_pause))

    def end(self, rng, plan):
        r = rng.random()
        if r < 0.22:
            plan.end = ("close",)
        elif r < 0.34:
            plan.end = ("rst",)
        elif r < 0.50:
            plan.end = ("shutwr_read", rng.uniform(0.2, 4.5))
        elif r < 0.75:
            plan.end = ("read", rng.uniform(0.2, 4.5))
        elif r < 0.85:
            plan.end = ("slowread", rng.choice([1, 7, 100]), rng.uniform(0.01, 0.1),
                        rng.uniform(0.5, 4))
        else:
            plan.end = ("idle", rng.uniform(0, 3.5))  # never read, then close
        if rng.random() < 0.1:
            plan.rcvbuf = rng.choice([1024, 2048, 4096])

    # ---- plans ----

    def plan(self, seed, cid):
        plan = self.draw(random.Random(f"{seed}/{cid}"), cid)
        for attempt in range(1, 50):
            if plan.kind.split("+")[0] not in self.skip:
                break
            plan = self.draw(random.Random(f"{seed}/{cid}/{attempt}"), cid)
        return plan

    def draw(self, rng, cid):
        names = list(self.targets)
        target = rng.choices(names, weights=[self.targets[n] for n in names])[0]
        r = rng.random()
        if r < 0.18:
            return self.plan_pipelined(rng, cid, target)
        if r < 0.30:
            return self.plan_probe_oracle(rng, cid)
        if r < 0.50:
            return self.plan_single(rng, cid, target)
        if r < 0.75:
            return self.plan_special(rng, cid, target)
        if r < 0.82:
            return self.plan_burst(rng, cid, target)
        if r < 0.87:
            return self.plan_slow_head(rng, cid, target)
        if r < 0.92:
            return self.plan_silent(rng, cid, target)
        if r < 0.935:
            return self.plan_flood(rng, cid)
        if r < 0.95:
            return self.plan_halfclose(rng, cid)
        if r < 0.98:
            return self.plan_mirror(rng, cid)
        return self.plan_garbage_stream(rng, cid, target)

    def plan_mirror(self, rng, cid):
        """Anything, split anyhow, to the service whose backend echoes, then a half-close: what
        comes back must be exactly what was sent (the relay is transparent, in order, and
        passes the half-close on after the pending bytes)."""
        plan = Plan(cid, "mirror", rng.choice(["mirror", "tmirror"]))
        for _ in range(rng.randrange(1, 4)):
            r = rng.random()
            if r < 0.4:
                data = self.request(rng, "mirror", rng.random() < 0.5)
            elif r < 0.8:
                data = self.special(rng, "mirror")
            else:
                data = self.mutate(rng, self.request(rng, "mirror", False))
            self.split_sends(rng, plan, data)
        plan.end = ("shutwr_read", 8.0)
        if rng.random() < 0.2:
            plan.rcvbuf = 4096
        return plan

    def plan_halfclose(self, rng, cid):
        """Many pipelined probes, then a half-close (SHUT_WR), by a client that reads the answers
        slowly as it sends: every answer must arrive whole before holdfast closes."""
        target = rng.choice(["held", "shared"])
        plan = Plan(cid, "probe-halfclose", target)
        n = rng.choice([20, 500, 5000, 30000, 60000])
        host = b"held.fuzz" if target == "shared" else b"x"
        kinds = []
        for _ in range(rng.randrange(1, 4)):
            method, path, extra = self.probe_request(rng)
            if method == b"HEAD":
                method, path = b"GET", b"/healthz"
            kinds.append(b"\r\n".join([method + b" " + path + b" HTTP/1.1", b"Host: " + host] +
                                      extra) + b"\r\n\r\n")
        data = b"".join(kinds[i % len(kinds)] for i in range(n))
        plan.steps.append(("duplex", data, rng.choice([512, 4096]), rng.choice([0.001, 0.005])))
        plan.rcvbuf = 4096
        plan.end = ("done",)
        plan.expect = n
        plan.holdfast_only = True
        return plan

    def plan_flood(self, rng, cid):
        """Pipelined probes streamed for seconds by a client that reads none of the answers:
        holdfast must stop reading (backpressure), not buffer answers without bound."""
        target = rng.choice(["held", "held", "shared", "flip"])
        plan = Plan(cid, "probe-flood", target)
        unit = b"".join(self.request(rng, target, True) for _ in range(rng.randrange(1, 8)))
        unit = unit.replace(b"HTTP/1.0", b"HTTP/1.1").replace(b"Connection: close\r\n", b"")
        plan.steps.append(("flood", unit, FLOOD_MAX_BYTES, rng.uniform(3, 8)))
        plan.rcvbuf = 4096
        plan.end = rng.choice([("close",), ("rst",), ("idle", 0.5)])
        return plan

    def plan_pipelined(self, rng, cid, target):
        """Several requests in one write (mostly probes), maybe mutated, any ending."""
        plan = Plan(cid, "pipelined", target)
        n = rng.randrange(2, 7)
        p_probe = rng.choice([1.0, 0.8, 0.5])
        data = b"".join(self.request(rng, target, rng.random() < p_probe,
                                     close=(rng.random() < 0.05)) for _ in range(n))
        if rng.random() < 0.25:
            data = self.mutate(rng, data)
            plan.kind += "+mutated"
        if rng.random() < 0.6:
            plan.steps.append(("send", data))
        else:
            self.split_sends(rng, plan, data)
        self.end(rng, plan)
        if rng.random() < 0.3:
            plan.end = ("close",)  # send everything and go: the answers meet a closed socket
        return plan

    def plan_probe_oracle(self, rng, cid):
        """Clean probe requests to the never-ready service: each must get its rule's answer."""
        target = rng.choice(["held", "held", "shared"])
        plan = Plan(cid, "probe-oracle", target)
        n = rng.randrange(1, 5)
        reqs = []
        for i in range(n):
            method, path, extra = self.probe_request(rng)
            if method == b"HEAD":
                method, path = b"GET", b"/healthz"  # keeps the body check simple
            lines = [method + b" " + path + b" HTTP/1.1",
                     b"Host: " + (b"held.fuzz" if target == "shared" else b"x")] + extra
            if i == n - 1:
                lines.append(b"Connection: close")
            reqs.append(b"\r\n".join(lines) + b"\r\n\r\n")
        data = b"".join(reqs)
        if rng.random() < 0.5:
            plan.steps.append(("send", data))
        else:
            self.split_sends(rng, plan, data, max_pauses=0.6)
        plan.end = ("read", 5.0)
        plan.expect = n
        plan.holdfast_only = True
        return plan

    def plan_single(self, rng, cid, target):
        plan = Plan(cid, "single", target)
        data = self.request(rng, target, rng.random() < 0.4, close=rng.random() < 0.3,
                            version=rng.choice([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]))
        if rng.random() < 0.2:
            data = self.mutate(rng, data)
            plan.kind += "+mutated"
        self.split_sends(rng, plan, data)
        if rng.random() < 0.3:  # keep-alive: a second request later
            plan.steps.append(("peek",))
            plan.steps.append(("pause", rng.choice([0.01, 0.1, 0.5])))
            self.split_sends(rng, plan, self.request(rng, target, rng.random() < 0.5))
        self.end(rng, plan)
        plan.holdfast_only = target == "held" and b"HEAD" not in plan.payload()
        return plan

    def plan_special(self, rng, cid, target):
        plan = Plan(cid, "special", target)
        data = self.special(rng, target)
        if rng.random() < 0.15:
            data = self.mutate(rng, data)
            plan.kind += "+mutated"
        if rng.random() < 0.3:  # after a probe
            data = self.request(rng, target, True) + data
            plan.kind += "+after-probe"
        self.split_sends(rng, plan, data)
        self.end(rng, plan)
        plan.holdfast_only = target == "held" and b"HEAD" not in plan.payload()
        return plan

    def plan_burst(self, rng, cid, target):
        """Many connections at once (hold limits), ended together."""
        plan = Plan(cid, "burst", rng.choice([target, "held", "tiny", "flip"]))
        plan.burst = rng.randrange(5, MAX_BURST + 1)
        data = self.request(rng, plan.target, rng.random() < 0.2)
        if rng.random() < 0.3:
            data = self.special(rng, plan.target)
        plan.steps.append(("send", data))
        plan.steps.append(("pause", rng.uniform(0.05, 3.5)))
        plan.end = rng.choice([("close",), ("rst",), ("read", 2.0), ("shutwr_read", 2.0)])
        return plan

    def plan_slow_head(self, rng, cid, target):
        """A head that takes longer than headTimeoutSeconds (408), or nearly."""
        plan = Plan(cid, "slow-head", target)
        data = self.request(rng, target, rng.random() < 0.5)
        t = LIMITS["headTimeoutSeconds"] + rng.uniform(-0.5, 0.8)
        self.split_sends(rng, plan, data, long_pause=t)
        if not any(s[0] == "pause" and s[1] == t for s in plan.steps):
            plan.steps.insert(rng.randrange(len(plan.steps) + 1), ("pause", t))
        self.end(rng, plan)
        return plan

    def plan_silent(self, rng, cid, target):
        """Connects and sends nothing (or one byte), then goes."""
        plan = Plan(cid, "silent", target)
        if rng.random() < 0.3:
            plan.steps.append(("send", rng.choice([b"G", b"\r\n", b"\x16", b"P"])))
        plan.steps.append(("pause", rng.choice([0, 0.05, 0.5, LIMITS["headTimeoutSeconds"] + 0.3])))
        self.end(rng, plan)
        return plan

    def plan_garbage_stream(self, rng, cid, target):
        """Requests and junk interleaved, with peeks, on one connection."""
        plan = Plan(cid, "stream", target)
        for _ in range(rng.randrange(2, 8)):
            r = rng.random()
            if r < 0.5:
                data = self.request(rng, target, rng.random() < 0.6)
            elif r < 0.7:
                data = self.special(rng, target)
            else:
                data = self.mutate(rng, self.request(rng, target, True))
            self.split_sends(rng, plan, data)
            if rng.random() < 0.4:
                plan.steps.append(("peek",))
            if rng.random() < 0.3:
                plan.steps.append(("pause", rng.uniform(0, 0.3)))
        self.end(rng, plan)
        return plan


# =============================================================================================
# Checking holdfast's own answers
# =============================================================================================

_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n")


def parse_answers(data):
    """Splits bytes holdfast wrote into answers [(status, headers, body)]. Raises ValueError
    when they are not complete HTTP/1.1 responses with a Content-Length (every answer of
    holdfast's own has one, except a 204, which has no content and must not carry one: RFC
    9110 8.6). HEAD answers are not told apart: callers avoid HEAD."""
    out = []
    i = 0
    while i < len(data):
        m = _STATUS.match(data, i)
        if not m:
            raise ValueError(f"no status line at byte {i}: {data[i:i + 80]!r}")
        end = data.find(b"\r\n\r\n", m.end() - 2)
        if end < 0:
            raise ValueError(f"head cut at byte {i}: {data[i:i + 200]!r}")
        headers = {}
        for line in data[m.end():end].split(b"\r\n"):
            if not line:
                continue
            if b":" not in line:
                raise ValueError(f"bad header line {line!r}")
            k, v = line.split(b":", 1)
            headers[k.strip().lower()] = v.strip()
        status = int(m.group(1))
        if status == 204 and b"content-length" in headers:
            raise ValueError(f"answer 204 with a Content-Length: {data[i:end]!r}")
        if status != 204 and b"content-length" not in headers:
            raise ValueError(f"answer {status} without Content-Length: {data[i:end]!r}")
        n = int(headers.get(b"content-length", b"0"))
        body_at = end + 4
        if status in (204, 304):
            n = 0
        if body_at + n > len(data):
            raise ValueError(f"body cut: {data[i:i + 300]!r}")
        out.append((status, headers, data[body_at:body_at + n]))
        i = body_at + n
    return out


# =============================================================================================
# Running holdfast and its peers
# =============================================================================================

class Failure(Exception):
    pass


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Rig:
    """holdfast, its config and backends, and what watches them."""

    def __init__(self, args, workdir, token):
        self.args = args
        self.workdir = workdir
        self.token = token
        self.proc = None
        self.backends = []
        self.stderr_path = os.path.join(workdir, "holdfast.stderr")
        self.stderr_file = None
        self._scan_off = 0
        # One loopback /24 of its own per run: parallel runs and other tests do not collide.
        r = random.SystemRandom()
        self.host = f"127.{r.randrange(100, 250)}.{r.randrange(0, 256)}.1"
        self.listeners = {}
        self.config = None
        self.rss_bound_kb = 0
        self.peak_rss_kb = 0
        self.base_rss_kb = 0
        self.drain_s = 0.0

    def addr(self, name):
        return self.listeners[name]

    def build_config(self):
        h = self.host
        port = {}
        for name in ("held", "tiny", "relay", "mirror", "tmirror", "flip", "raw", "shared",
                     "admin", "relay_be", "mirror_be", "tmirror_be", "flip_be", "raw_be",
                     "dead_be"):
            port[name] = free_port(h)
        self.listeners = {n: (h, port[n]) for n in ("held", "tiny", "relay", "mirror", "tmirror",
                                                   "flip", "raw", "shared")}
        self.admin = (h, port["admin"])
        env_mark = f"sockfuzz-{self.token}"

        def backend_cmd(addr_name, kind, delay, lifetime, chance):
            return [PYTHON, SELF, "--serve-backend", f"{h}:{port[addr_name]}", "--kind", kind,
                    "--delay", str(delay), "--lifetime", str(lifetime), "--chance", str(chance),
                    "--watch-pid", str(os.getpid())]

        svc = lambda name, **kw: dict({"namespace": NAMESPACE, "name": name,
                                       "listen": [f"{h}:{port[name]}"],
                                       "readinessPeriodMs": 50}, **kw)
        self.config = {
            "services": [
                svc("held", backends=[f"{h}:{port['dead_be']}"], holdTimeoutSeconds=3,
                    maxHeldConnections=25, maxHeldBytes=65536, probeResponse=PROBE_RULES,
                    wake={"command": ["/bin/sh", "-c", "sleep 0.5; exit 1", env_mark]}),
                svc("tiny", backends=[f"{h}:{port['dead_be']}"], holdTimeoutSeconds=2,
                    maxHeldConnections=3, maxHeldBytes=4096),
                svc("relay", backends=[f"{h}:{port['relay_be']}"], holdTimeoutSeconds=3,
                    probeResponse=PROBE_RULES[:2]),
                svc("mirror", backends=[f"{h}:{port['mirror_be']}"], holdTimeoutSeconds=3),
                # tcp, woken on demand: an echo backend that lives 3 s, then stops listening
                # and lets its connections finish, so the service flips.
                svc("tmirror", backends=[f"{h}:{port['tmirror_be']}"], protocol="tcp",
                    holdTimeoutSeconds=5, wake={"command": backend_cmd("tmirror_be", "mirror",
                                                                        0.3, 3.0, 1.0)}),
                svc("flip", backends=[f"{h}:{port['flip_be']}"], holdTimeoutSeconds=4,
                    probeResponse=PROBE_RULES,
                    readiness={"httpGet": {"path": "/ready"}},
                    wake={"command": backend_cmd("flip_be", "http", 0.4, 2.5, 0.8)}),
                svc("raw", backends=[f"{h}:{port['raw_be']}"], protocol="tcp",
                    holdTimeoutSeconds=3, maxHeldConnections=20,
                    wake={"command": backend_cmd("raw_be", "echo", 0.3, 2.0, 0.5)}),
            ],
            "shared": {"listen": [f"{h}:{port['shared']}"]},
            "limits": dict(LIMITS),
        }
        # Always up: the relayed service's backend, and the mirror's (an echo server that never
        # misbehaves, so what comes back must be exactly what was sent).
        self.backend_cmds = [backend_cmd("relay_be", "http", 0, self.args.seconds + 300, 1.0),
                             backend_cmd("mirror_be", "mirror", 0, self.args.seconds + 300, 1.0)]
        # The flip service's readiness probe is a plain GET answered like any request; a
        # "close without answering" draw only fails one probe.
        with open(os.path.join(self.workdir, "holdfast.json"), "w") as f:
            json.dump(self.config, f, indent=2)

    def env(self):
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        asan = (f"detect_leaks=1:abort_on_error=0:quarantine_size_mb={QUARANTINE_MB}:"
                "malloc_context_size=20")
        ubsan = "halt_on_error=1:print_stacktrace=1"
        env["ASAN_OPTIONS"] = asan + (":" + os.environ["ASAN_OPTIONS"]
                                      if os.environ.get("ASAN_OPTIONS") else "")
        env["UBSAN_OPTIONS"] = ubsan + (":" + os.environ["UBSAN_OPTIONS"]
                                        if os.environ.get("UBSAN_OPTIONS") else "")
        env["SOCKFUZZ_TOKEN"] = self.token  # every process started for this run carries it
        return env

    def start(self):
        self.build_config()
        env = self.env()
        for bcmd in self.backend_cmds:
            self.backends.append(subprocess.Popen(
                bcmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True))
        self.stderr_file = open(self.stderr_path, "wb")
        cmd = [self.args.holdfast, "run", "--config", os.path.join(self.workdir, "holdfast.json"),
               "--admin-listen", f"{self.admin[0]}:{self.admin[1]}", "--workers", "2",
               "--log-level", self.args.log_level, "--drain-timeout", str(DRAIN_TIMEOUT)]
        nofile = self.args.nofile

        def child_setup():
            # holdfast raises its soft limit to the hard one: both are set. And it gets SIGTERM
            # if this script dies, so a killed run leaves nothing behind.
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
            try:
                ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
            except (OSError, AttributeError):
                pass

        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.stderr_file,
                                     cwd=self.workdir, preexec_fn=child_setup)
        deadline = time.monotonic() + 30
        while True:
            self.check_alive()
            try:
                if self.admin_get("/readyz", 1)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise Failure("holdfast did not become ready (/readyz) within 30 s")
            time.sleep(0.05)
        # holdfast probes a backend only once a connection waits for it: one request wakes each
        # always-up service, whose backend is already listening.
        for name in ("relay", "mirror"):
            deadline = time.monotonic() + 20
            while self.metric("holdfast_backends_ready", service=name) < 1:
                self.check_alive()
                if time.monotonic() > deadline:
                    raise Failure(f"the {name} service's backend never became ready")
                try:
                    with socket.create_connection(self.listeners[name], timeout=2) as s:
                        s.settimeout(2)
                        s.sendall(b"GET / HTTP/1.1\r\nHost: warmup\r\nConnection: close\r\n\r\n")
                        s.recv(4096)
                except OSError:
                    pass
                time.sleep(0.1)
        time.sleep(0.3)
        self.base_rss_kb = self.status_kb("VmRSS")
        self.rss_bound_kb = self.compute_rss_bound()

    def compute_rss_bound(self):
        """RSS bound from the configured limits: what was resident at start, plus what every
        connection that can be open at once (no more than holdfast's open-file limit, nor than
        the clients open) may hold (its request buffer, capped by holdBufferBytes and
        maxHeadBytes, and one relay read per direction, each grown by doubling), plus the
        held-bytes limit, twice over for allocator overhead (redzones, size classes,
        fragmentation across 2 worker threads), plus the ASan quarantine and 32 MiB."""
        limits = self.config["limits"]
        req = max(limits["holdBufferBytes"], limits["maxHeadBytes"] + 1)
        per_conn = 2 * req + 2 * 2 * RELAY_CHUNK + 16384  # + conn, parser, spans, events
        conns = self.args.clients * (MAX_BURST + 1) + 50    # + lingering ones
        if self.args.nofile:
            conns = min(conns, self.args.nofile)  # a connection holds a descriptor at least
        dynamic_kb = (conns * per_conn + limits["maxHeldBytes"]) // 1024
        quarantine_kb = QUARANTINE_MB * 1024 if self.asan else 0
        return self.base_rss_kb + quarantine_kb + 2 * dynamic_kb + 32 * 1024

    @property
    def asan(self):
        try:
            with open(self.args.holdfast, "rb") as f:
                return b"__asan_init" in f.read()
        except OSError:
            return False

    # ---- watching ----

    def check_alive(self):
        rc = self.proc.poll()
        if rc is not None:
            report = self.sanitizer_report()
            raise Failure(f"holdfast died (exit status {rc})"
                          + (f"; sanitizer report:\n{report}" if report else ""))

    def sanitizer_report(self, full=False):
        try:
            with open(self.stderr_path, "rb") as f:
                if not full:
                    f.seek(max(0, self._scan_off - 200))
                text = f.read().decode(errors="replace")
        except OSError:
            return None
        best = None
        for marker in SANITIZER_MARKERS:
            i = text.find(marker)
            if i >= 0 and (best is None or i < best):
                best = i
        if best is None:
            if not full:
                self._scan_off = max(self._scan_off, os.path.getsize(self.stderr_path))
            return None
        start = text.rfind("\n", 0, max(0, best - 1))
        lines = []
        for line in text[start + 1:].splitlines():
            if line.startswith("{"):
                continue  # holdfast's own log lines, interleaved
            lines.append(line)
            if line.startswith("SUMMARY:") or len(lines) >= 80:
                break  # the rest (shadow bytes) is in the saved log
        return "\n".join(lines)

    def full_report(self):
        """The whole sanitizer report: waits (bounded) for the process to finish writing it."""
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        return self.sanitizer_report(full=True)

    def status_kb(self, field):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def check_rss(self):
        rss = self.status_kb("VmRSS")
        hwm = self.status_kb("VmHWM")
        self.peak_rss_kb = max(self.peak_rss_kb, rss, hwm)
        if max(rss, hwm) > self.rss_bound_kb:
            raise Failure(f"holdfast's memory grew past its bound: VmRSS {rss} kB, VmHWM {hwm} kB"
                          f" > {self.rss_bound_kb} kB (start {self.base_rss_kb} kB)")

    def admin_get(self, path, timeout=5):
        with socket.create_connection(self.admin, timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
        if not m:
            raise OSError(f"bad admin answer {data[:100]!r}")
        if b"chunked" in head.lower():
            out, rest = b"", body
            while rest:
                size_line, _, rest = rest.partition(b"\r\n")
                n = int(size_line.split(b";")[0], 16)
                if n == 0:
                    break
                out += rest[:n]
                rest = rest[n + 2:]
            body = out
        return int(m.group(1)), body.decode(errors="replace")

    def metrics(self):
        out = {}
        for line in self.admin_get("/metrics", 10)[1].splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$', line)
            if m:
                out[(m.group(1), m.group(2) or "")] = float(m.group(3))
        return out

    def metric(self, name, **labels):
        total = 0.0
        try:
            ms = self.metrics()
        except OSError:
            return 0.0
        for (n, l), v in ms.items():
            if n == name and all(f'{k}="{w}"' in l for k, w in labels.items()):
                total += v
        return total

    def wait_quiet(self, timeout):
        """Every client has gone: holdfast must count no open connection, no held one and no
        held byte, within what its timers allow."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            self.check_alive()
            ms = self.metrics()
            open_c = ms.get(("holdfast_open_connections", ""), -1)
            held = ms.get(("holdfast_held_connections_all", ""), -1)
            held_bytes = sum(v for (n, _), v in ms.items() if n == "holdfast_held_bytes")
            held_svc = sum(v for (n, _), v in ms.items() if n == "holdfast_held_connections")
            last = (open_c, held, held_svc, held_bytes)
            if last == (0, 0, 0, 0):
                return
            time.sleep(0.2)
        raise Failure("every client has gone, but holdfast still counts open connections "
                      f"{last[0]:.0f}, held {last[1]:.0f} (per service {last[2]:.0f}), held bytes "
                      f"{last[3]:.0f} after {timeout:.0f} s")

    def drain_wave(self, gen, seed, n=40):
        """Connections left open across the SIGTERM: held, relayed, half-sent heads, probe
        keep-alives, uploads, silent ones. Returns the sockets."""
        rng = random.Random(f"{seed}/drain")
        socks = []
        for i in range(n):
            target = rng.choice(sorted(self.listeners))
            try:
                s = socket.create_connection(self.listeners[target], timeout=2)
            except OSError:
                continue
            socks.append(s)
            k = rng.randrange(6)
            if k == 0:
                data = gen.request(rng, target, False)
            elif k == 1:
                data = gen.request(rng, target, True)
            elif k == 2:
                data = gen.request(rng, target, False)[:rng.randrange(1, 30)]
            elif k == 3:
                data = b"POST /up HTTP/1.1\r\nHost: relay.fuzz\r\nContent-Length: 1000000\r\n\r\n" \
                    + b"u" * 100000
            elif k == 4:
                data = gen.special(rng, target)
            else:
                data = b""
            s.settimeout(0.5)
            try:
                s.sendall(data)
            except OSError:
                pass
        return socks

    def drain(self, socks=()):
        """SIGTERM with connections open: holdfast must exit 0 within its drain timeout (and
        a margin), with no sanitizer report. The clients read what comes meanwhile; some go
        away during the drain."""
        self.check_alive()
        self.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        rng = random.Random(len(socks))
        pending = list(socks)
        limit = DRAIN_TIMEOUT + 30
        deadline = time.monotonic() + limit
        rc = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                break
            if pending:
                r, _, _ = select.select(pending, [], [], 0.1)
                for s in r:
                    try:
                        data = s.recv(65536)
                    except OSError:
                        data = b""
                    if not data or rng.random() < 0.05:
                        pending.remove(s)
                        s.close()
            else:
                time.sleep(0.1)
        for s in socks:
            s.close()
        if rc is None:
            self.proc.kill()
            self.proc.wait()
            raise Failure(f"holdfast did not exit within {limit} s of SIGTERM "
                          f"(drain timeout {DRAIN_TIMEOUT} s, {len(socks)} connections open)")
        report = self.sanitizer_report(full=True)
        if report:
            raise Failure(f"sanitizer report at exit (status {rc}):\n{report}")
        if rc != 0:
            raise Failure(f"holdfast exited with status {rc} after SIGTERM (want 0)")
        self.drain_s = time.monotonic() - t0

    def stop(self):
        """Ends everything this run started: holdfast, the backend, the wake commands."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)  # second signal: stop now
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        for b in self.backends:
            if b.poll() is None:
                try:
                    os.killpg(b.pid, signal.SIGKILL)
                except OSError:
                    pass
                b.wait()
        # Wake commands (and their children) that outlived holdfast: found by this run's token
        # in their environment, ended by PID.
        for pid in self.own_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.stderr_file:
            self.stderr_file.close()

    def own_processes(self):
        mark = f"SOCKFUZZ_TOKEN={self.token}".encode()
        pids = []
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == os.getpid():
                continue
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    if mark in f.read().split(b"\0"):
                        pids.append(int(d))
            except OSError:
                pass
        return pids


# =============================================================================================
# Clients
# =============================================================================================

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = collections.Counter()

    def add(self, key, n=1):
        with self.lock:
            self.c[key] += n


class Run:
    """Shared state of the clients."""

    def __init__(self, args, rig, gen, seed):
        self.args = args
        self.rig = rig
        self.gen = gen
        self.seed = seed
        self.stop = threading.Event()
        self.stats = Stats()
        self.lock = threading.Lock()
        self.opened = 0
        self.failure = None
        self.active = {}                          # cid -> (start, plan)
        self.recent = collections.deque(maxlen=200)  # (start, end, plan)
        self.failure_window = None

    def take(self, n):
        """Reserves n connections of the --max-connections budget."""
        with self.lock:
            if self.opened + n > self.args.max_connections:
                return False
            self.opened += n
            return True

    def fail(self, msg):
        self.snapshot()
        with self.lock:
            if self.failure is None:
                self.failure = msg
        self.stop.set()

    def snapshot(self, before=4.0):
        """Notes, once, the plans running when a failure is seen and those that ended shortly
        before: [(start, end or None, plan)], oldest first, and the moment."""
        now = time.monotonic()
        with self.lock:
            if self.failure_window is not None:
                return
            plans = [(s, None, p) for s, p in self.active.values()]
            plans += [(s, e, p) for s, e, p in self.recent if e >= now - before]
            self.failure_window = (now, sorted(plans, key=lambda t: t[0]))


class Client:
    """Runs plans one after another until told to stop."""

    def __init__(self, run, idx):
        self.run = run
        self.idx = idx

    def loop(self, only=None):
        run = self.run
        i = 0
        while not run.stop.is_set():
            if only is not None:
                if i >= len(only):
                    return
                cid = only[i]
            else:
                cid = f"{self.idx}:{i}"
            i += 1
            plan = run.gen.plan(run.seed, cid)
            n = max(1, plan.burst)
            if not run.take(n):
                return
            start = time.monotonic()
            with run.lock:
                run.active[(cid, self.idx)] = (start, plan)
            try:
                self.execute(plan)
            except Failure as e:
                run.fail(f"{e}\n{plan.describe()}")
            except Exception as e:  # a bug of this script must not pass for a finding
                run.fail(f"sockfuzz internal error on connection {cid}: {e!r}")
                raise
            finally:
                with run.lock:
                    run.active.pop((cid, self.idx), None)
                    run.recent.append((start, time.monotonic(), plan))
            run.stats.add("plans")
            run.stats.add("plan:" + plan.kind.split("+")[0])

    def connect(self, plan):
        s = socket.socket()
        if plan.rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, plan.rcvbuf)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        s.settimeout(3)
        try:
            s.connect(self.run.rig.addr(plan.target))
        except OSError as e:
            s.close()
            self.run.stats.add(f"connect:{type(e).__name__}")
            return None
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.run.stats.add("connections")
        return s

    def execute(self, plan):
        if plan.burst:
            return self.execute_burst(plan)
        s = self.connect(plan)
        if s is None:
            return
        got = bytearray()
        state = {"reset": False, "send_blocked": False}
        try:
            for step in plan.steps:
                if self.run.stop.is_set():
                    state["cut"] = True
                    break
                if step[0] == "send":
                    if not self.send(s, step[1], state):
                        state["cut"] = True
                        break
                elif step[0] == "pause":
                    if self.run.stop.wait(step[1]):
                        state["cut"] = True
                        break
                elif step[0] == "peek":
                    self.peek(s, got, state)
                elif step[0] == "flood":
                    self.flood(s, plan, step, state)
                elif step[0] == "duplex":
                    self.duplex(s, step, got, state)
            self.finish(s, plan.end, got, state)
        finally:
            s.close()
        self.check(plan, bytes(got), state)

    def send(self, s, data, state):
        s.settimeout(2)
        try:
            s.sendall(data)
            return True
        except socket.timeout:
            state["send_blocked"] = True  # holdfast stopped reading (hold buffer full)
            self.run.stats.add("send:blocked")
        except (BrokenPipeError, ConnectionResetError):
            state["reset"] = True
            self.run.stats.add("send:reset")
        except OSError:
            state["reset"] = True
        return False

    def duplex(self, s, step, got, state, timeout=20.0):
        """Sends data while reading slowly, then half-closes and reads to EOF."""
        _, data, chunk, pause = step
        view = memoryview(data)
        sent = 0
        deadline = time.monotonic() + timeout
        s.setblocking(False)
        try:
            while time.monotonic() < deadline and not self.run.stop.is_set():
                want_write = [s] if sent < len(data) else []
                r, w, _ = select.select([s], want_write, [], 0.25)
                if w:
                    try:
                        sent += s.send(view[sent:sent + 65536])
                    except BlockingIOError:
                        pass
                    if sent == len(data):
                        s.shutdown(socket.SHUT_WR)
                if r:
                    try:
                        d = s.recv(chunk)
                    except BlockingIOError:
                        continue
                    if not d:
                        state["eof"] = sent == len(data)
                        return
                    got += d
                    if pause:
                        time.sleep(pause)
        except OSError:
            state["reset"] = True
        finally:
            s.setblocking(True)

    def flood(self, s, plan, step, state):
        _, unit, max_bytes, seconds = step
        unit = unit * max(1, 65536 // len(unit))
        sent = 0
        deadline = time.monotonic() + seconds
        s.settimeout(1)
        while sent < max_bytes and time.monotonic() < deadline and not self.run.stop.is_set():
            try:
                s.sendall(unit)
            except socket.timeout:
                self.run.stats.add("flood:blocked")
                return  # backpressure: as it should be
            except OSError:
                state["reset"] = True
                return
            sent += len(unit)
            if sent > FLOOD_LIMIT:
                raise Failure(f"holdfast read {sent >> 20} MiB of pipelined requests on connection "
                              f"{plan.cid} from a client that read none of the answers: it "
                              f"buffers answers without bound instead of stopping to read")
        self.run.stats.add("flood:unblocked")

    def peek(self, s, got, state):
        """Reads what has arrived, without waiting (a socket with a timeout would wait)."""
        s.setblocking(False)
        try:
            while len(got) < (4 << 20):
                chunk = s.recv(65536)
                if not chunk:
                    return
                got += chunk
        except (BlockingIOError, socket.timeout):
            pass
        except OSError:
            state["reset"] = True
        finally:
            s.setblocking(True)

    def read_until(self, s, got, state, timeout, chunk=65536, pause=0.0):
        """Reads until EOF, timeout, stop, or 4 MiB. Returns True at EOF."""
        deadline = time.monotonic() + timeout
        while len(got) < (4 << 20):
            left = deadline - time.monotonic()
            if left <= 0 or self.run.stop.is_set():
                return False
            s.settimeout(min(left, 0.25))
            try:
                data = s.recv(chunk)
            except socket.timeout:
                continue
            except OSError:
                state["reset"] = True
                return False
            if not data:
                return True
            got += data
            if pause and self.run.stop.wait(pause):
                return False
        return False

    def finish(self, s, end, got, state):
        kind = end[0]
        state["end"] = kind
        if kind == "close":
            return
        if kind == "rst":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if kind == "idle":
            self.run.stop.wait(end[1])
            return
        if kind == "shutwr_read":
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                state["reset"] = True
                return
            state["eof"] = self.read_until(s, got, state, end[1])
        elif kind == "read":
            state["eof"] = self.read_until(s, got, state, end[1])
        elif kind == "slowread":
            state["eof"] = self.read_until(s, got, state, end[3], chunk=end[1], pause=end[2])
        if got[:12]:
            m = re.match(rb"HTTP/1\.[01] (\d{3})", bytes(got[:12]))
            self.run.stats.add("status:" + (m.group(1).decode() if m else "other"))

    def check(self, plan, got, state):
        """Oracles on what holdfast itself answered."""
        clean = state.get("eof") and not state["reset"]
        if plan.expect is not None:
            if not clean:
                self.run.stats.add("oracle:inconclusive")
                return
            try:
                answers = parse_answers(got)
            except ValueError as e:
                whole = len(_STATUS.findall(got))
                raise Failure(f"probe answers on connection {plan.cid} are not HTTP after "
                              f"{whole} answers of {plan.expect} ({len(got)} bytes, then a clean "
                              f"EOF): {str(e)[:300]}")
            seen = [(st, body) for st, _, body in answers]
            wrong = [a for a in seen if a not in PROBE_ANSWERS]
            if len(seen) != plan.expect or wrong:
                raise Failure(f"wrong probe answers on connection {plan.cid}: want {plan.expect} "
                              f"rule answers, got {len(seen)}: {(wrong or seen)[:6]!r}")
            for _, headers, _ in answers:
                if not headers.get(b"content-type", b"").startswith(b"application/json"):
                    raise Failure(f"probe answer without JSON Content-Type: {headers!r}")
            self.run.stats.add("oracle:probe-ok")
            return
        if plan.target in ("mirror", "tmirror") and clean and plan.end[0] == "shutwr_read" and \
                not state.get("cut") and not state.get("send_blocked"):
            sent = plan.payload()
            if not got or got.startswith(b"HTTP/1.1 50"):
                # Nothing relayed: holdfast could not reach the backend in time (out of
                # descriptors, not woken within the hold timeout, the hold queue full) and
                # closed or answered 502/503/504 itself.
                self.run.stats.add("oracle:mirror-unreached")
            elif bytes(got) != sent:
                i = next((k for k in range(min(len(got), len(sent))) if got[k] != sent[k]),
                         min(len(got), len(sent)))
                raise Failure(f"the relay is not transparent on connection {plan.cid}: sent "
                              f"{len(sent)} bytes and half-closed, the echo backend's answer "
                              f"was {len(got)} bytes, first difference at byte {i}: sent "
                              f"{sent[i:i + 40]!r}, got {bytes(got[i:i + 40])!r}")
            else:
                self.run.stats.add("oracle:mirror-ok")
        if plan.holdfast_only and clean and got:
            try:
                parse_answers(got)
            except ValueError as e:
                raise Failure(f"bytes from holdfast on the never-ready service are not complete "
                              f"HTTP/1.1 answers (connection {plan.cid}): {e}")
            self.run.stats.add("oracle:structure-ok")

    def execute_burst(self, plan):
        socks = []
        try:
            for _ in range(plan.burst):
                if self.run.stop.is_set():
                    break
                s = self.connect(plan)
                if s is None:
                    break
                socks.append(s)
                state = {"reset": False}
                for step in plan.steps:
                    if step[0] == "send":
                        s.settimeout(0.5)
                        try:
                            s.sendall(step[1])
                        except OSError:
                            pass
            for step in plan.steps:
                if step[0] == "pause" and self.run.stop.wait(step[1]):
                    break
            kind = plan.end[0]
            if kind == "rst":
                for s in socks:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif kind in ("read", "shutwr_read"):
                if kind == "shutwr_read":
                    for s in socks:
                        try:
                            s.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                pending = list(socks)
                deadline = time.monotonic() + plan.end[1]
                while pending and time.monotonic() < deadline and not self.run.stop.is_set():
                    r, _, _ = select.select(pending, [], [], 0.25)
                    for s in r:
                        try:
                            data = s.recv(65536)
                        except OSError:
                            data = b""
                        if not data:
                            pending.remove(s)
                        elif data.startswith(b"HTTP/1."):
                            self.run.stats.add("status:" + data[9:12].decode(errors="replace"))
        finally:
            for s in socks:
                s.close()


# =============================================================================================
# Main
# =============================================================================================

def monitor(run, rig, deadline, interval_healthz=1.0, healthz_timeout=15.0):
    """Watches holdfast until the deadline, the connection budget, or a failure. Raises
    Failure."""
    last_ok = time.monotonic()
    next_health = 0.0
    while not run.stop.is_set():
        now = time.monotonic()
        rig.check_alive()
        report = rig.sanitizer_report()
        if report:
            run.snapshot()
            raise Failure(f"sanitizer report:\n{rig.full_report()}")
        rig.check_rss()
        if now >= next_health:
            next_health = now + interval_healthz
            try:
                st, body = rig.admin_get("/healthz", 5)
                if st == 200:
                    last_ok = time.monotonic()
                else:
                    run.stats.add("healthz:not-200")
                    if time.monotonic() - last_ok > healthz_timeout:
                        raise Failure(f"/healthz answers {st}: {body[:300]}")
            except OSError as e:
                if time.monotonic() - last_ok > healthz_timeout:
                    raise Failure(f"/healthz has not answered for {healthz_timeout:.0f} s: {e}")
        if now >= deadline:
            return "time"
        with run.lock:
            done = run.opened >= run.args.max_connections and not run.active
        if done:
            return "connections"
        run.stop.wait(0.1)
    return "stopped"


def save_artifacts(args, rig, run, msg, seed):
    os.makedirs(args.artifacts, exist_ok=True)
    dest = os.path.join(args.artifacts, f"sockfuzz-{seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(dest, exist_ok=True)
    for name in ("holdfast.stderr", "holdfast.json"):
        src = os.path.join(rig.workdir, name)
        if os.path.exists(src):
            shutil.copy(src, dest)
    at, window = run.failure_window if run and run.failure_window else (time.monotonic(), [])
    with open(os.path.join(dest, "connections.txt"), "w") as f:
        f.write(f"# seed {seed}: connections running when the failure was seen, or ended in the "
                f"4 s before it, oldest first\n\n")
        for start, end, plan in window:
            f.write(plan.describe() + "\n\n")
    # The connections most likely to have done it: those open at the failure, then those that
    # ended within the last second.
    likely = [p for _, e, p in window if e is None] + \
        [p for _, e, p in sorted(window, key=lambda t: -(t[1] or 0))
         if e is not None and e >= at - 1.0]
    ids = ",".join(p.cid for p in likely[:24])
    replay = f"{replay_cmd(args, seed)} --seconds {args.seconds:g} --clients {args.clients}"
    alone = f"{replay_cmd(args, seed)} --conns {ids} --isolate --repeat 20 --copies 8" \
        if ids else ""
    with open(os.path.join(dest, "README"), "w") as f:
        f.write(f"{msg}\n\nseed: {seed}\nreplay the run: {replay}\n")
        if alone:
            f.write(f"replay each connection around the failure alone: {alone}\n")
    return dest, replay, alone


def replay_cmd(args, seed):
    cmd = f"{PYTHON} {os.path.relpath(SELF, REPO)} --holdfast {args.holdfast} --seed {seed}"
    return cmd + (f" --skip {args.skip}" if args.skip else "")


def isolate(args, seed):
    """Replays each of --conns alone against a fresh holdfast; prints which ones fail."""
    failing = []
    for cid in [c.strip() for c in args.conns.split(",") if c.strip()]:
        cmd = [PYTHON, SELF, "--holdfast", args.holdfast, "--seed", str(seed), "--conns", cid,
               "--skip", args.skip,
               "--repeat", str(args.repeat), "--copies", str(args.copies),
               "--seconds", str(args.seconds),
               "--artifacts", args.artifacts]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=args.seconds + 120)
        lines = r.stdout.decode(errors="replace").splitlines()
        verdict = next((l for l in lines if "FAIL" in l or "PASS" in l), "no verdict")
        print(f"sockfuzz: connection {cid}: {verdict[:300]}", flush=True)
        if r.returncode != 0:
            failing.append(cid)
    print(f"sockfuzz: failing alone: {','.join(failing) or 'none'}")
    return 1 if failing else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("holdfast_pos", nargs="?", metavar="HOLDFAST",
                   help="holdfast binary (default: $HOLDFAST_BIN, else build-asan/holdfast)")
    p.add_argument("--holdfast", help="holdfast binary (same as the positional argument)")
    p.add_argument("--seed", type=int, help="seed (default: random, printed)")
    p.add_argument("--seconds", type=float, default=45, help="how long to fuzz (default 45)")
    p.add_argument("--max-connections", type=int, default=100000,
                   help="stop after this many client connections (default 100000)")
    p.add_argument("--clients", type=int, default=12, help="client threads (default 12)")
    default_artifacts = os.environ.get("SOCKFUZZ_ARTIFACTS") or \
        os.path.join(tempfile.gettempdir(), "sockfuzz-failures")
    p.add_argument("--artifacts", default=default_artifacts,
                   help="where a failure's log, config and connections are saved "
                        "(default $SOCKFUZZ_ARTIFACTS, else /tmp/sockfuzz-failures)")
    p.add_argument("--conns", help="replay only these connections (C:I,...) of --seed, "
                                   "concurrently, --repeat times")
    p.add_argument("--repeat", type=int, default=1, help="with --conns: rounds (default 1)")
    p.add_argument("--copies", type=int, default=1,
                   help="with --conns: run this many copies of each connection at once, so a "
                        "race that needs a busy holdfast shows (default 1)")
    p.add_argument("--print-plans", action="store_true", help="with --conns: print the plans")
    p.add_argument("--isolate", action="store_true",
                   help="with --conns: replay each connection alone (a fresh holdfast each, "
                        "--repeat rounds) and tell which ones fail")
    p.add_argument("--skip", default="",
                   help="plan kinds not to generate, comma-separated (burst, mirror, pipelined, "
                        "probe-flood, probe-halfclose, probe-oracle, silent, single, slow-head, "
                        "special, stream): "
                        "to look past a known finding; the same --skip replays the same run")
    p.add_argument("--nofile", type=int, default=NOFILE,
                   help=f"holdfast's open-file limit (default {NOFILE}, below what the clients "
                        f"can open at once, so accepting pauses; 0 leaves it)")
    p.add_argument("--log-level", default="info", help="holdfast's --log-level (default info)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    # backend mode (what the wake commands and the relayed service's backend run)
    p.add_argument("--serve-backend", metavar="HOST:PORT", help=argparse.SUPPRESS)
    p.add_argument("--kind", default="http", help=argparse.SUPPRESS)
    p.add_argument("--delay", type=float, default=0, help=argparse.SUPPRESS)
    p.add_argument("--lifetime", type=float, default=60, help=argparse.SUPPRESS)
    p.add_argument("--chance", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--watch-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.serve_backend:
        serve_backend(args)
        return 0

    args.holdfast = os.path.abspath(args.holdfast or args.holdfast_pos or
                                    os.environ.get("HOLDFAST_BIN") or
                                    os.path.join(REPO, "build-asan", "holdfast"))
    if not os.access(args.holdfast, os.X_OK):
        print(f"sockfuzz: no holdfast binary at {args.holdfast}", file=sys.stderr)
        return 2
    args.seconds = min(max(args.seconds, 1.0), 3600.0)
    args.clients = min(max(args.clients, 1), 64)
    args.repeat = min(max(args.repeat, 1), 1000)
    args.copies = min(max(args.copies, 1), 64)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    unknown = {k.strip() for k in args.skip.split(",") if k.strip()} - set(PLAN_KINDS)
    if unknown:
        print(f"sockfuzz: --skip: no plan kind {', '.join(sorted(unknown))} (kinds: "
              f"{', '.join(PLAN_KINDS)})", file=sys.stderr)
        return 2
    if args.isolate and args.conns:
        return isolate(args, seed)
    print(f"sockfuzz: seed {seed} ({'replay' if args.conns else 'fuzz'}, {args.seconds:.0f} s, "
          f"{args.clients} clients, binary {args.holdfast})", flush=True)

    token = f"{os.getpid()}-{random.SystemRandom().randrange(1 << 48):x}"
    workdir = tempfile.mkdtemp(prefix="sockfuzz-")
    rig = Rig(args, workdir, token)
    gen = Gen({"held": 30, "shared": 20, "flip": 18, "relay": 12, "raw": 10, "mirror": 6,
               "tmirror": 6, "tiny": 6},
              skip=[k.strip() for k in args.skip.split(",") if k.strip()])
    run = None
    failure = None
    t0 = time.monotonic()
    found_at = None
    try:
        rig.start()
        print(f"sockfuzz: holdfast pid {rig.proc.pid} on {rig.host}, RSS {rig.base_rss_kb} kB at "
              f"start, bound {rig.rss_bound_kb} kB", flush=True)
        run = Run(args, rig, gen, seed)
        t0 = time.monotonic()  # times below are from the first client connection
        if args.conns:
            ids = [c.strip() for c in args.conns.split(",") if c.strip()]
            if args.print_plans:
                for cid in ids:
                    print(gen.plan(seed, cid).describe() + "\n")
            args.max_connections = 10 ** 9
            end = time.monotonic() + args.seconds
            for rnd in range(args.repeat):
                threads = [threading.Thread(target=Client(run, k).loop, args=([cid],), daemon=True)
                           for k, cid in enumerate(ids * args.copies)]
                for t in threads:
                    t.start()
                stuck = time.monotonic() + 60
                while any(t.is_alive() for t in threads):
                    if time.monotonic() > stuck:
                        raise Failure("replayed connections did not end within 60 s (sockfuzz bug)")
                    rig.check_alive()
                    report = rig.sanitizer_report()
                    if report:
                        raise Failure(f"sanitizer report:\n{report}")
                    time.sleep(0.05)
                if run.failure or time.monotonic() > end:
                    break
            time.sleep(0.3)
            rig.check_alive()
            report = rig.sanitizer_report()
            if report:
                raise Failure(f"sanitizer report:\n{report}")
            why = "replayed"
        else:
            threads = [threading.Thread(target=Client(run, k).loop, daemon=True)
                       for k in range(args.clients)]
            for t in threads:
                t.start()
            try:
                why = monitor(run, rig, time.monotonic() + args.seconds)
            finally:
                run.stop.set()
                for t in threads:
                    t.join(timeout=15)
            if any(t.is_alive() for t in threads):
                raise Failure("client threads did not stop within 15 s (sockfuzz bug)")
        if run.failure:
            raise Failure(run.failure)
        fuzz_s = time.monotonic() - t0
        rig.check_alive()
        report = rig.sanitizer_report()
        if report:
            raise Failure(f"sanitizer report:\n{report}")
        rig.check_rss()
        # Everything a client opened is closed; holdfast must let go of it within its timers.
        quiet = LIMITS["idleTimeoutSeconds"] + LIMITS["headTimeoutSeconds"] + LINGER_S + 10
        rig.wait_quiet(quiet)
        ms = rig.metrics()
        wave = [] if args.conns else rig.drain_wave(gen, seed)
        rig.drain(wave)
        c = run.stats.c
        outcomes = collections.Counter()
        for (n, l), v in ms.items():
            if n == "holdfast_requests_total":
                m = re.search(r'outcome="([a-z_]+)"', l)
                if m:
                    outcomes[m.group(1)] += int(v)
        print(f"sockfuzz: PASS seed {seed}: {why} after {fuzz_s:.1f} s; {c['plans']} plans, "
              f"{c['connections']} connections; peak RSS {rig.peak_rss_kb} kB "
              f"(bound {rig.rss_bound_kb} kB); drain with {len(wave)} connections open: "
              f"exit 0 after {rig.drain_s:.1f} s", flush=True)
        print("sockfuzz: plans " + ", ".join(f"{k[5:]} {v}" for k, v in sorted(c.items())
                                             if k.startswith("plan:")))
        print("sockfuzz: client saw " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())
                                                  if not k.startswith("plan")
                                                  and k != "connections"))
        extra = {k: int(sum(v for (n, _), v in ms.items() if n == name)) for k, name in (
            ("fd-exhaustion episodes", "holdfast_accept_fd_exhausted_total"),
            ("wake runs", "holdfast_wake_command_runs_total"),
            ("connect retries", "holdfast_upstream_connect_retries_total"),
            ("unknown hosts", "holdfast_unknown_host_total"))}
        print("sockfuzz: holdfast counted " + ", ".join(
            [f"{k} {v}" for k, v in sorted(outcomes.items())] +
            [f"{k} {v}" for k, v in extra.items()]))
        return 0
    except Failure as e:
        if run:
            run.snapshot()
        failure = str(e)
        found_at = time.monotonic() - t0
    except KeyboardInterrupt:
        failure = "interrupted"
    finally:
        if run:
            run.stop.set()
        rig.stop()
        if failure:
            dest, replay, alone = save_artifacts(args, rig, run, failure, seed)
            print(f"sockfuzz: FAIL seed {seed} after {found_at or 0:.1f} s of fuzzing: {failure}",
                  file=sys.stderr)
            print(f"sockfuzz: log, config and the connections around the failure saved in {dest}",
                  file=sys.stderr)
            print(f"sockfuzz: replay the run: {replay}", file=sys.stderr)
            if alone:
                print(f"sockfuzz: replay each connection around it alone: {alone}",
                      file=sys.stderr)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"sockfuzz: work directory kept: {workdir}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
