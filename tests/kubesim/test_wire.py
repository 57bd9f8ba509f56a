"""What goes over the wire, for clients written by hand (holdfast's controller uses libcurl)."""
import json
import socket
import ssl
import time
import urllib.parse

from conftest import deployment


def raw(sim, path, method="GET", body=None, headers=None, read_until=None, timeout=10):
    """One HTTP/1.1 request over TLS; returns (status line, headers dict, raw body bytes)."""
    u = urllib.parse.urlsplit(sim.api_url)
    ctx = ssl.create_default_context(cafile=sim.ca_file)
    s = ctx.wrap_socket(socket.create_connection((u.hostname, u.port), timeout=timeout), server_hostname=u.hostname)
    data = json.dumps(body).encode() if body is not None else b""
    hdrs = {"Host": u.netloc, "Authorization": "Bearer " + sim.token, "Accept": "application/json",
            "Content-Length": str(len(data)), "Connection": "close"}
    hdrs.update(headers or {})
    s.sendall(("%s %s HTTP/1.1\r\n" % (method, path)).encode()
              + "".join("%s: %s\r\n" % kv for kv in hdrs.items()).encode() + b"\r\n" + data)
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
        if read_until and read_until(buf):
            break
    s.close()
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    return lines[0], {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}, rest


def dechunk(data):
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        n = int(size_line, 16)
        if n == 0:
            break
        out += data[:n]
        data = data[n + 2:]
    return out


def test_watch_is_chunked_ndjson_with_bookmarks_and_timeout(make_sim):
    sim = make_sim(extra_args=["--bookmark-interval", "0.3"])
    rv = sim.get("/api/v1/namespaces/default/configmaps")["metadata"]["resourceVersion"]
    assert isinstance(rv, str)
    sim.create("/api/v1/namespaces/default/configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                          "metadata": {"name": "a"}})
    status, headers, body = raw(sim, "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=%s"
                                "&allowWatchBookmarks=true&timeoutSeconds=1" % rv)
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == "application/json" and headers["transfer-encoding"] == "chunked"
    assert body.endswith(b"0\r\n\r\n"), "the watch ends cleanly at timeoutSeconds"
    events = [json.loads(l) for l in dechunk(body).decode().splitlines()]
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "a"
    assert events[0]["object"]["kind"] == "ConfigMap" and events[0]["object"]["apiVersion"] == "v1"
    bms = [e for e in events if e["type"] == "BOOKMARK"]
    assert bms and bms[0]["object"]["metadata"]["resourceVersion"].isdigit()


def test_errors_are_json_status_objects(cluster):
    status, headers, body = raw(cluster, "/apis/apps/v1/namespaces/default/deployments/none")
    assert status.startswith("HTTP/1.1 404") and headers["content-type"] == "application/json"
    st = json.loads(body)
    assert (st["kind"], st["status"], st["reason"], st["code"]) == ("Status", "Failure", "NotFound", 404)
    status, _, body = raw(cluster, "/api/v1/namespaces", headers={"Authorization": "Bearer nope"})
    assert status.startswith("HTTP/1.1 401") and json.loads(body)["reason"] == "Unauthorized"
    status, _, body = raw(cluster, "/apis/example.com/v1/namespaces/default/widgets/x", method="PATCH",
                          body={"a": 1}, headers={"Content-Type": "text/plain"})
    assert status.startswith("HTTP/1.1 4")


def test_rules_file_forbids_verbs(make_sim, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("""
tokens:
  limited-token:
    user: system:serviceaccount:holdfast:holdfast
    rules:
    - apiGroups: ["apps"]
      resources: ["deployments", "deployments/scale"]
      verbs: ["get", "list", "watch", "patch"]
""")
    sim = make_sim(rules=str(rules))
    sim.create("/apis/apps/v1/namespaces/default/deployments", deployment("web", replicas=0))
    code, _ = sim.request("GET", "/apis/apps/v1/namespaces/default/deployments/web/scale", token="limited-token")
    assert code == 200
    code, _ = sim.request("PATCH", "/apis/apps/v1/namespaces/default/deployments/web/scale", {"spec": {"replicas": 0}},
                          "application/merge-patch+json", token="limited-token")
    assert code == 200
    code, body = sim.request("DELETE", "/apis/apps/v1/namespaces/default/deployments/web", token="limited-token")
    assert code == 403 and body["reason"] == "Forbidden"
    assert body["message"] == ('deployments.apps "web" is forbidden: User "system:serviceaccount:holdfast:holdfast" '
                               'cannot delete resource "deployments" in API group "apps" in the namespace "default"')
    code, body = sim.request("PATCH", "/apis/apps/v1/namespaces/default/deployments/web/status", {"status": {}},
                             "application/merge-patch+json", token="limited-token")
    assert code == 403 and 'resource "deployments/status"' in body["message"]
    code, _ = sim.request("GET", "/api/v1/namespaces/default/pods", token="limited-token")
    assert code == 403
    code, _ = sim.request("GET", "/api/v1/namespaces", token="other-token")
    assert code == 401


def test_apply_patch_types_on_deployment(cluster, ns):
    base = "/apis/apps/v1/namespaces/%s/deployments" % ns
    d = deployment("p")
    d["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    cluster.create(base, d)
    # strategic merge: containers merge by name, env by name
    out = cluster.patch(base + "/p", {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "env": [{"name": "B", "value": "2"}]}]}}}}, kind="strategic")
    env = out["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert out["spec"]["template"]["spec"]["containers"][0]["image"] == "kubesim/http:1"
    # merge patch replaces lists
    out = cluster.patch(base + "/p", {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "kubesim/http:1", "env": [{"name": "C", "value": "3"}]}]}}}})
    assert out["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "C", "value": "3"}]
    # json patch with a failing test op is refused
    code, body = cluster.request("PATCH", base + "/p", [{"op": "test", "path": "/spec/replicas", "value": 7}],
                                 "application/json-patch+json")
    assert code == 422
    # merge patch with a stale resourceVersion conflicts (optimistic lock)
    code, body = cluster.request("PATCH", base + "/p", {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 2}},
                                 "application/merge-patch+json")
    assert code == 409 and body["reason"] == "Conflict"
    # strategic merge patch is refused for custom resources (415), as the real server does
    code, body = cluster.request("PATCH", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/none",
                                 {}, "application/strategic-merge-patch+json")
    assert code == 404
