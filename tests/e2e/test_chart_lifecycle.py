"""holdfast end to end through the chart's life cycle (issue 5, section 3), with Helm itself on
the real test cluster: the release upgraded to 1, 2 and 1 resolver replicas by `helm upgrade`
(new connections answered throughout, the terminating replica's included), the leader pod killed
at zero, and (on a cluster of its own) `helm uninstall` running the pre-delete restore hook
(services restored, the ElastiServices left without holdfast's finalizer, so they and their
namespaces can be deleted). Traffic goes through the Services' ClusterIPs; every wait and loop
is bounded. docs/e2e.md lists what each test proves.

Run: /usr/bin/python3 -m pytest tests/e2e/test_chart_lifecycle.py -s"""
import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.request

import pytest

from e2e import e2elib
from hftest import promtext
from e2e.e2elib import (CHART, HF_NS, Result, create_es, holdfast_pods, leader, make_app, one_request, replicas,
                    resolver_ips, run_threads, settle, wait_for, wait_mode, wait_serve)

# ---------------------------------------------------------------- helm upgrade


def helm_upgrade(sim, sets=()):
    """`helm upgrade holdfast helm/holdfast --reset-values --set <the install's> --set ...`,
    not waited for (the test watches the pods itself). Only replicaCount changes, so the pod
    template stays as installed and nothing rolls. Returns the Deployment's replicas."""
    args = ["upgrade", "holdfast", CHART, "-n", HF_NS, "--reset-values"]
    for v in e2elib.INSTALL_SETS + list(sets):
        args += ["--set", v]
    e2elib.helm(sim, *args)
    return sim.get("/apis/apps/v1/namespaces/%s/deployments/holdfast" % HF_NS)["spec"]["replicas"]


def pod_ready(p):
    return not p["metadata"].get("deletionTimestamp") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in (p.get("status") or {}).get("conditions") or [])


def all_holdfast_pods(sim):
    """Every holdfast pod object of the package cluster's release, terminating ones included."""
    return sim.get("/api/v1/namespaces/%s/pods?labelSelector=app.kubernetes.io%%2Fname%%3Dholdfast" % HF_NS)["items"]


def ready_holdfast_ips(sim):
    return sorted(p["status"]["podIP"] for p in all_holdfast_pods(sim) if pod_ready(p))


def wait_release(sim, n, timeout=60):
    """The Deployment at n ready replicas, no holdfast pod left terminating, the resolver Service
    listing the n pods, and a leader among them."""
    sim.wait_ready_replicas(HF_NS, "holdfast", n, timeout=timeout)
    wait_for(lambda: len(all_holdfast_pods(sim)) == n and len(ready_holdfast_ips(sim)) == n, timeout=timeout,
             what="exactly %d holdfast pods, all Ready, none terminating" % n)
    sim.wait_service_endpoints(HF_NS, "holdfast", n, timeout=timeout)
    names = {p["metadata"]["name"] for p in all_holdfast_pods(sim)}
    wait_for(lambda: leader(sim) in names, timeout=timeout, what="a leader among the holdfast pods")


def wait_slices_list_ready_pods(sim, ns, services, timeout=30):
    """Every service's resolver slice lists exactly the ready holdfast pods."""
    def ok():
        want = ready_holdfast_ips(sim)
        return want and all(resolver_ips(sim, ns, s) == want for s in services)
    wait_for(ok, timeout=timeout, interval=0.1,
             what="resolver slices of %s listing exactly the ready holdfast pods" % ", ".join(services))


def restore_default_release(sim):
    """Back to the chart's default values (2 replicas), Ready, leader elected: other test files
    share this cluster."""
    helm_upgrade(sim)
    wait_release(sim, 2)


def metrics(ip, timeout=5):
    """The /metrics text of the holdfast pod at ip (its admin port)."""
    with urllib.request.urlopen("http://%s:8013/metrics" % ip, timeout=timeout) as r:
        return r.read().decode()


def metric(text, name):
    v = promtext.value(text, name)
    return None if v is None else int(v)


def open_connections(ip):
    """holdfast_open_connections of the pod at ip."""
    n = metric(metrics(ip), "holdfast_open_connections")
    assert n is not None, "no holdfast_open_connections in %s's metrics" % ip
    return n


def to_zero(sim, ns, name="web"):
    """e2elib.to_zero for one app among several in a namespace: scaled to 0 by hand, proxy mode,
    that app's pods gone, its resolver slice in place and applied by kube-proxy."""
    sim.kubectl("scale", "-n", ns, "deployment/" + name, "--replicas=0")
    wait_mode(sim, ns, "proxy", name)
    wait_for(lambda: not sim.get("/api/v1/namespaces/%s/pods?labelSelector=app%%3D%s" % (ns, name))["items"],
             timeout=30, interval=0.1, what="%s's pods gone" % name)
    wait_for(lambda: resolver_ips(sim, ns, name), timeout=15, interval=0.1, what="%s's resolver slice" % name)
    settle()


# ---------------------------------------------------------------- traffic

PROBES = [{"method": "GET", "path": {"type": "Exact", "value": "/healthz"},
           "response": {"status": 200, "body": '{"status":"ok"}'}}]


def wake_and_rezero(sim, ns, services):
    """At zero: one request per service through its ClusterIP wakes the target and is answered
    by its pod; then each service is scaled back to zero (proxy mode, resolver slice in place)."""
    res = Result()
    got = {}

    def one(svc):
        got[svc] = one_request(sim.cluster_ip(ns, svc), res, path="/wake-" + svc)
    for s in services:
        assert replicas(sim, ns, s) == 0
    run_threads([lambda s=s: one(s) for s in services], timeout=90)
    assert res.ok == len(services) and not res.failures, res.summary()
    for s in services:
        assert got[s]["pod"].startswith(s + "-"), (s, got[s]["pod"])
        wait_serve(sim, ns, s)
    for s in services:
        to_zero(sim, ns, s)


class ProbeDrip:
    """GET /healthz (a probeResponse rule) every 50 ms on new connections through a ClusterIP of
    a service at zero: each one is answered by a holdfast replica itself, so the drip goes
    through the resolvers the whole time. Any refused/reset connection or other answer fails."""

    def __init__(self, ip):
        self.ip, self.ok, self.failures = ip, 0, []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        end = time.monotonic() + 120  # bounded even if nobody stops it
        n = 0
        while not self.stop.is_set() and time.monotonic() < end:
            c = http.client.HTTPConnection(self.ip, 80, timeout=20)
            try:
                c.request("GET", "/healthz", headers={"Connection": "close"})
                r = c.getresponse()
                body = r.read().decode(errors="replace")
                if r.status == 200 and json.loads(body) == {"status": "ok"}:
                    self.ok += 1
                else:
                    self.failures.append("probe %d: HTTP %d %r" % (n, r.status, body[:100]))
            except Exception as e:  # noqa: BLE001 - every error is a lost request
                self.failures.append("probe %d: %r" % (n, e))
            finally:
                c.close()
            n += 1
            self.stop.wait(0.05)

    def start(self):
        self.t.start()

    def finish(self):
        if self.t.is_alive():
            self.stop.set()
            self.t.join(30)
            assert not self.t.is_alive(), "probe drip did not stop"


class TerminatingReplica:
    """A terminating holdfast replica watched through its admin port until its process is gone:
    once /readyz answers 503 (SIGTERM received: not ready from then on) the base of
    holdfast_connections_accepted_total is read, then the counter is followed, so `accepted` is
    how many data-plane connections it took after SIGTERM (the drip's: no other client opens
    one then) and `in_delay` how many of them while holdfast_draining was 0, i.e. before its
    listeners closed (its shutdown delay)."""

    def __init__(self, ip):
        self.ip = ip
        self.base = None
        self.accepted = self.in_delay = 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        end = time.monotonic() + 120  # bounded even if nobody stops it
        while not self.stop.is_set() and time.monotonic() < end:
            try:
                if self.base is None:
                    try:
                        urllib.request.urlopen("http://%s:8013/readyz" % self.ip, timeout=2).close()
                    except urllib.error.HTTPError as e:
                        if e.code == 503:
                            self.base = metric(metrics(self.ip, timeout=2), "holdfast_connections_accepted_total")
                else:
                    text = metrics(self.ip, timeout=2)
                    self.accepted = metric(text, "holdfast_connections_accepted_total") - self.base
                    if metric(text, "holdfast_draining") == 0:
                        self.in_delay = self.accepted
            except OSError:
                pass  # not answering (yet, or any more: the process exited)
            self.stop.wait(0.05)

    def start(self):
        self.t.start()

    def finish(self):
        self.stop.set()
        self.t.join(30)
        assert not self.t.is_alive(), "terminating replica watcher did not stop"


def resolver_service_endpoint(sim, pod):
    """The conditions of `pod`'s endpoint in the EndpointSlices of the holdfast Service (the
    EndpointSlice controller's), or None if it is not listed."""
    for s in sim.get("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices?labelSelector="
                     "kubernetes.io/service-name%%3Dholdfast" % HF_NS)["items"]:
        for ep in s.get("endpoints") or []:
            if (ep.get("targetRef") or {}).get("name") == pod:
                return ep.get("conditions") or {}
    return None


class Streams:
    """`n` long responses (24 chunks 250 ms apart, 6 s) through a ClusterIP, each on its own
    connection; each must arrive whole from one app pod. `first` counts those whose first chunk
    arrived (the connection is relayed to the pod by then)."""

    def __init__(self, ip, n):
        self.ip, self.res, self.first = ip, Result(), 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.one, args=(i,), daemon=True) for i in range(n)]

    def one(self, k):
        path = "/stream?n=24&ms=250&k=%d" % k
        c = http.client.HTTPConnection(self.ip, 80, timeout=60)
        try:
            c.request("GET", path, headers={"Connection": "close"})
            r = c.getresponse()
            lines = [r.readline().decode()]
            with self.lock:
                self.first += 1
            lines += r.read().decode().splitlines(True)
            lines = [ln.strip() for ln in lines if ln.strip()]
            pods = {ln.split()[0] for ln in lines}
            if r.status == 200 and len(pods) == 1 and next(iter(pods)).startswith("web-") \
                    and [ln.split()[1] for ln in lines] == [str(i) for i in range(24)]:
                self.res.good(lines[0].split()[0])
            else:
                self.res.bad("stream %s: HTTP %d, %d lines: %r" % (path, r.status, len(lines), lines[:3]))
        except Exception as e:  # noqa: BLE001
            self.res.bad("stream %s: %r" % (path, e))
        finally:
            c.close()

    def start(self):
        for t in self.threads:
            t.start()

    def alive(self):
        return sum(t.is_alive() for t in self.threads)

    def join(self, timeout=60):
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        assert not self.alive(), "streams still running after %ss" % timeout


def scale_resolvers(sim, ns, n, app="web", probe_svc="web-p", streams=16, relayed=False):
    """helm upgrade --set replicaCount=n while `app` and `probe_svc` are at zero.
    Both ways, a probe drip through `probe_svc` (new connections every 50 ms, answered by the
    replicas themselves) runs for the whole upgrade, until the Deployment is at n ready replicas
    with no pod left terminating, the resolver slices list exactly those and kube-proxy has
    applied them; every probe must be answered (no refused or reset connection, no other answer).
    Scale-up: a new replica takes traffic only once it routes.
    Scale-down: `streams` long responses are started at zero through `app` first, spread by
    kube-proxy over both replicas, so the one that terminates has some: with relayed, the upgrade
    waits until every one is relayed to the woken pod (first chunk arrived); otherwise it starts
    as soon as every connection is open at a replica (most are still held, waiting for the
    wake). Every response must arrive whole: the terminating replica drains. The terminating
    replica must leave the holdfast Service's endpoints as the EndpointSlice controller does it
    (listed ready=false, terminating=true while its process still runs), and the drip's new
    connections that kube-proxy still sends it after SIGTERM, until the resolver slices are
    rewritten without it and applied, must be answered: it keeps accepting for the chart's
    shutdownDelay. Returns how many connections the terminating replica accepted after SIGTERM
    (its holdfast_connections_accepted_total; all the drip's), 0 for a scale-up: the caller
    checks that some did, or the check proved nothing."""
    before = {p["metadata"]["name"]: p["status"]["podIP"] for p in holdfast_pods(sim)}
    down = n < len(before)
    st = Streams(sim.cluster_ip(ns, app), streams if down else 0)
    per_pod = {}
    first_at_term = None
    drip = ProbeDrip(sim.cluster_ip(ns, probe_svc))
    watch = None
    if down:
        st.start()
        wait_for(lambda: sum(open_connections(i) for i in before.values()) >= streams, timeout=20, interval=0.05,
                 what="%d streams open at the resolvers" % streams)
        if relayed:
            wait_for(lambda: st.first == streams, timeout=30, interval=0.05, what="every stream relayed")
        per_pod = {name: open_connections(i) for name, i in before.items()}
    drip.start()
    try:
        assert helm_upgrade(sim, ["replicaCount=%d" % n]) == n
        if down:
            wait_for(lambda: [p for p in all_holdfast_pods(sim) if p["metadata"].get("deletionTimestamp")],
                     timeout=20, interval=0.05, what="a holdfast pod terminating")
            first_at_term = st.first
            victims = [p["metadata"]["name"] for p in all_holdfast_pods(sim) if p["metadata"].get("deletionTimestamp")]
            assert len(victims) == 1, victims
            victim = victims[0]
            watch = TerminatingReplica(before[victim])
            watch.start()
            assert st.alive() == streams, "streams ended before the scale-down: they do not outlive it"
            assert per_pod.get(victim, 0) > 0, \
                "no stream went through the terminating replica %s (open connections %s)" % (victim, per_pod)
            # the EndpointSlice controller: a terminating pod is listed not ready, terminating
            conds = wait_for(lambda: (lambda c: c and c.get("ready") is False and c.get("terminating") is True
                                      and c)(resolver_service_endpoint(sim, victim)),
                             timeout=10, interval=0.05,
                             what="%s listed ready=false terminating=true by the holdfast Service" % victim)
        wait_release(sim, n)
        # `app` was woken by the streams (serve mode, no slice); `probe_svc` stayed at zero
        wait_slices_list_ready_pods(sim, ns, [probe_svc] + ([] if down else [app]))
        settle()  # kube-proxy applied them, with the drip still running
    finally:
        drip.finish()
        if watch:
            watch.finish()
    assert not drip.failures and drip.ok > 0, "probe drip during the upgrade to %d: %d ok, %d failed: %s" % (
        n, drip.ok, len(drip.failures), "; ".join(drip.failures[:8]))
    st.join(60)
    assert not st.res.failures and st.res.ok == len(st.threads), "in-flight streams: " + st.res.summary()
    if down:
        assert watch.base is not None, "%s never answered /readyz 503 (SIGTERM not seen)" % victim
        print("replicaCount %d: %d probes on new connections answered through the scale-down, %d of them "
              "accepted by the terminating replica after SIGTERM (%d before its listeners closed; its endpoint "
              "went %s); %d streams arrived whole (open per replica before: %s; %d of them relayed, the rest "
              "held, when the replica began terminating)"
              % (n, drip.ok, watch.accepted, watch.in_delay, conds, streams, per_pod, first_at_term))
        # the streams woke `app`: back to zero for the checks that follow
        wait_serve(sim, ns, app)
        to_zero(sim, ns, app)
        return watch.accepted
    print("replicaCount %d: %d probes through the resolvers answered during the scale-up" % (n, drip.ok))
    return 0


# 1 ------------------------------------------------------------------------------------------

def test_resolver_replicas_1_2_1_through_helm_upgrade(cluster, ns):
    """`helm upgrade --set replicaCount=N` (with the install's other values), not waited for,
    to 1, 2, then 1 holdfast replicas while two services are at zero. After each step every
    resolver slice lists exactly the ready holdfast pods, and a request at zero through each
    ClusterIP wakes the target and is answered by its pod (then back to zero). Through each
    scale-down, 16 long responses started at zero arrive whole, some of them through the replica
    that terminates: relayed ones in the first, (mostly) still held ones in the second (drain);
    the terminating replica is listed ready=false, terminating=true in the holdfast Service's
    EndpointSlice, and new connections kube-proxy still sends it after SIGTERM are answered (its
    shutdown delay). Through every step, a probe drip on new connections through the resolvers,
    until the terminating replica is gone and the rewritten slices are applied, never fails
    (no refused or reset connection), and some of those connections did reach a terminating
    replica after its SIGTERM. The release is upgraded back to the default values (2 replicas,
    Ready, a leader) before the test returns, whatever happened: the other test files share
    this cluster."""
    services = ["web", "web-p"]
    make_app(cluster, ns, name="web")
    make_app(cluster, ns, name="web-p")
    create_es(cluster, ns, name="web")
    create_es(cluster, ns, name="web-p", probeResponse=PROBES)
    for s in services:
        wait_serve(cluster, ns, s)
        to_zero(cluster, ns, s)
    wait_slices_list_ready_pods(cluster, ns, services)
    assert len(ready_holdfast_ips(cluster)) == 2
    after_sigterm = 0
    try:
        for n, relayed in ((1, True), (2, False), (1, False)):
            after_sigterm += scale_resolvers(cluster, ns, n, relayed=relayed)
            assert len(ready_holdfast_ips(cluster)) == n
            wait_slices_list_ready_pods(cluster, ns, services)
            wake_and_rezero(cluster, ns, services)
            wait_slices_list_ready_pods(cluster, ns, services)
    finally:
        restore_default_release(cluster)
    wait_slices_list_ready_pods(cluster, ns, services)
    # the drip's new connections did reach a terminating replica after its SIGTERM (about half
    # of those in each ~1 s window until kube-proxy applies the rewritten slices)
    assert after_sigterm > 0, "no drip connection reached a terminating replica after SIGTERM: " \
        "the scale-down check proved nothing"


# 2 ------------------------------------------------------------------------------------------

def test_leader_killed_at_zero_survivor_takes_the_lease(cluster, ns):
    """The holdfast pod holding the leader Lease force-deleted (its process SIGKILLed, the Lease
    not handed back) while the service is at zero: once the Lease expires a live replica holds it
    (the survivor, or the pod the Deployment created in the dead one's place: either may win),
    the resolver slice is rewritten without the dead pod (exactly the ready replicas), and 20
    concurrent requests at zero through the ClusterIP wake the target and are all answered by its
    pod; then serve mode follows (a leader's decision)."""
    make_app(cluster, ns)
    create_es(cluster, ns)
    wait_serve(cluster, ns)
    to_zero(cluster, ns)
    ip = cluster.cluster_ip(ns, "web")
    try:
        pods = holdfast_pods(cluster)
        assert len(pods) == 2
        lead = leader(cluster)
        victim = [p for p in pods if p["metadata"]["name"] == lead]
        assert victim, "the leader %r is not a holdfast pod" % lead
        victim_ip = victim[0]["status"]["podIP"]
        survivor = [p["metadata"]["name"] for p in pods if p["metadata"]["name"] != lead][0]
        wait_for(lambda: victim_ip in resolver_ips(cluster, ns), timeout=10, what="the leader in the slice")
        cluster.kubectl("delete", "pod", "-n", HF_NS, lead, "--grace-period=0", "--force")
        # the Lease expires (the dead leader never hands it back); then a live replica holds it:
        # the survivor, or the pod the Deployment created in the dead one's place
        def new_leader():
            h = leader(cluster)
            return h and h != lead and h in {p["metadata"]["name"] for p in holdfast_pods(cluster)} and h
        took = wait_for(new_leader, timeout=45, interval=0.2, what="a live replica holding the Lease")
        print("leader %s killed; the Lease went to %s (%s)" % (
            lead, took, "the survivor" if took == survivor else "the replacement pod"))
        wait_for(lambda: victim_ip not in resolver_ips(cluster, ns) and resolver_ips(cluster, ns), timeout=20,
                 interval=0.1, what="the dead leader dropped from the resolver slice")
        wait_slices_list_ready_pods(cluster, ns, ["web"])
        assert victim_ip not in resolver_ips(cluster, ns)
        settle()
        assert replicas(cluster, ns) == 0
        res = Result()
        run_threads([lambda i=i: one_request(ip, res, path="/l-%d" % i) for i in range(20)], timeout=90)
        assert res.ok == 20 and not res.failures, res.summary()
        wait_serve(cluster, ns)
    finally:
        # the chart's Deployment replaces the pod: both Ready, a leader, before the next test
        wait_release(cluster, 2)


# 3 ------------------------------------------------------------------------------------------
# helm uninstall on a cluster of its own: Helm runs the pre-delete hook, then deletes the
# release's objects.

NAMESPACED = os.path.join(CHART, "ci", "namespaced-values.yaml")


class Release:
    """One release of the chart (name "holdfast") in namespace `ns`, installed by `helm install`
    as the package cluster's is (its pods run holdfast with only the chart's RBAC,
    pollingInterval 1s) and removed by `helm uninstall`."""

    def __init__(self, sim, ns, value_files=()):
        self.sim, self.ns, self.value_files = sim, ns, list(value_files)

    def install(self):
        e2elib.install_chart(self.sim, self.ns, value_files=self.value_files)

    def pods(self):
        """The release's pods: the Deployment's and the hook Job's."""
        return sim_pods(self.sim, self.ns, "app.kubernetes.io/instance%3Dholdfast")

    def uninstall(self):
        """helm uninstall --wait: Helm creates the pre-delete hook Job and waits until it
        completes (a failed one stops the uninstall: its logs are shown), deletes it
        (hook-succeeded), then deletes the release's objects and waits for them to be gone. The
        CRD stays."""
        r = e2elib.helm(self.sim, "uninstall", "holdfast", "-n", self.ns, "--wait", "--timeout", "120s",
                        check=False)
        assert r.returncode == 0, "helm uninstall in %s: exit %d\n%s%s\n%s" % (
            self.ns, r.returncode, r.stdout, r.stderr, e2elib.pod_logs(self.sim, self.ns + "_holdfast-restore"))


def sim_pods(sim, ns, selector):
    return sim.get("/api/v1/namespaces/%s/pods?labelSelector=%s" % (ns, selector))["items"]


def es_of(sim, ns):
    return sim.get("%s/namespaces/%s/elastiservices" % (e2elib.ES_API, ns))["items"]


def holdfast_slices(sim, ns):
    return [s for s in sim.get("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % ns)["items"]
            if (s["metadata"].get("labels") or {}).get("endpointslice.kubernetes.io/managed-by") == "holdfast"]


APPS = [("web", 1), ("web-b", 2)]  # (name, minTargetReplicas)


def apps_at_zero(sim, ns):
    """Each app created at 0 replicas with its ElastiService: proxy mode (a hand's 0)."""
    for name, _ in APPS:
        make_app(sim, ns, replicas=0, name=name)
    for name, mn in APPS:
        create_es(sim, ns, name=name, minTargetReplicas=mn)
    for name, _ in APPS:
        wait_mode(sim, ns, "proxy", name)
        wait_for(lambda: resolver_ips(sim, ns, name), timeout=15, interval=0.1, what="%s's resolver slice" % name)


FINALIZER = "elasti.truefoundry.com/finalizer"


def finalizers(o):
    return o["metadata"].get("finalizers") or []


def check_at_zero(sim, ns):
    """Still managed: targets at 0, proxy mode, a resolver slice each, and holdfast's finalizer
    on each ElastiService (the leader adds it)."""
    for name, _ in APPS:
        assert replicas(sim, ns, name) == 0
        assert e2elib.status(sim, ns, name).get("mode") == "proxy"
        assert resolver_ips(sim, ns, name), "%s/%s lost its resolver slice" % (ns, name)
        assert FINALIZER in finalizers(sim.get(e2elib.es_path(ns, name))), "%s/%s has no %s" % (ns, name, FINALIZER)


def check_restored(sim, ns):
    """Every target back at >= minTargetReplicas, serve mode, no resolver slice, the
    ElastiServices still there, and each Service answers from its pods through the ClusterIP."""
    for name, mn in APPS:
        assert replicas(sim, ns, name) >= mn, "%s/%s left at %d replicas" % (ns, name, replicas(sim, ns, name))
        assert e2elib.status(sim, ns, name).get("mode") == "serve"
    assert not holdfast_slices(sim, ns), "resolver slices left in %s: %s" % (
        ns, [s["metadata"]["name"] for s in holdfast_slices(sim, ns)])
    assert sorted(e["metadata"]["name"] for e in es_of(sim, ns)) == sorted(n for n, _ in APPS)
    res = Result()
    for name, mn in APPS:
        sim.wait_service_endpoints(ns, name, mn, timeout=30)
    settle()
    for name, _ in APPS:
        ip = sim.cluster_ip(ns, name)
        for i in range(5):
            got = one_request(ip, res, path="/after-uninstall-%d" % i)
            if got:
                assert got["pod"].startswith(name + "-"), got
    assert res.ok == 5 * len(APPS) and not res.failures, "%s: %s" % (ns, res.summary())


def check_released(sim, ns):
    """After the uninstall nothing waits for holdfast: no ElastiService of ns carries its
    finalizer, deleting one completes at once (gone as soon as the API answered the delete;
    bounded wait), and deleting the namespace completes (its content, the other ElastiService
    and the app Deployments included, then the namespace itself; bounded wait)."""
    left = {e["metadata"]["name"]: finalizers(e) for e in es_of(sim, ns) if FINALIZER in finalizers(e)}
    assert not left, "ElastiServices of %s still carry %s after the uninstall: %s" % (ns, FINALIZER, left)
    name = APPS[-1][0]
    path = e2elib.es_path(ns, name)
    sim.kubectl("delete", "elastiservices.elasti.truefoundry.com", name, "-n", ns, "--wait=false")
    try:
        wait_for(lambda: not sim.exists(path), timeout=10, interval=0.05,
                 what="ElastiService %s/%s deleted" % (ns, name))
    except AssertionError as e:
        md = sim.get(path)["metadata"] if sim.exists(path) else {}
        raise AssertionError("%s: deletionTimestamp %s, finalizers %s" % (
            e, md.get("deletionTimestamp"), md.get("finalizers")))
    sim.kubectl("delete", "namespace", ns, "--wait=false")
    try:
        wait_for(lambda: not sim.exists("/api/v1/namespaces/" + ns), timeout=60, interval=0.1,
                 what="namespace %s deleted" % ns)
    except AssertionError as e:
        es = [(x["metadata"]["name"], x["metadata"].get("deletionTimestamp"), finalizers(x)) for x in es_of(sim, ns)]
        raise AssertionError("%s: ElastiServices left (name, deletionTimestamp, finalizers): %s" % (e, es))


@pytest.fixture
def own_cluster(tmp_path, request):
    """A test cluster of the test's own (the shared one keeps its release), started as the
    package's (e2elib.start_cluster), nothing installed; its holdfast pods' logs printed when the
    test fails. It runs beside the package's; the test's thread is in its namespace meanwhile."""
    why = e2elib.can_run()
    if why:
        pytest.skip(why)
    sim = e2elib.start_cluster(tmp_path / "c")
    try:
        yield sim
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print("\n===== holdfast pod logs (tail) =====\n" + e2elib.pod_logs(sim, "holdfast_", 3000)
                  + e2elib.pod_logs(sim, "team-", 3000, skip=("_web",)))
    finally:
        left = e2elib.stop_cluster(sim)
    assert left == [], "network namespaces of the cluster left behind: %s" % left


@pytest.mark.parametrize("variant", ["default", "namespaced"])
def test_uninstall_restores_every_service(own_cluster, variant):
    """helm uninstall with services at zero, on a test cluster of its own.
    default: the chart's default values (cluster-wide RBAC) in namespace holdfast, two
    ElastiServices in each of two app namespaces; the hook runs `holdfast restore --all`.
    namespaced: the namespace-scoped values (ci/namespaced-values.yaml) as two releases, in
    team-a and team-b, each watching its own namespace with two ElastiServices there; the hook
    runs `holdfast restore --namespace NS` with the Role's rights only. Uninstalling team-a
    restores team-a's services and leaves team-b's at zero and served by team-b's release; then
    team-b is uninstalled.
    Before each uninstall every ElastiService of the release carries holdfast's finalizer.
    After each uninstall (the hook Job completed and deleted, the release's pods gone): every
    target of the release is back at minTargetReplicas or more, in serve mode, no resolver slice
    is left (none re-created by a replica still running during the hook), and each Service
    answers from its pods through its ClusterIP; no ElastiService of the release carries the
    finalizer `elasti.truefoundry.com/finalizer` any more (the hook's `restore --uninstall`
    removed it, and no replica still running during the hook added it back), deleting one
    completes at once and deleting its namespace completes (bounded waits). In the namespaced
    variant, team-b's ElastiServices keep their finalizer through team-a's uninstall."""
    sim = own_cluster
    if variant == "default":
        rel = Release(sim, "holdfast")
        rel.install()
        plan = [(rel, ["app-a", "app-b"])]
        for ns in plan[0][1]:
            sim.kubectl("create", "namespace", ns)
            e2elib.wait_namespace_usable(sim, ns)
    else:
        plan = [(Release(sim, "team-a", [NAMESPACED]), ["team-a"]), (Release(sim, "team-b", [NAMESPACED]), ["team-b"])]
        for rel, _ in plan:
            rel.install()
    for rel, namespaces in plan:
        for ns in namespaces:
            apps_at_zero(sim, ns)
    settle()
    for i, (rel, namespaces) in enumerate(plan):
        for ns in namespaces:
            check_at_zero(sim, ns)
        rel.uninstall()
        assert not sim.exists("/apis/batch/v1/namespaces/%s/jobs/holdfast-restore" % rel.ns), \
            "the hook Job was not deleted (hook-succeeded)"
        wait_for(lambda: not rel.pods(), timeout=45, what="the holdfast pods of %s gone" % rel.ns)
        settle()
        for ns in namespaces:
            check_restored(sim, ns)
            check_released(sim, ns)
        for later, later_namespaces in plan[i + 1:]:
            # another release's services: untouched, still at zero, and still woken through it
            for ns in later_namespaces:
                check_at_zero(sim, ns)
                res = Result()
                got = one_request(sim.cluster_ip(ns, "web"), res, path="/still-managed")
                assert res.ok == 1 and got["pod"].startswith("web-"), res.summary()
                wait_serve(sim, ns, "web")
                to_zero(sim, ns, "web")
