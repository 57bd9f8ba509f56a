"""Wake by backlog and group wake (issue 14, parts 2 and 5) on the real control plane.

spec.podCapacity sizes a wake to ceil(held / podCapacity) within minTargetReplicas and
spec.maxWakeReplicas, and raises (never lowers) the count while the woken pods start, as more
connections are held. spec.wakeWith workloads scale from zero with the target (never awaited),
to zero with it, and are restored when the ElastiService is deleted; a missing one does not stop
the target's wake. Bad values are refused: by the CRD's bounds, or by the controller
(Ready=False InvalidSpec naming the field).

Connections are held by real clients through the Service's ClusterIP (kube-proxy sends it to
holdfast while the target is at zero): raw sockets that send one GET each and read the answer,
so a test decides how many are held at once and can close some. The target's pods start 3 s
late (test/http:3s), which is the cold start the raise happens in. The cluster fixtures are
test_controller.py's (one cluster for this module).
"""
import errno
import re
import socket
import threading
import time

import pytest

from test_controller import (  # noqa: F401 - fixtures are used by name
    condition, create_es, elastiservice, es_events, es_get, es_path, exporter, holdfast,
    hold_still, http_get, make_app, metric_value, ns, pods, prom, replicas, set_load, sim, status,
    trigger, wait_event, wait_mode, wait_replicas, workload, wpath)
from hftest.kubeclient import ApiError, wait_for


def connect(ip, port, retry=15):
    """A connection through kube-proxy; refused (no rule for the Service yet, or kube-proxy has
    not applied the resolver slice) is retried for `retry` s, as http_get does."""
    deadline = time.monotonic() + retry
    while True:
        try:
            return socket.create_connection((ip, port), timeout=60)
        except OSError as e:
            if not isinstance(e, ConnectionRefusedError) and e.errno != errno.EHOSTUNREACH:
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class Held:
    """`n` client connections through the ClusterIP, each sending one GET and waiting for its
    answer (60 s at most). Nothing is sent until the kernel connected it; the data plane holds
    it once the head is in."""

    def __init__(self, ip, n, port=80):
        self.socks = []
        for _ in range(n):
            s = connect(ip, port)
            s.sendall(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
            self.socks.append(s)

    def close(self, k):
        """Gives up on k of them (the client goes away before the pods are ready)."""
        for s in self.socks[:k]:
            s.close()
        self.socks = self.socks[k:]

    def answers(self):
        """Each remaining connection's status line (read until the server closes)."""
        out = []
        for s in self.socks:
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            finally:
                s.close()
            out.append(data.split(b"\r\n", 1)[0].decode(errors="replace"))
        self.socks = []
        return out


class Replicas:
    """Samples the target's spec.replicas every 50 ms until stop(): what it went through."""

    def __init__(self, sim, ns, name="web", kind="Deployment"):
        self.seen = []
        self.stopping = threading.Event()
        self.t = threading.Thread(target=self._run, args=(sim, ns, name, kind), daemon=True)
        self.t.start()

    def _run(self, sim, ns, name, kind):
        while not self.stopping.is_set():
            n = replicas(sim, ns, name, kind)
            if not self.seen or self.seen[-1] != n:
                self.seen.append(n)
            time.sleep(0.05)

    def stop(self):
        self.stopping.set()
        self.t.join(10)
        assert not self.t.is_alive()
        return self.seen


def at_zero(sim, ns, image="test/http:3s", **spec):
    """Deployment web at 0 (its pods start 3 s late) + Service + ElastiService without triggers:
    holdfast finds it at zero and proxies at once."""
    make_app(sim, ns, replicas=0, image=image)
    create_es(sim, ns, elastiservice(**spec))
    wait_mode(sim, ns, "proxy")
    return sim.cluster_ip(ns, "web")


def held_now(hf, ns):
    return metric_value(hf.metrics_text(), "holdfast_held_connections", namespace=ns, service="web") or 0


def scaled_up_messages(sim, ns):
    return [e["message"] for e in es_events(sim, ns, "ScaledUp")]


def wake_to(sim, ns, ip, held, n, what):
    """`held` clients held at zero wake the target to `n` replicas: every one is answered by a
    pod, the mode goes to serve, and the count stays `n` (sampled for 1.5 s; `what` says what
    moving it would mean). Returns the replica counts seen from the first held client on."""
    seen = Replicas(sim, ns)
    clients = Held(ip, held)
    wait_replicas(sim, ns, n, timeout=20)
    answers = clients.answers()
    assert answers == ["HTTP/1.1 200 OK"] * held, answers
    wait_mode(sim, ns, "serve")
    hold_still(1.5, lambda: replicas(sim, ns) == n, what)
    return seen.stop()


# ---------------------------------------------------------------- sizing


def test_seven_held_with_pod_capacity_two_wake_four_replicas(sim, ns, holdfast):
    hf = holdfast.start()
    ip = at_zero(sim, ns, podCapacity=2)
    path = wake_to(sim, ns, ip, 7, 4, "the wake's count moved")
    assert path[0] == 0 and path[-1] == 4 and path == sorted(path), path  # up only, to 4
    msgs = scaled_up_messages(sim, ns)
    assert any(re.search(r"held connections asked for 4 replicas \(podCapacity 2\)", m) for m in msgs), msgs
    assert not held_now(hf, ns)


def test_max_wake_replicas_bounds_the_wake(sim, ns, holdfast):
    holdfast.start()
    ip = at_zero(sim, ns, podCapacity=2, maxWakeReplicas=3)
    path = wake_to(sim, ns, ip, 7, 3, "the wake went past maxWakeReplicas")
    assert max(path) == 3 and path == sorted(path), path


def test_keda_max_replica_count_bounds_the_wake(sim, ns, holdfast):
    """The ScaledObject's maxReplicaCount, as the pause patch's answer shows it, bounds the wake
    like maxWakeReplicas: the target's HPA would take it down to that anyway."""
    so_path = "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects" % ns
    sim.create(so_path, {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "web-so"},
                         "spec": {"scaleTargetRef": {"name": "web"}, "minReplicaCount": 1,
                                  "maxReplicaCount": 2}})
    holdfast.start()
    ip = at_zero(sim, ns, podCapacity=1, maxWakeReplicas=5, autoscaler={"type": "keda", "name": "web-so"})
    wait_for(lambda: (sim.get(so_path + "/web-so")["metadata"].get("annotations") or {})
             .get("autoscaling.keda.sh/paused-replicas") == "0", timeout=10, what="ScaledObject paused")
    path = wake_to(sim, ns, ip, 5, 2, "the wake went past maxReplicaCount")
    assert max(path) == 2 and path == sorted(path), path


def test_without_pod_capacity_a_wake_scales_to_min_target_replicas(sim, ns, holdfast):
    holdfast.start()
    ip = at_zero(sim, ns, minTargetReplicas=2)
    path = wake_to(sim, ns, ip, 7, 2, "7 held connections moved minTargetReplicas")
    assert path == [0, 2], path


def test_connections_held_while_the_pods_start_raise_the_count_never_lower_it(sim, ns, holdfast):
    hf = holdfast.start()
    ip = at_zero(sim, ns, podCapacity=2)
    seen = Replicas(sim, ns)
    first = Held(ip, 2)                      # 2 held: 1 replica
    wait_replicas(sim, ns, 1, timeout=15)
    assert not pods(sim, ns) or all(not p.get("status", {}).get("containerStatuses") or
                                    not p["status"]["containerStatuses"][0].get("ready")
                                    for p in pods(sim, ns)), "the pod is ready already: no cold start left"
    more = Held(ip, 5)                       # 7 held while the pod starts: 4 replicas
    wait_replicas(sim, ns, 4, timeout=15)
    more.close(5)                            # 2 held again: asks for 1, must not lower
    wait_for(lambda: held_now(hf, ns) <= 2, timeout=10, what="the closed connections no longer held")
    last = Held(ip, 1)                       # a wake with 3 held: asks for 2
    assert status(sim, ns).get("mode") == "proxy", "serving already: the raise window was missed"
    hold_still(1.0, lambda: replicas(sim, ns) == 4, "the count was lowered while the pods start")
    answers = first.answers() + last.answers()
    assert answers == ["HTTP/1.1 200 OK"] * 3, answers
    wait_mode(sim, ns, "serve")
    path = seen.stop()
    assert path[0] == 0 and path[1] == 1 and path[-1] == 4 and path == sorted(path), path
    msgs = scaled_up_messages(sim, ns)
    assert any("while its pods start" in m and "to 4" in m for m in msgs), msgs
    assert metric_value(hf.metrics_text(), "holdfast_wake_raises_total") >= 1


def test_serving_target_is_never_raised(sim, ns, holdfast):
    """Once serving, HPA or KEDA own the count: held-connection sizing no longer applies."""
    hf = holdfast.start()
    ip = at_zero(sim, ns, image="test/http:1", podCapacity=1)
    code, _, body = http_get(ip, 80)
    assert code == 200 and body.startswith("web-"), (code, body)
    wait_mode(sim, ns, "serve")
    assert replicas(sim, ns) == 1
    threads = [threading.Thread(target=http_get, args=(ip, 80), daemon=True) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    hold_still(1.5, lambda: replicas(sim, ns) == 1, "a serving target was scaled by holdfast")
    assert not metric_value(hf.metrics_text(), "holdfast_wake_raises_total")


# ---------------------------------------------------------------- group wake


def test_wake_with_member_follows_the_target_down_up_and_back_on_deletion(sim, prom, exporter, ns, holdfast):
    sim.create(wpath("Deployment", ns), workload("Deployment", "worker", 3, image="test/sleep",
                                                 containers=[{"name": "main", "image": "test/sleep",
                                                              "args": ["3600"]}]))
    make_app(sim, ns)
    set_load(prom, exporter, ns, 0)
    hf = holdfast.start()
    create_es(sim, ns, elastiservice(triggers=[trigger(prom, ns)],
                                     wakeWith=[{"kind": "Deployment", "name": "worker"}]))
    wait_mode(sim, ns, "proxy")
    wait_replicas(sim, ns, 0)
    wait_replicas(sim, ns, 0, name="worker")      # down with the target
    wait_for(lambda: status(sim, ns).get("wakeWithReplicas") == {"Deployment/worker": 3}, timeout=10,
             what="status.wakeWithReplicas remembers the worker's 3")
    set_load(prom, exporter, ns, 5)               # busy: no scale-down after the wake

    code, _, body = http_get(sim.cluster_ip(ns, "web"), 80)
    assert code == 200 and body.startswith("web-"), (code, body)
    wait_replicas(sim, ns, 3, name="worker")      # up with it, to its own count
    wait_event(sim, ns, "WakeWithScaledUp")
    assert metric_value(hf.metrics_text(), "holdfast_wake_with_scale_ups_total") == 1
    c = condition(sim, ns, "WakeWith")
    assert c is None or c["status"] == "True", c

    set_load(prom, exporter, ns, 0)               # down together again, then deleted at zero
    wait_mode(sim, ns, "proxy")
    wait_replicas(sim, ns, 0, name="worker")
    wait_replicas(sim, ns, 0)
    sim.delete(es_path(ns))
    wait_for(lambda: not sim.exists(es_path(ns)), timeout=20, what="the ElastiService gone")
    wait_replicas(sim, ns, 1)
    wait_replicas(sim, ns, 3, name="worker")      # restored like the target


def test_wake_with_member_not_found_does_not_stop_the_wake(sim, ns, holdfast):
    holdfast.start()
    ip = at_zero(sim, ns, image="test/http:1", wakeWith=[{"kind": "Deployment", "name": "ghost"}])
    code, _, body = http_get(ip, 80)
    assert code == 200 and body.startswith("web-"), (code, body)
    wait_mode(sim, ns, "serve")
    c = wait_for(lambda: condition(sim, ns, "WakeWith"), timeout=10, what="condition WakeWith")
    assert c["status"] == "False" and c["reason"] == "MemberNotFound", c
    assert "Deployment ghost" in c["message"], c
    ev = wait_event(sim, ns, "WakeWithFailed")[0]
    assert ev["type"] == "Warning" and "ghost" in ev["message"], ev
    assert (condition(sim, ns, "Ready") or {}).get("status") == "True", condition(sim, ns, "Ready")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("spec,message", [
    ({"minTargetReplicas": 3, "maxWakeReplicas": 2},
     "spec.maxWakeReplicas: 2 is below spec.minTargetReplicas (3)"),
    ({"wakeWith": [{"kind": "Deployment", "name": "web"}]},
     "spec.wakeWith[0]: Deployment web is the scale target itself"),
    ({"wakeWith": [{"kind": "Deployment", "name": "a"}, {"kind": "Deployment", "name": "a"}]},
     "spec.wakeWith[1]: Deployment a is listed twice (also spec.wakeWith[0])"),
    ({"wakeWith": [{"kind": "Rollout", "name": "a", "apiVersion": "apps/v1"}]},
     "spec.wakeWith[0].apiVersion: \"apps/v1\" does not serve kind Rollout"),
], ids=["max-below-min", "target-itself", "duplicate", "api-version"])
def test_invalid_wake_fields_are_refused_naming_the_field(sim, ns, holdfast, spec, message):
    holdfast.start()
    make_app(sim, ns, replicas=0)
    create_es(sim, ns, elastiservice(**spec))
    c = wait_for(lambda: (condition(sim, ns, "Ready") or {}).get("reason") == "InvalidSpec"
                 and condition(sim, ns, "Ready"), timeout=10, what="Ready False InvalidSpec")
    assert c["status"] == "False" and c["message"].startswith(message), c


@pytest.mark.parametrize("spec,field", [
    ({"podCapacity": 0}, "spec.podCapacity"),
    ({"podCapacity": "2"}, "spec.podCapacity"),
    ({"maxWakeReplicas": 0}, "spec.maxWakeReplicas"),
    ({"wakeWith": [{"kind": "Job", "name": "x"}]}, "spec.wakeWith[0].kind"),
], ids=["capacity-0", "capacity-string", "max-0", "member-kind"])
def test_out_of_bounds_values_are_refused_by_the_api_server(sim, ns, spec, field):
    with pytest.raises(ApiError) as e:
        create_es(sim, ns, elastiservice(**spec))
    assert e.value.code == 422 and field in str(e.value.body), e.value.body
