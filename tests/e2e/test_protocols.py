"""holdfast end to end, protocols (issue 5, section 3): gRPC over h2c (unary and server
streaming), WebSocket, TLS passthrough, a two-port Service and arbitrary Host headers, each
started while the target is at zero and carried through the wake and the switch to serve mode.

Same frame as test_e2e.py (the chart's pods on the real test cluster, kube-proxy delay
E2E_PROXY_DELAY_MS, all traffic through the Service's ClusterIP); the app is
tests/e2e/proto_app.py (image e2e/python) or the suite's echo server. An answer counts only if
it names an app pod that did not exist before the scale to zero: a pod the wake started. Every
wait and every load is bounded; no timing is asserted."""
import base64
import hashlib
import json
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest

from hftest.net import recv_all

from e2e.e2elib import (HERE, app_pods, create_es, make_app, replicas, resolver_slices, run_threads, settle, status,
                    to_zero, wait_for, wait_serve)

APP = os.path.join(HERE, "proto_app.py")


# ---------------------------------------------------------------- helpers

def deploy(sim, ns, args, container_ports, svc_ports, probe):
    """Deployment `web` running proto_app.py with `args`, its Service `web` with `svc_ports`."""
    labels = {"app": "web"}
    probe = dict(probe, periodSeconds=1)
    c = {"name": "app", "image": "e2e/python", "args": [APP] + args,
         "ports": [{"containerPort": p} for p in container_ports], "readinessProbe": probe}
    sim.create("/apis/apps/v1/namespaces/%s/deployments" % ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [c]}}}})
    sim.create("/api/v1/namespaces/%s/services" % ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": labels, "ports": svc_ports}})
    sim.wait_ready_replicas(ns, "web", 1, timeout=30)
    sim.wait_service_endpoints(ns, "web", 1, timeout=30)


def at_zero(sim, ns):
    """ElastiService created (serve mode), then the target scaled to 0 by hand: proxy mode in
    effect. Returns the ClusterIP and the names of the pods that existed before (an answer from
    one of those would not prove the wake)."""
    create_es(sim, ns)
    wait_serve(sim, ns)
    old = {p["metadata"]["name"] for p in app_pods(sim, ns)}
    assert old
    to_zero(sim, ns)
    assert replicas(sim, ns) == 0 and not app_pods(sim, ns)
    assert status(sim, ns)["mode"] == "proxy"
    return sim.cluster_ip(ns, "web"), old


def woken_pod(name, old):
    """True for a pod of the app started by the wake."""
    return isinstance(name, str) and name.startswith("web-") and name not in old


def serve_and_settle(sim, ns):
    """The switch to serve done (resolver slice deleted) and applied by kube-proxy."""
    wait_serve(sim, ns)
    settle()
    return time.monotonic()


class Errors:
    def __init__(self):
        self.lock = threading.Lock()
        self.items = []

    def add(self, what):
        with self.lock:
            self.items.append(what)


def parse_http(raw):
    """(status, JSON body) of one complete HTTP/1.x answer read until close."""
    head, _, body = raw.partition(b"\r\n\r\n")
    line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    code = int(line.split()[1]) if line.startswith("HTTP/1.") else 0
    try:
        return code, json.loads(body)
    except ValueError:
        return code, {"unparsed": body[:200].decode(errors="replace"), "status_line": line}


def raw_http(host, port, request, timeout=60):
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(request)
        return parse_http(recv_all(s))


# ---------------------------------------------------------------- 1. gRPC over h2c

def test_grpc_h2c_unary_and_streaming_across_the_wake(cluster, ns):
    """Three gRPC channels (three HTTP/2 connections) opened at zero on a port declared h2c
    (name grpc, appProtocol kubernetes.io/h2c): 12 unary RPCs, two short server streams and a
    8 s server stream that outlives the switch to serve mode. Every RPC succeeds, every message
    comes from the pod the wake started, the long stream arrives whole and in order with
    messages after the switch was applied; afterwards the same channels (on the same three
    connections, as the pod sees their client addresses) and a new one work."""
    grpc = pytest.importorskip("grpc")
    deploy(cluster, ns, ["grpc", "--port", "50051"], [50051],
           [{"name": "grpc", "port": 9000, "targetPort": 50051, "appProtocol": "kubernetes.io/h2c"}],
           {"tcpSocket": {"port": 50051}})
    ip, old = at_zero(cluster, ns)
    target = "%s:9000" % ip

    def channel():
        # a local subchannel pool: each channel its own TCP connection (several held connections)
        return grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0),
                                                      ("grpc.use_local_subchannel_pool", 1)])

    chans = [channel() for _ in range(3)]
    errs = Errors()
    pods = set()
    long_msgs = []  # (monotonic time received, message)

    peers = {}  # channel index -> the peer addresses the pod saw for its unary RPCs

    def say(ch, msg):
        # wait_for_ready stays False: a refused or failed connection fails the RPC at once
        out = ch.unary_unary("/holdfast.Proto/Say")(msg, timeout=60)
        who, _, echoed = out.rpartition(b":")
        pod, _, peer = who.decode().partition(" ")
        if echoed != msg or not woken_pod(pod, old):
            errs.add("Say %r answered %r" % (msg, out))
        pods.add(pod)
        peers.setdefault(chans.index(ch) if ch in chans else -1, set()).add(peer)

    def count(ch, n, ms, sink=None):
        got = []
        for m in ch.unary_stream("/holdfast.Proto/Count")(b"%d,%d" % (n, ms), timeout=60):
            got.append(m.decode())
            if sink is not None:
                sink.append((time.monotonic(), m.decode()))
        who = {g.split()[0] for g in got}
        if [g.split()[1] for g in got] != [str(i) for i in range(n)] or len(who) != 1 \
                or not woken_pod(next(iter(who)), old):
            errs.add("Count %d: %r" % (n, got[:5]))
        pods.update(who)

    def guarded(fn, *a):
        def run():
            try:
                fn(*a)
            except Exception as e:  # noqa: BLE001 - every failed RPC is a failure
                errs.add("%s%r: %r" % (fn.__name__, a[1:], e))
        return run

    long_stream = threading.Thread(target=guarded(count, chans[0], 32, 250, long_msgs), daemon=True)
    long_stream.start()
    others = [guarded(say, chans[k], b"u%d-%d" % (k, i)) for k in range(3) for i in range(4)]
    others += [guarded(count, chans[k], 5, 50) for k in (1, 2)]
    short = threading.Thread(target=lambda: run_threads(others, timeout=90), daemon=True)
    short.start()

    switched = serve_and_settle(cluster, ns)
    assert long_stream.is_alive(), "the stream ended before the switch to serve: not longer than the switch"
    long_stream.join(60)
    short.join(90)
    assert not long_stream.is_alive() and not short.is_alive(), "RPCs still running"
    assert not errs.items, errs.items
    # one connection per channel: the pod saw three distinct client addresses
    assert all(len(peers.get(k, ())) == 1 for k in range(3)) and len(set().union(*peers.values())) == 3, peers
    assert len(long_msgs) == 32
    assert any(t > switched for t, _ in long_msgs), "no stream message after the switch was applied"
    assert replicas(cluster, ns) == 1
    # after the switch: the connections held at zero (still relayed by holdfast) and a new
    # channel (straight to the pod through kube-proxy)
    fresh = channel()
    for k, ch in enumerate(chans + [fresh]):
        guarded(say, ch, b"after-%d" % k)()
    guarded(count, fresh, 3, 10)()
    for ch in chans + [fresh]:
        ch.close()
    assert not errs.items, errs.items
    # the connections opened at zero were kept: the same client address as before the switch
    assert all(len(peers[k]) == 1 for k in range(3)), peers
    assert len(pods) == 1, pods
    print("grpc: 12 unary + 3 streams at zero, 5 unary + 1 stream after; stream messages after the switch: %d"
          % sum(t > switched for t, _ in long_msgs))


# ---------------------------------------------------------------- 2. WebSocket

def ws_frame(text):
    """One masked text frame (client to server)."""
    payload, mask = text.encode(), os.urandom(4)
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_ws_frame(f):
    """The payload of one unmasked text frame (server to client)."""
    b0, b1 = f.read(2)
    assert b0 == 0x81 and not b1 & 0x80, (b0, b1)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(f.read(2), "big")
    elif n == 127:
        n = int.from_bytes(f.read(8), "big")
    return f.read(n).decode()


def test_websocket_upgrade_at_zero_kept_through_the_switch(cluster, ns):
    """A WebSocket upgrade sent at zero is held, wakes the target and is answered by the pod
    (101); messages are echoed by the pod on that one connection while the service switches to
    serve mode and after kube-proxy applied the switch (a 70 kB message included); a second
    WebSocket opened after the switch reaches the same pod. Also at zero: a client that sends
    its first frame right behind the upgrade request, before the 101 (bytes that are not HTTP
    after the head): the pod's handshake (its Sec-WebSocket-Accept) and echo come back."""
    websocket = pytest.importorskip("websocket")
    deploy(cluster, ns, ["ws", "--port", "8080"], [8080], [{"name": "http", "port": 80, "targetPort": 8080}],
           {"httpGet": {"path": "/ready", "port": 8080}})
    ip, old = at_zero(cluster, ns)
    url = "ws://%s:80/chat" % ip
    key = base64.b64encode(os.urandom(16))
    early = socket.create_connection((ip, 80), timeout=30)
    early.sendall(b"GET /early HTTP/1.1\r\nHost: web\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n" + ws_frame("early"))
    ws = websocket.create_connection(url, timeout=30)
    assert ws.getstatus() == 101
    assert replicas(cluster, ns) == 1
    pods, sent = set(), 0

    def echo(conn, msg):
        conn.send(msg)
        pod, _, back = conn.recv().partition(":")
        assert back == msg and woken_pod(pod, old), (pod, back[:80])
        pods.add(pod)

    # the early client: the pod's 101, then the echo of the frame sent before it
    ef = early.makefile("rb")
    head = [ef.readline()]
    while head[-1] not in (b"\r\n", b""):
        head.append(ef.readline())
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    fields = dict((k.strip().lower(), v.strip()) for k, _, v in (h.partition(b":") for h in head[1:-1]))
    assert head[0].startswith(b"HTTP/1.1 101") and fields.get(b"sec-websocket-accept") == accept, head
    pod, _, back = read_ws_frame(ef).partition(":")
    assert back == "early" and woken_pod(pod, old), (pod, back)
    pods.add(pod)

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        echo(ws, "m%d" % sent)
        sent += 1
        if status(cluster, ns).get("mode") == "serve" and not resolver_slices(cluster, ns):
            break
        time.sleep(0.1)
    serve_and_settle(cluster, ns)
    for i in range(10):
        echo(ws, "after-%d" % i)
    echo(ws, "x" * 70000)
    ws2 = websocket.create_connection(url, timeout=30)
    echo(ws2, "second connection")
    echo(ws, "first still open")
    ws2.close()
    ws.close()
    early.sendall(ws_frame("late"))
    assert read_ws_frame(ef) == pod + ":late"
    ef.close()
    early.close()
    assert len(pods) == 1, pods
    print("websocket: %d messages during the wake/switch, 12 after, on one connection" % sent)


# ---------------------------------------------------------------- 3. TLS passthrough

@pytest.fixture
def tls_cert(tmp_path, ns):
    """A self-signed certificate for web.<ns>.svc[.cluster.local]: the pod's, and the client's
    only trusted CA (pinned)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=web.%s.svc" % ns,
                    "-addext", "subjectAltName=DNS:web.%s.svc,DNS:web.%s.svc.cluster.local" % (ns, ns)],
                   check=True, capture_output=True, timeout=30)
    return str(cert), str(key)


@pytest.mark.parametrize("port_name", ["https", ""], ids=["port-https-held-on-accept", "unnamed-port-tls-sniffed"])
def test_tls_passthrough_across_the_wake(cluster, ns, tls_cert, port_name):
    """The pod serves TLS with its own certificate; 6 clients connect to the ClusterIP at zero
    with SNI and the pod's CA pinned (hostname checked): each handshake verifies the pod's exact
    certificate, the pod saw the SNI the client sent, and the answer names the woken pod; holdfast
    never terminates TLS (it has no key). Port named `https` (opaque: held on accept) and
    unnamed (an HTTP port: TLS recognised by its first byte)."""
    cert, key = tls_cert
    port = {"port": 443, "targetPort": 8443}
    if port_name:
        port["name"] = port_name
    deploy(cluster, ns, ["tls", "--port", "8443", "--cert", cert, "--key", key], [8443], [port],
           {"tcpSocket": {"port": 8443}})
    ip, old = at_zero(cluster, ns)
    with open(cert) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    ctx = ssl.create_default_context(cafile=cert)  # CERT_REQUIRED, hostname checked
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    errs = Errors()
    pods = set()

    def client(i):
        sni = ("web.%s.svc" if i % 2 else "web.%s.svc.cluster.local") % ns
        try:
            with socket.create_connection((ip, 443), timeout=60) as raw:
                with ctx.wrap_socket(raw, server_hostname=sni) as s:
                    if s.getpeercert(binary_form=True) != der:
                        errs.add("client %d: not the pod's certificate" % i)
                    s.sendall(b"GET /tls-%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                              % (i, sni.encode()))
                    code, obj = parse_http(recv_all(s))
        except Exception as e:  # noqa: BLE001
            errs.add("client %d: %r" % (i, e))
            return
        if code != 200 or not woken_pod(obj.get("pod"), old) or obj.get("sni") != sni \
                or obj.get("path") != "/tls-%d" % i:
            errs.add("client %d: %d %r" % (i, code, obj))
        pods.add(obj.get("pod"))

    run_threads([lambda i=i: client(i) for i in range(6)], timeout=90)
    assert not errs.items, errs.items
    assert replicas(cluster, ns) == 1
    serve_and_settle(cluster, ns)
    client(6)
    assert not errs.items, errs.items
    assert len(pods) == 1, pods


# ---------------------------------------------------------------- 4. two-port Service

def get(ip, port, path, conn=None, timeout=60):
    """GET on `conn` (keep-alive) or a new connection; (status, JSON)."""
    import http.client
    c = conn or http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        c.request("GET", path, headers={} if conn else {"Connection": "close"})
        r = c.getresponse()
        body = r.read()
        if r.will_close and conn is not None:
            raise ConnectionError("keep-alive connection closed by the server")
        return r.status, json.loads(body)
    finally:
        if conn is None:
            c.close()


def test_two_port_service_each_port_wakes_and_reaches_its_container_port(cluster, ns):
    """Service ports http 80 -> 8080 and admin 9090 -> 9091, one pod answering per port with its
    role. Proxy mode gives both ports a resolver port (slice ports named as the Service's). At
    zero, a request on the second port alone wakes the target and reaches container port 9091.
    Back at zero, both ports at once (new connections and one keep-alive connection each,
    through the switch): every answer comes from the right container port of the woken pod."""
    deploy(cluster, ns, ["http", "--listen", "8080:http", "--listen", "9091:admin"], [8080, 9091],
           [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "admin", "port": 9090, "targetPort": 9091}],
           {"httpGet": {"path": "/ready", "port": 8080}})
    ip, old = at_zero(cluster, ns)
    slices = resolver_slices(cluster, ns)
    ports = {p["name"]: p["port"] for s in slices for p in s["ports"]}
    assert set(ports) == {"http", "admin"} and len(set(ports.values())) == 2, slices
    want = {80: ("http", 8080), 9090: ("admin", 9091)}

    def check(port, code, obj, old):
        role, cport = want[port]
        assert code == 200 and woken_pod(obj.get("pod"), old) and obj.get("role") == role \
            and obj.get("port") == cport, (port, code, obj)

    # the second port alone wakes the target
    check(9090, *get(ip, 9090, "/admin-first"), old)
    assert replicas(cluster, ns) == 1
    serve_and_settle(cluster, ns)
    for port in want:
        check(port, *get(ip, port, "/served"), old)

    # both ports at once, from zero, through the switch
    old = {p["metadata"]["name"] for p in app_pods(cluster, ns)}
    to_zero(cluster, ns)
    assert replicas(cluster, ns) == 0
    errs = Errors()
    done = threading.Event()
    answered = {80: [], 9090: []}  # monotonic times of the keep-alive answers, per port

    def fresh(port, i):
        try:
            check(port, *get(ip, port, "/new-%d" % i), old)
        except Exception as e:  # noqa: BLE001
            errs.add("new connection :%d: %r" % (port, e))

    def keepalive(port):
        import http.client
        conn = http.client.HTTPConnection(ip, port, timeout=60)
        try:
            n = 0
            while n < 5 or not done.is_set():
                check(port, *get(ip, port, "/ka-%d" % n, conn=conn), old)
                n += 1
                answered[port].append(time.monotonic())
                time.sleep(0.1)
        except Exception as e:  # noqa: BLE001
            errs.add("keep-alive :%d: %r" % (port, e))
        finally:
            conn.close()

    fns = [lambda p=p: keepalive(p) for p in want]
    fns += [lambda p=p, i=i: fresh(p, i) for p in want for i in range(10)]
    runner = threading.Thread(target=lambda: run_threads(fns, timeout=90), daemon=True)
    runner.start()
    try:
        switched = serve_and_settle(cluster, ns)
        # requests on the keep-alive connections after the switch was applied
        wait_for(lambda: all(any(t > switched for t in answered[p]) for p in want) or errs.items,
                 timeout=30, interval=0.1, what="keep-alive answers after the switch")
    finally:
        done.set()
    runner.join(90)
    assert not runner.is_alive()
    assert not errs.items, errs.items
    assert all(any(t > switched for t in answered[p]) for p in want)
    assert replicas(cluster, ns) == 1
    print("two ports: keep-alive requests %r, 20 new connections"
          % {p: len(answered[p]) for p in want})


# ---------------------------------------------------------------- 5. arbitrary Host

def test_arbitrary_host_or_none_is_routed_by_port_to_the_pod(cluster, ns):
    """At zero, requests on the Service's port whose Host names nothing holdfast knows
    (anything.example, another namespace's service, an IP, absolute-form URI, and HTTP/1.0 with
    no Host at all) are held and answered by the woken pod, with the Host (or its absence) and
    the request target reaching the pod unchanged: holdfast routes by port, not by Host. Again
    after the switch to serve mode."""
    make_app(cluster, ns)
    ip, old = at_zero(cluster, ns)
    cases = [("/any", "anything.example", "1.1"),
             ("/h10", None, "1.0"),  # HTTP/1.0, no Host at all
             ("/other-ns", "web.not-this-namespace.svc.cluster.local", "1.1"),
             ("/ip", ip + ":80", "1.1"),
             ("http://elsewhere.example/abs", "elsewhere.example", "1.1")]  # absolute-form
    errs = Errors()
    pods = set()

    def send(target, host, version):
        req = "GET %s HTTP/%s\r\n" % (target, version)
        req += "Host: %s\r\n" % host if host is not None else ""
        req += "Connection: close\r\n\r\n" if version == "1.1" else "\r\n"
        try:
            code, obj = raw_http(ip, 80, req.encode())
        except Exception as e:  # noqa: BLE001
            errs.add("%s: %r" % (target, e))
            return
        got_hosts = [v for k, v in obj.get("headers", []) if k.lower() == "host"]
        if code != 200 or not woken_pod(obj.get("pod"), old) or obj.get("path") != target \
                or got_hosts != ([host] if host is not None else []):
            errs.add("%s: %d %r" % (target, code, obj))
        pods.add(obj.get("pod"))

    run_threads([lambda c=c: send(*c) for c in cases], timeout=90)
    assert not errs.items, errs.items
    assert replicas(cluster, ns) == 1
    serve_and_settle(cluster, ns)
    for c in cases:
        send(*c)
    assert not errs.items, errs.items
    assert len(pods) == 1, pods
