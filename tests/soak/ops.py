"""ops: the random operations of the soak, as a mixin of soak.Soak.

Two kinds, each drawn by its own seeded generator so a seed replays the same sequence:
  - operations on apps (app_ops, one at a time, every 0.3-1.2 s): scale by hand (to 0 and up, and
    short scales to zero), trigger values, spec edits, Service port changes, deleting and
    creating ElastiServices, Services and whole namespaces;
  - cluster-wide disruptions (infra_ops, one at a time, every 4-10 s): API server outages (the
    kube-apiserver stopped and started again, or SIGSTOPped: README.md, "Disruptions"),
    Prometheus killed and restarted, holdfast replicas SIGTERMed or SIGKILLed (and replaced),
    resolver replicas added and removed.
Each records itself in the operation log, and opens the excuse windows the documentation gives
it (a failed request inside one is explained, see world.Excuses), and the disruption spans that
push the convergence bound.
"""
import time

from hftest.promfix import PromfixError
from world import (CONNECTION_LOST, DRAIN_TIMEOUT, HAND_ANNOTATION, MAX_APPS, METRIC,
                   PROXY_DELAY_MS, RESOLVER_NS, SHUTDOWN_DELAY, deploy_path, es_path, routed,
                   svc_path)


class Operations:
    def pick_app(self, need_es=None):
        apps = [a for a in self.apps_snapshot() if not a.gone and a.has_deploy]
        if need_es is not None:
            apps = [a for a in apps if a.has_es == need_es]
        return self.rng.choice(apps) if apps else None

    def hand_scale(self, app, n, kind="scale", detail=""):
        op = self.oplog.start(kind, app.key, detail or "replicas=%d" % n)
        code, _ = self.patch(deploy_path(app.ns, app.name), {
            "metadata": {"annotations": {HAND_ANNOTATION: str(op.seq)}}, "spec": {"replicas": n}})
        self.oplog.end(op, "ok" if code == 200 else "error %s" % code)
        return op, code == 200

    def excuse_hand_scale(self, app, n, start):
        """Pods removed by hand are gone at once (they exit on SIGTERM): requests in flight to
        them, and those kube-proxy still sends them before it applies the change, fail. At 0,
        the Service has no endpoint until holdfast's resolver slice is in place."""
        k = app.key
        if n > 0:
            self.excuses.add(k, "pods removed by hand", start,
                             until=lambda v: v["pods"].get(k, 0) <= n, due_from=start,
                             kinds=CONNECTION_LOST)
        else:
            self.excuses.add(k, "every pod removed by hand", start,
                             until=lambda v: v["pods"].get(k, 0) > 0 or any(
                                 e.get("addresses") for s in v["resolver"].get(k, [])
                                 for e in s.get("endpoints") or []),
                             due_from=start, kinds=CONNECTION_LOST)

    def op_scale(self):
        app = self.pick_app(need_es=True)
        if not app:
            return
        n = self.rng.choice((0, 0, 1, 2, 3))
        t = time.monotonic()
        op, ok = self.hand_scale(app, n)
        if ok:
            app.replicas = n
            self.excuse_hand_scale(app, n, t)
            if n == 0:
                self.track_hand_zero(app, t, op)

    def op_scale_blip(self):
        """A short hand scale to zero: 0, then back up after 0.3-1.8 s."""
        app = self.pick_app(need_es=True)
        if not app:
            return
        back = self.rng.choice((1, 2))
        pause = self.rng.uniform(0.3, 1.8)
        t = time.monotonic()
        op = self.oplog.start("scale_blip", app.key, "0 for %.1fs, then %d" % (pause, back))
        seq = op.seq
        code, _ = self.patch(deploy_path(app.ns, app.name), {
            "metadata": {"annotations": {HAND_ANNOTATION: "%d-0" % seq}}, "spec": {"replicas": 0}})
        if code != 200:
            self.oplog.end(op, "error %s" % code)
            return
        self.track_hand_zero(app, t, op)
        self.excuse_hand_scale(app, 0, t)
        time.sleep(pause)
        code, _ = self.patch(deploy_path(app.ns, app.name), {
            "metadata": {"annotations": {HAND_ANNOTATION: "%d-1" % seq}}, "spec": {"replicas": back}})
        app.replicas = back if code == 200 else 0
        self.oplog.end(op, "ok" if code == 200 else "back up failed: %s" % code)

    def track_hand_zero(self, app, t, op):
        if app.has_es and app.has_svc:
            with self.lock:
                self.hand_zero.append((t, app.key, op))

    def op_trigger(self):
        app = self.pick_app()
        if not app:
            return
        v = self.rng.choice((0, 0.5, 5, 20)) if app.load >= 1 else self.rng.choice((5, 20, 0))
        op = self.oplog.start("trigger", app.key, "%s=%g" % (METRIC, v))
        self.set_load(app, v)
        self.oplog.end(op)

    def op_spec(self):
        app = self.pick_app(need_es=True)
        if not app:
            return
        rng = self.rng
        what = rng.choice(("cooldownPeriod", "minTargetReplicas", "holdTimeoutSeconds",
                           "maxHeldConnections", "threshold", "probeResponse", "enabledPeriod"))
        s = app.spec
        patch = {}
        if what == "cooldownPeriod":
            s[what] = rng.randint(1, 5)
            patch[what] = s[what]
        elif what == "minTargetReplicas":
            s[what] = rng.choice((1, 2))
            patch[what] = s[what]
        elif what == "holdTimeoutSeconds":
            s[what] = rng.choice((120, 300, 600))
            patch[what] = s[what]
        elif what == "maxHeldConnections":
            s[what] = rng.choice((1000, 5000, 10000))
            patch[what] = s[what]
        elif what == "threshold":
            s["threshold"] = rng.choice(("1", "10"))
            patch = {"triggers": self.es_body(app)["spec"]["triggers"]}
        elif what == "probeResponse":
            s["probe"] = not s.get("probe")
            patch = {"probeResponse": self.es_body(app)["spec"].get("probeResponse")}
        else:
            choice = rng.choice(("open", "closed", None))
            if choice == "open":
                s["enabledPeriod"] = {"schedule": "* * * * *", "duration": "1h"}
            elif choice == "closed":
                hour = (time.gmtime().tm_hour + 6) % 24
                s["enabledPeriod"] = {"schedule": "0 %d * * *" % hour, "duration": "1m"}
            else:
                s.pop("enabledPeriod", None)
            patch = {"enabledPeriod": s.get("enabledPeriod")}
        shown = s["threshold"] if what == "threshold" else list(patch.values())[0]
        op = self.oplog.start("spec", app.key, "%s -> %s" % (what, shown))
        code, _ = self.patch(es_path(app.ns, app.name), {"spec": patch})
        self.oplog.end(op, "ok" if code == 200 else "error %s" % code)

    def op_svc_ports(self):
        app = self.pick_app()
        if not app or not app.has_svc:
            return
        rng = self.rng
        ports = list(app.ports)
        how = rng.choice(("renumber", "rename", "second"))
        if how == "renumber":
            n, p = ports[0]
            ports[0] = (n, 8081 if p == 80 else 80)
        elif how == "rename":
            n, p = ports[0]
            ports[0] = ("web" if n == "http" else "http", p)
        elif len(ports) == 1:
            ports.append(("admin", 9090))
        else:
            ports = ports[:1]
        op = self.oplog.start("svc_ports", app.key, "%s -> %s" % (app.ports, ports))
        t = time.monotonic()
        code, _ = self.patch(svc_path(app.ns, app.name),
                             {"spec": {"ports": [{"name": n, "port": p, "targetPort": 8080}
                                                 for n, p in ports]}})
        if code == 200:
            with app.lock:
                app.ports = ports
        self.oplog.end(op, "ok" if code == 200 else "error %s" % code)
        # kube-proxy moves its listeners PROXY_DELAY_MS later: connections to the old or new
        # number meanwhile are refused, as with a real kube-proxy
        # (a request held on a port the Service no longer has can wait for good: timeouts too).
        # A port added or renamed routes only once an EndpointSlice of the Service has it (the
        # EndpointSlice controller's, or holdfast's resolver slice): on the real cluster, while
        # the controller-manager is away after an API server restart, not for tens of seconds
        k, names = app.key, {n for n, _ in ports}
        soonest = time.monotonic() + PROXY_DELAY_MS / 1000.0 + 1.5 - self.excuses.grace
        self.excuses.add(k, "Service ports changed", t,
                         until=lambda v: time.monotonic() >= soonest and
                         names <= v["slice_ports"].get(k, set()),
                         due_from=t, kinds=CONNECTION_LOST + ("timeout",))

    def op_es_delete(self):
        app = self.pick_app(need_es=True)
        if not app:
            return
        view = self.checker.view if self.checker else None
        dep = (view or {}).get("deploy", {}).get(app.key)
        was_zero = bool(dep) and (dep.get("spec") or {}).get("replicas", 1) == 0
        t = time.monotonic()
        # documented (docs/kubernetes.md, Deletion): the resolver slices are deleted as the
        # target is scaled back up, so requests meanwhile find no endpoint; requests already
        # held go to the restored pod (a 503 "service was removed" is not excused)
        w = self.excuses.add(app.key, "ElastiService deleted", t,
                             kinds=CONNECTION_LOST + ("timeout",))
        app.es_window = w
        op = self.oplog.start("es_delete", app.key, "target at zero" if was_zero else "")
        code, _ = self.api("DELETE", es_path(app.ns, app.name))
        deleted = code in (200, 202)
        app.has_es = app.has_es and not deleted
        self.oplog.end(op, "ok" if deleted else "error %s" % code)
        if deleted:
            with self.lock:
                self.deletes.append([t, app.key, was_zero, None])
        else:
            self.excuses.close(w, time.monotonic())

    def op_es_create(self):
        app = self.pick_app(need_es=False)
        if not app:
            return
        op = self.oplog.start("es_create", app.key)
        t = time.monotonic()
        code, body = self.api("POST", es_path(app.ns), self.es_body(app))
        self.oplog.end(op, "ok" if code == 201 else "error %s %s" % (code, str(body)[:200]))
        if code == 201:
            app.has_es = True
            w = getattr(app, "es_window", None)
            if w is not None:
                k = app.key
                w.until = lambda v: self.checker.converged_at.get(k, 0) > t and routed(v, k)
                w.due_from = t

    def op_svc_delete(self):
        app = self.pick_app()
        if not app or not app.has_svc:
            return
        t = time.monotonic()
        app.svc_window = self.excuses.add(app.key, "Service deleted", t)
        with app.lock:
            app.has_svc = False
        op = self.oplog.start("svc_delete", app.key)
        code, _ = self.api("DELETE", svc_path(app.ns, app.name))
        self.oplog.end(op, "ok" if code in (200, 202) else "error %s" % code)
        if code not in (200, 202):
            with app.lock:
                app.has_svc = True
            self.excuses.close(app.svc_window, time.monotonic())

    def op_svc_create(self):
        apps = [a for a in self.apps_snapshot() if not a.gone and not a.has_svc]
        if not apps:
            return
        app = self.rng.choice(apps)
        op = self.oplog.start("svc_create", app.key, str(app.ports))
        t = time.monotonic()
        code, body = self.api("POST", svc_path(app.ns), self.svc_body(app))
        self.oplog.end(op, "ok" if code == 201 else "error %s %s" % (code, str(body)[:200]))
        if code == 201:
            with app.lock:
                app.cluster_ip = body["spec"]["clusterIP"]
                app.has_svc = True
            w = getattr(app, "svc_window", None)
            if w is not None:
                k = app.key
                # until it routes again: its pods' endpoints, or holdfast's slice for the new
                # Service (world.routed), it agrees, and the old Service's EndpointSlices are
                # gone (while they are there kube-proxy routes the new one by them, and their
                # removal can leave it without an endpoint for a moment: on the real cluster
                # the EndpointSlice controller replaced them 6 s after a re-creation, once the
                # controller-manager was back from an API server restart)
                w.until = lambda v: self.checker.converged_at.get(k, 0) > t and routed(v, k) and \
                    not v["stale"].get(k)
                w.due_from = t

    def op_ns_delete(self):
        namespaces = sorted({a.ns for a in self.apps_snapshot() if not a.gone})
        if len(namespaces) < 2:
            return
        ns = self.rng.choice(namespaces)
        t = time.monotonic()
        op = self.oplog.start("ns_delete", ns)
        code, _ = self.api("DELETE", "/api/v1/namespaces/" + ns)
        self.oplog.end(op, "ok" if code in (200, 202) else "error %s" % code)
        if code not in (200, 202):
            return
        for app in self.apps_snapshot():
            if app.ns == ns and not app.gone:
                with app.lock:
                    app.gone = True
                self.excuses.add(app.key, "namespace deleted", t)
                if app.has_es:
                    with self.lock:
                        self.deletes.append([t, app.key, None, None])

    def op_ns_create(self):
        live = [a for a in self.apps_snapshot() if not a.gone]
        if len(live) + 1 > MAX_APPS:
            return
        self.new_namespace(apps=min(2, MAX_APPS - len(live)))

    APP_OPS = (("op_scale", 6), ("op_scale_blip", 2), ("op_trigger", 5), ("op_spec", 4),
               ("op_svc_ports", 1.5), ("op_es_delete", 0.7), ("op_es_create", 1.5),
               ("op_svc_delete", 0.5), ("op_svc_create", 1.5), ("op_ns_delete", 0.25),
               ("op_ns_create", 0.5))

    def app_ops(self, until):
        names = [n for n, _ in self.APP_OPS]
        weights = [w for _, w in self.APP_OPS]
        while not self.stop_chaos.is_set() and time.monotonic() < until:
            name = self.rng.choices(names, weights)[0]
            try:
                getattr(self, name)()
            except Exception as e:  # noqa: BLE001 - an operation's failure is reported, not fatal
                self.say("operation %s failed: %r" % (name, e))
            self.check_pending(time.monotonic())
            self.stop_chaos.wait(self.rng.uniform(0.3, 1.2))

    # ------------------------------------------------------------------ cluster-wide disruptions

    def infra_outage(self):
        rng = self.infra_rng
        secs = rng.uniform(2, 5)
        # a refusing outage (kube-apiserver stopped and started again), or an API server that
        # accepts and answers nothing (SIGSTOPped)
        mode = rng.choice(("refuse", "stall"))
        op = self.oplog.start("api_outage", "api", "%.1fs %s" % (secs, mode))
        t = time.monotonic()
        if mode == "refuse":
            return self.real_api_stop(op, t, secs)
        # holdfast's informers come back after a jittered backoff that doubles up to the outage
        # length (200 ms, doubling): allow as much again, then the bound
        with self.lock:
            self.outages.append((t, t + 2 * secs + 3))
        self.disrupt(t, t + 2 * secs + 3, "API outage")
        try:
            self.sim.latency(int(secs * 1000) + 1, secs)  # the stall
        except OSError as e:
            self.oplog.end(op, "error %r" % e)
            return
        self.stop_all.wait(secs)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.api("GET", "/version")[0] != 200:
            time.sleep(0.2)
        self.oplog.end(op)

    def real_api_stop(self, op, t, secs):
        """The real cluster's refusing outage: kube-apiserver stopped (that alone takes seconds:
        it answers 429 while it shuts down, then every connection is closed and refused) and
        started again `secs` after the call, so the API is away longer than `secs`. Its
        informers' backoff counts from the time it was away; and the controller-manager acts
        again only later (its informers' own backoff, a lost leader lease: up to ~50 s,
        docs/test-cluster.md): pods are neither started nor removed, endpoints not updated,
        namespaces not emptied until then, which is what a user of a real cluster sees after
        an API server restart. Both push the bound, measured, not guessed: the Deployment
        controller acting on a canary again (RealCluster.wait_controllers)."""
        span = (t, t + 600, "API outage")  # until measured below
        with self.lock:
            self.outages.append(span[:2])
            self.disruptions.append(span)
        err = None
        try:
            self.sim.outage(secs)
            self.sim.wait_outage(timeout=120)
        except (OSError, AssertionError) as e:
            err = e
        back = time.monotonic()
        informers = back + (back - t) + 3
        with self.lock:
            # the API's own outage is known now; the disruption stays open until the
            # controllers are seen acting again (seed 11: closing it at the informers' end
            # judged a target woken while the ReplicaSet controller still could not act)
            self.outages[self.outages.index(span[:2])] = (t, informers)
        ctrl = None
        if err is None:
            try:
                self.sim.wait_controllers(timeout=120)
                ctrl = time.monotonic()
            except (OSError, AssertionError) as e:
                err = e
        end = max(informers, ctrl or time.monotonic())
        with self.lock:
            self.disruptions[self.disruptions.index(span)] = (t, end, "API outage")
        self.oplog.end(op, "away %.1fs, controllers acting again %s%s" % (
            back - t, "after %.1fs" % (ctrl - t) if ctrl else "not seen",
            "; error %r" % (err,) if err else ""))

    def infra_prometheus(self):
        rng = self.infra_rng
        down = rng.uniform(2, 6)
        keep = rng.random() < 0.5
        op = self.oplog.start("prom_restart", "prometheus", "down %.1fs, %s" % (
            down, "same TSDB" if keep else "fresh TSDB"))
        self.prom.kill()
        self.stop_all.wait(down)
        try:
            self.prom.start(keep_data=keep)
            self.oplog.end(op)
        except PromfixError as e:
            self.oplog.end(op, "restart failed: %s" % str(e)[:300])

    def pick_replica(self):
        live = [r for r in self.replicas_snapshot() if r.alive() and not r.signalled and r.ready]
        return self.infra_rng.choice(live) if live else None

    def infra_replica_stop(self, how, replace=True):
        """SIGTERM or SIGKILL a replica; then (replace) a new pod 0.5-3 s later, or the same pod's
        container restarted in place once the old process is gone (same identity and address)."""
        r = self.pick_replica()
        if not r:
            return
        rng = self.infra_rng
        leader = self.lease_holder() == r.pod
        in_place = replace and rng.random() < 0.5
        op = self.oplog.start("hf_" + how.lower(), r.name, "%s%s" % (
            "leader" if leader else "follower",
            ", restarted in place" if in_place else ", replaced" if replace else ", not replaced"))
        t = time.monotonic()
        if how == "KILL":
            # connections it held or relayed are lost with the process; kube-proxy sends it new
            # ones until the leader rewrites the resolver slices without it (a SIGKILLed leader:
            # once its Lease expires and another replica leads) or it listens again
            ip = r.ip
            # (on the real cluster its address stays on the node's bridge: the kernel refuses
            # what is sent to it)
            self.excuses.add(None, "holdfast replica %s SIGKILLed" % r.name, t,
                             until=lambda v: not any(ip in (e.get("addresses") or [])
                                                     for sl in v["resolver"].values() for s in sl
                                                     for e in s.get("endpoints") or [])
                             or any(x.ip == ip and x.ready and (x.started_at or 0) > t
                                    for x in self.replicas_snapshot()),
                             due_from=t, kinds=("reset", "closed", "truncated", "refused"))
            self.disrupt(t, t + (self.lease_bound if leader else 6), "%s SIGKILLed" % r.name)
        else:
            self.disrupt(t, t + 8, "%s SIGTERMed" % r.name)
        self.signal_replica(r, how)
        self.oplog.end(op)
        pause = rng.uniform(0.5, 3)
        if replace and not in_place:
            self.stop_all.wait(pause)
            self.start_replica()
        if how == "TERM":
            self.wait_exit(r, SHUTDOWN_DELAY + DRAIN_TIMEOUT + 15)
            # documented (docs/data-plane.md, Drain): what is still relayed when the drain timeout
            # ends is closed
            drain_end = r.signalled_at + SHUTDOWN_DELAY + DRAIN_TIMEOUT
            if r.exited_at >= drain_end - 0.5:
                self.excuses.add(None, "drain timeout of %s" % r.name, drain_end - 0.5,
                                 end=r.exited_at + 0.5, kinds=("reset", "closed", "truncated"))
        else:
            self.wait_exit(r, 5)
        if in_place:
            self.stop_all.wait(pause)
            t = time.monotonic()
            self.disrupt(t, t + 6, "%s restarted in place" % r.pod)
            self.start_replica(pod=r.pod, ip=r.ip)

    def infra_replicas(self):
        live = [r for r in self.replicas_snapshot() if r.alive() and not r.signalled]
        if len(live) < 3:
            op = self.oplog.start("hf_add", "hf-new", "%d -> %d replicas" % (len(live), len(live) + 1))
            t = time.monotonic()
            self.disrupt(t, t + 6, "replica added")
            r = self.start_replica()
            self.oplog.end(op, r.name)
        else:
            self.infra_replica_stop("TERM", replace=False)

    def lease_holder(self):
        code, body = self.api("GET", "/apis/coordination.k8s.io/v1/namespaces/%s/leases/holdfast-leader"
                              % RESOLVER_NS)
        return body.get("spec", {}).get("holderIdentity") if code == 200 else None

    INFRA_OPS = (("outage", 2), ("prometheus", 1.5), ("term", 2), ("kill", 1.5), ("replicas", 1.5))

    def infra_ops(self, until):
        table = self.INFRA_OPS
        names = [n for n, _ in table]
        weights = [w for _, w in table]
        self.stop_chaos.wait(self.infra_rng.uniform(3, 8))
        while not self.stop_chaos.is_set() and time.monotonic() < until:
            what = self.infra_rng.choices(names, weights)[0]
            try:
                if what == "outage":
                    self.infra_outage()
                elif what == "prometheus":
                    self.infra_prometheus()
                elif what == "term":
                    self.infra_replica_stop("TERM")
                elif what == "kill":
                    self.infra_replica_stop("KILL")
                else:
                    self.infra_replicas()
            except Exception as e:  # noqa: BLE001
                self.say("disruption %s failed: %r" % (what, e))
            self.stop_chaos.wait(self.infra_rng.uniform(4, 10))
