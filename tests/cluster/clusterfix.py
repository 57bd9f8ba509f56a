"""Helpers of the tests of tests/cluster (conftest.py has the fixtures): the image map of the
shared cluster, the Cluster the tests get (clusterlib's, plus a REST client of the API and pod
helpers), entering its network namespace, bounded waits."""
import datetime
import os
import shutil
import subprocess
import time

import pytest

import clusterlib
import netns
from hftest import kubeclient
from nodeagentlib.kubeapi import Api, ApiError

HERE = os.path.dirname(os.path.abspath(__file__))

PY = "/usr/bin/python3"
SCRIPT = os.path.join(os.path.dirname(os.path.dirname(HERE)), "scripts", "cluster")
TESTDATA = os.path.join(HERE, "testdata")
HTTPSERVER = os.path.join(HERE, "..", "hftest", "apps", "httpserver.py")

IMAGES = {
    "hfc/http:1": {"argv": [PY, HTTPSERVER]},
    "hfc/sh": {"argv": ["/bin/sh", "$@"]},
    "hfc/python": {"argv": [PY, "$@"]},
    "hfc/grpc-health": {"argv": [PY, os.path.join(TESTDATA, "grpchealth.py")]},
    "hfc-test/sleep": ["/bin/sleep", "3600"],
}
# kube-proxy sees every change this late (test_cluster.py's delay tests need it well above the
# EndpointSlice controller's round trip).
PROXY_DELAY_MS = 1500
# Short back-offs, so CrashLoopBackOff and ImagePullBackOff show in seconds, not minutes.
BACKOFF_INITIAL, BACKOFF_MAX = 2, 8

def need_root():
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nsenter") is None:
        pytest.skip("needs root, iproute2 and nsenter (network namespaces)")


def cluster_cmd(*args, timeout=900):
    """scripts/cluster ARGS..., output captured (900 s: a cold cache builds the binaries first)."""
    return subprocess.run([SCRIPT] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout)


def wait_for(fn, timeout, what, interval=0.2):
    """Calls fn until it returns something true; returns that, or fails the test after timeout
    (kubeclient.wait_for; an API or socket error counts as 'not yet')."""
    return kubeclient.wait_for(fn, timeout, interval, what, retry_on=(ApiError, OSError), error=pytest.fail)


class Cluster(clusterlib.Cluster):
    """clusterlib's Cluster with what the node agent's tests use: `api`, a REST client as admin,
    and pod helpers. Its calls reach 10.88.0.1 and pod IPs only from inside the cluster's
    namespace: between enter() and leave()."""

    def __init__(self, state_dir):
        super().__init__(state_dir)
        self.api = Api.from_kubeconfig(self.kubeconfig, self.path("test-credentials"))
        self._host_ns = None

    def enter(self):
        """Moves the calling thread (and the threads and processes it starts later) into the
        cluster's network namespace; leave() goes back. The mount namespace stays the host's."""
        assert self._host_ns is None, "already inside"
        self._host_ns = netns.enter(self.ns)

    def leave(self):
        if self._host_ns is not None:
            host, self._host_ns = self._host_ns, None
            netns.leave(host)

    def pod(self, ns, name):
        return self.api.get("/api/v1/namespaces/%s/pods/%s" % (ns, name))

    def create_pod(self, ns, name, containers, **spec):
        spec = dict(spec, containers=containers)
        return self.api.post("/api/v1/namespaces/%s/pods" % ns,
                             {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})

    def container_status(self, ns, name, container="main"):
        st = self.pod(ns, name).get("status") or {}
        return next((c for c in st.get("containerStatuses") or [] if c["name"] == container), None)

    def netns_with_ip(self, ip):
        """The pod namespaces whose eth0 has ip."""
        out = []
        for n in self.pod_netns():
            r = subprocess.run(["ip", "-n", n, "-o", "-4", "addr", "show", "dev", "eth0"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
            if " %s/" % ip in r.stdout:
                out.append(n)
        return out

    def pod_netns(self):
        """The node agent's pod namespaces, as `ip netns list` shows them."""
        return netns.with_prefix(self.ns + "-p-")

    def wait_node_ready(self, timeout=60):
        wait_for(self._node_ready, timeout, "Node %s Ready" % clusterlib.NODE_NAME)

    def wait_healthy(self, timeout=90):
        """Waits until the controller-manager and the scheduler hold live leases (renewed in the
        last 5 s; a leader renews every 2 s) and the Node is Ready. A test on the shared cluster
        calls it first (the `cluster` fixture), so that it does not pay for an earlier test's
        fault: a program that lost its lease in an API server or etcd outage exited, was started
        again, and takes the lease only once the old one has expired, up to 15 s later. Uses the
        API client: call it inside the namespace."""
        def live(lease):
            spec = self.api.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/" + lease)["spec"]
            renewed = datetime.datetime.strptime(spec["renewTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=datetime.timezone.utc).timestamp()
            return time.time() - renewed < 5
        for lease in ("kube-controller-manager", "kube-scheduler"):
            wait_for(lambda: live(lease), timeout, "a live holder of lease kube-system/%s" % lease)
        wait_for(lambda: any(c["type"] == "Ready" and c["status"] == "True" for c in self.api.get(
            "/api/v1/nodes/" + clusterlib.NODE_NAME)["status"]["conditions"]), timeout,
            "Node %s Ready" % clusterlib.NODE_NAME)
