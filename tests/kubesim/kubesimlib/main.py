"""Wiring: parse flags, make certificates, start every component, write kubeconfig and ready,
and stop everything (pods included) on SIGTERM/SIGINT."""
import argparse
import json
import logging
import os
import secrets
import signal
import threading

import yaml

from . import certs
from .apiserver import ApiServer
from .registry import Registry
from .store import Store
from .util import now_rfc3339

log = logging.getLogger("kubesim")

NODE_NAME = "kubesim-node"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="kubesim", description="Kubernetes cluster simulator for tests")
    p.add_argument("--state-dir", required=True, help="where kubeconfig, certificates, logs and ready go")
    p.add_argument("--listen", default="127.0.0.1:0", help="API server address (port 0: pick a free one)")
    p.add_argument("--image-map", help="JSON file mapping container images to argv")
    p.add_argument("--proxy-delay-ms", type=int, default=0, help="kube-proxy propagation delay")
    p.add_argument("--api-latency-ms", type=int, default=0, help="latency added to every API request")
    p.add_argument("--rules", help="per-token authorization rules file (YAML/JSON)")
    p.add_argument("--control-listen", default="127.0.0.1:0", help="fault-injection control endpoint address")
    p.add_argument("--pod-cidr", default="127.1.0.0/16", help="loopback range for pod IPs")
    p.add_argument("--service-cidr", default="127.2.0.0/16", help="loopback range for ClusterIPs")
    p.add_argument("--bookmark-interval", type=float, default=10.0, help="seconds between watch bookmarks")
    p.add_argument("--history", type=int, default=100000, help="watch history kept before compaction")
    p.add_argument("--token", help="admin bearer token (default: random)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def write_kubeconfig(path, server, ca_file, token):
    with open(ca_file, "rb") as f:
        import base64
        ca_data = base64.b64encode(f.read()).decode()
    cfg = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "kubesim", "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "users": [{"name": "kubesim-admin", "user": {"token": token}}],
        "contexts": [{"name": "kubesim", "context": {"cluster": "kubesim", "user": "kubesim-admin",
                                                     "namespace": "default"}}],
        "current-context": "kubesim",
    }
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def bootstrap(store, registry):
    """Objects a fresh cluster has: the four namespaces (each with its "default" ServiceAccount),
    one node, and the default RBAC policy (cluster-admin for system:masters, discovery and
    self-reviews for every authenticated user)."""
    from .auth import bootstrap_policy
    for obj in bootstrap_policy():
        store.create(registry.by_kind(obj["apiVersion"], obj["kind"]), obj)
    ns_res = registry.lookup("", "v1", "namespaces")
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        store.create(ns_res, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    node_res = registry.lookup("", "v1", "nodes")
    node, _ = store.create(node_res, {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux",
                                      "node-role.kubernetes.io/control-plane": ""}}})
    t = now_rfc3339()
    node["status"] = {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE_NAME}],
        "capacity": {"cpu": "2", "memory": "4Gi", "pods": "1000"},
        "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "1000"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "kubelet is posting ready status", "lastHeartbeatTime": t,
                        "lastTransitionTime": t}],
        "nodeInfo": {"kubeletVersion": "v1.31.0-kubesim", "operatingSystem": "linux", "architecture": "amd64"},
    }
    store.update(node_res, node, None, NODE_NAME, "status")


def main(argv):
    args = parse_args(argv)
    state = os.path.abspath(args.state_dir)
    os.makedirs(state, exist_ok=True)
    for stale in ("ready", "kubeconfig"):
        try:
            os.unlink(os.path.join(state, stale))
        except FileNotFoundError:
            pass
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        handlers=[logging.FileHandler(os.path.join(state, "kubesim.log")), logging.StreamHandler()])
    host, _, port = args.listen.rpartition(":")
    ca, crt, key = certs.ensure_certs(state, host)
    token = args.token or secrets.token_hex(24)

    registry = Registry()
    store = Store(registry, history_limit=args.history)

    def on_crd(etype, crd):
        """Keep the served types in step with CRDs; a deleted CRD takes its objects with it
        (called under the store lock)."""
        if etype == "DELETED":
            key = crd["spec"]["group"] + "/" + crd["spec"]["names"]["plural"]
            res = next((r for r in registry.all() if r.crd is not None and r.key == key), None)
            if res is not None:
                for obj in list(store.objs[res.storage_key].values()):
                    obj = dict(obj, metadata=dict(obj["metadata"], resourceVersion=store._next_rv()))
                    store._remove(res, obj)
            registry.remove_crd(crd)
        else:
            registry.set_crd(crd)
    store.crd_listener = on_crd

    from .kubeproxy import KubeProxy
    proxy = KubeProxy(store, registry, args.service_cidr, args.proxy_delay_ms / 1000.0)
    store.clusterip_allocator = proxy.allocator
    bootstrap(store, registry)

    from .kubelet import Kubelet
    from .controllers import Controllers
    kubelet = Kubelet(store, registry, state, args.image_map, args.pod_cidr, NODE_NAME)
    controllers = Controllers(store, registry, NODE_NAME)

    api = ApiServer(store, registry, token, host, int(port or 0), crt, key, args.rules, args.api_latency_ms,
                    args.bookmark_interval)
    api.log_dir = state
    from .control import ControlServer
    chost, _, cport = args.control_listen.rpartition(":")
    control = ControlServer(chost, int(cport or 0), api, store, registry, kubelet, proxy)

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    proxy.start()
    kubelet.start()
    controllers.start()
    api.start()
    control.start()

    server = "https://%s:%d" % (host if host != "0.0.0.0" else "127.0.0.1", api.port)
    write_kubeconfig(os.path.join(state, "kubeconfig"), server, ca, token)
    with open(os.path.join(state, "token"), "w") as f:
        f.write(token)
    ready = {"api": server, "control": "http://%s:%d" % (chost, control.port), "pid": os.getpid(),
             "kubeconfig": os.path.join(state, "kubeconfig"), "ca": ca}
    with open(os.path.join(state, "ready.tmp"), "w") as f:
        json.dump(ready, f)
    os.replace(os.path.join(state, "ready.tmp"), os.path.join(state, "ready"))
    log.info("kubesim ready: api %s control %s", server, ready["control"])

    while not stop.wait(0.5):
        pass
    log.info("stopping")
    control.stop()
    api.stop()
    controllers.stop()
    kubelet.stop()
    proxy.stop()
    try:
        os.unlink(os.path.join(state, "ready"))
    except FileNotFoundError:
        pass
    log.info("stopped")
    return 0
