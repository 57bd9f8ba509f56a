"""Stand-in CRDs for the built-in kinds the chart uses that kubesim does not serve
(rbac.authorization.k8s.io/v1, policy/v1 PodDisruptionBudget, batch/v1 Job; see REGROUP) and for
the Prometheus Operator's ServiceMonitor. Their schemas follow the real API's types for every field a
chart can set at that level (unknown fields are then rejected by kubectl's strict validation, as a
real API server would); pod templates are left open (kubesim validates pod specs in Deployments)."""

S = {"type": "string"}
I = {"type": "integer"}
B = {"type": "boolean"}
STRS = {"type": "array", "items": S}
MAP = {"type": "object", "additionalProperties": S}
INT_OR_STR = {"x-kubernetes-int-or-string": True}
OPEN = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
LABEL_SELECTOR = {"type": "object", "properties": {
    "matchLabels": MAP,
    "matchExpressions": {"type": "array", "items": {"type": "object", "required": ["key", "operator"],
                                                    "properties": {"key": S, "operator": S, "values": STRS}}}}}

POLICY_RULE = {"type": "object", "required": ["verbs"], "properties": {
    "apiGroups": STRS, "resources": STRS, "verbs": STRS, "resourceNames": STRS, "nonResourceURLs": STRS}}
ROLE_REF = {"type": "object", "required": ["apiGroup", "kind", "name"],
            "properties": {"apiGroup": S, "kind": {"type": "string", "enum": ["Role", "ClusterRole"]}, "name": S}}
SUBJECTS = {"type": "array", "items": {"type": "object", "required": ["kind", "name"], "properties": {
    "kind": {"type": "string", "enum": ["ServiceAccount", "User", "Group"]}, "name": S, "namespace": S,
    "apiGroup": S}}}


def crd(group, version, kind, plural, scope, properties, required=(), status=False):
    schema = {"type": "object", "properties": dict(properties)}
    if required:
        schema["required"] = list(required)
    if status:
        schema["properties"]["status"] = OPEN
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "%s.%s" % (plural, group)},
        "spec": {"group": group, "scope": scope,
                 "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                 "versions": [{"name": version, "served": True, "storage": True,
                               "subresources": {"status": {}} if status else {},
                               "schema": {"openAPIV3Schema": schema}}]},
    }


RBAC = "rbac.authorization.k8s.io"
# kubesim (as a real API server) refuses CRD groups without a dot, so policy/v1 and batch/v1
# objects are applied under these stand-in groups (same kind, same schema): REGROUP maps the
# real apiVersion to the stand-in one.
REGROUP = {"policy/v1": "policy.standin.kubesim/v1", "batch/v1": "batch.standin.kubesim/v1"}
STANDIN_CRDS = [
    crd(RBAC, "v1", "ClusterRole", "clusterroles", "Cluster",
        {"rules": {"type": "array", "items": POLICY_RULE}, "aggregationRule": OPEN}),
    crd(RBAC, "v1", "Role", "roles", "Namespaced", {"rules": {"type": "array", "items": POLICY_RULE}}),
    crd(RBAC, "v1", "ClusterRoleBinding", "clusterrolebindings", "Cluster",
        {"roleRef": ROLE_REF, "subjects": SUBJECTS}, required=["roleRef"]),
    crd(RBAC, "v1", "RoleBinding", "rolebindings", "Namespaced",
        {"roleRef": ROLE_REF, "subjects": SUBJECTS}, required=["roleRef"]),
    crd("policy.standin.kubesim", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "Namespaced",
        {"spec": {"type": "object", "properties": {
            "minAvailable": INT_OR_STR, "maxUnavailable": INT_OR_STR, "selector": LABEL_SELECTOR,
            "unhealthyPodEvictionPolicy": {"type": "string", "enum": ["IfHealthyBudget", "AlwaysAllow"]}}}},
        status=True),
    crd("batch.standin.kubesim", "v1", "Job", "jobs", "Namespaced",
        {"spec": {"type": "object", "required": ["template"], "properties": {
            "template": {"type": "object", "properties": {
                "metadata": {"type": "object", "properties": {"labels": MAP, "annotations": MAP}},
                "spec": OPEN}},
            "backoffLimit": I, "activeDeadlineSeconds": I, "ttlSecondsAfterFinished": I,
            "completions": I, "parallelism": I, "suspend": B, "selector": LABEL_SELECTOR,
            "manualSelector": B}}},
        status=True),
    crd("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors", "Namespaced",
        {"spec": {"type": "object", "required": ["selector"], "properties": {
            "selector": LABEL_SELECTOR, "jobLabel": S,
            "namespaceSelector": {"type": "object", "properties": {"any": B, "matchNames": STRS}},
            "endpoints": {"type": "array", "items": {"type": "object", "properties": {
                "port": S, "targetPort": INT_OR_STR, "path": S, "scheme": S, "interval": S,
                "scrapeTimeout": S, "honorLabels": B, "relabelings": {"type": "array", "items": OPEN},
                "metricRelabelings": {"type": "array", "items": OPEN}}}}}}}),
]
