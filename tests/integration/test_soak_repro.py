"""Reproductions of defects the randomized soak (tests/soak) found, one focused test each.

Every test here is marked `reproduction`: it fails until its defect is fixed, then stays as the
regression test. Each docstring names the soak seed that showed it, the symptom, and where in
the code the cause seems to be. Deselect them with `-m "not reproduction"`.

Same set-up as test_controller.py: one kubesim per module (kube-proxy delay 200 ms), one holdfast
per test (tests/lib/hfk8s.py, its own loopback address, --polling-interval 1s), requests through
the Service's ClusterIP, bounded waits, no sanitizer report allowed.
"""
import http.client
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


def lease_holder(sim, ns):
    code, body = sim.request("GET", "/apis/coordination.k8s.io/v1/namespaces/%s/leases/holdfast-leader" % ns)
    return body.get("spec", {}).get("holderIdentity") if code == 200 else None


def test_follower_that_woke_a_service_sees_the_leaders_serve_switch(sim, ns, holdfast):
    """Found by the soak (invariant `metrics`), seed 11 (SOAK_SECONDS=600, t=199.8 s): right after
    the leader was SIGTERMed, the replica that took over counted two serve switches
    (holdfast_serve_switches_total 0 -> 2) and recorded two SwitchedToServe Events, for soak-4/a5
    and soak-4/a6, whose status.mode the API had shown as serve for seconds; no transition
    happened. That replica, as a follower, had woken both services a little earlier.

    Cause (controller.c, es_parse_status and on_status_written): a replica's status write (here
    the follower's lastScaledUpTime after its wake) sets `awaited_rv` to the resourceVersion the
    write produced once the write is answered. The informer often delivers that version before
    the answer arrives (or it arrives while status_inflight > 0 and is skipped), so it never
    comes again: for AWAIT_ECHO_MS (10 s) every later status the informer shows (the leader's
    mode: serve) is ignored, and after that only the next event of that object would refresh
    it. A follower that becomes leader meanwhile acts on the mode it had before: proxy, so it
    "switches" to serve again (a counter, an Event and a status write for nothing); with a
    stale serve it would take a target the leader had scaled to zero for one scaled to zero by
    hand (ScaledToZero ... by hand, holdfast_scale_downs_total)."""
    make_app(sim, ns)
    create_es(sim, ns)
    lease = ["--resolver-namespace", ns]
    a = holdfast.start(pod_name="hf-a", leader_elect=True, extra_args=lease)
    wait_for(lambda: lease_holder(sim, ns) == "hf-a", timeout=15, what="hf-a leading")
    b = holdfast.start(pod_name="hf-b", leader_elect=True, extra_args=lease)
    sim.kubectl("scale", "-n", ns, "deployment/web", "--replicas=0")
    wait_for(lambda: status(sim, ns).get("mode") == "proxy" and resolver_slices(sim, ns), timeout=20,
             what="proxy mode")
    port = status(sim, ns)["ports"][0]["resolverPort"]
    # a request held by the follower: it wakes the target and writes lastScaledUpTime; its watch
    # shows that write before the answer to it comes (as a real API server may)
    sim.slow_write_answers(300)
    try:
        req = Background(b.ip, port, "/through-the-follower")
        code, body = req.result()
        assert code == 200 and body.startswith("web-"), (code, body)
        wait_for(lambda: status(sim, ns).get("mode") == "serve", timeout=20, what="serve mode (hf-a)")
    finally:
        sim.slow_write_answers(0)
    assert metric(b, "holdfast_serve_switches_total") == 0
    time.sleep(1)  # the follower has seen the serve status if it looks at it
    a.stop()  # SIGTERM: the Lease is handed back, hf-b leads at once
    wait_for(lambda: lease_holder(sim, ns) == "hf-b", timeout=15, what="hf-b leading")
    wait_for(lambda: metric(b, "holdfast_leader") == 1, timeout=10, what="hf-b says it leads")
    time.sleep(3)  # its first reconciles and polls
    assert status(sim, ns).get("mode") == "serve"
    switched = [e for e in b.log_lines("event") if e.get("reason") == "SwitchedToServe"]
    assert metric(b, "holdfast_serve_switches_total") == 0 and not switched, \
        "hf-b switched a service that was serving already: %s" % switched


def test_target_restored_when_its_elastiservice_is_deleted_is_counted_as_a_scale_up(sim, ns, holdfast):
    """Found by the soak (invariant `metrics`), seed 12 (SOAK_SECONDS=60, t=65.0 s): deleting
    the ElastiService soak-2/a4 at zero scaled its Deployment from 0 to 2 (the leader logged
    "scaled the target up from zero"), yet no replica's holdfast_scale_ups_total moved
    ("Targets scaled up from zero"; docs/operating.md: the wakes whose scale patch the replica
    made), and no ScaledUp Event was recorded.

    Cause (controller.c, es_finalize -> es_wake -> on_wake_done): the restore's scale call is
    answered after the finalizer removal has let the ElastiService go, so on_wake_done finds no
    `struct es` (es_ref_take returns NULL) and returns before counting wakes_sent."""
    make_app(sim, ns, replicas=0)
    hf = holdfast.start()
    create_es(sim, ns)
    wait_for(lambda: status(sim, ns).get("mode") == "proxy" and resolver_slices(sim, ns), timeout=20,
             what="proxy mode")
    assert metric(hf, "holdfast_scale_ups_total") == 0
    sim.delete(es_path(ns))
    wait_for(lambda: sim.get("/apis/apps/v1/namespaces/%s/deployments/web" % ns)["spec"]["replicas"] == 1,
             timeout=20, what="the target restored to 1 replica")
    wait_for(lambda: not sim.exists(es_path(ns)), timeout=10, what="the ElastiService gone")
    time.sleep(1)
    assert metric(hf, "holdfast_scale_ups_total") == 1, \
        "the restore scaled the target from 0 to 1 but holdfast_scale_ups_total says %s" % \
        metric(hf, "holdfast_scale_ups_total")


def test_requests_held_when_the_target_is_scaled_to_zero_by_hand_after_their_wake_wake_it_again(
        sim, ns, holdfast):
    """Found by the soak (invariant `request`), seed 16 (SOAK_SECONDS=300, t=304.8 s): two requests
    to soak-4/a8 were held at zero and woke the target (0 -> 1); 0.1 s later the target was
    scaled to 0 by hand, before its pod was ready. Nothing woke it again: the requests stayed
    held until the clients gave up 45 s later (they would have got a 504 at the hold timeout,
    600 s by default), with the target at 0 and status.mode proxy all along.

    Cause (controller.c): a service's held connections ask for one wake (the data plane queues a
    wake per burst of held requests); es_wake's scale call succeeded, so nothing repeats it:
    on_wake_retry re-wakes only after a failed scale call (wake_failed), and the leader's poll
    (on_scale: replicas 0 in proxy mode) does nothing. Every replica holding connections for a
    service whose target is at 0 should wake it again (target_wake is a no-op when it is up)."""
    make_app(sim, ns, replicas=0, image="kubesim/http:slow")  # ~3 s from wake to a listening pod
    hf = holdfast.start()
    create_es(sim, ns, holdTimeoutSeconds=25)  # the defect's 504 after 25 s, not 600
    wait_for(lambda: status(sim, ns).get("mode") == "proxy" and resolver_slices(sim, ns), timeout=20,
             what="proxy mode with a resolver slice")
    time.sleep(0.5)  # kube-proxy (200 ms) routes the ClusterIP to holdfast
    req = Background(sim.cluster_ip(ns, "web"), 80, "/held", timeout=60)
    deploy = "/apis/apps/v1/namespaces/%s/deployments/web" % ns
    wait_for(lambda: sim.get(deploy)["spec"]["replicas"] == 1, timeout=10, what="the wake (0 -> 1)")
    assert metric(hf, "holdfast_held_connections") == 1
    sim.kubectl("scale", "-n", ns, "deployment/web", "--replicas=0")  # by hand, before the pod is ready
    code, body = req.result(timeout=70)
    assert code == 200 and body.startswith("web-"), \
        "the held request got %d %s: nothing woke the target again" % (code, body)
