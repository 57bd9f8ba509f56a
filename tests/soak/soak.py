#!/usr/bin/python3
"""soak: a seeded, time-bounded randomized soak of holdfast in Kubernetes mode, checking
invariants while it runs. See tests/soak/README.md.

    /usr/bin/python3 tests/soak/soak.py --seed 1234 --seconds 180 [--workdir DIR]
    SOAK_SEED=1234 SOAK_SECONDS=600 /usr/bin/python3 -m pytest tests/soak     # the same, in pytest

It starts the real control plane (tests/hftest/realcluster.py: upstream etcd, kube-apiserver,
controllers, scheduler, kube-proxy, the node agent for pods; root; this thread then runs inside
the cluster's network namespace, and so does everything it starts), an Exporter and a real
Prometheus (tests/hftest/promfix.py), and
holdfast replicas ($HOLDFAST_BIN, the ASan+UBSan build in CI) with leader election and a
resolver Service whose EndpointSlice the soak keeps as the EndpointSlice controller would (the
ready replicas; a SIGTERMed one as terminating). Then, for the given time, it mixes random
operations (one thread for operations on apps, one for cluster-wide disruptions, one at a time)
while two clients per app send requests through the app's ClusterIP without pause, and the
checkers (observe.py) verify the invariants. It ends with every operation stopped and a bound
for everything to agree, stops every process it started, and prints a report: the seed first
and in every violation, which invariant, which object, and the operations around it.

The seed fixes the sequence of operations and their parameters; the timing of a run (and so
the interleaving with holdfast's own actions) varies from run to run.

Exit status: 0 when no invariant failed (those listed in SOAK_XFAIL / --xfail are reported
but do not fail), 1 otherwise.
"""
import argparse
import ipaddress
import os
import random
import re
import signal
import sys
import tempfile
import threading
import time
import traceback

import _path  # noqa: F401 - hftest on sys.path when run by itself

from hftest import REPO
from hftest.hfk8s import HoldfastError, HoldfastK8s
from hftest.holdfast import SANITIZER_MARKERS, holdfast_bin
from hftest.promfix import Exporter, Prometheus, PromfixError
from hftest.realcluster import RealCluster

import observe
from ops import Operations
from traffic import REQUEST_TIMEOUT, Traffic
from world import (BOUND, CONNECTION_LOST, DRAIN_TIMEOUT, HAND_ANNOTATION, LEASE_BOUND,
                   METRIC, PROBE_BODY, PROXY_DELAY_MS, RESOLVER_NS, RESOLVER_SVC, SHUTDOWN_DELAY,
                   App, Excuses, OpLog, Replica, deploy_path, es_path, routed, svc_path)

PY = "/usr/bin/python3"
HTTPSERVER = os.path.join(REPO, "tests", "hftest", "apps", "httpserver.py")
CRD_FILE = os.path.join(REPO, "crds", "elastiservice.yaml")
TERM_DELAY_MS = 3000
IMAGES = {"soak/http:1": {"argv": [PY, HTTPSERVER]}}
KNOWN_INVARIANTS = ("mode", "observed_generation", "resolver_slice", "ports", "hand_zero_seen",
                    "request", "request_at_scale_down", "request_ports_stale", "answer", "crash",
                    "sanitizer", "metrics", "leader", "deletion", "delete_restores", "harness")


def is_sanitized(binary):
    """True when `binary` was built with AddressSanitizer (its runtime's strings are in it)."""
    try:
        with open(binary, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return b"AddressSanitizer" in data or b"__asan_init" in data


class Soak(Operations):
    """One run: set up (setup), operations and checks (run), settling (final), every process
    stopped (teardown), the report (summary, write_failures). run_soak does all of it."""

    def __init__(self, seed, seconds, workdir, xfail=(), out=print, log_level="info"):
        self.seed = seed
        self.seconds = seconds
        self.workdir = os.path.abspath(str(workdir))
        os.makedirs(self.workdir, exist_ok=True)
        self.out = out
        self.log_level = log_level
        self.t0 = time.monotonic()
        self.oplog = OpLog(self.t0)
        self.excuses = Excuses(PROXY_DELAY_MS / 1000.0 + 1.0, self.deadline)
        self.violations = observe.Violations(self.oplog, seed, xfail, self.say)
        self.rng = random.Random(seed)                 # operations on apps
        self.infra_rng = random.Random(seed * 7919 + 1)  # cluster-wide disruptions
        self.bound = BOUND
        self.lease_bound = LEASE_BOUND
        self.lock = threading.RLock()
        self.apps = []
        self.replicas = []
        self.n_ns = 0
        self.n_apps = 0
        self.n_hf = 0
        self.restarts = {}      # pod name -> containers restarted in place
        self.disruptions = []   # (start, end, what): holdfast cannot be expected to keep up
        self.outages = []       # (start, end incl. recovery)
        self.hand_zero = []     # (t0, app key, op): each scale to 0 by hand must be seen in proxy mode
        self.deletes = []       # [t0, app key, target was at zero, seen gone]
        self.stop_chaos = threading.Event()
        self.stop_all = threading.Event()
        self.membership_last = None  # the endpoints last written to the resolver Service's slice
        self.sim = self.exporter = self.prom = None
        # how long a pod serves after SIGTERM (its preStop sleep): longer than the propagation of
        # its removal to kube-proxy, as docs/kubernetes.md asks: the ReplicaSet controller, the
        # node agent's SIGTERM, the EndpointSlice controller, kube-proxy's delay and its
        # iptables sync. Measured, a new connection still went to a pod 1.5 s after holdfast
        # removed it, so 3 s
        self.term_delay_ms = TERM_DELAY_MS
        self.traffic = None
        self.modes = observe.ModeHistory()
        self.wakes = observe.WakeHistory()
        self.es_watch = self.dep_watch = self.checker = self.metrics = None
        self.port_range = None
        self.threads = []
        self.report_path = os.path.join(self.workdir, "soak-report.txt")
        self._report = open(self.report_path, "w")

    # ------------------------------------------------------------------ output

    def rel(self, t=None):
        return (time.monotonic() if t is None else t) - self.t0

    def say(self, msg):
        line = "[soak %7.2fs] %s" % (self.rel(), msg)
        with self.lock:
            self._report.write(line + "\n")
            self._report.flush()
        self.out(line)

    def debug(self, msg):
        with self.lock:
            self._report.write("[soak %7.2fs] (debug) %s\n" % (self.rel(), msg))

    # ------------------------------------------------------------------ shared views

    def apps_snapshot(self):
        with self.lock:
            return list(self.apps)

    def replicas_snapshot(self):
        with self.lock:
            return list(self.replicas)

    def listed_replicas(self):
        """The replicas the resolver Service's EndpointSlice lists as ready now."""
        return [r for r in self.replicas_snapshot() if r.ready and not r.terminating]

    def deadline(self, t):
        """When something that holdfast should have done within the bound from t is overdue:
        t + bound, pushed past every cluster-wide disruption (API outage, a replica stopped)
        that began before that time."""
        d = t + self.bound
        with self.lock:
            spans = sorted((s, e) for (s, e, _) in self.disruptions)
        for (s, e) in spans:
            if s <= d and e + self.bound > d and e >= t:
                d = e + self.bound
        return d

    def removed_as_the_api_went_away(self, f, t):
        """A reason when failure f (at time t) is Kubernetes' loss, not holdfast's: holdfast
        scaled f's app to 0 (the Deployment watch showed it) between 1 s before an API server
        restart began and the controllers acting again. The ReplicaSet controller removed the
        pods as the API went away, and the EndpointSlice controller, away too, could not take
        them out of the Service's slices: kube-proxy sent new connections to pods that had
        exited until the controllers came back (a pod whose preStop outlasts the outage loses
        nothing, docs/kubernetes.md). Only until the bound after the controllers acted again,
        and never for a connection that went to a holdfast replica."""
        with self.lock:
            outages = [(s, e) for (s, e, why) in self.disruptions if why == "API outage"]
        dest = re.findall(r"\bto (\d+\.\d+\.\d+\.\d+):\d+", f.detail)
        if dest and any(r.ip == dest[-1] for r in self.replicas_snapshot()):
            return None
        for (s, e) in outages:
            if s - 1.0 <= t <= self.deadline(e) and self.wakes.downs_between(f.app, s - 1.0, e):
                return "pods removed by holdfast as the API went away"
        return None

    def in_disruption(self, t):
        with self.lock:
            return any(s <= t <= e for (s, e, _) in self.disruptions)

    def outage_between(self, t0, t1):
        with self.lock:
            return any(s <= t1 and t0 <= e for (s, e) in self.outages)

    def disrupt(self, start, end, what):
        with self.lock:
            self.disruptions.append((start, end, what))

    # ------------------------------------------------------------------ API helpers

    def api(self, method, path, body=None, content_type="application/json"):
        """sim.request that never raises: (status, body), status 0 when unreachable."""
        try:
            return self.sim.request(method, path, body, content_type=content_type, timeout=5)
        except OSError as e:
            return 0, str(e)

    def patch(self, path, body):
        return self.api("PATCH", path, body, "application/merge-patch+json")

    # ------------------------------------------------------------------ set up

    def setup(self):
        self.say("seed %d, %ds of operations, holdfast %s, work directory %s" % (
            self.seed, self.seconds, holdfast_bin(), self.workdir))
        self.sim = RealCluster(os.path.join(self.workdir, "cluster"), image_map=IMAGES,
                               proxy_delay_ms=PROXY_DELAY_MS)
        self.sim.start()  # this thread is in the cluster's network namespace now
        import netns  # tests/cluster, the test cluster's own program
        App.service_net = ipaddress.ip_network(netns.SERVICE_CIDR)
        self.say("on the real control plane: cluster %s, Services in %s" % (
            self.sim.ns, netns.SERVICE_CIDR))
        self.sim.kubectl("apply", "-f", CRD_FILE)
        deadline = time.monotonic() + 20
        while not self.sim.exists("/apis/elasti.truefoundry.com/v1alpha1"):
            if time.monotonic() > deadline:
                raise RuntimeError("the ElastiService CRD is not served")
            time.sleep(0.1)
        self.exporter = Exporter()
        self.prom = Prometheus(exporter=self.exporter, workdir=os.path.join(self.workdir, "prometheus"))
        base = random.Random(self.seed).randrange(30000, 58000, 100)
        self.port_range = (base, base + 99)
        # the resolver's own Service, its EndpointSlice kept by membership()
        self.sim.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": RESOLVER_NS}})
        self.sim.create(svc_path(RESOLVER_NS), {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": RESOLVER_SVC},
            "spec": {"ports": [{"name": "shared", "port": 8012}]}})
        self.es_watch = observe.Watcher(self.sim, "/apis/elasti.truefoundry.com/v1alpha1/elastiservices",
                                        "elastiservices", self.modes.on_event)
        self.dep_watch = observe.Watcher(self.sim, "/apis/apps/v1/deployments", "deployments",
                                         self.wakes.on_event)
        self.es_watch.start()
        self.dep_watch.start()
        self.traffic = Traffic(self.seed * 31 + 7, timeout=REQUEST_TIMEOUT, where=True)
        for _ in range(2):
            self.new_namespace(apps=2, initial=True)
        for _ in range(2):
            self.start_replica()
        self._thread(self.membership, "membership")
        deadline = time.monotonic() + 30
        while len(self.listed_replicas()) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("the holdfast replicas are not listed ready")
            time.sleep(0.1)
        self.checker = observe.Checker(self)
        self.checker.start()
        self.metrics = observe.MetricsAuditor(self)
        self.metrics.start()
        time.sleep(PROXY_DELAY_MS / 1000.0 + 0.5)  # kube-proxy listens for every Service
        for app in self.apps_snapshot():
            self.traffic.add(app)
        self.say("set up: %d apps in %d namespaces, replicas %s" % (
            len(self.apps), self.n_ns, [r.name for r in self.replicas]))

    def _thread(self, fn, name):
        """Runs fn in a thread of the soak's; an exception that ends it is a `harness` violation:
        a soak whose own machinery stopped (the clients, the checker, the resolver's endpoints)
        proves nothing from then on."""
        def run():
            try:
                fn()
            except Exception:  # noqa: BLE001 - reported, whatever it is
                self.violations.add("harness", name, time.monotonic(), "the soak's %s thread raised:\n%s"
                                    % (name, traceback.format_exc()[-3000:]), timeline_key="")
        t = threading.Thread(target=run, name=name, daemon=True)
        t.start()
        self.threads.append(t)
        return t

    # ------------------------------------------------------------------ apps

    def knobs(self, rng):
        k = {"cooldownPeriod": rng.randint(2, 4), "minTargetReplicas": 1, "threshold": "1"}
        if rng.random() < 0.3:
            k["probe"] = True
        return k

    def es_body(self, app):
        s = app.spec
        spec = {"service": app.name, "minTargetReplicas": s["minTargetReplicas"],
                "cooldownPeriod": s["cooldownPeriod"],
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app.name},
                "triggers": [{"type": "prometheus", "metadata": {
                    "query": 'sum(%s{app="%s"})' % (METRIC, app.key), "serverAddress": self.prom.url,
                    "threshold": s["threshold"]}}]}
        for k in ("holdTimeoutSeconds", "maxHeldConnections", "enabledPeriod"):
            if k in s:
                spec[k] = s[k]
        if s.get("probe"):
            spec["probeResponse"] = [{"method": "GET", "path": {"type": "Exact", "value": "/healthz"},
                                      "response": {"status": 200, "body": PROBE_BODY}}]
        return {"apiVersion": "elasti.truefoundry.com/v1alpha1", "kind": "ElastiService",
                "metadata": {"name": app.name}, "spec": spec}

    def svc_body(self, app):
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": app.name},
                "spec": {"selector": {"app": app.name},
                         "ports": [{"name": n, "port": p, "targetPort": 8080} for n, p in app.ports]}}

    def deploy_body(self, app, replicas):
        labels = {"app": app.name}
        return {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": app.name, "annotations": {HAND_ANNOTATION: "0"}},
                "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                             "name": "main", "image": "soak/http:1", "ports": [{"containerPort": 8080}],
                             # what docs/kubernetes.md asks of pods: serve past kube-proxy's
                             # propagation after SIGTERM (a preStop sleep)
                             "env": [{"name": "TERM_DELAY_MS", "value": str(self.term_delay_ms)}],
                             "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}}}

    def set_load(self, app, value):
        app.load = value
        self.exporter.set(METRIC, value, labels={"app": app.key})

    def new_namespace(self, apps, initial=False):
        with self.lock:
            self.n_ns += 1
            ns = "soak-%d" % self.n_ns
        op = self.oplog.start("ns_create", ns, "%d apps" % apps)
        code, body = self.api("POST", "/api/v1/namespaces",
                              {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        if code != 201:
            if initial:
                raise RuntimeError("creating namespace %s: %s %s" % (ns, code, body))
            self.oplog.end(op, "error %s" % code)
            return
        made = []
        for _ in range(apps):
            with self.lock:
                self.n_apps += 1
                name = "a%d" % self.n_apps
            rng = self.rng
            app = App(ns, name, load=rng.choice((0, 5)))
            app.spec = self.knobs(rng)
            app.replicas = 1 if initial else rng.choice((0, 1, 1, 2))
            self.set_load(app, app.load)
            ok = self.api("POST", deploy_path(ns), self.deploy_body(app, app.replicas))[0] == 201
            app.has_deploy = ok
            code, svc = self.api("POST", svc_path(ns), self.svc_body(app))
            if code == 201:
                app.cluster_ip = svc["spec"]["clusterIP"]
                app.has_svc = True
            app.has_es = self.api("POST", es_path(ns), self.es_body(app))[0] == 201
            if initial and not (ok and app.has_svc and app.has_es):
                raise RuntimeError("creating app %s failed" % app.key)
            with self.lock:
                self.apps.append(app)
            made.append(app)
            if not initial:
                # its pods start (or holdfast takes it over at zero) while its clients begin
                t, k = time.monotonic(), app.key
                # until it agrees and something serves it: a ready pod, or holdfast's resolver
                # slice (a real cluster starts a pod in a new namespace in a second or more)
                self.excuses.add(k, "app being created", t,
                                 until=lambda v: self.checker.converged_at.get(k, 0) > t and routed(v, k),
                                 due_from=t, kinds=CONNECTION_LOST)
                self.traffic.add(app)
        self.oplog.end(op, "apps %s" % [a.name for a in made])
        if initial:
            for app in made:
                self.sim.wait_ready_replicas(ns, app.name, 1, timeout=30)
                self.sim.wait_service_endpoints(ns, app.name, 1, timeout=30)

    # ------------------------------------------------------------------ replicas and membership

    def start_replica(self, pod=None, ip=None):
        """A new holdfast process: a new pod (a new name and address), or, with `pod` and `ip`,
        the same pod's container restarted (same identity and address, as a kubelet restarts a
        container in place). Each process has a name of its own ("hf-3", "hf-3.1", ...)."""
        with self.lock:
            if pod is None:
                self.n_hf += 1
                pod = name = "hf-%d" % self.n_hf
            else:
                self.restarts[pod] = self.restarts.get(pod, 0) + 1
                name = "%s.%d" % (pod, self.restarts[pod])
        hf = HoldfastK8s(self.sim, os.path.join(self.workdir, name), ip=ip or self.replica_ip(), polling="1s",
                         workers=2, log_level=self.log_level, pod_name=pod, leader_elect=True,
                         extra_args=["--resolver-service", RESOLVER_SVC, "--resolver-namespace",
                                     RESOLVER_NS, "--shutdown-delay", str(SHUTDOWN_DELAY),
                                     "--drain-timeout", str(DRAIN_TIMEOUT)])
        hf.port_range = self.port_range  # every replica listens on the ports the leader allocates
        r = Replica(name, pod, hf)
        op = self.oplog.start("hf_start", name, hf.ip)
        with self.lock:
            self.replicas.append(r)
        try:
            hf.start(timeout=45)
        except HoldfastError as e:
            self.oplog.end(op, "failed")
            if r.alive():
                self.violations.add("crash", name, time.monotonic(),
                                    "not ready 45 s after its start: %s" % str(e)[:3000],
                                    timeline_key="")
            return r
        r.started_at = time.monotonic()
        self.oplog.end(op)
        return r

    def replica_ip(self):
        """An address for a new replica: one of the node bridge's (realcluster.HOLDFAST_IPS)
        that no live replica uses, since every replica listens on the same resolver ports."""
        used = {r.ip for r in self.replicas_snapshot() if r.hf.proc is None or r.alive()}
        for _ in range(20):
            ip = self.sim.fresh_ip()
            if ip not in used:
                return ip
        raise RuntimeError("no free holdfast address (in use: %s)" % sorted(used))

    def membership(self):
        """The EndpointSlice controller of the resolver's own Service, and the crash and
        sanitizer watch of every replica: every 0.2 s."""
        path = "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % RESOLVER_NS
        last_scan = 0.0
        node = self.sim.node_name
        while not self.stop_all.is_set():
            now = time.monotonic()
            eps = []
            for r in self.replicas_snapshot():
                if r.hf.proc is None:
                    continue  # listed by start_replica, its process not started yet
                if r.exited_at is None and not r.alive():
                    r.exited_at = now
                    if r.signalled is None:
                        self.violations.add("crash", r.name, now, "exited with status %s, not "
                                            "signalled by the soak:\n%s" % (
                                                r.hf.proc.returncode, r.hf.stderr_text()[-4000:]),
                                            timeline_key="")
                if r.exited_at is not None or r.signalled == "KILL":
                    r.ready = False
                    continue
                if r.signalled == "TERM":
                    r.terminating = True
                    r.ready = False
                    eps.append({"addresses": [r.ip], "nodeName": node,
                                "conditions": {"ready": False, "serving": True, "terminating": True}})
                    continue
                if not r.ready and r.started_at is not None:
                    try:
                        r.ready = r.hf.admin_get("/readyz", timeout=1)[0] == 200
                    except OSError:
                        pass
                if r.ready:
                    eps.append({"addresses": [r.ip], "nodeName": node,
                                "conditions": {"ready": True, "serving": True, "terminating": False}})
            if eps != self.membership_last:
                body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                        "addressType": "IPv4",
                        "metadata": {"name": "holdfast-pods", "labels": {
                            "kubernetes.io/service-name": RESOLVER_SVC,
                            "endpointslice.kubernetes.io/managed-by": "soak.holdfast.io"}},
                        "ports": [{"name": "shared", "port": 8012, "protocol": "TCP"}],
                        "endpoints": eps}
                if self.membership_last is None:
                    code, _ = self.api("POST", path, body)
                else:
                    code, _ = self.patch(path + "/holdfast-pods", {"endpoints": eps})
                if code in (200, 201):
                    self.membership_last = eps
                    self.debug("resolver membership: %s" % [
                        (e["addresses"][0], e["conditions"]["ready"]) for e in eps])
            if now - last_scan > 3:
                last_scan = now
                for r in self.replicas_snapshot():
                    self.scan_sanitizer(r)
            self.stop_all.wait(0.2)

    def scan_sanitizer(self, r):
        try:
            with open(r.hf.stderr_path, "rb") as f:
                f.seek(max(0, r.scan_pos - 200))
                text = f.read().decode(errors="replace")
                r.scan_pos = f.tell()
        except OSError:
            return
        for marker in SANITIZER_MARKERS:
            i = text.find(marker)
            if i >= 0:
                self.violations.add("sanitizer", r.name, time.monotonic(),
                                    text[max(0, i - 200):i + 6000], dedup=(r.name, marker),
                                    timeline_key="")

    def signal_replica(self, r, how):
        r.signalled = how
        r.signalled_at = time.monotonic()
        if how == "KILL":
            r.ready = False
            r.hf.kill()
        else:
            r.terminating = True
            r.ready = False
            r.hf.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, r, timeout):
        try:
            r.hf.proc.wait(timeout)
        except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
            self.violations.add("crash", r.name, time.monotonic(),
                                "still running %.0fs after SIGTERM (shutdown delay %ds, drain "
                                "timeout %ds)" % (timeout, SHUTDOWN_DELAY, DRAIN_TIMEOUT),
                                timeline_key="")
            r.hf.kill()
        rc = r.hf.stop()  # closes its stderr
        r.exited_at = r.exited_at or time.monotonic()
        if r.signalled == "TERM" and rc != 0:
            self.violations.add("crash", r.name, time.monotonic(),
                                "exit status %s after SIGTERM (expected 0):\n%s" % (
                                    rc, r.hf.stderr_text()[-4000:]), timeline_key="")
        self.scan_sanitizer(r)
        r.exit_checked = True
        return rc

    # ------------------------------------------------------------------ invariants checked here

    def check_pending(self, now, final=False):
        """hand_zero_seen, deletion and delete_restores for the operations old enough."""
        with self.lock:
            pending = list(self.hand_zero)
        keep = []
        for (t, key, op) in pending:
            app = next((a for a in self.apps_snapshot() if a.key == key), None)
            if app is None or app.gone:
                continue
            deleted = self.oplog.last_on(key, {"es_delete", "svc_delete"})
            if deleted and deleted > t:
                continue  # deleted since: nothing to see
            if self.modes.proxy_between(key, t, now):
                continue
            due = self.deadline(t)
            if now > due or final:
                # only the leader switches traffic: a target at zero while nobody led (a
                # SIGKILLed leader's Lease not yet expired) cannot be expected to be seen
                up = (op.t1 if op.kind == "scale_blip" else None) or \
                    self.oplog.first_on_after(key, t, {"scale", "scale_blip"}) or now
                if not self.metrics.led_throughout(t, min(up, t + 2.0)):
                    self.traffic.stats.count("hand zero while nobody led (not checked)")
                    continue
                self.violations.add("hand_zero_seen", key, now,
                                    "scaled to 0 by hand at t=%.2fs; status.mode never showed proxy "
                                    "since (%.1fs)" % (self.rel(t), now - t), timeline_key=key)
                continue
            keep.append((t, key, op))
        with self.lock:
            self.hand_zero = keep + [x for x in self.hand_zero if x not in pending]
            deletes = list(self.deletes)
        view = self.checker.view if self.checker else None
        done = []
        for d in deletes:
            t, key, was_zero, gone = d
            due = self.deadline(t) + self.bound
            if gone is None:
                gone = d[3] = self.modes.deleted_after(key, t)
            if gone is None:
                if now > due or final:
                    es = (view or {}).get("es", {}).get(key) or {"metadata": {}}
                    self.violations.add("deletion", key, now,
                                        "deleted at t=%.2fs, still there %.1fs later (finalizers %s, "
                                        "deletionTimestamp %s)" % (
                                            self.rel(t), now - t, es["metadata"].get("finalizers"),
                                            es["metadata"].get("deletionTimestamp")),
                                        dedup=(key, t), timeline_key=key)
                    done.append(d)
                continue
            if not was_zero:
                done.append(d)
                continue
            # deleted with its target at zero: the target must be scaled back up
            hand = self.oplog.last_on(key, {"scale", "scale_blip", "es_create"}) or 0
            dep = (view or {}).get("deploy", {}).get(key)
            if not view or view["t"] < gone:
                continue
            if hand > t or not dep or (dep.get("spec") or {}).get("replicas", 0) > 0:
                done.append(d)
            elif now > due or final:
                self.violations.add("delete_restores", key, now,
                                    "ElastiService deleted at t=%.2fs with its target at zero; "
                                    "the target is still at 0 %.1fs later" % (self.rel(t), now - t),
                                    dedup=(key, t), timeline_key=key)
                done.append(d)
        with self.lock:
            self.deletes = [d for d in self.deletes if d not in done]

    def classify_failures(self, final=False):
        """Gives each recorded request failure its verdict once no window that could excuse it
        is still open (or at the end)."""
        stats = self.traffic.stats
        with stats.lock:
            todo = [f for f in stats.failures if f.verdict is None]
        horizon = time.monotonic() - (self.lease_bound + self.bound + 5)
        groups = {}
        for f in todo:
            if not final and f.t_end > horizon:
                continue
            # a timeout, and a connection refused (on the real cluster a connect to an address
            # kube-proxy has no rule for yet, or one that is gone, fails with "No route to host"
            # only after ARP gives up, seconds later), are judged when the request began
            t = f.t_start if f.kind in ("timeout", "refused") else f.t_end
            reason = None
            if f.kind in ("refused", "reset", "closed", "truncated", "timeout", "oserror", "removed"):
                reason = self.excuses.find(f.app, t, f.kind)
            if not reason and f.kind in CONNECTION_LOST:
                reason = self.removed_as_the_api_went_away(f, t)
            if not reason and f.kind == "timeout":
                # held when its Service went: it stays held until the Service is back and routes
                # to a ready pod, or holdTimeoutSeconds (docs/kubernetes.md, "The Service
                # deleted"); the client gave up first
                gone = self.excuses.began_between(f.app, ("Service deleted", "namespace deleted"),
                                                  f.t_start, f.t_end)
                if gone:
                    reason = gone + " while the request was held"
            if reason:
                f.verdict = ("excused", reason)
                stats.count("excused: " + reason.split(" replica ")[0])
                continue
            if f.kind in ("wrong_answer", "undocumented_answer", "bad_http"):
                inv = "answer"
            elif self.modes.scale_downs_near(f.app, t, 3.0, 2.0):
                inv = "request_at_scale_down"
            elif self.checker.disagreed(f.app, "ports", t):
                inv = "request_ports_stale"
            else:
                inv = "request"
            f.verdict = ("violation", inv)
            groups.setdefault((f.app, inv), []).append(f)
        for (app, inv), fs in groups.items():
            # one violation per burst (failures less than 5 s apart)
            burst = [fs[0]]
            for f in fs[1:] + [None]:
                if f is not None and f.t_end - burst[-1].t_end < 5:
                    burst.append(f)
                    continue
                kinds = {}
                for b in burst:
                    kinds[b.kind] = kinds.get(b.kind, 0) + 1
                lines = ["%d request(s) failed between t=%.2fs and t=%.2fs: %s" % (
                    len(burst), self.rel(burst[0].t_end), self.rel(burst[-1].t_end), kinds)]
                for b in burst[:8]:
                    lines.append("t=%.2f-%.2f %s :%d%s %s" % (
                        self.rel(b.t_start), self.rel(b.t_end), b.client.split("-")[-1], b.port,
                        b.path, b.detail))
                if inv == "request_at_scale_down":
                    lines.append("holdfast scaled it down at t=%s" % [
                        "%.2f" % self.rel(x[0]) for x in self.modes.scale_downs_near(
                            app, burst[0].t_end, 3.0, 2.0)])
                self.violations.add(inv, app, burst[0].t_end, "\n".join(lines))
                if f is not None:
                    burst = [f]

    # ------------------------------------------------------------------ the run

    def run(self):
        start = time.monotonic()
        until = start + self.seconds
        infra = self._thread(lambda: self.infra_ops(until), "infra")
        self.say("operations for %ds" % self.seconds)
        last_classify = time.monotonic()
        app_thread = self._thread(lambda: self.app_ops(until), "app-ops")
        while time.monotonic() < until and not self.stop_all.is_set():
            time.sleep(1)
            if time.monotonic() - last_classify > 5:
                last_classify = time.monotonic()
                self.classify_failures()
        self.stop_chaos.set()
        app_thread.join(30)
        # (a real API server's restart ends when the controllers act again: up to 4 min)
        infra.join(SHUTDOWN_DELAY + DRAIN_TIMEOUT + 60 + 240)
        self.say("operations stopped; settling (bound %.0fs)" % self.bound)
        self.final()

    def final(self):
        # at least two replicas, Prometheus up
        live = [r for r in self.replicas_snapshot() if r.alive() and not r.signalled]
        for _ in range(max(0, 2 - len(live))):
            self.start_replica()
        if not self.prom.running():
            try:
                self.prom.start()
            except PromfixError as e:
                self.say("Prometheus does not start again: %s" % e)
        t_final = time.monotonic()
        deadline = t_final + self.lease_bound + self.bound + 10
        while time.monotonic() < deadline:
            self.check_pending(time.monotonic())
            apps = [a for a in self.apps_snapshot()
                    if not a.gone and a.has_es and a.has_svc and a.has_deploy]
            if all(self.checker.converged_at.get(a.key, 0) > t_final + 1 for a in apps) and \
                    not self.hand_zero and not self.deletes:
                break
            time.sleep(0.5)
        time.sleep(3)  # a few more sweeps and requests with everything settled
        self.check_pending(time.monotonic(), final=True)
        stuck = self.traffic.stop()
        if stuck:
            self.say("client threads still running after their deadline: %s" % stuck)
        self.metrics.stop()
        self.metrics.close_epoch()
        self.checker.stop()
        self.classify_failures(final=True)

    def teardown(self):
        self.stop_chaos.set()
        if self.traffic:
            self.traffic.stop(timeout=5)
        for r in self.replicas_snapshot():
            if r.alive():
                if r.signalled is None:
                    r.signalled = "TERM"
                    r.hf.proc.send_signal(signal.SIGTERM)
                self.wait_exit(r, SHUTDOWN_DELAY + DRAIN_TIMEOUT + 15)
            elif not r.exit_checked:
                r.hf.stop()
                self.scan_sanitizer(r)
        self.stop_all.set()
        for t in self.threads:
            t.join(10)
        for w in (self.checker, self.metrics, self.es_watch, self.dep_watch):
            if w is not None:
                w.stop()
        if self.prom:
            self.prom.stop()
        if self.exporter:
            self.exporter.close()
        if self.sim:
            left = self.sim.stop()
            if left:
                self.say("left behind by the cluster (killed or removed): %s" % (left,))

    # ------------------------------------------------------------------ report

    def summary(self):
        """The closing lines of the report: what was done, what was seen, what failed."""
        def tally(items):
            out = {}
            for k in items:
                out[k] = out.get(k, 0) + 1
            return ", ".join("%s %d" % kv for kv in sorted(out.items())) or "none"

        lines = ["seed %d, %ds of operations, %.0fs in all" % (self.seed, self.seconds, self.rel()),
                 "operations: %s" % tally(op.kind for op in self.oplog.ops)]
        if self.traffic:
            stats = self.traffic.stats
            c = dict(stats.counts)
            answers = {k: v for k, v in c.items() if k.startswith("holdfast_") and k != "holdfast_answers"}
            lines.append("requests: %d answered by a pod, %d probe answers, %d documented holdfast "
                         "answers %s, %d failed" % (c.get("pod", 0), c.get("probe", 0),
                                                   c.get("holdfast_answers", 0), answers, c.get("failed", 0)))
            verdicts = {}
            for f in stats.failures:
                v = f.verdict or ("unclassified", "")
                k = "%s %s (%s)" % (v[0], v[1], f.kind)
                verdicts[k] = verdicts.get(k, 0) + 1
            lines += ["  %5d %s" % (n, k) for k, n in sorted(verdicts.items())]
            lines.append("keep-alive requests sent again on a new connection: %d; hand scales to "
                         "zero while nobody led (not checked): %d" % (
                             c.get("keepalive_stale_retries", 0),
                             c.get("hand zero while nobody led (not checked)", 0)))
        if self.checker and self.metrics:
            lines.append("transitions seen: %d to proxy, %d to serve, %d wakes; checker sweeps %d "
                         "(%d failed); metric epochs audited %d" % (
                             len(self.modes.to_proxy), len(self.modes.to_serve), len(self.wakes.wakes),
                             self.checker.sweeps, self.checker.failed_sweeps, self.metrics.epochs_audited))
            lines.append("disagreements seen (each resolved within the bound unless reported): %s" % (
                ", ".join("%s %d (longest %.1fs)" % (k, n, m) for k, (n, m) in
                          sorted(self.checker.disagreements().items())) or "none"))
        lines.append("violations: %s" % tally(v["invariant"] + (" (xfail)" if v["xfail"] else "")
                                              for v in self.violations.items))
        return lines

    def write_failures(self):
        if not self.traffic:
            return
        path = os.path.join(self.workdir, "soak-failures.txt")
        with open(path, "w") as f:
            for x in self.traffic.stats.failures:
                f.write("t=%.3f-%.3f %s %s :%d%s %s -> %s\n" % (
                    self.rel(x.t_start), self.rel(x.t_end), x.app, x.kind, x.port, x.path, x.detail,
                    x.verdict))
            f.write("\nholdfast's documented answers:\n")
            for (t, app, status, body) in self.traffic.stats.answers:
                f.write("t=%.3f %s %d %s\n" % (self.rel(t), app, status, body))
            f.write("\nstatus.mode transitions (as the ElastiService watch showed them):\n")
            for (t, key, reason) in self.modes.to_proxy:
                f.write("t=%.3f %s -> proxy (%s)\n" % (self.rel(t), key, reason))
            for (t, key) in self.modes.to_serve:
                f.write("t=%.3f %s proxy -> serve\n" % (self.rel(t), key))
            f.write("\nDeployments scaled up from 0 not by the soak (wakes, restores):\n")
            for (t, key) in self.wakes.wakes:
                f.write("t=%.3f %s\n" % (self.rel(t), key))
            f.write("\noperations:\n")
            for op in self.oplog.ops:
                f.write(self.oplog.fmt(op) + "\n")


def run_soak(seed, seconds, workdir, xfail=(), out=print, log_level="info"):
    """Runs one soak; returns (ok, the Soak). Every process it starts is stopped before return."""
    soak = Soak(seed, seconds, workdir, xfail, out, log_level)
    try:
        soak.setup()
        soak.run()
    except Exception as e:  # noqa: BLE001 - reported as the run's failure, after the teardown
        import traceback
        soak.say("the soak itself failed: %s" % traceback.format_exc())
        soak.violations.add("soak", "-", time.monotonic(), "the soak could not run: %r" % (e,),
                            timeline_key="")
    finally:
        soak.teardown()
    soak.write_failures()
    for line in soak.summary():
        soak.say(line)
    failing = soak.violations.failing()
    if failing:
        soak.say("FAILED: %d violation(s) (seed %d; replay: SOAK_SEED=%d SOAK_SECONDS=%d). "
                 "Report: %s" % (len(failing), seed, seed, seconds, soak.report_path))
    else:
        soak.say("passed (seed %d)" % seed)
    return not failing, soak


def parse_xfail(text):
    names = [x.strip() for x in (text or "").split(",") if x.strip()]
    unknown = [n for n in names if n not in KNOWN_INVARIANTS]
    if unknown:
        raise ValueError("SOAK_XFAIL: unknown invariant(s) %s; known: %s" % (
            unknown, ", ".join(KNOWN_INVARIANTS)))
    return names


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED") or 0) or None)
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("SOAK_SECONDS", "180")))
    ap.add_argument("--workdir", default=None,
                    help="kept after the run (default: a new temporary directory)")
    ap.add_argument("--xfail", default=os.environ.get("SOAK_XFAIL", ""),
                    help="invariants to report without failing, comma-separated")
    ap.add_argument("--log-level", default=os.environ.get("SOAK_LOG_LEVEL", "info"))
    a = ap.parse_args(argv)
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1, 1 << 31)
    workdir = a.workdir or tempfile.mkdtemp(prefix="holdfast-soak-%d-" % seed)
    if not is_sanitized(holdfast_bin()):
        print("note: %s is not an ASan+UBSan build (set HOLDFAST_BIN)" % holdfast_bin(), file=sys.stderr)
    ok, _ = run_soak(seed, a.seconds, workdir, parse_xfail(a.xfail), log_level=a.log_level)
    print("work directory (logs, report): %s" % workdir)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
