"""The chart's whole life with Helm itself on the real control plane (issue 11): `helm install
--wait`, a wake through a real kube-proxy, `helm upgrade`, and `helm uninstall`, whose pre-delete
hook Helm runs itself.

The cluster is `scripts/cluster up` (tests/cluster/clusterlib.py: upstream etcd, kube-apiserver,
controller-manager, scheduler and kube-proxy; only the kubelet is the test's node agent), one for
this module. holdfast's pods run build/holdfast (or $HOLDFAST_BIN) through the image map, with
the chart's ServiceAccount token projected by the node agent, so the chart's RBAC is all they
have. Every client (kubectl, helm, curl) runs inside the cluster's network namespace."""
import json
import os

import pytest
import yaml

from clusterlib import Cluster
from hftest import kubeclient

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

CHART = os.path.join(ROOT, "helm", "holdfast")
HOLDFAST = os.environ.get("HOLDFAST_BIN") or os.path.join(ROOT, "build", "holdfast")
PY = "/usr/bin/python3"
IMAGES = {"ghcr.io/holdfast/holdfast": {"argv": [HOLDFAST, "$@"]},
          "e2e/echo": {"argv": [PY, os.path.join(HERE, "echo_server.py")], "startDelayMs": 300}}
HF_NS = "holdfast"
APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: e2e/echo
        ports: [{containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: elasti.truefoundry.com/v1alpha1
kind: ElastiService
metadata: {name: web, namespace: default}
spec:
  service: web
  minTargetReplicas: 1
  cooldownPeriod: 600
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
"""


def wait_for(what, fn, timeout=30, interval=0.2):
    return kubeclient.wait_for(fn, timeout, interval, what, retry_on=(), error=AssertionError)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    if not os.access(HOLDFAST, os.X_OK):
        pytest.fail("no holdfast binary at %s (build it, or set HOLDFAST_BIN)" % HOLDFAST)
    state = tmp_path_factory.mktemp("helm-cluster")
    images = state / "images.json"
    images.write_text(json.dumps(IMAGES))
    c = Cluster(str(state / "c"))
    c.up(image_map=str(images), proxy_delay_ms=300, out=lambda s: None)
    try:
        yield c
    finally:
        c.down(out=lambda s: None)


def run(c, *argv, check=True, timeout=120):
    r = c.run(list(argv), check=False, timeout=timeout)
    assert not check or r.returncode == 0, "%s: exit %d\n%s%s" % (argv, r.returncode, r.stdout, r.stderr)
    return r


def kubectl_json(c, *args):
    return json.loads(run(c, "kubectl", *args, "-o", "json").stdout)


def es_status(c):
    return kubectl_json(c, "get", "elastiservice", "web").get("status") or {}


def resolver_ips(c):
    items = kubectl_json(c, "get", "endpointslices", "-l",
                         "kubernetes.io/service-name=web,endpointslice.kubernetes.io/managed-by=holdfast")["items"]
    return sorted(a for s in items for e in s.get("endpoints") or [] for a in e["addresses"])


def holdfast_pods(c):
    return [p for p in kubectl_json(c, "-n", HF_NS, "get", "pods")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def logs(c):
    out = []
    for p in holdfast_pods(c):
        out.append(run(c, "kubectl", "-n", HF_NS, "logs", p["metadata"]["name"], check=False).stdout)
    return "\n".join(out)


def test_install_wake_upgrade_uninstall_with_helm(real, tmp_path):
    c = real
    run(c, "helm", "lint", "--strict", CHART)
    # install: both replicas Ready (helm --wait reads their readiness), one of them leads
    run(c, "helm", "install", "holdfast", CHART, "-n", HF_NS, "--create-namespace",
        "--set", "pollingInterval=1s", "--wait", "--timeout", "90s")
    pods = holdfast_pods(c)
    assert len(pods) == 2 and all(p["status"]["podIP"].startswith("10.88.0.") for p in pods), pods
    holder = wait_for("a leader", lambda: kubectl_json(c, "-n", HF_NS, "get", "lease", "holdfast-leader")
                      ["spec"].get("holderIdentity"))
    assert holder in [p["metadata"]["name"] for p in pods]

    # an app at zero: the resolver slice lists both holdfast pods; a request through the
    # ClusterIP (kube-proxy's iptables rules) wakes it and gets the pod's answer
    app = tmp_path / "app.yaml"
    app.write_text(APP)
    run(c, "kubectl", "apply", "-f", str(app))
    wait_for("serve mode", lambda: es_status(c).get("mode") == "serve")
    run(c, "kubectl", "scale", "deploy/web", "--replicas=0")
    wait_for("proxy mode, resolver slice with both replicas",
             lambda: es_status(c).get("mode") == "proxy"
             and resolver_ips(c) == sorted(p["status"]["podIP"] for p in pods))
    ip = kubectl_json(c, "get", "svc", "web")["spec"]["clusterIP"]
    # kube-proxy applies the resolver slice up to its delay after the API shows it (a hand scale
    # to zero is not preceded by anything: docs/kubernetes.md); refused until then
    out = run(c, "curl", "-sS", "-m", "30", "--retry", "10", "--retry-delay", "1",
              "--retry-connrefused", "http://%s/wake" % ip).stdout
    assert json.loads(out)["pod"].startswith("web-"), out
    wait_for("serve mode after the wake", lambda: es_status(c).get("mode") == "serve")
    reasons = [e["reason"] for e in kubectl_json(c, "get", "events", "--field-selector",
                                                  "involvedObject.kind=ElastiService")["items"]]
    assert "ScaledToZero" in reasons and "ScaledUp" in reasons and "SwitchedToServe" in reasons, reasons

    # upgrade to one replica: the resolver slice follows, the remaining replica leads
    run(c, "helm", "upgrade", "holdfast", CHART, "-n", HF_NS, "--reuse-values",
        "--set", "replicaCount=1", "--wait", "--timeout", "90s")
    wait_for("one holdfast pod", lambda: len(holdfast_pods(c)) == 1, timeout=60)
    run(c, "kubectl", "scale", "deploy/web", "--replicas=0")
    (left,) = holdfast_pods(c)
    wait_for("proxy mode through the remaining replica",
             lambda: es_status(c).get("mode") == "proxy" and resolver_ips(c) == [left["status"]["podIP"]],
             timeout=40)

    # uninstall: Helm runs the pre-delete hook, which restores the target, deletes the resolver
    # slices and removes the finalizers; nothing of holdfast is left to block a deletion
    text = logs(c)
    assert "forbidden" not in text.lower(), text[-3000:]
    run(c, "helm", "uninstall", "holdfast", "-n", HF_NS, "--wait", "--timeout", "90s")
    dep = kubectl_json(c, "get", "deploy", "web")
    assert dep["spec"]["replicas"] == 1, dep["spec"]
    assert not kubectl_json(c, "get", "elastiservice", "web")["metadata"].get("finalizers")
    assert resolver_ips(c) == []
    wait_for("the restored pod answers", lambda: run(c, "curl", "-s", "-m", "5", "http://%s/after" % ip,
                                                     check=False).stdout.startswith("{"), timeout=30)
    run(c, "kubectl", "delete", "elastiservice", "web", "--timeout=20s")
