"""tests/hftest/apiproxy.py, the fault-injecting proxy in front of the test cluster's API server:
it relays requests, answers and watch streams unchanged, passes on who the client is, and
injects each fault it offers (503s, refused connections, latency, write answers held back after
their watch events, dropped watches) only for the clients that use it.

Run as root with Debian's python3: /usr/bin/python3 -m pytest tests/cluster/test_apiproxy.py
"""
import http.client
import json
import os
import ssl
import subprocess
import threading
import time

import pytest

from hftest import apiproxy
from clusterfix import wait_for

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def proxy(cluster):
    p = apiproxy.ApiProxy(cluster.pki).start()
    yield p
    p.stop()


def client(cluster, cert="admin", token=None, timeout=10):
    """An HTTPS connection to the proxy, as the client certificate `cert` (or with `token`)."""
    ctx = ssl.create_default_context(cafile=os.path.join(cluster.pki, "ca.crt"))
    if token is None:
        ctx.load_cert_chain(os.path.join(cluster.pki, cert + ".crt"), os.path.join(cluster.pki, cert + ".key"))
    c = http.client.HTTPSConnection(apiproxy.NODE_IP, apiproxy.PORT, context=ctx, timeout=timeout)
    c.token = token
    return c


def call(c, method, path, body=None):
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if c.token:
        headers["Authorization"] = "Bearer " + c.token
    c.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"{}")


def whoami(c):
    code, body = call(c, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                      {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert code == 201, body
    return body["status"]["userInfo"]


def cm(name):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


def test_requests_and_identities_pass_through(cluster, ns, proxy, tmp_path):
    admin = client(cluster)
    assert whoami(admin)["username"] == apiproxy.ADMIN_CN
    code, body = call(admin, "POST", "/api/v1/namespaces/%s/configmaps" % ns, cm("a"))
    assert code == 201 and body["metadata"]["name"] == "a", body
    # another client certificate: impersonated, so the API server sees that identity
    node = whoami(client(cluster, "node"))
    assert node["username"] == "system:node:hfc-node" and "system:nodes" in node["groups"], node
    # a bearer token: passed on as it is
    cluster.api.post("/api/v1/namespaces/%s/serviceaccounts" % ns, {"metadata": {"name": "sa"}})
    tok = cluster.api.post("/api/v1/namespaces/%s/serviceaccounts/sa/token" % ns,
                           {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                            "spec": {"expirationSeconds": 600}})["status"]["token"]
    sa = client(cluster, token=tok)
    assert whoami(sa)["username"] == "system:serviceaccount:%s:sa" % ns
    code, body = call(sa, "GET", "/api/v1/namespaces/%s/configmaps" % ns)
    assert code == 403 and body["reason"] == "Forbidden", body
    # kubectl, with the proxy's kubeconfig
    kc = proxy.write_kubeconfig(str(tmp_path / "kubeconfig"))
    r = subprocess.run([os.path.join(cluster.bin, "kubectl"), "--kubeconfig", kc, "get", "configmap", "a",
                        "-n", ns, "-o", "jsonpath={.data.k}"], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "v"), r.stderr
    assert proxy.stats["requests"] >= 6


class Watch:
    """A watch of the namespace's ConfigMaps through the proxy; events in order, with the time
    each was read."""

    def __init__(self, cluster, ns):
        self.conn = client(cluster, timeout=60)
        self.conn.request("GET", "/api/v1/namespaces/%s/configmaps?watch=true" % ns,
                          headers={"Accept": "application/json"})
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        self.events = []
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                ev = json.loads(line)
                self.events.append((time.monotonic(), ev["type"], ev["object"]["metadata"]["name"]))
        except (OSError, ValueError, http.client.HTTPException):
            pass
        self.ended.set()

    def saw(self, kind, name):
        return [t for t, k, n in self.events if (k, n) == (kind, name)]


def test_watch_streams_through_and_drop_watches_ends_it(cluster, ns, proxy):
    w = Watch(cluster, ns)
    admin = client(cluster)
    wait_for(lambda: len(proxy.watches) == 1, 10, "the watch relayed")
    for i in range(3):
        assert call(admin, "POST", "/api/v1/namespaces/%s/configmaps" % ns, cm("w%d" % i))[0] == 201
    wait_for(lambda: all(w.saw("ADDED", "w%d" % i) for i in range(3)), 10, "three ADDED events")
    assert proxy.drop_watches() == 1
    assert w.ended.wait(10), "the watch stream did not end"
    # the proxy itself goes on
    assert call(client(cluster), "GET", "/api/v1/namespaces/%s/configmaps/w0" % ns)[0] == 200


def test_503_fault_answers_every_request_then_ends(cluster, ns, proxy):
    admin = client(cluster)
    assert call(admin, "GET", "/api/v1/namespaces/" + ns)[0] == 200
    proxy.fault("503", seconds=2)
    code, body = call(client(cluster), "GET", "/api/v1/namespaces/" + ns)
    assert code == 503 and body["reason"] == "ServiceUnavailable", body
    # the kept-alive connection was cut when the fault began: a client must notice
    with pytest.raises((OSError, http.client.HTTPException)):
        call(admin, "GET", "/api/v1/namespaces/" + ns)
    wait_for(lambda: call(client(cluster), "GET", "/api/v1/namespaces/" + ns)[0] == 200, 10, "the end of the 503s")
    assert proxy.stats["answered_503"] >= 1


def test_refuse_fault_closes_the_port_then_opens_it_again(cluster, ns, proxy):
    proxy.fault("refuse", seconds=2)
    with pytest.raises(ConnectionRefusedError):
        call(client(cluster), "GET", "/api/v1/namespaces/" + ns)

    def back():
        try:
            return call(client(cluster), "GET", "/api/v1/namespaces/" + ns)[0] == 200
        except OSError:
            return False
    wait_for(back, 10, "the port open again")


def test_latency_fault_delays_each_request(cluster, ns, proxy):
    proxy.fault("latency", ms=200, seconds=5)
    for _ in range(3):
        assert call(client(cluster), "GET", "/api/v1/namespaces/" + ns)[0] == 200
    assert proxy.stats["delayed"] == 3
    proxy.clear()
    assert call(client(cluster), "GET", "/api/v1/namespaces/" + ns)[0] == 200
    assert proxy.stats["delayed"] == 3


def test_slow_write_answers_arrive_after_their_watch_events(cluster, ns, proxy):
    w = Watch(cluster, ns)
    wait_for(lambda: len(proxy.watches) == 1, 10, "the watch relayed")
    proxy.fault("slow-write-answers", ms=1500, seconds=10)
    code, _ = call(client(cluster, timeout=30), "POST", "/api/v1/namespaces/%s/configmaps" % ns, cm("slow"))
    answered = time.monotonic()
    assert code == 201
    seen = w.saw("ADDED", "slow")
    assert seen and seen[0] < answered, "the write was answered before its watch event went out"
    assert proxy.stats["held_answers"] == 1
    # reads are not held
    assert call(client(cluster), "GET", "/api/v1/namespaces/%s/configmaps/slow" % ns)[0] == 200
    assert proxy.stats["held_answers"] == 1


def test_unknown_fault_is_refused_by_name(proxy):
    with pytest.raises(ValueError, match="apiproxy fault 'partition'"):
        proxy.fault("partition", seconds=1)
