"""The real kubectl against kubesim: what an operator does by hand must just work."""
import json
import select
import time

import yaml

from conftest import WIDGET_CRD, deployment, service
from simctl import wait_for


def read_lines_until(proc, predicate, timeout=20):
    """Read stdout lines from a running process until predicate(line) holds; returns all lines."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.2)
        if r:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if predicate(line):
                return lines
    raise AssertionError("no matching line within %ss; got %r" % (timeout, lines))


def test_namespace_apply_scale_watch_patch_delete(cluster):
    name = "kubectl-flow"
    cluster.kubectl("create", "namespace", name)
    assert "Active" in cluster.kubectl("get", "namespace", name).stdout

    manifest = yaml.safe_dump_all([dict(deployment("web"), metadata={"name": "web", "namespace": name}),
                                   dict(service("web"), metadata={"name": "web", "namespace": name})])
    out = cluster.kubectl("apply", "-f", "-", input=manifest).stdout
    assert "deployment.apps/web created" in out and "service/web created" in out
    # Re-applying the same manifest is a no-op, as on a real cluster.
    out = cluster.kubectl("apply", "-f", "-", input=manifest).stdout
    assert "deployment.apps/web unchanged" in out

    watch = cluster.kubectl_popen("get", "deployment", "web", "-n", name, "-w", "-o",
                                  "jsonpath={.spec.replicas}{\"/\"}{.status.readyReplicas}{\"\\n\"}")
    try:
        read_lines_until(watch, lambda l: l.startswith("1/"))
        assert "scaled" in cluster.kubectl("scale", "deployment/web", "-n", name, "--replicas=3").stdout
        read_lines_until(watch, lambda l: l.strip() == "3/3", timeout=60)  # 3 pods start; 20 s was short under a full CI load (3/2 at 20 s once)
    finally:
        watch.kill()
        watch.wait()

    table = cluster.kubectl("get", "deployment", "web", "-n", name).stdout
    assert table.split("\n")[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table.split("\n")[1].split()[:2] == ["web", "3/3"]
    pods = cluster.kubectl("get", "pods", "-n", name, "-l", "app=web", "-o", "name").stdout.split()
    assert len(pods) == 3

    cluster.kubectl("patch", "deployment", "web", "-n", name, "-p", '{"metadata":{"labels":{"tier":"front"}}}')
    cluster.kubectl("patch", "deployment", "web", "-n", name, "--type=json",
                    "-p", '[{"op":"replace","path":"/spec/replicas","value":1}]')
    got = json.loads(cluster.kubectl("get", "deployment", "web", "-n", name, "-o", "json").stdout)
    assert got["metadata"]["labels"]["tier"] == "front" and got["spec"]["replicas"] == 1
    # A label-only patch does not bump generation; the replicas patch does.
    assert got["metadata"]["generation"] == 3

    assert 'deployment.apps "web" deleted' in cluster.kubectl("delete", "deployment", "web", "-n", name).stdout
    r = cluster.kubectl("get", "deployment", "web", "-n", name, check=False)
    assert r.returncode != 0 and "NotFound" in r.stderr
    # Its pods are garbage-collected through their ownerReferences.
    wait_for(lambda: cluster.kubectl("get", "pods", "-n", name, "-o", "name").stdout.strip() == "",
             what="pods of the deleted deployment to go")
    cluster.kubectl("delete", "namespace", name)
    wait_for(lambda: cluster.kubectl("get", "namespace", name, check=False).returncode != 0,
             what="namespace to be deleted")


def test_crd_custom_resource_lifecycle(cluster, ns):
    assert "created" in cluster.kubectl("apply", "-f", "-", input=WIDGET_CRD).stdout or True
    wait_for(lambda: "widgets" in cluster.kubectl("api-resources", "--api-group=example.com").stdout,
             what="widgets in discovery")
    cr = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n"
    assert "widget.example.com/w1 created" in cluster.kubectl("apply", "-n", ns, "-f", "-", input=cr).stdout
    lines = cluster.kubectl("get", "widgets", "-n", ns).stdout.strip().split("\n")
    assert lines[0].split() == ["NAME", "SIZE", "COLOR"]
    assert lines[1].split() == ["w1", "3", "red"]         # `color` defaulted by the schema
    got = json.loads(cluster.kubectl("get", "wd", "w1", "-n", ns, "-o", "json").stdout)
    assert got["spec"] == {"size": 3, "color": "red"}
    cluster.kubectl("patch", "widget", "w1", "-n", ns, "--type=merge", "-p", '{"spec":{"size":4}}')
    assert "4" in cluster.kubectl("get", "widget", "w1", "-n", ns, "-o", "jsonpath={.spec.size}").stdout
    assert cluster.kubectl("scale", "widget", "w1", "-n", ns, "--replicas=2").returncode == 0
    assert cluster.kubectl("get", "widget", "w1", "-n", ns, "-o", "jsonpath={.spec.replicas}").stdout == "2"
    assert 'widget.example.com "w1" deleted' in cluster.kubectl("delete", "widget", "w1", "-n", ns).stdout
    assert cluster.kubectl("get", "widget", "w1", "-n", ns, check=False).returncode != 0


def test_invalid_custom_resource_is_refused_naming_the_field(cluster, ns):
    cluster.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    wait_for(lambda: "widgets" in cluster.kubectl("api-resources", "--api-group=example.com").stdout,
             what="widgets in discovery")
    bad = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w2}\nspec: {size: 30, color: green}\n"
    r = cluster.kubectl("apply", "-n", ns, "-f", "-", input=bad, check=False)
    assert r.returncode != 0
    assert 'The Widget "w2" is invalid' in r.stderr
    assert "spec.size" in r.stderr and "less than or equal to 10" in r.stderr
    assert "spec.color" in r.stderr and 'supported values: "red", "blue"' in r.stderr
    missing = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w3}\nspec: {color: red}\n"
    r = cluster.kubectl("create", "-n", ns, "-f", "-", input=missing, check=False)
    assert r.returncode != 0 and "spec.size: Required value" in r.stderr
    # kubectl validates strictly by default: an unknown field is refused by the server.
    unknown = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w4}\nspec: {size: 1, bogus: 1}\n"
    r = cluster.kubectl("apply", "-n", ns, "-f", "-", input=unknown, check=False)
    assert r.returncode != 0 and 'unknown field "spec.bogus"' in r.stderr
    assert cluster.kubectl("get", "widgets", "-n", ns, "-o", "name").stdout.strip() == ""


def test_kubectl_sees_services_slices_and_events(cluster, ns):
    cluster.create("/apis/apps/v1/namespaces/%s/deployments" % ns, deployment("api", replicas=2))
    cluster.create("/api/v1/namespaces/%s/services" % ns, service("api"))
    cluster.wait_ready_replicas(ns, "api", 2)
    cluster.wait_service_endpoints(ns, "api", 2)
    svc = cluster.kubectl("get", "svc", "api", "-n", ns).stdout.split("\n")[1].split()
    assert svc[0] == "api" and svc[1] == "ClusterIP" and svc[2].startswith("127.") and svc[4] == "80/TCP"
    eps = cluster.kubectl("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=api").stdout
    assert "8080" in eps
    cluster.kubectl("rollout", "status", "deployment/api", "-n", ns, "--timeout=20s")
    desc = cluster.kubectl("describe", "deployment", "api", "-n", ns).stdout
    assert "Replicas:" in desc and "2 desired" in desc


ELASTI_CRD = __import__("os").path.join(__import__("os").path.dirname(__file__), "..", "..", "crds",
                                        "elastiservice.yaml")

ELASTI = """\
apiVersion: elasti.truefoundry.com/v1alpha1
kind: ElastiService
metadata: {name: target-es}
spec:
  minTargetReplicas: 1
  service: target
  scaleTargetRef: {apiVersion: apps/v1, kind: deployments, name: target}
  triggers:
  - type: prometheus
    metadata: {query: "sum(rate(x[1m])) or vector(0)", serverAddress: "http://prom:9090", threshold: "0.5"}
"""


def test_holdfast_elastiservice_crd(cluster, ns):
    """holdfast's own CRD: served, validated, and its status written the ways the controller does."""
    cluster.kubectl("apply", "-f", ELASTI_CRD)
    wait_for(lambda: cluster.exists("/apis/elasti.truefoundry.com/v1alpha1"), what="ElastiService served")
    assert "created" in cluster.kubectl("apply", "-n", ns, "-f", "-", input=ELASTI).stdout
    bad = ELASTI.replace("minTargetReplicas: 1", "minTargetReplicas: -3").replace("name: target-es", "name: bad")
    r = cluster.kubectl("apply", "-n", ns, "-f", "-", input=bad, check=False)
    assert r.returncode != 0 and "spec.minTargetReplicas" in r.stderr
    path = "/apis/elasti.truefoundry.com/v1alpha1/namespaces/%s/elastiservices/target-es" % ns
    es = cluster.get(path)
    gen = es["metadata"]["generation"]
    out = cluster.patch(path + "/status", {"status": {"mode": "proxy", "observedGeneration": gen}})
    assert out["status"]["mode"] == "proxy" and out["metadata"]["generation"] == gen
    out["status"]["mode"] = "serve"
    out = cluster.update(path + "/status", out)
    assert out["status"]["mode"] == "serve"
    stale = dict(out, metadata=dict(out["metadata"], resourceVersion=es["metadata"]["resourceVersion"]))
    code, body = cluster.request("PUT", path + "/status", stale)
    assert code == 409 and body["reason"] == "Conflict"
    fin = cluster.patch(path, {"metadata": {"finalizers": ["elasti.truefoundry.com/finalizer"]}})
    assert fin["metadata"]["generation"] == gen
    cluster.kubectl("delete", "elastiservice", "target-es", "-n", ns, "--wait=false")
    assert cluster.get(path)["metadata"]["deletionTimestamp"]
    cluster.patch(path, {"metadata": {"finalizers": None}})
    wait_for(lambda: not cluster.exists(path), what="ElastiService gone once its finalizer is removed")
