"""The control loops of kube-controller-manager that holdfast's behaviour depends on:

- Deployment, StatefulSet and Argo Rollout controllers: keep spec.replicas pods, roll templates,
  keep status (replicas, readyReplicas, availableReplicas, observedGeneration, conditions) as the
  real controllers do, including ReplicaFailure/FailedCreate when a quota refuses a pod.
- EndpointSlice controller: one managed slice per selector Service.
- Garbage collector (ownerReferences; background, foreground and orphan propagation).
- Namespace controller (deletes a terminating namespace's content, then the namespace).
- ResourceQuota status.
- Job controller (batch/v1): pods from the template with the job-tracking finalizer, status
  (active, ready, terminating, succeeded, failed, startTime, completionTime, completedIndexes),
  conditions as in 1.31 (SuccessCriteriaMet then Complete; FailureTarget then Failed with
  BackoffLimitExceeded or DeadlineExceeded, the terminal one once no pod is left running),
  backoffLimit (OnFailure: container restarts count), activeDeadlineSeconds, suspend, Indexed
  completion, and the TTL-after-finished controller (foreground deletion of the Job).
- Disruption controller: PodDisruptionBudget status from the selected pods.
- ClusterRole aggregation, and the ServiceAccount controller's "default" account per namespace.

Pods are created directly by the workload (no ReplicaSet objects).

All loops run in one thread that wakes on every store change and at least every 200 ms."""
import hashlib
import json
import logging
import threading
import time

from .errors import ApiError
from .selectors import labels_match, map_selector_match, selector_from_labelselector
from .util import controller_of, deep, now_rfc3339, owner_ref, parse_time

log = logging.getLogger("kubesim.controllers")

SLICE_MANAGER = "endpointslice-controller.k8s.io"
JOB_TRACKING = "batch.kubernetes.io/job-tracking"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
RBAC = "rbac.authorization.k8s.io"


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
        self.job_backoff = {}       # job uid -> monotonic time before which no pod is created
        self.job_finished = {}      # job uid -> wall-clock time the terminal condition was set
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
            for step in (self.namespaces, self.service_accounts, self.garbage_collect, self.workloads,
                         self.jobs, self.endpoint_slices, self.quotas, self.disruption_budgets,
                         self.cluster_role_aggregation):
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

    # ------------------------------------------------------------------ Jobs

    def jobs(self):
        jobs_res = self.R("batch", "v1", "jobs")
        pods_res = self.R("", "v1", "pods")
        live = {j["metadata"]["uid"]: j for j in self.store.list_raw(jobs_res)[0]
                if not j["metadata"].get("deletionTimestamp")}
        by_job = {}
        for p in self.store.list_raw(pods_res)[0]:
            ref = controller_of(p)
            if not ref and JOB_TRACKING in (p["metadata"].get("finalizers") or []):
                self._drop_finalizer(pods_res, p, JOB_TRACKING)     # orphaned (Job deleted with Orphan)
                continue
            if not ref or ref.get("kind") != "Job" or not str(ref.get("apiVersion", "")).startswith("batch/"):
                continue
            if ref.get("uid") in live:
                by_job.setdefault(ref["uid"], []).append(p)
            elif JOB_TRACKING in (p["metadata"].get("finalizers") or []):
                self._drop_finalizer(pods_res, p, JOB_TRACKING)     # its Job is gone or going
        for uid in list(self.job_backoff):
            if uid not in live:
                self.job_backoff.pop(uid, None)
                self.job_finished.pop(uid, None)
        for uid, j in live.items():
            try:
                self._job(jobs_res, pods_res, j, by_job.get(uid, []))
                self._job_ttl(jobs_res, j)
            except Exception:
                log.exception("reconciling Job %s/%s", j["metadata"]["namespace"], j["metadata"]["name"])

    def _job(self, jobs_res, pods_res, job, pods):
        md, spec = job["metadata"], job.get("spec") or {}
        ns, name, uid = md["namespace"], md["name"], md["uid"]
        st = deep(job.get("status") or {})
        conds = st.setdefault("conditions", [])
        finished = _cond_true(conds, "Complete") or _cond_true(conds, "Failed")
        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions")
        parallelism = spec.get("parallelism", 1) if spec.get("parallelism") is not None else 1
        backoff_limit = spec.get("backoffLimit", 6) if spec.get("backoffLimit") is not None else 6
        suspended = bool(spec.get("suspend"))
        # 1. count terminal pods that still carry the tracking finalizer (each exactly once)
        counted = []
        succeeded, failed = st.get("succeeded", 0), st.get("failed", 0)
        done_idx = _parse_indexes(st.get("completedIndexes", ""))
        new_failures = 0
        for p in pods:
            phase = (p.get("status") or {}).get("phase")
            if JOB_TRACKING not in (p["metadata"].get("finalizers") or []) or phase not in ("Succeeded", "Failed"):
                continue
            counted.append(p)
            if phase == "Succeeded":
                idx = _pod_index(p) if indexed else None
                if indexed and (idx is None or idx in done_idx or idx >= (completions or 0)):
                    continue
                if indexed:
                    done_idx.add(idx)
                succeeded += 1
            else:
                failed += 1
                new_failures += 1
        if new_failures:
            self.job_backoff[uid] = time.monotonic() + min(10.0, 2.0 ** (min(failed, 5) - 1))

        def alive(p):
            return (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        active = [p for p in pods if alive(p) and not p["metadata"].get("deletionTimestamp")]
        now = now_rfc3339()
        events = []
        if not finished:
            if st.get("startTime") is None and not suspended:
                st["startTime"] = now
            interim = next((c for c in conds if c["type"] in ("FailureTarget", "SuccessCriteriaMet")
                            and c.get("status") == "True"), None)
            if interim is None:
                restarts = sum(cs.get("restartCount", 0) for p in active
                               for cs in (p.get("status") or {}).get("containerStatuses") or [])
                on_failure = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") == "OnFailure"
                start = parse_time(st.get("startTime"))
                ads = spec.get("activeDeadlineSeconds")
                if failed > backoff_limit or \
                        (on_failure and (restarts > 0 if backoff_limit == 0 else restarts >= backoff_limit)):
                    interim = _job_condition(conds, "FailureTarget", "BackoffLimitExceeded",
                                             "Job has reached the specified backoff limit")
                    events.append(("Warning", "BackoffLimitExceeded", "Job has reached the specified backoff limit"))
                elif ads is not None and start is not None and not suspended and time.time() - start >= ads:
                    interim = _job_condition(conds, "FailureTarget", "DeadlineExceeded",
                                             "Job was active longer than specified deadline")
                    events.append(("Warning", "DeadlineExceeded", "Job was active longer than specified deadline"))
                elif (len(done_idx) >= completions if indexed else
                      succeeded >= completions if completions is not None else succeeded > 0 and not active):
                    interim = _job_condition(conds, "SuccessCriteriaMet", "CompletionsReached",
                                             "Reached expected number of succeeded pods")
            if interim is not None:
                for p in active:
                    self._delete_pod(pods_res, p)
            elif suspended:
                for p in active:
                    self._delete_pod(pods_res, p)
                if not _cond_true(conds, "Suspended"):
                    _job_condition(conds, "Suspended", "JobSuspended", "Job suspended")
                    events.append(("Normal", "Suspended", "Job suspended"))
            else:
                if _cond_true(conds, "Suspended"):
                    _job_condition(conds, "Suspended", "JobResumed", "Job resumed", "False")
                    st["startTime"] = now
                    events.append(("Normal", "Resumed", "Job resumed"))
                self._job_pods(pods_res, job, spec, active, succeeded, done_idx, completions, parallelism, indexed)
        # 2. status from the pods as they are now
        mine = [p for p in self.store.list_raw(pods_res, ns)[0] if (controller_of(p) or {}).get("uid") == uid]
        active = [p for p in mine if alive(p) and not p["metadata"].get("deletionTimestamp")]
        terminating = [p for p in mine if alive(p) and p["metadata"].get("deletionTimestamp")]
        if not finished:
            uncounted = [p for p in mine if not alive(p) and JOB_TRACKING in (p["metadata"].get("finalizers") or [])
                         and p not in counted]
            interim = next((c for c in conds if c["type"] in ("FailureTarget", "SuccessCriteriaMet")
                            and c.get("status") == "True"), None)
            if interim is not None and not active and not terminating and not uncounted:
                if interim["type"] == "SuccessCriteriaMet":
                    _job_condition(conds, "Complete", interim["reason"], interim["message"])
                    st["completionTime"] = now
                    events.append(("Normal", "Completed", "Job completed"))
                else:
                    _job_condition(conds, "Failed", interim["reason"], interim["message"])
                self.job_finished[uid] = time.time()
        for k, v in (("active", len(active)), ("succeeded", succeeded), ("failed", failed)):
            if v:
                st[k] = v
            else:
                st.pop(k, None)
        st["ready"] = sum(1 for p in active if pod_ready(p))
        st["terminating"] = len(terminating)
        st["uncountedTerminatedPods"] = {}
        if indexed and done_idx:
            st["completedIndexes"] = _format_indexes(done_idx)
        if not conds:
            st.pop("conditions", None)

        def set_status(o):
            o["status"] = st
        with self.store.lock:
            if self.store.mutate(self.R("batch", "v1", "jobs"), ns, name, set_status, subresource="status") is None:
                return
            for p in counted:
                self._drop_finalizer(pods_res, p, JOB_TRACKING)
        for etype, reason, msg in events:
            self.event(job, etype, reason, msg, "job-controller")

    def _job_pods(self, pods_res, job, spec, active, succeeded, done_idx, completions, parallelism, indexed):
        """Create the missing pods (after a failure, once its backoff has passed); delete extras."""
        uid = job["metadata"]["uid"]
        if indexed:
            running = {_pod_index(p) for p in active}
            todo = [i for i in range(completions) if i not in done_idx and i not in running]
            want = max(0, min(parallelism, completions - len(done_idx)))
            create = todo[:max(0, want - len(active))]
        else:
            if completions is None:
                want = len(active) if succeeded > 0 else parallelism
            else:
                want = max(0, min(parallelism, completions - succeeded))
            create = [None] * max(0, want - len(active))
        if len(active) > want:
            extra = sorted(active, key=lambda p: (pod_ready(p), p["metadata"]["creationTimestamp"]))
            for p in extra[:len(active) - want]:
                self._delete_pod(pods_res, p)
        if not create or time.monotonic() < self.job_backoff.get(uid, 0):
            return
        for idx in create:
            try:
                pod, _ = self.store.create(pods_res, self._job_pod(job, spec, idx))
            except ApiError as e:
                self.job_backoff[uid] = time.monotonic() + 1.0
                self.event(job, "Warning", "FailedCreate", "Error creating: " + e.message, "job-controller")
                return
            self.event(job, "Normal", "SuccessfulCreate", "Created pod: %s" % pod["metadata"]["name"],
                       "job-controller")

    def _job_pod(self, job, spec, idx):
        name = job["metadata"]["name"]
        tmpl = deep(spec.get("template") or {})
        tmd = tmpl.get("metadata") or {}
        md = {"generateName": "%s-" % name if idx is None else "%s-%d-" % (name, idx),
              "namespace": job["metadata"]["namespace"], "labels": dict(tmd.get("labels") or {}),
              "ownerReferences": [owner_ref(job)], "finalizers": [JOB_TRACKING]}
        if tmd.get("annotations"):
            md["annotations"] = dict(tmd["annotations"])
        pspec = tmpl.get("spec") or {}
        if idx is not None:
            md["labels"][INDEX_KEY] = str(idx)
            md.setdefault("annotations", {})[INDEX_KEY] = str(idx)
            pspec.setdefault("hostname", "%s-%d" % (name, idx))
            for c in pspec.get("containers") or []:
                env = c.setdefault("env", [])
                if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in env):
                    env.insert(0, {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                        "apiVersion": "v1", "fieldPath": "metadata.annotations['%s']" % INDEX_KEY}}})
        return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": pspec}

    def _job_ttl(self, jobs_res, job):
        """TTL-after-finished controller: delete a finished Job (foreground: its pods first)."""
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        conds = (job.get("status") or {}).get("conditions") or []
        fin = next((c for c in conds if c["type"] in ("Complete", "Failed") and c.get("status") == "True"), None)
        if ttl is None or fin is None:
            return
        at = self.job_finished.get(job["metadata"]["uid"]) or parse_time(fin.get("lastTransitionTime"))
        if at is not None and time.time() >= at + ttl:
            try:
                self.store.delete(jobs_res, job["metadata"]["namespace"], job["metadata"]["name"],
                                  propagation="Foreground")
            except ApiError:
                pass

    # ------------------------------------------------------------------ PodDisruptionBudgets

    def disruption_budgets(self):
        pdb_res = self.R("policy", "v1", "poddisruptionbudgets")
        pods_res = self.R("", "v1", "pods")
        for pdb in self.store.list_raw(pdb_res)[0]:
            md, spec = pdb["metadata"], pdb.get("spec") or {}
            ns = md["namespace"]
            sel = spec.get("selector")
            pods = []
            if sel is not None:
                reqs = selector_from_labelselector(sel)
                pods = [p for p in self.store.list_raw(pods_res, ns)[0]
                        if labels_match(reqs, p["metadata"].get("labels"))]
            healthy = sum(1 for p in pods if not p["metadata"].get("deletionTimestamp") and pod_ready(p))
            error = None
            min_av, max_un = spec.get("minAvailable"), spec.get("maxUnavailable")
            desired, expected = 0, 0
            if isinstance(min_av, int):
                desired, expected = min_av, len(pods)
            elif min_av is not None or max_un is not None:
                expected, error = self._expected_scale(pods)
                if error is None:
                    if max_un is not None:
                        desired = max(0, expected - _resolve_int_or_percent(max_un, expected, True))
                    else:
                        desired = _resolve_int_or_percent(min_av, expected, True)
            gen = md.get("generation", 1)

            def f(o, healthy=healthy, desired=desired, expected=expected, error=error, gen=gen):
                st = deep(o.get("status") or {})
                conds = st.get("conditions") or []
                allowed = 0 if error else max(0, healthy - desired)
                st.update(observedGeneration=gen, disruptionsAllowed=allowed, currentHealthy=healthy,
                          desiredHealthy=desired, expectedPods=expected)
                if error:
                    cond = ("False", "SyncFailed", error)
                elif allowed > 0:
                    cond = ("True", "SufficientPods", "")
                else:
                    cond = ("False", "InsufficientPods", "")
                old = next((c for c in conds if c.get("type") == "DisruptionAllowed"), None)
                ltt = old["lastTransitionTime"] if old and old.get("status") == cond[0] else now_rfc3339()
                st["conditions"] = [{"type": "DisruptionAllowed", "status": cond[0], "observedGeneration": gen,
                                     "lastTransitionTime": ltt, "reason": cond[1], "message": cond[2]}]
                o["status"] = st
            self.store.mutate(pdb_res, ns, md["name"], f, subresource="status")

    def _expected_scale(self, pods):
        """Sum of spec.replicas of the selected pods' controllers (each once), as the disruption
        controller's getExpectedScale; an error when a pod has no scalable controller."""
        seen, total = set(), 0
        for p in pods:
            ref = controller_of(p)
            if ref is None:
                return 0, 'found no controller ref for pod "%s"' % p["metadata"]["name"]
            if ref.get("uid") in seen:
                continue
            seen.add(ref.get("uid"))
            res = self.registry.by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
            owner = self.store.peek(res, p["metadata"]["namespace"], ref.get("name")) if res is not None else None
            if res is None or not res.scale or owner is None:
                return 0, 'found no controllers for pod "%s"' % p["metadata"]["name"]
            path = res.scale.get("specReplicasPath", ".spec.replicas").lstrip(".").split(".")
            v = owner
            for part in path:
                v = v.get(part) if isinstance(v, dict) else None
            total += v if isinstance(v, int) else 0
        return total, None

    # ------------------------------------------------------------------ RBAC, ServiceAccounts

    def cluster_role_aggregation(self):
        """ClusterRoles with an aggregationRule get the rules of the ClusterRoles it selects."""
        cr_res = self.R(RBAC, "v1", "clusterroles")
        roles = self.store.list_raw(cr_res)[0]
        for cr in roles:
            sels = (cr.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
            if not sels:
                continue
            rules = []
            for other in roles:
                if other is cr:
                    continue
                labels = other["metadata"].get("labels")
                if any(labels_match(selector_from_labelselector(s), labels) for s in sels):
                    for r in other.get("rules") or []:
                        if r not in rules:
                            rules.append(deep(r))
            if (cr.get("rules") or []) != rules:
                self.store.mutate(cr_res, None, cr["metadata"]["name"], lambda o, rules=rules: o.__setitem__("rules", rules))

    def service_accounts(self):
        for ns in self.store.list_raw(self.R("", "v1", "namespaces"))[0]:
            if not ns["metadata"].get("deletionTimestamp"):
                self.store.ensure_default_service_account(ns["metadata"]["name"])

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


def _cond_true(conds, ctype):
    return any(c.get("type") == ctype and c.get("status") == "True" for c in conds)


def _job_condition(conds, ctype, reason, message, status="True"):
    """Set a JobCondition (lastProbeTime and lastTransitionTime as the Job controller writes them)."""
    t = now_rfc3339()
    for c in conds:
        if c["type"] == ctype:
            if (c.get("status"), c.get("reason"), c.get("message")) != (status, reason, message):
                if c.get("status") != status:
                    c["lastTransitionTime"] = t
                c.update(status=status, reason=reason, message=message, lastProbeTime=t)
            return c
    c = {"type": ctype, "status": status, "lastProbeTime": t, "lastTransitionTime": t, "reason": reason,
         "message": message}
    conds.append(c)
    return c


def _pod_index(pod):
    v = (pod["metadata"].get("annotations") or {}).get(INDEX_KEY)
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _parse_indexes(s):
    out = set()
    for part in (s or "").split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            out.update(range(int(a), int(b) + 1))
        elif part.strip():
            out.add(int(part))
    return out


def _format_indexes(idx):
    """{1, 2, 3, 5, 7, 8} -> "1-3,5,7,8" (status.completedIndexes)."""
    runs = []
    for i in sorted(idx):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(str(a) if a == b else "%d,%d" % (a, b) if b == a + 1 else "%d-%d" % (a, b) for a, b in runs)


def _selector_str(sel):
    from .selectors import selector_string
    return selector_string(sel) if sel else ""


def _named_port(pod, name, protocol):
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == name and p.get("protocol", "TCP") == protocol:
                return p.get("containerPort")
    return None
