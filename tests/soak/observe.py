"""observe: what the soak watches while it runs, and the invariants it checks continuously.

- `Watcher`: a list-then-watch of one resource across all namespaces (the API's own watch, so
  no state in between is missed: every status write of every ElastiService, every change of every
  Deployment), reconnecting from the last resourceVersion after outages. Each event is kept with
  the time it arrived.
- `Checker`: every half second, lists ElastiServices, Deployments, Services and EndpointSlices
  and checks that each ElastiService agrees with the cluster: status.mode with its target's
  replicas, status.observedGeneration with metadata.generation, a resolver EndpointSlice exactly
  in proxy mode listing exactly the live resolver replicas, status.ports and the slice's ports
  with the Service's ports. A disagreement is normal while a change is in flight; one that lasts
  longer than the bound (counted from the latest operation that could explain it) is a
  violation.
- `MetricsAuditor`: scrapes every holdfast replica every two seconds: counters never go down
  within a process, two replicas never both say they lead, someone leads; and the transitions
  the API shows agree with the counters (see `audit_epoch`).
"""
import http.client
import json
import os
import ssl
import threading
import time
import urllib.parse

from hftest import promtext
from world import ES_API, HAND_ANNOTATION, SLICE_API


# ---------------------------------------------------------------- watch


def api_credentials(sim):
    """(TLS context, headers) for a client of the cluster's API: its admin client certificate
    (tests/hftest/realcluster.py)."""
    pki = sim.cluster.pki
    ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
    ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))
    return ctx, {}


class Watcher(threading.Thread):
    """List, then watch `path` (a collection across all namespaces) until stop(), calling
    on_event(arrival time, type, object) on this thread for every ADDED/MODIFIED/DELETED, the
    list's objects included as ADDED. After an error it watches again from the last
    resourceVersion (an API server started again answers an older resourceVersion with 410, and
    the watcher lists again)."""

    def __init__(self, sim, path, name, on_event=None):
        super().__init__(daemon=True, name="watch-" + name)
        self.sim = sim
        self.path = path
        self.on_event = on_event
        self.n_events = 0
        self.rv = None
        self.stop_ev = threading.Event()
        self.conn = None
        self.reconnects = 0
        self.last_error = None
        u = urllib.parse.urlsplit(sim.api_url)
        self.host, self.port = u.hostname, u.port
        self.ctx, self.auth = api_credentials(sim)

    def _get(self, query, timeout):
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
        conn.request("GET", self.path + "?" + query, headers=dict(self.auth, Accept="application/json"))
        return conn, conn.getresponse()

    def _record(self, etype, obj):
        self.n_events += 1
        self.on_event(time.monotonic(), etype, obj)

    def run(self):
        while not self.stop_ev.is_set():
            try:
                if self.rv is None:
                    conn, r = self._get("", 10)
                    body = json.loads(r.read())
                    conn.close()
                    if r.status != 200:
                        raise OSError("list: HTTP %d" % r.status)
                    for obj in body.get("items") or []:
                        self._record("ADDED", obj)
                    self.rv = body["metadata"]["resourceVersion"]
                q = urllib.parse.urlencode({"watch": "1", "resourceVersion": self.rv,
                                            "allowWatchBookmarks": "true", "timeoutSeconds": "30"})
                self.conn, r = self._get(q, 45)
                if r.status == 410:
                    self.rv = None  # expired: list again
                    raise OSError("watch: HTTP 410")
                if r.status != 200:
                    raise OSError("watch: HTTP %d" % r.status)
                while not self.stop_ev.is_set():
                    line = r.readline()
                    if not line:
                        break
                    ev = json.loads(line)
                    obj = ev.get("object") or {}
                    if ev.get("type") == "ERROR":
                        self.rv = None  # 410: list again
                        break
                    self.rv = (obj.get("metadata") or {}).get("resourceVersion", self.rv)
                    if ev.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                        self._record(ev["type"], obj)
            except (OSError, ValueError, http.client.HTTPException, KeyError) as e:
                self.reconnects += 1
                self.last_error = repr(e)
                self.stop_ev.wait(0.3)
            finally:
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None

    def stop(self):
        self.stop_ev.set()
        c = self.conn
        if c is not None and c.sock is not None:
            try:
                c.sock.shutdown(2)
            except OSError:
                pass
        self.join(5)

def uid_of(obj):
    return (obj.get("metadata") or {}).get("uid")


def key_of(obj):
    md = obj.get("metadata") or {}
    return "%s/%s" % (md.get("namespace"), md.get("name"))


class ModeHistory:
    """Per ElastiService (by uid), the sequence of status.mode values the API showed, from the
    ElastiService watch: [(arrival time, mode, ScaledToZero reason)]. A change to "proxy" is a
    scale-down (holdfast_scale_downs_total), "proxy" -> "serve" a serve switch."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_uid = {}   # uid -> list of (t, mode, reason)
        self.key_uid = {}  # "ns/name" -> latest uid
        self.to_proxy = []  # (t, key, reason)
        self.to_serve = []  # (t, key)
        self.deleted = []   # (t, key): the object removed from the API

    def on_event(self, t, etype, obj):
        uid = uid_of(obj)
        if not uid:
            return
        if etype == "DELETED":
            with self.lock:
                self.deleted.append((t, key_of(obj)))
            return
        st = obj.get("status") or {}
        mode = st.get("mode") or ""
        reason = None
        for c in st.get("conditions") or []:
            if c.get("type") == "ScaledToZero" and c.get("status") == "True":
                reason = c.get("reason")
        key = key_of(obj)
        with self.lock:
            self.key_uid[key] = uid
            hist = self.by_uid.setdefault(uid, [])
            prev = hist[-1][1] if hist else ""
            if hist and prev == mode:
                return
            hist.append((t, mode, reason))
            if mode == "proxy" and prev != "proxy":
                self.to_proxy.append((t, key, reason))
            elif mode == "serve" and prev == "proxy":
                self.to_serve.append((t, key))

    def deleted_after(self, key, t):
        """When the watch showed ElastiService `key` removed after time t, or None."""
        with self.lock:
            return next((x[0] for x in self.deleted if x[1] == key and x[0] > t), None)

    def proxy_between(self, key, t0, t1):
        """True when the ElastiService `key` was in proxy mode at some moment of [t0, t1]."""
        with self.lock:
            hist = list(self.by_uid.get(self.key_uid.get(key), []))
        m = ""
        for (tt, mode, _) in hist:
            if tt > t1:
                break
            if tt <= t0:
                m = mode
            elif mode == "proxy":
                return True
        return m == "proxy"

    def scale_downs_near(self, key, t, before, after):
        """holdfast's own scale-downs (ScaledToZero for a reason other than a hand) of `key`
        whose status arrived within [t-before, t+after]."""
        with self.lock:
            return [x for x in self.to_proxy if x[1] == key and t - before <= x[0] <= t + after
                    and x[2] != "ScaledToZeroByHand"]

    def count(self, which, t0, t1):
        return len(self.between(which, t0, t1))

    def between(self, which, t0, t1):
        with self.lock:
            lst = self.to_proxy if which == "proxy" else self.to_serve
            return [x for x in lst if t0 < x[0] <= t1]


class WakeHistory:
    """From the Deployment watch: spec.replicas going from 0 to more without the soak's hand
    annotation changing in the same write: holdfast's wakes (and its restores when an
    ElastiService is deleted at zero), what holdfast_scale_ups_total counts."""

    def __init__(self):
        self.lock = threading.Lock()
        self.last = {}  # uid -> (replicas, hand annotation)
        self.wakes = []  # (t, key)
        self.downs = []  # (t, key): spec.replicas going to 0 not by the soak's hand (holdfast's)

    def on_event(self, t, etype, obj):
        uid = uid_of(obj)
        if not uid or etype == "DELETED":
            return
        reps = (obj.get("spec") or {}).get("replicas", 1)
        hand = ((obj.get("metadata") or {}).get("annotations") or {}).get(HAND_ANNOTATION)
        with self.lock:
            prev = self.last.get(uid)
            self.last[uid] = (reps, hand)
            if prev and prev[0] == 0 and reps > 0 and prev[1] == hand:
                self.wakes.append((t, key_of(obj)))
            elif prev and prev[0] > 0 and reps == 0 and prev[1] == hand:
                self.downs.append((t, key_of(obj)))

    def count(self, t0, t1):
        with self.lock:
            return sum(1 for x in self.wakes if t0 < x[0] <= t1)

    def between(self, t0, t1):
        with self.lock:
            return [x for x in self.wakes if t0 < x[0] <= t1]

    def downs_between(self, key, t0, t1):
        """When the watch showed holdfast scale `key` to 0 within [t0, t1]."""
        with self.lock:
            return [x[0] for x in self.downs if x[1] == key and t0 <= x[0] <= t1]


# ---------------------------------------------------------------- convergence


class Violations:
    """Every invariant violation, with what is needed to understand it."""

    def __init__(self, oplog, seed, xfail, echo):
        self.lock = threading.Lock()
        self.items = []
        self.oplog = oplog
        self.seed = seed
        self.xfail = set(xfail)
        self.echo = echo
        self.seen = set()

    def add(self, invariant, obj, t, detail, dedup=None, timeline_key=None):
        """Records one violation (once per dedup key) and prints it at once."""
        with self.lock:
            if dedup is not None:
                if (invariant, dedup) in self.seen:
                    return
                self.seen.add((invariant, dedup))
            v = {"invariant": invariant, "object": obj, "t": self.oplog.rel(t), "detail": detail,
                 "xfail": invariant in self.xfail, "seed": self.seed,
                 "timeline": self.oplog.around(timeline_key if timeline_key is not None else obj, t)}
            self.items.append(v)
        self.echo(format_violation(v))

    def failing(self):
        with self.lock:
            return [v for v in self.items if not v["xfail"]]


def format_violation(v):
    lines = ["VIOLATION %s%s: %s at t=%.2fs (seed %d)" % (
        v["invariant"], " (xfail)" if v["xfail"] else "", v["object"], v["t"], v["seed"]),
        "  " + v["detail"].replace("\n", "\n  ")]
    if v["timeline"]:
        lines.append("  operations around it (t in seconds since the start):")
        lines += ["  " + x for x in v["timeline"]]
    return "\n".join(lines)


# Which operations can legitimately keep each invariant from holding for a while: the bound is
# counted from the latest of them (and from the end of cluster-wide disruptions).
RELEVANT = {
    "mode": {"scale", "scale_blip", "es_create", "svc_create", "deploy_create", "ns_create"},
    "observed_generation": {"es_create", "ns_create"},  # each generation is timed on its own
    "resolver_slice": {"scale", "scale_blip", "es_create", "svc_create", "svc_delete", "svc_ports",
                       "ns_create"},
    "ports": {"svc_ports", "svc_create", "es_create", "ns_create"},
}


class Checker(threading.Thread):
    """The convergence invariants (see the module comment), every `interval` seconds."""

    def __init__(self, soak, interval=0.5):
        super().__init__(daemon=True, name="checker")
        self.soak = soak
        self.interval = interval
        self.stop_ev = threading.Event()
        self.streaks = {}      # (app key, invariant) -> (first seen, detail)
        self.gens = {}         # (uid) -> list of (first seen, generation)
        self.view = None       # the latest successful sweep
        self.sweeps = 0
        self.failed_sweeps = 0
        self.converged_at = {}  # app key -> time of the latest sweep in which it fully agreed
        self.history = []      # [app key, invariant, start, end or None]: every disagreement

    def run(self):
        while not self.stop_ev.is_set():
            t = time.monotonic()
            try:
                self.sweep(t)
            except Exception as e:  # noqa: BLE001 - the API may be down: try again
                self.failed_sweeps += 1
                self.soak.debug("checker sweep failed: %r" % (e,))
            self.stop_ev.wait(max(0.05, self.interval - (time.monotonic() - t)))

    def stop(self):
        self.stop_ev.set()
        self.join(10)

    def _list(self, path):
        code, body = self.soak.sim.request("GET", path, timeout=5)
        if code != 200:
            raise OSError("GET %s: %s" % (path, code))
        return body["items"]

    def sweep(self, t):
        sim_es = self._list(ES_API + "/elastiservices")
        deps = self._list("/apis/apps/v1/deployments")
        svcs = self._list("/api/v1/services")
        slices = self._list(SLICE_API + "/endpointslices")
        t_seen = time.monotonic()
        # pods: ready pod endpoints in the EndpointSlice controller's slices of a Service name;
        # own_pods: those in slices owned by the Service now there; stale: slices of a deleted
        # predecessor of the same name, which kube-proxy (going by the service-name label)
        # routes the new Service to until the garbage collector removes them (on the real
        # cluster that waits for the controller-manager after an API server restart)
        # slice_ports: the port names in the Service's own slices and holdfast's (kube-proxy
        # routes a Service port only to endpoints of a slice that has it)
        view = {"t": t_seen, "es": {}, "deploy": {}, "svc": {}, "resolver": {}, "pods": {},
                "own_pods": {}, "stale": {}, "slice_ports": {}}
        for o in sim_es:
            view["es"][key_of(o)] = o
        for o in deps:
            view["deploy"][key_of(o)] = o
        for o in svcs:
            view["svc"][key_of(o)] = o
        for s in slices:
            md = s["metadata"]
            labels = md.get("labels") or {}
            k = "%s/%s" % (md["namespace"], labels.get("kubernetes.io/service-name"))
            if labels.get("endpointslice.kubernetes.io/managed-by") == "holdfast":
                view["resolver"].setdefault(k, []).append(s)
                view["slice_ports"].setdefault(k, set()).update(
                    (p.get("name") or "") for p in s.get("ports") or [])
            elif labels.get("endpointslice.kubernetes.io/managed-by") == \
                    "endpointslice-controller.k8s.io":
                n = sum(1 for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready"))
                view["pods"][k] = view["pods"].get(k, 0) + n
                owners = [o.get("uid") for o in md.get("ownerReferences") or [] if o.get("kind") == "Service"]
                svc_uid = uid_of(view["svc"].get(k) or {})
                if owners and owners[0] != svc_uid:
                    view["stale"][k] = view["stale"].get(k, 0) + 1
                else:
                    view["own_pods"][k] = view["own_pods"].get(k, 0) + n
                    view["slice_ports"].setdefault(k, set()).update(
                        (p.get("name") or "") for p in s.get("ports") or [])
        self.view = view
        self.sweeps += 1
        self.soak.excuses.update(view, t_seen)
        self.check(view, t_seen)

    # ---- the invariants

    def check(self, view, now):
        soak = self.soak
        live_ips = sorted(r.ip for r in soak.listed_replicas())
        for app in soak.apps_snapshot():
            k = app.key
            es = view["es"].get(k)
            svc = view["svc"].get(k)
            dep = view["deploy"].get(k)
            if app.gone or not es or not svc or not dep or es["metadata"].get("deletionTimestamp"):
                for inv in RELEVANT:
                    self._streak(app, inv, None, now)
                continue
            st = es.get("status") or {}
            mode = st.get("mode") or ""
            reps = (dep.get("spec") or {}).get("replicas", 1)
            ready = (dep.get("status") or {}).get("readyReplicas", 0)
            problems = {}
            # status.mode agrees with the target's replicas: proxy exactly at 0
            if mode not in ("proxy", "serve") or (mode == "proxy") != (reps == 0):
                problems["mode"] = "status.mode %r but the Deployment has spec.replicas %d " \
                                   "(%d ready)" % (mode, reps, ready)
            # the resolver slice exists exactly in proxy mode, listing the live resolvers
            rs = view["resolver"].get(k, [])
            ips = sorted(a for s in rs for e in s.get("endpoints") or []
                         for a in e.get("addresses") or [])
            if mode == "proxy" and not rs:
                problems["resolver_slice"] = "proxy mode and no resolver EndpointSlice"
            elif mode != "proxy" and rs:
                problems["resolver_slice"] = "mode %r and a resolver EndpointSlice is left: %s" % (
                    mode, [s["metadata"]["name"] for s in rs])
            elif rs and ips != live_ips:
                problems["resolver_slice"] = "the resolver EndpointSlice lists %s; the ready " \
                                             "resolver replicas are %s" % (ips, live_ips)
            # status.ports and the slice's ports follow the Service's ports
            svc_ports = sorted((p.get("name") or "", p["port"], p.get("protocol", "TCP"))
                               for p in (svc.get("spec") or {}).get("ports") or [])
            st_ports = st.get("ports") or []
            if st_ports:
                have = sorted((p.get("name") or "", p.get("port"), p.get("protocol", "TCP"))
                              for p in st_ports)
                if have != svc_ports:
                    problems["ports"] = "status.ports %s; the Service's ports are %s" % (have, svc_ports)
            if rs and "ports" not in problems:
                by_name = {(p.get("name") or ""): p.get("resolverPort") for p in st_ports}
                for s in rs:
                    sp = sorted(((p.get("name") or ""), p.get("port")) for p in s.get("ports") or [])
                    want = sorted((n, by_name.get(n)) for n, _, _ in svc_ports)
                    if sp != want:
                        problems["ports"] = "resolver EndpointSlice %s has ports %s; the Service's " \
                                            "port names with status.ports give %s" % (
                                                s["metadata"]["name"], sp, want)
            # observedGeneration: every generation acknowledged within the bound
            uid = es["metadata"]["uid"]
            gen = es["metadata"].get("generation", 0)
            hist = self.gens.setdefault(uid, [])
            if not hist or hist[-1][1] != gen:
                hist.append((now, gen))
            og = st.get("observedGeneration")
            due = [(tg, g) for (tg, g) in hist if now > soak.deadline(tg)]
            if due and (og is None or og < due[-1][1]):
                tg, g = due[-1]
                problems["observed_generation"] = \
                    "status.observedGeneration %s; metadata.generation %d was seen first at " \
                    "t=%.1fs (%.1fs ago; now %d)" % (og, g, soak.oplog.rel(tg), now - tg, gen)
            for inv in RELEVANT:
                self._streak(app, inv, problems.get(inv), now)
            if not problems:
                self.converged_at[k] = now

    def disagreements(self):
        """{invariant: (how many times an app disagreed, the longest disagreement in seconds)}."""
        out = {}
        now = time.monotonic()
        for (_, inv, start, end) in list(self.history):
            n, longest = out.get(inv, (0, 0.0))
            out[inv] = (n + 1, max(longest, (end or now) - start))
        return out

    def disagreed(self, key, inv, t):
        """True when app `key` disagreed with invariant `inv` at time t."""
        return any(h[0] == key and h[1] == inv and h[2] <= t and (h[3] is None or t <= h[3])
                   for h in list(self.history))

    def _streak(self, app, inv, problem, now):
        k = (app.key, inv)
        if problem is None:
            if self.streaks.pop(k, None) is not None:
                for h in reversed(self.history):
                    if h[0] == app.key and h[1] == inv and h[3] is None:
                        h[3] = now
                        break
            return
        if k not in self.streaks:
            self.streaks[k] = (now, problem)
            self.history.append([app.key, inv, now, None])
        first = self.streaks[k][0]
        if inv == "observed_generation":
            over = True  # already timed from the generation's arrival
        else:
            last_op = self.soak.oplog.last_on(app.key, RELEVANT[inv]) or 0
            over = now > self.soak.deadline(max(first, last_op))
        if over:
            self.soak.violations.add(
                inv, app.key, now,
                "%s (seen since t=%.1fs; the bound is %.0fs after the last operation that could "
                "explain it, pushed past API outages and stopped replicas)" % (
                    problem, self.soak.oplog.rel(first), self.soak.bound),
                dedup=(app.key, first))


# ---------------------------------------------------------------- metrics


COUNTERS = ("holdfast_scale_downs_total", "holdfast_serve_switches_total", "holdfast_scale_ups_total")


def parse_metrics(text):
    """{name: value} of the counters and holdfast_leader, those present."""
    got = {n: promtext.value(text, n) for n in COUNTERS + ("holdfast_leader",)}
    return {n: v for n, v in got.items() if v is not None}


class MetricsAuditor(threading.Thread):
    """Scrapes every live replica every `interval` seconds (a sweep) and checks the metric
    invariants. An epoch is a run of consecutive complete sweeps with the same set of live
    processes and no API outage; at its end, audit_epoch compares its counters with the
    transitions the API showed."""

    def __init__(self, soak, interval=2.0, slack=3.0):
        super().__init__(daemon=True, name="metrics")
        self.soak = soak
        self.interval = interval
        self.slack = slack  # the longest a counted transition takes to show in a watch
        # the longest a transition can show in a watch before the answer to its write (which is
        # when it is counted) comes: the slow-write-answers operation delays answers <= 300 ms
        self.lead = 1.0
        self.stop_ev = threading.Event()
        self.last = {}       # replica name -> metrics of its latest scrape
        self.epoch = []      # sweeps of the current epoch: (t_start, t_end, {name: metrics})
        self.epochs_audited = 0
        self.both_leading = 0
        self.no_leader_since = None
        self.lock = threading.Lock()
        self.leader_log = []  # (sweep start, sweep end, leaders)

    def run(self):
        while not self.stop_ev.is_set():
            t = time.monotonic()
            self.sweep()
            self.stop_ev.wait(max(0.1, self.interval - (time.monotonic() - t)))

    def stop(self):
        self.stop_ev.set()
        self.join(15)

    def sweep(self):
        soak = self.soak
        t0 = time.monotonic()
        got = {}
        complete = True
        names = []
        for r in soak.replicas_snapshot():
            # a draining replica (SIGTERMed) still wakes services (docs/data-plane.md, Drain):
            # its counters count until it exits
            if not r.alive() or r.signalled == "KILL":
                continue
            names.append(r.name)
            try:
                got[r.name] = parse_metrics(r.hf.metrics_text())
            except OSError:
                complete = False
        t1 = time.monotonic()
        for name, m in got.items():
            old = self.last.get(name)
            if old:
                for c in COUNTERS:
                    if m.get(c, 0) < old.get(c, 0):
                        soak.violations.add("metrics", name, t1, "%s went down from %g to %g within one "
                                            "process" % (c, old[c], m.get(c, 0)), dedup=(name, c),
                                            timeline_key="")
            self.last[name] = m
        # leadership: never two at once (seen in two sweeps in a row), and never nobody for long
        leaders = sorted(n for n, m in got.items() if m.get("holdfast_leader") == 1)
        with self.lock:
            self.leader_log.append((t0, t1, tuple(leaders)))
        if len(leaders) > 1:
            self.both_leading += 1
            if self.both_leading >= 2:
                soak.violations.add("leader", ",".join(leaders), t1,
                                    "%d replicas say holdfast_leader 1 in two sweeps in a row" %
                                    len(leaders), dedup=tuple(leaders), timeline_key="")
        else:
            self.both_leading = 0
        if leaders or not complete or soak.in_disruption(t1):
            self.no_leader_since = None
        elif got:
            if self.no_leader_since is None:
                self.no_leader_since = t1
            elif t1 - self.no_leader_since > soak.lease_bound:
                soak.violations.add("leader", "-", t1, "no replica has led for %.0fs (live: %s)" % (
                    t1 - self.no_leader_since, sorted(got)), dedup=("none", self.no_leader_since),
                    timeline_key="")
        # epochs
        quiet = complete and not soak.outage_between(t0 - self.slack, t1)
        if self.epoch and (not quiet or set(self.epoch[-1][2]) != set(got)
                           or set(got) != set(names)):
            self.close_epoch(end_reason_time=t0)
        if quiet and got and set(got) == set(names):
            self.epoch.append((t0, t1, got))

    def led_throughout(self, t0, t1):
        """True when one replica led from before t0 to after t1: the sweeps around and between
        them all name it alone, and the soak did not stop it meanwhile."""
        with self.lock:
            log = list(self.leader_log)
        before = [x for x in log if x[1] <= t0]
        after = [x for x in log if x[0] >= t1]
        if not before or not after:
            return False
        span = [before[-1]] + [x for x in log if t0 < x[0] and x[1] < t1] + [after[0]]
        names = {x[2] for x in span}
        if len(names) != 1 or len(next(iter(names))) != 1:
            return False
        name = next(iter(names))[0]
        r = next((r for r in self.soak.replicas_snapshot() if r.name == name), None)
        return r is not None and (r.signalled_at is None or r.signalled_at > after[0][1])

    def close_epoch(self, end_reason_time=None):
        ep, self.epoch = self.epoch, []
        if len(ep) >= 2:
            self.audit_epoch(ep, end_reason_time)

    def audit_epoch(self, ep, end_reason_time):
        """For the first sweep A and last usable sweep B of an epoch, each counter's increase
        summed over the replicas (delta) and the transitions the watches showed (W):
          lower bound: W(A_end + slack, B_start] <= delta (a transition shown then was counted
                       after A was scraped and before B was);
          upper bound: delta <= W(A_start - lead, B_end + slack] (a counted transition shows
                       within the slack; and it may show up to `lead` before it is counted: a
                       counter moves when the answer to the write comes, and an API server can
                       send the watch event first),
                       with B a sweep at least `slack` before the epoch ended (a process killed
                       right after counting may never have written the status).
        scale downs: status.mode becoming proxy; serve switches: proxy -> serve; scale ups: a
        Deployment going from 0 replicas to more not by the soak's hand."""
        soak = self.soak
        a = ep[0]
        end = end_reason_time if end_reason_time is not None else time.monotonic()
        usable = [s for s in ep if s[1] + self.slack <= end]
        if len(usable) < 2:
            return
        b = usable[-1]
        self.epochs_audited += 1
        hist = soak.modes
        wakes = soak.wakes
        shown = {
            "holdfast_scale_downs_total": lambda x, y: hist.between("proxy", x, y),
            "holdfast_serve_switches_total": lambda x, y: hist.between("serve", x, y),
            "holdfast_scale_ups_total": lambda x, y: wakes.between(x, y),
        }
        for c in COUNTERS:
            delta = sum(b[2][n].get(c, 0) - a[2][n].get(c, 0) for n in b[2])
            seen = shown[c](a[0] - self.lead, b[1] + self.slack)
            lo = len(shown[c](a[1] + self.slack, b[0]))
            hi = len(seen)
            soak.debug("metrics epoch t=%.1f-%.1f %s: counted %g, shown %d..%d" % (
                soak.oplog.rel(a[1]), soak.oplog.rel(b[0]), c, delta, lo, hi))
            if not lo <= delta <= hi:
                soak.violations.add(
                    "metrics", c, b[1],
                    "between t=%.1fs and t=%.1fs the replicas %s counted %g in %s; the API showed "
                    "between %d and %d such transitions: %s" % (
                        soak.oplog.rel(a[1]), soak.oplog.rel(b[0]), sorted(b[2]), delta, c, lo, hi,
                        ["%s at t=%.1fs" % (x[1], soak.oplog.rel(x[0])) for x in seen]),
                    dedup=(c, a[0]), timeline_key="")
