"""probeResponse: while a service is stopped, requests matching a rule are answered by holdfast
itself (load-balancer health checks) and never wake it; everything else is held and woken."""
import json

from hftest.http1 import Reader, connect, get_request, http_exchange, http_get
from hftest.kubeclient import wait_for
from hflib import service

JSON_TYPE = "application/json; charset=utf-8"

RULES = [
    {"method": "GET", "path": {"type": "Exact", "value": "/ready"},
     "response": {"status": 401, "body": '{"rule":"exact"}'}},
    {"path": {"type": "PathPrefix", "value": "/health"},
     "response": {"body": '{"rule":"prefix"}'}},
    {"path": {"type": "RegularExpression", "value": "^/v[0-9]+/ping$"},
     "response": {"status": 403, "body": '{"rule":"regex"}'}},
    {"headers": [{"name": "X-LB-Check", "value": "yes"}],
     "response": {"body": '{"rule":"header"}'}},
    {"headers": [{"name": "User-Agent", "value": "^kube-probe/1\\.", "type": "RegularExpression"}],
     "response": {"body": '{"rule":"header-regex"}'}},
    {"queryParams": [{"name": "probe", "value": "a b"}],
     "response": {"body": '{"rule":"query"}'}},
    {"method": "HEAD", "path": {"type": "Exact", "value": "/head-only"},
     "response": {"status": 204}},
    {"method": "OPTIONS", "response": {"body": '{"rule":"options"}'}},
]

# (request line target, method, extra headers) -> (status, rule)
MATCHING = [
    ("GET", "/ready", "", 401, "exact"),
    ("GET", "/health", "", 200, "prefix"),  # omitted status is 200
    ("POST", "/health/live/x?y=1", "Content-Length: 3\r\n", 200, "prefix"),  # any method
    ("GET", "/v2/ping", "", 403, "regex"),
    ("GET", "/v%32/ping", "", 403, "regex"),  # matched on the percent-decoded path
    ("DELETE", "/anything/at/all", "x-lb-check: yes\r\n", 200, "header"),  # names case-insens.
    ("GET", "/", "User-Agent: kube-probe/1.29\r\n", 200, "header-regex"),
    ("GET", "/x?probe=a%20b", "", 200, "query"),  # query parameters decoded
    ("GET", "/x?other=1&probe=a+b", "", 200, "query"),
    ("OPTIONS", "/deep/path/of/any/kind", "", 200, "options"),  # omitted path matches all
]


def probed_service(listen, back, wake, name="probed", **extra):
    return service(name, [listen], [back], wake, probeResponse=RULES, **extra)


def request_bytes(method, target, extra, keep_alive=True):
    body = b"abc" if "Content-Length: 3" in extra else b""
    conn = "" if keep_alive else "Connection: close\r\n"
    return f"{method} {target} HTTP/1.1\r\nHost: lb\r\n{extra}{conn}\r\n".encode() + body


def test_probe_rules_answer_matching_requests_locally_and_never_wake(
        holdfast, addrs, backend_cmd, tmp_path):
    listen, back = addrs.listener(), addrs.backend()
    wakes = tmp_path / "wakes"
    hf = holdfast.start({"services": [probed_service(
        listen, back, backend_cmd("http", back, "never", wake_file=wakes))]})
    # One connection per request...
    for method, target, extra, status, rule in MATCHING:
        r = http_exchange(listen, request_bytes(method, target, extra, keep_alive=False))
        assert r.status == status, (method, target, r)
        assert r.headers["content-type"] == JSON_TYPE
        assert json.loads(r.body) == {"rule": rule}, (method, target, r)
    # ... and all of them again on one keep-alive connection: probe answers keep it open.
    with connect(listen) as s:
        reader = Reader(s)
        for method, target, extra, status, rule in MATCHING:
            s.sendall(request_bytes(method, target, extra))
            r = reader.read_response()
            assert (r.status, json.loads(r.body)) == (status, {"rule": rule}), (target, r)
        # HEAD: the rule's status, no body; default body is empty.
        s.sendall(b"HEAD /head-only HTTP/1.1\r\nHost: lb\r\n\r\n")
        r = reader.read_response(head_request=True)
        assert r.status == 204 and r.body == b""
    n = 2 * len(MATCHING) + 1
    assert hf.metric("holdfast_requests_total", service="probed", outcome="probe") == n
    assert hf.metric("holdfast_wakes_total", service="probed") == 0
    assert hf.log_lines("wake command started") == []
    assert not wakes.exists()


def test_requests_that_no_probe_rule_matches_are_held_and_answered_by_backend(
        holdfast, addrs, backend_cmd):
    listen, back = addrs.listener(), addrs.backend()
    hf = holdfast.start({"services": [probed_service(
        listen, back, backend_cmd("http", back, "woken"))]})
    near_misses = [
        ("GET", "/healthz", ""),  # PathPrefix is segment-wise
        ("GET", "/ready/", ""),  # Exact is exact
        ("POST", "/ready", "Content-Length: 3\r\n"),  # the Exact rule is GET only
        ("GET", "/v2/ping/x", ""),  # the regular expression is anchored by the rule
        ("GET", "/x?probe=ab", ""),
        ("GET", "/x", "X-LB-Check: no\r\n"),
        ("HEAD", "/head-only/x", ""),
    ]
    for method, target, extra in near_misses:
        r = http_exchange(listen, request_bytes(method, target, extra, keep_alive=False),
                          head_request=method == "HEAD")
        assert r.status == 200, (target, r)
        assert r.headers.get("x-backend") == "woken", (method, target, r)
    assert len(hf.log_lines("wake command started")) == 1
    assert hf.metric("holdfast_requests_total", service="probed", outcome="probe") == 0


def test_hostile_regular_expression_counts_as_no_match_and_worker_stays_responsive(
        holdfast, addrs, backend_cmd, tmp_path):
    listen, back = addrs.listener(), addrs.backend()
    gate = tmp_path / "gate"
    rules = [
        {"headers": [{"name": "X-Hostile", "value": "(a+)+$", "type": "RegularExpression"}],
         "response": {"body": '{"rule":"hostile"}'}},
        {"path": {"type": "Exact", "value": "/ping"}, "response": {"body": '{"rule":"ping"}'}},
    ]
    hf = holdfast.start({"services": [service(
        "hostile", [listen], [back], backend_cmd("http", back, "patient", gate=gate),
        probeResponse=rules)]}, workers=1)
    hostile = "X-Hostile: " + "a" * 20000 + "!\r\n"
    with connect(listen, timeout=60) as held:
        # No match (the search gives up or fails): the request is held and a wake is queued.
        held.sendall(get_request("/", extra=hostile))
        wait_for(lambda: hf.metric("holdfast_held_connections", service="hostile") == 1,
                 what="the hostile request to be held")
        assert len(hf.log_lines("wake command started")) == 1
        # The only worker is not stalled: the same hostile header on /ping falls through to
        # the next rule, answered at once, several times.
        for _ in range(3):
            r = http_get(listen, "/ping", extra=hostile, timeout=30)
            assert (r.status, r.json()) == (200, {"rule": "ping"})
        assert hf.admin_get("/healthz")[0] == 200
        gate.write_text("go")
        r = Reader(held).read_response()
        assert r.status == 200 and r.json()["backend"] == "patient", r
    # PCRE2 gave up on its match limit: logged once for the rule, not once per request.
    gave_up = hf.log_lines("probeResponse regular expression gave up on a request, counted as "
                           "no match (logged once per rule)")
    assert len(gave_up) == 1
    assert gave_up[0]["regex"] == "services[0].probeResponse[0].headers[0].value"


def test_pathological_path_regex_stops_within_its_budget_so_one_worker_keeps_answering_probes(
        holdfast, addrs, backend_cmd, tmp_path):
    # Issue 9: (\w+\s?)+$ searched from every start position of a long path that it cannot
    # match costs the square of the path's length: on one worker, four such requests, each
    # tried by 31 rules, kept every other client waiting for tens of seconds.
    listen, back = addrs.listener(), addrs.backend()
    gate = tmp_path / "gate"
    words = {"path": {"type": "RegularExpression", "value": r"(\w+\s?)+$"},
             "response": {"body": '{"rule":"words"}'}}
    ping = {"path": {"type": "Exact", "value": "/ping"}, "response": {"body": '{"rule":"ping"}'}}
    hf = holdfast.start({"services": [service(
        "pathological", [listen], [back], backend_cmd("http", back, "patient", gate=gate),
        probeResponse=[ping] + [words] * 31)]}, workers=1)
    target = "/" + "a%20" * 8000 + "!"
    held = [connect(listen, timeout=60) for _ in range(4)]
    try:
        for s in held:
            s.sendall(get_request(target))
        # The only worker answers a trivial probe meanwhile (a bounded wait, like every wait
        # here: before the budget it came after about 25 s of matching).
        r = http_get(listen, "/ping", timeout=10)
        assert (r.status, r.json()) == (200, {"rule": "ping"})
        # Each pathological request gave up once (all its rules share one budget), counts
        # as no match, and is held normally: a wake, then the backend's answer.
        wait_for(lambda: hf.metric("holdfast_held_connections", service="pathological") == 4,
                 what="the four pathological requests to be held")
        assert hf.metric("holdfast_probe_regex_limit_total") == 4
        assert hf.metric("holdfast_requests_total", service="pathological", outcome="probe") == 1
        gate.write_text("go")
        for s in held:
            r = Reader(s).read_response()
            assert r.status == 200 and r.json()["backend"] == "patient", r
            assert r.json()["path"] == target
    finally:
        for s in held:
            s.close()
    gave_up = hf.log_lines("probeResponse regular expression gave up on a request, counted as "
                           "no match (logged once per rule)")
    assert [l["regex"] for l in gave_up] == ["services[0].probeResponse[1].path.value"]


def test_probe_answers_and_held_requests_mixed_on_one_connection_stay_in_order(
        holdfast, addrs, backend_cmd):
    listen, back = addrs.listener(), addrs.backend()
    listen2, back2 = addrs.listener(), addrs.backend()
    hf = holdfast.start({"services": [
        probed_service(listen, back, backend_cmd("http", back, "mixed")),
        probed_service(listen2, back2, backend_cmd("http", back2, "mixed2"), name="probed2"),
    ]})
    with connect(listen) as s:
        reader = Reader(s)
        # Pipelined: a probe (with a body), then a request for the backend.
        s.sendall(request_bytes("POST", "/health", "Content-Length: 3\r\n") +
                  request_bytes("GET", "/after-probe", ""))
        r = reader.read_response()
        assert (r.status, json.loads(r.body)) == (200, {"rule": "prefix"}), r
        r = reader.read_response()
        assert r.status == 200 and r.json()["path"] == "/after-probe", r
        assert r.json()["conn_seq"] == 1  # the probe's bytes never reached the backend
        # Once relayed, the connection is the backend's: even a probe path goes there.
        s.sendall(request_bytes("GET", "/health", ""))
        r = reader.read_response()
        assert r.status == 200 and r.json()["path"] == "/health" and r.json()["conn_seq"] == 2
    with connect(listen2) as s:
        reader = Reader(s)
        # A probe answered, then (after its answer was read) a request held on the same
        # keep-alive connection.
        s.sendall(request_bytes("GET", "/ready", ""))
        r = reader.read_response()
        assert (r.status, json.loads(r.body)) == (401, {"rule": "exact"}), r
        s.sendall(request_bytes("GET", "/later", ""))
        r = reader.read_response()
        assert r.status == 200 and r.json()["backend"] == "mixed2", r
        assert (r.json()["path"], r.json()["conn_seq"]) == ("/later", 1)
    assert len(hf.log_lines("wake command started", service="default/probed")) == 1
    assert len(hf.log_lines("wake command started", service="default/probed2")) == 1


def test_header_conditions_hold_after_a_header_field_with_an_empty_value(
        holdfast, addrs, backend_cmd, tmp_path):
    # A field with an empty value ("X-Empty:") used to run into the next field's name, so
    # that neither was found by name: the header rule below did not match, and the request
    # was held and woke the service.
    listen, back = addrs.listener(), addrs.backend()
    wakes = tmp_path / "wakes"
    hf = holdfast.start({"services": [probed_service(
        listen, back, backend_cmd("http", back, "never", wake_file=wakes))]})
    for extra in ("X-Empty:\r\nX-LB-Check: yes\r\n", "X-Empty: \r\nX-LB-Check: yes\r\n",
                  "X-LB-Check: yes\r\nX-Empty:\r\n"):
        r = http_exchange(listen, request_bytes("GET", "/x", extra, keep_alive=False))
        assert (r.status, json.loads(r.body)) == (200, {"rule": "header"}), (extra, r)
    assert hf.metric("holdfast_wakes_total", service="probed") == 0
    assert not wakes.exists()
