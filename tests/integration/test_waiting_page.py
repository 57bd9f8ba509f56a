"""The waiting page (waitingPage, opt-in): a browser navigation to a service at zero is answered
at once with a 503 page that refreshes itself, and the wake goes on, so the refresh finds the
service started. API clients, other methods, upgrades, h2c and gRPC are held and relayed as
without the page.

The backend is gated (backends/backend.py --gate): its wake command starts it (the wake file
shows that) but it listens only once the test opens the gate, so "answered at once" and "held"
are told apart without timing anything: a held request has no answer while the gate is shut.
"""
import re
import subprocess
import threading
import time

import pytest

from hftest.http1 import Reader, connect, get_request, http_exchange
from hftest.kubeclient import wait_for
from hftest.net import hp, recv_all
from hflib import service

BROWSER_ACCEPT = ("text/html,application/xhtml+xml,application/xml;q=0.9,"
                  "image/avif,image/webp,*/*;q=0.8")


def browser_get(path="/", method="GET", host="example", close=True):
    return (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {BROWSER_ACCEPT}\r\n"
            f"User-Agent: Mozilla/5.0\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}"
            "\r\n").encode()


def count_lines(path):
    return len(path.read_text().splitlines()) if path.exists() else 0


class Gated:
    """One standalone service whose backend listens only once `open()` is called."""

    def __init__(self, holdfast, addrs, backend_cmd, tmp_path, page, name="web", mode="http",
                 readiness=None, **extra):
        self.listen, self.back = addrs.listener(), addrs.backend()
        self.gate = tmp_path / f"gate-{name}"
        self.wakes = tmp_path / f"wakes-{name}"
        self.name = name
        svc = service(name, [self.listen], [self.back],
                      backend_cmd(mode, self.back, name, wake_file=self.wakes, gate=self.gate),
                      readiness=readiness or {"httpGet": {"path": "/ready"}}, **extra)
        if page is not None:
            svc["waitingPage"] = page
        self.hf = holdfast.start({"services": [svc]})

    def open(self):
        self.gate.touch()
        wait_for(lambda: self.hf.metric("holdfast_backends_ready", service=self.name) == 1,
                 timeout=30, what="backend ready")

    def held(self):
        return self.hf.metric("holdfast_held_connections", service=self.name)


def held_then_relayed(g, raw, head_request=False):
    """Sends raw on a new connection while the backend is shut: the request must be held (no
    answer, counted held, no page), then answered by the backend once it is up."""
    result = {}

    def client():
        try:
            result["r"] = http_exchange(g.listen, raw, timeout=60, head_request=head_request)
        except Exception as e:  # noqa: BLE001 - reported below
            result["e"] = e

    t = threading.Thread(target=client)
    t.start()
    wait_for(lambda: g.held() == 1, timeout=20, what="the request held")
    assert not result, result  # nothing answered while held: no page
    wait_for(lambda: count_lines(g.wakes) == 1, timeout=20, what="the wake command started")
    g.open()
    t.join(60)
    assert "e" not in result, result
    r = result["r"]
    assert r.status == 200, r
    assert r.headers.get("x-backend") == g.name, r
    assert g.hf.metric("holdfast_waiting_pages_total", service=g.name) == 0
    return r


def test_browser_navigation_at_zero_gets_the_page_at_once_and_the_backend_is_woken(
        holdfast, addrs, backend_cmd, tmp_path):
    g = Gated(holdfast, addrs, backend_cmd, tmp_path, {"enabled": True})
    with connect(g.listen) as s:
        reader = Reader(s)
        s.sendall(browser_get("/shop?item=1", close=False))
        r = reader.read_response()  # the backend is shut: only holdfast can answer
        assert r.status == 503, r
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert r.headers["retry-after"] == "2"
        assert r.headers["refresh"] == "2"
        assert r.headers["cache-control"] == "no-store"
        assert int(r.headers["content-length"]) == len(r.body)
        assert "connection" not in r.headers  # kept alive, as probe answers are
        page = r.body.decode()
        assert '<meta http-equiv="refresh" content="2">' in page
        assert "<strong>web</strong> (namespace default) is starting" in page
        # The wake went on: the wake command ran although nothing was held.
        wait_for(lambda: count_lines(g.wakes) == 1, timeout=20, what="the wake command started")
        assert g.held() == 0
        assert g.hf.metric("holdfast_waiting_pages_total", service="web") == 1
        assert g.hf.metric("holdfast_wakes_total", service="web") >= 1
        g.open()
        # The refresh on the same connection reaches the started backend.
        s.sendall(browser_get("/shop?item=1", close=False))
        r = reader.read_response()
        assert r.status == 200, r
        assert r.headers.get("x-backend") == "web"
        assert r.json()["path"] == "/shop?item=1"
    assert count_lines(g.wakes) == 1
    assert g.hf.metric("holdfast_waiting_pages_total", service="web") == 1
    assert len(g.hf.log_lines("waiting page answered", service="default/web")) == 1


def test_a_custom_page_is_served_byte_for_byte_with_its_retry_after(
        holdfast, addrs, backend_cmd, tmp_path):
    html = ("<!doctype html>\r\n<title>Bient\u00f4t</title>\n<p>Caf\u00e9 opens in a moment "
            "&amp; you wait \u2615</p>\n")
    g = Gated(holdfast, addrs, backend_cmd, tmp_path,
              {"enabled": True, "retryAfterSeconds": 17, "html": html})
    r = http_exchange(g.listen, browser_get("/"), timeout=30)
    assert r.status == 503, r
    assert r.body == html.encode("utf-8")
    assert r.headers["retry-after"] == "17"
    assert r.headers["refresh"] == "17"
    assert r.headers["connection"] == "close"  # the request asked for it


def test_head_navigation_gets_the_page_headers_without_a_body(
        holdfast, addrs, backend_cmd, tmp_path):
    g = Gated(holdfast, addrs, backend_cmd, tmp_path, {"enabled": True, "html": "<p>wait</p>"})
    with connect(g.listen) as s:
        s.sendall(browser_get("/", method="HEAD"))
        data = recv_all(s)
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep and rest == b"", data  # nothing after the head
    assert head.startswith(b"HTTP/1.1 503 "), data
    assert b"\r\nContent-Length: 11\r\n" in head + b"\r\n", data
    assert b"Cache-Control: no-store" in head
    wait_for(lambda: count_lines(g.wakes) == 1, timeout=20, what="the wake command started")


@pytest.mark.parametrize("raw", [
    pytest.param(get_request("/api", extra="Accept: application/json\r\nConnection: close\r\n"),
                 id="accept_json"),
    pytest.param(get_request("/api", extra="Connection: close\r\n"), id="no_accept"),
    pytest.param(get_request("/api", extra="Accept: */*\r\nConnection: close\r\n"),
                 id="accept_any"),
    pytest.param(b"POST /form HTTP/1.1\r\nHost: example\r\nAccept: text/html\r\n"
                 b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n"
                 b"Connection: close\r\n\r\nq=hello", id="post_accepting_html"),
])
def test_api_clients_and_other_methods_are_held_and_relayed(
        holdfast, addrs, backend_cmd, tmp_path, raw):
    g = Gated(holdfast, addrs, backend_cmd, tmp_path, {"enabled": True})
    r = held_then_relayed(g, raw)
    if raw.startswith(b"POST"):
        assert r.json()["bytes"] == 7


def test_a_websocket_upgrade_accepting_html_is_held_and_relayed(
        holdfast, addrs, backend_cmd, tmp_path):
    websockets = pytest.importorskip("websockets")
    import asyncio
    g = Gated(holdfast, addrs, backend_cmd, tmp_path, {"enabled": True}, name="ws", mode="ws",
              readiness={"tcp": {}})
    result = {}

    async def talk():
        async with websockets.connect(f"ws://{hp(g.listen)}/chat", open_timeout=60,
                                      close_timeout=5,
                                      extra_headers={"Accept": BROWSER_ACCEPT}) as ws:
            await ws.send("hello")
            return await asyncio.wait_for(ws.recv(), 30)

    t = threading.Thread(target=lambda: result.update(r=asyncio.run(talk())))
    t.start()
    wait_for(lambda: g.held() == 1, timeout=20, what="the upgrade held")
    assert not result
    g.open()
    t.join(60)
    assert result.get("r") == "ws:hello", result
    assert g.hf.metric("holdfast_waiting_pages_total", service="ws") == 0


def test_h2c_prior_knowledge_is_held_and_relayed(holdfast, addrs, backend_cmd, tmp_path):
    g = Gated(holdfast, addrs, backend_cmd, tmp_path, {"enabled": True}, name="h2", mode="h2c",
              readiness={"tcp": {}})
    # nghttp speaks prior knowledge on http:// URLs; it sends Accept only when told to.
    proc = subprocess.Popen(["nghttp", "-v", "-H", f"accept: {BROWSER_ACCEPT}",
                             f"http://{hp(g.listen)}/page"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: g.held() == 1, timeout=20, what="the h2c connection held")
        assert proc.poll() is None
        g.open()
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert re.search(r"^h2c backend h2 stream \d+$", out, re.M), out
    assert g.hf.metric("holdfast_waiting_pages_total", service="h2") == 0


def test_grpc_is_held_and_relayed(holdfast, addrs, backend_cmd, tmp_path):
    grpc = pytest.importorskip("grpc")
    g = Gated(holdfast, addrs, backend_cmd, tmp_path, {"enabled": True}, name="grpc",
              mode="grpc", readiness={"tcp": {}})
    channel = grpc.insecure_channel(hp(g.listen), options=[("grpc.enable_http_proxy", 0)])
    result = {}

    def call():
        try:
            say = channel.unary_unary("/holdfast.Echo/Say")
            result["r"] = say(b"ping", timeout=60, wait_for_ready=True,
                              metadata=(("accept", "text/html"),))
        except Exception as e:  # noqa: BLE001 - reported below
            result["e"] = e

    t = threading.Thread(target=call)
    t.start()
    try:
        wait_for(lambda: g.held() == 1, timeout=20, what="the gRPC connection held")
        assert not result
        g.open()
        t.join(60)
    finally:
        channel.close()
    assert result.get("r") == b"grpc:ping", result
    assert g.hf.metric("holdfast_waiting_pages_total", service="grpc") == 0


@pytest.mark.parametrize("page", [None, {"enabled": False}, {"retryAfterSeconds": 5}],
                         ids=["absent", "disabled", "enabled_omitted"])
def test_without_the_page_enabled_a_browser_is_held(
        holdfast, addrs, backend_cmd, tmp_path, page):
    g = Gated(holdfast, addrs, backend_cmd, tmp_path, page)
    held_then_relayed(g, browser_get("/"))


def test_the_shared_port_gives_the_page_of_the_service_its_host_names(
        holdfast, addrs, backend_cmd, tmp_path):
    listen, shared, back = addrs.listener(), addrs.listener(), addrs.backend()
    gate = tmp_path / "gate"
    hf = holdfast.start({
        "services": [service("web", [listen], [back],
                             backend_cmd("http", back, "web", gate=gate),
                             waitingPage={"enabled": True, "html": "<p>web soon</p>"})],
        "shared": {"listen": [hp(shared)]}})
    r = http_exchange(shared, browser_get("/", host="web.default.svc.cluster.local"))
    assert (r.status, r.body) == (503, b"<p>web soon</p>"), r
    assert hf.metric("holdfast_waiting_pages_total", service="web") == 1


@pytest.mark.parametrize("page,message", [
    ({"enabled": True, "retryAfterSeconds": 0},
     "services[0].waitingPage.retryAfterSeconds: must be an integer from 1 to 3600"),
    ({"enabled": True, "html": "x" * 65537},
     "services[0].waitingPage.html: 65537 bytes, more than the 65536 allowed"),
    ({"enabled": "yes"}, "services[0].waitingPage.enabled: must be true or false, not a string"),
    ("on", "services[0].waitingPage: must be an object, not a string"),
])
def test_bad_waiting_page_settings_are_refused_naming_the_field(
        holdfast, addrs, backend_cmd, page, message):
    listen, back = addrs.listener(), addrs.backend()
    hf = holdfast.start({"services": [service("bad", [listen], [back], waitingPage=page)]},
                        wait_ready=False)
    assert hf.wait_exit(20) not in (None, 0)
    assert message in hf.stderr_text(), hf.stderr_text()


def test_a_tcp_service_cannot_enable_the_page(holdfast, addrs):
    listen, back = addrs.listener(), addrs.backend()
    hf = holdfast.start({"services": [service("db", [listen], [back], protocol="tcp",
                                              waitingPage={"enabled": True})]},
                        wait_ready=False)
    assert hf.wait_exit(20) not in (None, 0)
    assert ('services[0].waitingPage.enabled: needs "protocol": "http"' in hf.stderr_text()), \
        hf.stderr_text()


def test_a_flood_of_page_answers_wakes_the_control_plane_about_once_a_second(
        holdfast, addrs, backend_cmd, tmp_path):
    """Every page answer used to signal a wake (deduplicated only while one was queued): a
    browser flood kept the control thread busy, a quarter of a CPU in bench/waitpage, and in
    Kubernetes mode would have read /scale without end. One wake a second is enough: the page
    refreshes after Retry-After (at least 1 s), and the next page after a failed wake asks again."""
    g = Gated(holdfast, addrs, backend_cmd, tmp_path, {"enabled": True})
    n = 300
    start = time.monotonic()
    with connect(g.listen) as s:
        reader = Reader(s)
        for _ in range(n):
            s.sendall(browser_get(close=False))
            assert reader.read_response().status == 503
    elapsed = time.monotonic() - start
    assert g.hf.metric("holdfast_waiting_pages_total", service="web") == n
    wakes = g.hf.metric("holdfast_wakes_total", service="web")
    assert 1 <= wakes <= int(elapsed) + 2, (wakes, elapsed)
    wait_for(lambda: count_lines(g.wakes) == 1, timeout=20, what="the wake command started")
    assert g.held() == 0
