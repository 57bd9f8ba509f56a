"""Kubernetes mode with several replicas, and the way back out: leader failover, resolver slices
that follow the resolver's own pods, and `holdfast restore --all` (the chart's uninstall hook).

Each test runs holdfast processes beside the real control plane (tests/hftest/realcluster.py;
root), with leader election on.
"""
import os
import subprocess

import pytest

from hftest.hfk8s import HoldfastK8s
from hftest.holdfast import holdfast_bin
from hftest.kubeclient import wait_for
from hftest.realcluster import RealCluster

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

CRD_FILE = os.path.join(REPO, "crds", "elastiservice.yaml")
IMAGES = {"ha/http:1": {"argv": ["/usr/bin/python3", "-m", "http.server", "--bind", "$POD_IP", "$PORT"]}}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = RealCluster(tmp_path_factory.mktemp("cluster"), image_map=IMAGES, proxy_delay_ms=100)
    s.start()
    try:
        s.kubectl("apply", "-f", CRD_FILE)
        wait_for(lambda: s.exists("/apis/elasti.truefoundry.com/v1alpha1"), what="CRD served")
        yield s
    finally:
        leftovers = s.stop()
    assert leftovers == [], "left behind by the cluster: %s" % leftovers


def run_holdfast(sim, *args, timeout=60):
    """holdfast's other commands (restore), where the cluster's API server is reachable."""
    return subprocess.run(list(getattr(sim, "exec_prefix", [])) + [holdfast_bin()] + list(args),
                          capture_output=True, text=True, timeout=timeout)


_counter = iter(range(1, 1000))


@pytest.fixture
def ns(sim):
    name = "ha%d" % next(_counter)
    sim.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    sim.request("DELETE", "/api/v1/namespaces/" + name)


@pytest.fixture
def replicas_of_holdfast(sim, tmp_path):
    started = []

    def start(ns, name, extra=(), **kw):
        h = HoldfastK8s(sim, tmp_path / name, namespace=ns,
                        extra_args=["--leader-elect=true", "--pod-name", name,
                                    "--resolver-namespace", ns] + list(extra), **kw)
        started.append(h)
        return h.start()

    yield start
    for h in started:
        h.stop()
        assert h.sanitizer_report() is None, h.sanitizer_report()


def make_app(sim, ns, name="web"):
    labels = {"app": name}
    sim.create("/apis/apps/v1/namespaces/%s/deployments" % ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                     "name": "main", "image": "ha/http:1", "ports": [{"containerPort": 8080}],
                     "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}}})
    sim.create("/api/v1/namespaces/%s/services" % ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    sim.create("/apis/elasti.truefoundry.com/v1alpha1/namespaces/%s/elastiservices" % ns, {
        "apiVersion": "elasti.truefoundry.com/v1alpha1", "kind": "ElastiService",
        "metadata": {"name": name},
        "spec": {"service": name, "minTargetReplicas": 1, "cooldownPeriod": 0,
                 "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}}})
    sim.wait_ready_replicas(ns, name, 1)


def scale(sim, ns, n, name="web"):
    sim.kubectl("scale", "-n", ns, "deploy/" + name, "--replicas=%d" % n)


def es(sim, ns, name="web"):
    return sim.get("/apis/elasti.truefoundry.com/v1alpha1/namespaces/%s/elastiservices/%s" % (ns, name))


def mode(sim, ns, name="web"):
    return es(sim, ns, name).get("status", {}).get("mode")


def resolver_slices(sim, ns, svc="web"):
    sel = "kubernetes.io/service-name=%s,endpointslice.kubernetes.io/managed-by=holdfast" % svc
    return sim.get("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices?labelSelector=%s" % (ns, sel))["items"]


def slice_ips(sim, ns, svc="web"):
    return sorted(a for s in resolver_slices(sim, ns, svc) for e in (s.get("endpoints") or [])
                  for a in e["addresses"])


def lease_holder(sim, ns):
    code, body = sim.request("GET", "/apis/coordination.k8s.io/v1/namespaces/%s/leases/holdfast-leader" % ns)
    return body.get("spec", {}).get("holderIdentity") if code == 200 else None


def test_leader_killed_the_other_replica_takes_over_scale_down(sim, ns, replicas_of_holdfast):
    make_app(sim, ns)
    a = replicas_of_holdfast(ns, "hf-a")
    wait_for(lambda: lease_holder(sim, ns) == "hf-a", timeout=15, what="hf-a leading")
    b = replicas_of_holdfast(ns, "hf-b")
    # Only the leader switches traffic: hf-b stays a follower while hf-a lives.
    scale(sim, ns, 0)
    wait_for(lambda: mode(sim, ns) == "proxy", timeout=20, what="proxy mode (hf-a)")
    assert slice_ips(sim, ns) == [a.ip], "the leader writes the slice (no --resolver-service: its own IP)"
    assert not b.log_lines("event"), "a follower records no transition"
    scale(sim, ns, 1)
    wait_for(lambda: mode(sim, ns) == "serve", timeout=30, what="serve mode (hf-a)")

    a.proc.kill()  # no release: the Lease must expire (15 s)
    a.proc.wait(10)
    wait_for(lambda: lease_holder(sim, ns) == "hf-b", timeout=40, what="hf-b taking the Lease over")
    scale(sim, ns, 0)
    wait_for(lambda: mode(sim, ns) == "proxy", timeout=20, what="proxy mode (hf-b)")
    assert slice_ips(sim, ns) == [b.ip]
    assert b.log_lines("event", reason="ScaledToZero")


def test_leader_stopped_hands_the_lease_over_at_once(sim, ns, replicas_of_holdfast):
    make_app(sim, ns)
    a = replicas_of_holdfast(ns, "hf-a")
    wait_for(lambda: lease_holder(sim, ns) == "hf-a", timeout=15, what="hf-a leading")
    replicas_of_holdfast(ns, "hf-b")
    a.stop()  # SIGTERM: the Lease is handed back before exit
    # Well under the 15 s lease duration: taken over because it was released.
    wait_for(lambda: lease_holder(sim, ns) == "hf-b", timeout=8, what="hf-b leading after a release")


def test_resolver_slices_follow_the_resolver_pods(sim, ns, replicas_of_holdfast):
    make_app(sim, ns)
    # The resolver's own Service, its pods listed by an EndpointSlice (as the EndpointSlice
    # controller would list holdfast's pods).
    sim.create("/api/v1/namespaces/%s/services" % ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "holdfast"},
        "spec": {"ports": [{"name": "shared", "port": 8012}]}})
    # addresses the API server takes in a slice (the real one refuses loopback)
    pods = [sim.fresh_ip(), sim.fresh_ip()]

    def resolver_pods(ips):
        body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "holdfast-pods", "labels": {
                    "kubernetes.io/service-name": "holdfast",
                    "endpointslice.kubernetes.io/managed-by": "test.holdfast.io"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": "node-%d" % i}
                              for i, ip in enumerate(ips)],
                "ports": [{"name": "shared", "port": 8012, "protocol": "TCP"}]}
        path = "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % ns
        code, old = sim.request("GET", path + "/holdfast-pods")
        if code == 200:
            body["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            sim.update(path + "/holdfast-pods", body)
        else:
            sim.create(path, body)

    resolver_pods(pods[:1])
    replicas_of_holdfast(ns, "hf-a", extra=["--resolver-service", "holdfast"])
    scale(sim, ns, 0)
    wait_for(lambda: mode(sim, ns) == "proxy", timeout=20, what="proxy mode")
    wait_for(lambda: slice_ips(sim, ns) == sorted(pods[:1]), timeout=10, what="one resolver")
    node = resolver_slices(sim, ns)[0]["endpoints"][0].get("nodeName")
    assert node == "node-0", "nodeName carried over (Local traffic policies need it)"
    resolver_pods(pods)
    wait_for(lambda: slice_ips(sim, ns) == sorted(pods), timeout=10, what="1 -> 2 resolvers")
    resolver_pods(pods[1:])
    wait_for(lambda: slice_ips(sim, ns) == sorted(pods[1:]), timeout=10, what="2 -> 1 resolvers")


def test_restore_all_puts_every_service_back_in_serve_mode(sim, ns, replicas_of_holdfast):
    make_app(sim, ns, "web")
    make_app(sim, ns, "api")
    hf = replicas_of_holdfast(ns, "hf-a")
    scale(sim, ns, 0, "web")
    scale(sim, ns, 0, "api")
    for name in ("web", "api"):
        wait_for(lambda: mode(sim, ns, name) == "proxy" and resolver_slices(sim, ns, name),
                 timeout=20, what=name + " in proxy mode")
    hf.proc.kill()  # gone without cleaning up, as after an uninstall
    hf.proc.wait(10)
    r = run_holdfast(sim, "restore", "--all", "--kubeconfig", sim.kubeconfig)
    assert r.returncode == 0, r.stderr
    for name in ("web", "api"):
        dep = sim.get("/apis/apps/v1/namespaces/%s/deployments/%s" % (ns, name))
        assert dep["spec"]["replicas"] == 1, name
        assert resolver_slices(sim, ns, name) == [], name
        assert mode(sim, ns, name) == "serve", name
    sim.wait_ready_replicas(ns, "web", 1)
    r = run_holdfast(sim, "restore", "--namespace", ns, "web", "--kubeconfig", sim.kubeconfig)
    assert r.returncode == 0, "a service already serving restores as a no-op: %s" % r.stderr
    r = subprocess.run([holdfast_bin(), "restore"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--all" in r.stderr


def test_restore_leaves_alone_an_elastiservice_whose_spec_string_holds_a_nul(sim, ns):
    """spec.service "web\\u0000x" is not the Service web: restore must not act on web for it."""
    make_app(sim, ns, "web")
    sim.patch("/apis/elasti.truefoundry.com/v1alpha1/namespaces/%s/elastiservices/web" % ns,
              {"spec": {"service": "web\x00x"}})
    scale(sim, ns, 0, "web")
    r = run_holdfast(sim, "restore", "--all", "--kubeconfig", sim.kubeconfig)
    assert r.returncode != 0, r.stderr
    assert "spec.service: must not contain a NUL character" in r.stderr, r.stderr
    dep = sim.get("/apis/apps/v1/namespaces/%s/deployments/web" % ns)
    assert dep["spec"]["replicas"] == 0, "restored a workload for a spec it cannot read"
    assert mode(sim, ns, "web") != "serve"


FINALIZER = "elasti.truefoundry.com/finalizer"


def test_restore_uninstall_takes_the_lease_and_removes_the_finalizers(sim, ns, replicas_of_holdfast):
    """The uninstall hook's restore runs while holdfast still runs (Helm deletes the Deployment
    only after its pre-delete hooks): it takes the leader Lease, so the leader stops and adds no
    finalizer back; every service is restored and holdfast's finalizer removed, so once holdfast
    is gone the ElastiServices (and their namespace) delete at once."""
    import time
    make_app(sim, ns, "web")
    make_app(sim, ns, "api")
    replicas_of_holdfast(ns, "hf-a")
    wait_for(lambda: lease_holder(sim, ns) == "hf-a", timeout=15, what="hf-a leading")
    replicas_of_holdfast(ns, "hf-b")
    for name in ("web", "api"):
        scale(sim, ns, 0, name)
    for name in ("web", "api"):
        wait_for(lambda: mode(sim, ns, name) == "proxy" and resolver_slices(sim, ns, name)
                 and FINALIZER in es(sim, ns, name)["metadata"].get("finalizers", []),
                 timeout=20, what=name + " in proxy mode with the finalizer")
    r = run_holdfast(sim, "restore", "--all", "--uninstall", "--lease-namespace", ns,
                     "--kubeconfig", sim.kubeconfig)
    assert r.returncode == 0, r.stderr
    assert lease_holder(sim, ns) == "holdfast-restore"

    def restored(name):
        obj = es(sim, ns, name)
        dep = sim.get("/apis/apps/v1/namespaces/%s/deployments/%s" % (ns, name))
        return (dep["spec"]["replicas"] == 1 and not resolver_slices(sim, ns, name)
                and obj.get("status", {}).get("mode") == "serve"
                and FINALIZER not in obj["metadata"].get("finalizers", []))
    for name in ("web", "api"):
        assert restored(name), es(sim, ns, name)
    # the replicas still running neither lead nor put anything back
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        assert lease_holder(sim, ns) == "holdfast-restore"
        assert restored("web") and restored("api")
        time.sleep(0.25)
    # restore without --uninstall takes no Lease flags
    r = subprocess.run([holdfast_bin(), "restore", "--all", "--lease-namespace", ns],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--uninstall" in r.stderr
    sim.delete("/apis/elasti.truefoundry.com/v1alpha1/namespaces/%s/elastiservices/web" % ns)
    wait_for(lambda: not sim.exists("/apis/elasti.truefoundry.com/v1alpha1/namespaces/%s/elastiservices/web"
                                    % ns), timeout=5, what="the ElastiService deleted (no finalizer)")


# What the limited identity may do: everything holdfast needs, except scaling Deployments.
LIMITED_RULES = [
    {"apiGroups": ["", "discovery.k8s.io", "elasti.truefoundry.com", "coordination.k8s.io",
                   "events.k8s.io"], "resources": ["*"], "verbs": ["*"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale"],
     "verbs": ["get", "list", "watch"]}]


def limited_kubeconfig(sim, ns, tmp_path, token):
    import yaml
    kc = yaml.safe_load(open(sim.kubeconfig))
    for u in kc["users"]:
        u["user"] = {"token": token}
    path = tmp_path / "limited.kubeconfig"
    path.write_text(yaml.safe_dump(kc))
    return path


def test_forbidden_scale_call_is_a_condition_an_event_and_the_504_reason(tmp_path, request):
    """A scale-up the API server refuses (RBAC) is said where people look, not only logged."""
    # A ServiceAccount bound to LIMITED_RULES by a ClusterRole, its token from TokenRequest:
    # the API server's RBAC refuses the patch.
    sim, ns = request.getfixturevalue("sim"), request.getfixturevalue("ns")
    sim.create("/api/v1/namespaces/%s/serviceaccounts" % ns, {"metadata": {"name": "hf"}})
    role = "hf-limited-" + ns
    sim.create("/apis/rbac.authorization.k8s.io/v1/clusterroles",
               {"metadata": {"name": role}, "rules": LIMITED_RULES})
    sim.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "hf", "namespace": ns}]})
    request.addfinalizer(lambda: [sim.request("DELETE", "/apis/rbac.authorization.k8s.io/v1/%s/%s"
                                              % (kind, role))
                                  for kind in ("clusterrolebindings", "clusterroles")])
    tok = sim.create("/api/v1/namespaces/%s/serviceaccounts/hf/token" % ns,
                     {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                      "spec": {"expirationSeconds": 3600}})["status"]["token"]
    forbidden_case(sim, ns, limited_kubeconfig(sim, ns, tmp_path, tok), tmp_path)


def forbidden_case(sim, ns, limited, tmp_path):
    import json
    import urllib.error
    import urllib.request
    hf = None
    try:
        make_app(sim, ns)
        es_path = "/apis/elasti.truefoundry.com/v1alpha1/namespaces/%s/elastiservices/web" % ns
        obj = sim.get(es_path)
        obj["spec"]["holdTimeoutSeconds"] = 6
        sim.update(es_path, obj)
        hf = HoldfastK8s(sim, tmp_path / "hf", namespace=ns,
                         extra_args=["--kubeconfig", str(limited), "--pod-name", "hf-a"])
        hf.start()
        scale(sim, ns, 0)  # by hand (admin): holdfast only reads the scale
        wait_for(lambda: mode(sim, ns) == "proxy", timeout=20, what="proxy mode")
        # The pod that was scaled away serves until it is gone, and holdfast relays to it while
        # the Service lists it ready (CI on a loaded machine: the request got its 200): the case
        # is a target with no pod at all.
        def pod_endpoints():  # the EndpointSlice controller's, not holdfast's resolver slice
            sl = sim.get("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices?labelSelector="
                         "kubernetes.io/service-name%%3Dweb,endpointslice.kubernetes.io/managed-by"
                         "%%3Dendpointslice-controller.k8s.io" % ns)
            return [ep for s in sl["items"] for ep in s.get("endpoints") or []
                    if (ep.get("conditions") or {}).get("ready")]
        wait_for(lambda: not pod_endpoints(), timeout=60, interval=0.1,
                 what="the scaled-away pod no longer a ready endpoint")
        port = es(sim, ns)["status"]["ports"][0]["resolverPort"]
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen("http://%s:%d/" % (hf.ip, port), timeout=30)
        assert e.value.code == 504
        body = json.loads(e.value.read())
        # (once on the real cluster in CI the reason was another one, not kept: the log says why)
        assert "Forbidden" in body["reason"] and "scaling Deployment web up failed" in body["reason"], \
            (body, [ln for ln in hf.stderr_text().splitlines() if '"level":"debug"' not in ln][-40:])

        def failed():
            c = [c for c in es(sim, ns)["status"].get("conditions", []) if c["type"] == "ScaleUpFailed"]
            return c and c[0]["status"] == "True" and c[0]["reason"] == "Forbidden" and c[0]
        wait_for(failed, timeout=10, what="ScaleUpFailed=True, Forbidden")
        events = sim.get("/api/v1/namespaces/%s/events" % ns)["items"]
        assert any(ev["reason"] == "ScaleUpFailed" and ev["type"] == "Warning" for ev in events), events
    finally:
        if hf:
            hf.stop()


def test_not_ready_until_caches_synced_and_routed(sim, ns, tmp_path):
    """A replica must not take traffic before it listens on the resolver ports: /readyz waits for
    the informers' first sync (here: held back at start by an API server that answers nothing
    for 6 s; the real one is SIGSTOPped, as stopping it takes longer than the outage would)."""
    from hftest.hfk8s import HoldfastError
    make_app(sim, ns)
    scale(sim, ns, 0)
    hf = HoldfastK8s(sim, tmp_path / "hf", namespace=ns)
    sim.latency(6000, 6)
    try:
        with pytest.raises(HoldfastError):
            hf.start(timeout=3)  # the API is down: caches cannot sync, so not ready
        assert hf.alive()
        wait_for(hf.ready, timeout=30, what="ready once the API is back")
        # Ready means routed: an ElastiService in proxy mode has its resolver port open already.
        wait_for(lambda: mode(sim, ns) == "proxy", timeout=20, what="proxy mode")
        ready_lines = hf.log_lines("caches synced and routes published: ready for traffic")
        assert len(ready_lines) == 1
    finally:
        sim.clear_faults()
        hf.stop()
