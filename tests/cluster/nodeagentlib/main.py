"""The node agent: registers the Node, keeps it Ready and renews its Lease, watches the pods
bound to it and gives each a PodWorker (pods.py). SIGTERM or SIGINT: every pod's processes are
stopped, every pod namespace it made is deleted, exit 0. The pod objects are left as they are
(a kubelet that stops does not delete its pods)."""
import argparse
import logging
import os
import platform
import signal
import threading
import time

from . import podnet, server
from .events import Recorder
from .imagemap import ImageMap
from .kubeapi import Api, ApiError
from .pods import PodWorker, service_env

log = logging.getLogger("nodeagent")

KUBELET_VERSION = "v1.37.2"        # the control plane's release: the version-skew checks stay quiet
LEASE_SECONDS = 40                 # the kubelet's default; renewed every quarter of it
NODE_STATUS_PERIOD = 60.0          # full Node status (heartbeat) at most this far apart


def microtime():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int((t % 1) * 1e6)


def rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def parse_args(argv):
    p = argparse.ArgumentParser(prog="nodeagent.py", description=__doc__)
    p.add_argument("--kubeconfig", required=True, help="client certificate of system:node:NAME")
    p.add_argument("--node-name", default="hfc-node")
    p.add_argument("--node-ip", default="10.88.0.1")
    p.add_argument("--pod-cidr", default="10.88.0.0/24")
    p.add_argument("--pod-ip-range", metavar="FIRST-LAST",
                   help="pod IPs come from here (default: the pod CIDR's hosts after the gateway)")
    p.add_argument("--bridge", default="hfbr0")
    p.add_argument("--netns-prefix", required=True, help="pod network namespaces are PREFIX<N>")
    p.add_argument("--image-map", help="image -> argv (JSON), re-read when it changes")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--backoff-initial", type=float, default=10.0,
                   help="first CrashLoopBackOff/ImagePullBackOff delay in seconds (kubelet: 10)")
    p.add_argument("--backoff-max", type=float, default=300.0, help="longest back-off in seconds (kubelet: 300)")
    p.add_argument("--lease-seconds", type=int, default=LEASE_SECONDS)
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


class Agent:
    def __init__(self, args):
        self.args = args
        self.node_name, self.node_ip = args.node_name, args.node_ip
        self.state_dir = os.path.realpath(args.state_dir)
        self.backoff_initial, self.backoff_max = args.backoff_initial, args.backoff_max
        self.api = Api.from_kubeconfig(args.kubeconfig, os.path.join(self.state_dir, "credentials"))
        self.images = ImageMap(args.image_map)
        self.events = Recorder(self.api, self.node_name)
        self.networks = podnet.PodNetworks(args.pod_cidr, args.bridge, args.netns_prefix, self.state_dir,
                                           args.pod_ip_range)
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.workers = {}          # pod UID -> PodWorker
        self.pids = set()
        self.watch_conns = []
        self.allocatable = {"cpu": str(os.cpu_count() or 1), "memory": "%dKi" % _mem_kib(), "pods": "110",
                            "ephemeral-storage": "10Gi"}
        self._svc_cache = {}       # namespace -> (monotonic, {env})

    # ------------------------------------------------------------------ pids (for the record)

    def register_pid(self, pid):
        with self.lock:
            self.pids.add(pid)

    def unregister_pid(self, pid):
        with self.lock:
            self.pids.discard(pid)

    # ------------------------------------------------------------------ Node and Lease

    def _node_status(self):
        now = rfc3339()
        conds = [("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                 ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                 ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                 ("Ready", "True", "KubeletReady", "kubelet is posting ready status")]
        return {
            "conditions": [{"type": t, "status": s, "reason": r, "message": m, "lastHeartbeatTime": now,
                            "lastTransitionTime": self._transition.setdefault(t, now)} for t, s, r, m in conds],
            # As a kubelet reports them. The same at every write: kube-proxy exits when its
            # Node's IPs change (it reads only the InternalIP and ExternalIP ones). The API
            # server must run with --kubelet-preferred-address-types=InternalIP to reach this
            # agent's port 10250: its default dials the Hostname first, which resolves nowhere.
            "addresses": [{"type": "InternalIP", "address": self.node_ip},
                          {"type": "Hostname", "address": self.node_name}],
            "capacity": self.allocatable, "allocatable": self.allocatable,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": platform.release(),
                         "osImage": "holdfast test cluster node agent", "containerRuntimeVersion": "hfc-nodeagent://1",
                         "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "", "operatingSystem": "linux",
                         "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(),
                                                                                     platform.machine())},
        }

    def register_node(self):
        """Creates the Node (or takes over an existing one) and writes its status; retried until
        it works or the agent is stopped."""
        self._transition = {}
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node_name,
                             "labels": {"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux",
                                        "kubernetes.io/arch": self._node_status()["nodeInfo"]["architecture"]}},
                "spec": {"podCIDR": self.args.pod_cidr, "podCIDRs": [self.args.pod_cidr]}}
        delay = 0.5
        while not self.stop_event.is_set():
            try:
                try:
                    self.node_uid = self.api.post("/api/v1/nodes", node)["metadata"]["uid"]
                    log.info("node %s registered", self.node_name)
                except ApiError as e:
                    if e.status != 409:
                        raise
                    self.node_uid = self.api.get("/api/v1/nodes/" + self.node_name)["metadata"]["uid"]
                    log.info("node %s exists, taken over", self.node_name)
                self.api.patch("/api/v1/nodes/%s/status" % self.node_name, {"status": self._node_status()},
                               kind="strategic-merge")
                return True
            except (ApiError, OSError) as e:
                log.warning("node registration failed, retrying in %.1f s: %s", delay, e)
                self.stop_event.wait(delay)
                delay = min(delay * 2, 5.0)
        return False

    def renew_lease(self):
        path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/" + self.node_name
        spec = {"holderIdentity": self.node_name, "leaseDurationSeconds": self.args.lease_seconds,
                "renewTime": microtime()}
        try:
            self.api.patch(path, {"spec": spec})
        except ApiError as e:
            if e.status != 404:
                raise
            self.api.post("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.node_name, "namespace": "kube-node-lease",
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.node_name,
                                                  "uid": self.node_uid}]},
                "spec": spec})

    def heartbeat_loop(self):
        """Lease every lease/4 seconds, Node status every NODE_STATUS_PERIOD; errors only logged."""
        next_status = time.monotonic() + NODE_STATUS_PERIOD
        while not self.stop_event.is_set():
            try:
                self.renew_lease()
                if time.monotonic() >= next_status:
                    self.api.patch("/api/v1/nodes/%s/status" % self.node_name, {"status": self._node_status()},
                                   kind="strategic-merge")
                    next_status = time.monotonic() + NODE_STATUS_PERIOD
            except (ApiError, OSError) as e:
                log.warning("node heartbeat failed (next in %ds): %s", self.args.lease_seconds // 4, e)
            self.stop_event.wait(self.args.lease_seconds / 4.0)

    # ------------------------------------------------------------------ services for env

    def service_env(self, ns, links):
        """KUBERNETES_SERVICE_* (and, with enableServiceLinks, the variables of every Service of the
        pod's namespace), cached for 10 s."""
        out = {}
        for n in (["default"] if ns == "default" or not links else ["default", ns]):
            hit = self._svc_cache.get(n)
            if hit is None or time.monotonic() - hit[0] > 10:
                env = {}
                try:
                    for svc in self.api.get("/api/v1/namespaces/%s/services" % n).get("items") or []:
                        if n == "default" and svc["metadata"]["name"] != "kubernetes" and ns != "default":
                            continue
                        if n == "default" and not links and svc["metadata"]["name"] != "kubernetes":
                            continue
                        env.update(service_env(svc))
                except (ApiError, OSError) as e:
                    log.warning("services of %s not listed for env: %s", n, e)
                    env = hit[1] if hit else {}
                hit = self._svc_cache[n] = (time.monotonic(), env)
            out.update(hit[1])
        return out

    # ------------------------------------------------------------------ pods

    def _dispatch(self, etype, pod):
        uid = pod["metadata"]["uid"]
        with self.lock:
            if self.stop_event.is_set():
                return
            w = self.workers.get(uid)
            if etype == "DELETED":
                if w is not None:
                    w.update(pod)
                    w.removed()
                return
            if w is None:
                if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and \
                        not pod["metadata"].get("deletionTimestamp"):
                    return          # finished before this agent started: nothing to run
                w = PodWorker(self, pod)
                self.workers[uid] = w
                w.start()
            else:
                w.update(pod)

    def worker_by_name(self, ns, name):
        with self.lock:
            return next((w for w in self.workers.values() if w.ns == ns and w.name == name), None)

    def worker_done(self, w):
        with self.lock:
            if self.workers.get(w.uid) is w:
                del self.workers[w.uid]

    def pod_loop(self):
        """List + watch of the pods bound to this node; re-list on 410 Gone, reconnect with back-off
        (0.2 s doubling to 5 s) when a watch drops or the API server is away."""
        path = "/api/v1/pods?fieldSelector=spec.nodeName%3D" + self.node_name
        rv, delay = None, 0.2
        while not self.stop_event.is_set():
            try:
                if rv is None:
                    lst = self.api.get(path)
                    rv = lst["metadata"]["resourceVersion"]
                    seen = set()
                    for pod in lst.get("items") or []:
                        seen.add(pod["metadata"]["uid"])
                        self._dispatch("MODIFIED", pod)
                    with self.lock:
                        vanished = [w for uid, w in self.workers.items() if uid not in seen]
                    for w in vanished:
                        w.removed()
                for etype, obj in self.api.watch(path, rv, timeout_seconds=290, stop=self.watch_conns):
                    if etype == "ERROR":
                        if obj.get("code") == 410:
                            rv = None
                            break
                        raise ApiError(obj.get("code", 500), obj, "WATCH", path)
                    rv = obj["metadata"]["resourceVersion"]
                    if etype != "BOOKMARK":
                        self._dispatch(etype, obj)
                    delay = 0.2
            except ApiError as e:
                if self.stop_event.is_set():
                    break
                if e.status == 410:
                    rv = None
                    continue
                log.warning("pod watch: %s; again in %.1f s", e, delay)
                self.stop_event.wait(delay)
                delay = min(delay * 2, 5.0)
            except (OSError, ValueError) as e:
                if self.stop_event.is_set():
                    break
                log.warning("pod watch dropped: %s; again in %.1f s", e, delay)
                self.stop_event.wait(delay)
                delay = min(delay * 2, 5.0)
            finally:
                self.watch_conns.clear()

    # ------------------------------------------------------------------ life

    def shutdown(self):
        with self.lock:
            workers = list(self.workers.values())
        for w in workers:
            w.stop()
        deadline = time.monotonic() + 10
        for w in workers:
            w.join(max(0.1, deadline - time.monotonic()))
        with self.lock:
            left = list(self.pids)
        for pid in left:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.networks.remove_stale()
        log.info("stopped: %d pods, %d stray process groups killed", len(workers), len(left))


def _mem_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    return 1 << 20


def main(argv):
    args = parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.makedirs(args.state_dir, exist_ok=True)
    agent = Agent(args)
    stop = agent.stop_event

    def on_signal(signum, frame):
        stop.set()
        for conn in list(agent.watch_conns):
            try:
                conn.sock.shutdown(2)
            except (OSError, AttributeError):
                pass
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    agent.networks.remove_stale()
    srv = server.serve(agent, os.path.join(agent.state_dir, "serving"))
    if agent.register_node():
        threading.Thread(target=agent.heartbeat_loop, name="heartbeat", daemon=True).start()
        threading.Thread(target=agent.pod_loop, name="pods", daemon=True).start()
        while not stop.wait(1.0):
            pass
    if srv is not None:
        srv.shutdown()
    agent.shutdown()
    return 0
