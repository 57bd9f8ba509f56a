"""Server-side printing: the meta.k8s.io/v1 Table that `kubectl get` asks for."""
import re
import time

from .util import parse_time


def age(ts):
    t = parse_time(ts)
    if t is None:
        return "<unknown>"
    d = max(0, int(time.time() - t))
    if d < 120:
        return "%ds" % d
    m = d // 60
    if m < 10:
        return "%dm%ds" % (m, d % 60) if d % 60 else "%dm" % m
    if m < 180:
        return "%dm" % m
    h = m // 60
    if h < 48:
        return "%dh" % h
    return "%dd" % (h // 24)


def _col(name, typ="string", fmt="", prio=0, desc=""):
    return {"name": name, "type": typ, "format": fmt, "description": desc or name, "priority": prio}


def _pod_cells(o):
    st = o.get("status") or {}
    cs = st.get("containerStatuses") or []
    n = len((o.get("spec") or {}).get("containers") or [])
    ready = sum(1 for c in cs if c.get("ready"))
    reason = st.get("phase", "Pending")
    for c in cs:
        w = (c.get("state") or {}).get("waiting")
        t = (c.get("state") or {}).get("terminated")
        if w and w.get("reason"):
            reason = w["reason"]
        elif t:   # as kubectl's printPod: Completed / Error / ExitCode:N
            reason = t.get("reason") or ("Signal:%d" % t["signal"] if t.get("signal")
                                         else "ExitCode:%d" % t.get("exitCode", 0))
    if o["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    restarts = sum(c.get("restartCount", 0) for c in cs)
    return ["%d/%d" % (ready, n), reason, restarts, age(o["metadata"].get("creationTimestamp")),
            st.get("podIP") or "<none>", (o.get("spec") or {}).get("nodeName") or "<none>"]


def _svc_ports(o):
    out = []
    for p in (o.get("spec") or {}).get("ports") or []:
        out.append("%s/%s" % (p.get("port"), p.get("protocol", "TCP")))
    return ",".join(out) or "<none>"


def _slice_cells(o):
    ports = ",".join(str(p.get("port")) for p in o.get("ports") or []) or "<unset>"
    eps = [a for e in o.get("endpoints") or [] for a in e.get("addresses") or []]
    shown = ",".join(eps[:3]) + (" + %d more..." % (len(eps) - 3) if len(eps) > 3 else "")
    return [o.get("addressType", ""), ports, shown or "<unset>"]


def _duration(seconds):
    return age_of(max(0, int(seconds)))


def age_of(d):
    if d < 120:
        return "%ds" % d
    m = d // 60
    if m < 10:
        return "%dm%ds" % (m, d % 60) if d % 60 else "%dm" % m
    if m < 180:
        return "%dm" % m
    h = m // 60
    return "%dh" % h if h < 48 else "%dd" % (h // 24)


def _job_cells(o):
    spec, st = o.get("spec") or {}, o.get("status") or {}
    if spec.get("completions") is not None:
        comp = "%d/%d" % (st.get("succeeded", 0), spec["completions"])
    elif (spec.get("parallelism") or 1) > 1:
        comp = "%d/1 of %d" % (st.get("succeeded", 0), spec["parallelism"])
    else:
        comp = "%d/1" % st.get("succeeded", 0)
    start, end = parse_time(st.get("startTime")), parse_time(st.get("completionTime"))
    dur = "" if start is None else _duration((end or time.time()) - start)
    true = {c.get("type") for c in st.get("conditions") or [] if c.get("status") == "True"}
    status = "Running"
    for ctype, shown in (("Failed", "Failed"), ("Complete", "Complete"), ("FailureTarget", "FailureTarget"),
                         ("SuccessCriteriaMet", "SuccessCriteriaMet"), ("Suspended", "Suspended")):
        if ctype in true:
            status = shown
            break
    else:
        if o["metadata"].get("deletionTimestamp"):
            status = "Terminating"
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [status, comp, dur, age(o["metadata"].get("creationTimestamp")),
            ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers),
            ",".join("%s=%s" % kv for kv in sorted(((spec.get("selector") or {}).get("matchLabels") or {}).items()))]


def _pdb_cells(o):
    spec = o.get("spec") or {}
    return ["N/A" if spec.get("minAvailable") is None else str(spec["minAvailable"]),
            "N/A" if spec.get("maxUnavailable") is None else str(spec["maxUnavailable"]),
            (o.get("status") or {}).get("disruptionsAllowed", 0), age(o["metadata"].get("creationTimestamp"))]


def _binding_cells(o):
    ref = o.get("roleRef") or {}
    subs = o.get("subjects") or []
    users = ",".join(s.get("name", "") for s in subs if s.get("kind") == "User")
    groups = ",".join(s.get("name", "") for s in subs if s.get("kind") == "Group")
    sas = ",".join("%s/%s" % (s.get("namespace", ""), s.get("name", "")) for s in subs
                   if s.get("kind") == "ServiceAccount")
    return ["%s/%s" % (ref.get("kind", ""), ref.get("name", "")), age(o["metadata"].get("creationTimestamp")),
            users, groups, sas]


BINDING_COLS = [_col("Role"), _col("Age"), _col("Users", prio=1), _col("Groups", prio=1),
                _col("ServiceAccounts", prio=1)]
ROLE_COLS = ([_col("Created At", "date")], lambda o: [o["metadata"].get("creationTimestamp")])

BUILTIN = {
    "jobs": ([_col("Status"), _col("Completions"), _col("Duration"), _col("Age"), _col("Containers", prio=1),
              _col("Images", prio=1), _col("Selector", prio=1)], _job_cells),
    "poddisruptionbudgets": ([_col("Min Available"), _col("Max Unavailable"),
                              _col("Allowed Disruptions", "integer"), _col("Age")], _pdb_cells),
    "roles": ROLE_COLS,
    "clusterroles": ROLE_COLS,
    "rolebindings": (BINDING_COLS, _binding_cells),
    "clusterrolebindings": (BINDING_COLS, _binding_cells),
    "pods": ([_col("Ready"), _col("Status"), _col("Restarts", "integer"), _col("Age"),
              _col("IP", prio=1), _col("Node", prio=1)], _pod_cells),
    "deployments": ([_col("Ready"), _col("Up-to-date", "integer"), _col("Available", "integer"), _col("Age")],
                    lambda o: ["%d/%d" % ((o.get("status") or {}).get("readyReplicas", 0),
                                          (o.get("spec") or {}).get("replicas", 0)),
                               (o.get("status") or {}).get("updatedReplicas", 0),
                               (o.get("status") or {}).get("availableReplicas", 0),
                               age(o["metadata"].get("creationTimestamp"))]),
    "statefulsets": ([_col("Ready"), _col("Age")],
                     lambda o: ["%d/%d" % ((o.get("status") or {}).get("readyReplicas", 0),
                                           (o.get("spec") or {}).get("replicas", 0)),
                                age(o["metadata"].get("creationTimestamp"))]),
    "services": ([_col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"), _col("Age"),
                  _col("Selector", prio=1)],
                 lambda o: [(o.get("spec") or {}).get("type", ""), (o.get("spec") or {}).get("clusterIP", ""),
                            "<none>", _svc_ports(o), age(o["metadata"].get("creationTimestamp")),
                            ",".join("%s=%s" % kv for kv in sorted(((o.get("spec") or {}).get("selector") or {}).items()))
                            or "<none>"]),
    "namespaces": ([_col("Status"), _col("Age")],
                   lambda o: [(o.get("status") or {}).get("phase", ""), age(o["metadata"].get("creationTimestamp"))]),
    "endpointslices": ([_col("AddressType"), _col("Ports"), _col("Endpoints"), _col("Age")],
                       lambda o: _slice_cells(o) + [age(o["metadata"].get("creationTimestamp"))]),
    "leases": ([_col("Holder"), _col("Age")],
               lambda o: [(o.get("spec") or {}).get("holderIdentity", ""), age(o["metadata"].get("creationTimestamp"))]),
    "customresourcedefinitions": ([_col("Created At", "date")],
                                  lambda o: [o["metadata"].get("creationTimestamp")]),
}


def _jsonpath(obj, path):
    """The subset of JSONPath additionalPrinterColumns use: .a.b, [n], [?(@.k=="v")]."""
    cur = [obj]
    for tok in re.findall(r'\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_]+)==["\']([^"\']*)["\']\)\]', path):
        field, idx, fk, fv = tok
        nxt = []
        for c in cur:
            if field and isinstance(c, dict) and field in c:
                nxt.append(c[field])
            elif idx and isinstance(c, list) and int(idx) < len(c):
                nxt.append(c[int(idx)])
            elif fk and isinstance(c, list):
                nxt += [e for e in c if isinstance(e, dict) and str(e.get(fk)) == fv]
        cur = nxt
    return cur[0] if cur else None


def columns_and_cells(res, version):
    """(column definitions after Name, fn(obj) -> cells after name)."""
    if res.crd is not None:
        cols = (res.printer_columns or {}).get(version) or []
        if not cols:
            return [_col("Age", "date")], lambda o: [age(o["metadata"].get("creationTimestamp"))]
        defs = [_col(c["name"], c.get("type", "string"), c.get("format", ""), c.get("priority", 0),
                     c.get("description", "")) for c in cols]

        def cells(o):
            out = []
            for c in cols:
                v = _jsonpath(o, c["jsonPath"])
                if c.get("type") == "date" and isinstance(v, str):
                    v = age(v)
                out.append(v)
            return out
        return defs, cells
    if res.plural == "events":
        defs = [_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")]

        def ev(o):
            io = o.get("involvedObject") or o.get("regarding") or {}
            return [age(o.get("lastTimestamp") or o.get("eventTime") or o["metadata"].get("creationTimestamp")),
                    o.get("type", ""), o.get("reason", ""),
                    "%s/%s" % ((io.get("kind") or "").lower(), io.get("name", "")),
                    o.get("message") or o.get("note") or ""]
        return defs, ev
    if res.plural in BUILTIN:
        return BUILTIN[res.plural]
    return [_col("Age")], lambda o: [age(o["metadata"].get("creationTimestamp"))]


def partial_meta(o):
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}


def table(res, version, objs, rv, include="Metadata", cont=None, remaining=None, headers=True):
    defs, cells = columns_and_cells(res, version)
    rows = []
    for o in objs:
        row = {"cells": [o["metadata"]["name"]] + cells(o)}
        if include == "Object":
            row["object"] = o
        elif include != "None":
            row["object"] = partial_meta(o)
        rows.append(row)
    md = {"resourceVersion": rv}
    if cont:
        md["continue"] = cont
    if remaining is not None:
        md["remainingItemCount"] = remaining
    name_col = _col("Name", "string", "name", 0,
                    "Name must be unique within a namespace. Is required when creating resources, although "
                    "some resources may allow a client to request the generation of an appropriate name "
                    "automatically.")
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": md,
            "columnDefinitions": [name_col] + defs if headers else [], "rows": rows}
