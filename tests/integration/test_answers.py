"""Every answer holdfast gives itself (DESIGN.md, "Answers holdfast itself gives"): status code,
JSON body {"error", "service", "reason"}, and the connection closed after it."""
import json
import socket

from hftest.http1 import Reader, connect, get_request, http_exchange
from hftest.kubeclient import wait_for
from hflib import service

JSON_TYPE = "application/json; charset=utf-8"


def assert_answer(r, status, error, svc="default/svc", reason=None):
    assert r.status == status, r
    assert r.headers["content-type"] == JSON_TYPE, r
    assert r.headers.get("connection") == "close", r
    body = json.loads(r.body)
    assert body["error"] == error, body
    assert body["service"] == svc, body
    assert isinstance(body.get("reason"), str) and body["reason"], body
    if reason is not None:
        assert reason in body["reason"], body
    return body


def exchange_then_closed(addr, raw, timeout=30):
    """Sends raw, reads one response, and checks holdfast closed the connection after it."""
    with connect(addr, timeout) as s:
        try:
            s.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # holdfast may answer and close before the rest of a huge request was sent
        reader = Reader(s)
        r = reader.read_response()
        assert reader.at_eof(timeout), "connection left open after holdfast's own answer"
        return r


def stopped(addrs, backend_cmd=None, wake=None, **extra):
    listen, back = addrs.listener(), addrs.backend()
    return listen, back, service("svc", [listen], [back], wake, **extra)


def test_malformed_request_is_answered_400_json_and_closed(holdfast, addrs, tmp_path):
    listen, back, svc = stopped(addrs, wake=["/bin/sh", "-c", f"echo woke >> {tmp_path}/w"])
    hf = holdfast.start({"services": [svc]})
    for raw in (b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
                b"GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"):
        assert_answer(exchange_then_closed(listen, raw), 400, "bad request")
    assert hf.metric("holdfast_requests_total", service="svc", outcome="bad_request") == 4
    assert hf.log_lines("wake command started") == []


def test_smuggling_ambiguous_framing_cl_te_and_bad_chunking_is_answered_400(
        holdfast, addrs, backend_cmd):
    listen, back = addrs.listener(), addrs.backend()
    hf = holdfast.start({"services": [service(
        "svc", [listen], [back], backend_cmd("http", back, "smug"))]})
    cl_te = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    assert_answer(exchange_then_closed(listen, cl_te), 400, "bad request")
    te_cl = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
             b"Content-Length: 6\r\n\r\n0\r\n\r\n")
    assert_answer(exchange_then_closed(listen, te_cl), 400, "bad request")
    bad_chunk = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"zz\r\nhello\r\n0\r\n\r\n")
    assert_answer(exchange_then_closed(listen, bad_chunk), 400, "bad request")
    double_cl = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    assert_answer(exchange_then_closed(listen, double_cl), 400, "bad request")
    # None of it reached a backend: nothing was forwarded.
    assert hf.metric("holdfast_requests_total", service="svc", outcome="forwarded") == 0
    assert hf.metric("holdfast_requests_total", service="svc", outcome="bad_request") == 4


def test_request_head_larger_than_limit_is_answered_431(holdfast, addrs):
    listen, back, svc = stopped(addrs)
    hf = holdfast.start({"services": [svc]})
    big = get_request("/", extra="X-Big: " + "b" * 40000 + "\r\n")
    assert_answer(exchange_then_closed(listen, big), 431, "request header fields too large",
                  reason="limit")
    many = get_request("/", extra="".join(f"X-H{i}: v\r\n" for i in range(200)))
    assert_answer(exchange_then_closed(listen, many), 431, "request header fields too large")
    assert hf.metric("holdfast_held_connections", service="svc") == 0


def test_no_complete_request_head_within_head_timeout_is_answered_408(holdfast, addrs):
    listen, back, svc = stopped(addrs)
    holdfast.start({"services": [svc], "limits": {"headTimeoutSeconds": 1}})
    # Half a head, then silence.
    r = exchange_then_closed(listen, b"GET /slow HTTP/1.1\r\nHost: x\r\n")
    assert_answer(r, 408, "request timeout")
    # A connection that sends nothing is not known to speak HTTP: closed without a word
    # (as Go's and nginx's servers do) when the head timeout expires.
    with connect(listen) as s:
        assert Reader(s).at_eof(30)


def test_shared_port_unknown_host_is_answered_404_with_host_and_known_host_is_routed(
        holdfast, addrs, backend_cmd):
    listen, back = addrs.listener(), addrs.backend()
    shared = addrs.listener()
    hf = holdfast.start({"services": [service(
        "svc", [listen], [back], backend_cmd("http", back, "hosted"))],
        "shared": {"listen": [f"{shared[0]}:{shared[1]}"]}})
    for host in ("nope.default", "svc.other-ns", 'evil"\\<x>.default'):
        r = exchange_then_closed(shared, get_request("/", host=host))
        assert r.status == 404, r
        assert r.headers["content-type"] == JSON_TYPE
        body = json.loads(r.body)  # well-formed JSON whatever the Host held
        assert body == {"error": "unknown service", "host": host}, body
    assert hf.metric("holdfast_unknown_host_total") == 3
    # A Host naming the service routes there (held, woken, answered by the backend).
    for host in ("svc.default", "svc.default.svc.cluster.local:8012"):
        r = http_exchange(shared, get_request("/routed", host=host, extra="Connection: close\r\n"))
        assert r.status == 200 and r.json()["backend"] == "hosted", r


def test_full_hold_queue_is_answered_503_with_retry_after(holdfast, addrs):
    listen, back, svc = stopped(addrs, maxHeldConnections=2)
    hf = holdfast.start({"services": [svc]})
    held = [connect(listen) for _ in range(2)]
    try:
        for s in held:
            s.sendall(get_request("/wait"))
        wait_for(lambda: hf.metric("holdfast_held_connections", service="svc") == 2,
                 what="two held connections")
        r = exchange_then_closed(listen, get_request("/one-too-many"))
        assert_answer(r, 503, "overloaded", reason="hold queue of the service is full")
        assert int(r.headers["retry-after"]) >= 0
        assert hf.metric("holdfast_requests_total", service="svc", outcome="rejected") == 1
        # The two held connections are still held, untouched.
        assert hf.metric("holdfast_held_connections", service="svc") == 2
    finally:
        for s in held:
            s.close()


def test_not_ready_within_hold_timeout_is_answered_504_with_wake_failure_reason(
        holdfast, addrs):
    listen, back, svc = stopped(addrs, wake=["false"], holdTimeoutSeconds=2)
    hf = holdfast.start({"services": [svc]})
    r = exchange_then_closed(listen, get_request("/"))
    assert_answer(r, 504, "timeout", reason="wake command exited with status 1")
    assert hf.metric("holdfast_requests_total", service="svc", outcome="timeout") == 1
    assert hf.metric("holdfast_wake_command_failures_total", service="svc") >= 1


def test_wake_command_that_cannot_start_is_the_504_reason(holdfast, addrs):
    listen, back, svc = stopped(addrs, wake=["/nonexistent/wake-me"], holdTimeoutSeconds=1)
    holdfast.start({"services": [svc]})
    r = exchange_then_closed(listen, get_request("/"))
    assert_answer(r, 504, "timeout", reason="wake command could not start")


def test_backend_closing_before_any_response_byte_is_answered_502(holdfast, addrs, backend_cmd):
    listen, back = addrs.listener(), addrs.backend()
    hf = holdfast.start({"services": [service(
        "svc", [listen], [back],
        backend_cmd("http", back, "mute", "--close-without-answer"),
        readiness={"tcp": {}})]})
    r = exchange_then_closed(listen, get_request("/"))
    assert_answer(r, 502, "bad gateway")
    assert hf.metric("holdfast_requests_total", service="svc", outcome="upstream_error") == 1
    # Also when the service was already ready at accept (relayed without parsing).
    wait_for(lambda: hf.metric("holdfast_backends_ready", service="svc") == 1,
             what="backend ready")
    r = exchange_then_closed(listen, get_request("/again"))
    assert_answer(r, 502, "bad gateway")


def test_holdfast_answers_nothing_on_non_http_ports_it_closes(holdfast, addrs):
    # On a tcp service holdfast has no words: a hold timeout closes the connection silently.
    listen, back, svc = stopped(addrs, protocol="tcp", holdTimeoutSeconds=1)
    holdfast.start({"services": [svc]})
    with connect(listen) as s:
        s.sendall(b"hello")
        s.settimeout(30)
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
