"""Defaulting and validation of built-in kinds: only the fields kubesim and holdfast rely on,
defaulted the way the real API server fills them so clients see the same objects."""
from .errors import invalid
from .selectors import labels_match, selector_from_labelselector
from .util import valid_dns_label


def _default_probe(p):
    if not isinstance(p, dict):
        return
    for k, v in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                 ("failureThreshold", 3)):
        p.setdefault(k, v)
    if isinstance(p.get("httpGet"), dict):
        p["httpGet"].setdefault("scheme", "HTTP")
        p["httpGet"].setdefault("path", "/")


def default_pod_spec(spec):
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if not isinstance(c, dict):
            continue
        image = c.get("image") or ""
        tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
        c.setdefault("imagePullPolicy", "IfNotPresent" if tagged and not image.endswith(":latest") else "Always")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("resources", {})
        for p in c.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            _default_probe(c.get(probe))


def _validate_pod_spec(spec, path, errs):
    cs = spec.get("containers")
    if not cs:
        errs.append((path + ".containers", "FieldValueRequired", "Required value"))
        return
    names = set()
    for i, c in enumerate(cs):
        p = "%s.containers[%d]" % (path, i)
        if not c.get("name"):
            errs.append((p + ".name", "FieldValueRequired", "Required value"))
        elif c["name"] in names:
            errs.append((p + ".name", "FieldValueDuplicate", 'Duplicate value: "%s"' % c["name"]))
        names.add(c.get("name"))
        if not c.get("image"):
            errs.append((p + ".image", "FieldValueRequired", "Required value"))


def _validate_workload(obj, errs):
    spec = obj.get("spec") or {}
    reps = spec.get("replicas")
    if isinstance(reps, int) and reps < 0:
        errs.append(("spec.replicas", "FieldValueInvalid",
                     "Invalid value: %d: must be greater than or equal to 0" % reps))
    sel = spec.get("selector")
    if not sel:
        errs.append(("spec.selector", "FieldValueRequired", "Required value"))
        return
    tmpl_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    reqs = selector_from_labelselector(sel)
    if not reqs:
        errs.append(("spec.selector", "FieldValueInvalid",
                     "Invalid value: %s: empty selector is invalid for deployment" % "{}"))
    elif not labels_match(reqs, tmpl_labels):
        errs.append(("spec.template.metadata.labels", "FieldValueInvalid",
                     "Invalid value: %s: `selector` does not match template `labels`"
                     % _go_map(tmpl_labels)))
    _validate_pod_spec((spec.get("template") or {}).get("spec") or {}, "spec.template.spec", errs)


def _go_map(m):
    return "map[string]string{%s}" % ", ".join('"%s":"%s"' % (k, v) for k, v in sorted(m.items()))


def default_object(res, obj):
    """Fill defaults on a built-in object (create and update)."""
    kind = res.kind
    spec = obj.setdefault("spec", {}) if kind in ("Service", "Deployment", "StatefulSet", "Pod",
                                                  "Namespace", "ResourceQuota") else obj.get("spec")
    if kind == "Namespace":
        spec.setdefault("finalizers", ["kubernetes"])
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        obj.setdefault("status", {}).setdefault("phase", "Active")
    elif kind == "Service":
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec.get("type") != "ExternalName":
            spec.setdefault("internalTrafficPolicy", "Cluster")
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        for p in spec.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
                if "targetPort" not in p and "port" in p:
                    p["targetPort"] = p["port"]
        obj.setdefault("status", {}).setdefault("loadBalancer", {})
    elif kind in ("Deployment", "StatefulSet"):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        if kind == "Deployment":
            spec.setdefault("progressDeadlineSeconds", 600)
            st = spec.setdefault("strategy", {"type": "RollingUpdate"})
            if st.get("type", "RollingUpdate") == "RollingUpdate":
                st.setdefault("type", "RollingUpdate")
                st.setdefault("rollingUpdate", {}).setdefault("maxUnavailable", "25%")
                st["rollingUpdate"].setdefault("maxSurge", "25%")
        else:
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
            spec.setdefault("persistentVolumeClaimRetentionPolicy",
                            {"whenDeleted": "Retain", "whenScaled": "Retain"})
        tmpl = spec.setdefault("template", {})
        tmpl.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        default_pod_spec(tmpl.setdefault("spec", {}))
    elif kind == "Pod":
        default_pod_spec(spec)
        obj.setdefault("status", {}).setdefault("phase", "Pending")
        obj["status"].setdefault("qosClass", "BestEffort")
    elif kind == "EndpointSlice":
        for p in obj.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
    elif kind == "ResourceQuota":
        obj.setdefault("status", {})
    return obj


def validate_object(res, obj, old=None):
    """Raise 422 Invalid when a built-in object breaks a rule holdfast or kubesim depends on."""
    errs = []
    kind = res.kind
    spec = obj.get("spec") or {}
    if kind == "Service":
        ports = spec.get("ports") or []
        if spec.get("type") != "ExternalName" and not ports and spec.get("clusterIP") != "None":
            errs.append(("spec.ports", "FieldValueRequired", "Required value"))
        seen = set()
        for i, p in enumerate(ports):
            name = p.get("name", "")
            if len(ports) > 1 and not name:
                errs.append(("spec.ports[%d].name" % i, "FieldValueRequired", "Required value"))
            if name in seen:
                errs.append(("spec.ports[%d].name" % i, "FieldValueDuplicate", 'Duplicate value: "%s"' % name))
            seen.add(name)
            port = p.get("port")
            if not isinstance(port, int) or not 1 <= port <= 65535:
                errs.append(("spec.ports[%d].port" % i, "FieldValueInvalid",
                             "Invalid value: %s: must be between 1 and 65535, inclusive" % port))
        if old is not None:
            oldip = (old.get("spec") or {}).get("clusterIP")
            if spec.get("clusterIP") not in (None, "", oldip):
                errs.append(("spec.clusterIPs[0]", "FieldValueInvalid",
                             "Invalid value: []string{\"%s\"}: may not change once set" % spec.get("clusterIP")))
    elif kind in ("Deployment", "StatefulSet"):
        _validate_workload(obj, errs)
        if old is not None and (old.get("spec") or {}).get("selector") != spec.get("selector"):
            errs.append(("spec.selector", "FieldValueInvalid",
                         "Invalid value: %s: field is immutable" % _ls(spec.get("selector"))))
    elif kind == "Pod":
        _validate_pod_spec(spec, "spec", errs)
    elif kind == "EndpointSlice":
        at = obj.get("addressType")
        if at not in ("IPv4", "IPv6", "FQDN"):
            errs.append(("addressType", "FieldValueRequired" if at is None else "FieldValueNotSupported",
                         "Required value" if at is None else
                         'Unsupported value: "%s": supported values: "FQDN", "IPv4", "IPv6"' % at))
        for i, ep in enumerate(obj.get("endpoints") or []):
            addrs = ep.get("addresses") or []
            if len(addrs) != 1:
                errs.append(("endpoints[%d].addresses" % i, "FieldValueRequired" if not addrs else "FieldValueTooMany",
                             "Required value" if not addrs else "Too many: %d: must have at most 1 items" % len(addrs)))
        names = set()
        for i, p in enumerate(obj.get("ports") or []):
            name = p.get("name") or ""
            if name and not valid_dns_label(name):
                errs.append(("ports[%d].name" % i, "FieldValueInvalid",
                             'Invalid value: "%s": a lowercase RFC 1123 label must consist of lower case '
                             "alphanumeric characters or '-'" % name))
            if name in names:
                errs.append(("ports[%d].name" % i, "FieldValueDuplicate", 'Duplicate value: "%s"' % name))
            names.add(name)
            port = p.get("port")
            if port is not None and (not isinstance(port, int) or not 1 <= port <= 65535):
                errs.append(("ports[%d].port" % i, "FieldValueInvalid",
                             "Invalid value: %s: must be between 1 and 65535, inclusive" % port))
    elif kind == "Event" and res.group == "events.k8s.io" and old is None:
        for f in ("eventTime", "reportingController", "reportingInstance", "action", "reason"):
            if not obj.get(f):
                errs.append((f, "FieldValueRequired", "Required value"))
        if obj.get("type") not in ("Normal", "Warning"):
            errs.append(("type", "FieldValueNotSupported",
                         'Unsupported value: "%s": supported values: "Normal", "Warning"' % obj.get("type", "")))
    elif kind == "Lease":
        d = spec.get("leaseDurationSeconds")
        if d is not None and (not isinstance(d, int) or d <= 0):
            errs.append(("spec.leaseDurationSeconds", "FieldValueInvalid",
                         "Invalid value: %s: must be greater than 0" % d))
    elif kind == "CustomResourceDefinition":
        names = spec.get("names") or {}
        group = spec.get("group") or ""
        for f in ("plural", "kind"):
            if not names.get(f):
                errs.append(("spec.names." + f, "FieldValueRequired", "Required value"))
        if not group or "." not in group:
            errs.append(("spec.group", "FieldValueInvalid",
                         'Invalid value: "%s": should be a domain with at least one dot' % group))
        elif names.get("plural") and obj["metadata"].get("name") != names["plural"] + "." + group:
            errs.append(("metadata.name", "FieldValueInvalid",
                         'Invalid value: "%s": must be spec.names.plural+"."+spec.group'
                         % obj["metadata"].get("name")))
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            errs.append(("spec.scope", "FieldValueNotSupported",
                         'Unsupported value: "%s": supported values: "Cluster", "Namespaced"' % spec.get("scope")))
        versions = spec.get("versions") or []
        if not versions:
            errs.append(("spec.versions", "FieldValueInvalid", "Invalid value: null: must have exactly one version marked as storage version"))
        elif sum(1 for v in versions if v.get("storage")) != 1:
            errs.append(("spec.versions", "FieldValueInvalid", "Invalid value: %s: must have exactly one "
                         "version marked as storage version" % [v.get("name") for v in versions]))
    if errs:
        raise invalid(kind, res.group, obj["metadata"].get("name", ""), errs)


def _ls(sel):
    return "v1.LabelSelector{MatchLabels:%s}" % _go_map((sel or {}).get("matchLabels") or {})


# events.k8s.io/v1 <-> core/v1 Event field names (the same stored object, two shapes).
EVENT_FIELD_MAP = [
    ("regarding", "involvedObject"), ("note", "message"), ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"), ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"), ("deprecatedCount", "count"),
]


def event_to_core(obj):
    out = dict(obj)
    for new, old in EVENT_FIELD_MAP:
        if new in out:
            out[old] = out.pop(new)
    out["apiVersion"] = "v1"
    return out


def event_from_core(obj):
    out = dict(obj)
    for new, old in EVENT_FIELD_MAP:
        if old in out:
            out[new] = out.pop(old)
    out["apiVersion"] = "events.k8s.io/v1"
    if "reportingInstance" not in out:
        out["reportingInstance"] = ""
    return out
