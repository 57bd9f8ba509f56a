#!/usr/bin/python3
"""The demo on a simulated cluster (tests/kubesim), with a real Prometheus.

A Deployment + Service + ElastiService; holdfast runs in Kubernetes mode beside the cluster.
The request rate that the ElastiService's trigger reads (from a small exporter scraped by
Prometheus) drops to 0: holdfast scales the Deployment to zero and steers the Service to
itself. A request to the Service's ClusterIP is then held, the Deployment woken, and the
request answered by the new pod. Everything stops by itself; nothing outside 127.0.0.0/8.
"""
import json
import os
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "kubesim"))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))

import promfix  # noqa: E402
import simctl  # noqa: E402
from hfk8s import HoldfastK8s  # noqa: E402

NS = "demo"
COOLDOWN_S = 5

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
    print(msg, flush=True)


def wait(pred, timeout, what):
    simctl.wait_for(pred, timeout=timeout, what=what)


def kubectl(sim, *args):
    return sim.kubectl(*args).stdout.strip()


def main():
    work = tempfile.mkdtemp(prefix="holdfast-demo-")
    images = os.path.join(work, "images.json")
    with open(images, "w") as f:
        json.dump({"demo/web": {"argv": ["/usr/bin/python3", "-m", "http.server", "--bind",
                                         "$POD_IP", "$PORT"], "startDelayMs": 300}}, f)
    sim = simctl.KubeSim(os.path.join(work, "sim"), image_map=images, proxy_delay_ms=200)
    exporter = promfix.Exporter()
    prom = hf = None
    try:
        say("== starting a simulated cluster (tests/kubesim) and a real Prometheus")
        sim.start()
        exporter.set("demo_requests_per_second", 5)
        prom = promfix.Prometheus(exporter=exporter, workdir=os.path.join(work, "prom"))
        kubectl(sim, "apply", "-f", os.path.join(REPO, "crds", "elastiservice.yaml"))
        kubectl(sim, "create", "namespace", NS)
        path = os.path.join(work, "app.yaml")
        with open(path, "w") as f:
            f.write(MANIFESTS % {"cooldown": COOLDOWN_S, "prometheus": prom.url})
        say(kubectl(sim, "apply", "-f", path))
        sim.wait_ready_replicas(NS, "web", 1)
        hf = HoldfastK8s(sim, os.path.join(work, "holdfast"), namespace=NS, log_level="info")
        hf.start()
        cip = kubectl(sim, "get", "-n", NS, "svc", "web", "-o", "jsonpath={.spec.clusterIP}")
        say("== holdfast runs in Kubernetes mode (%s); the Service's ClusterIP is %s" %
            (hf.ip, cip))
        say(kubectl(sim, "get", "-n", NS, "elastiservice,deploy"))

        say("\n== the request rate drops to 0 (cooldown %ds)" % COOLDOWN_S)
        exporter.set("demo_requests_per_second", 0)
        start = time.monotonic()
        wait(lambda: kubectl(sim, "get", "-n", NS, "elastiservice", "web", "-o",
                             "jsonpath={.status.mode}") == "proxy", 60, "proxy mode")
        wait(lambda: kubectl(sim, "get", "-n", NS, "deploy", "web", "-o",
                             "jsonpath={.spec.replicas}") == "0", 30, "scale to zero")
        say("scaled to zero after %.1f s" % (time.monotonic() - start))
        say(kubectl(sim, "get", "-n", NS, "elastiservice,deploy,endpointslices"))

        say("\n== a health check at zero: answered by holdfast's probeResponse rule, no wake")
        with urllib.request.urlopen("http://%s/healthz" % cip, timeout=10) as r:
            say("GET /healthz -> %d %s" % (r.status, r.read().decode()))
        say("replicas: %s" % kubectl(sim, "get", "-n", NS, "deploy", "web", "-o",
                                      "jsonpath={.spec.replicas}"))

        say("\n== a real request at zero: held, the Deployment woken, answered by the new pod")
        start = time.monotonic()
        with urllib.request.urlopen("http://%s/" % cip, timeout=60) as r:
            body = r.read()
        say("GET / -> %d (%d bytes) after %.2f s (cold start: wake, pod start, readiness)" %
            (r.status, len(body), time.monotonic() - start))
        wait(lambda: kubectl(sim, "get", "-n", NS, "elastiservice", "web", "-o",
                             "jsonpath={.status.mode}") == "serve", 30, "serve mode")
        say(kubectl(sim, "get", "-n", NS, "elastiservice,deploy,endpointslices"))
        say("\n== Events")
        say(kubectl(sim, "get", "events", "-n", NS, "--field-selector",
                    "involvedObject.kind=ElastiService"))
        say("\n== holdfast's metrics (excerpt)")
        for line in hf.metrics_text().splitlines():
            if line.startswith(("holdfast_cold_start_seconds_sum", "holdfast_cold_start_seconds_count",
                                "holdfast_scale_downs_total", "holdfast_scale_ups_total",
                                "holdfast_serve_switches_total")) or \
                    (line.startswith("holdfast_requests_total") and not line.endswith(" 0")):
                say(line)
    finally:
        if hf:
            hf.stop()
        if prom:
            prom.stop()
        exporter.close()
        sim.stop()
    say("\n== done: everything stopped")


if __name__ == "__main__":
    main()
