"""Every cold start explained (issue 14, part 3) on the real control plane.

For each wake the leader records when the first request was held, when the scale call went and
was answered, when the woken pod was created, scheduled, had its containers running and became
Ready (from the pod's status, one pod list at the switch to serve), and when the first held
byte was written; then shows it three ways: status.lastColdStart (milliseconds from the first
held request), a ColdStart Event with the breakdown in one line, and the histogram
holdfast_cold_start_phase_seconds{phase}. The cluster fixtures are test_controller.py's (one
cluster for this module).

The target's pod listens 3 s after its container starts (the test app's LISTEN_DELAY_MS) behind
a 1 s TCP readiness probe. Pod times are whole seconds (cut), so the gap containersStarted ->
ready the status shows can be up to 1 s shorter than the real one: 3 s of delay keeps it at
2 s or more. That test turns early readiness off (the kubelet's order: Ready, then the first
byte); the last one keeps it on behind a kubelet that probes every 10 s (early readiness's order:
earlyReady, the first byte, then Ready).
"""
import re

from test_controller import (  # noqa: F401 - fixtures are used by name
    create_es, elastiservice, es_events, exporter, holdfast, http_get, make_app, metric_value, ns,
    pods, prom, resolver_slices, sim, status, wait_mode)
from hftest.kubeclient import wait_for

PHASES = ["scaleSent", "scaleAnswered", "podCreated", "podScheduled", "containersStarted", "ready",
          "firstByte"]
LABELS = ["scale_sent", "scale_answered", "pod_created", "pod_scheduled", "containers_started",
          "ready", "first_byte", "early_ready"]
KUBELET = [1, 1, 1, 1, 1, 1, 1, 0]  # per wake, by label: no early_ready with it off
SLOW_LISTENER = [{"name": "main", "image": "test/http:1", "ports": [{"containerPort": 8080}],
                  "env": [{"name": "LISTEN_DELAY_MS", "value": "3000"}],
                  "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]


def phase_counts(hf):
    text = hf.metrics_text()
    return [metric_value(text, "holdfast_cold_start_phase_seconds_count", phase=p) or 0
            for p in LABELS]


def wake_through_the_service(sim, ns):
    code, _, body = http_get(sim.cluster_ip(ns, "web"), 80, "/hello")
    assert code == 200 and body.startswith("web-"), (code, body)  # the woken pod answered
    wait_mode(sim, ns, "serve")


def check_cold_start(lc):
    ph = lc["phases"]
    assert set(ph) == set(PHASES), lc  # every phase known on the leader that woke it
    at = [ph[p] for p in PHASES]
    assert at == sorted(at) and at[0] >= 0, lc  # in order, each >= the one before
    assert ph["ready"] - ph["containersStarted"] >= 2000, lc  # the 3 s listen delay
    assert ph["firstByte"] >= ph["ready"], lc
    assert lc["totalMs"] == ph["firstByte"], lc


def test_each_wake_records_its_phases_in_status_event_and_histogram(sim, ns, holdfast):
    make_app(sim, ns, replicas=0, containers=SLOW_LISTENER)
    hf = holdfast.start()
    # no triggers: at zero, so proxy mode at once; early readiness off: these phases are the
    # kubelet's path (the last test, and test_early_readiness.py, have the early one)
    create_es(sim, ns, elastiservice(earlyReadiness={"enabled": False}))
    wait_mode(sim, ns, "proxy")
    wait_for(lambda: resolver_slices(sim, ns), timeout=10, what="resolver slice")
    assert "lastColdStart" not in status(sim, ns)
    assert phase_counts(hf) == [0] * len(LABELS)

    wake_through_the_service(sim, ns)
    first = wait_for(lambda: status(sim, ns).get("lastColdStart"), timeout=15,
                     what="status.lastColdStart")
    check_cold_start(first)
    ev = wait_for(lambda: es_events(sim, ns, "ColdStart"), timeout=15, what="ColdStart Event")
    assert ev[0]["type"] == "Normal"
    assert re.fullmatch(r"cold start \d+\.\d s: scale \d+\.\d s, pod creation \d+\.\d s, "
                        r"scheduling \d+\.\d s, image pull and container start \d+\.\d s, "
                        r"readiness \d+\.\d s, first byte \d+\.\d s", ev[0]["message"]), ev[0]
    readiness = float(re.search(r"readiness (\d+\.\d) s", ev[0]["message"]).group(1))
    assert readiness >= 2.0, ev[0]["message"]
    scaled = wait_for(lambda: es_events(sim, ns, "ScaledUp"), timeout=5, what="ScaledUp")
    assert re.search(r"the scale call went \d+\.\d s after the first held request and was "
                     r"answered \d+\.\d s later", scaled[0]["message"]), scaled[0]
    assert phase_counts(hf) == KUBELET

    # a second wake replaces it
    sim.kubectl("scale", "-n", ns, "deployment/web", "--replicas=0")
    wait_mode(sim, ns, "proxy")
    wait_for(lambda: not pods(sim, ns), timeout=30, what="the pods gone")
    wait_for(lambda: resolver_slices(sim, ns), timeout=10, what="resolver slice")
    wake_through_the_service(sim, ns)
    second = wait_for(lambda: (status(sim, ns).get("lastColdStart") or {}).get("startedAt")
                      != first["startedAt"] and status(sim, ns)["lastColdStart"], timeout=15,
                      what="status.lastColdStart of the second wake")
    check_cold_start(second)
    assert second["startedAt"] > first["startedAt"], (first, second)
    wait_for(lambda: phase_counts(hf) == [2 * n for n in KUBELET], timeout=10,
             what="each phase observed twice")
    # wake_to_scale is observed for both wakes, also when a held connection reached the pod
    # before the scale call's answer was read (the data plane had forgotten the start by then)
    assert metric_value(hf.metrics_text(), "holdfast_wake_to_scale_seconds_count",
                        namespace=ns, service="web") == 2


def test_early_readiness_records_early_ready_then_first_byte_before_the_kubelets_ready(
        sim, ns, holdfast):
    slow_kubelet = [dict(SLOW_LISTENER[0], env=[{"name": "LISTEN_DELAY_MS", "value": "1000"}],
                         readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 10})]
    make_app(sim, ns, replicas=0, containers=slow_kubelet)
    hf = holdfast.start()
    create_es(sim, ns, elastiservice())  # earlyReadiness on: the default
    wait_mode(sim, ns, "proxy")
    wait_for(lambda: resolver_slices(sim, ns), timeout=10, what="resolver slice")
    wake_through_the_service(sim, ns)
    lc = wait_for(lambda: status(sim, ns).get("lastColdStart"), timeout=30,
                  what="status.lastColdStart")
    ph = lc["phases"]
    assert set(ph) == set(PHASES) | {"earlyReady"}, lc
    order = ["scaleSent", "scaleAnswered", "podCreated", "podScheduled", "containersStarted",
             "earlyReady", "firstByte", "ready"]
    at = [ph[p] for p in order]
    assert at == sorted(at), lc  # in the order they happened
    # the kubelet probes at the container's start (refused: not listening yet), then 10 s later
    assert ph["ready"] - ph["firstByte"] >= 5000, lc
    assert lc["totalMs"] == ph["firstByte"], lc  # what the held client waited
    ev = wait_for(lambda: es_events(sim, ns, "ColdStart"), timeout=15, what="ColdStart Event")
    assert re.search(r"readiness \d+\.\d s, first byte \d+\.\d s, then the kubelet's Ready "
                     r"\d+\.\d s$", ev[0]["message"]), ev[0]
    wait_for(lambda: phase_counts(hf) == [1] * len(LABELS), timeout=10,
             what="each phase observed once, early_ready among them")
