"""The control loops of kube-controller-manager that holdfast's behaviour depends on:

- Deployment, StatefulSet and Argo Rollout controllers: keep spec.replicas pods, roll templates,
  keep status (replicas, readyReplicas, availableReplicas, observedGeneration, conditions) as the
  real controllers do, including ReplicaFailure/FailedCreate when a quota refuses a pod.
- EndpointSlice controller: one managed slice per selector Service.
- Garbage collector (ownerReferences; background, foreground and orphan propagation).
- Namespace controller (deletes a terminating namespace's content, then the namespace).
- ResourceQuota status.

Pods are created directly by the workload (no ReplicaSet objects); see docs/kubesim.md.

All loops run in one thread that wakes on every store change and at least every 200 ms."""
import hashlib
import json
import logging
import threading
import time

from .errors import ApiError
from .selectors import map_selector_match
from .util import controller_of, deep, now_rfc3339, owner_ref

log = logging.getLogger("kubesim.controllers")

SLICE_MANAGER = "endpointslice-controller.k8s.io"


def template_hash(template):
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def pod_ready(pod):
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def pod_active(pod):
    return not pod["metadata"].get("deletionTimestamp") and \
        (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def _condition(conds, ctype, status, reason, message):
    """Set a condition the way controllers do: lastTransitionTime changes only with status."""
    t = now_rfc3339()
    for c in conds:
        if c["type"] == ctype:
            if c.get("status") != status:
                c["lastTransitionTime"] = t
            if (c.get("status"), c.get("reason"), c.get("message")) != (status, reason, message):
                c["lastUpdateTime"] = t
            c.update(status=status, reason=reason, message=message)
            return
    conds.append({"type": ctype, "status": status, "lastUpdateTime": t, "lastTransitionTime": t,
                  "reason": reason, "message": message})


def _resolve_int_or_percent(v, total, round_up):
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.endswith("%"):
        n = total * int(v[:-1]) / 100.0
        return int(-(-n // 1)) if round_up else int(n)
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


class Controllers:
    def __init__(self, store, registry, node_name):
        self.store = store
        self.registry = registry
        self.node = node_name
        self.stopping = False
        self.thread = None
        self.failures = {}          # workload uid -> (refusal message, monotonic time of next try)
        self.progress = {}          # workload uid -> (signature, monotonic time of last progress)
        self.R = lambda g, v, p: registry.lookup(g, v, p)

    def start(self):
        self.thread = threading.Thread(target=self._run, name="controllers", daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping = True
        with self.store.lock:
            self.store.changed.notify_all()
        if self.thread:
            self.thread.join(5)

    def _run(self):
        last_rv = None
        last_full = 0.0
        while not self.stopping:
            with self.store.lock:
                if self.store.rv == last_rv and time.monotonic() - last_full < 0.2:
                    self.store.changed.wait(0.2)
                last_rv = self.store.rv
            if self.stopping:
                return
            last_full = time.monotonic()
            for step in (self.namespaces, self.garbage_collect, self.workloads, self.endpoint_slices,
                         self.quotas):
                try:
                    step()
                except Exception:
                    log.exception("controller step %s failed", step.__name__)

    # ------------------------------------------------------------------ events

    def event(self, obj, etype, reason, message, component):
        """Record a core/v1 Event about obj, aggregating repeats into count."""
        ev_res = self.R("", "v1", "events")
        md = obj["metadata"]
        ns = md.get("namespace") or "default"
        t = now_rfc3339()
        for ev in self.store.list_raw(ev_res, ns)[0]:
            io = ev.get("involvedObject") or {}
            if io.get("uid") == md["uid"] and ev.get("reason") == reason and ev.get("message") == message:
                def bump(e):
                    e["count"] = e.get("count", 1) + 1
                    e["lastTimestamp"] = t
                self.store.mutate(ev_res, ns, ev["metadata"]["name"], bump)
                return
        try:
            self.store.create(ev_res, {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": "%s.%x" % (md["name"], int(time.time() * 1e9)), "namespace": ns},
                "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": md["name"],
                                   "namespace": md.get("namespace"), "uid": md["uid"],
                                   "resourceVersion": md.get("resourceVersion")},
                "reason": reason, "message": message, "type": etype, "count": 1,
                "source": {"component": component}, "firstTimestamp": t, "lastTimestamp": t,
                "reportingComponent": component, "reportingInstance": ""}, ns)
        except ApiError:
            pass

    # ------------------------------------------------------------------ namespaces

    def namespaces(self):
        ns_res = self.R("", "v1", "namespaces")
        for ns in self.store.list_raw(ns_res)[0]:
            if not ns["metadata"].get("deletionTimestamp"):
                continue
            name = ns["metadata"]["name"]
            remaining = 0
            for r in self.registry.all():
                if not r.namespaced or r.group == "events.k8s.io":
                    continue
                for o in self.store.list_raw(r, name)[0]:
                    remaining += 1
                    if not o["metadata"].get("deletionTimestamp"):
                        try:
                            self.store.delete(r, name, o["metadata"]["name"])
                        except ApiError:
                            pass
            if remaining == 0:
                with self.store.lock:
                    cur = self.store.peek(ns_res, None, name)
                    if cur is not None:
                        obj = deep(cur)
                        obj["metadata"]["resourceVersion"] = self.store._next_rv()
                        obj["spec"]["finalizers"] = []
                        self.store._remove(ns_res, obj)

    # ------------------------------------------------------------------ garbage collector

    def garbage_collect(self):
        store = self.store
        resources = [r for r in self.registry.all() if r.group != "events.k8s.io"]
        with store.lock:
            snapshot = [(r, o) for r in resources for o in store.list_raw(r)[0]]
        dependents = {}
        for r, o in snapshot:
            for ref in o["metadata"].get("ownerReferences") or []:
                dependents.setdefault(ref.get("uid"), []).append((r, o))
        for r, o in snapshot:
            md = o["metadata"]
            refs = md.get("ownerReferences") or []
            if refs and not md.get("deletionTimestamp"):
                alive = [ref for ref in refs if store.uid_exists(ref.get("uid"))]
                if not alive:
                    try:
                        store.delete(r, md.get("namespace"), md["name"])
                    except ApiError:
                        pass
                elif len(alive) != len(refs):
                    store.mutate(r, md.get("namespace"), md["name"],
                                 lambda x: x["metadata"].__setitem__("ownerReferences", alive))
            fins = md.get("finalizers") or []
            if md.get("deletionTimestamp") and ("orphan" in fins or "foregroundDeletion" in fins):
                deps = dependents.get(md["uid"], [])
                if "orphan" in fins:
                    for dr, d in deps:
                        def drop(x, uid=md["uid"]):
                            x["metadata"]["ownerReferences"] = [ref for ref in x["metadata"].get("ownerReferences")
                                                                or [] if ref.get("uid") != uid]
                            if not x["metadata"]["ownerReferences"]:
                                del x["metadata"]["ownerReferences"]
                        store.mutate(dr, d["metadata"].get("namespace"), d["metadata"]["name"], drop)
                    self._drop_finalizer(r, o, "orphan")
                else:
                    live = [(dr, d) for dr, d in deps if store.peek(dr, d["metadata"].get("namespace"),
                                                                    d["metadata"]["name"]) is not None]
                    for dr, d in live:
                        if not d["metadata"].get("deletionTimestamp"):
                            try:
                                store.delete(dr, d["metadata"].get("namespace"), d["metadata"]["name"],
                                             propagation="Foreground")
                            except ApiError:
                                pass
                    if not live:
                        self._drop_finalizer(r, o, "foregroundDeletion")

    def _drop_finalizer(self, res, obj, fin):
        def f(x):
            x["metadata"]["finalizers"] = [y for y in x["metadata"].get("finalizers") or [] if y != fin]
        self.store.mutate(res, obj["metadata"].get("namespace"), obj["metadata"]["name"], f)

    # ------------------------------------------------------------------ workloads

    def workloads(self):
        pods_res = self.R("", "v1", "pods")
        all_pods = self.store.list_raw(pods_res)[0]
        by_owner = {}
        for p in all_pods:
            ref = controller_of(p)
            if ref:
                by_owner.setdefault(ref.get("uid"), []).append(p)
        for kind, res in (("Deployment", self.R("apps", "v1", "deployments")),
                          ("StatefulSet", self.R("apps", "v1", "statefulsets")),
                          ("Rollout", self.R("argoproj.io", "v1alpha1", "rollouts"))):
            if res is None:
                continue
            for w in self.store.list_raw(res)[0]:
                if w["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    pods = by_owner.get(w["metadata"]["uid"], [])
                    if kind == "StatefulSet":
                        self._statefulset(res, pods_res, w, pods)
                    else:
                        self._replicated(res, pods_res, w, pods, kind)
                except Exception:
                    log.exception("reconciling %s %s/%s", kind, w["metadata"].get("namespace"), w["metadata"]["name"])

    def _new_pod(self, w, name, labels, generate=False):
        tmpl = deep((w.get("spec") or {}).get("template") or {})
        tmd = tmpl.get("metadata") or {}
        md = {"namespace": w["metadata"]["namespace"], "labels": dict(tmd.get("labels") or {}, **labels),
              "ownerReferences": [owner_ref(w)]}
        if tmd.get("annotations"):
            md["annotations"] = tmd["annotations"]
        if generate:
            md["generateName"] = name
        else:
            md["name"] = name
        return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": tmpl.get("spec") or {}}

    def _create_pod(self, pods_res, pod):
        try:
            self.store.create(pods_res, pod)
            return None
        except ApiError as e:
            return e.message

    def _delete_pod(self, pods_res, pod):
        try:
            self.store.delete(pods_res, pod["metadata"]["namespace"], pod["metadata"]["name"])
        except ApiError:
            pass

    def _replicated(self, res, pods_res, w, pods, kind):
        """Deployment and Rollout: replace pods whose template hash is stale, keep the count."""
        spec = w.get("spec") or {}
        ns, name = w["metadata"]["namespace"], w["metadata"]["name"]
        replicas = spec.get("replicas", 1) if spec.get("replicas") is not None else 1
        hash_label = "pod-template-hash" if kind == "Deployment" else "rollouts-pod-template-hash"
        h = template_hash(spec.get("template") or {})
        active = [p for p in pods if pod_active(p)]
        new = [p for p in active if (p["metadata"].get("labels") or {}).get(hash_label) == h]
        old = [p for p in active if p not in new]
        failure = None
        uid = w["metadata"]["uid"]
        backoff = self.failures.get(uid)
        if len(new) < replicas and backoff and time.monotonic() < backoff[1]:
            failure = backoff[0]          # a refused create is retried after a backoff, as the real one
        elif len(new) < replicas:
            for _ in range(replicas - len(new)):
                pod = self._new_pod(w, "%s-%s-" % (name, h), {hash_label: h}, generate=True)
                failure = self._create_pod(pods_res, pod)
                if failure:
                    self.failures[uid] = (failure, time.monotonic() + 1.0)
                    self.event(w, "Warning", "FailedCreate", "Error creating: " + failure,
                               "replicaset-controller" if kind == "Deployment" else "rollouts-controller")
                    break
            else:
                self.failures.pop(uid, None)
        else:
            self.failures.pop(uid, None)
        if len(new) > replicas:
            surplus = sorted(new, key=lambda p: (pod_ready(p), p["metadata"]["creationTimestamp"]))
            for p in surplus[:len(new) - replicas]:
                self._delete_pod(pods_res, p)
            new = surplus[len(new) - replicas:]
        ready_new = sum(1 for p in new if pod_ready(p))
        keep_old = max(0, replicas - ready_new)
        if len(old) > keep_old:
            for p in sorted(old, key=pod_ready)[:len(old) - keep_old]:
                self._delete_pod(pods_res, p)
        # Status, from the pods as they are now.
        pods_now = [p for p in self.store.list_raw(pods_res, ns)[0]
                    if (controller_of(p) or {}).get("uid") == w["metadata"]["uid"] and pod_active(p)]
        ready = sum(1 for p in pods_now if pod_ready(p))
        updated = sum(1 for p in pods_now if (p["metadata"].get("labels") or {}).get(hash_label) == h)
        available = ready
        gen = w["metadata"].get("generation", 1)
        rs_name = "%s-%s" % (name, h)
        complete = updated == replicas and len(pods_now) == replicas and available == replicas
        sig = (len(pods_now), ready, updated, replicas, gen)
        prev = self.progress.get(w["metadata"]["uid"])
        if prev is None or prev[0] != sig:
            self.progress[w["metadata"]["uid"]] = (sig, time.monotonic())
            stalled = False
        else:
            stalled = time.monotonic() - prev[1] > spec.get("progressDeadlineSeconds", 600)

        def set_status(obj):
            st = obj.setdefault("status", {})
            conds = st.setdefault("conditions", [])
            if kind == "Deployment":
                max_unavail = _resolve_int_or_percent(((spec.get("strategy") or {}).get("rollingUpdate") or {})
                                                      .get("maxUnavailable", "25%"), replicas, False)
                for k, v in (("replicas", len(pods_now)), ("updatedReplicas", updated), ("readyReplicas", ready),
                             ("availableReplicas", available),
                             ("unavailableReplicas", max(0, replicas - available))):
                    if v:
                        st[k] = v
                    else:
                        st.pop(k, None)
                st["observedGeneration"] = gen
                if available >= replicas - max_unavail:
                    _condition(conds, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
                else:
                    _condition(conds, "Available", "False", "MinimumReplicasUnavailable",
                               "Deployment does not have minimum availability.")
            else:
                st.update(replicas=len(pods_now), updatedReplicas=updated, readyReplicas=ready,
                          availableReplicas=available, HPAReplicas=len(pods_now),
                          selector=_selector_str(spec.get("selector")), observedGeneration=str(gen),
                          currentPodHash=h, stableRS=h)
                st["phase"] = "Healthy" if complete else ("Degraded" if failure or stalled else "Progressing")
                _condition(conds, "Available", "True" if available >= replicas else "False",
                           "AvailableReason", "Rollout has minimum availability" if available >= replicas
                           else "Rollout does not have minimum availability")
            if stalled and not complete:
                _condition(conds, "Progressing", "False", "ProgressDeadlineExceeded",
                           'ReplicaSet "%s" has timed out progressing.' % rs_name)
            elif complete:
                _condition(conds, "Progressing", "True", "NewReplicaSetAvailable",
                           'ReplicaSet "%s" has successfully progressed.' % rs_name)
            else:
                _condition(conds, "Progressing", "True", "ReplicaSetUpdated", 'ReplicaSet "%s" is progressing.' % rs_name)
            if failure:
                _condition(conds, "ReplicaFailure", "True", "FailedCreate", failure)
            else:
                st["conditions"] = [c for c in conds if c["type"] != "ReplicaFailure"]
            if kind != "Deployment":
                _condition(st["conditions"], "Healthy", "True" if complete else "False",
                           "RolloutHealthy" if complete else "RolloutHealthyNot",
                           "Rollout is healthy" if complete else "Rollout is not healthy")
        self.store.mutate(res, ns, name, set_status, subresource="status")

    def _statefulset(self, res, pods_res, w, pods):
        spec = w.get("spec") or {}
        ns, name = w["metadata"]["namespace"], w["metadata"]["name"]
        replicas = spec.get("replicas", 1)
        rev = "%s-%s" % (name, template_hash(spec.get("template") or {}))
        parallel = spec.get("podManagementPolicy") == "Parallel"
        by_ord = {}
        for p in pods:
            suffix = p["metadata"]["name"][len(name) + 1:]
            if suffix.isdigit():
                by_ord[int(suffix)] = p
        terminating = [p for p in pods if p["metadata"].get("deletionTimestamp")]
        failure = None
        backoff = self.failures.get(w["metadata"]["uid"])
        if backoff and time.monotonic() < backoff[1]:
            replicas_to_create = 0
        else:
            replicas_to_create = replicas
        # Scale up in ordinal order; OrderedReady waits for each pod to be Ready.
        for i in range(replicas_to_create):
            p = by_ord.get(i)
            if p is None:
                pod = self._new_pod(w, "%s-%d" % (name, i), {
                    "controller-revision-hash": rev, "statefulset.kubernetes.io/pod-name": "%s-%d" % (name, i),
                    "apps.kubernetes.io/pod-index": str(i)})
                failure = self._create_pod(pods_res, pod)
                if failure or not parallel:
                    break
            elif not parallel and (p["metadata"].get("deletionTimestamp") or not pod_ready(p)):
                break
        # Scale down from the highest ordinal, one at a time unless Parallel.
        extra = sorted((o for o in by_ord if o >= replicas), reverse=True)
        if extra and (parallel or not terminating):
            for o in extra if parallel else extra[:1]:
                if not by_ord[o]["metadata"].get("deletionTimestamp"):
                    self._delete_pod(pods_res, by_ord[o])
        # Rolling update: replace the highest-ordinal stale pod once everything is ready.
        if not extra and not terminating and all(o in by_ord and pod_ready(by_ord[o]) for o in range(replicas)):
            stale = [o for o in range(replicas)
                     if (by_ord[o]["metadata"].get("labels") or {}).get("controller-revision-hash") != rev]
            if stale:
                self._delete_pod(pods_res, by_ord[max(stale)])
        if failure:
            self.failures[w["metadata"]["uid"]] = (failure, time.monotonic() + 1.0)
            self.event(w, "Warning", "FailedCreate", "create Pod %s-%d in StatefulSet %s failed error: %s"
                       % (name, len(by_ord), name, failure), "statefulset-controller")
        pods_now = [p for p in self.store.list_raw(pods_res, ns)[0]
                    if (controller_of(p) or {}).get("uid") == w["metadata"]["uid"]]
        active = [p for p in pods_now if pod_active(p)]
        ready = sum(1 for p in active if pod_ready(p))
        updated = sum(1 for p in active if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == rev)

        def set_status(obj):
            st = obj.setdefault("status", {})
            st["replicas"] = len(active)
            st["availableReplicas"] = ready
            for k, v in (("readyReplicas", ready), ("currentReplicas", updated), ("updatedReplicas", updated)):
                if v:
                    st[k] = v
                else:
                    st.pop(k, None)
            st["observedGeneration"] = w["metadata"].get("generation", 1)
            st["currentRevision"] = rev
            st["updateRevision"] = rev
            st["collisionCount"] = 0
        self.store.mutate(res, ns, name, set_status, subresource="status")

    # ------------------------------------------------------------------ EndpointSlices

    def endpoint_slices(self):
        svc_res = self.R("", "v1", "services")
        pods_res = self.R("", "v1", "pods")
        es_res = self.R("discovery.k8s.io", "v1", "endpointslices")
        services = self.store.list_raw(svc_res)[0]
        pods = self.store.list_raw(pods_res)[0]
        slices = self.store.list_raw(es_res, None, [("endpointslice.kubernetes.io/managed-by", "=", [SLICE_MANAGER])])[0]
        by_svc = {}
        for s in slices:
            key = (s["metadata"]["namespace"], (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name"))
            by_svc.setdefault(key, []).append(s)
        for svc in services:
            md, spec = svc["metadata"], svc.get("spec") or {}
            key = (md["namespace"], md["name"])
            existing = by_svc.pop(key, [])
            if not spec.get("selector") or spec.get("type") == "ExternalName" or md.get("deletionTimestamp"):
                for s in existing:
                    self._delete_slice(es_res, s)
                continue
            desired = self._desired_slices(svc, [p for p in pods if p["metadata"]["namespace"] == md["namespace"]])
            for i, (ports, endpoints) in enumerate(desired):
                body = {"addressType": "IPv4", "endpoints": endpoints if endpoints else None}
                if ports:
                    body["ports"] = ports
                labels = dict(md.get("labels") or {})
                labels.pop("service.kubernetes.io/headless", None)
                labels.update({"kubernetes.io/service-name": md["name"],
                               "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER})
                if spec.get("clusterIP") == "None":
                    labels["service.kubernetes.io/headless"] = ""
                if i < len(existing):
                    cur = existing[i]

                    def upd(x, body=body, labels=labels):
                        x.pop("ports", None)
                        x.update(deep(body))
                        x["metadata"]["labels"] = labels
                    self.store.mutate(es_res, md["namespace"], cur["metadata"]["name"], upd)
                else:
                    obj = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                           "metadata": {"generateName": md["name"] + "-", "namespace": md["namespace"],
                                        "labels": labels, "ownerReferences": [owner_ref(svc)]}}
                    obj.update(deep(body))
                    try:
                        self.store.create(es_res, obj)
                    except ApiError:
                        pass
            for s in existing[len(desired):]:
                self._delete_slice(es_res, s)
        for stale in by_svc.values():   # slices of Services that are gone (GC also removes them)
            for s in stale:
                self._delete_slice(es_res, s)

    def _delete_slice(self, es_res, s):
        try:
            self.store.delete(es_res, s["metadata"]["namespace"], s["metadata"]["name"])
        except ApiError:
            pass

    def _desired_slices(self, svc, pods):
        """[(ports, endpoints)], one entry per distinct resolved port set (usually one)."""
        spec = svc["spec"]
        publish_all = spec.get("publishNotReadyAddresses", False)
        groups = {}
        for p in sorted(pods, key=lambda p: p["metadata"]["name"]):
            st = p.get("status") or {}
            if not map_selector_match(spec["selector"], p["metadata"].get("labels")) or not st.get("podIP"):
                continue
            if st.get("phase") in ("Succeeded", "Failed"):
                continue
            ports = []
            for sp in spec.get("ports") or []:
                tp = sp.get("targetPort", sp.get("port"))
                num = tp if isinstance(tp, int) else _named_port(p, tp, sp.get("protocol", "TCP"))
                if num is None:
                    continue
                ports.append({"name": sp.get("name", ""), "protocol": sp.get("protocol", "TCP"), "port": num})
                if sp.get("appProtocol"):
                    ports[-1]["appProtocol"] = sp["appProtocol"]
            terminating = bool(p["metadata"].get("deletionTimestamp"))
            ready = pod_ready(p)
            ep = {"addresses": [st["podIP"]],
                  "conditions": {"ready": (ready and not terminating) or publish_all,
                                 "serving": ready or publish_all, "terminating": terminating},
                  "targetRef": {"kind": "Pod", "namespace": p["metadata"]["namespace"], "name": p["metadata"]["name"],
                                "uid": p["metadata"]["uid"]}}
            if (p.get("spec") or {}).get("nodeName"):
                ep["nodeName"] = p["spec"]["nodeName"]
            groups.setdefault(json.dumps(ports, sort_keys=True), (ports, []))[1].append(ep)
        if not groups:
            return [([], [])]
        return [groups[k] for k in sorted(groups)]

    # ------------------------------------------------------------------ quota

    def quotas(self):
        q_res = self.R("", "v1", "resourcequotas")
        pods_res = self.R("", "v1", "pods")
        for q in self.store.list_raw(q_res)[0]:
            ns = q["metadata"]["namespace"]
            hard = (q.get("spec") or {}).get("hard") or {}
            used_pods = sum(1 for p in self.store.list_raw(pods_res, ns)[0]
                            if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))
            used = {k: str(used_pods) for k in hard if k in ("pods", "count/pods")}

            def f(x):
                x["status"] = {"hard": dict(hard), "used": used}
            self.store.mutate(q_res, ns, q["metadata"]["name"], f, subresource="status")


def _selector_str(sel):
    from .selectors import selector_string
    return selector_string(sel) if sel else ""


def _named_port(pod, name, protocol):
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == name and p.get("protocol", "TCP") == protocol:
                return p.get("containerPort")
    return None
