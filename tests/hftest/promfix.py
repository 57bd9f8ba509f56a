"""promfix: a real Prometheus and the metrics it scrapes, for holdfast's tests (standard library only).

Three pieces, each a context manager whose close/stop is idempotent and safe after a failure:

- `Exporter`: a tiny HTTP server on a loopback address serving `/metrics` in Prometheus' text
  format. The test sets gauges at any time and Prometheus sees them at its next scrape:

      exp = Exporter()
      exp.set("holdfast_test_rps", 0.2, labels={"service": "web"})
      exp.remove("holdfast_test_rps", labels={"service": "web"})
      exp.healthy = False          # /metrics answers 503: up{job="exporter"} becomes 0

- `Prometheus`: Debian's `/usr/bin/prometheus` (the `prometheus` package; override with
  $HOLDFAST_PROMETHEUS) with a generated config in its own work directory: scrape and
  evaluation interval 1s, job `exporter` scraping the Exporter (if one is given) and job
  `prometheus` scraping itself with the static label `container="prometheus"`, so KubeElasti's
  default uptime filter `up{container="prometheus"}` finds it. No alerting, no remote storage.
  It listens on a free loopback port and keeps its TSDB in the work directory. Construction
  starts it and returns once `/-/ready` answers and the first scrapes landed (`up` has a
  sample of 1 for every job), which takes about 6 s: Prometheus 2.x hands discovered targets
  to its scraper at most every 5 s (wait_scrapes=False returns at /-/ready, well under 1 s):

      with Prometheus(exporter=exp, workdir=tmp_path) as prom:
          prom.url                                  # "http://127.0.0.1:PORT"
          prom.query('up')                          # the API's parsed JSON, errors included
          prom.value('sum(holdfast_test_rps)')      # one float, or None for an empty result
          prom.wait_for_value('sum(holdfast_test_rps)', lambda v: v == 0.2, timeout=10)
          prom.wait_for_value('sum(holdfast_test_rps)', 0.2, at=whole_second)  # as holdfast asks
          prom.kill()                               # SIGKILL: "unreachable" tests
          prom.restart()                            # same port, fresh TSDB (a new pod)

- `FakePrometheus`: an HTTP server that records every request (method, path, query
  parameters, headers) and answers a canned `/api/v1/query` response, for the tests that check
  what holdfast sends (headers, URL) or how it judges answers a real Prometheus rarely gives.

Timing: everything is 1s-granular. `min_over_time((max(up{...}) or vector(0))[Ns:])`, the
uptime check, is 1 only once Prometheus has scraped itself for N seconds; before that (a fresh
start, or `restart()` with a new TSDB) the subquery's earlier steps have no `up` sample, so the
minimum is 0. Use small cooldowns (2-3 s) and `wait_for_value`. A restart that keeps its TSDB
(`restart(keep_data=True)`) does not look recent to that check while the gap is shorter than the
query lookback (5 minutes): the last `up` samples before the stop stand in for the gap.

Every wait is bounded and raises `PromfixError` (with the Prometheus log's tail) on timeout.
Processes are killed by stop()/close(), at interpreter exit (atexit) for anything left, and,
where util-linux's `setpriv` exists, by the kernel when the thread that started them dies
(PR_SET_PDEATHSIG): start them from the test's main thread, as pytest fixtures are.
"""
import atexit
import http.server
import json
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from . import kubeclient
from .net import free_port

PROMETHEUS_BIN = os.environ.get("HOLDFAST_PROMETHEUS", "/usr/bin/prometheus")

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_live = set()  # started Prometheus objects, stopped at exit if a test left one running
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy


class PromfixError(Exception):
    """A fixture could not do what it was asked (start, answer, reach a value in time)."""


def wait_for(pred, timeout, interval=0.1, what="condition"):
    """kubeclient.wait_for with the fixtures' failure: PromfixError after `timeout` seconds; an
    exception of pred propagates."""
    return kubeclient.wait_for(pred, timeout, interval, what, retry_on=(), error=PromfixError)


def whole_second():
    """Now, truncated to the second: the `time=` holdfast sends with a query."""
    return float(int(time.time()))


def prometheus_version(binary=PROMETHEUS_BIN):
    """'2.42.0+ds' for Debian bookworm's package; PromfixError when the binary is missing."""
    if not os.access(binary, os.X_OK):
        raise PromfixError("%s is missing: install Debian's prometheus package" % binary)
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    m = re.search(r"version (\S+)", out.stdout + out.stderr)
    return m.group(1) if m else "unknown"


def format_value(v):
    """A sample value as the text format writes it (+Inf, -Inf, NaN included)."""
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def _escape_label(v):
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _series_key(labels):
    labels = labels or {}
    for k in labels:
        if not _LABEL_NAME.match(k):
            raise ValueError("bad label name %r" % k)
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body, ctype):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server:
    """A threaded HTTP server on a loopback port of its own, run by a daemon thread."""

    def __init__(self, handler, host):
        self._httpd = http.server.ThreadingHTTPServer((host, 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def address(self):
        """'127.0.0.1:PORT', a scrape target."""
        return "%s:%d" % (self.host, self.port)

    @property
    def url(self):
        """'http://127.0.0.1:PORT', no trailing slash."""
        return "http://" + self.address

    def close(self):
        if not self._closed:
            self._closed = True
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _ExporterHandler(_QuietHandler):
    def do_GET(self):
        exp = self.server.owner
        if self.path.split("?")[0] != "/metrics":
            return self._send(404, "not found\n", "text/plain")
        with exp._lock:
            exp.scrapes += 1
        if not exp.healthy:
            return self._send(503, "unhealthy on purpose\n", "text/plain")
        self._send(200, exp.render(), "text/plain; version=0.0.4; charset=utf-8")


class Exporter(_Server):
    """Serves gauges at http://HOST:PORT/metrics; values change when the test says so.

    `scrapes` counts /metrics requests (a scrape after a set() has seen it); `healthy = False`
    makes /metrics answer 503, so Prometheus records up == 0 for the job."""

    def __init__(self, host="127.0.0.1"):
        self._lock = threading.Lock()
        self._metrics = {}  # name -> {"help": str, "series": {labels_key: value}}
        self.scrapes = 0
        self.healthy = True
        super().__init__(_ExporterHandler, host)

    @property
    def metrics_url(self):
        return self.url + "/metrics"

    def set(self, name, value, labels=None, help=None):
        """Sets gauge `name{labels}` to `value` (a float; inf and nan allowed)."""
        if not _METRIC_NAME.match(name):
            raise ValueError("bad metric name %r" % name)
        key = _series_key(labels)
        with self._lock:
            m = self._metrics.setdefault(name, {"help": help or "set by the test", "series": {}})
            if help:
                m["help"] = help
            m["series"][key] = float(value)

    def remove(self, name, labels=None):
        """Stops serving `name{labels}` (labels None or {} is the series without labels).
        Prometheus marks it stale at its next scrape; an unknown series is no error."""
        key = _series_key(labels)
        with self._lock:
            m = self._metrics.get(name)
            if m:
                m["series"].pop(key, None)
                if not m["series"]:
                    del self._metrics[name]

    def clear(self, name=None):
        """Stops serving every series of `name`, or of every metric when name is None."""
        with self._lock:
            if name is None:
                self._metrics.clear()
            else:
                self._metrics.pop(name, None)

    def render(self):
        """The /metrics body."""
        out = []
        with self._lock:
            for name in sorted(self._metrics):
                m = self._metrics[name]
                out.append("# HELP %s %s" % (name, m["help"].replace("\\", "\\\\").replace("\n", "\\n")))
                out.append("# TYPE %s gauge" % name)
                for key in sorted(m["series"]):
                    lbl = ",".join('%s="%s"' % (k, _escape_label(v)) for k, v in key)
                    out.append("%s%s %s" % (name, "{%s}" % lbl if lbl else "", format_value(m["series"][key])))
        return "\n".join(out) + "\n"


def vector_answer(*samples, ts=None):
    """A /api/v1/query success body (dict) for an instant vector: samples are (labels, value)
    pairs or bare values (a str value is sent as is: "abc" tests a non-numeric answer).
    vector_answer() is the empty result."""
    ts = time.time() if ts is None else ts
    result = []
    for s in samples:
        labels, value = s if isinstance(s, tuple) else ({}, s)
        text = value if isinstance(value, str) else format_value(value)  # a str is sent as is
        result.append({"metric": dict(labels), "value": [ts, text]})
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


class Request:
    """One request FakePrometheus received. `headers` keeps every line in order as (name, value)
    pairs; header() looks one up case-insensitively; `at` is when it arrived (time.monotonic)."""

    def __init__(self, method, target, headers):
        self.method = method
        parts = urllib.parse.urlsplit(target)
        self.path = parts.path
        self.query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        self.at = time.monotonic()  # when it arrived
        self.headers = list(headers)

    def header(self, name):
        """Every value of header `name` (case-insensitive), in order."""
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return "Request(%s %s %r %r)" % (self.method, self.path, self.query, self.headers)


class _FakeHandler(_QuietHandler):
    def do_GET(self):
        fake = self.server.owner
        req = Request(self.command, self.path, self.headers.items())
        with fake._lock:
            fake.requests.append(req)
            status, body, delay = fake._status, fake._body, fake._delay
            for (query, header), canned in fake._by_query.items():
                if req.query.get("query") == query and (
                        header is None or header[1] in req.header(header[0])):
                    status, body, delay = canned
                    break
            fake.inflight += 1
            fake.max_inflight = max(fake.max_inflight, fake.inflight)
        try:
            if delay:
                time.sleep(delay)
            self._send(status, body if isinstance(body, str) else json.dumps(body), "application/json")
        finally:
            with fake._lock:
                fake.inflight -= 1

    do_POST = do_GET


class FakePrometheus(_Server):
    """Records requests and answers every one with the canned (status, body): by default one
    series of value 0.25. `requests` is the list of `Request`s received; `inflight` how many are
    being answered now, `max_inflight` the most at once so far."""

    def __init__(self, host="127.0.0.1"):
        self._lock = threading.Lock()
        self.requests = []
        self._status, self._body, self._delay = 200, vector_answer(0.25), 0
        self._by_query = {}  # (query text, (header, value) or None) -> (status, body, delay)
        self.inflight = self.max_inflight = 0
        super().__init__(_FakeHandler, host)

    def answer_query(self, query, body, status=200, delay=0, header=None):
        """Answers later requests for the query text `query` (and, when header is a (name,
        value) pair, only those carrying that header) this way instead; the first match, in the
        order set, wins."""
        with self._lock:
            self._by_query[(query, header)] = (status, body, delay)

    def count(self, query):
        """How many requests asked the query text `query` so far."""
        with self._lock:
            return sum(1 for r in self.requests if r.query.get("query") == query)

    def answer(self, body, status=200, delay=0):
        """Answers later requests with `body` (a dict sent as JSON, or a str sent as is) and
        `status`, after `delay` seconds."""
        with self._lock:
            self._status, self._body, self._delay = status, body, delay

    def wait_requests(self, n, timeout=10):
        """Returns the requests once at least n arrived."""
        wait_for(lambda: len(self.requests) >= n, timeout, 0.02, "%d requests to FakePrometheus" % n)
        with self._lock:
            return list(self.requests)


class Prometheus:
    """One Prometheus server (see the module comment). Starts on construction unless start=False.

    workdir: where the config, TSDB and log go (a new temp dir, removed by stop(), when None).
    exporter: an Exporter (or "host:port" string) scraped as job "exporter".
    self_labels: static labels of the self-scrape job (default {"container": "prometheus"}).
    extra_scrape_configs: more scrape_configs entries (dicts), as in prometheus.yml.
    wait_scrapes: start() returns only once `up` is 1 for every job (about 6 s: Prometheus 2.x
      hands discovered targets to its scraper at most every 5 s); False returns once /-/ready
      answers (well under a second), for tests that need the API but no samples.
    """

    def __init__(self, exporter=None, workdir=None, self_labels=None, extra_scrape_configs=(),
                 host="127.0.0.1", binary=PROMETHEUS_BIN, start=True, wait_scrapes=True,
                 ready_timeout=30):
        self.binary = binary
        self.host = host
        self.port = None
        self._own_workdir = workdir is None
        self.workdir = tempfile.mkdtemp(prefix="promfix-") if workdir is None else str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.exporter = exporter
        self.self_labels = {"container": "prometheus"} if self_labels is None else dict(self_labels)
        self.extra_scrape_configs = list(extra_scrape_configs)
        self.ready_timeout = ready_timeout
        self.wait_scrapes = wait_scrapes
        self.proc = None
        self.started_at = None  # time.time() at the latest start
        self.ready_at = None    # time.time() when start() returned (scrapes landed if waited)
        self._generation = 0    # TSDB directory number: data-0, data-1, ...
        self._log = None
        if start:
            self.start()

    # --- paths and addresses

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    @property
    def url(self):
        """'http://127.0.0.1:PORT', the serverAddress of a trigger."""
        return "http://" + self.address

    @property
    def config_path(self):
        return os.path.join(self.workdir, "prometheus.yml")

    @property
    def log_path(self):
        return os.path.join(self.workdir, "prometheus.log")

    @property
    def data_path(self):
        return os.path.join(self.workdir, "data-%d" % self._generation)

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def jobs(self):
        """The jobs whose `up` must be 1 before the server counts as started: "prometheus", and
        "exporter" when there is one (not those of extra_scrape_configs)."""
        return ["prometheus"] + (["exporter"] if self.exporter is not None else [])

    def _write_config(self):
        scrape = [{"job_name": "prometheus",
                   "static_configs": [{"targets": [self.address], "labels": self.self_labels}]}]
        if self.exporter is not None:
            target = self.exporter if isinstance(self.exporter, str) else self.exporter.address
            scrape.append({"job_name": "exporter", "static_configs": [{"targets": [target]}]})
        scrape += self.extra_scrape_configs
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                  "scrape_configs": scrape}
        with open(self.config_path, "w") as f:
            json.dump(config, f, indent=2)  # JSON is YAML

    # --- life cycle

    def start(self, keep_data=False):
        """Starts the server (again): same port when it had one, a fresh TSDB unless keep_data.
        Returns once ready and scraped; PromfixError (with the log) when it cannot."""
        if self.running():
            raise PromfixError("Prometheus is already running at %s" % self.url)
        if not os.access(self.binary, os.X_OK):
            raise PromfixError("%s is missing: install Debian's prometheus package" % self.binary)
        if self.started_at is not None and not keep_data:
            self._generation += 1
        fixed_port = self.port is not None
        for attempt in range(5):
            if not fixed_port:
                self.port = free_port(self.host)
            self._write_config()
            self._spawn()
            try:
                self._wait_started()
                return self
            except PromfixError:
                exited = self.proc.poll() is not None
                self._terminate(signal.SIGKILL)
                if exited and "address already in use" in self.log_tail() and attempt < 4:
                    if fixed_port:  # restart on the same port: wait for it to be released
                        time.sleep(0.5)
                    continue
                raise
        raise PromfixError("no free port for Prometheus")

    def _spawn(self):
        argv = [self.binary,
                "--config.file=" + self.config_path,
                "--web.listen-address=" + self.address,
                "--storage.tsdb.path=" + self.data_path,
                "--log.level=info"]
        if shutil.which("setpriv"):  # dies with its parent thread, even on SIGKILL of pytest
            argv = ["setpriv", "--pdeathsig", "KILL", "--"] + argv
        self._log = open(self.log_path, "ab")
        self._log.write(b"--- promfix: %s\n" % " ".join(argv).encode())
        self._log.flush()
        self.started_at = time.time()
        self.ready_at = None
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.workdir)
        _live.add(self)

    def _ready(self):
        if self.proc.poll() is not None:
            raise PromfixError("Prometheus exited with %s:\n%s" % (self.proc.returncode, self.log_tail()))
        try:
            with _opener.open(self.url + "/-/ready", timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def _scraped(self):
        if self.proc.poll() is not None:
            raise PromfixError("Prometheus exited with %s:\n%s" % (self.proc.returncode, self.log_tail()))
        try:
            up = {s["labels"].get("job"): s["value"] for s in self.series("up")}
        except PromfixError:
            return False
        return all(up.get(j) == 1.0 for j in self.jobs())

    def _wait_started(self):
        deadline = time.monotonic() + self.ready_timeout
        try:
            wait_for(self._ready, self.ready_timeout, 0.05, "Prometheus /-/ready")
            if self.wait_scrapes:
                wait_for(self._scraped, max(deadline - time.monotonic(), 1), 0.1,
                         "up == 1 for jobs %s" % self.jobs())
        except PromfixError as e:
            if "exited with" in str(e):
                raise
            raise PromfixError("%s\n%s" % (e, self.log_tail())) from None
        self.ready_at = time.time()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def uptime(self):
        """Seconds since the latest start() returned (with wait_scrapes, about as long as `up`
        has samples: what the uptime check sees); 0 when not running or not ready."""
        return time.time() - self.ready_at if self.running() and self.ready_at else 0.0

    def _terminate(self, sig, timeout=10):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
                self.proc.send_signal(sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        if self._log:
            self._log.close()
            self._log = None
        _live.discard(self)

    def kill(self):
        """SIGKILL, for "Prometheus is unreachable" tests; start() brings it back on its port."""
        self._terminate(signal.SIGKILL)

    def pause(self):
        """SIGSTOP: connections are accepted by the kernel but never answered (a timeout)."""
        if self.running():
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        if self.running():
            self.proc.send_signal(signal.SIGCONT)

    def restart(self, keep_data=False):
        """stop() and start() on the same port. A fresh TSDB by default: like a new pod without
        a persistent volume, the uptime check then sees a Prometheus up for seconds only."""
        self._terminate(signal.SIGTERM)
        return self.start(keep_data=keep_data)

    def stop(self):
        """SIGTERM (SIGKILL after 10 s); removes the work directory when promfix made it."""
        self._terminate(signal.SIGTERM)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    close = stop

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # --- queries

    def query(self, expr, at=None, timeout=5):
        """GET /api/v1/query at `at` (a Unix time, a function returning one such as
        `whole_second`, or None: now): the parsed JSON, also for the
        API's errors ({"status": "error", "errorType": ..., "error": ...}). PromfixError when
        there is no JSON answer."""
        params = {"query": expr}
        if callable(at):
            at = at()
        if at is not None:
            params["time"] = "%.3f" % at
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode(params)
        try:
            with _opener.open(url, timeout=timeout) as r:
                body = r.read()
        except urllib.error.HTTPError as e:
            body = e.read()
        except (OSError, urllib.error.URLError) as e:
            raise PromfixError("no answer from Prometheus at %s: %s" % (self.url, e)) from None
        try:
            return json.loads(body)
        except ValueError:
            raise PromfixError("not JSON from Prometheus: %r" % body[:200]) from None

    def series(self, expr, at=None):
        """[{"labels": {...}, "value": float}, ...] of an instant-vector query (a scalar comes
        back as one series without labels). PromfixError on an API error."""
        ans = self.query(expr, at)
        if ans.get("status") != "success":
            raise PromfixError("%s: %s: %s" % (expr, ans.get("errorType"), ans.get("error")))
        data = ans["data"]
        if data["resultType"] == "scalar":
            return [{"labels": {}, "value": float(data["result"][1])}]
        if data["resultType"] != "vector":
            raise PromfixError("%s gives a %s" % (expr, data["resultType"]))
        return [{"labels": s["metric"], "value": float(s["value"][1])} for s in data["result"]]

    def value(self, expr, at=None):
        """The value of a one-series (or scalar) query, None when the result is empty;
        PromfixError when there are several series."""
        s = self.series(expr, at)
        if len(s) > 1:
            raise PromfixError("%s gives %d series, not one" % (expr, len(s)))
        return s[0]["value"] if s else None

    def wait_for_value(self, expr, predicate, timeout=20, interval=0.2, at=None):
        """Polls value(expr, at) until predicate(value) holds (value may be None: empty result),
        and returns that value. A non-callable predicate means "equals". PromfixError on
        timeout, naming the last value seen. holdfast (as KubeElasti) asks at `time=` truncated
        to the whole second: pass at=whole_second to wait until it would see the value too."""
        pred = predicate if callable(predicate) else (lambda v: v == predicate)
        last = ["nothing"]

        def check():
            try:
                v = self.value(expr, at)
            except PromfixError as e:
                last[0] = str(e)
                return False
            last[0] = v
            return (True, v) if pred(v) else False

        try:
            return wait_for(check, timeout, interval, "%s to satisfy the predicate" % expr)[1]
        except PromfixError as e:
            raise PromfixError("%s; last value: %r" % (e, last[0])) from None


@atexit.register
def _stop_leftovers():
    for p in list(_live):
        p.kill()
