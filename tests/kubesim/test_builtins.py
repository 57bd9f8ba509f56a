"""kubesim's built-in rbac.authorization.k8s.io/v1, policy/v1 and batch/v1 kinds, the Job and
disruption controllers, ServiceAccount tokens from the TokenRequest API and RBAC authorization,
checked with the real kubectl and python3-kubernetes."""
import json
import os
import subprocess
import time

import pytest
import yaml

from simctl import KUBECTL, wait_for

RBAC = "rbac.authorization.k8s.io"


def kubectl_ok(sim, *args, input=None):
    return sim.kubectl(*args, input=input).stdout


def kubectl_fail(sim, *args, input=None):
    r = sim.kubectl(*args, input=input, check=False)
    assert r.returncode != 0, "kubectl %s succeeded: %s" % (" ".join(args), r.stdout)
    return r.stderr


def apply(sim, ns, *objs):
    return kubectl_ok(sim, "apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(objs))


class TokenKubectl:
    """kubectl with a kubeconfig whose user is a bearer token (no admin rights)."""

    def __init__(self, sim, token, name):
        self.sim, self.token = sim, token
        with open(sim.kubeconfig) as f:
            kc = yaml.safe_load(f)
        for u in kc["users"]:
            u["user"] = {"token": token}
        self.path = os.path.join(sim.state_dir, "kubeconfig-" + name)
        with open(self.path, "w") as f:
            yaml.safe_dump(kc, f)
        self.cache = os.path.join(sim.state_dir, "kubectl-cache-" + name)

    def __call__(self, *args, input=None):
        return subprocess.run([KUBECTL, "--kubeconfig", self.path, "--cache-dir", self.cache] + list(args),
                              input=input, capture_output=True, text=True, timeout=60, env=self.sim.kubectl_env())


def sa_token(sim, ns, sa, *extra):
    return kubectl_ok(sim, "create", "token", sa, "-n", ns, *extra).strip()


def role(name, rules, kind="Role"):
    return {"apiVersion": RBAC + "/v1", "kind": kind, "metadata": {"name": name}, "rules": rules}


def binding(name, ref_kind, ref_name, subjects, kind="RoleBinding"):
    return {"apiVersion": RBAC + "/v1", "kind": kind, "metadata": {"name": name},
            "roleRef": {"apiGroup": RBAC, "kind": ref_kind, "name": ref_name}, "subjects": subjects}


def sa_subject(name, ns=None):
    s = {"kind": "ServiceAccount", "name": name}
    if ns:
        s["namespace"] = ns
    return s


def job(name, args, image="kubesim/sh", restart="Never", **spec):
    s = {"template": {"spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 1,
                               "containers": [{"name": "c", "image": image, "args": args}]}}}
    s.update(spec)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": s}


def deployment(name, replicas, image="kubesim/sleep", args=("600",)):
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "c", "image": image, "args": list(args)}]}}}}


def job_path(ns, name=""):
    return "/apis/batch/v1/namespaces/%s/jobs%s" % (ns, "/" + name if name else "")


def conditions(obj):
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}


def job_pods(sim, ns, name):
    return sim.get("/api/v1/namespaces/%s/pods?labelSelector=batch.kubernetes.io/job-name%%3D%s" % (ns, name))["items"]


# ------------------------------------------------------------------ discovery

def test_discovery_lists_the_new_kinds(cluster):
    out = kubectl_ok(cluster, "api-resources", "-o", "wide")
    for line in ("clusterrolebindings", "clusterroles", "rolebindings", "roles", "poddisruptionbudgets",
                 "jobs", "selfsubjectaccessreviews", "selfsubjectrulesreviews", "subjectaccessreviews",
                 "localsubjectaccessreviews", "selfsubjectreviews", "tokenreviews"):
        assert any(l.split()[0] == line for l in out.splitlines()), (line, out)
    pdb = next(l for l in out.splitlines() if l.startswith("poddisruptionbudgets"))
    assert "pdb" in pdb.split() and "policy/v1" in pdb
    core = cluster.get("/api/v1")["resources"]
    tok = next(r for r in core if r["name"] == "serviceaccounts/token")
    assert (tok["group"], tok["version"], tok["kind"], tok["verbs"]) == ("authentication.k8s.io", "v1",
                                                                        "TokenRequest", ["create"])
    index = cluster.get("/openapi/v3")["paths"]
    for gv in ("apis/rbac.authorization.k8s.io/v1", "apis/policy/v1", "apis/batch/v1"):
        assert gv in index, sorted(index)
    # the bootstrap policy of a new cluster
    crbs = kubectl_ok(cluster, "get", "clusterrolebindings", "-o", "name").split()
    for name in ("cluster-admin", "system:discovery", "system:basic-user", "system:public-info-viewer"):
        assert "clusterrolebinding.rbac.authorization.k8s.io/" + name in crbs


# ------------------------------------------------------------------ RBAC objects

def test_rbac_objects_apply_get_and_validation(cluster, ns):
    kubectl_ok(cluster, "create", "sa", "bot", "-n", ns)
    out = apply(cluster, ns, role("reader", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
                binding("reader", "Role", "reader", [sa_subject("bot"), {"kind": "User", "name": "alice"}]))
    assert "role.rbac.authorization.k8s.io/reader created" in out
    assert "rolebinding.rbac.authorization.k8s.io/reader created" in out
    b = cluster.get("/apis/%s/v1/namespaces/%s/rolebindings/reader" % (RBAC, ns))
    # SetDefaults_Subject: User and Group get the RBAC group, ServiceAccount none
    assert b["subjects"] == [{"kind": "ServiceAccount", "name": "bot"},
                             {"kind": "User", "name": "alice", "apiGroup": RBAC}]
    wide = kubectl_ok(cluster, "get", "rolebinding", "reader", "-n", ns, "-o", "wide")
    assert "Role/reader" in wide and "alice" in wide and "/bot" in wide, wide
    # roleRef is immutable
    err = kubectl_fail(cluster, "apply", "-n", ns, "-f", "-", input=yaml.safe_dump(
        binding("reader", "ClusterRole", "view", [sa_subject("bot")])))
    assert 'roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", ' \
           'Name:"view"}: cannot change roleRef' in err, err
    cases = [
        (role("norules", [{"apiGroups": [""], "resources": ["pods"]}]),
         "rules[0].verbs: Required value: verbs must contain at least one value"),
        (role("nogroups", [{"resources": ["pods"], "verbs": ["get"]}]),
         "rules[0].apiGroups: Required value: resource rules must supply at least one api group"),
        (role("urls", [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]),
         'rules[0].nonResourceURLs: Invalid value: []string{"/metrics"}: namespaced rules cannot apply to '
         "non-resource URLs"),
        (binding("badkind", "Secret", "x", []),
         'roleRef.kind: Unsupported value: "Secret": supported values: "Role", "ClusterRole"'),
        (binding("crb-to-role", "Role", "reader", [], kind="ClusterRoleBinding"),
         'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"'),
        (binding("crb-sa", "ClusterRole", "view", [sa_subject("bot")], kind="ClusterRoleBinding"),
         "subjects[0].namespace: Required value"),
        (binding("badsub", "Role", "reader", [{"kind": "Robot", "name": "r"}]),
         'subjects[0].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"'),
    ]
    for obj, message in cases:
        err = kubectl_fail(cluster, "apply", "-n", ns, "-f", "-", input=yaml.safe_dump(obj))
        assert message in err, (obj["metadata"]["name"], err)
    ref = {"apiGroup": RBAC, "kind": "Role", "name": "r"}
    code, body = cluster.request("POST", "/apis/%s/v1/namespaces/%s/rolebindings" % (RBAC, ns),
                                 {"apiVersion": RBAC + "/v1", "kind": "RoleBinding",
                                  "metadata": {"name": "noref"}, "roleRef": dict(ref, apiGroup="")})
    assert code == 422 and body["details"]["causes"][0]["field"] == "roleRef.apiGroup", body
    # kubectl sends these bindings as protobuf (application/vnd.kubernetes.protobuf)
    kubectl_ok(cluster, "create", "rolebinding", "pb", "-n", ns, "--role=reader", "--user=u", "--group=g",
               "--serviceaccount=%s:bot" % ns)
    b = cluster.get("/apis/%s/v1/namespaces/%s/rolebindings/pb" % (RBAC, ns))
    assert b["roleRef"] == {"apiGroup": RBAC, "kind": "Role", "name": "reader"}
    assert b["subjects"] == [{"apiGroup": RBAC, "kind": "User", "name": "u"},
                             {"apiGroup": RBAC, "kind": "Group", "name": "g"},
                             {"kind": "ServiceAccount", "name": "bot", "namespace": ns}], b
    kubectl_ok(cluster, "create", "clusterrolebinding", "pb-" + ns, "--clusterrole=cluster-admin", "--group=g")
    assert cluster.get("/apis/%s/v1/clusterrolebindings/pb-%s" % (RBAC, ns))["subjects"] == [
        {"apiGroup": RBAC, "kind": "Group", "name": "g"}]
    kubectl_ok(cluster, "delete", "clusterrolebinding", "pb-" + ns)
    # RBAC names are path segments (system:... names are fine), not DNS names
    kubectl_ok(cluster, "create", "clusterrole", "test:%s" % ns, "--verb=get", "--resource=pods")
    kubectl_ok(cluster, "delete", "clusterrole", "test:%s" % ns)


def test_cluster_role_aggregation(cluster, ns):
    kubectl_ok(cluster, "apply", "-f", "-", input=yaml.safe_dump_all([
        {"apiVersion": RBAC + "/v1", "kind": "ClusterRole", "metadata": {"name": "agg-" + ns},
         "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg-to": ns}}]}, "rules": []},
        {"apiVersion": RBAC + "/v1", "kind": "ClusterRole",
         "metadata": {"name": "part-" + ns, "labels": {"agg-to": ns}},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]}]))
    path = "/apis/%s/v1/clusterroles/agg-%s" % (RBAC, ns)
    wait_for(lambda: cluster.get(path).get("rules") == [{"apiGroups": [""], "resources": ["configmaps"],
                                                         "verbs": ["list"]}], timeout=10, what="aggregated rules")
    kubectl_ok(cluster, "delete", "clusterrole", "part-" + ns)
    wait_for(lambda: not cluster.get(path).get("rules"), timeout=10, what="rules gone with the part")
    kubectl_ok(cluster, "delete", "clusterrole", "agg-" + ns)


# ------------------------------------------------------------------ tokens and RBAC

def test_token_request_authenticates_the_service_account(cluster, ns):
    kubectl_ok(cluster, "create", "sa", "bot", "-n", ns)
    # new namespaces get their "default" ServiceAccount, as from the ServiceAccount controller
    assert cluster.exists("/api/v1/namespaces/%s/serviceaccounts/default" % ns)
    kc = TokenKubectl(cluster, sa_token(cluster, ns, "bot"), ns + "-bot")
    who = kc("auth", "whoami", "-o", "json")
    assert who.returncode == 0, who.stderr
    info = json.loads(who.stdout)["status"]["userInfo"]
    assert info["username"] == "system:serviceaccount:%s:bot" % ns
    assert info["groups"] == ["system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"]
    # authenticated, but granted nothing but discovery and self-reviews
    r = kc("get", "pods", "-n", ns)
    assert r.returncode == 1
    assert ('Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:%s:bot" cannot list '
            'resource "pods" in API group "" in the namespace "%s"' % (ns, ns)) in r.stderr, r.stderr
    code, st = cluster.request("GET", "/api/v1/namespaces/%s/pods/x" % ns, token=kc.token)
    assert code == 403 and st["reason"] == "Forbidden" and st["details"] == {"name": "x", "kind": "pods"}, st
    assert st["message"] == ('pods "x" is forbidden: User "system:serviceaccount:%s:bot" cannot get resource '
                             '"pods" in API group "" in the namespace "%s"' % (ns, ns))
    code, st = cluster.request("GET", "/apis", token=kc.token)
    assert code == 200 and st["kind"] == "APIGroupList"
    # the TokenRequest object
    code, tr = cluster.request("POST", "/api/v1/namespaces/%s/serviceaccounts/bot/token" % ns,
                               {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                "spec": {"expirationSeconds": 700}})
    assert code == 201 and tr["kind"] == "TokenRequest" and tr["spec"]["expirationSeconds"] == 700, tr
    assert tr["spec"]["audiences"] == ["https://kubernetes.default.svc.cluster.local"]
    assert tr["status"]["token"].count(".") == 2 and tr["status"]["expirationTimestamp"].endswith("Z")
    code, st = cluster.request("POST", "/api/v1/namespaces/%s/serviceaccounts/bot/token" % ns,
                               {"spec": {"expirationSeconds": 60}})
    assert code == 422 and "may not specify a duration less than 10 minutes" in st["message"], st
    # the account must exist
    err = kubectl_fail(cluster, "create", "token", "nobody", "-n", ns)
    assert 'serviceaccounts "nobody" not found' in err, err
    # a token for another audience is not one for the API server
    other = sa_token(cluster, ns, "bot", "--audience", "vault")
    assert cluster.request("GET", "/api/v1/namespaces/%s/pods" % ns, token=other)[0] == 401
    # TokenReview
    code, rev = cluster.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": kc.token}})
    assert code == 201 and rev["status"]["authenticated"] is True
    assert rev["status"]["user"]["username"] == "system:serviceaccount:%s:bot" % ns
    # deleting the account invalidates its tokens
    kubectl_ok(cluster, "delete", "sa", "bot", "-n", ns)
    assert cluster.request("GET", "/apis", token=kc.token)[0] == 401
    kubectl_ok(cluster, "create", "sa", "bot", "-n", ns)
    assert cluster.request("GET", "/apis", token=kc.token)[0] == 401, "a new account of the same name"
    assert cluster.request("GET", "/apis", token="not-a-token")[0] == 401


def test_rbac_authorizes_service_account_tokens(cluster, ns):
    other = ns + "-x"
    kubectl_ok(cluster, "create", "namespace", other)
    for n in (ns, other):
        kubectl_ok(cluster, "create", "sa", "bot", "-n", n)
    me = "system:serviceaccount:%s:bot" % ns
    kc = TokenKubectl(cluster, sa_token(cluster, ns, "bot"), ns + "-rbac")

    def can(*args):
        return cluster.request(*args, token=kc.token)[0]
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "one"}, "data": {}}
    for n in (ns, other):
        cluster.create("/api/v1/namespaces/%s/configmaps" % n, cm)
    cluster.create("/api/v1/namespaces/%s/configmaps" % ns, dict(cm, metadata={"name": "two"}))
    assert can("GET", "/api/v1/namespaces/%s/configmaps" % ns) == 403
    # a Role bound by a RoleBinding: that namespace only; resourceNames: those objects only
    apply(cluster, ns, role("cm", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"],
                                    "resourceNames": ["one"]}]),
          binding("cm", "Role", "cm", [sa_subject("bot")]))
    wait_for(lambda: can("GET", "/api/v1/namespaces/%s/configmaps/one" % ns) == 200, what="the grant")
    assert can("GET", "/api/v1/namespaces/%s/configmaps/two" % ns) == 403
    assert can("GET", "/api/v1/namespaces/%s/configmaps/one" % other) == 403
    assert can("GET", "/api/v1/namespaces/%s/configmaps" % ns) == 403           # a list names no object
    # a list of one name (fieldSelector metadata.name=one) is authorized as a request for that name
    assert can("GET", "/api/v1/namespaces/%s/configmaps?fieldSelector=metadata.name%%3Done" % ns) == 200
    assert can("GET", "/api/v1/namespaces/%s/configmaps?fieldSelector=metadata.name%%3Dtwo" % ns) == 403
    # a RoleBinding to a ClusterRole grants it in the binding's namespace only
    kubectl_ok(cluster, "apply", "-f", "-", input=yaml.safe_dump(role(
        "lister-" + ns, [{"apiGroups": ["", "apps"], "resources": ["configmaps", "deployments/scale"],
                          "verbs": ["list", "get", "patch"]}], kind="ClusterRole")))
    apply(cluster, other, binding("lister", "ClusterRole", "lister-" + ns, [sa_subject("bot", ns)]))
    wait_for(lambda: can("GET", "/api/v1/namespaces/%s/configmaps" % other) == 200, what="the grant")
    assert can("GET", "/api/v1/namespaces/%s/configmaps" % ns) == 403
    assert can("GET", "/api/v1/configmaps") == 403                              # not cluster-wide
    # subresources: deployments/scale is not deployments
    cluster.create("/apis/apps/v1/namespaces/%s/deployments" % other, deployment("web", 0))
    assert can("GET", "/apis/apps/v1/namespaces/%s/deployments/web/scale" % other) == 200
    assert can("GET", "/apis/apps/v1/namespaces/%s/deployments/web" % other) == 403
    code, body = cluster.request("PATCH", "/apis/apps/v1/namespaces/%s/deployments/web/scale" % other,
                                 {"spec": {"replicas": 0}}, "application/merge-patch+json", token=kc.token)
    assert code == 200, body
    code, st = cluster.request("PATCH", "/apis/apps/v1/namespaces/%s/deployments/web" % other,
                               {"spec": {"replicas": 0}}, "application/merge-patch+json", token=kc.token)
    assert code == 403 and st["message"] == (
        'deployments.apps "web" is forbidden: User "%s" cannot patch resource "deployments" in API group "apps" '
        'in the namespace "%s"' % (me, other)), st
    # a ClusterRoleBinding grants cluster-wide; "*" verbs and apiGroups, "*/status" subresources
    kubectl_ok(cluster, "apply", "-f", "-", input=yaml.safe_dump_all([
        role("star-" + ns, [{"apiGroups": ["*"], "resources": ["leases", "*/status"], "verbs": ["*"]},
                            {"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]}], kind="ClusterRole"),
        binding("star-" + ns, "ClusterRole", "star-" + ns, [sa_subject("bot", ns)], kind="ClusterRoleBinding")]))
    wait_for(lambda: can("GET", "/apis/coordination.k8s.io/v1/leases") == 200, what="the cluster-wide grant")
    assert can("GET", "/api/v1/namespaces/%s/pods/nope/status" % ns) == 404   # allowed, then not found
    assert can("GET", "/api/v1/namespaces/%s/pods/nope" % ns) == 403
    code, st = cluster.request("GET", "/openapi/v3", token=kc.token)
    assert code == 200
    kubectl_ok(cluster, "delete", "clusterrolebinding", "star-" + ns)
    kubectl_ok(cluster, "delete", "clusterrole", "star-" + ns, "lister-" + ns)
    wait_for(lambda: can("GET", "/apis/coordination.k8s.io/v1/leases") == 403, what="the grant withdrawn")
    kubectl_ok(cluster, "delete", "namespace", other, "--wait=false")


def test_bindings_that_do_not_grant(cluster, ns):
    """What the stand-in --rules could not catch: a subject in the wrong namespace, a roleRef to a
    role that does not exist, a Role of another namespace."""
    other = ns + "-y"
    kubectl_ok(cluster, "create", "namespace", other)
    kubectl_ok(cluster, "create", "sa", "bot", "-n", ns)
    kc = TokenKubectl(cluster, sa_token(cluster, ns, "bot"), ns + "-nogrant")
    me = "system:serviceaccount:%s:bot" % ns
    pods = "/api/v1/namespaces/%s/pods" % ns
    r = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    apply(cluster, ns, role("pods", r))
    apply(cluster, other, role("pods-there", r))
    # the subject names bot in another namespace
    apply(cluster, ns, binding("elsewhere", "Role", "pods", [sa_subject("bot", other)]))
    # a ServiceAccount subject without a namespace is the binding's namespace: here, the other one
    apply(cluster, other, binding("implicit", "Role", "pods-there", [sa_subject("bot")]))
    # the roleRef names a Role that is in another namespace (a RoleBinding refers to its own)
    apply(cluster, ns, binding("ref-other-ns", "Role", "pods-there", [sa_subject("bot")]))
    time.sleep(0.3)
    code, st = cluster.request("GET", pods, token=kc.token)
    assert code == 403, st
    assert st["message"] == ('pods is forbidden: User "%s" cannot list resource "pods" in API group "" in the '
                             'namespace "%s": RBAC: role.rbac.authorization.k8s.io "pods-there" not found'
                             % (me, ns)), st
    assert cluster.request("GET", "/api/v1/namespaces/%s/pods" % other, token=kc.token)[0] == 403
    # the right binding
    apply(cluster, ns, binding("right", "Role", "pods", [sa_subject("bot")]))
    wait_for(lambda: cluster.request("GET", pods, token=kc.token)[0] == 200, what="the grant")
    r2 = kc("auth", "can-i", "list", "pods", "-n", ns)
    assert (r2.returncode, r2.stdout.strip()) == (0, "yes"), r2.stderr
    kubectl_ok(cluster, "delete", "namespace", other, "--wait=false")


def test_kubectl_auth_can_i_and_access_reviews(cluster, ns):
    kubectl_ok(cluster, "create", "sa", "bot", "-n", ns)
    me = "system:serviceaccount:%s:bot" % ns
    apply(cluster, ns, role("scaler", [{"apiGroups": ["apps"], "resources": ["deployments/scale"],
                                        "verbs": ["get", "patch"]}]),
          binding("scaler", "Role", "scaler", [sa_subject("bot")]),
          role("group", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]),
          binding("group", "Role", "group", [{"kind": "Group", "name": "team", "apiGroup": RBAC}]))

    def can_i(*args):
        r = cluster.kubectl("auth", "can-i", *args, check=False)
        assert r.returncode in (0, 1), r.stderr
        return (r.returncode, r.stdout.strip())
    assert can_i("patch", "deployments.apps", "--subresource=scale", "-n", ns, "--as", me) == (0, "yes")
    assert can_i("patch", "deployments.apps", "-n", ns, "--as", me) == (1, "no")
    assert can_i("patch", "deployments.apps", "--subresource=scale", "-n", "default", "--as", me) == (1, "no")
    assert can_i("get", "secrets", "-n", ns, "--as", "carol") == (1, "no")
    assert can_i("get", "secrets", "-n", ns, "--as", "carol", "--as-group", "team") == (0, "yes")
    assert can_i("delete", "nodes", "--as", "root", "--as-group", "system:masters") == (0, "yes")
    assert can_i("get", "secrets", "-n", ns) == (0, "yes")          # the admin
    out = kubectl_ok(cluster, "auth", "can-i", "--list", "-n", ns, "--as", me)
    assert "deployments.apps/scale" in out and "[get patch]" in out, out
    # with the account's own token: SelfSubjectAccessReview, impersonation refused
    kc = TokenKubectl(cluster, sa_token(cluster, ns, "bot"), ns + "-cani")
    r = kc("auth", "can-i", "get", "deployments.apps/web", "--subresource=scale", "-n", ns)
    assert (r.returncode, r.stdout.strip()) == (0, "yes"), r.stderr
    r = kc("auth", "can-i", "get", "secrets", "-n", ns)
    assert (r.returncode, r.stdout.strip()) == (1, "no"), r.stderr
    r = kc("get", "pods", "-n", ns, "--as", "system:admin")
    assert r.returncode == 1 and ('users "system:admin" is forbidden: User "%s" cannot impersonate resource "users" '
                                  'in API group "" at the cluster scope' % me) in r.stderr, r.stderr
    # the review objects
    code, rev = cluster.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": ns, "verb": "patch", "group": "apps",
                                        "resource": "deployments", "subresource": "scale"}}}, token=kc.token)
    assert code == 201 and rev["status"] == {
        "allowed": True, "reason": 'RBAC: allowed by RoleBinding "scaler/%s" of Role "scaler" to ServiceAccount '
                                   '"bot/%s"' % (ns, ns)}, rev
    code, rev = cluster.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "dave", "groups": ["team"], "resourceAttributes": {"namespace": ns, "verb": "get",
                                                                             "resource": "secrets"}}})
    assert code == 201 and rev["status"]["allowed"] is True, rev
    code, rev = cluster.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "dave", "resourceAttributes": {"namespace": ns, "verb": "get", "resource": "secrets"}}})
    assert code == 201 and rev["status"] == {"allowed": False}, rev
    code, st = cluster.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {"user": "dave"}},
        token=kc.token)
    assert code == 403 and "cannot create resource \"subjectaccessreviews\"" in st["message"], st
    code, st = cluster.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {}})
    assert code == 422 and "exactly one of nonResourceAttributes or resourceAttributes" in st["message"], st


def test_rules_file_tokens_still_work_and_union_with_rbac(make_sim, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"tokens": {"limited": {"user": "system:serviceaccount:hf:hf", "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"], "namespaces": ["default"]}]}}}))
    sim = make_sim(rules=str(rules))
    assert sim.request("GET", "/api/v1/namespaces/default/configmaps", token="limited")[0] == 200
    code, st = sim.request("GET", "/api/v1/namespaces/kube-system/configmaps", token="limited")
    assert code == 403 and st["message"] == (
        'configmaps is forbidden: User "system:serviceaccount:hf:hf" cannot list resource "configmaps" in API '
        'group "" in the namespace "kube-system"'), st
    assert sim.request("GET", "/apis", token="limited")[0] == 200    # system:discovery, as any authenticated user
    sim.kubectl("create", "namespace", "hf")
    sim.kubectl("create", "rolebinding", "v", "-n", "kube-system", "--clusterrole=cr",
                "--serviceaccount=hf:hf")
    sim.kubectl("create", "clusterrole", "cr", "--verb=list", "--resource=configmaps")
    wait_for(lambda: sim.request("GET", "/api/v1/namespaces/kube-system/configmaps", token="limited")[0] == 200,
             what="RBAC grants a rules-file user too")
    assert sim.request("GET", "/api/v1/namespaces/hf/configmaps", token="limited")[0] == 403


# ------------------------------------------------------------------ Jobs

def test_job_runs_to_complete_with_kubectl_wait(cluster, ns):
    apply(cluster, ns, job("hello", ["-c", "echo hello from $POD_NAME"]))
    r = cluster.kubectl("wait", "--for=condition=complete", "job/hello", "-n", ns, "--timeout=30s", check=False)
    assert r.returncode == 0 and "job.batch/hello condition met" in r.stdout, (r.stdout, r.stderr)
    j = cluster.get(job_path(ns, "hello"))
    uid = j["metadata"]["uid"]
    assert j["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert (j["spec"]["backoffLimit"], j["spec"]["completions"], j["spec"]["parallelism"]) == (6, 1, 1)
    st = j["status"]
    assert (st["succeeded"], st["ready"], st["terminating"], st["uncountedTerminatedPods"]) == (1, 0, 0, {}), st
    assert "active" not in st and "failed" not in st and st["startTime"] <= st["completionTime"]
    conds = [(c["type"], c["status"], c["reason"]) for c in st["conditions"]]
    assert conds == [("SuccessCriteriaMet", "True", "CompletionsReached"), ("Complete", "True", "CompletionsReached")]
    (pod,) = job_pods(cluster, ns, "hello")
    labels = pod["metadata"]["labels"]
    assert labels["job-name"] == "hello" and labels["controller-uid"] == uid
    assert labels["batch.kubernetes.io/controller-uid"] == uid
    ref = pod["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"], ref["blockOwnerDeletion"]) == \
        ("Job", "hello", uid, True, True)
    assert pod["status"]["phase"] == "Succeeded" and not pod["metadata"].get("finalizers")
    assert pod["spec"]["serviceAccountName"] == "default"
    assert cluster.kubectl("logs", "-n", ns, "job/hello").stdout.strip() == "hello from " + pod["metadata"]["name"]
    row = kubectl_ok(cluster, "get", "job", "hello", "-n", ns).splitlines()[1].split()
    assert row[:3] == ["hello", "Complete", "1/1"], row
    assert "Completed" in kubectl_ok(cluster, "get", "pods", "-n", ns)
    reasons = [e["reason"] for e in cluster.get("/api/v1/namespaces/%s/events" % ns)["items"]]
    assert "SuccessfulCreate" in reasons and "Completed" in reasons


def test_job_backoff_limit(cluster, ns):
    apply(cluster, ns, job("bad", ["-c", "exit 3"], backoffLimit=1))
    r = cluster.kubectl("wait", "--for=condition=failed", "job/bad", "-n", ns, "--timeout=30s", check=False)
    assert r.returncode == 0, r.stderr
    st = cluster.get(job_path(ns, "bad"))["status"]
    assert st["failed"] == 2 and "succeeded" not in st and "completionTime" not in st, st
    c = conditions({"status": st})
    assert c["FailureTarget"]["reason"] == c["Failed"]["reason"] == "BackoffLimitExceeded"
    assert c["Failed"]["message"] == "Job has reached the specified backoff limit"
    pods = job_pods(cluster, ns, "bad")
    assert len(pods) == 2 and all(p["status"]["phase"] == "Failed" for p in pods)
    assert all(p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3 for p in pods)
    # restartPolicy OnFailure: the container restarts count against the limit
    apply(cluster, ns, job("bad2", ["-c", "exit 1"], restart="OnFailure", backoffLimit=1))
    cluster.kubectl("wait", "--for=condition=failed", "job/bad2", "-n", ns, "--timeout=30s")
    assert conditions(cluster.get(job_path(ns, "bad2")))["Failed"]["reason"] == "BackoffLimitExceeded"


def test_job_active_deadline_and_ttl(cluster, ns):
    apply(cluster, ns, job("slow", ["60"], image="kubesim/sleep", activeDeadlineSeconds=2))
    wait_for(lambda: job_pods(cluster, ns, "slow"), what="the pod")
    r = cluster.kubectl("wait", "--for=condition=failed", "job/slow", "-n", ns, "--timeout=30s", check=False)
    assert r.returncode == 0, r.stderr
    j = cluster.get(job_path(ns, "slow"))
    c = conditions(j)
    assert c["Failed"]["reason"] == "DeadlineExceeded"
    assert c["Failed"]["message"] == "Job was active longer than specified deadline"
    assert "active" not in j["status"] and j["status"]["failed"] == 1
    assert all(p["status"]["phase"] == "Failed" for p in job_pods(cluster, ns, "slow"))
    # ttlSecondsAfterFinished: the Job and its pods are deleted that long after it finished
    apply(cluster, ns, job("brief", ["-c", "true"], ttlSecondsAfterFinished=2))
    cluster.kubectl("wait", "--for=condition=complete", "job/brief", "-n", ns, "--timeout=30s")
    done = time.monotonic()
    assert job_pods(cluster, ns, "brief")
    wait_for(lambda: not cluster.exists(job_path(ns, "brief")) and not job_pods(cluster, ns, "brief"),
             timeout=15, what="the Job and its pod deleted")
    assert time.monotonic() - done > 0.8


def test_job_parallel_indexed_and_suspended(cluster, ns):
    apply(cluster, ns, job("idx", ["-c", "echo $JOB_COMPLETION_INDEX"], completions=3, parallelism=2,
                           completionMode="Indexed"))
    cluster.kubectl("wait", "--for=condition=complete", "job/idx", "-n", ns, "--timeout=30s")
    st = cluster.get(job_path(ns, "idx"))["status"]
    assert st["succeeded"] == 3 and st["completedIndexes"] == "0-2", st
    pods = job_pods(cluster, ns, "idx")
    outs = sorted(cluster.kubectl("logs", "-n", ns, p["metadata"]["name"]).stdout.strip() for p in pods)
    assert outs == ["0", "1", "2"]
    assert sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods) == \
        ["0", "1", "2"]
    apply(cluster, ns, job("later", ["-c", "true"], suspend=True))
    wait_for(lambda: "Suspended" in conditions(cluster.get(job_path(ns, "later"))), what="Suspended")
    time.sleep(0.5)
    assert not job_pods(cluster, ns, "later")
    cluster.patch(job_path(ns, "later"), {"spec": {"suspend": False}})
    cluster.kubectl("wait", "--for=condition=complete", "job/later", "-n", ns, "--timeout=30s")
    susp = [c for c in cluster.get(job_path(ns, "later"))["status"]["conditions"] if c["type"] == "Suspended"]
    assert susp[0]["status"] == "False" and susp[0]["reason"] == "JobResumed"


def test_job_validation(cluster, ns):
    bad = job("always", ["-c", "true"], restart="Always")
    err = kubectl_fail(cluster, "apply", "-n", ns, "-f", "-", input=yaml.safe_dump(bad))
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"' \
        in err, err
    sel = job("sel", ["-c", "true"], selector={"matchLabels": {"a": "b"}})
    sel["spec"]["template"]["metadata"] = {"labels": {"a": "b"}}
    err = kubectl_fail(cluster, "apply", "-n", ns, "-f", "-", input=yaml.safe_dump(sel))
    assert "spec.selector: Invalid value" in err and "`selector` not auto-generated" in err, err
    sel["spec"]["manualSelector"] = True
    apply(cluster, ns, sel)
    apply(cluster, ns, job("imm", ["60"], image="kubesim/sleep"))
    err = kubectl_fail(cluster, "apply", "-n", ns, "-f", "-",
                       input=yaml.safe_dump(job("imm", ["61"], image="kubesim/sleep")))
    assert "spec.template: Invalid value" in err and "field is immutable" in err, err
    code, st = cluster.request("POST", job_path(ns), {"apiVersion": "batch/v1", "kind": "Job",
                                                      "metadata": {"name": "neg"},
                                                      "spec": {"backoffLimit": -1, "template": {"spec": {
                                                          "restartPolicy": "Never",
                                                          "containers": [{"name": "c", "image": "x"}]}}}})
    assert code == 422 and "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0" in \
        st["message"], st
    # Deployments only take restartPolicy Always
    d = deployment("never", 1)
    d["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    code, st = cluster.request("POST", "/apis/apps/v1/namespaces/%s/deployments" % ns, d)
    assert code == 422 and 'Unsupported value: "Never": supported values: "Always"' in st["message"], st


def test_job_deletion_orphans_by_default_in_the_api(cluster, ns):
    apply(cluster, ns, job("keep", ["60"], image="kubesim/sleep"), job("drop", ["60"], image="kubesim/sleep"))
    wait_for(lambda: job_pods(cluster, ns, "keep") and job_pods(cluster, ns, "drop"), what="pods")
    # batch/v1 keeps the old default: DELETE without a propagationPolicy orphans the pods, with a warning
    from kubernetes import client
    api = client.BatchV1Api(cluster.python_client())
    resp = api.api_client.call_api("/apis/batch/v1/namespaces/{ns}/jobs/{name}", "DELETE",
                                   path_params={"ns": ns, "name": "keep"}, response_type="object",
                                   auth_settings=["BearerToken"], _return_http_data_only=False)
    assert "child pods are preserved by default" in resp[2].get("Warning", ""), resp[2]
    wait_for(lambda: not cluster.exists(job_path(ns, "keep")), what="the Job gone")
    time.sleep(0.5)
    (pod,) = job_pods(cluster, ns, "keep")
    assert not pod["metadata"].get("ownerReferences") and not pod["metadata"].get("deletionTimestamp")
    assert not pod["metadata"].get("finalizers")
    # kubectl deletes in the background: the pods go too
    kubectl_ok(cluster, "delete", "job", "drop", "-n", ns, "--wait=true", "--timeout=30s")
    wait_for(lambda: not job_pods(cluster, ns, "drop"), timeout=20, what="the Job's pods deleted")


def test_pods_need_their_service_account(cluster, ns):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"serviceAccountName": "ghost", "containers": [{"name": "c", "image": "kubesim/sleep"}]}}
    code, st = cluster.request("POST", "/api/v1/namespaces/%s/pods" % ns, pod)
    assert code == 403 and st["message"] == ('pods "p" is forbidden: error looking up service account %s/ghost: '
                                             'serviceaccount "ghost" not found' % ns), st
    j = job("ghost", ["-c", "true"])
    j["spec"]["template"]["spec"]["serviceAccountName"] = "ghost"
    apply(cluster, ns, j)
    wait_for(lambda: any(e["reason"] == "FailedCreate" for e in cluster.get(
        "/api/v1/namespaces/%s/events" % ns)["items"]), what="FailedCreate")
    kubectl_ok(cluster, "create", "sa", "ghost", "-n", ns)
    cluster.kubectl("wait", "--for=condition=complete", "job/ghost", "-n", ns, "--timeout=30s")


# ------------------------------------------------------------------ PodDisruptionBudgets

def test_pod_disruption_budget_status_and_validation(cluster, ns):
    cluster.create("/apis/apps/v1/namespaces/%s/deployments" % ns, deployment("web", 3))
    cluster.wait_ready_replicas(ns, "web", 3)

    def pdb(name, **spec):
        spec.setdefault("selector", {"matchLabels": {"app": "web"}})
        return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name}, "spec": spec}
    apply(cluster, ns, pdb("min", minAvailable=2), pdb("pct", maxUnavailable="50%"), pdb("none", minAvailable=1,
                                                                                     selector={"matchLabels": {"x": "y"}}))
    base = "/apis/policy/v1/namespaces/%s/poddisruptionbudgets/" % ns
    wait_for(lambda: cluster.get(base + "min")["status"].get("currentHealthy") == 3, what="PDB status")
    st = cluster.get(base + "min")["status"]
    assert (st["currentHealthy"], st["desiredHealthy"], st["expectedPods"], st["disruptionsAllowed"]) == (3, 2, 3, 1)
    assert st["conditions"][0]["type"] == "DisruptionAllowed" and st["conditions"][0]["reason"] == "SufficientPods"
    wait_for(lambda: cluster.get(base + "pct")["status"].get("expectedPods") == 3, what="PDB status")
    st = cluster.get(base + "pct")["status"]
    assert (st["desiredHealthy"], st["disruptionsAllowed"]) == (1, 2), st   # 3 - ceil(50% of 3)
    st = cluster.get(base + "none")["status"]
    assert (st["currentHealthy"], st["disruptionsAllowed"], st["conditions"][0]["reason"]) == (0, 0, "InsufficientPods")
    row = [l.split() for l in kubectl_ok(cluster, "get", "pdb", "-n", ns).splitlines() if l.startswith("min ")][0]
    assert row[:4] == ["min", "2", "N/A", "1"], row
    err = kubectl_fail(cluster, "apply", "-n", ns, "-f", "-", input=yaml.safe_dump(pdb("both", minAvailable=1,
                                                                                        maxUnavailable=1)))
    assert "minAvailable and maxUnavailable cannot be both set" in err, err
    err = kubectl_fail(cluster, "apply", "-n", ns, "-f", "-", input=yaml.safe_dump(pdb("big", minAvailable="120%")))
    assert 'spec.minAvailable: Invalid value: "120%": must not be greater than 100%' in err, err
    cluster.patch("/apis/apps/v1/namespaces/%s/deployments/web" % ns, {"spec": {"replicas": 1}})
    wait_for(lambda: cluster.get(base + "min")["status"]["currentHealthy"] == 1, timeout=40, what="one pod left")
    st = cluster.get(base + "min")["status"]
    assert st["disruptionsAllowed"] == 0 and st["conditions"][0]["reason"] == "InsufficientPods"


# ------------------------------------------------------------------ python3-kubernetes

def test_python_client_rbac_batch_policy_and_tokens(cluster, ns):
    from kubernetes import client
    api = cluster.python_client()
    core, rbac, batch, policy = (client.CoreV1Api(api), client.RbacAuthorizationV1Api(api), client.BatchV1Api(api),
                                 client.PolicyV1Api(api))
    authz = client.AuthorizationV1Api(api)
    core.create_namespaced_service_account(ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="bot")))
    rbac.create_namespaced_role(ns, client.V1Role(
        metadata=client.V1ObjectMeta(name="jobs"),
        rules=[client.V1PolicyRule(api_groups=["batch"], resources=["jobs"], verbs=["get", "list", "create"])]))
    rbac.create_namespaced_role_binding(ns, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="jobs"),
        role_ref=client.V1RoleRef(api_group=RBAC, kind="Role", name="jobs"),
        subjects=[client.V1Subject(kind="ServiceAccount", name="bot", namespace=ns)]))
    assert [b.metadata.name for b in rbac.list_namespaced_role_binding(ns).items] == ["jobs"]
    assert rbac.read_cluster_role("cluster-admin").rules[0].verbs == ["*"]
    with pytest.raises(client.ApiException) as e:
        rbac.patch_namespaced_role_binding("jobs", ns, {"roleRef": {"apiGroup": RBAC, "kind": "ClusterRole",
                                                                    "name": "x"}})
    assert e.value.status == 422 and "cannot change roleRef" in e.value.body
    # a token for the account, from the TokenRequest API, used by another client
    tr = core.create_namespaced_service_account_token("bot", ns, client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)))
    cfg = client.Configuration()
    cfg.host, cfg.ssl_ca_cert = cluster.api_url, cluster.ca_file
    cfg.api_key = {"authorization": "Bearer " + tr.status.token}
    bot = client.ApiClient(cfg)
    bbatch = client.BatchV1Api(bot)
    bbatch.create_namespaced_job(ns, client.V1Job(
        metadata=client.V1ObjectMeta(name="pyjob"),
        spec=client.V1JobSpec(backoff_limit=0, template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
            restart_policy="Never", containers=[client.V1Container(name="c", image="kubesim/sh",
                                                                   args=["-c", "true"])])))))
    with pytest.raises(client.ApiException) as e:
        client.CoreV1Api(bot).list_namespaced_pod(ns)
    assert e.value.status == 403 and json.loads(e.value.body)["reason"] == "Forbidden"
    ssar = client.AuthorizationV1Api(bot).create_self_subject_access_review(client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=client.V1ResourceAttributes(
            namespace=ns, verb="create", group="batch", resource="jobs"))))
    assert ssar.status.allowed is True and "RoleBinding \"jobs/%s\"" % ns in ssar.status.reason
    sar = authz.create_subject_access_review(client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user="system:serviceaccount:%s:bot" % ns, resource_attributes=client.V1ResourceAttributes(
            namespace=ns, verb="delete", group="batch", resource="jobs"))))
    assert sar.status.allowed is False

    def complete():
        j = bbatch.read_namespaced_job("pyjob", ns)
        return j.status.succeeded == 1 and any(c.type == "Complete" and c.status == "True"
                                               for c in j.status.conditions or []) and j
    j = wait_for(complete, timeout=30, what="the Job complete")
    assert j.status.completion_time is not None and j.status.uncounted_terminated_pods is not None
    assert batch.read_namespaced_job_status("pyjob", ns).status.succeeded == 1
    policy.create_namespaced_pod_disruption_budget(ns, client.V1PodDisruptionBudget(
        metadata=client.V1ObjectMeta(name="pdb"),
        spec=client.V1PodDisruptionBudgetSpec(max_unavailable=1, selector=client.V1LabelSelector(
            match_labels={"job-name": "pyjob"}))))
    p = policy.read_namespaced_pod_disruption_budget("pdb", ns)
    assert p.spec.max_unavailable == 1 and p.status.disruptions_allowed == 0   # zeros until the controller runs
    wait_for(lambda: policy.read_namespaced_pod_disruption_budget_status("pdb", ns).status.observed_generation,
             what="PDB status")
    assert [x.metadata.name for x in policy.list_namespaced_pod_disruption_budget(ns).items] == ["pdb"]
