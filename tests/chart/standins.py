"""Stand-in CRD for the one kind the chart can render that the test cluster's API server does not
serve by itself: the Prometheus Operator's ServiceMonitor (a CRD in real clusters too, installed
with the operator). Its schema follows the operator's type for every field the chart can set at
that level, so strict validation rejects unknown fields as the operator's CRD would."""

S = {"type": "string"}
B = {"type": "boolean"}
STRS = {"type": "array", "items": S}
MAP = {"type": "object", "additionalProperties": S}
INT_OR_STR = {"x-kubernetes-int-or-string": True}
OPEN = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
LABEL_SELECTOR = {"type": "object", "properties": {
    "matchLabels": MAP,
    "matchExpressions": {"type": "array", "items": {"type": "object", "required": ["key", "operator"],
                                                    "properties": {"key": S, "operator": S, "values": STRS}}}}}


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


STANDIN_CRDS = [
    crd("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors", "Namespaced",
        {"spec": {"type": "object", "required": ["selector"], "properties": {
            "selector": LABEL_SELECTOR, "jobLabel": S,
            "namespaceSelector": {"type": "object", "properties": {"any": B, "matchNames": STRS}},
            "endpoints": {"type": "array", "items": {"type": "object", "properties": {
                "port": S, "targetPort": INT_OR_STR, "path": S, "scheme": S, "interval": S,
                "scrapeTimeout": S, "honorLabels": B, "relabelings": {"type": "array", "items": OPEN},
                "metricRelabelings": {"type": "array", "items": OPEN}}}}}}}),
]
