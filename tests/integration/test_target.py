"""The scale target (controller/target) against the API server: /scale of Deployments, StatefulSets and
Argo Rollouts, the wake (0 -> minReplicas once, a no-op otherwise, safe when two race), kind
aliases, KEDA ScaledObject pause/resume, and the diagnosis of a wake that produces no ready pod
(quota -> FailedCreate, missing image -> ImagePullBackOff). Also what the test cluster's
kill_pod fault does, which tests may use.

Each test runs tests/tools/target_probe (built by meson; directory from HOLDFAST_TOOLS_DIR,
default tests/tools beside $HOLDFAST_BIN, else <repo>/build/tests/tools), which starts every
operation named on its command line at once and prints one JSON line per operation (see the
probe's header comment). What the probe did is checked against the API server's state.

One real test cluster serves the module (tests/hftest/realcluster.py; root; the probe runs inside
the cluster's network namespace). Each
test has its own namespace. Every wait is bounded polling; the probe's stderr must hold no
sanitizer report.
"""
import json
import os
import re
import subprocess

import pytest

from hftest.kubeclient import wait_for
from hftest.realcluster import RealCluster
from hftest.thirdparty_crds import SCALEDOBJECT_CRD

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

_BUILD = os.path.dirname(os.environ["HOLDFAST_BIN"]) if os.environ.get("HOLDFAST_BIN") else os.path.join(REPO, "build")
TOOLS = os.environ.get("HOLDFAST_TOOLS_DIR", os.path.join(_BUILD, "tests", "tools"))
PROBE = os.path.join(TOOLS, "target_probe")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

IMAGES = {"test/sleep": {"argv": ["/bin/sleep", "$@"]}, "test/crash": {"argv": ["/bin/false"]}}

@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = RealCluster(tmp_path_factory.mktemp("cluster"), image_map=IMAGES)
    s.start()
    try:
        code, body = s.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", SCALEDOBJECT_CRD)
        assert code in (201, 409), body
        wait_for(lambda: s.exists("/apis/keda.sh/v1alpha1"), what="keda.sh/v1alpha1 served")
        yield s
    finally:
        leftovers = s.stop()
    assert leftovers == [], "left behind by the cluster: %s" % leftovers


@pytest.fixture(scope="module")
def rollouts(sim):
    """Rollouts that get ReplicaSets and pods: the upstream Argo Rollouts controller
    (RealCluster.start_rollouts; started once, by the first test that asks)."""
    sim.start_rollouts()
    return sim


_ns_counter = iter(range(1, 1 << 30))


@pytest.fixture
def ns(sim, request):
    sim.clear_faults()
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    name = "tg%d-%s" % (next(_ns_counter), slug)
    sim.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    sim.clear_faults()
    sim.request("DELETE", "/api/v1/namespaces/" + name)


class Runner:
    """Runs target_probe; keeps every stderr to check for sanitizer reports at teardown."""

    def __init__(self, sim, tmp_path):
        if not os.path.exists(PROBE):
            pytest.fail("%s is missing: build it (ninja -C build) or set HOLDFAST_TOOLS_DIR" % PROBE)
        self.sim = sim
        self.tmp = tmp_path
        self.stderrs = []

    def run(self, ns, ref, *ops, expect_rc=0):
        args = list(getattr(self.sim, "exec_prefix", [])) + [PROBE, "--kubeconfig", self.sim.kubeconfig, "--namespace", ns, "--log-level", "debug"]
        if ref is not None:
            args += ["--ref", json.dumps(ref)]
        r = subprocess.run(args + list(ops), capture_output=True, text=True, timeout=60)
        self.stderrs.append(r.stderr)
        assert r.returncode == expect_rc, "target_probe %s: rc %d\nstdout:%s\nstderr:%s" % (
            " ".join(ops), r.returncode, r.stdout, r.stderr[-4000:])
        lines = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        return lines, r.stderr

    def one(self, ns, ref, op):
        lines, _ = self.run(ns, ref, op)
        assert len(lines) == 1, lines
        return lines[0]

    def check_clean(self):
        for err in self.stderrs:
            for m in SANITIZER_MARKERS:
                assert m not in err, "sanitizer report in the probe's stderr:\n" + err[-8000:]


@pytest.fixture
def probe(sim, tmp_path):
    r = Runner(sim, tmp_path)
    yield r
    r.check_clean()


def logs(stderr, msg_part):
    out = []
    for line in stderr.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if msg_part in obj.get("msg", ""):
            out.append(obj)
    return out


def workload(kind, name, replicas, image="test/sleep", labels=None):
    labels = labels or {"app": name}
    api = "argoproj.io/v1alpha1" if kind == "Rollout" else "apps/v1"
    spec = {"replicas": replicas, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "main", "image": image, "args": ["600"]}]}}}
    if kind == "StatefulSet":
        spec["serviceName"] = name
    if kind == "Rollout":
        spec["strategy"] = {"canary": {}}        # Argo Rollouts refuses a Rollout without one
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name}, "spec": spec}


PLURAL = {"Deployment": "deployments", "StatefulSet": "statefulsets", "Rollout": "rollouts"}


def path(kind, ns, name=None):
    group = "argoproj.io/v1alpha1" if kind == "Rollout" else "apps/v1"
    return "/apis/%s/namespaces/%s/%s%s" % (group, ns, PLURAL[kind], "/" + name if name else "")


def create(sim, kind, ns, name, replicas, **kw):
    sim.create(path(kind, ns), workload(kind, name, replicas, **kw))


def ref(kind, name, api=None):
    return {"apiVersion": api or ("argoproj.io/v1alpha1" if kind == "Rollout" else "apps/v1"),
            "kind": kind, "name": name}


def spec_replicas(sim, kind, ns, name):
    return sim.get(path(kind, ns, name))["spec"].get("replicas", 0)


# ---------------------------------------------------------------- scale


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "Rollout"])
def test_get_and_patch_scale(sim, ns, probe, kind, request):
    if kind == "Rollout":
        request.getfixturevalue("rollouts")
    create(sim, kind, ns, "web", 1)
    sim.wait_ready_replicas(ns, "web", 1, kind=PLURAL[kind],
                            group="argoproj.io/v1alpha1" if kind == "Rollout" else "apps/v1")
    got = probe.one(ns, ref(kind, "web"), "get")
    assert got["ok"] and got["spec_replicas"] == 1 and got["status_replicas"] == 1, got
    assert got["selector"] == "app=web"

    down = probe.one(ns, ref(kind, "web"), "scale=0")
    assert down["ok"] and down["spec_replicas"] == 0, down
    assert spec_replicas(sim, kind, ns, "web") == 0
    wait_for(lambda: sim.get("/api/v1/namespaces/%s/pods" % ns)["items"] == [], what="pods gone")
    assert probe.one(ns, ref(kind, "web"), "get")["status_replicas"] == 0

    up = probe.one(ns, ref(kind, "web"), "scale=2")
    assert up["ok"] and up["spec_replicas"] == 2
    assert spec_replicas(sim, kind, ns, "web") == 2


def test_scale_of_a_missing_workload_is_not_found(sim, ns, probe):
    got = probe.one(ns, ref("Deployment", "nope"), "get")
    assert not got["ok"] and got["code"] == "NotFound" and got["http"] == 404, got
    woke = probe.one(ns, ref("Deployment", "nope"), "wake=1")
    assert not woke["ok"] and woke["code"] == "NotFound", woke


# ---------------------------------------------------------------- wake


def test_wake_from_zero_patches_once_then_is_a_no_op(sim, ns, probe):
    create(sim, "Deployment", ns, "web", 0)
    # Two wakes at once, each read held up by the API server (not answering for 1.5 s) so both
    # see 0: the patch carries the resourceVersion read, so the second gets 409, reads 2 and
    # leaves it alone.
    sim.latency(1500, 1.5)
    try:
        lines, stderr = probe.run(ns, ref("Deployment", "web"), "wake=2", "wake=2")
    finally:
        sim.clear_faults()
    assert all(x["ok"] for x in lines), lines
    assert sorted(x["patched"] for x in lines) == [False, True], lines
    assert [x["spec_replicas"] for x in lines] == [2, 2], lines
    assert len(logs(stderr, "scaled the target up from zero")) == 1
    assert spec_replicas(sim, "Deployment", ns, "web") == 2

    again = probe.one(ns, ref("Deployment", "web"), "wake=1")
    assert again["ok"] and again["patched"] is False and again["spec_replicas"] == 2, again
    assert spec_replicas(sim, "Deployment", ns, "web") == 2, "a wake never scales down"

    sim.patch(path("Deployment", ns, "web") + "/scale", {"spec": {"replicas": 0}})
    woke = probe.one(ns, ref("Deployment", "web"), "wake=0")
    assert woke["patched"] is True and woke["spec_replicas"] == 1, "minReplicas below 1 counts as 1"
    assert spec_replicas(sim, "Deployment", ns, "web") == 1


def test_wake_a_statefulset_and_a_rollout(sim, ns, probe, rollouts):
    create(sim, "StatefulSet", ns, "db", 0)
    create(sim, "Rollout", ns, "canary", 0)
    for kind, name in (("StatefulSet", "db"), ("Rollout", "canary")):
        woke = probe.one(ns, ref(kind, name), "wake=1")
        assert woke["ok"] and woke["patched"] is True, (kind, woke)
        assert spec_replicas(sim, kind, ns, name) == 1
        assert probe.one(ns, ref(kind, name), "wake=1")["patched"] is False


# ---------------------------------------------------------------- kinds


def test_aliases_reach_the_same_workloads(sim, ns, probe, rollouts):
    create(sim, "Deployment", ns, "web", 2)
    create(sim, "Rollout", ns, "canary", 3)
    for r, want in ((ref("deployments", "web", "apps/v1"), 2),
                    (ref("rollouts", "canary", "argoproj.io/v1alpha1"), 3)):
        parsed = probe.one(ns, r, "parse")
        assert parsed["ok"], parsed
        got = probe.one(ns, r, "get")
        assert got["ok"] and got["spec_replicas"] == want, (r, got)
    parsed = probe.one(ns, ref("deployments", "web", "apps/v1"), "parse")
    assert (parsed["kind"], parsed["group"], parsed["resource"]) == ("Deployment", "apps", "deployments")


def test_unknown_or_mismatched_ref_is_refused_naming_the_field(sim, ns, probe):
    lines, _ = probe.run(ns, ref("Rollout", "x", "apps/v1"), "parse", expect_rc=1)
    assert lines[0]["error"].startswith("spec.scaleTargetRef.apiVersion: "), lines
    assert "argoproj.io/v1alpha1" in lines[0]["error"]
    lines, _ = probe.run(ns, {"apiVersion": "batch/v1", "kind": "Job", "name": "x"}, "get", expect_rc=1)
    assert lines[0]["error"].startswith('spec.scaleTargetRef.kind: "Job"'), lines


# ---------------------------------------------------------------- KEDA


def so_path(ns, name=None):
    return "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects%s" % (ns, "/" + name if name else "")


def annotations(sim, ns, name):
    return sim.get(so_path(ns, name))["metadata"].get("annotations") or {}


def test_keda_pause_and_resume(sim, ns, probe):
    sim.create(so_path(ns), {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                             "metadata": {"name": "web-so", "annotations": {"team": "shop"}},
                             "spec": {"scaleTargetRef": {"name": "web"}, "minReplicaCount": 1}})
    paused = probe.one(ns, None, "pause=web-so")
    assert paused["ok"] and paused["found"] is True, paused
    assert annotations(sim, ns, "web-so") == {"team": "shop", "autoscaling.keda.sh/paused-replicas": "0"}

    # Someone (or an older KubeElasti) also set paused=true: resume removes both.
    sim.patch(so_path(ns, "web-so"), {"metadata": {"annotations": {"autoscaling.keda.sh/paused": "true"}}})
    resumed = probe.one(ns, None, "resume=web-so")
    assert resumed["ok"] and resumed["found"] is True, resumed
    assert annotations(sim, ns, "web-so") == {"team": "shop"}
    assert sim.get(so_path(ns, "web-so"))["spec"]["minReplicaCount"] == 1


def test_keda_missing_scaledobject_is_reported_not_fatal(sim, ns, probe):
    lines, stderr = probe.run(ns, None, "pause=ghost", "resume=ghost")
    assert [(x["ok"], x["found"]) for x in lines] == [(True, False), (True, False)], lines
    missing = logs(stderr, "KEDA ScaledObject not found")
    assert len(missing) == 2 and {m["scaledobject"] for m in missing} == {"ghost"}


# ---------------------------------------------------------------- diagnosis


def test_diagnose_quota_blocked_deployment_is_failed_create(sim, ns, probe):
    sim.create("/api/v1/namespaces/%s/resourcequotas" % ns, {
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"}, "spec": {"hard": {"pods": "0"}}})
    create(sim, "Deployment", ns, "web", 0)
    quiet = probe.one(ns, ref("Deployment", "web"), "diagnose")
    assert quiet["ok"] and quiet["reason"] == "" and quiet["message"] == "", "nothing wrong at zero"

    assert probe.one(ns, ref("Deployment", "web"), "wake=1")["patched"] is True
    diag = wait_for(lambda: (lambda d: d if d["reason"] else None)(
        probe.one(ns, ref("Deployment", "web"), "diagnose")), what="a diagnosis")
    assert diag["reason"] == "FailedCreate", diag
    assert re.match(r'^FailedCreate: pods "web-[a-z0-9-]+" is forbidden: exceeded quota: q, '
                    r'requested: pods=1, used: pods=0, limited: pods=0$', diag["message"]), diag
    assert diag["object"] == "Deployment/web" and diag["pods"] == 0 and diag["ready_pods"] == 0

    # The quota goes: the pod starts, and there is nothing to report any more.
    sim.patch("/api/v1/namespaces/%s/resourcequotas/q" % ns, {"spec": {"hard": {"pods": "5"}}})
    sim.wait_ready_replicas(ns, "web", 1)
    after = probe.one(ns, ref("Deployment", "web"), "diagnose")
    assert after["reason"] == "" and after["pods"] == 1 and after["ready_pods"] == 1, after


def test_diagnose_quota_blocked_statefulset_from_its_event(sim, ns, probe):
    sim.create("/api/v1/namespaces/%s/resourcequotas" % ns, {
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"}, "spec": {"hard": {"pods": "0"}}})
    create(sim, "StatefulSet", ns, "db", 1)
    diag = wait_for(lambda: (lambda d: d if d["reason"] else None)(
        probe.one(ns, ref("StatefulSet", "db"), "diagnose")), what="a diagnosis")
    assert diag["reason"] == "FailedCreate" and diag["object"] == "StatefulSet/db", diag
    assert 'pods "db-0" is forbidden: exceeded quota: q' in diag["message"], diag


def test_kill_pod_fault_kills_the_container_which_restarts(sim, ns):
    """The test cluster's kill_pod fault, which tests here may use: the node agent SIGKILLs the
    pod's container, which restarts (restartCount 1, lastState exit code 137) and is ready
    again."""
    create(sim, "Deployment", ns, "web", 1)
    sim.wait_ready_replicas(ns, "web", 1)
    pod = sim.get("/api/v1/namespaces/%s/pods" % ns)["items"][0]["metadata"]["name"]
    r = sim.kill_pod(ns, pod)
    assert (r["killed"], r["signal"]) == ("%s/%s" % (ns, pod), "SIGKILL"), r

    def restarted():
        cs = sim.get("/api/v1/namespaces/%s/pods/%s" % (ns, pod))["status"]["containerStatuses"][0]
        return cs["restartCount"] == 1 and cs["ready"] and cs
    cs = wait_for(restarted, timeout=40, what="the killed container restarted and ready")
    assert cs["lastState"]["terminated"]["exitCode"] == 137, cs


def test_diagnose_missing_image_is_image_pull_backoff(sim, ns, probe):
    create(sim, "Deployment", ns, "web", 0, image="example/missing:1")
    assert probe.one(ns, ref("Deployment", "web"), "wake=1")["patched"] is True
    diag = wait_for(lambda: (lambda d: d if d["reason"] == "ImagePullBackOff" else None)(
        probe.one(ns, ref("Deployment", "web"), "diagnose")), what="ImagePullBackOff")
    assert re.match(r'^ImagePullBackOff: Back-off pulling image "example/missing:1" '
                    r'\(pod web-[a-z0-9-]+, container main\)$', diag["message"]), diag
    assert diag["object"].startswith("Pod/web-") and diag["pods"] == 1 and diag["ready_pods"] == 0


def test_diagnose_crashing_container_is_crash_loop_backoff_with_exit_code(sim, ns, probe):
    create(sim, "Deployment", ns, "web", 1, image="test/crash")
    diag = wait_for(lambda: (lambda d: d if d["reason"] == "CrashLoopBackOff" else None)(
        probe.one(ns, ref("Deployment", "web"), "diagnose")), what="CrashLoopBackOff")
    # the kubelet's own words (pod=NAME_NAMESPACE(UID)), then holdfast's
    assert re.match(r"^CrashLoopBackOff: back-off \d+s restarting failed container=main "
                    r"pod=web-[a-z0-9-]+_%s\([0-9a-f-]+\) "
                    r"\(pod web-[a-z0-9-]+, container main, last exit code 1 Error\)$" % re.escape(ns),
                    diag["message"]), diag


def test_diagnose_missing_target_is_target_not_found(sim, ns, probe, rollouts):
    diag = probe.one(ns, ref("Rollout", "gone"), "diagnose")
    assert diag["ok"] and diag["reason"] == "TargetNotFound", diag
    assert diag["message"] == 'TargetNotFound: Rollout "gone" not found in namespace "%s"' % ns
