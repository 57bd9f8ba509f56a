"""Reproductions of defects the randomized soak (tests/soak) found, one focused test each.

Every test here is marked `reproduction`: it fails until its defect is fixed, then stays as the
regression test. Each docstring names the soak seed that showed it, the symptom, and where in
the code the cause seems to be. Deselect them with `-m "not reproduction"`.

Same set-up as test_controller.py: one kubesim per module (kube-proxy delay 200 ms), one holdfast
per test (tests/lib/hfk8s.py, its own loopback address, --polling-interval 1s), requests through
the Service's ClusterIP, bounded waits, no sanitizer report allowed.
"""
import http.client
import json
import os
import re
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "kubesim"))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))

from simctl import KubeSim, wait_for  # noqa: E402
from hfk8s import HoldfastK8s  # noqa: E402

PY = "/usr/bin/python3"
HTTPSERVER = os.path.join(REPO, "tests", "kubesim", "testdata", "httpserver.py")
IMAGES = {"kubesim/http:1": {"argv": [PY, HTTPSERVER]},
          "kubesim/http:slow": {"argv": [PY, HTTPSERVER], "startDelayMs": 3000}}
CRD_FILE = os.path.join(REPO, "crds", "elastiservice.yaml")
ES_API = "/apis/elasti.truefoundry.com/v1alpha1"

pytestmark = pytest.mark.reproduction


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = KubeSim(tmp_path_factory.mktemp("kubesim"), image_map=IMAGES, proxy_delay_ms=200)
    s.start()
    try:
        s.kubectl("apply", "-f", CRD_FILE)
        wait_for(lambda: s.exists(ES_API), what="the ElastiService CRD served")
        yield s
    finally:
        leftovers = s.stop()
    assert leftovers == [], "pod processes outlived kubesim: %s" % leftovers


_ns_counter = iter(range(1, 1 << 30))


@pytest.fixture
def ns(sim, request):
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    name = "r%d-%s" % (next(_ns_counter), slug)
    sim.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": name}})
    yield name
    sim.request("DELETE", "/api/v1/namespaces/" + name)


@pytest.fixture
def holdfast(sim, ns, tmp_path):
    """Overrides conftest's standalone factory (same name: its failure hook shows our logs)."""
    class Factory:
        instances = []

        def start(self, **kw):
            h = HoldfastK8s(sim, tmp_path / ("hf%d" % len(self.instances)), namespace=ns, **kw)
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


def make_app(sim, ns, name="web", replicas=1, image="kubesim/http:1"):
    labels = {"app": name}
    sim.create("/apis/apps/v1/namespaces/%s/deployments" % ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                     "name": "main", "image": image, "ports": [{"containerPort": 8080}],
                     "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}}})
    sim.create("/api/v1/namespaces/%s/services" % ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    if replicas:
        sim.wait_ready_replicas(ns, name, replicas)


def create_es(sim, ns, name="web", **spec):
    s = {"service": name, "cooldownPeriod": 0, "minTargetReplicas": 1,
         "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}}
    s.update(spec)
    return sim.create("%s/namespaces/%s/elastiservices" % (ES_API, ns), {
        "apiVersion": "elasti.truefoundry.com/v1alpha1", "kind": "ElastiService",
        "metadata": {"name": name}, "spec": s})


def es_path(ns, name="web"):
    return "%s/namespaces/%s/elastiservices/%s" % (ES_API, ns, name)


def status(sim, ns, name="web"):
    return sim.get(es_path(ns, name)).get("status") or {}


def resolver_slices(sim, ns, svc="web"):
    sel = "kubernetes.io/service-name%%3D%s,endpointslice.kubernetes.io/managed-by%%3Dholdfast" % svc
    return sim.get("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices?labelSelector=%s"
                   % (ns, sel))["items"]


def metric(hf, name):
    m = re.search(r"^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name), hf.metrics_text(), re.M)
    return float(m.group(1)) if m else None


class Background:
    """One GET through the ClusterIP in a thread; result() waits (bounded) for (status, body) or
    the exception."""

    def __init__(self, host, port, path="/", timeout=40):
        self.out = self.err = None
        self.t = threading.Thread(target=self._run, args=(host, port, path, timeout), daemon=True)
        self.t.start()

    def _run(self, host, port, path, timeout):
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            r = conn.getresponse()
            self.out = (r.status, r.read().decode(errors="replace"))
        except Exception as e:  # noqa: BLE001 - reported by result()
            self.err = e
        finally:
            conn.close()

    def result(self, timeout=60):
        self.t.join(timeout)
        assert not self.t.is_alive(), "the request got no answer within %ss" % timeout
        if self.err:
            raise self.err
        return self.out


def test_request_held_when_its_elastiservice_is_deleted_is_answered_by_the_restored_pod(
        sim, ns, holdfast):
    """Found by the soak (invariant `answer`), seed 8 (SOAK_SECONDS=300, t=56.7 s): the
    ElastiService soak-1/a2 was deleted with its target at zero, and the two requests held for
    it got holdfast's 503 {"error": "service unavailable", "reason": "service was removed"},
    although the deletion scales the target back up (docs/kubernetes.md, Deletion) and its pod
    answers moments later. That 503 is not among holdfast's documented answers
    (docs/data-plane.md: 503 only when a hold limit is reached). The request was accepted while
    the ElastiService existed, and should be relayed to the restored pod like any held request.
    Seed 4 (SOAK_SECONDS=240, t=204.6 s) shows the same answer when a whole namespace is
    deleted (its pods go too: there the answer would at least need documenting).

    Cause: resolver/conn.c, conn_snapshot_applied answers every held connection of a service
    that a new route snapshot no longer lists with that 503; controller.c drops a deleted
    ElastiService from the snapshot as soon as its finalizer is removed (es_finalize, then
    on_es_delete), without waiting for the target it restores to have a ready endpoint."""
    make_app(sim, ns, replicas=0, image="kubesim/http:slow")  # ~3 s from wake to a listening pod
    hf = holdfast.start()
    create_es(sim, ns)
    wait_for(lambda: status(sim, ns).get("mode") == "proxy" and resolver_slices(sim, ns), timeout=20,
             what="proxy mode with a resolver slice")
    time.sleep(0.5)  # kube-proxy (200 ms) routes the ClusterIP to holdfast
    req = Background(sim.cluster_ip(ns, "web"), 80, "/held")
    wait_for(lambda: metric(hf, "holdfast_held_connections") == 1, timeout=10, what="the request held")
    sim.delete(es_path(ns))
    wait_for(lambda: not sim.exists(es_path(ns)), timeout=10, what="the ElastiService gone")
    code, body = req.result()
    assert code == 200 and body.startswith("web-"), \
        "the held request got %d %s instead of the restored pod's answer" % (code, body)
