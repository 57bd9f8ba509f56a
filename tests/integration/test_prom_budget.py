"""The load holdfast puts on Prometheus (issue 13, "Prometheus budget"), against the real control
plane (tests/hftest/realcluster.py; root) and a FakePrometheus (tests/hftest/promfix.py) that counts
the requests, answers each query text as the test says, and records how many it answered at
once.

- ElastiServices that ask the same query of the same server (same headers) cause one query per
  polling round, and one uptime check, not one (or two) per ElastiService;
- distinct queries, or the same query with other headers, are still asked and judged apart;
- a failing query marks every ElastiService that asked it TriggerHealthy=False, with the reason;
- at most --prometheus-max-concurrent queries are in flight to one server;
- the checks are spread over the polling interval, each ElastiService at its own phase, not all
  at once after a start.

Each test has its own namespace and holdfast (--polling-interval 1s, --leader-elect=false:
tests/hftest/hfk8s.py). Rounds are counted with holdfast_controller_evaluations_total (one per
ElastiService per round), not timed. Every wait is bounded; holdfast's stderr must hold no
sanitizer report.
"""
import os
import subprocess

import pytest

from hftest import promtext
from hftest.kubeclient import wait_for
from hftest.promfix import FakePrometheus, vector_answer
from hftest.realcluster import RealCluster
from test_controller import holdfast, ns  # noqa: F401 - fixtures, used by name (they take this module's sim)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

PY = "/usr/bin/python3"
HTTPSERVER = os.path.join(REPO, "tests", "hftest", "apps", "httpserver.py")
IMAGES = {"test/http:1": {"argv": [PY, HTTPSERVER]},
          "test/sleep": {"argv": ["/bin/sleep", "$@"]}}
CRD_FILE = os.path.join(REPO, "crds", "elastiservice.yaml")
ES_API = "/apis/elasti.truefoundry.com/v1alpha1"
COOLDOWN = 2
UPTIME = 'min_over_time((max(up{container="prometheus"}) or vector(0))[%ds:])' % COOLDOWN
SLEEPER = [{"name": "main", "image": "test/sleep", "args": ["600"]}]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = RealCluster(tmp_path_factory.mktemp("cluster"), image_map=IMAGES, proxy_delay_ms=200)
    s.start()
    try:
        s.kubectl("apply", "-f", CRD_FILE)
        wait_for(lambda: s.exists("/apis/elasti.truefoundry.com/v1alpha1"), what="CRD served")
        yield s
    finally:
        leftovers = s.stop()
    assert leftovers == [], "left behind by the cluster: %s" % leftovers


@pytest.fixture
def fake():
    with FakePrometheus() as f:
        f.answer_query(UPTIME, vector_answer(1))  # Prometheus has been up
        yield f


def app(sim, ns, name, http=False):
    """A Deployment and its Service: an HTTP server (it can be scaled to zero and woken) or a
    sleeper (cheaper: these tests only need it evaluated)."""
    labels = {"app": name}
    containers = ([{"name": "main", "image": "test/http:1", "ports": [{"containerPort": 8080}]}]
                  if http else SLEEPER)
    sim.create("/apis/apps/v1/namespaces/%s/deployments" % ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": containers}}}})
    sim.create("/api/v1/namespaces/%s/services" % ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    if http:
        sim.wait_ready_replicas(ns, name, 1)
        sim.wait_service_endpoints(ns, name, 1)


def create_es(sim, ns, name, fake, query, threshold="1", headers=None):
    md = {"query": query, "serverAddress": fake.url, "threshold": threshold}
    if headers:
        md["headers"] = headers
    sim.create("%s/namespaces/%s/elastiservices" % (ES_API, ns), {
        "apiVersion": "elasti.truefoundry.com/v1alpha1", "kind": "ElastiService",
        "metadata": {"name": name},
        "spec": {"service": name, "cooldownPeriod": COOLDOWN,
                 "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                 "triggers": [{"type": "prometheus", "metadata": md}]}})


def status(sim, ns, name):
    return sim.get("%s/namespaces/%s/elastiservices/%s" % (ES_API, ns, name)).get("status") or {}


def condition(sim, ns, name, ctype="TriggerHealthy"):
    for c in status(sim, ns, name).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return {}


def replicas(sim, ns, name):
    return sim.get("/apis/apps/v1/namespaces/%s/deployments/%s" % (ns, name))["spec"].get("replicas", 0)


def metric(hf, name):
    v = promtext.value(hf.metrics_text(), name)
    assert v is not None, "no %s in /metrics" % name
    return v


def test_elastiservices_sharing_a_query_send_it_once_per_round(sim, ns, holdfast, fake):
    n = 8
    query = 'sum(rate(http_requests_total{app="shared"}[1m]))'
    fake.answer_query(query, vector_answer(5))  # above the threshold: nobody scales down
    names = ["s%d" % i for i in range(n)]
    for name in names:
        app(sim, ns, name)
    hf = holdfast.start()
    for name in names:
        create_es(sim, ns, name, fake, query)
    wait_for(lambda: all(condition(sim, ns, x).get("status") == "True" for x in names), timeout=40,
             interval=0.25, what="every ElastiService evaluated, TriggerHealthy True")
    evals0, q0, up0 = metric(hf, "holdfast_controller_evaluations_total"), fake.count(query), fake.count(UPTIME)
    # at least 5 more rounds: each ElastiService evaluated about 5 times more
    wait_for(lambda: metric(hf, "holdfast_controller_evaluations_total") - evals0 >= 5 * n, timeout=40,
             interval=0.2, what="5 more evaluation rounds")
    evals = metric(hf, "holdfast_controller_evaluations_total") - evals0
    rounds = evals / n
    queries, uptime = fake.count(query) - q0, fake.count(UPTIME) - up0
    # one per round (+2: the rounds' edges), where each ElastiService asking its own is `evals`
    assert 1 <= queries <= rounds + 2, "%d queries in %.1f rounds of %d ElastiServices" % (queries, rounds, n)
    assert 1 <= uptime <= rounds + 2, "%d uptime checks in %.1f rounds" % (uptime, rounds)
    assert metric(hf, "holdfast_prometheus_answers_shared_total") > 0
    # the counter is what Prometheus received (equal between two queries: none in transit)
    wait_for(lambda: metric(hf, "holdfast_prometheus_queries_total") == len(fake.requests), timeout=10,
             interval=0.05, what="holdfast_prometheus_queries_total == the requests received")
    for name in names:
        assert replicas(sim, ns, name) == 1 and status(sim, ns, name).get("mode") == "serve", name


def test_distinct_queries_and_headers_are_judged_apart(sim, ns, holdfast, fake):
    # idle and busy share nothing; tenant-b asks idle's query with another tenant header, and
    # that tenant is busy
    fake.answer_query("idle_load", vector_answer(5), header=("X-Scope-OrgID", "tenant-b"))
    fake.answer_query("idle_load", vector_answer(0))
    fake.answer_query("busy_load", vector_answer(5))
    app(sim, ns, "idle", http=True)
    app(sim, ns, "busy")
    app(sim, ns, "tenant-b")
    holdfast.start()
    create_es(sim, ns, "idle", fake, "idle_load", headers={"X-Scope-OrgID": "tenant-a"})
    create_es(sim, ns, "busy", fake, "busy_load")
    create_es(sim, ns, "tenant-b", fake, "idle_load", headers={"X-Scope-OrgID": "tenant-b"})
    wait_for(lambda: status(sim, ns, "idle").get("mode") == "proxy", timeout=30, interval=0.2,
             what="idle (below its threshold) in proxy mode")
    wait_for(lambda: replicas(sim, ns, "idle") == 0, timeout=30, interval=0.2, what="idle at 0 replicas")
    for name in ("busy", "tenant-b"):
        wait_for(lambda: condition(sim, ns, name).get("status") == "True", timeout=30, interval=0.2,
                 what="%s evaluated, TriggerHealthy True" % name)
    # each tenant's idle_load was asked with its own header: one query each, not one shared
    tenants = {tuple(r.header("X-Scope-OrgID")) for r in fake.requests if r.query.get("query") == "idle_load"}
    assert tenants == {("tenant-a",), ("tenant-b",)}, tenants
    for name in ("busy", "tenant-b"):
        assert status(sim, ns, name).get("mode") == "serve", name
        assert not condition(sim, ns, name, "ScaledToZero"), (name, condition(sim, ns, name, "ScaledToZero"))
        assert replicas(sim, ns, name) == 1, name


def test_a_failing_query_marks_every_elastiservice_asking_it_unhealthy(sim, ns, holdfast, fake):
    query = "broken_load"
    fake.answer_query(query, {"status": "error", "error": "boom"}, status=503)
    names = ["f%d" % i for i in range(4)]
    for name in names:
        app(sim, ns, name)
    holdfast.start()
    for name in names:
        create_es(sim, ns, name, fake, query, threshold="100")
    wait_for(lambda: all(condition(sim, ns, x).get("status") == "False" for x in names), timeout=40,
             interval=0.25, what="every ElastiService TriggerHealthy False")
    for name in names:
        c = condition(sim, ns, name)
        assert c["reason"] == "PrometheusUnhealthy", c
        assert c["message"] == "PrometheusError: Prometheus answered HTTP 503: boom", c
        assert replicas(sim, ns, name) == 1, name


def test_at_most_max_concurrent_queries_in_flight_per_server(sim, ns, holdfast, fake):
    n = 6
    names = ["c%d" % i for i in range(n)]
    for i, name in enumerate(names):
        fake.answer_query("slow_%d" % i, vector_answer(5), delay=1.5)  # held 1.5 s
        app(sim, ns, name)
    hf = holdfast.start(extra_args=("--prometheus-max-concurrent", "2"))
    for i, name in enumerate(names):
        create_es(sim, ns, name, fake, "slow_%d" % i)
    wait_for(lambda: all(condition(sim, ns, x).get("status") == "True" for x in names), timeout=60,
             interval=0.25, what="every ElastiService evaluated")
    # keep them asking a while: each round has 6 held queries for 2 slots
    done = len(fake.requests)
    wait_for(lambda: len(fake.requests) >= done + 2 * n, timeout=60, interval=0.25, what="two more rounds")
    assert fake.max_inflight == 2, "at most 2 in flight (and the test did load it): %d" % fake.max_inflight
    assert metric(hf, "holdfast_prometheus_queries_queued") >= 0


def test_max_concurrent_flag_refuses_a_bad_value(tmp_path):
    hb = os.environ.get("HOLDFAST_BIN") or os.path.join(REPO, "build", "holdfast")
    for bad in ("0", "abc", "1001"):
        r = subprocess.run([hb, "run", "--kubeconfig", "/nonexistent", "--prometheus-max-concurrent", bad],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode != 0
        assert '--prometheus-max-concurrent: "%s" is not a number from 1 to 1000' % bad in r.stderr, r.stderr
    env = dict(os.environ, HOLDFAST_PROMETHEUS_MAX_CONCURRENT="-3")
    r = subprocess.run([hb, "run", "--kubeconfig", "/nonexistent"], capture_output=True, text=True,
                       timeout=10, env=env)
    assert r.returncode != 0
    assert 'HOLDFAST_PROMETHEUS_MAX_CONCURRENT: "-3" is not a number from 1 to 1000' in r.stderr, r.stderr


def fnv1a(text):
    """common/strmap.c's strmap_hash from STRMAP_SEED: the controller's phase of an ElastiService
    is fnv1a("ns/name") mod the polling interval (ms)."""
    h = 2166136261
    for b in text.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def test_checks_are_spread_over_the_interval_after_a_start(sim, ns, holdfast, fake):
    """Eight ElastiServices exist when holdfast starts, so all are due at once; each has a query
    of its own (nothing shared). Their queries of one round arrive spread over the interval (at
    the phases their names give), not together (before: all at the start's instant, then
    drifting by at most a tenth of the interval per round)."""
    interval_ms = 2000
    # eight names whose phases are one per eighth of the interval
    names, buckets = [], set()
    for i in range(2000):
        name = "p%d" % i
        b = fnv1a("%s/%s" % (ns, name)) % interval_ms * 8 // interval_ms
        if b not in buckets:
            buckets.add(b)
            names.append(name)
        if len(names) == 8:
            break
    assert len(names) == 8
    for name in names:
        app(sim, ns, name)
        fake.answer_query("spread_" + name, vector_answer(5))
        create_es(sim, ns, name, fake, "spread_" + name)
    holdfast.start(polling="2s")
    wait_for(lambda: all(fake.count("spread_" + x) >= 4 for x in names), timeout=60, interval=0.25,
             what="four queries of each ElastiService")
    # the last interval's queries (from the third check on, every check is at its phase): how
    # many ElastiServices' queries fall within one quarter of the interval?
    interval = interval_ms / 1000
    mine = [(r.at, r.query["query"]) for r in fake.requests if r.query.get("query", "").startswith("spread_")]
    end = max(at for at, _ in mine)
    last = [(at, q) for at, q in mine if at > end - interval]
    most = max(len({q for at, q in last if t <= at < t + interval / 4}) for t, _ in last)
    # at their phases, one per eighth of the interval: 2 or 3 (a little more with the API's
    # latency); together, all 8
    assert most <= 5, "%d of the 8 ElastiServices' queries came within %.1f s: %s" % (
        most, interval / 4, sorted(round(at - end, 2) for at, _ in last))
