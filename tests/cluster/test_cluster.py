"""The test cluster (scripts/cluster): the upstream control plane answers, its controllers and
scheduler work, kube-proxy programs ClusterIPs that pods on the bridge can reach (replies
included), --proxy-delay-ms holds kube-proxy back, and `down` leaves nothing behind.

Run as root (it makes network namespaces), with Debian's python3:

    /usr/bin/python3 -m pytest tests/cluster

Most tests use the session's shared cluster (conftest.py); the last ones start clusters of their
own, since they refuse an `up`, bring a cluster down or kill an `up` halfway. The faults come
just before those (and are marked no_settle: they need only the API), so that the controllers
settle again while the clusters of their own run, not while a test waits.
"""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

import clusterlib
import netns
import procs
from clusterfix import PROXY_DELAY_MS, SCRIPT, cluster_cmd, need_root

HERE = os.path.dirname(os.path.abspath(__file__))

# Test "pods" take addresses the node agent never gives (netns.TEST_IPS: .240 and up).
CLIENT_IP = "10.88.0.254"
SERVER_IP = "10.88.0.253"
assert {CLIENT_IP, SERVER_IP} <= set(netns.TEST_IPS)


pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nsenter") is None,
                                reason="needs root, iproute2 and nsenter (network namespaces)")


def wait_for(what, predicate, timeout=30, interval=0.2):
    return clusterlib.wait_until(what, predicate, timeout, interval=interval)


@pytest.fixture(scope="module")
def private_cluster(tmp_path_factory):
    """A cluster of this module's own, for the tests that refuse an `up` on it and bring it
    down (the shared one must stay up), started with --rollouts: the Argo Rollouts controller
    too, which the shared one does not run."""
    need_root()
    state = tmp_path_factory.mktemp("private")
    images = state.parent / "private-images.json"
    images.write_text(json.dumps({"hfc-test/sleep": ["/bin/sleep", "3600"]}))
    r = cluster_cmd("up", "--state-dir", state, "--image-map", images, "--rollouts")
    print(r.stdout + r.stderr)
    if r.returncode != 0:
        cluster_cmd("down", "--state-dir", state)
        pytest.fail("scripts/cluster up failed (%d):\n%s%s" % (r.returncode, r.stdout, r.stderr))
    c = clusterlib.Cluster(state)
    yield c
    cluster_cmd("down", "--state-dir", state)


class PodNetns:
    """A throwaway network namespace attached to hfbr0 exactly as the node agent attaches a
    pod's; deleted (with whatever runs in it) on exit."""

    def __init__(self, cluster, suffix, address):
        self.cluster = cluster
        self.name = "%s-t%s" % (cluster.ns, suffix)
        self.host_if = "hfvt%s" % suffix
        self.address = address

    def __enter__(self):
        netns.attach_pod(self.cluster.ns, self.name, self.host_if, self.address)
        return self

    def __exit__(self, *exc):
        netns.detach_pod(self.cluster.ns, self.name, self.host_if)

    def run(self, argv, timeout=30):
        return netns.in_ns(self.name, argv, check=False, timeout=timeout)

    def popen(self, argv, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.name] + argv, start_new_session=True, **kw)


def curl(pod, url, *extra):
    """(HTTP status, body, the address curl talked to) of a request from inside pod."""
    r = pod.run(["curl", "-sS", "--max-time", "3", "-o", "-", "-w", "\n%{http_code} %{remote_ip}"]
                + list(extra) + [url])
    body, _, tail = r.stdout.rpartition("\n")
    code, _, remote = tail.partition(" ")
    return int(code or 0), body, remote


def test_api_server_is_ready_and_upstream(cluster):
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.37.2"
    assert version["clientVersion"]["gitVersion"] == "v1.37.2"


def test_status_reports_every_component_and_the_leases_are_held(cluster):
    r = cluster_cmd("status", "--state-dir", cluster.dir)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                 "kube-proxy", "delayrelay", "nodeagent"):
        line = [x for x in r.stdout.splitlines() if x.split()[:1] == [name]]
        assert line and "running" in line[0], r.stdout
    assert "/readyz: ok" in r.stdout
    assert "node hfc-node Ready=True" in r.stdout
    for lease in ("kube-controller-manager", "kube-scheduler"):
        holder = cluster.kubectl("get", "lease", "-n", "kube-system", lease,
                                 "-o", "jsonpath={.spec.holderIdentity}").stdout
        assert holder, "%s holds no lease" % lease


def test_deployment_makes_a_replicaset_and_its_pods(cluster):
    manifest = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "sleeper", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "sleeper"}},
                 "template": {"metadata": {"labels": {"app": "sleeper"}},
                              "spec": {"containers": [{"name": "main", "image": "hfc-test/sleep"}]}}},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def replicaset():
        rs = json.loads(cluster.kubectl("get", "rs", "-l", "app=sleeper", "-o", "json").stdout)["items"]
        return rs[0] if len(rs) == 1 and rs[0]["status"].get("replicas") == 2 else None
    rs = wait_for("the Deployment's ReplicaSet with 2 replicas", replicaset)
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"

    def pods():
        items = json.loads(cluster.kubectl("get", "pods", "-l", "app=sleeper", "-o", "json").stdout)["items"]
        return items if len(items) == 2 else None
    for pod in wait_for("2 pods", pods):
        assert pod["metadata"]["ownerReferences"][0]["name"] == rs["metadata"]["name"]

    wait_for("2 pods Running", lambda: all(p["status"].get("phase") == "Running" for p in pods()), 60)
    for pod in pods():
        assert pod["spec"]["nodeName"] == "hfc-node"
        assert pod["status"]["podIP"] not in netns.TEST_IPS
    cluster.kubectl("delete", "deployment", "sleeper", "--wait=false")


def test_kubernetes_service_answers_a_pod_with_its_projected_token(cluster):
    token = cluster.kubectl("create", "token", "default").stdout.strip()
    ca = os.path.join(cluster.pki, "ca.crt")
    with PodNetns(cluster, "1", CLIENT_IP) as pod:
        # kube-proxy is 1.5 s behind, but the kubernetes Service has been programmed since up.
        code, body, remote = curl(pod, "https://10.96.0.1/readyz", "--cacert", ca,
                                  "-H", "Authorization: Bearer " + token)
        assert (code, body.strip(), remote) == (200, "ok", "10.96.0.1")
        review = '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}'
        code, body, _ = curl(pod, "https://10.96.0.1/apis/authentication.k8s.io/v1/selfsubjectreviews",
                             "--cacert", ca, "-H", "Authorization: Bearer " + token, "-X", "POST",
                             "-H", "Content-Type: application/json", "-d", review)
        assert code == 201, body
        assert json.loads(body)["status"]["userInfo"]["username"] == "system:serviceaccount:default:default"


def test_cluster_ip_reaches_a_pod_on_the_same_bridge_and_the_reply_comes_back(cluster, tmp_path):
    (tmp_path / "marker-hfc-7f3a").write_text("x")
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "byhand", "namespace": "default"},
               "spec": {"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}}
    endpoints = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                 "metadata": {"name": "byhand-1", "namespace": "default",
                              "labels": {"kubernetes.io/service-name": "byhand"}},
                 "addressType": "IPv4",
                 "endpoints": [{"addresses": [SERVER_IP], "conditions": {"ready": True}}],
                 "ports": [{"name": "", "port": 8080, "protocol": "TCP"}]}
    with PodNetns(cluster, "1", CLIENT_IP) as client, PodNetns(cluster, "2", SERVER_IP) as server:
        log = open(tmp_path / "server.log", "w")
        web = server.popen(["/usr/bin/python3", "-m", "http.server", "8080", "--bind", SERVER_IP],
                           cwd=str(tmp_path), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for("the server in its namespace", lambda: curl(server, "http://%s:8080/" % SERVER_IP)[0] == 200)
            cluster.kubectl("apply", "-f", "-", input=json.dumps({"kind": "List", "apiVersion": "v1",
                                                                  "items": [service, endpoints]}))
            ip = cluster.kubectl("get", "service", "byhand", "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
            assert ip.startswith("10.96.0.")
            code, body, remote = wait_for("the ClusterIP to answer from the client pod",
                                          lambda: (lambda r: r if r[0] == 200 else None)(
                                              curl(client, "http://%s/" % ip)))
            assert "marker-hfc-7f3a" in body
            assert remote == ip, "the reply must come from the ClusterIP (conntrack saw it on the bridge)"
        finally:
            os.killpg(web.pid, signal.SIGKILL)
            web.wait(10)
            log.close()
    # Pod to pod inside the cluster CIDR is not masqueraded: the server saw the client's address.
    assert CLIENT_IP in (tmp_path / "server.log").read_text()
    cluster.kubectl("delete", "service", "byhand")
    cluster.kubectl("delete", "endpointslice", "byhand-1")


def test_a_cluster_ip_no_rule_routes_is_refused_and_leaves_no_conntrack_entry(cluster):
    """A SYN to a ClusterIP kube-proxy has not programmed (yet), from the node itself or from a
    pod, is rejected by the node instead of going un-DNATed to the bridge and leaving a 120 s
    conntrack entry that a later connection from the same source port would meet (the demo's
    and the Helm test's lost connections in one CI run: they start their clusters with
    `scripts/cluster up`, which had no such rule). The connect fails (from the node at once,
    from a pod when the ICMP error comes back, which the kernel rate-limits); nothing stays."""
    used = set(cluster.kubectl("get", "services", "-A", "-o",
                               "jsonpath={.items[*].spec.clusterIP}").stdout.split())
    ip = next("10.96.0.%d" % n for n in range(250, 10, -1) if "10.96.0.%d" % n not in used)
    url = "http://%s:80/" % ip
    r = netns.in_ns(cluster.ns, ["curl", "-sS", "--max-time", "5", url], check=False)
    assert r.returncode == 7, (r.returncode, r.stderr)  # could not connect
    with PodNetns(cluster, "3", CLIENT_IP) as pod:
        r = pod.run(["curl", "-sS", "--max-time", "5", url])
        assert r.returncode != 0, "nothing answers %s" % ip
    entries = netns.in_ns(cluster.ns, ["conntrack", "-L", "-d", ip], check=False)
    assert ip not in entries.stdout, entries.stdout


def test_proxy_delay_holds_kube_proxy_behind_the_api(cluster):
    # A Service with a selector: the EndpointSlice controller answers it with a slice (a round
    # trip through the controller-manager); kube-proxy, 1.5 s behind, must not have its rules
    # yet when that slice is there to be read, and must have them later.
    cluster.kubectl("create", "service", "clusterip", "witness", "--tcp=80:8080")
    ip = cluster.kubectl("get", "service", "witness", "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
    events = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if "slice" not in events and _slice_for(cluster, "witness"):
            events.append("slice")
        if _rule_for(cluster, ip):
            events.append("rule")
            break
        time.sleep(0.05)
    assert events == ["slice", "rule"], "expected the controller's slice, then kube-proxy's rule: %s" % events
    cluster.kubectl("delete", "service", "witness")


def _rule_for(cluster, ip):
    return "-d %s/32" % ip in netns.in_ns(cluster.ns, ["iptables-save"]).stdout


def _slice_for(cluster, service):
    code, body = cluster.api_get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
                                 "?labelSelector=kubernetes.io/service-name%3D" + service)
    return code == 200 and json.loads(body)["items"]


def test_a_paused_kube_proxy_programs_nothing_until_resumed(cluster):
    cluster.pause_kube_proxy()
    try:
        cluster.kubectl("create", "service", "clusterip", "paused", "--tcp=80:8080")
        ip = cluster.kubectl("get", "service", "paused", "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
        wait_for("the controller's EndpointSlice", lambda: _slice_for(cluster, "paused"))
        # Well past the proxy delay: a running kube-proxy would have its rule by now.
        time.sleep(PROXY_DELAY_MS / 1000.0 + 1)
        assert not _rule_for(cluster, ip)
    finally:
        cluster.pause_kube_proxy(False)
    wait_for("kube-proxy's rule once resumed", lambda: _rule_for(cluster, ip))
    cluster.kubectl("delete", "service", "paused")


@pytest.mark.no_settle
def test_api_server_stop_and_start_keeps_the_data(cluster):
    cluster.kubectl("create", "configmap", "survivor", "--from-literal=k=v")
    try:
        assert cluster.stop_component("kube-apiserver") == "stopped"
        r = cluster.kubectl("get", "--raw", "/readyz", check=False, timeout=30)
        assert r.returncode != 0 and "refused" in r.stderr
    finally:
        if not cluster.daemons.is_running("kube-apiserver"):
            cluster.start_component("kube-apiserver")
    assert cluster.kubectl("get", "configmap", "survivor", "-o", "jsonpath={.data.k}").stdout == "v"


@pytest.mark.no_settle
def test_a_control_plane_program_that_exits_is_started_again(cluster):
    # An earlier test's fault (the API server stopped) can leave the scheduler between an exit
    # and its restart (CI saw None here): the program must run before it is killed.
    first = wait_for("kube-scheduler running", lambda: cluster.child_pid("kube-scheduler"))
    os.kill(first, signal.SIGKILL)
    second = wait_for("a new kube-scheduler", lambda: (lambda p: p if p not in (None, first) else None)(
        cluster.child_pid("kube-scheduler")))
    assert procs.parent(second) == cluster.daemons.get("kube-scheduler")[0]
    assert "kube-scheduler exited with -9" in open(cluster.daemons.log_path("kube-scheduler")).read()
    # The new scheduler takes the lease once the old one's has expired (up to 15 s later); the
    # next test that needs it waits for that (conftest.py, `cluster`), not this one.


@pytest.mark.no_settle
def test_etcd_restart_makes_the_api_server_unready_then_ready(cluster):
    try:
        assert cluster.stop_component("etcd") == "stopped"
        wait_for("/readyz to fail without etcd", lambda: cluster.api_get("/readyz")[0] not in (0, 200))
    finally:
        if not cluster.daemons.is_running("etcd"):
            cluster.start_component("etcd")
    wait_for("/readyz again", lambda: cluster.api_get("/readyz")[0] == 200, 60)
    assert cluster.kubectl("get", "configmap", "survivor", "-o", "jsonpath={.data.k}").stdout == "v"


@pytest.mark.no_settle
def test_exec_runs_inside_the_namespace_and_passes_the_exit_status(cluster):
    assert cluster_cmd("exec", "--state-dir", cluster.dir, "--", "sh", "-c", "exit 7").returncode == 7
    r = cluster_cmd("exec", "--state-dir", cluster.dir, "--", "sh", "-c",
                    'echo "$KUBECONFIG"; command -v kubectl; command -v helm; ip -o -4 addr show hfbr0')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == cluster.kubeconfig
    assert lines[1] == os.path.join(cluster.bin, "kubectl") and lines[2] == os.path.join(cluster.bin, "helm")
    assert "10.88.0.1/24" in lines[3]
    r = cluster_cmd("exec", "--state-dir", cluster.dir, "--", "kubectl", "get", "namespace", "kube-system",
                    "-o", "name")
    assert (r.returncode, r.stdout.strip()) == (0, "namespace/kube-system"), r.stderr


def test_up_rollouts_runs_the_argo_rollouts_controller_inside_the_namespace(private_cluster):
    cluster = private_cluster
    r = cluster_cmd("status", "--state-dir", cluster.dir)
    assert r.returncode == 0, r.stdout + r.stderr
    line = [x for x in r.stdout.splitlines() if x.split()[:1] == ["argo-rollouts"]]
    assert line and "running" in line[0] and "supervised" in line[0], r.stdout
    # the upstream binary, stamped with its release
    pid = cluster.child_pid("argo-rollouts")
    assert pid is not None
    exe = os.readlink("/proc/%d/exe" % pid)
    assert subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip() == "v1.10.1+unknown", exe
    # in the cluster's network namespace, its two listeners (metrics, healthz) on ports the
    # kernel picked there, not upstream's 8090 and 8080
    assert os.stat("/proc/%d/ns/net" % pid).st_ino == os.stat("/run/netns/" + cluster.ns).st_ino
    listening = netns.in_ns(cluster.ns, ["ss", "-Hltnp"]).stdout
    mine = [x.split()[3] for x in listening.splitlines() if "pid=%d," % pid in x]
    assert len(mine) == 2 and not {a.rsplit(":", 1)[1] for a in mine} & {"8080", "8090"}, listening
    # its CRDs are upstream's (a schema, not thirdparty_crds' stand-in), all five of them
    crds = json.loads(cluster.kubectl("get", "crd", "-o", "json").stdout)["items"]
    argo = {c["metadata"]["name"]: c for c in crds if c["spec"]["group"] == "argoproj.io"}
    assert sorted(argo) == ["analysisruns.argoproj.io", "analysistemplates.argoproj.io",
                            "clusteranalysistemplates.argoproj.io", "experiments.argoproj.io",
                            "rollouts.argoproj.io"]
    schema = argo["rollouts.argoproj.io"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert "spec" in schema["properties"] and "strategy" in schema["properties"]["spec"]["properties"]
    # it authenticates as its ServiceAccount, bound to upstream's ClusterRole
    argv = cluster.daemons.argv("argo-rollouts")
    kubeconfig = argv[argv.index("--kubeconfig") + 1]
    who = cluster.run([os.path.join(cluster.bin, "kubectl"), "--kubeconfig", kubeconfig, "auth", "whoami",
                       "-o", "jsonpath={.status.userInfo.username}"]).stdout
    assert who == "system:serviceaccount:argo-rollouts:argo-rollouts"

    # a Rollout gets a ReplicaSet of its own and pods the node agent runs; /scale moves it
    rollout = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
               "metadata": {"name": "ro", "namespace": "default"},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "ro"}}, "strategy": {"canary": {}},
                        "template": {"metadata": {"labels": {"app": "ro"}},
                                     "spec": {"containers": [{"name": "main", "image": "hfc-test/sleep"}]}}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(rollout))

    def status():
        return json.loads(cluster.kubectl("get", "rollout", "ro", "-o", "json").stdout).get("status") or {}
    wait_for("the Rollout's 2 replicas ready", lambda: status().get("readyReplicas") == 2, 90)
    rs = json.loads(cluster.kubectl("get", "rs", "-l", "app=ro", "-o", "json").stdout)["items"]
    assert len(rs) == 1
    owner = rs[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Rollout", "ro")
    pods = json.loads(cluster.kubectl("get", "pods", "-l", "app=ro", "-o", "json").stdout)["items"]
    assert {p["metadata"]["ownerReferences"][0]["name"] for p in pods} == {rs[0]["metadata"]["name"]}
    assert status()["selector"] == "app=ro"
    cluster.kubectl("scale", "rollout", "ro", "--replicas=0")
    wait_for("the Rollout scaled to 0, its pods gone", lambda: status().get("HPAReplicas", 0) == 0 and not json.loads(
        cluster.kubectl("get", "pods", "-l", "app=ro", "-o", "json").stdout)["items"], 90)


def test_up_twice_refuses_and_changes_nothing(private_cluster):
    cluster = private_cluster
    before = cluster.daemons.recorded()
    r = cluster_cmd("up", "--state-dir", cluster.dir)
    assert r.returncode != 0
    assert "already up" in r.stderr
    assert cluster.daemons.recorded() == before
    assert all(procs.alive(pid, start) for _, pid, start in before)
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def _leftovers(cluster, recorded):
    left = ["netns " + n for n in netns.with_prefix(cluster.ns)]
    for name, pid, start in recorded:
        if procs.alive(pid, start):
            left.append("%s pid %d" % (name, pid))
        left += ["pid %d of %s's session" % (p, name) for p in procs.session_members(pid)]
    return left


def test_down_leaves_no_namespace_or_process_behind(private_cluster):
    cluster = private_cluster
    # A pod of the node agent's, and a process left running in a test pod's namespace (as a
    # crashed node agent would leave one).
    cluster.kubectl("create", "deployment", "sleeper", "--image=hfc-test/sleep")
    wait_for("the node agent's pod", lambda: len(netns.with_prefix(cluster.ns + "-p-")) == 1, 60)
    with PodNetns(cluster, "3", SERVER_IP) as pod:
        pod.popen(["sleep", "300"])
        recorded = cluster.daemons.recorded()
        assert {name for name, _, _ in recorded} >= {"etcd", "kube-apiserver", "kube-proxy", "nodeagent",
                                                      "argo-rollouts"}
        r = cluster_cmd("down", "--state-dir", cluster.dir)
        assert r.returncode == 0, r.stdout + r.stderr
        assert _leftovers(cluster, recorded) == []
        assert not netns.exists(pod.name)
    r = cluster_cmd("status", "--state-dir", cluster.dir)
    assert r.returncode != 0 and "not up" in r.stdout
    r = cluster_cmd("down", "--state-dir", cluster.dir)
    assert r.returncode == 0 and "nothing was running" in r.stdout


def test_down_cleans_up_after_up_was_killed_halfway(tmp_path):
    state = tmp_path / "halfway"
    up = subprocess.Popen([SCRIPT, "up", "--state-dir", str(state)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    c = clusterlib.Cluster(state)
    try:
        wait_for("up to start kube-apiserver", lambda: c.daemons.get("kube-apiserver"), 120)
    finally:
        up.kill()
        up.wait(10)
    recorded = c.daemons.recorded()
    assert netns.exists(c.ns) and any(procs.alive(pid, start) for _, pid, start in recorded)
    r = cluster_cmd("up", "--state-dir", state)
    assert r.returncode != 0 and "already up" in r.stderr
    r = cluster_cmd("down", "--state-dir", state)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _leftovers(c, recorded) == []
