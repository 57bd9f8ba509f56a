"""The simulated cluster: workloads run real processes, EndpointSlices follow pod readiness,
and kube-proxy steers ClusterIP traffic from every slice labelled with the Service's name."""
import http.client
import socket
import time

import pytest

from conftest import deployment, service
from simctl import wait_for


def http_get(ip, port, path="/", timeout=3):
    """(status, body) or the OSError the connection failed with."""
    try:
        c = http.client.HTTPConnection(ip, port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        out = (r.status, r.read().decode().strip())
        c.close()
        return out
    except OSError as e:
        return e


def refused(ip, port):
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((ip, port))
        return False
    except ConnectionRefusedError:
        return True
    finally:
        s.close()


def test_traffic_follows_scale_0_2_0(cluster, ns):
    base = "/apis/apps/v1/namespaces/%s/deployments" % ns
    cluster.create(base, deployment("web", replicas=0))
    cluster.create("/api/v1/namespaces/%s/services" % ns, service("web"))
    ip = cluster.cluster_ip(ns, "web")
    assert ip.startswith("127.")
    wait_for(lambda: refused(ip, 80), what="connection refused at zero replicas")

    cluster.patch(base + "/web/scale", {"spec": {"replicas": 2}})
    cluster.wait_service_endpoints(ns, "web", 2)
    wait_for(lambda: http_get(ip, 80) is not None and not isinstance(http_get(ip, 80), OSError),
             what="ClusterIP to answer")
    answers = set()
    for _ in range(40):
        status, body = http_get(ip, 80)
        assert status == 200
        answers.add(body)
        if len(answers) == 2:
            break
    pods = {p["metadata"]["name"] for p in cluster.get("/api/v1/namespaces/%s/pods" % ns)["items"]}
    assert answers == pods and len(pods) == 2, "traffic should reach both pods"

    cluster.patch(base + "/web/scale", {"spec": {"replicas": 0}})
    wait_for(lambda: refused(ip, 80), what="connection refused after scaling to zero")
    wait_for(lambda: cluster.get("/api/v1/namespaces/%s/pods" % ns)["items"] == [], what="pods gone")
    status = cluster.get(base + "/web")["status"]
    assert "readyReplicas" not in status and "replicas" not in status   # zero fields omitted, as Go omits them
    assert status["observedGeneration"] == 3


def test_foreign_endpointslice_steers_traffic(cluster, ns):
    """holdfast's pattern: a slice it manages (not the controller's) labelled with the Service."""
    cluster.create("/apis/apps/v1/namespaces/%s/deployments" % ns, deployment("backend", replicas=1))
    cluster.create("/api/v1/namespaces/%s/services" % ns, service("backend"))
    cluster.create("/api/v1/namespaces/%s/services" % ns, service("front", selector=False, port=8081))
    cluster.wait_service_endpoints(ns, "backend", 1)
    pod_ip = cluster.ready_endpoints(ns, "backend")[0]
    front_ip = cluster.cluster_ip(ns, "front")
    assert refused(front_ip, 8081)
    sl = "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % ns

    def slice_(name, eps, port_name="http", port=8080):
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "front",
                                                      "endpointslice.kubernetes.io/managed-by": "holdfast"}},
                "addressType": "IPv4", "ports": [{"name": port_name, "protocol": "TCP", "port": port}],
                "endpoints": eps}
    # Port matched by name: a slice whose port is named differently carries no traffic.
    cluster.create(sl, slice_("front-other", [{"addresses": [pod_ip], "conditions": {"ready": True}}], "grpc"))
    # ready: false is skipped.
    cluster.create(sl, slice_("front-notready", [{"addresses": [pod_ip], "conditions": {"ready": False}}]))
    time.sleep(0.3)   # give kube-proxy the chance to (wrongly) open the port
    assert refused(front_ip, 8081)
    # A missing ready condition counts as ready, as in kube-proxy; the number comes from the slice.
    cluster.create(sl, slice_("front-holdfast", [{"addresses": [pod_ip]}]))
    wait_for(lambda: not isinstance(http_get(front_ip, 8081), OSError), what="foreign slice to carry traffic")
    status, body = http_get(front_ip, 8081)
    assert status == 200 and body.startswith("backend-")
    cluster.delete(sl + "/front-holdfast")
    wait_for(lambda: refused(front_ip, 8081), what="refused once the slice is gone")


def test_fault_kube_proxy_ignores_hand_made_slices(make_sim):
    """As a mesh or CNI that ignores hand-made EndpointSlices: with the fault on, only the
    EndpointSlice controller's slices carry traffic; cleared, hand-made ones do again."""
    sim = make_sim()
    sim.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "m"}})
    sim.create("/apis/apps/v1/namespaces/m/deployments", deployment("backend", replicas=1))
    sim.create("/api/v1/namespaces/m/services", service("backend"))
    sim.create("/api/v1/namespaces/m/services", service("front", selector=False, port=8081))
    sim.wait_service_endpoints("m", "backend", 1)
    pod_ip = sim.ready_endpoints("m", "backend")[0]
    front_ip, backend_ip = sim.cluster_ip("m", "front"), sim.cluster_ip("m", "backend")
    sim.create("/apis/discovery.k8s.io/v1/namespaces/m/endpointslices", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "front-hand", "labels": {"kubernetes.io/service-name": "front",
                                                     "endpointslice.kubernetes.io/managed-by": "holdfast"}},
        "addressType": "IPv4", "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        "endpoints": [{"addresses": [pod_ip]}]})
    wait_for(lambda: not refused(front_ip, 8081), what="the hand-made slice carrying traffic")
    assert sim.fault("ignore-unmanaged-slices", on=True) == {"ignoreUnmanagedSlices": True}
    wait_for(lambda: refused(front_ip, 8081), what="the hand-made slice ignored")
    assert http_get(backend_ip, 80)[0] == 200, "the controller's slices still count"
    sim.clear_faults()
    wait_for(lambda: not refused(front_ip, 8081), what="hand-made slices used again after clear")


def test_proxy_delay_defers_changes(make_sim):
    sim = make_sim(proxy_delay_ms=1500)
    sim.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "d"}})
    sim.create("/apis/apps/v1/namespaces/d/deployments", deployment("web"))
    sim.create("/api/v1/namespaces/d/services", service("web"))
    ip = sim.cluster_ip("d", "web")
    sim.wait_service_endpoints("d", "web", 1)
    t_ready = time.monotonic()
    assert refused(ip, 80), "the new endpoint must not be used before the proxy delay"
    wait_for(lambda: not refused(ip, 80), what="endpoint after the delay")
    assert time.monotonic() - t_ready > 0.5


def test_readiness_probe_gates_endpoints(cluster, ns, tmp_path):
    flag = tmp_path / "ready"
    probe = {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1}
    cluster.create("/apis/apps/v1/namespaces/%s/deployments" % ns,
                   deployment("probed", probe=probe, env={"READY_FILE": str(flag)}))
    cluster.create("/api/v1/namespaces/%s/services" % ns, service("probed"))
    wait_for(lambda: cluster.get("/api/v1/namespaces/%s/pods" % ns)["items"][0]["status"].get("phase") == "Running",
             what="pod running")
    time.sleep(0.5)
    pod = cluster.get("/api/v1/namespaces/%s/pods" % ns)["items"][0]
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"]
    assert ready == "False"
    sl = cluster.get("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % ns)["items"][0]
    assert sl["endpoints"][0]["conditions"] == {"ready": False, "serving": False, "terminating": False}
    assert sl["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080}]
    assert sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert sl["metadata"]["ownerReferences"][0]["kind"] == "Service"
    assert sl["endpoints"][0]["targetRef"]["name"] == pod["metadata"]["name"]
    flag.write_text("ok")
    cluster.wait_service_endpoints(ns, "probed", 1)
    cluster.wait_ready_replicas(ns, "probed", 1)


def test_image_pull_backoff_and_start_delay(cluster, ns):
    cluster.create("/apis/apps/v1/namespaces/%s/deployments" % ns, deployment("ghost", image="nowhere/ghost:1"))

    def waiting_reason():
        pods = cluster.get("/api/v1/namespaces/%s/pods" % ns)["items"]
        return pods and ((pods[0]["status"].get("containerStatuses") or [{}])[0].get("state") or {}) \
            .get("waiting", {}).get("reason") == "ImagePullBackOff"
    wait_for(waiting_reason, what="ImagePullBackOff")
    cluster.create("/apis/apps/v1/namespaces/%s/deployments" % ns, deployment("slow", image="kubesim/http:slow"))
    cluster.wait_ready_replicas(ns, "slow", 1)
    dep = cluster.get("/apis/apps/v1/namespaces/%s/deployments/ghost" % ns)
    assert dep["status"].get("readyReplicas") is None and dep["status"]["replicas"] == 1
    assert dep["status"]["unavailableReplicas"] == 1


def test_quota_makes_replica_failure(cluster, ns):
    cluster.create("/api/v1/namespaces/%s/resourcequotas" % ns, {
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "pods"}, "spec": {"hard": {"pods": "1"}}})
    cluster.create("/apis/apps/v1/namespaces/%s/deployments" % ns, deployment("big", replicas=3))

    def failure():
        conds = {c["type"]: c for c in cluster.get("/apis/apps/v1/namespaces/%s/deployments/big" % ns)
                 .get("status", {}).get("conditions", [])}
        return conds.get("ReplicaFailure")
    cond = wait_for(failure, what="ReplicaFailure condition")
    assert cond["status"] == "True" and cond["reason"] == "FailedCreate"
    assert "exceeded quota: pods, requested: pods=1, used: pods=1, limited: pods=1" in cond["message"]
    assert len(cluster.get("/api/v1/namespaces/%s/pods" % ns)["items"]) == 1
    evs = cluster.get("/api/v1/namespaces/%s/events?fieldSelector=reason%%3DFailedCreate" % ns)["items"]
    assert evs and evs[0]["type"] == "Warning"
    cluster.patch("/api/v1/namespaces/%s/resourcequotas/pods" % ns, {"spec": {"hard": {"pods": "3"}}})
    wait_for(lambda: failure() is None, what="ReplicaFailure cleared")
    cluster.wait_ready_replicas(ns, "big", 3)


def test_statefulset_ordered_and_scale(cluster, ns):
    sts = deployment("db", replicas=2)
    sts["kind"] = "StatefulSet"
    sts["spec"]["serviceName"] = "db"
    base = "/apis/apps/v1/namespaces/%s/statefulsets" % ns
    cluster.create(base, sts)
    cluster.wait_ready_replicas(ns, "db", 2, kind="statefulsets")
    names = sorted(p["metadata"]["name"] for p in cluster.get("/api/v1/namespaces/%s/pods" % ns)["items"])
    assert names == ["db-0", "db-1"]
    cluster.patch(base + "/db/scale", {"spec": {"replicas": 0}})
    wait_for(lambda: cluster.get("/api/v1/namespaces/%s/pods" % ns)["items"] == [], what="statefulset pods gone")
    st = cluster.get(base + "/db")["status"]
    assert st["replicas"] == 0 and "readyReplicas" not in st


def test_rollout_custom_resource_scales_pods(cluster, ns):
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "rollouts.argoproj.io"},
           "spec": {"group": "argoproj.io", "scope": "Namespaced",
                    "names": {"plural": "rollouts", "singular": "rollout", "kind": "Rollout", "shortNames": ["ro"]},
                    "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                                  "subresources": {"status": {}, "scale": {
                                      "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.HPAReplicas",
                                      "labelSelectorPath": ".status.selector"}},
                                  "schema": {"openAPIV3Schema": {"type": "object",
                                                                 "x-kubernetes-preserve-unknown-fields": True}}}]}}
    code, _ = cluster.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert code in (201, 409)
    wait_for(lambda: cluster.exists("/apis/argoproj.io/v1alpha1"), what="rollouts served")
    ro = deployment("canary", replicas=1)
    ro["apiVersion"], ro["kind"] = "argoproj.io/v1alpha1", "Rollout"
    base = "/apis/argoproj.io/v1alpha1/namespaces/%s/rollouts" % ns
    cluster.create(base, ro)
    cluster.wait_ready_replicas(ns, "canary", 1, kind="rollouts", group="argoproj.io/v1alpha1")
    scale = cluster.get(base + "/canary/scale")
    assert scale["spec"]["replicas"] == 1 and scale["status"] == {"replicas": 1, "selector": "app=canary"}
    cluster.patch(base + "/canary/scale", {"spec": {"replicas": 0}})
    wait_for(lambda: cluster.get("/api/v1/namespaces/%s/pods" % ns)["items"] == [], what="rollout pods gone")


def test_graceful_termination_sigterm_then_sigkill(cluster, ns):
    base = "/apis/apps/v1/namespaces/%s/deployments" % ns
    cluster.create(base, deployment("stubborn", image="kubesim/http:stubborn", grace=1))
    cluster.create("/api/v1/namespaces/%s/services" % ns, service("stubborn"))
    cluster.wait_service_endpoints(ns, "stubborn", 1)
    pod = cluster.get("/api/v1/namespaces/%s/pods" % ns)["items"][0]
    pid = int(pod["status"]["containerStatuses"][0]["containerID"].rsplit("/", 1)[1])
    cluster.patch(base + "/stubborn/scale", {"spec": {"replicas": 0}})

    def terminating_endpoint():
        sl = cluster.get("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % ns)["items"][0]
        eps = sl.get("endpoints") or []
        return eps and eps[0]["conditions"] == {"ready": False, "serving": True, "terminating": True}
    wait_for(terminating_endpoint, what="endpoint serving+terminating during the grace period")
    got = cluster.get("/api/v1/namespaces/%s/pods/%s" % (ns, pod["metadata"]["name"]))
    assert got["metadata"]["deletionGracePeriodSeconds"] == 1 and got["metadata"]["deletionTimestamp"]
    wait_for(lambda: not cluster.exists("/api/v1/namespaces/%s/pods/%s" % (ns, pod["metadata"]["name"])),
             timeout=10, what="pod removed after the grace period")
    with pytest.raises(ProcessLookupError):
        import os
        os.kill(pid, 0)


def test_stop_leaves_no_processes(make_sim):
    sim = make_sim()
    sim.create("/apis/apps/v1/namespaces/default/deployments", deployment("web", replicas=2, image="kubesim/http:stubborn"))
    sim.wait_ready_replicas("default", "web", 2)
    pids = [pid for p in sim.state()["pods"].values() for pid in p["pids"]]
    assert len(pids) == 2 and sim.leftover_processes()
    assert sim.stop() == []
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            import os
            os.kill(pid, 0)


def test_proxy_relays_500_concurrent_connections(cluster, ns):
    import threading
    cluster.create("/apis/apps/v1/namespaces/%s/deployments" % ns, deployment("many", replicas=2))
    cluster.create("/api/v1/namespaces/%s/services" % ns, service("many"))
    cluster.wait_service_endpoints(ns, "many", 2)
    ip = cluster.cluster_ip(ns, "many")
    wait_for(lambda: not refused(ip, 80), what="ClusterIP listening")
    n = 500
    barrier = threading.Barrier(n + 1, timeout=60)
    results = []
    lock = threading.Lock()

    def client():
        out = "not run"
        try:
            s = socket.create_connection((ip, 80), timeout=30)
            try:
                barrier.wait()                  # all n connections are open through the proxy at once
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                out = data.split(b"\r\n", 1)[0].decode()
            finally:
                s.close()
        except (OSError, threading.BrokenBarrierError) as e:
            out = repr(e)
        with lock:
            results.append(out)
    threads = [threading.Thread(target=client) for _ in range(n)]
    for t in threads:
        t.start()
    # Every client holds its connection open at the barrier: the proxy must be relaying all of them.
    wait_for(lambda: cluster.state()["proxy"]["active"] >= n, timeout=30, what="%d relayed connections" % n)
    barrier.wait()
    for t in threads:
        t.join(60)
    assert len(results) == n
    assert all(r.endswith(" 200 OK") for r in results), sorted(set(results))[:5]
