"""Helpers of the node agent's tests (conftest.py has the fixtures): the image map they use,
starting and stopping the agent as CONTRACT-cluster.md starts it, bounded waits."""
import os
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import standin  # noqa: E402
from nodeagentlib.kubeapi import ApiError  # noqa: E402

PY = "/usr/bin/python3"
TESTDATA = os.path.join(HERE, "testdata")
HTTPSERVER = os.path.join(HERE, "..", "kubesim", "testdata", "httpserver.py")

IMAGES = {
    "hfc/http:1": {"argv": [PY, HTTPSERVER]},
    "hfc/sh": {"argv": ["/bin/sh", "$@"]},
    "hfc/python": {"argv": [PY, "$@"]},
    "hfc/grpc-health": {"argv": [PY, os.path.join(TESTDATA, "grpchealth.py")]},
}
# Short back-offs, so CrashLoopBackOff and ImagePullBackOff show in seconds, not minutes.
BACKOFF = ["--backoff-initial", "2", "--backoff-max", "8"]


def wait_for(fn, timeout, what, interval=0.2):
    """Calls fn until it returns something true; returns that, or fails the test after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
            if last:
                return last
        except (ApiError, OSError) as e:
            last = e
        if time.monotonic() >= deadline:
            pytest.fail("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))
        time.sleep(interval)


class Cluster:
    def __init__(self, st, agent, api):
        self.st, self.agent, self.api = st, agent, api

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
        return [n for n in standin.netns_list() if n.startswith(self.st.pod_prefix)]


def start_agent(st, extra=()):
    log = open(os.path.join(st.dir, "logs", "nodeagent.log"), "ab")
    argv = ["ip", "netns", "exec", st.netns, PY, os.path.join(HERE, "nodeagent.py"),
            "--kubeconfig", st.node_kubeconfig, "--node-name", "hfc-node", "--node-ip", "10.88.0.1",
            "--pod-cidr", "10.88.0.0/24", "--bridge", "hfbr0", "--netns-prefix", st.pod_prefix,
            "--image-map", os.path.join(st.dir, "image-map.json"), "--state-dir", os.path.join(st.dir, "node")]
    p = subprocess.Popen(argv + list(extra), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    log.close()
    return p


def stop_agent(p, timeout=30):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
            return None
    return p.returncode


