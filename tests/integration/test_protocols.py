"""Protocols other than plain HTTP/1.1 are held raw and relayed untouched across a wake:
WebSocket upgrades, h2c prior knowledge, gRPC, TLS passthrough, and TCP servers that speak
first."""
import asyncio
import re
import socket
import ssl
import subprocess

import pytest

from hftest.http1 import connect
from hftest.net import hp, recv_all
from hflib import service


def test_websocket_upgrade_held_across_wake_echoes_through_backend(holdfast, addrs, backend_cmd):
    websockets = pytest.importorskip("websockets")
    listen, back = addrs.listener(), addrs.backend()
    hf = holdfast.start({"services": [service(
        "ws", [listen], [back], backend_cmd("ws", back, "wsb"))]})

    async def talk():
        async with websockets.connect(f"ws://{hp(listen)}/chat", open_timeout=30,
                                      close_timeout=5) as ws:
            out = []
            for msg in ("hello", "again", "x" * 70000):
                await ws.send(msg)
                out.append(await asyncio.wait_for(ws.recv(), 30))
            return out

    assert asyncio.run(talk()) == ["wsb:hello", "wsb:again", "wsb:" + "x" * 70000]
    assert len(hf.log_lines("wake command started")) == 1


def test_h2c_prior_knowledge_held_across_wake_answered_by_backend(holdfast, addrs, backend_cmd):
    listen, back = addrs.listener(), addrs.backend()
    hf = holdfast.start({"services": [service(
        "h2", [listen], [back], backend_cmd("h2c", back, "h2b"), readiness={"tcp": {}})]})
    # nghttp speaks HTTP/2 prior knowledge on http:// URLs unless --upgrade is given.
    out = subprocess.run(["nghttp", "-v", f"http://{hp(listen)}/one", f"http://{hp(listen)}/two"],
                         capture_output=True, timeout=60, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    # Two streams, each answered by the backend (nghttp numbers them after its PRIORITY
    # streams), over one connection that began with the prior-knowledge preface.
    streams = re.findall(r"^h2c backend h2b stream (\d+)$", out.stdout, re.M)
    assert len(set(streams)) == 2, out.stdout
    for sid in streams:
        assert f"recv (stream_id={sid}) :status: 200" in out.stdout
    assert len(hf.log_lines("wake command started")) == 1


def test_grpc_over_h2c_held_across_wake_answered_by_backend(holdfast, addrs, backend_cmd):
    grpc = pytest.importorskip("grpc")
    listen, back = addrs.listener(), addrs.backend()
    hf = holdfast.start({"services": [service(
        "grpc", [listen], [back], backend_cmd("grpc", back, "grpcb"), readiness={"tcp": {}})]})
    channel = grpc.insecure_channel(hp(listen), options=[("grpc.enable_http_proxy", 0)])
    try:
        say = channel.unary_unary("/holdfast.Echo/Say")
        assert say(b"ping", timeout=60, wait_for_ready=True) == b"grpcb:ping"
        assert say(b"pong", timeout=30) == b"grpcb:pong"
    finally:
        channel.close()
    assert len(hf.log_lines("wake command started")) == 1


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-subj", "/CN=holdfast-tls-backend", "-days", "2"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


def test_tls_passthrough_held_across_wake_reaches_backend_certificate(
        holdfast, addrs, tls_cert):
    cert, key = tls_cert
    listen, back = addrs.listener(), addrs.backend()
    hf = holdfast.start({"services": [service(
        "tls", [listen], [back],
        ["openssl", "s_server", "-accept", hp(back), "-cert", str(cert), "-key", str(key),
         "-www", "-naccept", "1000"],
        readiness={"tcp": {}})]})
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.check_hostname = False
    with connect(listen, timeout=60) as raw:
        with ctx.wrap_socket(raw, server_hostname="holdfast-tls-backend") as s:
            # The handshake verified the backend's own certificate: bytes were not touched.
            assert s.getpeercert()["subject"] == ((("commonName", "holdfast-tls-backend"),),)
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = recv_all(s)
    assert data.startswith(b"HTTP/1.0 200 ok"), data[:200]
    assert len(hf.log_lines("wake command started")) == 1


def test_tcp_service_whose_server_speaks_first_wakes_on_connect_and_client_reads_banner(
        holdfast, addrs, backend_cmd):
    listen, back = addrs.listener(), addrs.backend()
    hf = holdfast.start({"services": [service(
        "banner", [listen], [back], backend_cmd("banner", back, "bnr"), protocol="tcp",
        readiness={"tcp": {}})]})
    with connect(listen, timeout=60) as s:
        f = s.makefile("rwb")
        # The client sends nothing: the wake must come from the connect alone.
        assert f.readline() == b"BANNER bnr\r\n"
        f.write(b"hi\r\n")
        f.flush()
        assert f.readline() == b"bnr echo hi\r\n"
    assert len(hf.log_lines("wake command started")) == 1


def test_tcp_client_that_half_closes_while_held_is_relayed_not_cancelled(
        holdfast, addrs, backend_cmd):
    listen, back = addrs.listener(), addrs.backend()
    hf = holdfast.start({"services": [service(
        "halfclose", [listen], [back], backend_cmd("banner", back, "hc"), protocol="tcp",
        readiness={"tcp": {}})]})
    with connect(listen, timeout=60) as s:
        s.sendall(b"last words\r\n")
        s.shutdown(socket.SHUT_WR)  # done sending, still reading
        data = recv_all(s)
    assert data == b"BANNER hc\r\nhc echo last words\r\n"
    assert hf.metric("holdfast_requests_total", service="halfclose", outcome="cancelled") == 0
