"""Data-path probes: a request with `Holdfast-Probe: <nonce>` is answered by holdfast itself (204,
the nonce echoed, connection closed) on every HTTP listener and in every state, is never held,
forwarded, matched against probeResponse rules or counted as a request, and wakes nothing. The
leader sends it through a Service's ClusterIP before it removes the last replica
(controller/pathprobe.h): only holdfast's echo of its nonce says kube-proxy routes the Service to
a resolver.

The last tests run tests/tools/pathprobe_send (directory from HOLDFAST_TOOLS_DIR, default
tests/tools beside $HOLDFAST_BIN, else <repo>/build/tests/tools): the leader's client, against
holdfast and against things that are not holdfast. It prints one JSON line per probe:
{"nonce", "result": pathprobe_result_name, "status", "detail"}.
"""
import json
import os
import socket
import struct
import subprocess
import time

import pytest

from hftest import REPO
from hftest.http1 import Reader, connect, http_get
from hftest.kubeclient import wait_for
from hflib import service

_BUILD = (os.path.dirname(os.environ["HOLDFAST_BIN"]) if os.environ.get("HOLDFAST_BIN")
          else os.path.join(REPO, "build"))
TOOLS = os.environ.get("HOLDFAST_TOOLS_DIR", os.path.join(_BUILD, "tests", "tools"))
SEND = os.path.join(TOOLS, "pathprobe_send")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

CLUSTER_IP_HOST = "10.96.0.10:80"  # what the leader writes in Host: the ClusterIP and port
OUTCOMES = ("forwarded", "probe", "timeout", "rejected", "cancelled", "bad_request",
            "upstream_error")
CATCH_ALL = [{"method": "GET", "response": {"status": 200, "body": '{"rule":"every GET"}'}}]


def probe_bytes(nonce, host=CLUSTER_IP_HOST, extra=""):
    """The request the leader sends, byte for byte."""
    return (f"GET / HTTP/1.1\r\nHost: {host}\r\nHoldfast-Probe: {nonce}\r\n{extra}"
            "Connection: close\r\n\r\n").encode()


def exchange(addr, raw, pause=0.0):
    """Sends raw in one write (after `pause` seconds connected); returns (response, closed)."""
    with connect(addr, timeout=15) as s:
        if pause:
            time.sleep(pause)
        s.sendall(raw)
        reader = Reader(s)
        r = reader.read_response()
        return r, reader.at_eof(timeout=5)


def assert_probe_answer(r, closed, nonce):
    assert r.status == 204, r
    assert r.reason == "No Content"
    assert r.headers.get("holdfast-probe") == nonce, r
    assert r.headers.get("connection") == "close"
    assert r.body == b""
    assert closed, "holdfast closes the connection after its answer"


def request_totals(hf, name):
    return {o: hf.metric("holdfast_requests_total", service=name, outcome=o) for o in OUTCOMES}


def backend_requests(log):
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def probes_seen(log):
    return [r for r in backend_requests(log) if "holdfast-probe" in r["headers"]]


def _listening(addr):
    """True when a socket listens on addr (IPv4), read from /proc/net/tcp."""
    want = "%08X:%04X" % (struct.unpack("<I", socket.inet_aton(addr[0]))[0], addr[1])
    with open("/proc/net/tcp") as f:
        return any(line.split()[1] == want and line.split()[3] == "0A" for line in list(f)[1:])


@pytest.fixture
def running_backend(backend_cmd):
    """Starts helper backends before holdfast (so their service is ready from the start)."""
    procs = []

    def start(addr, name, *extra, wait_listening=True):
        p = subprocess.Popen(backend_cmd("http", addr, name, *extra),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        if wait_listening:
            wait_for(lambda: _listening(addr), what=f"backend {name} listening")
        return p

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


def ready_service(holdfast, addrs, running_backend, tmp_path, name="web", **extra):
    """A service whose backend runs (and logs every request head) before holdfast starts."""
    listen, back = addrs.listener(), addrs.backend()
    log = tmp_path / f"{name}-requests.jsonl"
    running_backend(back, name, "--request-log", log)
    shared = addrs.listener()
    hf = holdfast.start({"services": [service(name, [listen], [back], **extra)],
                         "shared": {"listen": [f"{shared[0]}:{shared[1]}"]}})
    wait_for(lambda: hf.metric("holdfast_backends_ready", service=name) == 1,
             what="backend ready")
    return hf, listen, shared, log


# ---- the data plane answers the probe ----

def test_probe_at_zero_is_answered_with_its_nonce_and_wakes_nothing(
        holdfast, addrs, backend_cmd, tmp_path):
    listen, back = addrs.listener(), addrs.backend()
    wakes = tmp_path / "wakes"
    hf = holdfast.start({"services": [service(
        "zero", [listen], [back], backend_cmd("http", back, "never", wake_file=wakes),
        probeResponse=CATCH_ALL)]})
    nonces = ["a", "0f3c9e2b7d41a8c6e5b09d1f2a3c4b5d", "Z-_-z", "x" * 64]
    for nonce in nonces:
        assert_probe_answer(*exchange(listen, probe_bytes(nonce)), nonce)
    # Any method; the field name in any case; a body is not waited for.
    assert_probe_answer(*exchange(
        listen, b"POST /anything HTTP/1.1\r\nHost: h\r\nholdfast-PROBE: post-1\r\n"
                b"Content-Length: 3\r\n\r\nabc"), "post-1")
    assert_probe_answer(*exchange(
        listen, b"HEAD / HTTP/1.0\r\nHoldfast-Probe: head-1\r\n\r\n"), "head-1")
    # The catch-all probeResponse rule answers every other GET: probes never reach it.
    r = http_get(listen, "/")
    assert (r.status, r.json()) == (200, {"rule": "every GET"})
    n = len(nonces) + 2
    assert hf.metric("holdfast_datapath_probes_total") == n
    totals = request_totals(hf, "zero")
    assert totals == dict({o: 0 for o in OUTCOMES}, probe=1), "only the rule's answer counts"
    assert hf.metric("holdfast_wakes_total", service="zero") == 0
    assert hf.metric("holdfast_held_connections", service="zero") == 0
    assert hf.metric("holdfast_hold_duration_seconds_count", service="zero") == 0
    assert hf.log_lines("wake command started") == []
    assert not wakes.exists()


def test_probe_on_the_shared_port_is_answered_whatever_the_host(
        holdfast, addrs, backend_cmd, tmp_path):
    listen, back, shared = addrs.listener(), addrs.backend(), addrs.listener()
    wakes = tmp_path / "wakes"
    hf = holdfast.start({
        "services": [service("shop", [listen], [back],
                             backend_cmd("http", back, "never", wake_file=wakes))],
        "shared": {"listen": [f"{shared[0]}:{shared[1]}"]}})
    # A ClusterIP Host names no service: still answered, not 404.
    assert_probe_answer(*exchange(shared, probe_bytes("unknown-host")), "unknown-host")
    # A Host that names the service (at zero): answered, not held.
    assert_probe_answer(*exchange(shared, probe_bytes("known-host", host="shop.default")),
                        "known-host")
    assert hf.metric("holdfast_datapath_probes_total") == 2
    assert hf.metric("holdfast_unknown_host_total") == 0
    assert hf.metric("holdfast_wakes_total", service="shop") == 0
    assert sum(request_totals(hf, "shop").values()) == 0
    assert not wakes.exists()


def test_probe_while_ready_is_answered_and_never_reaches_the_backend(
        holdfast, addrs, running_backend, tmp_path):
    hf, listen, shared, log = ready_service(holdfast, addrs, running_backend, tmp_path)
    # Connections to a ready service are relayed unparsed: the probe sent at once (its bytes
    # race the backend connect), and after the connection to the backend is up.
    for i in range(6):
        nonce = f"ready-{i}"
        assert_probe_answer(*exchange(listen, probe_bytes(nonce), pause=0.3 if i % 2 else 0),
                            nonce)
    # On the shared port, with a Host that names the ready service.
    assert_probe_answer(*exchange(shared, probe_bytes("shared-ready", host="web.default")),
                        "shared-ready")
    # An ordinary request on the same listener right after reaches the backend.
    r = http_get(listen, "/after")
    assert r.status == 200 and r.headers.get("x-backend") == "web", r
    assert r.json()["path"] == "/after"
    assert probes_seen(log) == []
    assert [q["path"] for q in backend_requests(log)] == ["/after"]
    assert hf.metric("holdfast_datapath_probes_total") == 7
    totals = request_totals(hf, "web")
    assert totals == dict({o: 0 for o in OUTCOMES}, forwarded=1), totals
    assert hf.metric("holdfast_wakes_total", service="web") == 0


def test_keepalive_requests_then_a_probe_on_a_relayed_connection_are_all_relayed(
        holdfast, addrs, running_backend, tmp_path):
    # Only a connection's first request is looked at: once it is an ordinary one, the
    # connection is the backend's, whatever comes after on it.
    hf, listen, _, log = ready_service(holdfast, addrs, running_backend, tmp_path)
    with connect(listen) as s:
        reader = Reader(s)
        s.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reader.read_response().headers.get("x-backend") == "web"
        s.sendall(probe_bytes("second"))
        r = reader.read_response()
    assert r.status == 200 and r.headers.get("x-backend") == "web", r
    assert [q["path"] for q in backend_requests(log)] == ["/first", "/"]
    assert hf.metric("holdfast_datapath_probes_total") == 0


def test_a_probe_field_past_the_first_2_kib_of_a_relayed_connection_is_relayed(
        holdfast, addrs, running_backend, tmp_path):
    # The unparsed relay looks at the first 2 KiB only (the leader's head is under 300 bytes):
    # past that, the request is an ordinary one, relayed.
    hf, listen, _, log = ready_service(holdfast, addrs, running_backend, tmp_path)
    padding = "X-Padding: " + "p" * 2100 + "\r\n"
    far = (f"GET / HTTP/1.1\r\nHost: h\r\n{padding}Holdfast-Probe: far\r\n"
           "Connection: close\r\n\r\n").encode()
    r, _ = exchange(listen, far)
    assert r.status == 200 and r.headers.get("x-backend") == "web", r
    assert [q["headers"].get("holdfast-probe") for q in probes_seen(log)] == ["far"]
    assert hf.metric("holdfast_datapath_probes_total") == 0


def test_probe_held_after_a_refused_connect_is_answered_and_not_counted_held(
        holdfast, addrs, running_backend, tmp_path):
    # The backend passes its readiness probe, then refuses connections for a while: a
    # connection accepted meanwhile was taken as ready, its connect failed and it waits for a
    # backend (held) when the probe's bytes come. They are answered, not relayed later.
    listen, back = addrs.listener(), addrs.backend()
    log = tmp_path / "requests.jsonl"
    running_backend(back, "refuser", "--refuse-after-first", 4, "--request-log", log)
    hf = holdfast.start({"services": [service(
        "svc", [listen], [back], readiness={"tcp": {}}, readinessPeriodMs=50)]})
    wait_for(lambda: hf.metric("holdfast_backends_ready", service="svc") == 1,
             what="backend ready")
    wait_for(lambda: not _listening(back), what="backend refusing")
    assert_probe_answer(*exchange(listen, probe_bytes("after-refusal"), pause=0.3),
                        "after-refusal")
    assert hf.metric("holdfast_upstream_connect_retries_total", service="svc") >= 1
    assert hf.metric("holdfast_datapath_probes_total") == 1
    assert hf.metric("holdfast_held_connections", service="svc") == 0
    assert hf.metric("holdfast_held_bytes", service="svc") == 0
    assert hf.metric("holdfast_hold_duration_seconds_count", service="svc") == 0
    assert sum(request_totals(hf, "svc").values()) == 0
    # Once it accepts again, ordinary requests reach it; the probe never does.
    wait_for(lambda: _listening(back), timeout=20, what="backend accepting again")
    r = http_get(listen, "/later")
    assert r.status == 200 and r.headers.get("x-backend") == "refuser", r
    assert probes_seen(log) == []


INVALID = [
    ("GET / HTTP/1.1\r\nHost: h\r\nHoldfast-Probe:\r\nConnection: close\r\n\r\n", "nonce"),
    ("GET / HTTP/1.1\r\nHost: h\r\nHoldfast-Probe: " + "x" * 65 + "\r\n\r\n", "nonce"),
    ("GET / HTTP/1.1\r\nHost: h\r\nHoldfast-Probe: two words\r\n\r\n", "nonce"),
    ("GET / HTTP/1.1\r\nHost: h\r\nHoldfast-Probe: a/b\r\n\r\n", "nonce"),
    ("GET / HTTP/1.1\r\nHost: h\r\nHoldfast-Probe: caf\xc3\xa9\r\n\r\n", "nonce"),
    ("GET / HTTP/1.1\r\nHost: h\r\nHoldfast-Probe: a\r\nholdfast-probe: a\r\n\r\n", "repeated"),
]


def assert_invalid_probes_refused(hf, addr, counter_labels):
    for raw, why in INVALID:
        r, closed = exchange(addr, raw.encode("latin-1"))
        assert r.status == 400, (raw, r)
        body = r.json()
        assert body["error"] == "bad request"
        assert "Holdfast-Probe" in body["reason"] and why in body["reason"], (raw, body)
        assert "holdfast-probe" not in r.headers
        assert closed
    assert hf.metric("holdfast_datapath_probes_total") == 0
    if counter_labels:
        assert hf.metric("holdfast_requests_total", outcome="bad_request",
                         **counter_labels) == len(INVALID)


def test_invalid_nonces_at_zero_get_400_and_wake_nothing(holdfast, addrs, backend_cmd, tmp_path):
    listen, back, shared = addrs.listener(), addrs.backend(), addrs.listener()
    wakes = tmp_path / "wakes"
    hf = holdfast.start({
        "services": [service("zero", [listen], [back],
                             backend_cmd("http", back, "never", wake_file=wakes))],
        "shared": {"listen": [f"{shared[0]}:{shared[1]}"]}})
    assert_invalid_probes_refused(hf, listen, {"service": "zero"})
    assert_invalid_probes_refused(hf, shared, None)
    assert hf.metric("holdfast_bad_requests_unrouted_total") == len(INVALID)
    assert hf.metric("holdfast_wakes_total", service="zero") == 0
    assert not wakes.exists()


def test_invalid_nonces_while_ready_get_400_and_never_reach_the_backend(
        holdfast, addrs, running_backend, tmp_path):
    hf, listen, _, log = ready_service(holdfast, addrs, running_backend, tmp_path)
    assert_invalid_probes_refused(hf, listen, {"service": "web"})
    assert backend_requests(log) == []
    assert hf.metric("holdfast_requests_total", service="web", outcome="forwarded") == 0


def test_tcp_ports_are_not_probed_the_request_is_relayed(
        holdfast, addrs, running_backend, tmp_path):
    hf, listen, _, log = ready_service(holdfast, addrs, running_backend, tmp_path,
                                       protocol="tcp")
    r, _ = exchange(listen, probe_bytes("opaque"))
    assert r.status == 200 and r.headers.get("x-backend") == "web", r
    assert "holdfast-probe" not in r.headers
    assert [q["headers"].get("holdfast-probe") for q in probes_seen(log)] == ["opaque"]
    assert hf.metric("holdfast_datapath_probes_total") == 0


# ---- the leader's client (controller/pathprobe) ----

def send_probes(ip, port, *args, timeout=30):
    if not os.path.exists(SEND):
        pytest.fail("%s is missing: build it (ninja -C build) or set HOLDFAST_TOOLS_DIR" % SEND)
    # A proxy that refuses, in every variable curl reads: the probe must not use it.
    env = dict(os.environ, http_proxy="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9",
               ALL_PROXY="http://127.0.0.1:9", all_proxy="http://127.0.0.1:9", no_proxy="",
               NO_PROXY="")
    out = subprocess.run([SEND, ip, str(port)] + [str(a) for a in args], capture_output=True,
                         text=True, timeout=timeout, env=env)
    if any(m in out.stderr for m in SANITIZER_MARKERS):
        pytest.fail("sanitizer report from pathprobe_send:\n" + out.stderr)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    return out.returncode, lines


def test_client_gets_holdfast_from_the_data_plane_at_zero_ready_and_on_the_shared_port(
        holdfast, addrs, running_backend, tmp_path):
    hf, listen, shared, log = ready_service(holdfast, addrs, running_backend, tmp_path)
    # Ready: twenty at once, each with its own fresh nonce.
    rc, answers = send_probes(*listen, "--count", 20)
    assert rc == 0 and len(answers) == 20
    assert {a["result"] for a in answers} == {"Holdfast"}, answers
    assert {a["status"] for a in answers} == {204}
    assert len({a["nonce"] for a in answers}) == 20
    rc, answers = send_probes(*shared, "--nonce", "via-shared")
    assert rc == 0 and answers[0]["result"] == "Holdfast", answers
    assert probes_seen(log) == []
    assert hf.metric("holdfast_datapath_probes_total") == 21
    assert hf.metric("holdfast_requests_total", service="web", outcome="forwarded") == 0


def test_client_at_zero_gets_holdfast_and_wakes_nothing(holdfast, addrs, backend_cmd, tmp_path):
    listen, back = addrs.listener(), addrs.backend()
    wakes = tmp_path / "wakes"
    hf = holdfast.start({"services": [service(
        "zero", [listen], [back], backend_cmd("http", back, "never", wake_file=wakes))]})
    rc, answers = send_probes(*listen)
    assert rc == 0 and answers[0]["result"] == "Holdfast", answers
    assert f"{listen[0]}:{listen[1]} answered HTTP 204" in answers[0]["detail"]
    assert hf.metric("holdfast_wakes_total", service="zero") == 0
    assert not wakes.exists()


def test_client_tells_a_pod_a_refused_port_and_a_silent_one_from_holdfast(
        addrs, running_backend):
    # The pod (no holdfast in the path): an ordinary answer, without the echo.
    back = addrs.backend()
    running_backend(back, "pod")
    rc, answers = send_probes(*back)
    assert rc == 0
    assert (answers[0]["result"], answers[0]["status"]) == ("OtherAnswer", 200), answers
    assert "without a Holdfast-Probe field" in answers[0]["detail"]
    # Nobody listens: refused.
    closed = addrs.backend()
    rc, answers = send_probes(*closed)
    assert answers[0]["result"] == "Refused", answers
    # Accepted by the kernel, never answered: the deadline ends it.
    with socket.socket() as silent:
        silent.bind(addrs.backend())
        silent.listen(8)
        rc, answers = send_probes(*silent.getsockname(), "--timeout-ms", 300)
    assert answers[0]["result"] == "Timeout", answers
    # An invalid nonce is refused before anything is sent.
    rc, answers = send_probes(*back, "--nonce", "not valid")
    assert rc == 3 and answers[0]["result"] == "NotStarted"
