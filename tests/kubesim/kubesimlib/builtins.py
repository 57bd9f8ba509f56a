"""Defaulting and validation of built-in kinds: only the fields kubesim and holdfast rely on,
defaulted the way the real API server fills them so clients see the same objects."""
import json
import re

from .errors import invalid
from .selectors import labels_match, selector_from_labelselector
from .util import valid_dns_label, valid_dns_subdomain


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
    tspec = (spec.get("template") or {}).get("spec") or {}
    _validate_pod_spec(tspec, "spec.template.spec", errs)
    rp = tspec.get("restartPolicy", "Always")
    if rp != "Always":
        errs.append(("spec.template.spec.restartPolicy", "FieldValueNotSupported",
                     'Unsupported value: "%s": supported values: "Always"' % rp))


def _go_map(m):
    return "map[string]string{%s}" % ", ".join('"%s":"%s"' % (k, v) for k, v in sorted(m.items()))


def default_object(res, obj, old=None):
    """Fill defaults on a built-in object (create: old is None; update: old is the stored one)."""
    kind = res.kind
    spec = obj.setdefault("spec", {}) if kind in ("Service", "Deployment", "StatefulSet", "Pod",
                                                  "Namespace", "ResourceQuota", "Job",
                                                  "PodDisruptionBudget") else obj.get("spec")
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
    elif kind in ("RoleBinding", "ClusterRoleBinding") and res.group == RBAC:
        for sub in obj.get("subjects") or []:
            if isinstance(sub, dict) and not sub.get("apiGroup"):
                if sub.get("kind") == "ServiceAccount":
                    sub.pop("apiGroup", None)
                elif sub.get("kind") in ("User", "Group"):
                    sub["apiGroup"] = RBAC
    elif kind == "Job" and res.group == "batch":
        _default_job(obj, spec, old)
    elif kind == "PodDisruptionBudget" and res.group == "policy":
        # Go's int32 fields without omitempty: a fresh PDB reads back with zeros
        st = obj.setdefault("status", {})
        for k in ("disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"):
            st.setdefault(k, 0)
    return obj


RBAC = "rbac.authorization.k8s.io"
JOB_LABELS = ("batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name", "controller-uid", "job-name")


def _default_job(obj, spec, old):
    """batch/v1 SetDefaults_Job, and on create what the Job strategy's PrepareForCreate adds: the
    generated selector and the labels it selects (unless spec.manualSelector)."""
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimitPerIndex") is None:
        spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    if not spec.get("podFailurePolicy"):
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    tmpl = spec.setdefault("template", {})
    if not isinstance(tmpl, dict):
        return
    tmd = tmpl.setdefault("metadata", {})
    tmd.setdefault("creationTimestamp", None)
    default_pod_spec(tmpl.setdefault("spec", {}))
    if old is None and not spec.get("manualSelector"):
        md = obj["metadata"]
        uid, name = md.get("uid", ""), md.get("name", "")
        if spec.get("selector") is not None:
            raise invalid("Job", "batch", name, [("spec.selector", "FieldValueInvalid", "Invalid value: %s: "
                                                  "`selector` not auto-generated" % _ls(spec["selector"]))])
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        labels = tmd.setdefault("labels", {})
        for k, v in zip(JOB_LABELS, (uid, name, uid, name)):
            labels.setdefault(k, v)


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
    elif res.group == RBAC:
        _validate_rbac(kind, obj, old, errs)
    elif kind == "Job" and res.group == "batch":
        _validate_job(obj, old, errs)
    elif kind == "PodDisruptionBudget" and res.group == "policy":
        _validate_pdb(spec, errs)
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


def rbac_name_errors(name):
    """path.IsValidPathSegmentName: what RBAC object names (and roleRef.name) must satisfy."""
    if name in (".", ".."):
        return ["may not be '%s'" % name]
    return ["may not contain '%s'" % c for c in ("/", "%") if c in name]


def _validate_rules(rules, namespaced, errs):
    if rules is not None and not isinstance(rules, list):
        errs.append(("rules", "FieldValueInvalid", "Invalid value: must be a list"))
        return
    for i, rule in enumerate(rules or []):
        p = "rules[%d]" % i
        if not isinstance(rule, dict):
            errs.append((p, "FieldValueInvalid", "Invalid value: must be an object"))
            continue
        if not rule.get("verbs"):
            errs.append((p + ".verbs", "FieldValueRequired", "Required value: verbs must contain at least one value"))
        urls = rule.get("nonResourceURLs") or []
        if urls:
            if namespaced:
                errs.append((p + ".nonResourceURLs", "FieldValueInvalid", "Invalid value: %s: namespaced rules "
                             "cannot apply to non-resource URLs" % _go_strs(urls)))
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                errs.append((p + ".nonResourceURLs", "FieldValueInvalid", "Invalid value: %s: rules cannot "
                             "apply to both regular resources and non-resource URLs" % _go_strs(urls)))
            continue
        if not rule.get("apiGroups"):
            errs.append((p + ".apiGroups", "FieldValueRequired",
                         "Required value: resource rules must supply at least one api group"))
        if not rule.get("resources"):
            errs.append((p + ".resources", "FieldValueRequired",
                         "Required value: resource rules must supply at least one resource"))


def _go_strs(lst):
    return "[]string{%s}" % ", ".join('"%s"' % x for x in lst)


def _go_roleref(ref):
    ref = ref or {}
    return 'rbac.RoleRef{APIGroup:"%s", Kind:"%s", Name:"%s"}' % (ref.get("apiGroup", ""), ref.get("kind", ""),
                                                                ref.get("name", ""))


def _validate_rbac(kind, obj, old, errs):
    """pkg/apis/rbac/validation: names, rules, roleRef (immutable), subjects."""
    for m in rbac_name_errors(obj["metadata"].get("name", "")):
        errs.append(("metadata.name", "FieldValueInvalid", 'Invalid value: "%s": %s' % (obj["metadata"]["name"], m)))
    if kind in ("Role", "ClusterRole"):
        _validate_rules(obj.get("rules"), kind == "Role", errs)
        agg = obj.get("aggregationRule")
        if kind == "ClusterRole" and agg is not None and not (agg or {}).get("clusterRoleSelectors"):
            errs.append(("aggregationRule.clusterRoleSelectors", "FieldValueRequired",
                         "Required value: at least one clusterRoleSelector required if aggregationRule is non-nil"))
        return
    ref = obj.get("roleRef")
    if not isinstance(ref, dict):
        ref = {}
    if ref.get("apiGroup") != RBAC:
        errs.append(("roleRef.apiGroup", "FieldValueNotSupported", 'Unsupported value: "%s": supported values: "%s"'
                     % (ref.get("apiGroup", ""), RBAC)))
    kinds = ["Role", "ClusterRole"] if kind == "RoleBinding" else ["ClusterRole"]
    if ref.get("kind") not in kinds:
        errs.append(("roleRef.kind", "FieldValueNotSupported", 'Unsupported value: "%s": supported values: %s'
                     % (ref.get("kind", ""), ", ".join('"%s"' % k for k in kinds))))
    if not ref.get("name"):
        errs.append(("roleRef.name", "FieldValueRequired", "Required value"))
    else:
        for m in rbac_name_errors(ref["name"]):
            errs.append(("roleRef.name", "FieldValueInvalid", 'Invalid value: "%s": %s' % (ref["name"], m)))
    for i, sub in enumerate(obj.get("subjects") or []):
        p = "subjects[%d]" % i
        if not isinstance(sub, dict):
            errs.append((p, "FieldValueInvalid", "Invalid value: must be an object"))
            continue
        if not sub.get("name"):
            errs.append((p + ".name", "FieldValueRequired", "Required value"))
        sk = sub.get("kind")
        if sk == "ServiceAccount":
            if sub.get("name") and not valid_dns_subdomain(sub["name"]):
                errs.append((p + ".name", "FieldValueInvalid", 'Invalid value: "%s": a lowercase RFC 1123 '
                             "subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
                             "start and end with an alphanumeric character" % sub["name"]))
            if sub.get("apiGroup"):
                errs.append((p + ".apiGroup", "FieldValueNotSupported",
                             'Unsupported value: "%s": supported values: ""' % sub["apiGroup"]))
            if kind == "ClusterRoleBinding" and not sub.get("namespace"):
                errs.append((p + ".namespace", "FieldValueRequired", "Required value"))
        elif sk in ("User", "Group"):
            if sub.get("apiGroup") != RBAC:
                errs.append((p + ".apiGroup", "FieldValueNotSupported", 'Unsupported value: "%s": supported '
                             'values: "%s"' % (sub.get("apiGroup", ""), RBAC)))
        else:
            errs.append((p + ".kind", "FieldValueNotSupported", 'Unsupported value: "%s": supported values: '
                         '"ServiceAccount", "User", "Group"' % (sk or "")))
    if old is not None and (old.get("roleRef") or {}) != (obj.get("roleRef") or {}):
        errs.append(("roleRef", "FieldValueInvalid", "Invalid value: %s: cannot change roleRef" % _go_roleref(ref)))


def _nonneg(spec, field, path, errs):
    v = spec.get(field)
    if v is None:
        return
    if not isinstance(v, int) or isinstance(v, bool):
        errs.append((path + field, "FieldValueInvalid", "Invalid value: %s: must be an integer" % json.dumps(v)))
    elif v < 0:
        errs.append((path + field, "FieldValueInvalid", "Invalid value: %d: must be greater than or equal to 0" % v))


def _validate_job(obj, old, errs):
    spec = obj.get("spec") or {}
    for f in ("parallelism", "completions", "backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        _nonneg(spec, f, "spec.", errs)
    mode = spec.get("completionMode", "NonIndexed")
    if mode not in ("NonIndexed", "Indexed"):
        errs.append(("spec.completionMode", "FieldValueNotSupported",
                     'Unsupported value: "%s": supported values: "NonIndexed", "Indexed"' % mode))
    elif mode == "Indexed" and spec.get("completions") is None:
        errs.append(("spec.completions", "FieldValueRequired", "Required value: when completion mode is Indexed"))
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict) or not tmpl:
        errs.append(("spec.template", "FieldValueRequired", "Required value"))
        return
    tspec = tmpl.get("spec") or {}
    _validate_pod_spec(tspec, "spec.template.spec", errs)
    rp = tspec.get("restartPolicy", "Always")
    if rp not in ("OnFailure", "Never"):
        errs.append(("spec.template.spec.restartPolicy", "FieldValueNotSupported",
                     'Unsupported value: "%s": supported values: "OnFailure", "Never"' % rp))
    sel = spec.get("selector")
    tlabels = (tmpl.get("metadata") or {}).get("labels") or {}
    if sel is None:
        errs.append(("spec.selector", "FieldValueRequired", "Required value"))
    else:
        reqs = selector_from_labelselector(sel)
        if not reqs:
            errs.append(("spec.selector", "FieldValueInvalid", "Invalid value: %s: empty selector is invalid for "
                         "job" % _ls(sel)))
        elif not labels_match(reqs, tlabels):
            errs.append(("spec.template.metadata.labels", "FieldValueInvalid",
                         "Invalid value: %s: `selector` does not match template `labels`" % _go_map(tlabels)))
    if old is not None:
        ospec = old.get("spec") or {}
        for f in ("selector", "template", "completionMode"):
            if ospec.get(f) != spec.get(f):
                shown = json.dumps(spec.get(f), sort_keys=True, separators=(",", ":"))
                errs.append(("spec." + f, "FieldValueInvalid", "Invalid value: %s: field is immutable" % shown))


def _int_or_percent(v, path, errs):
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        errs.append((path, "FieldValueInvalid", "Invalid value: %s: must be an integer or percentage" % json.dumps(v)))
    elif isinstance(v, int):
        if v < 0:
            errs.append((path, "FieldValueInvalid", "Invalid value: %d: must be greater than or equal to 0" % v))
    elif not re.fullmatch(r"[0-9]+%", v):
        errs.append((path, "FieldValueInvalid", "Invalid value: \"%s\": a valid percent string must be a numeric "
                     "string followed by an ending '%%' (e.g. '1%%',  or '93%%', regex used for validation is "
                     "'[0-9]+%%')" % v))
    elif int(v[:-1]) > 100:
        errs.append((path, "FieldValueInvalid", 'Invalid value: "%s": must not be greater than 100%%' % v))


def _validate_pdb(spec, errs):
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        errs.append(("spec", "FieldValueInvalid", "Invalid value: policy.PodDisruptionBudgetSpec{MinAvailable:%s, "
                     "MaxUnavailable:%s}: minAvailable and maxUnavailable cannot be both set"
                     % (json.dumps(spec["minAvailable"]), json.dumps(spec["maxUnavailable"]))))
    for f in ("minAvailable", "maxUnavailable"):
        if spec.get(f) is not None:
            _int_or_percent(spec[f], "spec." + f, errs)
    pol = spec.get("unhealthyPodEvictionPolicy")
    if pol is not None and pol not in ("AlwaysAllow", "IfHealthyBudget"):
        errs.append(("spec.unhealthyPodEvictionPolicy", "FieldValueNotSupported",
                     'Unsupported value: "%s": supported values: "AlwaysAllow", "IfHealthyBudget"' % pol))
    sel = spec.get("selector")
    for i, e in enumerate((sel or {}).get("matchExpressions") or []):
        op = e.get("operator")
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            errs.append(("spec.selector.matchExpressions[%d].operator" % i, "FieldValueInvalid",
                         'Invalid value: "%s": not a valid selector operator' % op))


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
