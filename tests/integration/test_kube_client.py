"""The Kubernetes client (controller/kube/http, kubeconfig, kube, informer) against the real control
plane (tests/hftest/realcluster.py; root: the probe runs inside the cluster's network namespace,
the token is a ServiceAccount's bound to cluster-admin, a dropped watch is an API server
restart, and a compaction is followed by one).

Each test runs tests/tools/kubeclient_probe (built by meson; directory from HOLDFAST_TOOLS_DIR,
default tests/tools beside $HOLDFAST_BIN, else <repo>/build/tests/tools), which prints one JSON line per informer handler call and
answers commands given on stdin (see the probe's header comment). Writes come from kubectl, the
python kubernetes client, the test cluster's REST helper, or the probe itself.

One test cluster serves the module; each test has its own namespace. Fault
tests (drop watches, outage, compaction) run one at a time, as pytest runs this file in order.
Every wait is bounded polling; the probe's stderr must hold no sanitizer report.
"""
import json
import os
import re
import subprocess
import threading
import time

import pytest

from hftest.kubeclient import wait_for
from hftest.realcluster import RealCluster

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# Beside the binary under test when HOLDFAST_BIN names one (scripts/test --sanitize: the ASan build).
_BUILD = os.path.dirname(os.environ["HOLDFAST_BIN"]) if os.environ.get("HOLDFAST_BIN") else os.path.join(REPO, "build")
TOOLS = os.environ.get("HOLDFAST_TOOLS_DIR", os.path.join(_BUILD, "tests", "tools"))
PROBE = os.path.join(TOOLS, "kubeclient_probe")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


class Probe:
    """One kubeclient_probe process: events and answers read by a thread, commands by id."""

    def __init__(self, tmp_path, args, prefix=()):
        if not os.path.exists(PROBE):
            pytest.fail("%s is missing: build it (ninja -C build) or set HOLDFAST_TOOLS_DIR" % PROBE)
        self.stderr_path = os.path.join(str(tmp_path), "probe-%d.stderr" % id(self))
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(list(prefix) + [PROBE] + list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, bufsize=1)
        self.lines = []          # every JSON line, in order
        self.answers = {}        # id -> answer
        self.cv = threading.Condition()
        self.ids = iter(range(1, 1 << 30))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                obj = {"event": "garbage", "line": line}
            with self.cv:
                self.lines.append(obj)
                if "id" in obj:
                    self.answers[obj["id"]] = obj
                self.cv.notify_all()

    def send(self, verb, *args):
        """Sends a command; returns its id."""
        i = str(next(self.ids))
        self.proc.stdin.write(" ".join([i, verb] + [a if isinstance(a, str) else json.dumps(a)
                                                    for a in args]) + "\n")
        self.proc.stdin.flush()
        return i

    def wait_answer(self, i, timeout=20):
        with self.cv:
            if not self.cv.wait_for(lambda: i in self.answers or self.proc.poll() is not None, timeout):
                pytest.fail("no answer to command %s after %ss; stderr:\n%s" % (i, timeout, self.stderr()))
            if i not in self.answers:
                pytest.fail("probe exited (%s); stderr:\n%s" % (self.proc.returncode, self.stderr()))
            return self.answers[i]

    def cmd(self, verb, *args, timeout=20):
        return self.wait_answer(self.send(verb, *args), timeout)

    def events(self, kind=None, key=None):
        with self.cv:
            return [e for e in self.lines if "event" in e and (kind is None or e["event"] == kind)
                    and (key is None or e.get("key") == key)]

    def wait_event(self, pred, timeout=20, what="event"):
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for e in self.lines:
                    if "event" in e and pred(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    pytest.fail("timed out waiting for %s; events: %s\nstderr:\n%s"
                                % (what, self.events()[-20:], self.stderr()[-4000:]))
                self.cv.wait(min(left, 0.2))

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def logs(self, msg_part):
        out = []
        for line in self.stderr().splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if msg_part in obj.get("msg", ""):
                out.append(obj)
        return out

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("0 quit\n")
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        self._stderr.close()
        err = self.stderr()
        for m in SANITIZER_MARKERS:
            assert m not in err, "sanitizer report in the probe's stderr:\n" + err[-8000:]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = RealCluster(tmp_path_factory.mktemp("cluster"))
    s.start()
    try:
        yield s
    finally:
        leftovers = s.stop()
    assert leftovers == [], "left behind by the cluster: %s" % leftovers


def ca_file(sim):
    return os.path.join(sim.cluster.pki, "ca.crt")


_tokens = {}


def token(sim):
    """A bearer token the API server takes as an administrator: a ServiceAccount's
    (kube-system/probe-admin, bound to cluster-admin) from TokenRequest."""
    if sim not in _tokens:
        sa = "/api/v1/namespaces/kube-system/serviceaccounts"
        if not sim.exists(sa + "/probe-admin"):
            sim.create(sa, {"metadata": {"name": "probe-admin"}})
            sim.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
                "metadata": {"name": "probe-admin"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": "probe-admin", "namespace": "kube-system"}]})
        _tokens[sim] = sim.create(sa + "/probe-admin/token", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600}})["status"]["token"]
    return _tokens[sim]


def python_client(sim):
    import kubernetes
    cfg = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=sim.kubeconfig, client_configuration=cfg)
    return kubernetes.client.ApiClient(cfg)


_ns_counter = iter(range(1, 1 << 30))


@pytest.fixture
def ns(sim, request):
    sim.clear_faults()
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    name = "kc%d-%s" % (next(_ns_counter), slug)
    sim.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    # The controller-manager publishes the cluster's CA into every namespace as a ConfigMap:
    # waited for here, so it is there before the test starts (the tests leave it out). After
    # an earlier test restarted the API server the controller-manager may take a minute to
    # act again (docs/test-cluster.md).
    wait_for(lambda: sim.exists(cm_path(name, ROOT_CA)), timeout=120, what="%s/%s" % (name, ROOT_CA))
    yield name
    sim.clear_faults()
    sim.request("DELETE", "/api/v1/namespaces/" + name)


ROOT_CA = "kube-root-ca.crt"


def mine(keys):
    """keys (ns/name or name) without the root CA ConfigMap of a real cluster's namespaces."""
    return [k for k in keys if k.rsplit("/", 1)[-1] != ROOT_CA]


@pytest.fixture
def probe(sim, tmp_path):
    probes = []

    def start(*args):
        p = Probe(tmp_path, args, prefix=getattr(sim, "exec_prefix", ()))
        probes.append(p)
        p.wait_event(lambda e: e["event"] in ("ready", "config_error"), what="probe ready")
        return p
    yield start
    for p in probes:
        p.close()


def cm(name, **data):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def cm_path(ns, name=None):
    return "/api/v1/namespaces/%s/configmaps%s" % (ns, "/" + name if name else "")


def server_state(sim, ns):
    """{name: resourceVersion} of the namespace's ConfigMaps, as the API server has them."""
    items = sim.get(cm_path(ns))["items"]
    return {"%s/%s" % (ns, o["metadata"]["name"]): o["metadata"]["resourceVersion"] for o in items}


def cache_matches_server(p, sim, ns):
    cache = p.cmd("cache")
    return cache["objects"] == server_state(sim, ns)


def watching(sim, p, ns, *extra, kubeconfig=None):
    return p("--kubeconfig", kubeconfig or sim.kubeconfig, "--watch", "--namespace", ns, *extra)


_sentinels = iter(range(1, 1 << 30))


def watch_open(sim, p, ns):
    """Waits until the probe's watch delivers an event: a fault injected before that could hit a
    request still in the accept queue rather than an open watch."""
    name = "sentinel-%d" % next(_sentinels)
    sim.create(cm_path(ns), cm(name))
    p.wait_event(lambda e: e["event"] == "add" and e["key"] == "%s/%s" % (ns, name), what="watch open")


# ---------------------------------------------------------------- informer


def test_informer_sees_adds_updates_deletes(sim, ns, probe, tmp_path):
    sim.create(cm_path(ns), cm("before", k="0"))
    p = watching(sim, probe, ns)
    p.wait_event(lambda e: e["event"] == "synced", what="synced")
    assert mine(e["key"] for e in p.events("add")) == [ns + "/before"]

    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: by-kubectl, namespace: %s}\n"
                        "data: {k: v1}\n" % ns)
    sim.kubectl("apply", "-f", str(manifest))
    p.wait_event(lambda e: e["event"] == "add" and e["key"] == ns + "/by-kubectl", what="kubectl add")

    from kubernetes import client
    core = client.CoreV1Api(python_client(sim))
    core.patch_namespaced_config_map("by-kubectl", ns, {"data": {"k": "v2"}})
    upd = p.wait_event(lambda e: e["event"] == "update" and e["key"] == ns + "/by-kubectl",
                       what="python-client update")
    assert upd["data"] == {"k": "v2"} and upd["old_rv"] != upd["rv"]

    sim.kubectl("delete", "configmap", "before", "-n", ns)
    p.wait_event(lambda e: e["event"] == "delete" and e["key"] == ns + "/before", what="kubectl delete")
    wait_for(lambda: cache_matches_server(p, sim, ns), what="cache == server")
    assert p.cmd("cache")["synced"] is True
    assert len(p.logs("informer synced")) == 1


def test_informer_label_selector_and_pagination(sim, ns, probe):
    for i in range(7):
        obj = cm("cm%d" % i, i=str(i))
        obj["metadata"]["labels"] = {"team": "a" if i % 2 == 0 else "b"}
        sim.create(cm_path(ns), obj)
    p = watching(sim, probe, ns, "--selector", "team=a", "--page-size", "2")
    synced = p.wait_event(lambda e: e["event"] == "synced", what="synced")
    assert synced["count"] == 4
    assert sorted(e["key"] for e in p.events("add")) == ["%s/cm%d" % (ns, i) for i in (0, 2, 4, 6)]
    listed = p.cmd("list", ns, "3")
    assert listed["ok"] and listed["pages"] == 3 and sorted(mine(listed["names"])) == ["cm%d" % i for i in range(7)]


def test_compaction_410_relists_without_losing_or_duplicating(sim, ns, probe):
    for name in ("keep", "change", "gone", "recreated"):
        sim.create(cm_path(ns), cm(name, v="1"))
    p = watching(sim, probe, ns)
    p.wait_event(lambda e: e["event"] == "synced", what="synced")
    assert p.cmd("stop")["ok"]
    # Changes the informer cannot see as events: its next watch starts from a compacted RV.
    sim.create(cm_path(ns), cm("new", v="1"))
    sim.patch(cm_path(ns, "change"), {"data": {"v": "2"}})
    sim.delete(cm_path(ns, "gone"))
    sim.delete(cm_path(ns, "recreated"))
    sim.create(cm_path(ns), cm("recreated", v="2"))
    sim.compact()
    # the API server's watch cache still serves what it holds: restarted, it starts from the
    # compacted revision, and a watch from an older one gets 410
    sim.drop_watches()
    before = len(p.lines)
    assert p.cmd("start")["ok"]
    wait_for(lambda: p.logs("relisted"), what="a relist")
    wait_for(lambda: cache_matches_server(p, sim, ns), what="cache == server after the relist")
    after = [e for e in p.lines[before:] if "event" in e and mine([e.get("key", "")])]
    got = sorted((e["event"], e["key"]) for e in after)
    assert got == sorted([("add", ns + "/new"), ("update", ns + "/change"), ("delete", ns + "/gone"),
                          ("delete", ns + "/recreated"), ("add", ns + "/recreated")]), after
    assert p.logs("watch expired (410), relisting")
    # And the watch after the relist works.
    sim.create(cm_path(ns), cm("after", v="1"))
    p.wait_event(lambda e: e["event"] == "add" and e["key"] == ns + "/after", what="add after relist")
    assert len(p.events("add", ns + "/new")) == 1 and len(p.events("add", ns + "/keep")) == 1


def test_dropped_watch_reconnects(sim, ns, probe):
    p = watching(sim, probe, ns)
    p.wait_event(lambda e: e["event"] == "synced", what="synced")
    for i in range(3):
        watch_open(sim, p, ns)
        sim.drop_watches()  # its API server restarted
        sim.create(cm_path(ns), cm("after-drop-%d" % i))
        p.wait_event(lambda e: e["event"] == "add" and e["key"] == "%s/after-drop-%d" % (ns, i),
                     what="add after drop %d" % i)
    assert p.logs("watch ended early, reconnecting")
    assert len([e for e in p.events("add") if "after-drop" in e["key"]]) == 3
    wait_for(lambda: cache_matches_server(p, sim, ns), what="cache == server")


@pytest.mark.parametrize("mode", ["refuse", "503"])
def test_api_outage_is_survived(sim, ns, probe, mode):
    sim.create(cm_path(ns), cm("a", v="1"))
    # through the API proxy, which makes these outages
    p = watching(sim, probe, ns, kubeconfig=sim.proxy_kubeconfig)
    p.wait_event(lambda e: e["event"] == "synced", what="synced")
    watch_open(sim, p, ns)
    if mode == "refuse":
        # the API proxy refuses for exactly 2 s; a real API server's stop and start take seconds
        # each, so the probe's command below could land after it is back (test_dropped_watch_
        # reconnects restarts it)
        sim.api_proxy.fault("refuse", seconds=2)
    else:
        sim.outage(2, mode=mode)
    wait_for(lambda: p.logs("retrying with backoff"), what="the failure to be logged")
    # Commands during the outage fail as transport / 503 errors, they are not lost.
    ans = p.cmd("get", ns, "a")
    assert not ans["ok"] and ans["code"] in ("Transport", "ServiceUnavailable"), ans
    sim.wait_outage(timeout=60)
    wait_for(lambda: sim.request("GET", cm_path(ns, "a"))[0] == 200, what="API back")
    sim.patch(cm_path(ns, "a"), {"data": {"v": "2"}})
    sim.create(cm_path(ns), cm("b", v="1"))
    p.wait_event(lambda e: e["event"] == "update" and e["key"] == ns + "/a", timeout=40, what="update after outage")
    p.wait_event(lambda e: e["event"] == "add" and e["key"] == ns + "/b", timeout=40, what="add after outage")
    wait_for(lambda: p.logs("informer recovered"), what="recovery logged")
    assert len(p.logs("retrying with backoff")) == 1, "a failing streak is logged once"
    assert p.cmd("get", ns, "a")["ok"]


# ---------------------------------------------------------------- REST calls


def test_stale_update_is_conflict_and_update_retry_recovers(sim, ns, probe):
    sim.create(cm_path(ns), cm("c", v="1"))
    p = probe("--kubeconfig", sim.kubeconfig)
    got = p.cmd("get", ns, "c")
    assert got["ok"]
    stale = got["object"]
    sim.patch(cm_path(ns, "c"), {"data": {"v": "other-writer"}})
    stale["data"]["v"] = "mine"
    ans = p.cmd("update", ns, "c", stale)
    assert not ans["ok"] and ans["code"] == "Conflict" and ans["http"] == 409 and ans["reason"] == "Conflict", ans
    ans = p.cmd("setdata", ns, "c", "v", "mine")
    assert ans["ok"] and ans["object"]["data"]["v"] == "mine"
    assert sim.get(cm_path(ns, "c"))["data"]["v"] == "mine"

    missing = p.cmd("get", ns, "nope")
    assert missing["code"] == "NotFound" and missing["http"] == 404
    dup = p.cmd("create", ns, cm("c"))
    assert dup["code"] == "AlreadyExists" and dup["http"] == 409
    patched = p.cmd("patch", ns, "c", "json", [{"op": "replace", "path": "/data/v", "value": "jp"}])
    assert patched["ok"] and patched["object"]["data"]["v"] == "jp"
    patched = p.cmd("patch", ns, "c", "merge", {"data": {"w": "m"}})
    assert patched["ok"] and patched["object"]["data"] == {"v": "jp", "w": "m"}
    assert p.cmd("delete", ns, "c")["ok"]
    assert p.cmd("get", ns, "c")["code"] == "NotFound"


def test_subresources_and_strategic_patch_on_a_group_resource(sim, ns, probe):
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "main", "image": "not-mapped:1"}]}}}}
    sim.create("/apis/apps/v1/namespaces/%s/deployments" % ns, dep)
    p = probe("--kubeconfig", sim.kubeconfig, "--resource", "apps/v1/deployments")
    scale = p.cmd("get", ns, "web/scale")
    assert scale["ok"] and scale["object"]["kind"] == "Scale" and scale["object"]["spec"].get("replicas", 0) == 0
    ans = p.cmd("patch", ns, "web/scale", "merge", {"spec": {"replicas": 2}})
    assert ans["ok"] and ans["object"]["spec"]["replicas"] == 2, ans
    assert sim.get("/apis/apps/v1/namespaces/%s/deployments/web" % ns)["spec"]["replicas"] == 2
    assert p.cmd("get", ns, "web/status")["ok"]
    ans = p.cmd("patch", ns, "web", "strategic",
                {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "other:2"}]}}}})
    assert ans["ok"], ans
    containers = ans["object"]["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("main", "other:2")]
    assert p.cmd("patch", ns, "web/scale", "merge", {"spec": {"replicas": 0}})["ok"]


def test_rate_limiter_delays_but_never_drops(sim, ns, probe):
    sim.create(cm_path(ns), cm("r"))
    p = probe("--kubeconfig", sim.kubeconfig, "--qps", "10", "--burst", "1")
    start = time.monotonic()
    ids = [p.send("get", ns, "r") for _ in range(12)]
    answers = [p.wait_answer(i) for i in ids]
    assert all(a["ok"] for a in answers)
    # 11 requests beyond the burst at 10/s: at least ~1.1 s (a lower bound only).
    assert time.monotonic() - start >= 0.9


# ---------------------------------------------------------------- configuration and TLS


def write_kubeconfig(path, server, ca_b64=None, token=None, insecure=False):
    cluster = {"server": server}
    if ca_b64:
        cluster["certificate-authority-data"] = ca_b64
    if insecure:
        cluster["insecure-skip-tls-verify"] = True
    user = {"token": token} if token else {}
    cfg = {"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "c", "cluster": cluster}],
           "users": [{"name": "u", "user": user}],
           "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}], "current-context": "x"}
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return str(path)


def b64_file(path):
    import base64
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def test_kubeconfig_ca_data_and_token_work(sim, ns, probe, tmp_path):
    kc = write_kubeconfig(tmp_path / "good", sim.api_url, b64_file(ca_file(sim)), token(sim))
    p = probe("--kubeconfig", kc, "--watch", "--namespace", ns)
    p.wait_event(lambda e: e["event"] == "synced", what="synced")
    assert p.cmd("create", ns, cm("tls-ok"))["ok"]
    p.wait_event(lambda e: e["event"] == "add" and e["key"] == ns + "/tls-ok", what="add")


def test_wrong_ca_is_refused(sim, ns, probe, tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "k"),
                    "-out", str(tmp_path / "wrong-ca.pem"), "-days", "1", "-subj", "/CN=wrong-ca"],
                   check=True, capture_output=True)
    kc = write_kubeconfig(tmp_path / "wrongca", sim.api_url, b64_file(tmp_path / "wrong-ca.pem"), token(sim))
    p = probe("--kubeconfig", kc)
    ans = p.cmd("get", ns, "anything")
    assert not ans["ok"] and ans["code"] == "Transport" and ans["http"] == 0, ans
    assert "certificate" in ans["message"].lower() or "ssl" in ans["message"].lower(), ans


def test_wrong_token_is_unauthorized(sim, ns, probe, tmp_path):
    kc = write_kubeconfig(tmp_path / "badtoken", sim.api_url, b64_file(ca_file(sim)), "not-the-token")
    p = probe("--kubeconfig", kc)
    ans = p.cmd("get", ns, "anything")
    assert not ans["ok"] and ans["code"] == "Unauthorized" and ans["http"] == 401, ans


def test_insecure_skip_verify_works_and_is_logged(sim, ns, probe, tmp_path):
    kc = write_kubeconfig(tmp_path / "insecure", sim.api_url, None, token(sim), insecure=True)
    p = probe("--kubeconfig", kc)
    assert p.cmd("create", ns, cm("insecure"))["ok"]
    warn = p.logs("TLS verification of the Kubernetes API server is OFF")
    assert len(warn) == 1 and warn[0]["level"] == "warn"


def test_unsupported_exec_plugin_is_named(sim, probe, tmp_path):
    path = tmp_path / "exec"
    path.write_text("clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                    "users: [{name: u, user: {exec: {command: aws}}}]\n"
                    "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n")
    p = probe("--kubeconfig", str(path))
    err = p.events("config_error")[0]["message"]
    assert err.startswith(str(path)) and "users[u].user.exec" in err


def test_in_cluster_token_rotation(sim, ns, probe, tmp_path, monkeypatch):
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("stale-token\n")
    (sa / "ca.crt").write_bytes(open(ca_file(sim), "rb").read())
    (sa / "namespace").write_text(ns)
    host, port = sim.api_url.split("//")[1].rsplit(":", 1)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    p = probe("--in-cluster", str(sa))
    assert p.cmd("get", ns, "x")["code"] == "Unauthorized"
    (sa / "token.new").write_text(token(sim) + "\n")
    os.replace(sa / "token.new", sa / "token")  # as the kubelet does: a new file, atomically
    wait_for(lambda: p.cmd("get", ns, "x")["code"] == "NotFound", timeout=10,
             what="the rotated token to be used")
