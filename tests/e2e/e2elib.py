"""Helpers of the end-to-end suite: the real test cluster (upstream control plane, the node agent
as kubelet) with the chart installed by Helm, apps, waits and HTTP clients that classify every
answer. See docs/e2e.md."""
import json
import os
import subprocess
import threading
import time

from hftest import REPO as ROOT
from hftest.conntrace import ConnTracker, TracedConnection
from hftest.holdfast import json_lines
from hftest.kubeclient import wait_for  # noqa: F401 - the one poller; realcluster uses it too
from hftest.realcluster import RealCluster

HERE = os.path.dirname(os.path.abspath(__file__))

PY = "/usr/bin/python3"
CHART = os.path.join(ROOT, "helm", "holdfast")
HOLDFAST = os.environ.get("HOLDFAST_BIN") or os.path.join(ROOT, "build", "holdfast")
ECHO = os.path.join(HERE, "echo_server.py")
PROXY_DELAY_MS = int(os.environ.get("E2E_PROXY_DELAY_MS", "700"))
HF_NS = "holdfast"
ES_API = "/apis/elasti.truefoundry.com/v1alpha1"
# the image map: which command each image runs on the node agent
IMAGES = {"e2e/echo": {"argv": [PY, ECHO], "startDelayMs": 300},
          # any Python app of the suite: the container's command/args name the script and its flags
          "e2e/python": {"argv": [PY, "$@"], "startDelayMs": 300},
          "ghcr.io/holdfast/holdfast": {"argv": [HOLDFAST, "$@"]}}
# the values every release of the suite is installed with (besides a test's own)
INSTALL_SETS = ["pollingInterval=1s"]


# ---------------------------------------------------------------- the cluster

def can_run():
    """None if this machine can run the suite, else why not."""
    if not os.access(HOLDFAST, os.X_OK):
        return "no holdfast binary at %s (build it, or set HOLDFAST_BIN)" % HOLDFAST
    if os.geteuid() != 0:
        return "the real test cluster needs root (network namespaces)"
    return None


# where the kernel sent each client connection (conntrace), one follower per cluster up, the
# latest (whose namespace the test's thread is in) last: a failed request says where it went
_trackers = []  # [(cluster, ConnTracker)]


def start_cluster(state):
    """`scripts/cluster up` (kube-proxy delay PROXY_DELAY_MS) with the suite's image map; the
    calling thread (pytest's main thread) moves into the cluster's network namespace, so every
    client the tests start runs there, and so does the conntrack follower that names where a
    failed connection went."""
    sim = RealCluster(str(state), image_map=IMAGES, proxy_delay_ms=PROXY_DELAY_MS).start()
    t = ConnTracker()
    t.start()
    _trackers.append((sim, t))
    return sim


def stop_cluster(sim):
    """Stops the cluster's conntrack follower and the cluster; returns what is left of the
    cluster (RealCluster.stop)."""
    for i, (s, t) in enumerate(_trackers):
        if s is sim:
            del _trackers[i]
            t.stop()
            break
    return sim.stop()


def _where(host, conn):
    """" (to 10.88.0.5:8080)" or " (no new conntrack entry; ...)" for a failed request's
    connection, when the follower runs and the connection got a local port."""
    w = _trackers[-1][1].explain(host, conn.port, conn.local_port) if _trackers else None
    return " (%s)" % w if w else ""


def helm(sim, *args, check=True, timeout=180):
    """The upstream helm, as admin, inside the cluster's namespace (the calling thread is
    there), with caches of the cluster's own."""
    env = sim.cluster.env()
    for k in ("CACHE", "CONFIG", "DATA"):
        env["HELM_%s_HOME" % k] = os.path.join(sim.state_dir, "helm", k.lower())
    r = subprocess.run([os.path.join(sim.cluster.bin, "helm")] + list(args), capture_output=True, text=True,
                       env=env, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("helm %s: exit %d\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def install_chart(sim, ns=HF_NS, value_files=(), sets=(), replicas=2):
    """`helm install holdfast helm/holdfast` in `ns` with the chart's values (default: 2 replicas,
    cluster-wide RBAC) and pollingInterval 1s so the suite is quick; --wait, then the resolver
    Service's endpoints and a leader. The pods run build/holdfast with the ServiceAccount token
    the node agent projects: the chart's RBAC is all they have."""
    args = ["install", "holdfast", CHART, "-n", ns, "--create-namespace", "--wait", "--timeout", "120s"]
    for f in value_files:
        args += ["-f", f]
    for s in INSTALL_SETS + list(sets):
        args += ["--set", s]
    helm(sim, *args)
    sim.wait_ready_replicas(ns, "holdfast", replicas, timeout=60)
    sim.wait_service_endpoints(ns, "holdfast", replicas, timeout=60)
    wait_for(lambda: leader(sim, ns), timeout=30, what="a holdfast leader in %s" % ns)


def leader(sim, ns=HF_NS):
    path = "/apis/coordination.k8s.io/v1/namespaces/%s/leases/holdfast-leader" % ns
    return sim.exists(path) and sim.get(path)["spec"].get("holderIdentity")


def holdfast_pods(sim):
    return [p for p in sim.get("/api/v1/namespaces/%s/pods" % HF_NS)["items"]
            if not p["metadata"].get("deletionTimestamp")]


def pod_log_files(sim, prefix, skip=()):
    """(pod dir name, log file name, path) of the containers' logs of the pods whose
    "<namespace>_<name>" starts with prefix, as the node agent keeps them
    (DIR/node/pods/<ns>_<name>_<uid>/<container>-<restart>.log)."""
    d = os.path.join(sim.state_dir, "node", "pods")
    for pod in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if not pod.startswith(prefix) or any(s in pod for s in skip):
            continue
        for f in sorted(os.listdir(os.path.join(d, pod))):
            if f.endswith(".log"):
                yield pod, f, os.path.join(d, pod, f)


def pod_logs(sim, prefix, tail=4000, skip=()):
    """The containers' output of the pods whose "<namespace>_<name>" starts with prefix, the
    last `tail` characters of each log."""
    out = []
    for pod, f, path in pod_log_files(sim, prefix, skip):
        with open(path, errors="replace") as fh:
            out.append("--- %s/%s\n%s" % (pod, f, fh.read()[-tail:]))
    return "\n".join(out)


def holdfast_logs(sim, tail=4000):
    return pod_logs(sim, HF_NS + "_", tail)


def holdfast_log(sim):
    """Every JSON log line of every holdfast pod of the package's release (all its containers'
    runs), parsed."""
    out = []
    for _, _, path in pod_log_files(sim, HF_NS + "_"):
        with open(path, errors="replace") as fh:
            out += json_lines(fh)
    return out


def wait_namespace_usable(sim, ns, timeout=30):
    """A new namespace gets its `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap from
    the controller-manager a moment later; a pod created before would be refused (ServiceAccount
    admission) and retried with the ReplicaSet controller's back-off, and the node agent waits
    for the ConfigMap. The tests start their apps once both exist."""
    wait_for(lambda: sim.exists("/api/v1/namespaces/%s/serviceaccounts/default" % ns)
             and sim.exists("/api/v1/namespaces/%s/configmaps/kube-root-ca.crt" % ns),
             timeout=timeout, interval=0.1, what="namespace %s's default ServiceAccount and kube-root-ca.crt" % ns)


# ---------------------------------------------------------------- apps

def make_app(sim, ns, replicas=1, name="web"):
    """Deployment `web` (the echo server, readiness probe on /ready) + Service web:80 -> 8080."""
    labels = {"app": name}
    c = {"name": "app", "image": "e2e/echo", "ports": [{"containerPort": 8080}],
         "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1}}
    sim.create("/apis/apps/v1/namespaces/%s/deployments" % ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [c]}}}})
    sim.create("/api/v1/namespaces/%s/services" % ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    if replicas:
        sim.wait_ready_replicas(ns, name, replicas, timeout=30)
        sim.wait_service_endpoints(ns, name, replicas, timeout=30)


def create_es(sim, ns, name="web", **spec):
    """An ElastiService without triggers: only a hand scales the target down."""
    s = {"service": name, "cooldownPeriod": 0, "minTargetReplicas": 1,
         "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}}
    s.update(spec)
    return sim.create("%s/namespaces/%s/elastiservices" % (ES_API, ns), {
        "apiVersion": "elasti.truefoundry.com/v1alpha1", "kind": "ElastiService",
        "metadata": {"name": name}, "spec": s})


def es_path(ns, name="web"):
    return "%s/namespaces/%s/elastiservices/%s" % (ES_API, ns, name)


def status(sim, ns, name="web"):
    return sim.get(es_path(ns, name)).get("status") or {}


def replicas(sim, ns, name="web"):
    return sim.get("/apis/apps/v1/namespaces/%s/deployments/%s" % (ns, name))["spec"].get("replicas", 0)


def app_pods(sim, ns):
    return sim.get("/api/v1/namespaces/%s/pods" % ns)["items"]


def resolver_slices(sim, ns, svc="web"):
    sl = sim.get("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices?labelSelector="
                 "kubernetes.io/service-name%%3D%s" % (ns, svc))["items"]
    return [s for s in sl if s["metadata"].get("labels", {}).get("endpointslice.kubernetes.io/managed-by")
            == "holdfast"]


def resolver_ips(sim, ns, svc="web"):
    return sorted(ep["addresses"][0] for s in resolver_slices(sim, ns, svc) for ep in s.get("endpoints") or []
                  if (ep.get("conditions") or {}).get("ready", True))


def wait_mode(sim, ns, mode, name="web", timeout=30):
    return wait_for(lambda: status(sim, ns, name).get("mode") == mode, timeout=timeout, interval=0.1,
                    what="%s/%s status.mode %s" % (ns, name, mode))


def settle():
    """kube-proxy applies a slice change PROXY_DELAY_MS after it happens."""
    time.sleep(PROXY_DELAY_MS / 1000.0 + 0.4)


def wait_proxy(sim, ns, name="web"):
    """Proxy mode in effect: mode proxy, no app pod left, a resolver slice listing every ready
    resolver pod, and kube-proxy has applied it."""
    wait_mode(sim, ns, "proxy", name)
    wait_for(lambda: not app_pods(sim, ns), timeout=30, interval=0.1, what="the app's pods gone")
    wait_for(lambda: len(resolver_ips(sim, ns, name)) >= 1, timeout=15, interval=0.1, what="resolver slice")
    settle()


def wait_serve(sim, ns, name="web"):
    wait_mode(sim, ns, "serve", name)
    wait_for(lambda: not resolver_slices(sim, ns, name), timeout=15, interval=0.1,
             what="resolver slice deleted")


def to_zero(sim, ns, name="web"):
    sim.kubectl("scale", "-n", ns, "deployment/" + name, "--replicas=0")
    wait_proxy(sim, ns, name)


# ---------------------------------------------------------------- HTTP

class Result:
    """Every answer a client got: ok (200 from an app pod), or a failure description."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.pods = set()

    def good(self, pod):
        with self.lock:
            self.ok += 1
            self.pods.add(pod)

    def bad(self, what):
        with self.lock:
            self.failures.append(what)

    def check(self, status, body):
        """A 200 whose JSON names an app pod (holdfast never answers that itself)."""
        if status != 200:
            self.bad("HTTP %d: %r" % (status, body[:200]))
            return None
        try:
            obj = json.loads(body)
        except ValueError:
            self.bad("not the pod's JSON: %r" % body[:200])
            return None
        if not str(obj.get("pod", "")).startswith("web-"):
            self.bad("not answered by an app pod: %r" % body[:200])
            return None
        self.good(obj["pod"])
        return obj

    def summary(self):
        return "%d ok, %d failed%s" % (self.ok, len(self.failures),
                                       (": " + "; ".join(self.failures[:8])) if self.failures else "")


def one_request(host, res, method="GET", path="/", body=None, headers=None, timeout=60):
    """One request on a new connection (Connection: close). A refused or reset connection is a
    failure: through the ClusterIP something must always answer."""
    conn = TracedConnection(host, 80, timeout=timeout)
    try:
        h = {"Connection": "close"}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return res.check(r.status, r.read().decode(errors="replace"))
    except Exception as e:  # noqa: BLE001 - every error is a lost request
        res.bad("%s %s: %r%s" % (method, path, e, _where(host, conn)))
        return None
    finally:
        conn.close()


class KeepAlive:
    """Requests on one keep-alive connection. A new connection is opened only after the server
    announced the close (Connection: close); a connection dropped without that is a failure."""

    def __init__(self, host, res, timeout=60):
        self.host, self.res, self.timeout = host, res, timeout
        self.conn = None
        self.connections = 0

    def get(self, path="/"):
        if self.conn is None:
            self.conn = TracedConnection(self.host, 80, timeout=self.timeout)
            self.connections += 1
        try:
            self.conn.request("GET", path)
            r = self.conn.getresponse()
            body = r.read().decode(errors="replace")
            if r.will_close:
                self.close()
            return self.res.check(r.status, body)
        except Exception as e:  # noqa: BLE001
            self.res.bad("keep-alive GET %s (connection %d): %r%s" % (path, self.connections, e,
                                                                     _where(self.host, self.conn)))
            self.close()
            return None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run_threads(fns, timeout):
    """Start every fn in its own thread and join them all within `timeout` seconds."""
    ts = [threading.Thread(target=f, daemon=True) for f in fns]
    for t in ts:
        t.start()
    deadline = time.monotonic() + timeout
    for t in ts:
        t.join(max(0.1, deadline - time.monotonic()))
    alive = sum(t.is_alive() for t in ts)
    assert not alive, "%d clients still waiting after %ss" % (alive, timeout)
