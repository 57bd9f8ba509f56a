#!/usr/bin/python3
"""The demo on the test cluster (scripts/cluster: upstream etcd, kube-apiserver,
controller-manager, scheduler and kube-proxy, with a node agent running the pods), holdfast
installed with Helm, and a real Prometheus.

A Deployment + Service + ElastiService. The request rate that the ElastiService's trigger reads
(from a small exporter scraped by Prometheus) drops to 0: holdfast scales the Deployment to zero
and steers the Service to itself. A request to the Service's ClusterIP is then held, the
Deployment woken, and the request answered by the new pod. Everything runs inside the cluster's
network namespace (the part after the cluster is up re-runs this script there, with --inside)
and stops by itself.
"""
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import _path  # noqa: F401 - hftest and tests/cluster on sys.path
from clusterlib import Cluster
from hftest import conntrace, promfix

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NS = "demo"
COOLDOWN_S = 5
NODE_IP = "10.88.0.1"  # the cluster's node address, reachable from its pods
HOLDFAST = os.path.join(REPO, "build", "holdfast")
CHART = os.path.join(REPO, "helm", "holdfast")
MANIFESTS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: demo/web:1
        ports: [{containerPort: 8080, name: http}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: elasti.truefoundry.com/v1alpha1
kind: ElastiService
metadata: {name: web, namespace: demo}
spec:
  service: web
  minTargetReplicas: 1
  cooldownPeriod: %(cooldown)d
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  triggers:
  - type: prometheus
    metadata:
      query: sum(demo_requests_per_second) or vector(0)
      serverAddress: %(prometheus)s
      threshold: "0.5"
      uptimeFilter: job="prometheus"
  probeResponse:
  - path: {type: Exact, value: /healthz}
    response: {status: 200, body: '{"ok":true}'}
"""


def say(msg):
    """Prints; a reader that went away (`scripts/demo | head`) must not stop the clean-up."""
    try:
        print(msg, flush=True)
    except (BrokenPipeError, OSError):
        pass


def wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit("demo: timed out after %ds waiting for %s" % (timeout, what))
        time.sleep(0.2)


def sh(*argv, timeout=120):
    """A client inside the cluster's namespace (KUBECONFIG and PATH set by `scripts/cluster`)."""
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise SystemExit("demo: %s failed (exit %d): %s" % (" ".join(argv), r.returncode,
                                                           (r.stderr or r.stdout).strip()))
    return r.stdout.strip()


def kubectl(*args):
    return sh("kubectl", *args)


def get(tracker, ip, path, timeout):
    """GET http://ip/path through the ClusterIP: (status, body). A failure stops the demo with
    where the kernel sent the connection (a holdfast pod or an app pod, from conntrack) and the
    tail of holdfast's logs."""
    c = conntrace.TracedConnection(ip, 80, timeout=timeout)
    start = time.monotonic()
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
    except (OSError, http.client.HTTPException) as e:
        where = tracker.explain(ip, 80, c.local_port) or "local port unknown"
        logs = subprocess.run(["kubectl", "logs", "-n", "holdfast", "-l", "app.kubernetes.io/name=holdfast",
                               "--tail", "40", "--prefix"], capture_output=True, text=True, timeout=30)
        raise SystemExit("demo: GET http://%s%s failed after %.1f s: %r (%s)\nholdfast's logs:\n%s"
                         % (ip, path, time.monotonic() - start, e, where, logs.stdout + logs.stderr))
    finally:
        c.close()
    if r.status != 200:
        raise SystemExit("demo: GET http://%s%s answered %d: %r" % (ip, path, r.status, body[:300]))
    return r.status, body


def inside(work):
    """The demo proper, inside the cluster's network namespace."""
    exporter = promfix.Exporter()
    tracker = conntrace.ConnTracker()  # where each connection went, for a failure's message
    tracker.start()
    prom = None
    try:
        say("== a real Prometheus on the node's address %s" % NODE_IP)
        exporter.set("demo_requests_per_second", 5)
        prom = promfix.Prometheus(exporter=exporter, workdir=os.path.join(work, "prom"), host=NODE_IP)
        say("\n== helm install holdfast (2 replicas, the chart's RBAC, pods running build/holdfast)")
        say(sh("helm", "install", "holdfast", CHART, "-n", "holdfast", "--create-namespace",
               "--set", "pollingInterval=1s", "--wait", "--timeout", "90s"))
        say(kubectl("get", "-n", "holdfast", "pods", "-o", "wide"))
        kubectl("create", "namespace", NS)
        path = os.path.join(work, "app.yaml")
        with open(path, "w") as f:
            f.write(MANIFESTS % {"cooldown": COOLDOWN_S, "prometheus": prom.url})
        say(kubectl("apply", "-f", path))
        kubectl("rollout", "status", "-n", NS, "deploy/web", "--timeout=60s")
        cip = kubectl("get", "-n", NS, "svc", "web", "-o", "jsonpath={.spec.clusterIP}")
        say("the Service's ClusterIP is %s" % cip)
        wait(lambda: kubectl("get", "-n", NS, "elastiservice", "web", "-o",
                             "jsonpath={.status.mode}") == "serve", 30, "serve mode")
        say(kubectl("get", "-n", NS, "elastiservice,deploy"))

        say("\n== the request rate drops to 0 (cooldown %ds)" % COOLDOWN_S)
        exporter.set("demo_requests_per_second", 0)
        start = time.monotonic()
        wait(lambda: kubectl("get", "-n", NS, "deploy", "web", "-o",
                             "jsonpath={.spec.replicas}") == "0", 90, "scale to zero")
        wait(lambda: kubectl("get", "-n", NS, "elastiservice", "web", "-o",
                             "jsonpath={.status.mode}") == "proxy", 30, "proxy mode")
        say("scaled to zero after %.1f s (holdfast first proved kube-proxy sends the Service's "
            "traffic to it)" % (time.monotonic() - start))
        say(kubectl("get", "-n", NS, "elastiservice,deploy,endpointslices"))

        say("\n== a health check at zero: answered by holdfast's probeResponse rule, no wake")
        status, body = get(tracker, cip, "/healthz", 10)
        say("GET /healthz -> %d %s" % (status, body.decode()))
        say("replicas: %s" % kubectl("get", "-n", NS, "deploy", "web", "-o", "jsonpath={.spec.replicas}"))

        say("\n== a real request at zero: held, the Deployment woken, answered by the new pod")
        start = time.monotonic()
        status, body = get(tracker, cip, "/", 60)
        say("GET / -> %d (%d bytes) after %.2f s (cold start: wake, scheduling, pod start, "
            "readiness)" % (status, len(body), time.monotonic() - start))
        wait(lambda: kubectl("get", "-n", NS, "elastiservice", "web", "-o",
                             "jsonpath={.status.mode}") == "serve", 30, "serve mode")
        say(kubectl("get", "-n", NS, "elastiservice,deploy,endpointslices"))
        say("\n== Events")
        say(kubectl("get", "events", "-n", NS, "--field-selector", "involvedObject.kind=ElastiService"))
        say("\n== holdfast's metrics (excerpt, both replicas)")
        for ip in kubectl("get", "-n", "holdfast", "pods", "-o",
                          "jsonpath={.items[*].status.podIP}").split():
            with urllib.request.urlopen("http://%s:8013/metrics" % ip, timeout=10) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith(("holdfast_cold_start_seconds_sum", "holdfast_cold_start_seconds_count",
                                        "holdfast_scale_downs_total", "holdfast_scale_ups_total",
                                        "holdfast_serve_switches_total", "holdfast_leader ")) or \
                            (line.startswith("holdfast_requests_total") and not line.endswith(" 0")):
                        say("%s  %s" % (ip, line))
        say("\n== helm uninstall: the pre-delete hook restores every ElastiService's target")
        say(sh("helm", "uninstall", "holdfast", "-n", "holdfast", "--wait", "--timeout", "90s"))
        say(kubectl("get", "-n", NS, "deploy,endpointslices"))
    finally:
        if prom:
            prom.stop()
        exporter.close()
        tracker.stop()


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--inside":
        inside(sys.argv[2])
        return
    work = tempfile.mkdtemp(prefix="holdfast-demo-")
    images = os.path.join(work, "images.json")
    with open(images, "w") as f:
        json.dump({"ghcr.io/holdfast/holdfast": {"argv": [HOLDFAST, "$@"]},
                   "demo/web": {"argv": ["/usr/bin/python3", "-m", "http.server", "--bind",
                                         "$POD_IP", "$PORT"], "startDelayMs": 300}}, f)
    cluster = Cluster(os.path.join(work, "cluster"))
    say("== starting the test cluster (scripts/cluster up: the upstream Kubernetes control plane, "
        "a node agent for the pods)")
    try:
        cluster.up(image_map=images, proxy_delay_ms=200, out=say)
        argv, env = cluster.exec_argv(["/usr/bin/python3", os.path.abspath(__file__), "--inside", work])
        rc = subprocess.run(argv, env=env).returncode
    finally:
        say("\n== stopping the cluster")
        cluster.down(out=say)
        shutil.rmtree(work, ignore_errors=True)
    if rc != 0:
        sys.exit(rc)
    say("\n== done: everything stopped")


if __name__ == "__main__":
    main()
