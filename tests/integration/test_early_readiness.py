"""Early readiness (issue 14, part 1) on the real control plane.

While an ElastiService in proxy mode holds connections, holdfast watches the target's pods and
runs each pod's own readinessProbe (httpGet, tcpSocket, grpc; startupProbe first,
initialDelaySeconds from the container's start, successThreshold passes) against the pod IP
every 50 ms. Held connections go to the first pod that passes, before the kubelet marks it
Ready; the ElastiService stays in proxy mode until the kubelet's Ready. exec probes, pods
without any readinessProbe, pods with readinessGates and `spec.earlyReadiness.enabled: false`
fall back to the kubelet's Ready.

The kubelet here is slow on purpose, so the two paths are seconds apart: the node agent runs a
readiness probe at the container's start and then once per periodSeconds, and the test app
(tests/hftest/apps/httpserver.py) listens 1 s after it starts, so the kubelet's first probe
fails and its Ready comes one period later: 60 s (never within the test) where a test only
needs the early answer, 5 s where it goes on to the switch to serve. Each early test reads the
pod's Ready condition and the ElastiService's mode right after the held request's answer: the
answer came first. The app's own clock (its X-Started-At, X-Listening-At and X-Answered-At
headers) shows that a startupProbe or initialDelaySeconds was waited for. Without early
readiness (main before issue 14) the held request waits for the kubelet: the early tests fail
there with "no answer within 20 s" or "answered only once the pod was Ready"; the fallback
tests' behaviour holds there and they fail at their metric.

The cluster fixtures are test_controller.py's (one cluster for this module).
"""
import subprocess

import pytest

from test_controller import (  # noqa: F401 - fixtures are used by name
    Background, create_es, elastiservice, holdfast, hold_still, http_get, make_app, metric_value,
    ns, pods, resolver_slices, service, sim, status, wait_mode, workload, wpath)
from hftest.kubeclient import ApiError, wait_for

KUBELET_NEVER = 60   # readiness periodSeconds where the kubelet's Ready must not come in the test
KUBELET_LATER = 5    # where it must come, 5 s after the container's start
LISTEN_MS = 1000     # the app listens this long after it starts
ANSWER_WITHIN = 20   # an early answer comes ~1 s after the container starts; the kubelet's 60 s later


def env(**kw):
    return [{"name": k, "value": str(v)} for k, v in kw.items()]


def http_probe(period, port=8080, path="/", headers=None, **more):
    get = {"path": path, "port": port}
    if headers:
        get["httpHeaders"] = [{"name": k, "value": v} for k, v in headers.items()]
    return dict({"httpGet": get, "periodSeconds": period}, **more)


def main_container(probe=None, listen_ms=LISTEN_MS, ports=None, **app_env):
    c = {"name": "main", "image": "test/http:1",
         "ports": ports or [{"containerPort": 8080, "name": "http"}],
         "env": env(LISTEN_DELAY_MS=listen_ms, **app_env)}
    if probe:
        c["readinessProbe"] = probe
    return c


def at_zero(sim, ns, containers, ports=(("http", 80, 8080),), pod_spec=None, **es_spec):
    """Deployment web at 0 with these containers (and pod spec fields), its Service, an
    ElastiService without triggers: proxy mode at once. Returns the Service's ClusterIP."""
    if pod_spec:
        w = workload("Deployment", "web", 0, containers=containers)
        w["spec"]["template"]["spec"].update(pod_spec)
        sim.create(wpath("Deployment", ns), w)
        sim.create("/api/v1/namespaces/%s/services" % ns, service("web", ports))
    else:
        make_app(sim, ns, replicas=0, ports=ports, containers=containers)
    create_es(sim, ns, elastiservice(**es_spec))
    wait_mode(sim, ns, "proxy")
    wait_for(lambda: resolver_slices(sim, ns), timeout=10, what="resolver slice")
    return sim.cluster_ip(ns, "web")


def the_pod(sim, ns):
    ps = pods(sim, ns)
    assert len(ps) == 1, [p["metadata"]["name"] for p in ps]
    return ps[0]


def pod_condition(pod, ctype):
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c.get("status")
    return None


class Held:
    """One GET through the Service's ClusterIP, sent now from a thread (held: the target is at
    zero); answer() waits for it, bounded, and reads the pod and the ElastiService at once."""

    def __init__(self, ip, path="/hello"):
        self.request = Background(ip, 80, path, timeout=120)

    def done(self):
        return not self.request.t.is_alive()

    def answer(self, sim, ns, within, waits_for):
        """(headers, pod, mode) of a 200 from the pod, the pod and status.mode read right after
        the answer. `waits_for` says what a missing answer means."""
        self.request.t.join(within)
        if not self.done():
            seen = [(p["metadata"]["name"], [(c["type"], c["status"]) for c in p["status"].get("conditions") or []])
                    for p in pods(sim, ns)]
            pytest.fail("the held request got no answer within %d s: it waits for %s; pods %s"
                        % (within, waits_for, seen), pytrace=False)
        pod, mode = the_pod(sim, ns), status(sim, ns).get("mode")
        code, headers, body = self.request.result(0)
        assert code == 200 and body.startswith("web-"), (code, headers, body)   # the pod answered
        return headers, pod, mode


def answered_early(sim, ns, held, waits_for="the kubelet's Ready (60 s away)"):
    """The held request's answer came from the pod while the kubelet had not marked it Ready
    and the ElastiService was still proxying. Returns the answer's headers."""
    headers, pod, mode = held.answer(sim, ns, ANSWER_WITHIN, waits_for)
    assert pod_condition(pod, "Ready") != "True", \
        "answered only once the pod was Ready: nothing went early (%s)" % pod["status"].get("conditions")
    assert mode == "proxy", "answered after the switch to serve (mode %s)" % mode
    return headers


def hf_metric(hf, name, **labels):
    return metric_value(hf.metrics_text(), name, **labels) or 0


# ---------------------------------------------------------------- early


def test_held_request_goes_to_a_pod_that_passed_its_http_probe_before_the_kubelet_marks_it_ready(
        sim, ns, holdfast):
    hf = holdfast.start()
    ip = at_zero(sim, ns, [main_container(http_probe(KUBELET_LATER))])
    assert hf_metric(hf, "holdfast_early_ready_pods_total") == 0
    held = Held(ip)
    answered_early(sim, ns, held, "the kubelet's Ready (%d s away)" % KUBELET_LATER)
    assert hf_metric(hf, "holdfast_early_ready_pods_total") == 1
    assert hf_metric(hf, "holdfast_early_probes_total", result="success") >= 1

    # the kubelet's Ready still switches to serve, as before
    wait_for(lambda: pod_condition(the_pod(sim, ns), "Ready") == "True", timeout=20,
             what="the kubelet's Ready")
    wait_mode(sim, ns, "serve")
    code, _, body = http_get(ip, 80, "/after")
    assert code == 200 and body.startswith("web-"), (code, body)

    # the cold start shows the early pass, before the kubelet's Ready
    lc = wait_for(lambda: status(sim, ns).get("lastColdStart"), timeout=15, what="status.lastColdStart")
    ph = lc["phases"]
    assert "earlyReady" in ph, lc
    assert ph["containersStarted"] <= ph["earlyReady"] <= ph["firstByte"], lc
    assert ph["earlyReady"] < ph["ready"], lc      # 4 s apart; ready is cut to whole seconds
    assert metric_value(hf.metrics_text(), "holdfast_cold_start_phase_seconds_count", phase="early_ready") == 1
    assert not hf_metric(hf, "holdfast_early_readiness_fallbacks_total")


def test_the_probes_own_port_path_and_headers_are_used(sim, ns, holdfast):
    """The probe is on a named container port other than the traffic port, on a path that
    answers 200 only with the probe's header; the traffic port answers that path 503. Only a
    probe that used all three could pass before the kubelet's Ready (60 s away)."""
    holdfast.start()
    probe = http_probe(KUBELET_NEVER, port="probe", path="/healthz",
                       headers={"X-Probe-Token": "early"})
    c = main_container(probe, ports=[{"containerPort": 8080, "name": "http"},
                                     {"containerPort": 9090, "name": "probe"}],
                       PROBE_PORT=9090, PROBE_PATH="/healthz", PROBE_HEADER="X-Probe-Token: early")
    ip = at_zero(sim, ns, [c], ports=(("http", 80, "http"),))    # targetPort by name
    held = Held(ip)
    headers = answered_early(sim, ns, held)
    # the probe port passed the probe (the kubelet's one probe so far came before the app listened)
    assert int(headers["x-probe-passes"]) >= 1, headers

    # the app is as described: without the header, or on the traffic port, the path fails
    pod_ip = the_pod(sim, ns)["status"]["podIP"]
    assert http_get(pod_ip, 9090, "/healthz")[0] == 503
    assert http_get(pod_ip, 8080, "/healthz")[0] == 503
    assert http_get(pod_ip, 9090, "/")[0] == 503


def test_https_probe_is_not_held_to_the_certificate(sim, ns, holdfast, tmp_path):
    """scheme HTTPS on a probe port with a self-signed certificate: the kubelet does not verify
    a probe's certificate, and neither may the early probe."""
    holdfast.start()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=web"],
                   check=True, capture_output=True, timeout=30)
    probe = http_probe(KUBELET_NEVER, port="probe", path="/healthz")
    probe["httpGet"]["scheme"] = "HTTPS"
    c = main_container(probe, ports=[{"containerPort": 8080, "name": "http"},
                                     {"containerPort": 9443, "name": "probe"}],
                       PROBE_PORT=9443, PROBE_PATH="/healthz", PROBE_TLS_CERT=cert, PROBE_TLS_KEY=key)
    ip = at_zero(sim, ns, [c])
    headers = answered_early(sim, ns, Held(ip))
    assert int(headers["x-probe-passes"]) >= 1, headers


def test_tcp_socket_probe(sim, ns, holdfast):
    hf = holdfast.start()
    ip = at_zero(sim, ns, [main_container({"tcpSocket": {"port": 8080}, "periodSeconds": KUBELET_NEVER})])
    answered_early(sim, ns, Held(ip))
    assert hf_metric(hf, "holdfast_early_ready_pods_total") == 1


def test_grpc_probe_with_its_service_name(sim, ns, holdfast):
    """The traffic container has no readinessProbe (passed once running); a second container
    serves the standard health service 1 s after it starts, for the one service name it knows:
    the pod passes when the grpc probe, service name included, does."""
    hf = holdfast.start()
    health = {"name": "health", "image": "test/grpc-health", "ports": [{"containerPort": 9090}],
              "env": env(LISTEN_DELAY_MS=LISTEN_MS, HEALTH_SERVICE="web.v1"),
              "readinessProbe": {"grpc": {"port": 9090, "service": "web.v1"}, "periodSeconds": KUBELET_NEVER}}
    ip = at_zero(sim, ns, [main_container(listen_ms=0), health])
    answered_early(sim, ns, Held(ip))
    assert hf_metric(hf, "holdfast_early_ready_pods_total") == 1


def test_startup_probe_passes_before_the_readiness_probe_counts(sim, ns, holdfast):
    """/started answers 503 for 2 s after the app listens, the readiness path at once: the
    answer cannot come before the startup probe could pass (the app's own clock)."""
    holdfast.start()
    c = main_container(http_probe(KUBELET_NEVER), STARTUP_AFTER_MS=2000)
    c["startupProbe"] = http_probe(KUBELET_NEVER, path="/started", failureThreshold=5)
    ip = at_zero(sim, ns, [c])
    headers = answered_early(sim, ns, Held(ip))
    waited = float(headers["x-answered-at"]) - float(headers["x-listening-at"])
    assert waited >= 2.0, "answered %.3f s after the app listened: before its startupProbe passed" % waited


def test_exec_startup_probe_waits_for_the_kubelets_started(sim, ns, holdfast, tmp_path):
    """An exec startupProbe cannot be run from outside: the readiness probe (which passes as
    soon as the app listens) counts only once the kubelet says started: true."""
    holdfast.start()
    started = tmp_path / "started"
    c = main_container(http_probe(KUBELET_NEVER))
    c["startupProbe"] = {"exec": {"command": ["/usr/bin/test", "-e", str(started)]},
                         "periodSeconds": 1, "failureThreshold": 60}
    ip = at_zero(sim, ns, [c])
    held = Held(ip)
    pod_ip = wait_for(lambda: (the_pod(sim, ns).get("status") or {}).get("podIP"), timeout=20, what="pod IP")
    wait_for(lambda: http_get(pod_ip, 8080, "/", timeout=2, connect_retry=0)[0] == 200, timeout=20,
             what="the app listening")
    # listening, its readiness path answering 200: an early pass would be 50 ms away
    hold_still(1.5, lambda: not held.done(), "answered before the kubelet's startup probe passed")
    assert not (the_pod(sim, ns)["status"]["containerStatuses"][0]).get("started")
    started.write_text("")
    headers, pod, _ = held.answer(sim, ns, ANSWER_WITHIN, "the kubelet's startup probe (1 s period)")
    assert pod["status"]["containerStatuses"][0].get("started") is True, pod["status"]


def test_initial_delay_seconds_counts_from_the_containers_start(sim, ns, holdfast):
    """initialDelaySeconds 3 on a probe that passes from 1 s on; successThreshold 2 keeps the
    kubelet's Ready 60 s later (its probes at 3 s and 63 s), early passes need 3 s + 50 ms. The
    app's process starts a little after its container (up to 0.5 s allowed for that)."""
    holdfast.start()
    ip = at_zero(sim, ns, [main_container(http_probe(KUBELET_NEVER, initialDelaySeconds=3, successThreshold=2))])
    headers = answered_early(sim, ns, Held(ip))
    since_start = float(headers["x-answered-at"]) - float(headers["x-started-at"])
    assert since_start >= 2.5, "answered %.3f s after the app started: before initialDelaySeconds (3)" % since_start


# ---------------------------------------------------------------- fallbacks


def exec_sidecar():
    return {"name": "side", "image": "test/sleep", "args": ["3600"],
            "readinessProbe": {"exec": {"command": ["/bin/true"]}, "periodSeconds": KUBELET_LATER}}


@pytest.mark.parametrize("case,reason", [
    ("disabled", "disabled"),
    ("exec", "exec"),
    ("no-probe", "no_probe"),
], ids=["disabled", "exec-in-one-container", "no-readiness-probe"])
def test_falls_back_to_the_kubelets_ready(sim, ns, holdfast, case, reason):
    """The answer comes only once the kubelet marked the pod Ready (read right after it), and
    the fallback is counted with its reason. An httpGet probe that early readiness could run
    passes 4 s before the kubelet's Ready in the first two cases."""
    hf = holdfast.start()
    spec = {}
    if case == "disabled":
        containers = [main_container(http_probe(KUBELET_LATER))]
        spec["earlyReadiness"] = {"enabled": False}
    elif case == "exec":                  # any container with an exec probe: the whole pod waits
        containers = [main_container(http_probe(KUBELET_LATER)), exec_sidecar()]
    else:
        containers = [main_container()]
    ip = at_zero(sim, ns, containers, **spec)
    _, pod, _ = Held(ip).answer(sim, ns, 30, "the kubelet's Ready")
    assert pod_condition(pod, "Ready") == "True", \
        "answered before the kubelet's Ready: it went early (%s)" % pod["status"].get("conditions")
    assert hf_metric(hf, "holdfast_early_ready_pods_total") == 0
    assert hf_metric(hf, "holdfast_early_readiness_fallbacks_total", reason=reason) >= 1, \
        "no fallback counted with reason %s" % reason


def test_readiness_gates_wait_for_the_pods_ready(sim, ns, holdfast):
    """A pod with readinessGates is Ready only once something else sets the gate's condition:
    its containers' probes passing (ContainersReady) are not enough, early or not."""
    hf = holdfast.start()
    gate = "example.com/load-balancer-attached"
    ip = at_zero(sim, ns, [main_container(http_probe(1))], pod_spec={"readinessGates": [{"conditionType": gate}]})
    held = Held(ip)
    wait_for(lambda: pod_condition(the_pod(sim, ns), "ContainersReady") == "True", timeout=20,
             what="ContainersReady")
    # the probe passes (the kubelet's too): early readiness would have answered by now
    hold_still(1.0, lambda: not held.done(), "answered while the pod's readiness gate was not set")
    pod = the_pod(sim, ns)
    assert pod_condition(pod, "Ready") == "False", pod["status"]["conditions"]
    sim.patch("/api/v1/namespaces/%s/pods/%s/status" % (ns, pod["metadata"]["name"]),
              {"status": {"conditions": [{"type": gate, "status": "True"}]}}, kind="strategic")
    _, pod, _ = held.answer(sim, ns, ANSWER_WITHIN, "the pod's Ready once its gate is set")
    assert pod_condition(pod, "Ready") == "True", pod["status"]["conditions"]
    assert hf_metric(hf, "holdfast_early_ready_pods_total") == 0
    assert hf_metric(hf, "holdfast_early_readiness_fallbacks_total", reason="readiness_gates") >= 1


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("value,field", [
    ({"enabled": "yes"}, "spec.earlyReadiness.enabled"),
    (True, "spec.earlyReadiness"),
], ids=["enabled-string", "not-an-object"])
def test_wrong_types_are_refused_by_the_api_server(sim, ns, value, field):
    with pytest.raises(ApiError) as e:
        create_es(sim, ns, elastiservice(earlyReadiness=value))
    assert e.value.code == 422 and field in str(e.value.body), e.value.body
