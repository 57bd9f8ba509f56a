"""traffic: clients that send requests to every app all the time, through its Service's ClusterIP
(kube-proxy's rules, in the cluster's network namespace), and classify every answer.

Each app has two client threads: one opens a new connection for every request, the other keeps
one keep-alive connection for as long as the far end does. A request on a reused keep-alive
connection that fails before any byte of an answer arrived is sent again once on a new
connection, as HTTP clients do for idempotent requests (Go's net/http, curl): the far end may
close an idle connection at any time. Every request has a deadline; every loop ends when the
soak says stop.

An answer is good when it is
  - 200 with the body of one of the app's own pods (`<deployment>-...`), or
  - 200 with the probeResponse rule's body, for GET /healthz (holdfast answers it at zero), or
  - one of holdfast's documented answers (docs/data-plane.md, "holdfast's own answers": 502
    "bad gateway", 503 "overloaded", 504 "timeout", a JSON body naming the service): accepted,
    counted apart and listed in the report.
Anything else is a failure, recorded with its time: refused, reset, closed without an answer,
closed inside the answer's body (truncated), timed out, a malformed answer, an answer that is
not the app's (another app's pod, a status nobody documents), or one of holdfast's JSON answers
that the documentation does not list. A failed connection also says where kube-proxy sent it ("to 10.88.0.29:8080": a pod or a holdfast replica), read from the kernel's
connection tracking (`conntrack -E`, followed from the start) by its local port. holdfast's
503 "service was removed" is a failure that only the deletion of the app's Service or namespace
excuses (not the ElastiService's alone: its held requests go to the restored pod).
"""
import errno
import http.client
import json
import random
import socket
import threading
import time

from hftest.conntrace import ConnTracker, TracedConnection
from world import PROBE_BODY

# holdfast's own answers as docs/data-plane.md lists them: status -> the body's "error"
DOCUMENTED = {502: "bad gateway", 503: "overloaded", 504: "timeout"}
# documented too, but a failure unless the app's Service or namespace was deleted meanwhile (the
# soak's excuse windows say): a request held when its service is removed for good
REMOVED = (503, "service unavailable", "service was removed")
# each request's deadline: longer than any API outage plus a wake (held requests are slow, not
# lost). A wake held through an API server restart also waits for the controller-manager to act
# again (58 s after the restart began in a run of seed 11; the integration tests allow 150 s,
# docs/test-cluster.md)
REQUEST_TIMEOUT = 150.0


class Failure:
    __slots__ = ("t_start", "t_end", "app", "kind", "detail", "port", "path", "client", "verdict")

    def __init__(self, t_start, t_end, app, kind, detail, port, path, client):
        self.t_start, self.t_end, self.app, self.kind = t_start, t_end, app, kind
        self.detail, self.port, self.path, self.client = detail, port, path, client
        self.verdict = None  # set when classified: ("excused", reason) or ("violation", name)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.failures = []
        self.answers = []  # holdfast's documented answers: (time, app, status, body)

    def count(self, what, n=1):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + n

    def fail(self, f):
        with self.lock:
            self.failures.append(f)
            self.counts["failed"] = self.counts.get("failed", 0) + 1


def _error_kind(e):
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, OSError) and e.errno == errno.EHOSTUNREACH:
        # kube-proxy rejects a connection to a Service without a usable endpoint with ICMP host
        # unreachable, and a connect to a pod address that is gone ends so once ARP gives up:
        # a refusal
        return "refused"
    if isinstance(e, (ConnectionResetError, BrokenPipeError)):
        return "reset"
    if isinstance(e, http.client.RemoteDisconnected):
        return "closed"  # the far end closed before any answer
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(e, http.client.IncompleteRead):
        return "truncated"  # the connection ended inside the answer's body
    if isinstance(e, http.client.HTTPException):
        return "bad_http"
    return "oserror"


def judge(app_name, path, status, body):
    """(good, what): what an answer means for a request to app `app_name`."""
    if status == 200 and body.startswith(app_name + "-"):
        return True, "pod"
    if status == 200 and path == "/healthz" and body == PROBE_BODY:
        return True, "probe"
    if status in (502, 503, 504):
        try:
            j = json.loads(body)
        except ValueError:
            j = None
        if isinstance(j, dict) and "error" in j and "service" in j:
            if DOCUMENTED.get(status) == j["error"]:
                return True, "holdfast_%d" % status
            if (status, j["error"], j.get("reason")) == REMOVED:
                return False, "removed"
            return False, "undocumented_answer"
    return False, "wrong_answer"


class Client(threading.Thread):
    """One client of one app (see the module comment). `keepalive` picks the connection style."""

    def __init__(self, app, keepalive, stats, stop, seed, pace, clock, timeout=REQUEST_TIMEOUT,
                 where=None):
        super().__init__(daemon=True, name="client-%s-%s" % (app.key, "ka" if keepalive else "new"))
        self.app = app
        self.keepalive = keepalive
        self.stats = stats
        self.stop_ev = stop
        self.rng = random.Random(seed)
        self.pace = pace
        self.clock = clock
        self.timeout = timeout
        self.where = where  # a ConnTracker on the real cluster: where a failed connection went
        self.conn = None
        self.conn_key = None
        self.seq = 0

    def run(self):
        while not self.stop_ev.is_set():
            target = self.app.traffic_target()
            if target is None:
                self._drop()
                if self.app.gone:
                    return
                self.stop_ev.wait(0.2)
                continue
            ip, ports = target
            port = self.rng.choice(ports)
            self.seq += 1
            path = "/healthz" if self.rng.random() < 0.1 else "/soak/%d" % self.seq
            self._one(ip, port, path)
            self.stop_ev.wait(self.rng.uniform(*self.pace))
        self._drop()

    def _drop(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None
        self.conn_key = None

    def _send(self, conn, path):
        conn.request("GET", path, headers={"Host": "%s.%s" % (self.app.name, self.app.ns),
                                           "Connection": "keep-alive" if self.keepalive else "close"})
        r = conn.getresponse()
        body = r.read().decode(errors="replace")
        return r.status, body, r.will_close

    def _one(self, ip, port, path):
        t_start = time.monotonic()
        key = (ip, port)
        reused = self.keepalive and self.conn is not None and self.conn_key == key
        if not reused:
            self._drop()
            self.conn = TracedConnection(ip, port, timeout=self.timeout)
            self.conn_key = key
        try:
            try:
                status, body, will_close = self._send(self.conn, path)
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                if not reused:
                    raise
                # a stale keep-alive connection: once more on a new one
                self.stats.count("keepalive_stale_retries")
                self._drop()
                self.conn = TracedConnection(ip, port, timeout=self.timeout)
                self.conn_key = key
                status, body, will_close = self._send(self.conn, path)
        except (OSError, http.client.HTTPException) as e:
            t_end = time.monotonic()
            detail = "%s: %s" % (type(e).__name__, e)
            dest = self.where.explain(ip, port, self.conn.local_port) if self.where else None
            if dest:
                detail += " (%s)" % dest
            self._drop()
            kind = _error_kind(e)
            self.stats.fail(Failure(t_start, t_end, self.app.key, kind, detail, port, path,
                                    self.name))
            return
        if will_close or not self.keepalive:
            self._drop()
        good, what = judge(self.app.name, path, status, body)
        if good:
            self.stats.count(what)
            if what.startswith("holdfast_"):
                self.stats.count("holdfast_answers")
                with self.stats.lock:
                    self.stats.answers.append((time.monotonic(), self.app.key, status, body[:300]))
            return
        self.stats.fail(Failure(t_start, time.monotonic(), self.app.key, what,
                                "HTTP %d %r" % (status, body[:200]), port, path, self.name))


class Traffic:
    """The client threads of every app; add() starts an app's clients, stop() ends them all."""

    def __init__(self, seed, pace=(0.15, 0.45), timeout=REQUEST_TIMEOUT, where=False):
        """where: follow conntrack's events, so a failed connection says where it went (the real
        cluster, where kube-proxy is iptables in the caller's network namespace)."""
        self.stats = Stats()
        self.stop_ev = threading.Event()
        self.rng = random.Random(seed)
        self.pace = pace
        self.timeout = timeout  # each request's deadline
        self.where = ConnTracker() if where else None
        if self.where:
            self.where.start()
        self.threads = []

    def add(self, app):
        for keepalive in (False, True):
            c = Client(app, keepalive, self.stats, self.stop_ev, self.rng.randrange(1 << 30),
                       self.pace, time.monotonic, self.timeout, self.where)
            c.start()
            self.threads.append(c)

    def stop(self, timeout=None):
        if timeout is None:
            timeout = self.timeout + 10
        self.stop_ev.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        if self.where:
            self.where.stop()
        return [t.name for t in self.threads if t.is_alive()]
