"""Reproductions of defects the randomized soak (tests/soak) found, one focused test each.

Every test here is marked `reproduction`: it fails until its defect is fixed, then stays as the
regression test. Each docstring names the soak seed that showed it, the symptom, and where in
the code the cause seems to be. Deselect them with `-m "not reproduction"`.

The set-up is test_controller.py's, imported: one real test cluster per module (kube-proxy delay
200 ms), one holdfast per test (tests/hftest/hfk8s.py, its own address on the node's bridge,
--polling-interval 1s), requests
through the Service's ClusterIP, bounded waits, no sanitizer report allowed.
"""
import json
import time

import pytest

from test_controller import (  # noqa: F401 - fixtures are used by name
    Background, create_es as create_es_obj, elastiservice, es_path, holdfast, make_app as make_app_kind,
    ns, resolver_slices, sim, status)
from hftest import promtext
from hftest.kubeclient import wait_for

pytestmark = pytest.mark.reproduction


def make_app(sim, ns, name="web", replicas=1, image="test/http:1"):
    make_app_kind(sim, ns, name=name, replicas=replicas, image=image)


def create_es(sim, ns, name="web", **spec):
    """An ElastiService as the soak makes them: no cooldown, minTargetReplicas 1."""
    spec.setdefault("minTargetReplicas", 1)
    return create_es_obj(sim, ns, elastiservice(name=name, cooldown=0, **spec))


def metric(hf, name):
    return promtext.value(hf.metrics_text(), name)


def result(req, timeout=60):
    """(status, body) of a Background request."""
    code, _, body = req.result(timeout)
    return code, body


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
    make_app(sim, ns, replicas=0, image="test/http:3s")  # ~3 s from wake to a listening pod
    hf = holdfast.start()
    create_es(sim, ns)
    wait_for(lambda: status(sim, ns).get("mode") == "proxy" and resolver_slices(sim, ns), timeout=20,
             what="proxy mode with a resolver slice")
    time.sleep(0.5)  # kube-proxy (200 ms) routes the ClusterIP to holdfast
    req = Background(sim.cluster_ip(ns, "web"), 80, "/held")
    wait_for(lambda: metric(hf, "holdfast_held_connections") == 1, timeout=10, what="the request held")
    sim.delete(es_path(ns))
    wait_for(lambda: not sim.exists(es_path(ns)), timeout=10, what="the ElastiService gone")
    code, body = result(req)
    assert code == 200 and body.startswith("web-"), \
        "the held request got %d %s instead of the restored pod's answer" % (code, body)


def test_request_held_when_its_namespace_goes_is_answered_at_once(sim, ns, holdfast):
    """Found by the soak (invariant `request_at_scale_down`), seed 188701454 (SOAK_SECONDS=180,
    t=176.3-221.3 s): a request held for soak-5/a10 got no answer for 45 s (the client's
    timeout). The namespace was deleted while it was held: the wake found no Deployment
    (NotFound), the ElastiService went, and its route stayed for the held request (the
    lingering route that lets a request held at an ElastiService's deletion reach the restored
    pod), with nothing left that could ever answer it, until the hold timeout.

    Here, with the target slow to start: a request is held, the ElastiService and then the
    Service are deleted (as a namespace deletion does). The held request is answered at once
    with the documented 503 "service was removed", not after holdTimeoutSeconds (25 s here)."""
    make_app(sim, ns, replicas=0, image="test/http:3s")
    hf = holdfast.start()
    create_es(sim, ns, holdTimeoutSeconds=25)
    wait_for(lambda: status(sim, ns).get("mode") == "proxy" and resolver_slices(sim, ns), timeout=20,
             what="proxy mode with a resolver slice")
    time.sleep(0.5)  # kube-proxy (200 ms) routes the ClusterIP to holdfast
    req = Background(sim.cluster_ip(ns, "web"), 80, "/held", timeout=60)
    wait_for(lambda: metric(hf, "holdfast_held_connections") == 1, timeout=10, what="the request held")
    sim.delete(es_path(ns))
    wait_for(lambda: not sim.exists(es_path(ns)), timeout=10, what="the ElastiService gone")
    sim.delete("/api/v1/namespaces/%s/services/web" % ns)
    t0 = time.monotonic()
    code, _, body = req.result(timeout=40)
    waited = time.monotonic() - t0
    assert code == 503 and json.loads(body).get("reason") == "service was removed", (code, body)
    assert waited < 10, "answered %.1f s after the Service went (the hold timeout is 25 s)" % waited


def test_request_held_when_the_service_of_a_staying_elastiservice_goes_waits_for_it(sim, ns, holdfast):
    """Found by the soak on the real control plane (seed 1724839928, SOAK_SECONDS=180,
    t=183.8-333.9 s): two requests held for soak-5/a10 timed out at their client (150 s). The
    app's Service was deleted 1.5 s after the first was held, the ElastiService stayed, and the
    API server restart that followed kept the Service from being created again. holdfast finds
    the target's pods through the Service's EndpointSlices, so nothing could relay them; the
    request is not lost by holdfast (docs/kubernetes.md, "The Service deleted"): it waits for
    the Service, as the soak now judges it.

    Here: a request held at zero, the Service deleted while the target's pod starts (3 s). The
    request stays held (no 503, no reset) with the pod ready and no Service; once the Service
    is created again and lists the pod, the request is relayed to it."""
    make_app(sim, ns, replicas=0, image="test/http:3s")
    hf = holdfast.start()
    create_es(sim, ns, holdTimeoutSeconds=120)
    wait_for(lambda: status(sim, ns).get("mode") == "proxy" and resolver_slices(sim, ns), timeout=20,
             what="proxy mode with a resolver slice")
    time.sleep(0.5)  # kube-proxy (200 ms) routes the ClusterIP to holdfast
    svc_path = "/api/v1/namespaces/%s/services/web" % ns
    svc = sim.get(svc_path)
    req = Background(sim.cluster_ip(ns, "web"), 80, "/held", timeout=110)
    wait_for(lambda: metric(hf, "holdfast_held_connections") == 1, timeout=10, what="the request held")
    sim.delete(svc_path)
    wait_for(lambda: [p for p in sim.get("/api/v1/namespaces/%s/pods" % ns)["items"]
                      if any(c["type"] == "Ready" and c["status"] == "True"
                             for c in (p.get("status") or {}).get("conditions") or [])],
             timeout=30, what="the woken pod Ready")
    time.sleep(2)  # beyond the Ready pod's slice and kube-proxy, were the Service still there
    assert req.t.is_alive(), "the held request ended without its Service: %r" % ((req.out, req.err),)
    assert metric(hf, "holdfast_held_connections") == 1
    sim.create("/api/v1/namespaces/%s/services" % ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": svc["metadata"].get("labels")},
        "spec": {"selector": svc["spec"]["selector"], "ports": svc["spec"]["ports"]}})
    code, body = result(req, timeout=60)
    assert code == 200 and body.startswith("web-"), (code, body)


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
        code, body = result(req)
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
    make_app(sim, ns, replicas=0, image="test/http:3s")  # ~3 s from wake to a listening pod
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
    code, body = result(req, timeout=70)
    assert code == 200 and body.startswith("web-"), \
        "the held request got %d %s: nothing woke the target again" % (code, body)
