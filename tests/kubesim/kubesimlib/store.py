"""The object store: every object of the cluster, its resourceVersion history, and the watches.

Objects are stored in the storage version of their type and are never mutated in place once
stored (every write stores a new dict), so history entries and watch queues can share them.
Readers that want to modify an object take a copy (`get`) first.

Admission lives here too, so the controllers' writes go through the same rules as the API's:
namespace existence, defaulting, CRD schema processing, validation, quota, generation, uid,
finalizers and graceful pod deletion."""
import base64
import collections
import json
import threading
import time

from . import builtins, errors, schema
from .errors import ApiError
from .selectors import fields_match, labels_match
from .util import deep, new_uid, now_rfc3339, rand_suffix, valid_dns_subdomain

GENERATION_KINDS = {"Deployment", "StatefulSet", "HorizontalPodAutoscaler", "CustomResourceDefinition", "Job",
                    "PodDisruptionBudget"}
RBAC = "rbac.authorization.k8s.io"


class Watcher:
    """One open watch: a queue of (type, object) filled by the store under its lock."""

    def __init__(self, storage_key, namespace, label_reqs, field_reqs):
        self.storage_key = storage_key
        self.namespace = namespace
        self.label_reqs = label_reqs
        self.field_reqs = field_reqs
        self.queue = collections.deque()
        self.cond = threading.Condition()
        self.closed = False

    def matches(self, obj):
        md = obj["metadata"]
        if self.namespace and md.get("namespace") != self.namespace:
            return False
        return labels_match(self.label_reqs, md.get("labels")) and fields_match(self.field_reqs, obj)

    def offer(self, etype, obj, old):
        new_ok = self.matches(obj)
        old_ok = old is not None and self.matches(old)
        if etype == "MODIFIED":
            if new_ok and not old_ok:
                etype = "ADDED"
            elif old_ok and not new_ok:
                # The object left the selection: DELETED, carrying the previous state at the new RV.
                prev = dict(old)
                prev["metadata"] = dict(old["metadata"], resourceVersion=obj["metadata"]["resourceVersion"])
                obj, etype = prev, "DELETED"
            elif not new_ok:
                return
        elif not new_ok:
            return
        self.push(etype, obj)

    def push(self, etype, obj):
        with self.cond:
            self.queue.append((etype, obj))
            self.cond.notify()

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def next(self, timeout):
        """Next event, None on timeout, ("CLOSED", None) once closed."""
        with self.cond:
            end = time.monotonic() + timeout
            while not self.queue and not self.closed:
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)
            if self.queue:
                return self.queue.popleft()
            return ("CLOSED", None)


class Store:
    def __init__(self, registry, history_limit=100000):
        self.registry = registry
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # notified after every write
        self.rv = 1
        self.objs = collections.defaultdict(dict)      # storage_key -> {(ns, name): obj}
        self.uids = {}                                 # uid -> (storage_key, ns, name)
        self.history = collections.deque()             # (rv, type, storage_key, obj, old)
        self.history_limit = history_limit
        self.compacted_rv = 0                          # watches from an RV below this get 410
        self.watchers = set()
        self.subscribers = []                          # fn(type, storage_key, obj, old), under lock
        self.clusterip_allocator = None                # set by main: allocate(svc)/release(svc)
        self.crd_listener = None                       # fn(type, crd) keeps the registry current

    # ---------------------------------------------------------------- reads

    def peek(self, res, ns, name):
        """The stored object itself (read-only) or None."""
        with self.lock:
            return self.objs[res.storage_key].get((ns or "", name))

    def get(self, res, ns, name):
        obj = self.peek(res, ns, name)
        if obj is None:
            raise errors.not_found(res, name)
        return deep(obj)

    def list_raw(self, res, ns=None, label_reqs=None, field_reqs=None):
        """Stored objects (read-only), sorted by namespace/name, and the list resourceVersion."""
        with self.lock:
            items = []
            for (ons, _name), obj in self.objs[res.storage_key].items():
                if ns and ons != ns:
                    continue
                md = obj["metadata"]
                if label_reqs and not labels_match(label_reqs, md.get("labels")):
                    continue
                if field_reqs and not fields_match(field_reqs, obj):
                    continue
                items.append(obj)
            items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
            return items, str(self.rv)

    def list_page(self, res, ns, label_reqs, field_reqs, limit, cont):
        start = None
        if cont:
            try:
                tok = json.loads(base64.urlsafe_b64decode(cont.encode() + b"==="))
                start, tok_rv = tuple(tok["start"]), int(tok["rv"])
            except (ValueError, KeyError, TypeError):
                raise errors.bad_request("continue key is not valid: %s" % cont)
            if tok_rv < self.compacted_rv:
                raise errors.gone(
                    "The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter, or use the continue token "
                    "in this response to retrieve the remainder of the results. Continuing with the "
                    "provided token results in an inconsistent list - objects that were created, "
                    "modified, or deleted between the time the first chunk was returned and now may "
                    "show up in the list.")
        items, rv = self.list_raw(res, ns, label_reqs, field_reqs)
        if start is not None:
            items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start]
        next_tok, remaining = None, None
        if limit and len(items) > limit:
            last = items[limit - 1]["metadata"]
            next_tok = base64.urlsafe_b64encode(json.dumps(
                {"rv": int(rv), "start": [last.get("namespace", ""), last["name"]]}).encode()).decode().rstrip("=")
            remaining = len(items) - limit
            items = items[:limit]
        return items, rv, next_tok, remaining

    def uid_exists(self, uid):
        with self.lock:
            return uid in self.uids

    # ---------------------------------------------------------------- watch

    def watch(self, res, ns, label_reqs, field_reqs, resource_version, send_initial=None):
        """Open a watch. Raises 410 Expired if resource_version predates the compaction point."""
        w = Watcher(res.storage_key, ns, label_reqs, field_reqs)
        with self.lock:
            if resource_version in (None, "", "0"):
                for obj in self.list_raw(res, ns, label_reqs, field_reqs)[0]:
                    w.queue.append(("ADDED", obj))
            else:
                try:
                    since = int(resource_version)
                except ValueError:
                    raise errors.bad_request('invalid resource version "%s"' % resource_version)
                if since < self.compacted_rv:
                    raise errors.gone("too old resource version: %d (%d)" % (since, self.compacted_rv + 1))
                for erv, etype, skey, obj, old in self.history:
                    if erv > since and skey == res.storage_key:
                        w.offer(etype, obj, old)
            self.watchers.add(w)
        return w

    def unwatch(self, w):
        with self.lock:
            self.watchers.discard(w)

    def drop_watches(self):
        with self.lock:
            ws = list(self.watchers)
            self.watchers.clear()
        for w in ws:
            w.close()
        return len(ws)

    def compact(self):
        """Forget all history: any watch from an RV older than now gets 410."""
        with self.lock:
            self.history.clear()
            self.compacted_rv = self.rv
            return self.rv

    # ---------------------------------------------------------------- writes

    def _record(self, etype, res, obj, old):
        """Called under lock after a write: history, watches, subscribers."""
        rv = int(obj["metadata"]["resourceVersion"])
        self.history.append((rv, etype, res.storage_key, obj, old))
        while len(self.history) > self.history_limit:
            self.compacted_rv = self.history.popleft()[0]
        for w in list(self.watchers):
            if w.storage_key == res.storage_key:
                w.offer(etype, obj, old)
        for fn in self.subscribers:
            fn(etype, res.storage_key, obj, old)
        self.changed.notify_all()

    def _next_rv(self):
        self.rv += 1
        return str(self.rv)

    def _prepare(self, res, obj, old, version, field_validation):
        """Default, prune and validate. Returns warnings (strings)."""
        warnings = []
        if res.crd is not None:
            sch = res.schema(version or res.versions[0])
            errs, dropped = schema.process(obj, sch)
            if dropped:
                if field_validation == "Strict":
                    raise errors.bad_request('%s in version "%s" cannot be handled as a %s: strict decoding error: '
                                             % (res.kind, version or res.versions[0], res.kind) + ", ".join(
                        'unknown field "%s"' % d for d in dropped))
                if field_validation == "Warn":
                    warnings += ['unknown field "%s"' % d for d in dropped]
            if errs:
                raise errors.invalid(res.kind, res.group, obj["metadata"].get("name", ""), errs)
        else:
            builtins.default_object(res, obj, old)
            builtins.validate_object(res, obj, old)
        return warnings

    def _check_namespace(self, res, ns, name):
        if not res.namespaced:
            return
        nsobj = self.objs["/namespaces"].get(("", ns))
        if nsobj is None:
            raise ApiError(404, "NotFound", 'namespaces "%s" not found' % ns,
                           {"name": ns, "kind": "namespaces"})
        if nsobj["metadata"].get("deletionTimestamp"):
            raise ApiError(403, "Forbidden",
                           '%s "%s" is forbidden: unable to create new content in namespace %s because '
                           "it is being terminated" % (errors.qualified(res), name, ns),
                           {"name": name, "group": res.group, "kind": res.plural,
                            "causes": [{"reason": "NamespaceTerminating",
                                        "message": "namespace %s is being terminated" % ns,
                                        "field": "metadata.namespace"}]})

    def _check_quota(self, res, obj, ns):
        if res.storage_key != "/pods":
            return
        used = sum(1 for (ons, _), p in self.objs["/pods"].items()
                   if ons == ns and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))
        for (qns, qname), q in sorted(self.objs["/resourcequotas"].items()):
            if qns != ns:
                continue
            hard = (q.get("spec") or {}).get("hard") or {}
            for key in ("pods", "count/pods"):
                if key in hard:
                    try:
                        limit = int(str(hard[key]))
                    except ValueError:
                        continue
                    if used + 1 > limit:
                        raise ApiError(403, "Forbidden",
                                       'pods "%s" is forbidden: exceeded quota: %s, requested: %s=1, '
                                       "used: %s=%d, limited: %s=%d"
                                       % (obj["metadata"]["name"], qname, key, key, used, key, limit),
                                       {"name": obj["metadata"]["name"], "kind": "pods"})

    def create(self, res, obj, ns=None, version=None, field_validation="Ignore", dry_run=False):
        """Admit and store a new object. Returns (stored copy, warnings)."""
        obj = deep(obj)
        md = obj.get("metadata")
        if not isinstance(md, dict):
            md = obj["metadata"] = {}
        if res.namespaced:
            ns = ns or md.get("namespace") or "default"
            if md.get("namespace") and md["namespace"] != ns:
                raise errors.bad_request("the namespace of the provided object does not match the "
                                         "namespace sent on the request")
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
            ns = ""
        with self.lock:
            if res.storage_key == "/pods" and ("", ns) in self.objs["/namespaces"]:
                self._admit_service_account(obj, ns)   # admission, before the name is generated
            if not md.get("name") and md.get("generateName"):
                for _ in range(20):
                    cand = md["generateName"] + rand_suffix()
                    if (ns, cand) not in self.objs[res.storage_key]:
                        md["name"] = cand
                        break
            name = md.get("name")
            if not name:
                raise errors.invalid(res.kind, res.group, "", [("metadata.name", "FieldValueRequired",
                                     "Required value: name or generateName is required")])
            if res.group != RBAC and not valid_dns_subdomain(name):   # RBAC names: path segments
                raise errors.invalid(res.kind, res.group, name, [(
                    "metadata.name", "FieldValueInvalid",
                    'Invalid value: "%s": a lowercase RFC 1123 subdomain must consist of lower case '
                    "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                    "character" % name)])
            self._check_namespace(res, ns, name)
            if (ns, name) in self.objs[res.storage_key]:
                raise errors.already_exists(res, name)
            obj.setdefault("apiVersion", res.api_version(version))
            obj.setdefault("kind", res.kind)
            for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
                md.pop(k, None)
            if res.status and res.kind != "Node":
                obj.pop("status", None)      # PrepareForCreate: status is the controllers' to write
            md["uid"] = new_uid()            # before defaulting: a Job's generated selector uses it
            warnings = self._prepare(res, obj, None, version, field_validation)
            self._check_quota(res, obj, ns)
            if res.kind == "Service" and res.group == "" and self.clusterip_allocator:
                self.clusterip_allocator.allocate(obj)
            if res.kind == "CustomResourceDefinition":
                _crd_status(obj)
            md["creationTimestamp"] = now_rfc3339()
            if res.crd is not None or res.kind in GENERATION_KINDS:
                md["generation"] = 1
            if dry_run:
                md["resourceVersion"] = str(self.rv)
                return deep(obj), warnings
            md["resourceVersion"] = self._next_rv()
            self.objs[res.storage_key][(ns, name)] = obj
            self.uids[md["uid"]] = (res.storage_key, ns, name)
            self._record("ADDED", res, obj, None)
            if res.kind == "CustomResourceDefinition" and self.crd_listener:
                self.crd_listener("ADDED", obj)
            if res.storage_key == "/namespaces":
                self.ensure_default_service_account(name)
            return deep(obj), warnings

    def ensure_default_service_account(self, ns):
        """The ServiceAccount controller's "default" account. Created with the namespace (the real
        controller does it a moment later; pods created in between would be refused)."""
        sa_res = self.registry.lookup("", "v1", "serviceaccounts")
        with self.lock:
            if sa_res is None or (ns, "default") in self.objs[sa_res.storage_key]:
                return
            try:
                self.create(sa_res, {"apiVersion": "v1", "kind": "ServiceAccount",
                                     "metadata": {"name": "default", "namespace": ns}}, ns)
            except ApiError:
                pass     # namespace terminating

    def _admit_service_account(self, pod, ns):
        """The ServiceAccount admission plugin: serviceAccountName defaults to "default" and must exist."""
        spec = pod.setdefault("spec", {})
        sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = sa
        spec["serviceAccount"] = sa
        if (ns, sa) not in self.objs["/serviceaccounts"]:
            name = pod["metadata"].get("name") or pod["metadata"].get("generateName", "")
            raise ApiError(403, "Forbidden", 'pods "%s" is forbidden: error looking up service account %s/%s: '
                           'serviceaccount "%s" not found' % (name, ns, sa, sa),
                           {"name": name, "kind": "pods"})

    def update(self, res, obj, ns, name, subresource=None, version=None, field_validation="Ignore",
               dry_run=False, allow_create=False, force=False):
        """Replace an object (PUT semantics). `subresource` "status" writes only status; the main
        resource ignores status when the type has a status subresource. Returns (copy, warnings)."""
        obj = deep(obj)
        ns = ns or "" if res.namespaced else ""
        with self.lock:
            old = self.objs[res.storage_key].get((ns, name))
            if old is None:
                if allow_create and subresource is None:
                    obj.setdefault("metadata", {})["name"] = name
                    return self.create(res, obj, ns or None, version, field_validation, dry_run)
                raise errors.not_found(res, name)
            md = obj.get("metadata")
            if not isinstance(md, dict):
                md = obj["metadata"] = {}
            if md.get("name", name) != name:
                raise errors.bad_request("the name of the object (%s) does not match the name on the "
                                         "URL (%s)" % (md.get("name"), name))
            want_rv = md.get("resourceVersion")
            if want_rv and want_rv != old["metadata"]["resourceVersion"] and not force:
                raise errors.conflict(res, name)
            if md.get("uid") and md["uid"] != old["metadata"]["uid"]:
                raise errors.conflict(res, name)
            if subresource == "status":
                new = deep(old)
                if "status" in obj:
                    new["status"] = obj["status"]
                else:
                    new.pop("status", None)
                obj, md = new, new["metadata"]
            else:
                if res.status and "status" in old:
                    obj["status"] = deep(old["status"])
                elif res.status:
                    obj.pop("status", None)
                # Server-owned metadata cannot be changed by the client.
                for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                          "generation"):
                    if k in old["metadata"]:
                        md[k] = old["metadata"][k]
                    else:
                        md.pop(k, None)
                if res.namespaced:
                    md["namespace"] = ns
                md["name"] = name
            obj["apiVersion"] = old["apiVersion"]
            obj["kind"] = old["kind"]
            if old["metadata"].get("deletionTimestamp"):
                added = set(md.get("finalizers") or []) - set(old["metadata"].get("finalizers") or [])
                if added:
                    raise errors.invalid(res.kind, res.group, name, [(
                        "metadata.finalizers", "FieldValueForbidden",
                        "Forbidden: no new finalizers can be added if the object is being deleted, "
                        "found new finalizers %s" % json.dumps(sorted(added)))])
            warnings = self._prepare(res, obj, old, version, field_validation)
            if res.kind == "Service" and res.group == "":
                for k in ("clusterIP", "clusterIPs"):
                    if k in old.get("spec", {}):
                        obj.setdefault("spec", {})[k] = old["spec"][k]
            if res.kind == "CustomResourceDefinition":
                _crd_status(obj)
            if "generation" in old["metadata"]:
                if _spec_of(obj, res) != _spec_of(old, res):
                    md["generation"] = old["metadata"]["generation"] + 1
                else:
                    md["generation"] = old["metadata"]["generation"]
            if _same(obj, old):
                return deep(old), warnings   # no-op writes do not bump the resourceVersion
            if dry_run:
                return deep(obj), warnings
            md["resourceVersion"] = self._next_rv()
            if md.get("deletionTimestamp") and not md.get("finalizers") and not self._graceful_pending(res, obj):
                self._remove(res, obj)
                return deep(obj), warnings
            self.objs[res.storage_key][(ns, name)] = obj
            self._record("MODIFIED", res, obj, old)
            if res.kind == "CustomResourceDefinition" and self.crd_listener:
                self.crd_listener("MODIFIED", obj)
            return deep(obj), warnings

    def _graceful_pending(self, res, obj):
        return res.storage_key == "/pods" and obj["metadata"].get("deletionGracePeriodSeconds", 0) > 0

    def mutate(self, res, ns, name, fn, subresource=None):
        """Read-modify-write for controllers: fn(copy) edits in place (return False to skip).
        Returns the stored result or None if the object is gone."""
        with self.lock:
            cur = self.peek(res, ns, name)
            if cur is None:
                return None
            obj = deep(cur)
            if fn(obj) is False:
                return cur
            try:
                return self.update(res, obj, ns, name, subresource=subresource)[0]
            except ApiError:
                return None

    def _remove(self, res, obj):
        md = obj["metadata"]
        key = (md.get("namespace", ""), md["name"])
        self.objs[res.storage_key].pop(key, None)
        self.uids.pop(md["uid"], None)
        if res.kind == "Service" and res.group == "" and self.clusterip_allocator:
            self.clusterip_allocator.release(obj)
        self._record("DELETED", res, obj, None)
        if res.kind == "CustomResourceDefinition" and self.crd_listener:
            self.crd_listener("DELETED", obj)

    def delete(self, res, ns, name, grace=None, propagation=None, preconditions=None, dry_run=False):
        """Delete honouring finalizers, graceful pod termination and propagation policy.
        Returns (object, finished): finished False when the object is still present."""
        ns = ns or "" if res.namespaced else ""
        with self.lock:
            old = self.objs[res.storage_key].get((ns, name))
            if old is None:
                raise errors.not_found(res, name)
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
                raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": Precondition '
                               "failed: UID in precondition: %s, UID in object meta: %s"
                               % (errors.qualified(res), name, pre["uid"], old["metadata"]["uid"]))
            if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise errors.conflict(res, name)
            if dry_run:
                return deep(old), False
            obj = deep(old)
            md = obj["metadata"]
            fins = list(md.get("finalizers") or [])
            if propagation == "Orphan" and "orphan" not in fins and not md.get("deletionTimestamp"):
                fins.append("orphan")
            if propagation == "Foreground" and "foregroundDeletion" not in fins and not md.get("deletionTimestamp"):
                fins.append("foregroundDeletion")
            if res.storage_key == "/namespaces":
                if not md.get("deletionTimestamp"):
                    md["deletionTimestamp"] = now_rfc3339()
                    obj.setdefault("status", {})["phase"] = "Terminating"
                    md["resourceVersion"] = self._next_rv()
                    self.objs[res.storage_key][(ns, name)] = obj
                    self._record("MODIFIED", res, obj, old)
                return deep(obj), False
            if res.storage_key == "/pods":
                spec_grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                g = spec_grace if grace is None else grace
                cur = md.get("deletionGracePeriodSeconds")
                if g > 0 and (cur is None or g < cur):
                    md["deletionGracePeriodSeconds"] = g
                    md["deletionTimestamp"] = _rfc3339_in(g)
                    md["finalizers"] = fins or md.get("finalizers")
                    if not md["finalizers"]:
                        md.pop("finalizers")
                    md["resourceVersion"] = self._next_rv()
                    self.objs[res.storage_key][(ns, name)] = obj
                    self._record("MODIFIED", res, obj, old)
                    return deep(obj), False
                if g > 0 and cur is not None and cur > 0:
                    return deep(old), False   # graceful termination already under way
                md["deletionGracePeriodSeconds"] = 0
            if fins:
                changed = fins != (md.get("finalizers") or [])
                md["finalizers"] = fins
                if not md.get("deletionTimestamp"):
                    md["deletionTimestamp"] = now_rfc3339()
                    md.setdefault("deletionGracePeriodSeconds", 0)
                    if "generation" in md:
                        md["generation"] += 1
                    changed = True
                if changed or _same(obj, old) is False:
                    md["resourceVersion"] = self._next_rv()
                    self.objs[res.storage_key][(ns, name)] = obj
                    self._record("MODIFIED", res, obj, old)
                return deep(obj), False
            if not md.get("deletionTimestamp"):
                md["deletionTimestamp"] = now_rfc3339()
            md["resourceVersion"] = self._next_rv()
            self._remove(res, obj)
            return deep(obj), True


def _rfc3339_in(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))


def _spec_of(obj, res):
    """What generation tracks: everything but metadata (and status with a status subresource)."""
    skip = {"metadata", "status"} if res.status else {"metadata"}
    return {k: v for k, v in obj.items() if k not in skip and k not in ("apiVersion", "kind")}


def _same(a, b):
    a2 = dict(a, metadata={k: v for k, v in a["metadata"].items() if k != "resourceVersion"})
    b2 = dict(b, metadata={k: v for k, v in b["metadata"].items() if k != "resourceVersion"})
    return a2 == b2


def _crd_status(crd):
    names = crd["spec"]["names"]
    accepted = dict(names)
    accepted.setdefault("singular", names["kind"].lower())
    accepted.setdefault("listKind", names["kind"] + "List")
    t = now_rfc3339()
    old = {c["type"]: c for c in (crd.get("status") or {}).get("conditions") or []}
    conds = []
    for typ, reason, msg in (("NamesAccepted", "NoConflicts", "no conflicts found"),
                             ("Established", "InitialNamesAccepted", "the initial names have been accepted")):
        conds.append({"type": typ, "status": "True", "reason": reason, "message": msg,
                      "lastTransitionTime": old.get(typ, {}).get("lastTransitionTime", t)})
    crd["status"] = {"conditions": conds, "acceptedNames": accepted,
                     "storedVersions": [v["name"] for v in crd["spec"].get("versions") or [] if v.get("storage")]}
    names_spec = crd["spec"]["names"]
    names_spec.setdefault("singular", names_spec["kind"].lower())
    names_spec.setdefault("listKind", names_spec["kind"] + "List")
