"""Authentication and authorization as kube-apiserver does them, for the identities kubesim knows:

- the admin token (user kubesim-admin in group system:masters: always allowed, as system:masters
  is by the real server's privileged-group authorizer);
- tokens of the `--rules` file (a static token file: user, optional groups, and kubesim's own
  per-token allow rules, which are unioned with RBAC like a second authorizer);
- ServiceAccount tokens issued by the TokenRequest API (serviceaccounts/{name}/token), JWTs
  naming the account and its uid: valid until they expire, or until the account (or the object
  the token is bound to) is deleted.

Authorization evaluates the RBAC objects in the store exactly as the RBAC authorizer does
(plugin/pkg/auth/authorizer/rbac): ClusterRoleBindings, then the RoleBindings of the request's
namespace (a RoleBinding to a ClusterRole grants it in that namespace only); rules match verbs,
apiGroups, resources ("*", "<res>/<sub>", "*/<sub>"), resourceNames and nonResourceURLs
(trailing "*" prefix match). Denials carry the real 403 message, plus "RBAC: ..." naming roles
that bindings reference but that do not exist."""
import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid

RBAC = "rbac.authorization.k8s.io"
API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
ISSUER = "https://kubernetes.default.svc.cluster.local"
SA_PREFIX = "system:serviceaccount:"
ADMIN_USER = "kubesim-admin"


class User:
    def __init__(self, name, groups=(), uid="", admin=False, token=None, extra=None):
        self.name = name
        self.groups = list(groups)
        self.uid = uid
        self.admin = admin          # system:masters: allowed everything, whatever RBAC says
        self.token = token          # the bearer token, for --rules lookups
        self.extra = extra or {}

    def info(self):
        out = {"username": self.name, "groups": self.groups}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = self.extra
        return out


def sa_groups(ns):
    return ["system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"]


def split_sa_username(name):
    """system:serviceaccount:NS:NAME -> (NS, NAME), else None."""
    if not name.startswith(SA_PREFIX):
        return None
    parts = name[len(SA_PREFIX):].split(":")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


class Attributes:
    """authorizer.Attributes: a resource request (verb, group, resource, subresource, namespace,
    name) or a non-resource one (verb, path)."""

    def __init__(self, verb, group="", resource="", subresource="", namespace="", name="", path=None):
        self.verb, self.group, self.resource, self.subresource = verb, group, resource, subresource
        self.namespace, self.name, self.path = namespace or "", name or "", path

    @property
    def resource_request(self):
        return self.path is None

    def combined(self):
        return self.resource + ("/" + self.subresource if self.subresource else "")


def forbidden_message(user_name, a, reason=""):
    """responsewriters.ForbiddenStatusError + apierrors.NewForbidden wording."""
    if not a.resource_request:
        msg = 'User "%s" cannot %s path "%s"' % (user_name, a.verb, a.path)
        if reason:
            msg += ": " + reason
        return "forbidden: " + msg
    where = (' in the namespace "%s"' % a.namespace) if a.namespace else " at the cluster scope"
    msg = 'User "%s" cannot %s resource "%s" in API group "%s"%s' % (user_name, a.verb, a.combined(), a.group,
                                                                     where)
    if reason:
        msg += ": " + reason
    qualified = a.resource + ("." + a.group if a.group else "")
    if a.name:
        return '%s "%s" is forbidden: %s' % (qualified, a.name, msg)
    return "%s is forbidden: %s" % (qualified, msg)


# ------------------------------------------------------------------ rule matching

def _has(lst, v):
    return v in (lst or [])


def rule_allows(rule, a):
    verbs = rule.get("verbs") or []
    if "*" not in verbs and a.verb not in verbs:
        return False
    if not a.resource_request:
        for url in rule.get("nonResourceURLs") or []:
            if url == "*" or url == a.path or (url.endswith("*") and a.path.startswith(url.rstrip("*"))):
                return True
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and a.group not in groups:
        return False
    combined = a.combined()
    ok = False
    for r in rule.get("resources") or []:
        if r == "*" or r == combined or (a.subresource and r == "*/" + a.subresource):
            ok = True
            break
    if not ok:
        return False
    names = rule.get("resourceNames") or []
    return not names or a.name in names


def applies_to(user, subject, binding_ns):
    kind = subject.get("kind")
    if kind == "User":
        return user.name == subject.get("name")
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return bool(ns) and user.name == "%s%s:%s" % (SA_PREFIX, ns, subject.get("name"))
    return False


def _describe_subject(s, binding_ns):
    if s.get("kind") == "ServiceAccount":
        return '%s "%s"' % (s["kind"], "%s/%s" % (s.get("name"), s.get("namespace") or binding_ns))
    return '%s "%s"' % (s.get("kind"), s.get("name"))


class RBACAuthorizer:
    def __init__(self, store, registry):
        self.store = store
        self.registry = registry

    def _res(self, plural):
        return self.registry.lookup(RBAC, "v1", plural)

    def _role_rules(self, kind, name, ns):
        """(rules, error message or None)"""
        if kind == "ClusterRole":
            role = self.store.peek(self._res("clusterroles"), None, name)
            if role is None:
                return [], 'clusterrole.rbac.authorization.k8s.io "%s" not found' % name
        elif kind == "Role":
            role = self.store.peek(self._res("roles"), ns, name)
            if role is None:
                return [], 'role.rbac.authorization.k8s.io "%s" not found' % name
        else:
            return [], 'unsupported role reference kind: "%s"' % kind
        return [r for r in role.get("rules") or [] if isinstance(r, dict)], None

    def visit(self, user, namespace):
        """Yield (source description, rules, error) for every binding that applies to user."""
        with self.store.lock:
            crbs = self.store.list_raw(self._res("clusterrolebindings"))[0]
            rbs = self.store.list_raw(self._res("rolebindings"), namespace)[0] if namespace else []
        for b in crbs:
            ref = b.get("roleRef") or {}
            for s in b.get("subjects") or []:
                if applies_to(user, s, ""):
                    rules, err = self._role_rules("ClusterRole", ref.get("name"), None)
                    src = 'ClusterRoleBinding "%s" of %s "%s" to %s' % (
                        b["metadata"]["name"], ref.get("kind"), ref.get("name"), _describe_subject(s, ""))
                    yield src, rules, err
                    break
        for b in rbs:
            ref = b.get("roleRef") or {}
            bns = b["metadata"]["namespace"]
            for s in b.get("subjects") or []:
                if applies_to(user, s, bns):
                    rules, err = self._role_rules(ref.get("kind"), ref.get("name"), bns)
                    src = 'RoleBinding "%s/%s" of %s "%s" to %s' % (
                        b["metadata"]["name"], bns, ref.get("kind"), ref.get("name"), _describe_subject(s, bns))
                    yield src, rules, err
                    break

    def authorize(self, user, a):
        """(allowed, reason) as the RBAC authorizer returns them."""
        errors = []
        for src, rules, err in self.visit(user, a.namespace if a.resource_request else ""):
            if err:
                errors.append(err)
            for r in rules:
                if rule_allows(r, a):
                    return True, "RBAC: allowed by " + src
        if not errors:
            return False, ""
        return False, "RBAC: " + (errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]")

    def rules_for(self, user, namespace):
        """(resourceRules, nonResourceRules, evaluationError) as SelfSubjectRulesReview shows them."""
        res_rules, nonres_rules, errors = [], [], []
        for _src, rules, err in self.visit(user, namespace):
            if err:
                errors.append(err)
            for r in rules:
                if r.get("nonResourceURLs"):
                    nonres_rules.append({"verbs": list(r.get("verbs") or []),
                                         "nonResourceURLs": list(r["nonResourceURLs"])})
                else:
                    out = {"verbs": list(r.get("verbs") or []), "apiGroups": list(r.get("apiGroups") or []),
                           "resources": list(r.get("resources") or [])}
                    if r.get("resourceNames"):
                        out["resourceNames"] = list(r["resourceNames"])
                    res_rules.append(out)
        return res_rules, nonres_rules, errors


# ------------------------------------------------------------------ ServiceAccount tokens

def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class TokenIssuer:
    """Issues and verifies the JWTs of the TokenRequest API (HS256 with a per-run key; the real
    server signs RS256 with its service-account key)."""

    def __init__(self, store, registry):
        self.store = store
        self.registry = registry
        self.key = secrets.token_bytes(32)
        self.kid = hashlib.sha256(self.key).hexdigest()[:16]

    def issue(self, sa, spec, bound=None):
        now = int(time.time())
        exp = now + int(spec.get("expirationSeconds") or 3600)
        md = sa["metadata"]
        k8s = {"namespace": md["namespace"], "serviceaccount": {"name": md["name"], "uid": md["uid"]}}
        if bound:
            k8s[bound["kind"].lower()] = {"name": bound["name"], "uid": bound["uid"]}
        claims = {"aud": list(spec.get("audiences") or [API_AUDIENCE]), "exp": exp, "iat": now, "iss": ISSUER,
                  "jti": str(uuid.uuid4()), "kubernetes.io": k8s, "nbf": now,
                  "sub": "%s%s:%s" % (SA_PREFIX, md["namespace"], md["name"])}
        header = {"alg": "HS256", "kid": self.kid, "typ": "JWT"}
        signing = _b64(json.dumps(header, separators=(",", ":")).encode()) + "." + \
            _b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = hmac.new(self.key, signing.encode(), hashlib.sha256).digest()
        return signing + "." + _b64(sig), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))

    def verify(self, token, audience=API_AUDIENCE):
        """The User a token authenticates, or None (bad signature, expired, wrong audience, account
        or bound object gone)."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            sig = _unb64(parts[2])
            want = hmac.new(self.key, (parts[0] + "." + parts[1]).encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(sig, want):
                return None
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, TypeError):
            return None
        if claims.get("exp", 0) <= time.time() or audience not in (claims.get("aud") or []):
            return None
        k8s = claims.get("kubernetes.io") or {}
        ns, sa = k8s.get("namespace"), (k8s.get("serviceaccount") or {})
        cur = self.store.peek(self.registry.lookup("", "v1", "serviceaccounts"), ns, sa.get("name"))
        if cur is None or cur["metadata"]["uid"] != sa.get("uid") or cur["metadata"].get("deletionTimestamp"):
            return None
        extra = {}
        for kind, plural in (("pod", "pods"), ("secret", "secrets"), ("node", "nodes")):
            ref = k8s.get(kind)
            if ref:
                obj = self.store.peek(self.registry.lookup("", "v1", plural), ns if kind != "node" else None,
                                      ref.get("name"))
                if obj is None or obj["metadata"]["uid"] != ref.get("uid"):
                    return None
                if kind == "pod":
                    extra = {"authentication.kubernetes.io/pod-name": [ref["name"]],
                             "authentication.kubernetes.io/pod-uid": [ref["uid"]]}
        return User("%s%s:%s" % (SA_PREFIX, ns, sa["name"]), sa_groups(ns), sa.get("uid", ""), extra=extra)


# ------------------------------------------------------------------ bootstrap policy

def _meta(name):
    return {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}}


def bootstrap_policy():
    """The default ClusterRoles and ClusterRoleBindings a new cluster has, for what kubesim serves
    (kube-apiserver's bootstrappolicy, abridged: no admin/edit/view aggregation, no controller roles)."""
    crs = [
        {"metadata": _meta("cluster-admin"), "rules": [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]}]},
        {"metadata": _meta("system:discovery"), "rules": [
            {"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                                 "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}]},
        {"metadata": _meta("system:basic-user"), "rules": [
            {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews",
                                                                 "selfsubjectrulesreviews"], "verbs": ["create"]},
            {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}]},
        {"metadata": _meta("system:public-info-viewer"), "rules": [
            {"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}]},
    ]
    grp = lambda n: {"apiGroup": RBAC, "kind": "Group", "name": n}  # noqa: E731
    crbs = [
        ("cluster-admin", [grp("system:masters")]),
        ("system:discovery", [grp("system:authenticated")]),
        ("system:basic-user", [grp("system:authenticated")]),
        ("system:public-info-viewer", [grp("system:authenticated"), grp("system:unauthenticated")]),
    ]
    out = [dict(apiVersion=RBAC + "/v1", kind="ClusterRole", **c) for c in crs]
    for name, subjects in crbs:
        out.append({"apiVersion": RBAC + "/v1", "kind": "ClusterRoleBinding", "metadata": _meta(name),
                    "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name}, "subjects": subjects})
    return out

