"""The controller (holdfast run in Kubernetes mode) against the real control plane and a real
Prometheus: issue 4,
section 5. Each test names the behaviour it checks and fails without it; the "no scale-down"
tests end with a control (the blocking cause removed -> the scale-down happens), so they cannot
pass merely because nothing ever scales down.

One test cluster (tests/hftest/realcluster.py: upstream etcd, kube-apiserver, controllers,
scheduler and kube-proxy, with the node agent; kube-proxy delay 200 ms; the ElastiService and
KEDA ScaledObject CRDs applied, and the upstream Argo Rollouts controller started for the test
that asks for a Rollout controller) and one Prometheus (scraping an
Exporter whose gauge `hf_load{ns=...}` each test sets) serve the module. Each test has its own namespace and its own holdfast process
(tests/hftest/hfk8s.py: --namespace <ns>, --pod-ip == --bind-address an address of its own on the
node's bridge, --polling-interval 1s, --leader-elect=false), so kube-proxy sends the Service's
ClusterIP to
holdfast while the target is at zero. Every wait is bounded; holdfast's stderr must hold no
sanitizer report; a failing test shows holdfast's log tail (conftest's hook reads the `holdfast`
fixture, which this module overrides).

It needs root (docs/test-cluster.md, "Running the integration tests"): the test process lives
in the cluster's network namespace.
"""
import datetime
import errno
import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from hftest.kubeclient import wait_for
from hftest.net import free_port
from hftest.thirdparty_crds import SCALEDOBJECT_CRD
from hftest.promtext import value as metric_value
from hftest.promfix import Exporter, Prometheus, PromfixError, whole_second
from hftest.hfk8s import HoldfastK8s
from hftest.realcluster import RealCluster

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

PY = "/usr/bin/python3"
HTTPSERVER = os.path.join(REPO, "tests", "hftest", "apps", "httpserver.py")
IMAGES = {"test/http:1": {"argv": [PY, HTTPSERVER]},
          "test/http:slow": {"argv": [PY, HTTPSERVER], "startDelayMs": 1500},
          "test/http:3s": {"argv": [PY, HTTPSERVER], "startDelayMs": 3000},
          "test/sleep": {"argv": ["/bin/sleep", "$@"]},
          "test/grpc-health": {"argv": [PY, os.path.join(REPO, "tests", "cluster", "testdata", "grpchealth.py")]}}
CRD_FILE = os.path.join(REPO, "crds", "elastiservice.yaml")
ES_API = "/apis/elasti.truefoundry.com/v1alpha1"
METRIC = "hf_load"
FINALIZER = "elasti.truefoundry.com/finalizer"

@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """The real test cluster (tests/hftest/realcluster.py)."""
    s = RealCluster(tmp_path_factory.mktemp("cluster"), image_map=IMAGES, proxy_delay_ms=200)
    s.start()
    try:
        s.kubectl("apply", "-f", CRD_FILE)
        code, body = s.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", SCALEDOBJECT_CRD)
        assert code in (201, 409), body
        for group in ("elasti.truefoundry.com/v1alpha1", "keda.sh/v1alpha1"):
            wait_for(lambda: s.exists("/apis/" + group), what=group + " served")
        yield s
    finally:
        leftovers = s.stop()
    assert leftovers == [], "left behind by the cluster: %s" % leftovers


@pytest.fixture(scope="module")
def exporter(sim):
    """After sim: on the real cluster the exporter (and Prometheus, which scrapes it and which
    holdfast asks) must live in the cluster's namespace, which sim's start() enters."""
    with Exporter() as exp:
        yield exp


@pytest.fixture(scope="module")
def prom(tmp_path_factory, exporter):
    try:
        p = Prometheus(exporter=exporter, workdir=tmp_path_factory.mktemp("prometheus"))
    except PromfixError as e:
        pytest.fail("cannot start Prometheus: %s" % e)
    with p:
        yield p


_ns_counter = iter(range(1, 1 << 30))


@pytest.fixture
def ns(sim, request):
    sim.clear_faults()
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    name = "c%d-%s" % (next(_ns_counter), slug)
    sim.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    sim.clear_faults()
    sim.request("DELETE", "/api/v1/namespaces/" + name)


@pytest.fixture
def holdfast(sim, ns, tmp_path):
    """Overrides conftest's standalone factory (same name: its failure hook shows our logs)."""
    class Factory:
        instances = []

        def start(self, namespace=ns, **kw):
            h = HoldfastK8s(sim, tmp_path / ("hf%d" % len(self.instances)), namespace=namespace, **kw)
            self.instances.append(h)
            return h.start()

    f = Factory()
    yield f
    reports = []
    for h in f.instances:
        h.stop()
        rep = h.sanitizer_report()
        if rep:
            reports.append(rep)
    if reports:
        pytest.fail("holdfast's stderr holds a sanitizer report:\n" + "\n".join(reports), pytrace=False)


# ---------------------------------------------------------------- builders


def workload(kind, name, replicas, image="test/http:1", containers=None):
    labels = {"app": name}
    if containers is None:
        containers = [{"name": "main", "image": image, "ports": [{"containerPort": 8080}],
                       "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]
    api = "argoproj.io/v1alpha1" if kind == "Rollout" else "apps/v1"
    spec = {"replicas": replicas, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": containers}}}
    if kind == "StatefulSet":
        spec["serviceName"] = name
    if kind == "Rollout":
        spec["strategy"] = {"canary": {}}        # Argo Rollouts refuses a Rollout without one
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name}, "spec": spec}


PLURAL = {"Deployment": "deployments", "StatefulSet": "statefulsets", "Rollout": "rollouts"}


def wpath(kind, ns, name=None):
    group = "argoproj.io/v1alpha1" if kind == "Rollout" else "apps/v1"
    return "/apis/%s/namespaces/%s/%s%s" % (group, ns, PLURAL[kind], "/" + name if name else "")


def service(name, ports=(("http", 80, 8080),)):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name},
                     "ports": [{"name": n, "port": p, "targetPort": t} for n, p, t in ports]}}


def make_app(sim, ns, name="web", replicas=1, kind="Deployment", ports=(("http", 80, 8080),), **kw):
    sim.create(wpath(kind, ns), workload(kind, name, replicas, **kw))
    sim.create("/api/v1/namespaces/%s/services" % ns, service(name, ports))
    if replicas:
        group = "argoproj.io/v1alpha1" if kind == "Rollout" else "apps/v1"
        sim.wait_ready_replicas(ns, name, replicas, kind=PLURAL[kind], group=group)
        sim.wait_service_endpoints(ns, name, replicas)


def trigger(prom, ns, threshold="1", **metadata):
    md = {"query": 'sum(%s{ns="%s"})' % (METRIC, ns), "serverAddress": prom.url, "threshold": threshold}
    md.update(metadata)
    return {"type": "prometheus", "metadata": md}


def elastiservice(name="web", svc=None, kind="Deployment", target=None, cooldown=2, triggers=None, **spec):
    api = "argoproj.io/v1alpha1" if kind in ("Rollout", "rollouts") else "apps/v1"
    s = {"service": svc or name, "cooldownPeriod": cooldown,
         "scaleTargetRef": {"apiVersion": api, "kind": kind, "name": target or name}}
    if triggers:
        s["triggers"] = triggers
    s.update(spec)
    return {"apiVersion": "elasti.truefoundry.com/v1alpha1", "kind": "ElastiService",
            "metadata": {"name": name}, "spec": s}


def create_es(sim, ns, obj):
    return sim.create("%s/namespaces/%s/elastiservices" % (ES_API, ns), obj)


def es_path(ns, name="web"):
    return "%s/namespaces/%s/elastiservices/%s" % (ES_API, ns, name)


def set_load(prom, exporter, ns, value):
    """Sets the test's gauge and waits until a query at a whole second (as holdfast asks) sees it."""
    exporter.set(METRIC, value, labels={"ns": ns})
    prom.wait_for_value('sum(%s{ns="%s"})' % (METRIC, ns), float(value), timeout=15, at=whole_second)


# ---------------------------------------------------------------- observations


def es_get(sim, ns, name="web"):
    return sim.get(es_path(ns, name))


def status(sim, ns, name="web"):
    return es_get(sim, ns, name).get("status") or {}


def condition(sim, ns, ctype, name="web"):
    for c in status(sim, ns, name).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def wait_mode(sim, ns, mode, name="web", timeout=25):
    return wait_for(lambda: status(sim, ns, name).get("mode") == mode and status(sim, ns, name),
                    timeout=timeout, interval=0.1, what="%s/%s status.mode %s" % (ns, name, mode))


def replicas(sim, ns, name="web", kind="Deployment"):
    return sim.get(wpath(kind, ns, name))["spec"].get("replicas", 0)


def resolver_slices(sim, ns, svc="web"):
    sl = sim.get("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices?labelSelector="
                 "kubernetes.io/service-name%%3D%s" % (ns, svc))["items"]
    return [s for s in sl if s["metadata"].get("labels", {}).get("endpointslice.kubernetes.io/managed-by")
            != "endpointslice-controller.k8s.io"]


def pods(sim, ns):
    return sim.get("/api/v1/namespaces/%s/pods" % ns)["items"]


def es_events(sim, ns, reason=None, name="web"):
    items = sim.get("/api/v1/namespaces/%s/events" % ns)["items"]
    return [e for e in items if e.get("involvedObject", {}).get("kind") == "ElastiService"
            and e["involvedObject"].get("name") == name and (reason is None or e.get("reason") == reason)]


def wait_event(sim, ns, reason, name="web", timeout=15):
    return wait_for(lambda: es_events(sim, ns, reason, name), timeout=timeout, interval=0.1,
                    what="Event %s on ElastiService %s/%s" % (reason, ns, name))


def wait_replicas(sim, ns, n, name="web", kind="Deployment", timeout=20):
    wait_for(lambda: replicas(sim, ns, name, kind) == n, timeout=timeout, interval=0.1,
             what="%s %s/%s spec.replicas == %d" % (kind, ns, name, n))


def hold_still(seconds, check, what):
    """Asserts check() stays true for `seconds` (several polling intervals)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), what
        time.sleep(0.25)


def http_get(host, port, path="/", timeout=40, connect_retry=15):
    """GET through kube-proxy: (status, headers, body). A refused connect (kube-proxy has no
    usable endpoint yet, or has not applied the latest slice) is retried for `connect_retry` s;
    anything else is an answer or an error. kube-proxy (iptables mode) rejects a Service without
    endpoints with ICMP host unreachable (EHOSTUNREACH), and a refusal (ECONNREFUSED) means the
    same here."""
    status, got, body = http_request(host, port, path, timeout, connect_retry)
    return status, got, body.decode(errors="replace")


def http_request(host, port, path="/", timeout=40, connect_retry=15, headers=None):
    """http_get with the body as bytes, and `headers` (a dict) sent besides Connection: close."""
    deadline = time.monotonic() + connect_retry
    while True:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request("GET", path, headers=dict(headers or {}, Connection="close"))
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        except OSError as e:
            if not isinstance(e, ConnectionRefusedError) and e.errno != errno.EHOSTUNREACH:
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        finally:
            conn.close()


class Background:
    """http_get in a thread; .result() waits (bounded) for its (status, headers, body)."""

    def __init__(self, *args, **kw):
        self.out = None
        self.err = None
        self.t = threading.Thread(target=self._run, args=args, kwargs=kw, daemon=True)
        self.t.start()

    def _run(self, *args, **kw):
        try:
            self.out = http_get(*args, **kw)
        except Exception as e:  # noqa: BLE001 - reported by result()
            self.err = e

    def result(self, timeout=60):
        self.t.join(timeout)
        assert not self.t.is_alive(), "the request got no answer within %ss" % timeout
        if self.err:
            raise self.err
        return self.out


def wait_api(sim, timeout=30):
    """Until the API answers again after an outage, ElastiServices included: a restarted
    kube-apiserver answers /version before it has installed its CRDs' paths, and answers those
    503 ("the request has been made before all known HTTP paths have been installed") for a
    while, the longer the more CRDs it has (the five of Argo Rollouts, 3 MB, once a test has
    started its controller)."""
    def up():
        try:
            return (sim.request("GET", "/version", timeout=2)[0] == 200 and
                    sim.request("GET", ES_API + "/elastiservices?limit=1", timeout=2)[0] == 200)
        except OSError:
            return False
    wait_for(up, timeout=timeout, interval=0.2, what="the API back")


def to_proxy_by_hand(sim, ns, **es_kw):
    """Deployment `web` at 0 replicas (never started) + its Service + an ElastiService without
    triggers: the controller finds the target at 0 and enters proxy mode at once."""
    make_app(sim, ns, replicas=0)
    create_es(sim, ns, elastiservice(**es_kw))
    st = wait_mode(sim, ns, "proxy")
    wait_for(lambda: resolver_slices(sim, ns), timeout=10, what="resolver slice")
    return st


# ---------------------------------------------------------------- scale down


def test_below_threshold_past_cooldown_scales_to_zero_with_resolver_slice(sim, prom, exporter, ns, holdfast):
    make_app(sim, ns)
    set_load(prom, exporter, ns, 0)
    hf = holdfast.start()
    create_es(sim, ns, elastiservice(triggers=[trigger(prom, ns)]))

    st = wait_mode(sim, ns, "proxy")
    wait_replicas(sim, ns, 0)
    svc = sim.get("/api/v1/namespaces/%s/services/web" % ns)

    # status.ports: the Service port and the resolver port allocated for it, from the range
    assert len(st.get("ports") or []) == 1, st
    p = st["ports"][0]
    assert (p["name"], p["port"], p.get("protocol", "TCP")) == ("http", 80, "TCP"), p
    rport = p["resolverPort"]
    assert hf.port_range[0] <= rport <= hf.port_range[1], (rport, hf.port_range)

    # the resolver slice, as kube-proxy / ingress controllers need it
    slices = wait_for(lambda: resolver_slices(sim, ns), timeout=10, what="resolver slice")
    assert len(slices) == 1, slices
    s = slices[0]
    md = s["metadata"]
    assert md["labels"]["kubernetes.io/service-name"] == "web"
    assert md["labels"]["endpointslice.kubernetes.io/managed-by"] == "holdfast"
    assert "service.kubernetes.io/headless" not in md["labels"]
    assert md["name"].startswith("web-"), md["name"]
    owners = md.get("ownerReferences") or []
    assert [(o["apiVersion"], o["kind"], o["name"], o["uid"]) for o in owners] == \
        [("v1", "Service", "web", svc["metadata"]["uid"])], owners
    assert s["addressType"] == "IPv4"
    assert [(q["name"], q.get("protocol", "TCP"), q["port"]) for q in s["ports"]] == [("http", "TCP", rport)]
    assert len(s["endpoints"]) == 1, s["endpoints"]
    ep = s["endpoints"][0]
    assert ep["addresses"] == [hf.ip]
    assert ep["conditions"] == {"ready": True, "serving": True, "terminating": False}, ep
    assert "targetRef" not in ep

    # holdfast listens there, and kube-proxy reaches it: at zero the Service's pods are gone
    with socket.create_connection((hf.ip, rport), timeout=5):
        pass

    # conditions and the Event
    cz = condition(sim, ns, "ScaledToZero")
    assert cz and cz["status"] == "True" and cz["reason"] == "BelowThreshold", cz
    for c in st["conditions"]:
        assert c.get("lastTransitionTime") and "observedGeneration" in c, c
    assert (condition(sim, ns, "TriggerHealthy") or {}).get("status") == "True"
    assert (condition(sim, ns, "Ready") or {}).get("status") == "True"
    ev = wait_event(sim, ns, "ScaledToZero")
    assert ev[0]["type"] == "Normal"
    # one transition: no flap back to serve while the old pods were still going away
    assert not es_events(sim, ns, "SwitchedToServe"), es_events(sim, ns)
    assert len(ev) == 1 and ev[0].get("count", 1) == 1, ev
    assert st.get("lastReconciledTime")
    assert FINALIZER in es_get(sim, ns)["metadata"].get("finalizers", [])


def test_no_scale_down_above_threshold(sim, prom, exporter, ns, holdfast):
    make_app(sim, ns)
    set_load(prom, exporter, ns, 5)
    holdfast.start()
    create_es(sim, ns, elastiservice(triggers=[trigger(prom, ns, threshold="1")]))
    # the trigger is evaluated (past the cooldown) and found healthy, yet above its threshold
    wait_for(lambda: (condition(sim, ns, "TriggerHealthy") or {}).get("status") == "True", timeout=15,
             what="TriggerHealthy True")
    hold_still(4, lambda: replicas(sim, ns) == 1 and status(sim, ns).get("mode") == "serve"
               and not resolver_slices(sim, ns), "scaled down while above the threshold")
    assert not es_events(sim, ns, "ScaledToZero")
    # control: below the threshold, the same ElastiService scales down
    set_load(prom, exporter, ns, 0.5)
    wait_mode(sim, ns, "proxy")
    wait_replicas(sim, ns, 0)


def test_no_scale_down_within_cooldown(sim, prom, exporter, ns, holdfast):
    make_app(sim, ns)
    set_load(prom, exporter, ns, 0)
    holdfast.start()
    create_es(sim, ns, elastiservice(cooldown=120, triggers=[trigger(prom, ns)]))
    wait_mode(sim, ns, "serve")  # the controller has read the target
    hold_still(4, lambda: replicas(sim, ns) == 1 and status(sim, ns).get("mode") == "serve",
               "scaled down within the cooldown period")
    # control: the cooldown shortened (created more than 2 s ago): it scales down
    sim.patch(es_path(ns), {"spec": {"cooldownPeriod": 2}})
    wait_mode(sim, ns, "proxy")
    wait_replicas(sim, ns, 0)


def test_no_scale_down_outside_enabled_period(sim, prom, exporter, ns, holdfast):
    make_app(sim, ns)
    set_load(prom, exporter, ns, 0)
    holdfast.start()
    # a one-minute window each day, six hours from now (UTC): now is outside it
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=6)
    period = {"schedule": "%d %d * * *" % (at.minute, at.hour), "duration": "1m"}
    create_es(sim, ns, elastiservice(triggers=[trigger(prom, ns)], enabledPeriod=period))
    wait_mode(sim, ns, "serve")
    hold_still(4, lambda: replicas(sim, ns) == 1 and status(sim, ns).get("mode") == "serve",
               "scaled down outside the enabledPeriod")
    # control: a window that is always open (every minute opens one lasting an hour)
    sim.patch(es_path(ns), {"spec": {"enabledPeriod": {"schedule": "* * * * *", "duration": "1h"}}})
    wait_mode(sim, ns, "proxy")
    wait_replicas(sim, ns, 0)


@pytest.mark.parametrize("why", ["uptime-filter", "unreachable"])
def test_no_scale_down_when_prometheus_unhealthy(sim, prom, exporter, ns, holdfast, why):
    make_app(sim, ns)
    set_load(prom, exporter, ns, 0)
    holdfast.start()
    if why == "uptime-filter":
        bad = trigger(prom, ns, uptimeFilter='container="no-such-container"')
    else:
        closed = free_port("127.0.0.1")  # a port nothing listens on
        bad = trigger(prom, ns, serverAddress="http://127.0.0.1:%d" % closed)
    create_es(sim, ns, elastiservice(triggers=[bad]))
    c = wait_for(lambda: (condition(sim, ns, "TriggerHealthy") or {}).get("status") == "False"
                 and condition(sim, ns, "TriggerHealthy"), timeout=15, what="TriggerHealthy False")
    assert c["reason"] and c["message"], c
    if why == "uptime-filter":
        assert "no-such-container" in c["message"] or "uptime" in c["message"].lower(), c
    hold_still(3, lambda: replicas(sim, ns) == 1 and status(sim, ns).get("mode") == "serve",
               "scaled down while Prometheus is unhealthy")
    # control: a healthy trigger scales down, and the condition recovers
    sim.patch(es_path(ns), {"spec": {"triggers": [trigger(prom, ns)]}})
    wait_mode(sim, ns, "proxy")
    wait_replicas(sim, ns, 0)
    assert condition(sim, ns, "TriggerHealthy")["status"] == "True"


# ---------------------------------------------------------------- wake


def test_request_at_zero_wakes_target_and_switches_to_serve(sim, prom, exporter, ns, holdfast):
    make_app(sim, ns)
    set_load(prom, exporter, ns, 0)
    hf = holdfast.start()
    create_es(sim, ns, elastiservice(triggers=[trigger(prom, ns)]))
    wait_mode(sim, ns, "proxy")
    set_load(prom, exporter, ns, 5)  # busy from now on: no second scale-down after the wake
    wait_for(lambda: not pods(sim, ns), timeout=20, what="the pods gone")
    assert not status(sim, ns).get("lastScaledUpTime")
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)

    code, _, body = http_get(sim.cluster_ip(ns, "web"), 80, "/hello")
    assert code == 200 and body.startswith("web-"), (code, body)  # the pod answered

    st = wait_mode(sim, ns, "serve")
    assert replicas(sim, ns) == 1
    wait_for(lambda: not resolver_slices(sim, ns), timeout=10, what="resolver slice deleted")
    up = datetime.datetime.strptime(
        wait_for(lambda: status(sim, ns).get("lastScaledUpTime"), timeout=10, what="lastScaledUpTime"),
        "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    assert before - datetime.timedelta(seconds=1) <= up <= datetime.datetime.now(datetime.timezone.utc), up
    assert wait_event(sim, ns, "ScaledUp")[0]["type"] == "Normal"
    wait_event(sim, ns, "SwitchedToServe")
    assert st["ports"][0]["resolverPort"]  # kept for the ElastiService's lifetime
    # the controller observed the wake (its histogram allocated on this first observation)
    m = re.search(r'^holdfast_wake_to_scale_seconds_count\{namespace="%s",[^}]*\} (\S+)$' % ns,
                  hf.metrics_text(), re.M)
    assert m and float(m.group(1)) == 1, hf.metrics_text()
    # after the switch the Service's own endpoints answer
    code, _, body = http_get(sim.cluster_ip(ns, "web"), 80, "/again")
    assert code == 200 and body.startswith("web-")


def test_probe_response_answered_at_zero_without_wake(sim, ns, holdfast):
    holdfast.start()
    probes = [{"method": "GET", "path": {"type": "Exact", "value": "/healthz"},
               "response": {"status": 200, "body": '{"status":"ok"}'}}]
    to_proxy_by_hand(sim, ns, probeResponse=probes)
    ip = sim.cluster_ip(ns, "web")
    code, headers, body = http_get(ip, 80, "/healthz", timeout=10)
    assert code == 200 and json.loads(body) == {"status": "ok"}, (code, body)
    assert headers["content-type"].startswith("application/json")
    hold_still(2.5, lambda: replicas(sim, ns) == 0, "a probe woke the target")
    assert not es_events(sim, ns, "ScaledUp")
    assert status(sim, ns)["mode"] == "proxy"
    # control: any other request wakes it
    code, _, body = http_get(ip, 80, "/work")
    assert code == 200 and body.startswith("web-"), (code, body)
    assert replicas(sim, ns) == 1


def test_manual_scale_to_zero_enters_proxy_and_manual_scale_up_enters_serve(sim, ns, holdfast):
    make_app(sim, ns)
    holdfast.start()
    create_es(sim, ns, elastiservice())  # no triggers: only a hand scales it
    wait_mode(sim, ns, "serve")
    assert not resolver_slices(sim, ns)

    sim.kubectl("scale", "-n", ns, "deployment/web", "--replicas=0")
    wait_mode(sim, ns, "proxy")
    wait_for(lambda: resolver_slices(sim, ns), timeout=10, what="resolver slice")
    c = condition(sim, ns, "ScaledToZero")
    assert c["status"] == "True" and c["reason"] == "ScaledToZeroByHand", c
    wait_event(sim, ns, "ScaledToZero")

    sim.kubectl("scale", "-n", ns, "deployment/web", "--replicas=2")
    wait_mode(sim, ns, "serve")
    wait_for(lambda: not resolver_slices(sim, ns), timeout=10, what="resolver slice deleted")
    assert replicas(sim, ns) == 2  # a hand's count is kept
    assert condition(sim, ns, "ScaledToZero")["status"] == "False"


# ---------------------------------------------------------------- KEDA


def test_keda_scaledobject_paused_at_scale_down_and_resumed_at_wake(sim, prom, exporter, ns, holdfast):
    make_app(sim, ns)
    so_path = "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects" % ns
    sim.create(so_path, {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "web-so"},
                         "spec": {"scaleTargetRef": {"name": "web"}, "minReplicaCount": 1}})

    def annotations():
        return sim.get(so_path + "/web-so")["metadata"].get("annotations") or {}
    set_load(prom, exporter, ns, 0)
    holdfast.start()
    create_es(sim, ns, elastiservice(triggers=[trigger(prom, ns)], autoscaler={"type": "keda", "name": "web-so"}))
    wait_mode(sim, ns, "proxy")
    set_load(prom, exporter, ns, 5)
    wait_for(lambda: annotations().get("autoscaling.keda.sh/paused-replicas") == "0", timeout=10,
             what="ScaledObject paused at 0")
    wait_replicas(sim, ns, 0)

    code, _, body = http_get(sim.cluster_ip(ns, "web"), 80)
    assert code == 200 and body.startswith("web-")
    wait_for(lambda: not any(k in annotations() for k in ("autoscaling.keda.sh/paused-replicas",
                                                          "autoscaling.keda.sh/paused")),
             timeout=10, what="ScaledObject resumed (pause annotations removed)")
    wait_mode(sim, ns, "serve")


# ---------------------------------------------------------------- deletion


def test_deleting_elastiservice_at_zero_restores_target_and_service(sim, ns, holdfast):
    holdfast.start()
    to_proxy_by_hand(sim, ns, minTargetReplicas=2)
    assert FINALIZER in es_get(sim, ns)["metadata"].get("finalizers", [])
    assert replicas(sim, ns) == 0

    sim.delete(es_path(ns))
    wait_for(lambda: not sim.exists(es_path(ns)), timeout=20, what="the ElastiService gone (finalizer removed)")
    wait_replicas(sim, ns, 2)
    wait_for(lambda: not resolver_slices(sim, ns), timeout=10, what="resolver slice deleted")
    sim.wait_service_endpoints(ns, "web", 2)
    code, _, body = http_get(sim.cluster_ip(ns, "web"), 80)
    assert code == 200 and body.startswith("web-")


# ---------------------------------------------------------------- targets and ports


@pytest.mark.parametrize("kind", ["StatefulSet", "Rollout"])
def test_target_kind_scales_to_zero_and_wakes(sim, prom, exporter, ns, holdfast, kind):
    if kind == "Rollout":
        sim.start_rollouts()    # the upstream Argo Rollouts controller
    make_app(sim, ns, kind=kind)
    set_load(prom, exporter, ns, 0)
    holdfast.start()
    create_es(sim, ns, elastiservice(kind=kind, triggers=[trigger(prom, ns)]))
    wait_mode(sim, ns, "proxy")
    set_load(prom, exporter, ns, 5)
    wait_replicas(sim, ns, 0, kind=kind)
    wait_for(lambda: not pods(sim, ns), timeout=20, what="the pods gone")

    code, _, body = http_get(sim.cluster_ip(ns, "web"), 80)
    assert code == 200 and body.startswith("web-"), (code, body)
    assert replicas(sim, ns, kind=kind) == 1
    wait_mode(sim, ns, "serve")
    wait_event(sim, ns, "ScaledUp")


def test_two_port_service_each_port_has_its_resolver_port_and_works_after_wake(sim, ns, holdfast):
    containers = [
        {"name": "main", "image": "test/http:1", "ports": [{"containerPort": 8080}],
         "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}},
        {"name": "admin", "image": "test/http:1", "ports": [{"containerPort": 8081}],
         "env": [{"name": "POD_NAME", "value": "admin-container"}],
         "readinessProbe": {"tcpSocket": {"port": 8081}, "periodSeconds": 1}}]
    hf = holdfast.start()
    make_app(sim, ns, replicas=0, containers=containers, ports=(("http", 80, 8080), ("admin", 81, 8081)))
    create_es(sim, ns, elastiservice())
    st = wait_mode(sim, ns, "proxy")
    ports = {p["name"]: p for p in st["ports"]}
    assert set(ports) == {"http", "admin"}, st["ports"]
    assert (ports["http"]["port"], ports["admin"]["port"]) == (80, 81)
    assert ports["http"]["resolverPort"] != ports["admin"]["resolverPort"]
    slices = wait_for(lambda: resolver_slices(sim, ns), timeout=10, what="resolver slice")
    assert sorted((q["name"], q["port"]) for q in slices[0]["ports"]) == \
        sorted((n, p["resolverPort"]) for n, p in ports.items())
    for p in ports.values():
        with socket.create_connection((hf.ip, p["resolverPort"]), timeout=5):
            pass

    ip = sim.cluster_ip(ns, "web")
    a = Background(ip, 81, "/a")  # both held at zero, each on its own port
    b = Background(ip, 80, "/b")
    code_a, _, body_a = a.result()
    code_b, _, body_b = b.result()
    assert (code_a, body_a.strip()) == (200, "admin-container"), body_a
    assert code_b == 200 and body_b.startswith("web-"), body_b
    wait_mode(sim, ns, "serve")
    wait_for(lambda: not resolver_slices(sim, ns), timeout=10, what="resolver slice deleted")
    assert http_get(ip, 81)[2].strip() == "admin-container"
    assert http_get(ip, 80)[2].startswith("web-")


# ---------------------------------------------------------------- a wake that cannot succeed


@pytest.mark.parametrize("cause", ["quota", "missing-image"])
def test_wake_that_cannot_succeed_answers_504_with_reason(sim, ns, holdfast, cause):
    if cause == "quota":
        sim.create("/api/v1/namespaces/%s/resourcequotas" % ns, {
            "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-pods"},
            "spec": {"hard": {"pods": "0"}}})
        make_app(sim, ns, replicas=0)
        want = ["exceeded quota"]
    else:
        make_app(sim, ns, replicas=0, image="test/no-such-image:1")
        want = ["ImagePull", "ErrImagePull"]
    holdfast.start()
    create_es(sim, ns, elastiservice(holdTimeoutSeconds=8))
    wait_mode(sim, ns, "proxy")
    wait_for(lambda: resolver_slices(sim, ns), timeout=10, what="resolver slice")

    code, headers, body = http_get(sim.cluster_ip(ns, "web"), 80, "/x", timeout=40)
    assert code == 504, (code, body)
    ans = json.loads(body)
    assert ans["service"] == "%s/web" % ns, ans
    assert any(w in ans.get("reason", "") for w in want), ans

    c = wait_for(lambda: (condition(sim, ns, "ScaleUpFailed") or {}).get("status") == "True"
                 and condition(sim, ns, "ScaleUpFailed"), timeout=10, what="ScaleUpFailed True")
    if cause == "quota":
        assert c["reason"] == "FailedCreate" and "exceeded quota" in c["message"], c
    else:
        assert c["reason"] in ("ErrImagePull", "ImagePullBackOff"), c
    warnings = [e for e in es_events(sim, ns) if e["type"] == "Warning" and e["reason"] == c["reason"]]
    assert warnings, es_events(sim, ns)
    if cause == "quota":
        # Every pod creation the Deployment retries is refused under a new generated pod name
        # (`pods "web-..." is forbidden`), as the real API server says it. One cause: the
        # condition keeps its message and one Event stands for it, over several polls.
        time.sleep(3.5)
        assert condition(sim, ns, "ScaleUpFailed")["message"] == c["message"]
        warnings = [e for e in es_events(sim, ns) if e["type"] == "Warning" and e["reason"] == c["reason"]]
        assert len(warnings) == 1, [w["message"] for w in warnings]


# ---------------------------------------------------------------- API faults


# How long a request held through an API outage may wait for its answer. kube-controller-manager's
# informers come
# back after client-go's reflector back-off (0.8 s doubling to 30 s, with jitter), which grows
# over outages close together: after the outages of these tests, measured from 18 s (a canary
# Deployment acted on again) to more than 50 s (a pod woken during the outage still not in its
# Service's endpoints, which holdfast waits for).
HELD_THROUGH_OUTAGE_S = 150


def test_api_outage_during_wake_completes_when_api_returns(sim, ns, holdfast):
    hf = holdfast.start()
    to_proxy_by_hand(sim, ns)
    ip = sim.cluster_ip(ns, "web")
    time.sleep(0.5)  # kube-proxy has applied the resolver slice
    # the API server stopped when the request arrives: it closes every connection and refuses
    # new ones, so the wake's scale patch fails
    sim.outage(4, mode="refuse")
    req = Background(ip, 80, "/during-outage", timeout=HELD_THROUGH_OUTAGE_S)
    code, _, body = req.result(timeout=HELD_THROUGH_OUTAGE_S + 10)
    assert code == 200 and body.startswith("web-"), (code, body)
    wait_api(sim)
    assert replicas(sim, ns) == 1
    wait_mode(sim, ns, "serve")
    assert hf.log_lines("wake: scaling the target failed"), "the outage did not hit the wake"


def test_api_outage_after_wake_patch_completes_when_api_returns(sim, ns, holdfast):
    """The wake patch lands, then the API goes away while the pod starts (1.5 s): the pod's
    readiness, the serve switch's slice delete and status write all fall in the outage. The held
    request is answered, and once the API is back the status says serve and the resolver slice
    is gone (the failed writes are made again)."""
    hf = holdfast.start()
    make_app(sim, ns, replicas=0, image="test/http:slow")
    create_es(sim, ns, elastiservice())
    wait_mode(sim, ns, "proxy")
    wait_for(lambda: resolver_slices(sim, ns), timeout=10, what="resolver slice")
    ip = sim.cluster_ip(ns, "web")
    time.sleep(0.5)
    req = Background(ip, 80, "/then-outage", timeout=HELD_THROUGH_OUTAGE_S)
    wait_for(lambda: replicas(sim, ns) == 1, timeout=10, interval=0.02, what="the wake patch")
    sim.outage(5, mode="refuse")  # the watches that would report the ready pod are cut
    code, _, body = req.result(timeout=HELD_THROUGH_OUTAGE_S + 10)
    assert code == 200 and body.startswith("web-"), (code, body)
    wait_api(sim)
    # Early readiness answers the held request before the kubelet's Ready reaches the
    # EndpointSlice; after the outage that takes the cluster 9 to 18 s here (more in CI, where
    # 20 s failed once), which the held request's own wait used to absorb.
    wait_mode(sim, ns, "serve", timeout=HELD_THROUGH_OUTAGE_S)
    wait_for(lambda: not resolver_slices(sim, ns), timeout=10, what="resolver slice deleted")
    wait_for(lambda: (condition(sim, ns, "Ready") or {}).get("status") == "True", timeout=10,
             what="Ready True again")
    assert hf.log_lines("informer: list or watch failed, retrying with backoff"), "the outage was not seen"


def test_every_cache_is_back_at_once_after_a_long_outage(sim, ns, holdfast):
    """After 18 s of outage the informers wait out backoffs of 5 to 10 s. The first call the API
    server answers again (a poll here; the lease renewal with leader election) retries every one
    of them at once, so changes made right after the outage through four different watches
    (ElastiService, Service, Deployment, EndpointSlice) are all seen within the next few
    seconds, not each after its own backoff."""
    hf = holdfast.start()
    make_app(sim, ns, replicas=0)
    make_app(sim, ns, name="api", replicas=1)
    create_es(sim, ns, elastiservice(cooldown=600))
    create_es(sim, ns, elastiservice(name="api", cooldown=600))
    wait_mode(sim, ns, "proxy")
    wait_mode(sim, ns, "serve", name="api")
    sim.outage(18, mode="refuse")
    time.sleep(17)
    wait_api(sim)
    t0 = time.monotonic()
    gen = sim.patch(es_path(ns), {"spec": {"cooldownPeriod": 601}})["metadata"]["generation"]
    sim.patch("/api/v1/namespaces/%s/services/web" % ns,
              {"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080},
                                  {"name": "admin", "port": 81, "targetPort": 8080}]}})
    sim.patch(wpath("Deployment", ns, "api"), {"spec": {"replicas": 0}})
    seen = {}
    deadline = t0 + 6
    while time.monotonic() < deadline and len(seen) < 3:
        st, st_api = status(sim, ns), status(sim, ns, "api")
        if st.get("observedGeneration") == gen and "elastiservices" not in seen:
            seen["elastiservices"] = time.monotonic() - t0
        if len(st.get("ports") or []) == 2 and "services" not in seen:
            seen["services"] = time.monotonic() - t0
        if st_api.get("mode") == "proxy" and resolver_slices(sim, ns, "api") and "deployments+slices" not in seen:
            seen["deployments+slices"] = time.monotonic() - t0
        time.sleep(0.1)
    assert len(seen) == 3, "seen within 6 s of the outage's end: %s; %s; %s" % (
        seen, status(sim, ns), status(sim, ns, "api"))
    assert hf.log_lines("the API server answers again: informers waiting out their backoff retry now")


def test_forced_compaction_relists_and_controller_keeps_working(sim, ns, holdfast):
    hf = holdfast.start()
    to_proxy_by_hand(sim, ns)
    # forget the watch history, write something, cut every watch: rewatches get 410 Expired
    sim.compact()
    sim.create("/api/v1/namespaces/%s/configmaps" % ns, {"apiVersion": "v1", "kind": "ConfigMap",
                                                         "metadata": {"name": "bump"}})
    sim.drop_watches()
    wait_for(lambda: hf.log_lines("informer: watch expired (410), relisting"), timeout=15,
             what="an informer relisting after 410")
    # still working: a new ElastiService is seen (ElastiService + Service watches) ...
    sim.create(wpath("Deployment", ns), workload("Deployment", "api", 0))
    sim.create("/api/v1/namespaces/%s/services" % ns, service("api"))
    create_es(sim, ns, elastiservice(name="api"))
    wait_mode(sim, ns, "proxy", name="api")
    wait_for(lambda: resolver_slices(sim, ns, "api"), timeout=10, what="resolver slice of api")
    # ... a wake reaches serve mode (EndpointSlice watch); after the API server's restart, held
    # as long as a request held through an outage may be (HELD_THROUGH_OUTAGE_S) ...
    code, _, body = http_get(sim.cluster_ip(ns, "web"), 80, timeout=HELD_THROUGH_OUTAGE_S)
    assert code == 200 and body.startswith("web-")
    wait_mode(sim, ns, "serve")
    # ... and a later manual scale to 0 is noticed
    sim.kubectl("scale", "-n", ns, "deployment/web", "--replicas=0")
    wait_mode(sim, ns, "proxy")


# ---------------------------------------------------------------- metrics


def test_metrics_in_kubernetes_mode_pass_promtool(sim, ns, holdfast):
    hf = holdfast.start()
    probes = [{"path": {"type": "Exact", "value": "/healthz"}, "response": {"status": 200, "body": "{}"}}]
    to_proxy_by_hand(sim, ns, probeResponse=probes)
    assert http_get(sim.cluster_ip(ns, "web"), 80, "/healthz", timeout=10)[0] == 200
    text = hf.metrics_text()
    for name in ("holdfast_controller_reconciles_total", "holdfast_leader"):
        assert re.search(r"^%s(\{[^}]*\})? " % name, text, re.M), name
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, "promtool: rc %d\n%s%s\n--- metrics:\n%s" % (
        r.returncode, r.stdout, r.stderr, text[:6000])


# ---------------------------------------------------------------- replicas, scope, leader


def test_resolver_replicas_followed_by_every_resolver_slice(sim, ns, holdfast):
    """--resolver-service: the resolver's own Service's ready endpoints (here a hand-made slice,
    as the EndpointSlice controller would write for resolver pods) are the endpoints of every
    resolver slice, 1 -> 2 -> 1 replicas."""
    ip1, ip2 = (sim.fresh_ip() for _ in range(2))  # on the node's bridge
    sim.create("/api/v1/namespaces/%s/services" % ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "hf"},
        "spec": {"ports": [{"name": "admin", "port": 8013}]}})
    rs = "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % ns

    def set_resolvers(ips):
        obj = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
               "metadata": {"name": "hf-pods", "labels": {"kubernetes.io/service-name": "hf",
                                                          "endpointslice.kubernetes.io/managed-by": "test"}},
               "ports": [{"name": "admin", "port": 8013, "protocol": "TCP"}],
               "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": sim.node_name}
                             for ip in ips]}
        if sim.exists(rs + "/hf-pods"):
            sim.patch(rs + "/hf-pods", {"endpoints": obj["endpoints"]})
        else:
            sim.create(rs, obj)

    def endpoints_of(svc):
        sl = resolver_slices(sim, ns, svc)
        return sorted(ep["addresses"][0] for s in sl for ep in s.get("endpoints") or []) if sl else None

    set_resolvers([ip1])
    holdfast.start(ip=ip1, extra_args=["--resolver-service", "hf", "--resolver-namespace", ns])
    make_app(sim, ns, "web", replicas=0)
    make_app(sim, ns, "api", replicas=0)
    create_es(sim, ns, elastiservice("web"))
    create_es(sim, ns, elastiservice("api"))
    for svc in ("web", "api"):
        wait_mode(sim, ns, "proxy", name=svc)
        wait_for(lambda: endpoints_of(svc) == [ip1], timeout=10, what="%s's resolver slice lists 1 resolver" % svc)
    ep = resolver_slices(sim, ns, "web")[0]["endpoints"][0]
    assert ep.get("nodeName") == sim.node_name, ep  # else externalTrafficPolicy: Local drops it

    set_resolvers([ip1, ip2])
    for svc in ("web", "api"):
        wait_for(lambda: endpoints_of(svc) == sorted([ip1, ip2]), timeout=10,
                 what="%s's resolver slice lists 2 resolvers" % svc)
    set_resolvers([ip2])
    for svc in ("web", "api"):
        wait_for(lambda: endpoints_of(svc) == [ip2], timeout=10,
                 what="%s's resolver slice drops the resolver that left" % svc)


def test_namespace_scoped_run_leaves_other_namespaces_alone(sim, ns, holdfast):
    other = ns[:50] + "-other"
    sim.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    try:
        holdfast.start()  # --namespace ns
        make_app(sim, other, replicas=0)
        create_es(sim, other, elastiservice())
        make_app(sim, ns, replicas=0)
        create_es(sim, ns, elastiservice())
        wait_mode(sim, ns, "proxy")  # control: its own namespace is served
        hold_still(2, lambda: not es_get(sim, other).get("status") and
                   FINALIZER not in es_get(sim, other)["metadata"].get("finalizers", []) and
                   not resolver_slices(sim, other), "an ElastiService outside --namespace was touched")
    finally:
        sim.request("DELETE", "/api/v1/namespaces/" + other)


def test_leader_failover_other_replica_takes_over_scale_down(sim, prom, exporter, ns, holdfast):
    make_app(sim, ns)
    set_load(prom, exporter, ns, 5)  # busy: nothing to scale down yet
    lease_args = ["--resolver-namespace", ns]  # the Lease lives there
    a = holdfast.start(pod_name="hf-a", leader_elect=True, extra_args=lease_args)
    lease_path = "/apis/coordination.k8s.io/v1/namespaces/%s/leases/holdfast-leader" % ns
    wait_for(lambda: sim.get(lease_path)["spec"].get("holderIdentity") == "hf-a", timeout=15,
             what="hf-a holds the Lease")
    b = holdfast.start(pod_name="hf-b", leader_elect=True, extra_args=lease_args)

    def leader_metric(h):
        m = re.search(r"^holdfast_leader(?:\{[^}]*\})? (\S+)$", h.metrics_text(), re.M)
        return float(m.group(1)) if m else None
    wait_for(lambda: leader_metric(a) == 1 and leader_metric(b) == 0, timeout=10, what="a leads, b does not")
    create_es(sim, ns, elastiservice(triggers=[trigger(prom, ns)]))
    wait_mode(sim, ns, "serve")

    a.kill()  # no Lease handed back: b must wait for it to expire, then lead
    set_load(prom, exporter, ns, 0)
    wait_for(lambda: sim.get(lease_path)["spec"].get("holderIdentity") == "hf-b", timeout=30,
             what="hf-b takes the Lease")
    wait_mode(sim, ns, "proxy", timeout=15)
    wait_replicas(sim, ns, 0)
    assert leader_metric(b) == 1
    slices = resolver_slices(sim, ns)
    assert [ep["addresses"] for ep in slices[0]["endpoints"]] == [[b.ip]], slices


def test_kind_alias_deployments_is_a_deployment(sim, ns, holdfast):
    holdfast.start()
    to_proxy_by_hand(sim, ns, kind="deployments")
    code, _, body = http_get(sim.cluster_ip(ns, "web"), 80)
    assert code == 200 and body.startswith("web-"), (code, body)
    assert replicas(sim, ns) == 1
    wait_mode(sim, ns, "serve")


def test_long_service_name_fits_generated_names(sim, ns, holdfast):
    """KubeElasti #294: a 63-character Service name must not break reconcile; the resolver
    slice's name fits 63 characters and its label names the Service in full."""
    name = ("w" + "x" * 70)[:63]
    holdfast.start()
    make_app(sim, ns, name, replicas=0)
    create_es(sim, ns, elastiservice(name))
    wait_mode(sim, ns, "proxy", name=name)
    slices = wait_for(lambda: resolver_slices(sim, ns, name), timeout=10, what="resolver slice")
    md = slices[0]["metadata"]
    assert len(md["name"]) <= 63 and md["labels"]["kubernetes.io/service-name"] == name, md
    code, _, body = http_get(sim.cluster_ip(ns, name), 80)
    assert code == 200, (code, body)
    wait_mode(sim, ns, "serve", name=name)


def test_headless_service_is_refused_with_a_condition(sim, ns, holdfast):
    holdfast.start()
    sim.create(wpath("Deployment", ns), workload("Deployment", "web", 0))
    svc = service("web")
    svc["spec"]["clusterIP"] = "None"
    sim.create("/api/v1/namespaces/%s/services" % ns, svc)
    create_es(sim, ns, elastiservice())
    c = wait_for(lambda: (condition(sim, ns, "Ready") or {}).get("status") == "False"
                 and condition(sim, ns, "Ready"), timeout=10, what="Ready False")
    assert "headless" in (c.get("message", "") + c.get("reason", "")).lower(), c
    hold_still(2, lambda: not resolver_slices(sim, ns), "a resolver slice for a headless Service")


def test_nul_character_in_a_spec_string_is_refused_with_a_condition_naming_the_field(
        sim, ns, holdfast):
    """The API server keeps "web\\u0000x" whole; read as a C string it would be "web", and
    holdfast would take over a Service the spec does not name."""
    holdfast.start()
    make_app(sim, ns, replicas=0)
    create_es(sim, ns, elastiservice(svc="web\x00x"))
    c = wait_for(lambda: (condition(sim, ns, "Ready") or {}).get("reason") == "InvalidSpec"
                 and condition(sim, ns, "Ready"), timeout=10, what="Ready False InvalidSpec")
    assert c["status"] == "False", c
    assert c["message"] == "spec.service: must not contain a NUL character (\\u0000)", c
    hold_still(2, lambda: not resolver_slices(sim, ns), "a resolver slice for the Service web")


# ---------------------------------------------------------------- ports and route updates


def test_resolver_port_of_a_deleted_elastiservice_is_not_handed_to_the_next_one(sim, ns, holdfast):
    """Allocation goes round the range: the port a deleted ElastiService gave up is the last to be
    reused, so stragglers still sent there do not reach another service."""
    holdfast.start()
    first = to_proxy_by_hand(sim, ns)["ports"][0]["resolverPort"]
    sim.delete(es_path(ns))
    wait_for(lambda: not sim.exists(es_path(ns)), timeout=20, what="the ElastiService gone")
    make_app(sim, ns, name="api", replicas=0)
    create_es(sim, ns, elastiservice(name="api"))
    st = wait_mode(sim, ns, "proxy", name="api")
    second = st["ports"][0]["resolverPort"]
    assert second != first, "port %d reused at once" % first


def test_route_update_latency_is_measured_per_change(sim, ns, holdfast):
    """holdfast_route_update_seconds counts the snapshots that carried a change out, one
    observation per worker, and the debug log says how long each took."""
    hf = holdfast.start(workers=2)
    make_app(sim, ns)
    create_es(sim, ns, elastiservice())
    wait_mode(sim, ns, "serve")
    before = metric_value(hf.metrics_text(), "holdfast_route_update_seconds_count")
    assert before is not None and before >= 2, before  # the first snapshots, both workers
    sim.kubectl("scale", "-n", ns, "deployment/web", "--replicas=0")
    wait_mode(sim, ns, "proxy")
    wait_for(lambda: metric_value(hf.metrics_text(), "holdfast_route_update_seconds_count") >= before + 2,
             timeout=10, what="the proxy-mode snapshot counted by both workers")
    lines = hf.log_lines("route snapshot applied")
    assert {str(entry["worker"]) for entry in lines} == {"0", "1"}, lines[-4:]
    assert all(float(entry["since_change_ms"]) >= 0 for entry in lines)


def test_target_reads_are_paced_under_the_api_rate_limit(sim, ns, holdfast):
    """30 ElastiServices, --kube-api-qps 3, polling every 1 s: the /scale reads that cannot all go
    within the rate limit are not all queued at once (at most a second's worth wait for a
    token), so other calls never wait behind 30 of them; a request at zero meanwhile is woken
    (through the wake client, whose queue stays empty) and answered."""
    sleeper = [{"name": "main", "image": "test/sleep", "args": ["600"]}]
    names = ["w%d" % i for i in range(30)]
    for name in names:
        sim.create(wpath("Deployment", ns), workload("Deployment", name, 1, containers=sleeper))
        sim.create("/api/v1/namespaces/%s/services" % ns, service(name))
    hf = holdfast.start(extra_args=("--kube-api-qps", "3", "--kube-api-burst", "3"))
    to_proxy_by_hand(sim, ns)  # `web`, at zero
    for name in names:
        obj = elastiservice(name=name)
        obj["metadata"]["finalizers"] = [FINALIZER]
        create_es(sim, ns, obj)
    # their first reconciles write (status): let those through the 3/s limit first
    wait_for(lambda: all(status(sim, ns, n).get("mode") == "serve" for n in names), timeout=60,
             interval=0.5, what="the 30 ElastiServices in serve mode")

    def queued(client):
        m = re.search(r'^holdfast_kube_api_queued\{client="%s"\} (\S+)$' % client, hf.metrics_text(), re.M)
        return float(m.group(1))
    seen = []
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        seen.append(queued("main"))
        time.sleep(0.1)
    assert max(seen) <= 3 + 2, "queue reached %d (pacing keeps it near the 3/s limit)" % max(seen)
    assert max(seen) >= 1, "the reads never waited: the test did not load the rate limiter"
    # a wake meanwhile is not queued behind them
    code, _, body = http_get(sim.cluster_ip(ns, "web"), 80, timeout=40)
    assert code == 200 and body.startswith("web-"), (code, body)
    assert queued("wake") == 0


def test_resolver_port_taken_by_another_process_is_listened_on_once_freed(sim, ns, holdfast):
    """The first resolver port of the range is held by another process when the service enters
    proxy mode: holdfast says so, and retries by itself (nothing else changes meanwhile); once
    the port is free it listens there, and a request at zero through the ClusterIP is held, wakes
    the target and is answered."""
    hf = holdfast.start()
    squatter = socket.socket()
    squatter.bind((hf.ip, hf.port_range[0]))
    squatter.listen(1)
    try:
        st = to_proxy_by_hand(sim, ns)
        assert st["ports"][0]["resolverPort"] == hf.port_range[0]
        hf.wait_log("cannot listen on a resolver port; retrying every second")
        time.sleep(1.5)  # the cluster is quiet: no informer event would publish again
    finally:
        squatter.close()

    def listening():
        try:
            socket.create_connection((hf.ip, hf.port_range[0]), timeout=1).close()
            return True
        except OSError:
            return False
    wait_for(listening, timeout=10, interval=0.2, what="holdfast listening on the freed port")
    code, _, body = http_get(sim.cluster_ip(ns, "web"), 80, timeout=40)
    assert code == 200 and body.startswith("web-"), (code, body)


# ---------------------------------------------------------------- lean caches


def test_status_writes_keep_what_the_lean_cache_drops(sim, ns, holdfast):
    """holdfast caches an ElastiService without its labels, annotations and managedFields, and
    parses its spec only when the generation moves. Its status writes still leave everything
    else on the API server as it was: the spec, labels, annotations, and a condition another
    controller wrote (whole: conditions are written back as an array). A label-only edit (no new
    generation) changes nothing; a spec change (a new generation) is acted on."""
    make_app(sim, ns, replicas=0)
    es = elastiservice(minTargetReplicas=2, holdTimeoutSeconds=45, maxHeldConnections=7)
    es["metadata"]["labels"] = {"team": "a"}
    es["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(es, sort_keys=True),
        "example.com/owner": "platform"}
    create_es(sim, ns, es)
    theirs = {"type": "ExternalCheck", "status": "True", "reason": "Checked",
              "message": "written by another controller", "lastTransitionTime": "2026-01-01T00:00:00Z",
              "observedGeneration": 1}
    sim.patch(es_path(ns) + "/status", {"status": {"conditions": [theirs]}})
    before = es_get(sim, ns)
    holdfast.start()
    wait_mode(sim, ns, "proxy")
    wait_for(lambda: condition(sim, ns, "Ready"), timeout=10, what="Ready condition written")
    after = es_get(sim, ns)
    assert after["spec"] == before["spec"]
    assert after["metadata"]["labels"] == before["metadata"]["labels"]
    assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert condition(sim, ns, "ExternalCheck") == theirs
    assert after["status"]["observedGeneration"] == before["metadata"]["generation"]

    # a label edit: no new generation; the status stays acknowledged and nothing else moves
    sim.patch(es_path(ns), {"metadata": {"labels": {"team": "b"}}})
    # a spec change: parsed (apps/v1 does not serve a Rollout: InvalidSpec) and acknowledged
    gen = sim.patch(es_path(ns), {"spec": {"scaleTargetRef": {"kind": "Rollout"}}})["metadata"]["generation"]
    assert gen == before["metadata"]["generation"] + 1
    wait_for(lambda: (condition(sim, ns, "Ready") or {}).get("reason") == "InvalidSpec"
             and status(sim, ns).get("observedGeneration") == gen, timeout=10,
             what="the new generation parsed: Ready False InvalidSpec, observedGeneration %d" % gen)
    last = es_get(sim, ns)
    assert last["metadata"]["labels"] == {"team": "b"}
    assert last["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert condition(sim, ns, "ExternalCheck") == dict(theirs, observedGeneration=gen)
