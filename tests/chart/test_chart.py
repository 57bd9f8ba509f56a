"""helm/holdfast: `helm lint`, the manifests `helm template` renders (kinds, RBAC, security,
namespace-scoped variant, values documented, CRD copy), and the real control plane (the test
cluster of docs/test-cluster.md: kube-apiserver with RBAC, the controllers, the node agent)
accepting them, running them, and enforcing their RBAC.

Run: /usr/bin/python3 -m pytest tests/chart   (the cluster half needs root and scripts/setup's
binaries)"""
import filecmp
import os
import re
import subprocess
import time

import pytest
import yaml

from helmchart import render_chart, run_helm, template_args
from standins import STANDIN_CRDS

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CHART = os.path.join(ROOT, "helm", "holdfast")

NAMESPACED = os.path.join(CHART, "ci", "namespaced-values.yaml")
HOLDFAST = os.environ.get("HOLDFAST_BIN") or os.path.join(ROOT, "build", "holdfast")


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


def objects(docs):
    return [yaml.safe_load(text) for _, text in docs]


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def one(objs, kind, name=None):
    found = [o for o in by_kind(objs, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, "%s %s: %d found" % (kind, name, len(found))
    return found[0]


# ------------------------------------------------------------------ Helm's own checks

def test_helm_lint_passes_strictly_for_each_values_file():
    """`helm lint --strict` (warnings are errors) with the defaults and with each ci/ values file."""
    for extra in ([], ["--values", NAMESPACED]):
        code, out, err = run_helm("lint", "--strict", CHART, *extra, check=False)
        assert code == 0 and "1 chart(s) linted, 0 chart(s) failed" in out, out + err


def test_helm_template_cli_with_values_file_set_crds_and_no_hooks():
    _, out, _ = run_helm(*template_args(CHART, "hf", "hf", value_files=[NAMESPACED],
                                        sets=["replicaCount=3"], include_crds=True, no_hooks=True))
    objs = [o for o in yaml.safe_load_all(out) if o]
    assert objs[0]["kind"] == "CustomResourceDefinition"
    assert one(objs, "Deployment")["spec"]["replicas"] == 3
    assert not by_kind(objs, "Job") and not by_kind(objs, "ClusterRole")
    code, _, err = run_helm("template", "hf", CHART, "--set", "image=x", check=False)
    assert code != 0 and "image" in err, err  # a value of the wrong shape fails, loudly


# ------------------------------------------------------------------ the chart

@pytest.fixture(scope="module")
def default():
    return objects(render_chart(CHART, "holdfast", "holdfast-system"))


@pytest.fixture(scope="module")
def namespaced():
    return objects(render_chart(CHART, "hf", "team-a", value_files=[NAMESPACED]))


WATCH_RULES = {
    ("elasti.truefoundry.com", "elastiservices"): {"list", "watch", "patch"},
    ("elasti.truefoundry.com", "elastiservices/status"): {"patch"},
    ("", "services"): {"list", "watch"},
    ("discovery.k8s.io", "endpointslices"): {"get", "list", "watch", "create", "update", "delete"},
    ("apps", "deployments/scale"): {"get", "patch"},
    ("apps", "statefulsets/scale"): {"get", "patch"},
    ("argoproj.io", "rollouts/scale"): {"get", "patch"},
    ("apps", "deployments"): {"get", "list", "watch"},
    ("apps", "statefulsets"): {"get", "list", "watch"},
    ("argoproj.io", "rollouts"): {"get", "list", "watch"},
    ("", "pods"): {"list", "watch"},
    ("", "events"): {"list", "create", "patch"},
    ("keda.sh", "scaledobjects"): {"patch"},
}
LEASE_RULES = {
    ("coordination.k8s.io", "leases", ()): {"create"},
    ("coordination.k8s.io", "leases", ("holdfast-leader",)): {"get", "update"},
    ("discovery.k8s.io", "endpointslices", ()): {"list", "watch"},
}


def flatten(rules, names=False):
    out = {}
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
        for g in rule["apiGroups"]:
            for res in rule["resources"]:
                key = (g, res, tuple(rule.get("resourceNames") or ())) if names else (g, res)
                assert not (set(out.get(key, ())) & set(rule["verbs"])), "verb granted twice: %s" % (key,)
                out.setdefault(key, set()).update(rule["verbs"])
    return out


def check_no_wildcards_no_secrets(role):
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            for v in rule.get(field) or []:
                assert "*" not in v, "wildcard in %s: %s" % (role["metadata"]["name"], rule)
        assert "secrets" not in rule["resources"]
        assert not rule.get("nonResourceURLs")


def test_default_kinds_and_names(default):
    kinds = sorted(o["kind"] for o in default)
    assert kinds == sorted(["Deployment", "PodDisruptionBudget", "ClusterRole", "ClusterRoleBinding", "Role",
                            "RoleBinding", "Job", "Service", "ServiceAccount"])
    for o in default:
        assert o["metadata"]["name"].startswith("holdfast")
        if o["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert o["metadata"]["namespace"] == "holdfast-system"
    objs = objects(render_chart(CHART, "prod", "x", sets=["serviceMonitor.enabled=true"]))
    assert one(objs, "Deployment")["metadata"]["name"] == "prod-holdfast"
    sm = one(objs, "ServiceMonitor")
    assert sm["spec"]["endpoints"] == [{"port": "admin", "path": "/metrics", "interval": "30s"}]
    objs = objects(render_chart(CHART, "prod", "x", sets=["restoreHook.enabled=false",
                                                          "podDisruptionBudget.enabled=false"]))
    assert not by_kind(objs, "Job") and not by_kind(objs, "PodDisruptionBudget")


def test_default_rbac_is_exactly_what_holdfast_uses(default):
    cr = one(default, "ClusterRole")
    check_no_wildcards_no_secrets(cr)
    assert flatten(cr["rules"]) == WATCH_RULES
    lease = one(default, "Role")
    check_no_wildcards_no_secrets(lease)
    assert lease["metadata"]["namespace"] == "holdfast-system"
    assert flatten(lease["rules"], names=True) == LEASE_RULES
    sa = one(default, "ServiceAccount")["metadata"]["name"]
    for b in by_kind(default, "ClusterRoleBinding") + by_kind(default, "RoleBinding"):
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": "holdfast-system"}]
    assert one(default, "ClusterRoleBinding")["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cr["metadata"]["name"]}
    assert one(default, "RoleBinding")["roleRef"]["name"] == lease["metadata"]["name"]


def test_rbac_covers_every_resource_the_controller_defines(default):
    """Guard against a new API call in controller/ (controller/kube/ included) without its RBAC rule: every kube_resource
    (group, version, plural) there has a rule in the chart."""
    defined = set()
    for d, _dirs, files in os.walk(os.path.join(ROOT, "controller")):  # controller/kube/ too
        for f in files:
            if f.endswith(".c"):
                with open(os.path.join(d, f)) as fh:
                    src = fh.read()
                for g, _v, plural in re.findall(r'\{\s*"([a-z0-9.]*)",\s*"(v[0-9a-z]+)",\s*"([a-z]+)"', src):
                    defined.add((g, plural))
    assert ("apps", "deployments") in defined and ("coordination.k8s.io", "leases") in defined
    granted = set(WATCH_RULES) | {(g, res) for g, res, _ in LEASE_RULES}
    assert defined <= granted, "no RBAC rule for %s" % sorted(defined - granted)


def test_security_context_and_resources(default):
    for o in (one(default, "Deployment"), one(default, "Job")):
        pod = o["spec"]["template"]["spec"]
        assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                          "seccompProfile": {"type": "RuntimeDefault"}}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert c["resources"]["requests"] and c["resources"]["limits"]
            assert set(c["resources"]["limits"]) == {"cpu", "memory"}


def test_deployment_shape(default):
    d = one(default, "Deployment")
    svc = one(default, "Service")
    pod = d["spec"]["template"]
    assert d["spec"]["replicas"] == 2
    labels = pod["metadata"]["labels"]
    assert all(labels[k] == v for k, v in svc["spec"]["selector"].items())
    assert d["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    term = pod["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == svc["spec"]["selector"]
    assert pod["spec"]["serviceAccountName"] == one(default, "ServiceAccount")["metadata"]["name"]
    (c,) = pod["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["HOLDFAST_RESOLVER_SERVICE"]["value"] == svc["metadata"]["name"]
    for name, path in (("POD_IP", "status.podIP"), ("POD_NAME", "metadata.name"),
                       ("POD_NAMESPACE", "metadata.namespace"), ("NODE_NAME", "spec.nodeName")):
        assert env[name]["valueFrom"]["fieldRef"]["fieldPath"] == path
    assert c["args"][0] == "run"
    assert "--bind-address=$(POD_IP)" in c["args"] and "--admin-port=8013" in c["args"]
    assert "--shared-port=8012" in c["args"] and "--polling-interval=30s" in c["args"]
    assert "--scale-down-grace-period=5s" in c["args"] and "--scale-down-probe-timeout=30s" in c["args"]
    assert not any(a.startswith("--namespace") for a in c["args"])
    # a terminating replica keeps accepting while its endpoint removal propagates, within the
    # grace period; the API rate limit is holdfast's own unless set
    assert "--shutdown-delay=5" in c["args"] and pod["spec"]["terminationGracePeriodSeconds"] >= 5 + 30
    assert not any(a.startswith("--kube-api") for a in c["args"])
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"shared": 8012, "admin": 8013}
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"shared": 8012, "admin": 8013}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    pdb = one(default, "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": svc["spec"]["selector"]}}
    args = one(objects(render_chart(CHART, "holdfast", "x", sets=[
        "prometheusAddress=http://prom:9090,workers=2,drainTimeout=10"])), "Deployment")
    args = args["spec"]["template"]["spec"]["containers"][0]["args"]
    assert {"--prometheus-address=http://prom:9090", "--workers=2", "--drain-timeout=10"} <= set(args)


@pytest.mark.skipif(not os.access(HOLDFAST, os.X_OK), reason="no holdfast binary at %s" % HOLDFAST)
def test_every_flag_the_chart_passes_exists(default):
    help_text = subprocess.run([HOLDFAST, "run", "--help"], capture_output=True, text=True).stdout + \
        subprocess.run([HOLDFAST, "run", "--help"], capture_output=True, text=True).stderr
    objs = objects(render_chart(CHART, "holdfast", "x", value_files=[NAMESPACED], sets=[
        "prometheusAddress=http://p:9090,workers=2,drainTimeout=5"]))
    args = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"][1:]
    args += one(objects(render_chart(CHART, "holdfast", "x")), "Job")["spec"]["template"]["spec"][
        "containers"][0]["args"][1:]
    for a in args:
        flag = a.split("=", 1)[0]
        assert flag in help_text, "%s is not in holdfast's usage" % flag


def test_pre_delete_hook(default):
    job = one(default, "Job")
    ann = job["metadata"]["annotations"]
    assert ann["helm.sh/hook"] == "pre-delete"
    assert "hook-succeeded" in ann["helm.sh/hook-delete-policy"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    # helm runs pre-delete hooks before deleting the release's resources: the main ServiceAccount
    # and its RBAC (which are not hooks) still exist when the Job runs.
    assert pod["serviceAccountName"] == one(default, "ServiceAccount")["metadata"]["name"]
    for o in default:
        if o is not job:
            assert "helm.sh/hook" not in (o["metadata"].get("annotations") or {})
    assert pod["containers"][0]["args"] == ["restore", "--all", "--timeout=300", "--uninstall"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"  # the Lease's
    # not part of the install when hooks are left out
    assert not by_kind(objects(render_chart(CHART, "holdfast", "x", no_hooks=True)), "Job")


def test_namespaced_variant(namespaced):
    assert not by_kind(namespaced, "ClusterRole") and not by_kind(namespaced, "ClusterRoleBinding")
    roles = {o["metadata"]["name"]: o for o in by_kind(namespaced, "Role")}
    assert set(roles) == {"hf-holdfast", "hf-holdfast-lease"}
    for role in roles.values():
        check_no_wildcards_no_secrets(role)
        assert role["metadata"]["namespace"] == "team-a"
    assert flatten(roles["hf-holdfast"]["rules"]) == WATCH_RULES
    assert flatten(roles["hf-holdfast-lease"]["rules"], names=True) == LEASE_RULES
    for b in by_kind(namespaced, "RoleBinding"):
        assert b["metadata"]["namespace"] == "team-a" and b["roleRef"]["kind"] == "Role"
    args = one(namespaced, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args
    assert one(namespaced, "Job")["spec"]["template"]["spec"]["containers"][0]["args"][:2] == \
        ["restore", "--namespace=team-a"]
    # another watched namespace: the watch Role goes there, the Lease Role stays with the pods
    objs = objects(render_chart(CHART, "hf", "team-a", value_files=[NAMESPACED], sets=["watchNamespace=apps"]))
    ns = {o["metadata"]["name"]: o["metadata"]["namespace"] for o in by_kind(objs, "Role") + by_kind(objs, "RoleBinding")}
    assert ns == {"hf-holdfast": "apps", "hf-holdfast-lease": "team-a"}
    assert "--namespace=apps" in one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]


def value_paths(v, prefix="", leaves_only=False):
    out = set()
    for k, x in v.items():
        p = prefix + k
        if isinstance(x, dict) and x:
            out |= value_paths(x, p + ".", leaves_only)
            if leaves_only:
                continue
        out.add(p)
    return out


def test_every_value_is_documented():
    values = load_yaml(os.path.join(CHART, "values.yaml"))
    with open(os.path.join(CHART, "README.md")) as f:
        readme = f.read()
    documented = set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", readme, re.M))
    missing = value_paths(values, leaves_only=True) - documented
    assert not missing, "values not documented in helm/holdfast/README.md: %s" % sorted(missing)
    # parents of documented maps are fine; anything documented must exist
    assert documented <= value_paths(values), sorted(documented - value_paths(values))


def test_chart_crd_is_the_repository_crd():
    assert filecmp.cmp(os.path.join(ROOT, "crds", "elastiservice.yaml"),
                       os.path.join(CHART, "crds", "elastiservice.yaml"), shallow=False), \
        "helm/holdfast/crds/elastiservice.yaml differs from crds/elastiservice.yaml: copy it again"


def test_chart_yaml():
    meta = load_yaml(os.path.join(CHART, "Chart.yaml"))
    assert meta["apiVersion"] == "v2" and meta["name"] == "holdfast"
    assert re.fullmatch(r"\d+\.\d+\.\d+", meta["version"]) and meta["appVersion"]


# ------------------------------------------------------------------ the real control plane

@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """The test cluster; the test's main thread lives in its network namespace meanwhile."""
    from hftest.realcluster import RealCluster
    state = tmp_path_factory.mktemp("chart-cluster")
    images = {"test/sleep": {"argv": ["/bin/sleep", "$@"]}}
    if os.access(HOLDFAST, os.X_OK):
        images["ghcr.io/holdfast/holdfast"] = {"argv": [HOLDFAST, "$@"]}
    s = RealCluster(state, image_map=images)
    s.start()
    try:
        # The Prometheus Operator's ServiceMonitor is a CRD in real clusters too; here with its
        # real schema for the fields a chart can use, so strict validation checks it.
        s.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(STANDIN_CRDS))
        s.kubectl("apply", "-f", os.path.join(CHART, "crds", "elastiservice.yaml"))
        yield s
    finally:
        left = s.stop()
    assert left == [], "left behind by the cluster: %s" % left


def new_namespace(sim, ns):
    """A namespace, once the controller-manager has given it its `default` ServiceAccount and
    `kube-root-ca.crt` (a pod created before is refused, or waits for the projected CA)."""
    from hftest.kubeclient import wait_for
    sim.kubectl("create", "namespace", ns)
    wait_for(lambda: sim.exists("/api/v1/namespaces/%s/serviceaccounts/default" % ns)
             and sim.exists("/api/v1/namespaces/%s/configmaps/kube-root-ca.crt" % ns),
             timeout=30, what="namespace %s usable" % ns)


def kubectl_as(sim, kubeconfig, *args):
    """The cluster's kubectl with another kubeconfig (the calling thread is in its namespace)."""
    return subprocess.run([os.path.join(sim.cluster.bin, "kubectl"), "--kubeconfig", kubeconfig,
                           "--cache-dir", os.path.join(sim.state_dir, "kc-cache")] + list(args),
                          capture_output=True, text=True, timeout=60)


# Helm's InstallOrder (pkg/releaseutil/kind_sorter.go); kinds not listed go last
HELM_INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole", "ClusterRoleList",
    "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList",
    "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler",
    "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService"]


def apply(sim, docs, *extra):
    """kubectl apply of rendered documents in the order `helm install` creates them (RBAC before
    the Deployment: its pods must not start before what authorizes them exists)."""
    objs = sorted(objects(docs), key=lambda o: HELM_INSTALL_ORDER.index(o["kind"])
                  if o["kind"] in HELM_INSTALL_ORDER else len(HELM_INSTALL_ORDER))
    stream = yaml.safe_dump_all(objs)
    p = sim.kubectl("apply", "-f", "-", *extra, input=stream, check=False)
    assert p.returncode == 0, "kubectl apply failed:\n%s\n%s" % (p.stdout, p.stderr)
    return p.stdout


def sa_kubeconfig(sim, ns, sa, name=None, duration="24h"):
    """A kubeconfig whose user is the ServiceAccount ns/sa, with a token from the TokenRequest API
    (`kubectl create token`): the API server authorizes it with the RBAC objects only."""
    token = sim.kubectl("create", "token", sa, "-n", ns, "--duration=" + duration).stdout.strip()
    with open(sim.kubeconfig) as f:
        kc = yaml.safe_load(f)
    for u in kc["users"]:
        u["user"] = {"token": token}
    path = os.path.join(sim.state_dir, "kubeconfig-" + (name or "%s-%s" % (ns, sa)))
    with open(path + ".tmp", "w") as f:
        yaml.safe_dump(kc, f)
    os.replace(path + ".tmp", path)
    return path


def pod_logs(sim, ns, prefix):
    """The containers' output of the pods ns/prefix*, as the node agent keeps it
    (DIR/node/pods/<ns>_<name>_<uid>/<container>-<restart>.log)."""
    logs = ""
    pods_dir = os.path.join(sim.state_dir, "node", "pods")
    for pod in sorted(os.listdir(pods_dir)) if os.path.isdir(pods_dir) else []:
        if pod.startswith("%s_%s" % (ns, prefix)):
            for f in sorted(os.listdir(os.path.join(pods_dir, pod))):
                if f.endswith(".log"):
                    with open(os.path.join(pods_dir, pod, f), errors="replace") as fh:
                        logs += fh.read()
    return logs


@pytest.mark.parametrize("variant", ["default", "namespaced"])
def test_the_rendered_chart_is_accepted_and_runs(sim, variant):
    """kubectl apply of the rendered chart succeeds; with build/holdfast, its pods run with only
    the chart's RBAC (their projected ServiceAccount token), become Ready, elect a leader and take
    a hand-scaled target through proxy mode and back to serve mode."""
    ns = "hf-" + variant
    new_namespace(sim, ns)
    vals = [NAMESPACED] if variant == "namespaced" else []
    env = os.path.join(sim.state_dir, "env-%s.yaml" % variant)
    with open(env, "w") as f:
        yaml.safe_dump({"serviceMonitor": {"enabled": True}, "pollingInterval": "1s"}, f)
    docs = render_chart(CHART, "holdfast", ns, value_files=vals + [env], no_hooks=True)
    out = apply(sim, docs)
    kinds = {o["kind"] for o in objects(docs)}
    assert len(out.strip().splitlines()) == len(docs), out
    for kind in kinds:
        assert kind.lower() + "." in out.lower() or kind.lower() + "/" in out.lower(), (kind, out)
    # the hook Job is not part of the install; the API must accept it all the same
    hooks = [d for d in render_chart(CHART, "holdfast", ns, value_files=vals + [env])
             if "helm.sh/hook" in d[1]]
    assert len(hooks) == 1
    apply(sim, hooks, "--dry-run=server")
    got = sim.kubectl("get", "deploy,svc,sa,poddisruptionbudgets,roles,rolebindings,servicemonitors",
                      "-n", ns, "-o", "name").stdout
    for want in ("deployment.apps/holdfast", "service/holdfast", "serviceaccount/holdfast",
                 "role.rbac.authorization.k8s.io/holdfast-lease"):
        assert want in got, got
    if variant == "default":
        clusterwide = sim.kubectl("get", "clusterrole,clusterrolebinding", "-o", "name").stdout
        assert "clusterrole.rbac.authorization.k8s.io/holdfast" in clusterwide, clusterwide
    if not os.access(HOLDFAST, os.X_OK):
        return
    from hftest.kubeclient import wait_for
    try:
        sim.wait_ready_replicas(ns, "holdfast", 2, timeout=30)
        sim.wait_service_endpoints(ns, "holdfast", 2, timeout=30)
        # the PodDisruptionBudget selects the two pods: one of them may be disrupted
        pdb = "/apis/policy/v1/namespaces/%s/poddisruptionbudgets/holdfast" % ns
        wait_for(lambda: sim.get(pdb)["status"].get("currentHealthy") == 2, timeout=10, what="PDB status")
        st = sim.get(pdb)["status"]
        assert (st["desiredHealthy"], st["expectedPods"], st["disruptionsAllowed"]) == (1, 2, 1), st
        lease = "/apis/coordination.k8s.io/v1/namespaces/%s/leases/holdfast-leader" % ns
        wait_for(lambda: sim.exists(lease) and sim.get(lease)["spec"].get("holderIdentity"), timeout=20,
                 what="a leader")
        # a target at 0 by hand: proxy mode (resolver slice, status, Event), then up by hand: serve
        app = ns if variant == "namespaced" else "app-" + variant
        if app != ns:
            new_namespace(sim, app)
        sim.kubectl("apply", "-n", app, "-f", "-", input=yaml.safe_dump_all([
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
             "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                      "template": {"metadata": {"labels": {"app": "web"}},
                                   "spec": {"containers": [{"name": "c", "image": "test/sleep",
                                                            "args": ["600"], "ports": [{"containerPort": 8080}]}]}}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
             "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
            {"apiVersion": "elasti.truefoundry.com/v1alpha1", "kind": "ElastiService", "metadata": {"name": "web"},
             "spec": {"service": "web", "cooldownPeriod": 1, "minTargetReplicas": 1,
                      "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}}]))
        es = "/apis/elasti.truefoundry.com/v1alpha1/namespaces/%s/elastiservices/web" % app
        slices = "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices?labelSelector=%s" % (
            app, "endpointslice.kubernetes.io/managed-by%3Dholdfast")
        wait_for(lambda: (sim.get(es).get("status") or {}).get("mode") == "proxy"
                 and sim.get(slices)["items"], timeout=30, what="proxy mode with a resolver slice")
        sim.kubectl("scale", "-n", app, "deploy/web", "--replicas=1")
        wait_for(lambda: (sim.get(es).get("status") or {}).get("mode") == "serve"
                 and not sim.get(slices)["items"], timeout=30, what="serve mode, resolver slice gone")
    finally:
        logs = pod_logs(sim, ns, "holdfast")
        # one cluster-wide install at a time: stop this one before the next variant
        sim.kubectl("scale", "-n", ns, "deploy/holdfast", "--replicas=0", check=False)
    assert "forbidden" not in logs.lower() and '"code":403' not in logs.replace(" ", ""), logs[-3000:]
    assert 'cannot ' not in logs, logs[-3000:]


def can_i(sim, user, *args):
    """`kubectl auth can-i ... --as user`: the API server answers from the RBAC objects."""
    r = sim.kubectl("auth", "can-i", *args, "--as", user, check=False)
    assert r.returncode in (0, 1) and r.stdout.strip() in ("yes", "no"), (r.returncode, r.stdout, r.stderr)
    return r.stdout.strip() == "yes"


@pytest.mark.parametrize("variant", ["default", "namespaced"])
def test_the_charts_rbac_as_the_api_server_evaluates_it(sim, variant):
    """The rendered RBAC objects, applied, grant the chart's ServiceAccount what holdfast uses,
    where it uses it, and nothing else (kube-apiserver's RBAC authorizer)."""
    ns = "rbac-" + variant
    new_namespace(sim, ns)
    vals = [NAMESPACED] if variant == "namespaced" else []
    docs = render_chart(CHART, "rb", ns, value_files=vals, no_hooks=True)
    apply(sim, [d for d in docs if yaml.safe_load(d[1])["kind"] in
                ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")])
    me = "system:serviceaccount:%s:rb-holdfast" % ns
    elsewhere = ["-n", "default"] if variant == "namespaced" else ["-A"]
    assert can_i(sim, me, "patch", "deployments.apps", "--subresource=scale", "-n", ns)
    assert can_i(sim, me, "patch", "elastiservices.elasti.truefoundry.com", "--subresource=status", "-n", ns)
    assert can_i(sim, me, "watch", "services", *elsewhere) == (variant == "default")
    assert can_i(sim, me, "list", "endpointslices.discovery.k8s.io", "-n", ns)
    assert can_i(sim, me, "create", "leases.coordination.k8s.io", "-n", ns)
    assert can_i(sim, me, "update", "leases.coordination.k8s.io/holdfast-leader", "-n", ns)
    assert not can_i(sim, me, "update", "leases.coordination.k8s.io/other", "-n", ns)
    assert not can_i(sim, me, "create", "leases.coordination.k8s.io", "-n", "default")
    for verb, what in (("get", "secrets"), ("update", "deployments.apps"), ("delete", "pods"),
                       ("get", "configmaps"), ("create", "clusterrolebindings")):
        assert not can_i(sim, me, verb, what, "-n", ns), (verb, what)
    # the same answers for a token of the account itself (SelfSubjectAccessReview)
    kc = sa_kubeconfig(sim, ns, "rb-holdfast")
    r = kubectl_as(sim, kc, "auth", "can-i", "get", "deployments.apps/scale", "-n", ns)
    assert (r.returncode, r.stdout.strip()) == (0, "yes"), (r.stdout, r.stderr)
    r = kubectl_as(sim, kc, "get", "secrets", "-n", ns)
    assert r.returncode == 1 and ('secrets is forbidden: User "%s" cannot list resource "secrets" in API group "" '
                                  'in the namespace "%s"' % (me, ns)) in r.stderr, r.stderr


def _drop_services_rule(objs):
    role = one(objs, "ClusterRole")
    role["rules"] = [r for r in role["rules"] if r["resources"] != ["services"]]


def _subject_elsewhere(objs):
    one(objs, "ClusterRoleBinding")["subjects"][0]["namespace"] = "default"


def _rolebinding_to_clusterrole(objs):
    crb = one(objs, "ClusterRoleBinding")
    crb["kind"] = "RoleBinding"
    crb["metadata"]["namespace"] = one(objs, "Deployment")["metadata"]["namespace"]


BREAKAGES = {
    # the ClusterRole without the Services rule: the Services informer is refused
    "rule-removed": _drop_services_rule,
    # the ClusterRoleBinding names a ServiceAccount of the same name in another namespace
    "subject-elsewhere": _subject_elsewhere,
    # a RoleBinding to the ClusterRole grants it in the release namespace only, not cluster-wide
    "rolebinding-to-clusterrole": _rolebinding_to_clusterrole,
}


@pytest.mark.skipif(not os.access(HOLDFAST, os.X_OK), reason="no holdfast binary at %s" % HOLDFAST)
@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_holdfast_is_refused_without_every_piece_of_the_charts_rbac(sim, breakage):
    """The chart's RBAC is least privilege and the API server enforces it: the chart with one
    piece broken leaves holdfast's pod refused (403, Forbidden in its log) and not Ready, since
    its informers never sync."""
    ns = "lp-" + breakage
    new_namespace(sim, ns)
    env = os.path.join(sim.state_dir, "env-%s.yaml" % ns)
    with open(env, "w") as f:
        yaml.safe_dump({"replicaCount": 1, "pollingInterval": "1s"}, f)
    objs = objects(render_chart(CHART, "lp", ns, value_files=[env], no_hooks=True))
    BREAKAGES[breakage](objs)
    apply(sim, [(o["kind"], yaml.safe_dump(o)) for o in objs])
    from hftest.kubeclient import wait_for
    try:
        logs = wait_for(lambda: "forbidden" in pod_logs(sim, ns, "lp-holdfast").lower()
                        and pod_logs(sim, ns, "lp-holdfast"), timeout=20, what="a 403 in holdfast's log")
        assert '"http":403' in logs.replace(" ", ""), logs[-2000:]
        time.sleep(2)
        st = sim.get("/apis/apps/v1/namespaces/%s/deployments/lp-holdfast" % ns).get("status") or {}
        assert not st.get("readyReplicas"), st
        me = "system:serviceaccount:%s:lp-holdfast" % ns
        assert not can_i(sim, me, "list", "services", "-A")
        if breakage == "rolebinding-to-clusterrole":
            assert can_i(sim, me, "list", "services", "-n", ns)   # granted, in that namespace only
    finally:
        sim.kubectl("delete", "-n", ns, "deploy/lp-holdfast", "--wait=false", check=False)
