"""The clients people and tests use, against the test cluster: upstream kubectl by hand (what
docs/test-cluster.md tells an operator to do through `scripts/cluster exec`), holdfast's own CRD
the ways its controller uses it, and Debian's python3-kubernetes (tests/integration's
test_kube_client.py writes with it). Ported from tests/kubesim's kubectl and client tests when
kubesim went (issue 11): there they showed the simulator answered as a cluster does; here they
show the test cluster serves these clients as they are used.

Run as root, with Debian's python3: /usr/bin/python3 -m pytest tests/cluster/test_clients.py
"""
import json
import os
import select
import subprocess
import time

import pytest
import yaml

from clusterfix import wait_for
from nodeagentlib.kubeapi import ApiError

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ELASTI_CRD = os.path.join(REPO, "crds", "elastiservice.yaml")
ES_API = "/apis/elasti.truefoundry.com/v1alpha1"


def deployment(name, replicas=1, ns=None):
    labels = {"app": name}
    meta = {"name": name}
    if ns:
        meta["namespace"] = ns
    c = {"name": "main", "image": "hfc/http:1", "ports": [{"containerPort": 8080}],
         "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [c], "terminationGracePeriodSeconds": 5}}}}


def service(name, ns=None):
    meta = {"name": name}
    if ns:
        meta["namespace"] = ns
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def read_lines_until(proc, predicate, timeout):
    """Reads stdout lines of a running process until predicate(line) holds; returns them all."""
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


def test_kubectl_by_hand_applies_scales_watches_patches_and_deletes(cluster, ns):
    assert "Active" in cluster.kubectl("get", "namespace", ns).stdout
    manifest = yaml.safe_dump_all([deployment("web", ns=ns), service("web", ns=ns)])
    out = cluster.kubectl("apply", "-f", "-", input=manifest).stdout
    assert "deployment.apps/web created" in out and "service/web created" in out
    # re-applying the same manifest changes nothing
    assert "deployment.apps/web unchanged" in cluster.kubectl("apply", "-f", "-", input=manifest).stdout

    # kubectl's watch (this thread is in the cluster's namespace: so is the child)
    watch = subprocess.Popen([os.path.join(cluster.bin, "kubectl"), "get", "deployment", "web", "-n", ns, "-w",
                              "-o", "jsonpath={.spec.replicas}{\"/\"}{.status.readyReplicas}{\"\\n\"}"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=cluster.env())
    try:
        read_lines_until(watch, lambda ln: ln.startswith("1/"), timeout=30)
        assert "scaled" in cluster.kubectl("scale", "deployment/web", "-n", ns, "--replicas=3").stdout
        read_lines_until(watch, lambda ln: ln.strip() == "3/3", timeout=90)
    finally:
        watch.kill()
        watch.wait()

    table = cluster.kubectl("get", "deployment", "web", "-n", ns).stdout.split("\n")
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table[1].split()[:2] == ["web", "3/3"]
    assert len(cluster.kubectl("get", "pods", "-n", ns, "-l", "app=web", "-o", "name").stdout.split()) == 3
    eps = cluster.kubectl("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=web").stdout
    assert "8080" in eps
    cluster.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=30s")
    assert "3 desired" in cluster.kubectl("describe", "deployment", "web", "-n", ns).stdout

    cluster.kubectl("patch", "deployment", "web", "-n", ns, "-p", '{"metadata":{"labels":{"tier":"front"}}}')
    cluster.kubectl("patch", "deployment", "web", "-n", ns, "--type=json",
                    "-p", '[{"op":"replace","path":"/spec/replicas","value":1}]')
    got = json.loads(cluster.kubectl("get", "deployment", "web", "-n", ns, "-o", "json").stdout)
    assert got["metadata"]["labels"]["tier"] == "front" and got["spec"]["replicas"] == 1
    # the label patch left the generation alone; the two replica changes moved it
    assert got["metadata"]["generation"] == 3, got["metadata"]

    assert 'deployment.apps "web" deleted' in cluster.kubectl("delete", "deployment", "web", "-n", ns).stdout
    r = cluster.kubectl("get", "deployment", "web", "-n", ns, check=False)
    assert r.returncode != 0 and "NotFound" in r.stderr
    # its ReplicaSet and pods go with it (the garbage collector, ownerReferences)
    wait_for(lambda: cluster.kubectl("get", "pods", "-n", ns, "-o", "name").stdout.strip() == "", 90,
             "the deleted Deployment's pods to go")


def test_holdfast_crd_with_kubectl_validation_status_conflict_and_finalizer(cluster, ns):
    """holdfast's CRD (crds/elastiservice.yaml) applied by kubectl, and its objects used the ways
    holdfast's controller uses them: a bad field refused by name, status written through the
    status subresource without moving the generation, a stale write refused 409, and the
    finalizer holding a deletion until it is removed."""
    cluster.kubectl("apply", "-f", ELASTI_CRD)
    wait_for(lambda: cluster.api_get(ES_API)[0] == 200, 30, "ElastiServices served")
    es = ("apiVersion: elasti.truefoundry.com/v1alpha1\nkind: ElastiService\nmetadata: {name: target-es}\n"
          "spec:\n  service: web\n  minTargetReplicas: 1\n  cooldownPeriod: 300\n"
          "  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n")
    # the CRD was just created: the first apply may come before its schema is in force everywhere
    wait_for(lambda: cluster.kubectl("apply", "-n", ns, "-f", "-", input=es, check=False).returncode == 0,
             30, "the ElastiService applied")
    bad = es.replace("minTargetReplicas: 1", "minTargetReplicas: -3").replace("name: target-es", "name: bad")
    r = cluster.kubectl("apply", "-n", ns, "-f", "-", input=bad, check=False)
    assert r.returncode != 0 and "spec.minTargetReplicas" in r.stderr, r.stderr
    path = "%s/namespaces/%s/elastiservices/target-es" % (ES_API, ns)
    obj = cluster.api.get(path)
    gen = obj["metadata"]["generation"]
    out = cluster.api.patch(path + "/status", {"status": {"mode": "proxy", "observedGeneration": gen}})
    assert out["status"]["mode"] == "proxy" and out["metadata"]["generation"] == gen
    out["status"]["mode"] = "serve"
    out = cluster.api.put(path + "/status", out)
    assert out["status"]["mode"] == "serve"
    stale = dict(out, metadata=dict(out["metadata"], resourceVersion=obj["metadata"]["resourceVersion"]))
    with pytest.raises(ApiError) as e:
        cluster.api.put(path + "/status", stale)
    assert e.value.status == 409 and e.value.reason == "Conflict", e.value
    fin = cluster.api.patch(path, {"metadata": {"finalizers": ["elasti.truefoundry.com/finalizer"]}})
    assert fin["metadata"]["generation"] == gen
    cluster.kubectl("delete", "elastiservice", "target-es", "-n", ns, "--wait=false")
    assert cluster.api.get(path)["metadata"]["deletionTimestamp"]
    cluster.api.patch(path, {"metadata": {"finalizers": None}})
    wait_for(lambda: cluster.api_get(path)[0] == 404, 30, "the ElastiService gone once its finalizer is removed")


def test_python_client_lists_pages_watches_and_scales(cluster, ns):
    import kubernetes
    from kubernetes import client, watch
    from kubernetes.client.rest import ApiException
    cfg = client.Configuration()
    kubernetes.config.load_kube_config(config_file=cluster.kubeconfig, client_configuration=cfg)
    api = client.ApiClient(cfg)
    try:
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)

        def cm(name, labels=None, data=None):
            return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels),
                                      data=data or {"k": "v"})

        def names(items):
            return [c.metadata.name for c in items if c.metadata.name != "kube-root-ca.crt"]
        for i in range(5):
            core.create_namespaced_config_map(ns, cm("c%d" % i, {"tier": "a" if i < 3 else "b", "i": str(i)}))
        assert names(core.list_namespaced_config_map(ns, label_selector="tier=a").items) == ["c0", "c1", "c2"]
        assert names(core.list_namespaced_config_map(ns, label_selector="i in (1,4),tier").items) == ["c1", "c4"]
        assert names(core.list_namespaced_config_map(ns, field_selector="metadata.name=c2").items) == ["c2"]
        with pytest.raises(ApiException) as e:
            core.list_namespaced_config_map(ns, field_selector="data.k=v")
        assert e.value.status == 400
        seen, cont = [], None
        for _ in range(10):
            page = core.list_namespaced_config_map(ns, label_selector="tier", limit=2, _continue=cont)
            assert len(page.items) <= 2
            seen += names(page.items)
            cont = page.metadata._continue
            if not cont:
                break
        assert seen == ["c0", "c1", "c2", "c3", "c4"]

        # a watch from a list's resourceVersion sees what came after it, in order
        rv = core.list_namespaced_config_map(ns).metadata.resource_version
        core.create_namespaced_config_map(ns, cm("after"))
        core.patch_namespaced_config_map("after", ns, {"data": {"k": "changed"}})
        core.delete_namespaced_config_map("after", ns)
        events = []
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=10):
            events.append((ev["type"], ev["object"].metadata.name, (ev["object"].data or {}).get("k")))
            if len(events) == 3:
                w.stop()
        assert events == [("ADDED", "after", "v"), ("MODIFIED", "after", "changed"),
                          ("DELETED", "after", "changed")]

        with pytest.raises(ApiException) as e:
            core.read_namespaced_config_map("missing", ns)
        assert e.value.status == 404
        with pytest.raises(ApiException) as e:
            core.create_namespaced_config_map(ns, cm("c0"))
        assert e.value.status == 409 and "AlreadyExists" in e.value.body

        # the scale subresource, which holdfast reads and patches
        apps.create_namespaced_deployment(ns, deployment("scaled"))
        scale = apps.read_namespaced_deployment_scale("scaled", ns)
        assert scale.spec.replicas == 1
        apps.patch_namespaced_deployment_scale("scaled", ns, {"spec": {"replicas": 2}})
        assert apps.read_namespaced_deployment("scaled", ns).spec.replicas == 2
        wait_for(lambda: apps.read_namespaced_deployment_scale("scaled", ns).status.replicas == 2, 60,
                 "the scale's status.replicas at 2")
        assert apps.read_namespaced_deployment_scale("scaled", ns).status.selector == "app=scaled"
        with pytest.raises(ApiException) as e:
            apps.patch_namespaced_deployment_scale("scaled", ns, {"spec": {"replicas": -1}})
        assert e.value.status == 422
    finally:
        api.close()


def test_realcluster_refuses_holdfast_test_cluster_kubesim_naming_the_variable(tmp_path, monkeypatch):
    """The tests' client of the cluster (tests/hftest/realcluster.py) refuses the kubesim value a
    run may still carry from before issue 11, naming the variable and what to do, instead of
    running on the real cluster as if asked."""
    from hftest.realcluster import RealCluster
    monkeypatch.setenv("HOLDFAST_TEST_CLUSTER", "kubesim")
    with pytest.raises(RuntimeError) as e:
        RealCluster(tmp_path / "c")
    assert "HOLDFAST_TEST_CLUSTER='kubesim'" in str(e.value) and "set it to real" in str(e.value)
    assert not (tmp_path / "c").exists()  # refused before anything was made
    monkeypatch.setenv("HOLDFAST_TEST_CLUSTER", "real")
    assert RealCluster(tmp_path / "c").state_dir == str(tmp_path / "c")
