"""The resource types kubesim serves, built-in and from CustomResourceDefinitions, and the
discovery documents (/api, /apis, /api/v1, /apis/{group}/{version}) derived from them."""
import threading

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class Resource:
    """One served resource type (group + plural), possibly in several versions."""

    def __init__(self, group, versions, plural, kind, namespaced, short_names=(), singular=None,
                 status=False, scale=None, verbs=ALL_VERBS, categories=(), crd=None,
                 storage_key=None, printer_columns=None, virtual=False):
        self.group = group
        self.versions = list(versions)      # served versions, preferred (storage) first
        self.plural = plural
        self.kind = kind
        self.namespaced = namespaced
        self.short_names = list(short_names)
        self.singular = singular or kind.lower()
        self.status = status                # has a /status subresource
        self.scale = scale                  # None or {specReplicasPath, statusReplicasPath, labelSelectorPath}
        self.verbs = list(verbs)
        self.categories = list(categories)
        self.crd = crd                      # the CRD object when this type comes from one
        # Two types may share storage (core/v1 and events.k8s.io/v1 Events): same storage_key.
        self.storage_key = storage_key or (group + "/" + plural)
        self.printer_columns = printer_columns  # {version: [additionalPrinterColumns]} for CRDs
        # Create-only types that are answered, never stored (SelfSubjectAccessReview, TokenReview, ...).
        self.virtual = virtual

    @property
    def key(self):
        return self.group + "/" + self.plural

    def api_version(self, version=None):
        v = version or self.versions[0]
        return v if not self.group else self.group + "/" + v

    def schema(self, version):
        """openAPIV3Schema of one CRD version, or None for built-in types."""
        if not self.crd:
            return None
        for v in self.crd["spec"].get("versions") or []:
            if v.get("name") == version:
                return (v.get("schema") or {}).get("openAPIV3Schema")
        return None

    def __repr__(self):
        return "<Resource %s>" % self.key


def builtin_resources():
    R = Resource
    return [
        R("", ["v1"], "namespaces", "Namespace", False, ["ns"], status=True,
          verbs=["create", "delete", "get", "list", "patch", "update", "watch"]),
        R("", ["v1"], "nodes", "Node", False, ["no"], status=True),
        R("", ["v1"], "services", "Service", True, ["svc"], status=True, categories=["all"],
          verbs=["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]),
        R("", ["v1"], "pods", "Pod", True, ["po"], status=True, categories=["all"]),
        R("", ["v1"], "events", "Event", True, ["ev"], storage_key="events"),
        R("", ["v1"], "configmaps", "ConfigMap", True, ["cm"]),
        R("", ["v1"], "secrets", "Secret", True),
        R("", ["v1"], "serviceaccounts", "ServiceAccount", True, ["sa"]),
        R("", ["v1"], "resourcequotas", "ResourceQuota", True, ["quota"], status=True),
        R("apps", ["v1"], "deployments", "Deployment", True, ["deploy"], status=True,
          scale={"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"},
          categories=["all"]),
        R("apps", ["v1"], "statefulsets", "StatefulSet", True, ["sts"], status=True,
          scale={"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"},
          categories=["all"]),
        R("discovery.k8s.io", ["v1"], "endpointslices", "EndpointSlice", True),
        R("events.k8s.io", ["v1"], "events", "Event", True, ["ev"], storage_key="events"),
        R("coordination.k8s.io", ["v1"], "leases", "Lease", True),
        R("autoscaling", ["v2"], "horizontalpodautoscalers", "HorizontalPodAutoscaler", True,
          ["hpa"], status=True, categories=["all"]),
        R("apiextensions.k8s.io", ["v1"], "customresourcedefinitions", "CustomResourceDefinition",
          False, ["crd", "crds"], status=True, categories=["api-extensions"]),
        R(RBAC, ["v1"], "clusterroles", "ClusterRole", False),
        R(RBAC, ["v1"], "clusterrolebindings", "ClusterRoleBinding", False),
        R(RBAC, ["v1"], "roles", "Role", True),
        R(RBAC, ["v1"], "rolebindings", "RoleBinding", True),
        R("policy", ["v1"], "poddisruptionbudgets", "PodDisruptionBudget", True, ["pdb"], status=True),
        R("batch", ["v1"], "jobs", "Job", True, status=True, categories=["all"]),
        R("authorization.k8s.io", ["v1"], "selfsubjectaccessreviews", "SelfSubjectAccessReview", False,
          verbs=["create"], virtual=True),
        R("authorization.k8s.io", ["v1"], "selfsubjectrulesreviews", "SelfSubjectRulesReview", False,
          verbs=["create"], virtual=True),
        R("authorization.k8s.io", ["v1"], "subjectaccessreviews", "SubjectAccessReview", False,
          verbs=["create"], virtual=True),
        R("authorization.k8s.io", ["v1"], "localsubjectaccessreviews", "LocalSubjectAccessReview", True,
          verbs=["create"], virtual=True),
        R("authentication.k8s.io", ["v1"], "selfsubjectreviews", "SelfSubjectReview", False,
          verbs=["create"], virtual=True),
        R("authentication.k8s.io", ["v1"], "tokenreviews", "TokenReview", False, verbs=["create"],
          virtual=True),
    ]


RBAC = "rbac.authorization.k8s.io"


class Registry:
    """Thread-safe table of served types. CRD changes add and remove entries."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_key = {}
        for r in builtin_resources():
            self.by_key[r.key + "@" + r.versions[0]] = r
        self.builtin_keys = set(self.by_key)

    def all(self):
        with self.lock:
            return list(self.by_key.values())

    def lookup(self, group, version, plural):
        with self.lock:
            for r in self.by_key.values():
                if r.group == group and r.plural == plural and version in r.versions:
                    return r
        return None

    def by_storage(self, storage_key):
        """The primary Resource for a storage key (core Events for events)."""
        with self.lock:
            for r in self.by_key.values():
                if r.storage_key == storage_key:
                    return r
        return None

    def by_kind(self, api_version, kind):
        group, _, version = api_version.rpartition("/")
        with self.lock:
            for r in self.by_key.values():
                if r.group == group and r.kind == kind and version in r.versions:
                    return r
        return None

    def set_crd(self, crd):
        """Register (or re-register) the type a CRD defines. Returns the Resource."""
        spec = crd["spec"]
        names = spec["names"]
        served = [v for v in spec.get("versions") or [] if v.get("served", True)]
        storage = [v for v in served if v.get("storage")] or served[:1]
        ordered = storage + [v for v in served if v not in storage]
        sub = {}
        for v in ordered[:1]:
            sub = v.get("subresources") or {}
        scale = sub.get("scale")
        res = Resource(spec["group"], [v["name"] for v in ordered], names["plural"], names["kind"],
                       spec.get("scope", "Namespaced") == "Namespaced", names.get("shortNames") or [],
                       names.get("singular") or names["kind"].lower(), status="status" in sub,
                       scale=scale, categories=names.get("categories") or [], crd=crd,
                       printer_columns={v["name"]: v.get("additionalPrinterColumns") or [] for v in ordered})
        with self.lock:
            self.by_key = {k: r for k, r in self.by_key.items() if r.crd is None or r.key != res.key}
            if ordered:
                self.by_key[res.key + "@crd"] = res
        return res

    def remove_crd(self, crd):
        key = crd["spec"]["group"] + "/" + crd["spec"]["names"]["plural"]
        with self.lock:
            self.by_key = {k: r for k, r in self.by_key.items() if r.crd is None or r.key != key}

    # ---- discovery documents ----

    def groups(self):
        """{group: [versions, preferred first]}, in a stable order (core group excluded)."""
        out = {}
        for r in self.all():
            if not r.group:
                continue
            vs = out.setdefault(r.group, [])
            for v in r.versions:
                if v not in vs:
                    vs.append(v)
        return out

    def api_group_list(self):
        groups = []
        for g, vs in sorted(self.groups().items()):
            groups.append({
                "name": g,
                "versions": [{"groupVersion": g + "/" + v, "version": v} for v in vs],
                "preferredVersion": {"groupVersion": g + "/" + vs[0], "version": vs[0]},
            })
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def api_group(self, group):
        vs = self.groups().get(group)
        if not vs:
            return None
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group,
                "versions": [{"groupVersion": group + "/" + v, "version": v} for v in vs],
                "preferredVersion": {"groupVersion": group + "/" + vs[0], "version": vs[0]}}

    def resource_list(self, group, version):
        rs = [r for r in self.all() if r.group == group and version in r.versions]
        if not rs:
            return None
        out = []
        for r in sorted(rs, key=lambda r: r.plural):
            e = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                 "kind": r.kind, "verbs": r.verbs}
            if r.short_names:
                e["shortNames"] = r.short_names
            if r.categories:
                e["categories"] = r.categories
            out.append(e)
            if r.status:
                out.append({"name": r.plural + "/status", "singularName": "", "namespaced": r.namespaced,
                            "kind": r.kind, "verbs": ["get", "patch", "update"]})
            if r.storage_key == "/pods":
                out.append({"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod",
                            "verbs": ["get"]})
            if r.storage_key == "/serviceaccounts":
                out.append({"name": "serviceaccounts/token", "singularName": "", "namespaced": True,
                            "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest",
                            "verbs": ["create"]})
            if r.scale:
                out.append({"name": r.plural + "/scale", "singularName": "", "namespaced": r.namespaced,
                            "group": "autoscaling", "version": "v1", "kind": "Scale",
                            "verbs": ["get", "patch", "update"]})
        gv = version if not group else group + "/" + version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}
