"""The ElastiService CRD (crds/elastiservice.yaml) accepts everything KubeElasti v0.1.30's CRD
accepts, with the same meaning and defaults, and holdfast's additions are all optional.

Manifests are validated two ways: by a small structural validator here ("local"), and by a
real kube-apiserver ("kube-apiserver": the test cluster of
docs/test-cluster.md, started once for this module, with both CRDs installed; needs root and
the binaries scripts/setup builds). The real server is the judge: it defaults, prunes (here
refused, with fieldValidation=Strict) and validates as every cluster does.

KubeElasti's CRD is read from ../shared/fixtures/kubeelasti/elastiservice-crd.yaml (relative to
the repository root); it is never copied into this repository. When it is absent the comparison
tests fail and say where they looked.

Run with Debian's python3 (python3-yaml, python3-pytest): /usr/bin/python3 -m pytest tests/crd
"""
import copy
import functools
import json
import os
import pathlib
import re

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
OURS_PATH = REPO / "crds" / "elastiservice.yaml"
FIXTURE_PATH = REPO.parent / "shared" / "fixtures" / "kubeelasti" / "elastiservice-crd.yaml"

# The holdfast additions: property paths in our schema that KubeElasti's lacks (subtrees of these
# are additions too). Each must be optional.
ADDITIONS = {
    "spec.holdTimeoutSeconds",
    "spec.maxHeldConnections",
    "spec.waitingPage",
    "spec.earlyReadiness",
    "spec.podCapacity",
    "spec.maxWakeReplicas",
    "spec.wakeWith",
    "status.wakeWithReplicas",
    "status.lastColdStart",
    "status.observedGeneration",
    "status.ports",
    "status.conditions",
}

# Schema keywords that do not change what is accepted or how it is stored.
DOC_ONLY = {"description", "title", "example", "externalDocs"}
# Keywords the walk handles itself.
STRUCTURAL = {"properties", "items", "additionalProperties", "required", "enum"}


# --------------------------------------------------------------------------------------------
# loading

def _load_crd(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert len(docs) == 1, "%s: expected one YAML document, found %d" % (path, len(docs))
    return docs[0]


@functools.lru_cache(maxsize=None)
def ours():
    assert OURS_PATH.is_file(), "our CRD is missing: %s" % OURS_PATH
    return _load_crd(OURS_PATH)


def theirs():
    if not FIXTURE_PATH.is_file():
        pytest.fail("KubeElasti v0.1.30 CRD fixture is missing: looked for %s "
                    "(the repository root's parent's shared/fixtures/kubeelasti/). "
                    "It is needed to check compatibility and is never copied into the repository."
                    % FIXTURE_PATH, pytrace=False)
    return _load_theirs()


@functools.lru_cache(maxsize=None)
def _load_theirs():
    return _load_crd(FIXTURE_PATH)


def version(crd, name="v1alpha1"):
    for v in crd["spec"]["versions"]:
        if v["name"] == name:
            return v
    raise AssertionError("version %s not in %s" % (name, crd["metadata"]["name"]))


def schema_of(crd, name="v1alpha1"):
    return version(crd, name)["schema"]["openAPIV3Schema"]


def node(schema, path):
    """The schema node at a dotted property path ('[]' steps into items)."""
    cur = schema
    for part in path.split("."):
        if part == "[]":
            cur = cur["items"]
        else:
            cur = cur["properties"][part]
    return cur


# --------------------------------------------------------------------------------------------
# the compatibility walk

def _walk(their, our, path, problems, added):
    shown = path or "<root>"
    if our is None:
        problems.append("%s: missing from our CRD" % shown)
        return
    # every keyword that constrains, defaults, or changes storage must be identical
    keys = (set(their) | set(our)) - DOC_ONLY - STRUCTURAL
    for k in sorted(keys):
        if their.get(k, "<absent>") != our.get(k, "<absent>"):
            problems.append("%s: %s is %r in KubeElasti's CRD but %r in ours"
                            % (shown, k, their.get(k, "<absent>"), our.get(k, "<absent>")))
    # enum: ours must accept every value theirs does; no enum where they have none
    if "enum" in their:
        missing = [e for e in their["enum"] if e not in (our.get("enum") or [])]
        if "enum" not in our or missing:
            problems.append("%s: enum values %r accepted by KubeElasti are not accepted by ours"
                            % (shown, missing if "enum" in our else their["enum"]))
    elif "enum" in our:
        problems.append("%s: ours adds enum %r where KubeElasti accepts any value" % (shown, our["enum"]))
    # required: ours may require no more than theirs
    extra = sorted(set(our.get("required") or []) - set(their.get("required") or []))
    if extra:
        problems.append("%s: ours requires %r, KubeElasti's does not" % (shown, extra))
    # children
    their_props = their.get("properties") or {}
    our_props = our.get("properties")
    if "properties" in their and our_props is None:
        problems.append("%s: ours has no properties (KubeElasti's lists %s)" % (shown, sorted(their_props)))
        our_props = {}
    for name, sub in their_props.items():
        _walk(sub, (our_props or {}).get(name), (path + "." if path else "") + name, problems, added)
    for name in (our_props or {}):
        if name not in their_props:
            added.append((path, name))
    for k in ("items", "additionalProperties"):
        if isinstance(their.get(k), dict):
            if not isinstance(our.get(k), dict):
                problems.append("%s: %s missing from ours" % (shown, k))
            else:
                _walk(their[k], our[k], (path + "." if path else "") + "[]" if k == "items"
                      else path + ".<additionalProperties>", problems, added)


def compare():
    problems, added = [], []
    _walk(schema_of(theirs()), schema_of(ours()), "", problems, added)
    return problems, added


def test_fixture_is_kubeelasti_elastiservice_crd():
    t = theirs()
    assert t["kind"] == "CustomResourceDefinition"
    assert t["spec"]["group"] == "elasti.truefoundry.com"
    assert "spec" in schema_of(t)["properties"]


def test_every_kubeelasti_field_and_constraint_is_kept():
    problems, _ = compare()
    assert not problems, "our CRD differs from KubeElasti's:\n  " + "\n  ".join(problems)


def test_identity_names_scope_versions_and_subresources_match():
    t, o = theirs(), ours()
    assert o["apiVersion"] == t["apiVersion"] == "apiextensions.k8s.io/v1"
    assert o["kind"] == "CustomResourceDefinition"
    assert o["metadata"]["name"] == t["metadata"]["name"] == "elastiservices.elasti.truefoundry.com"
    assert o["spec"]["group"] == t["spec"]["group"]
    assert o["spec"]["scope"] == t["spec"]["scope"] == "Namespaced"
    tn, on = t["spec"]["names"], o["spec"]["names"]
    for k in ("kind", "listKind", "plural", "singular"):
        assert on.get(k) == tn.get(k), "names.%s: ours %r, KubeElasti's %r" % (k, on.get(k), tn.get(k))
    for k in ("shortNames", "categories"):
        missing = set(tn.get(k) or []) - set(on.get(k) or [])
        assert not missing, "names.%s: ours lacks %r" % (k, sorted(missing))
    assert sorted(v["name"] for v in o["spec"]["versions"]) == sorted(v["name"] for v in t["spec"]["versions"])
    for tv in t["spec"]["versions"]:
        ov = version(o, tv["name"])
        assert ov["served"] == tv["served"] and ov["storage"] == tv["storage"], tv["name"]
        assert ov.get("subresources") == tv.get("subresources"), "subresources of %s" % tv["name"]
        assert not ov.get("deprecated"), tv["name"]
    assert "conversion" not in o["spec"] or o["spec"]["conversion"].get("strategy", "None") == "None"
    assert o["spec"].get("preserveUnknownFields") in (None, False)


def test_holdfast_additions_are_exactly_the_documented_ones_and_optional():
    _, added = compare()
    paths = {(p + "." if p else "") + n for p, n in added}
    assert paths == ADDITIONS, "unexpected additions: %r, missing: %r" % (
        sorted(paths - ADDITIONS), sorted(ADDITIONS - paths))
    s = schema_of(ours())
    for parent, name in added:
        req = (node(s, parent) if parent else s).get("required") or []
        assert name not in req, "%s.%s is a holdfast addition but is required" % (parent, name)
        # a default on an addition would write holdfast-only fields into every stored object
        assert "default" not in node(s, (parent + "." if parent else "") + name), "%s.%s has a default" % (parent, name)


def test_holdfast_additions_shape():
    s = schema_of(ours())
    h = node(s, "spec.holdTimeoutSeconds")
    assert (h["type"], h["minimum"], h["maximum"]) == ("integer", 1, 86400)
    m = node(s, "spec.maxHeldConnections")
    assert m["type"] == "integer" and m["minimum"] == 1
    w = node(s, "spec.waitingPage")
    assert w["type"] == "object" and set(w["properties"]) == {"enabled", "retryAfterSeconds", "html"}
    assert w["properties"]["enabled"]["type"] == "boolean"
    r = w["properties"]["retryAfterSeconds"]
    assert (r["type"], r["minimum"], r["maximum"]) == ("integer", 1, 3600)
    assert w["properties"]["html"]["maxLength"] == 65536
    assert not any("default" in v for v in w["properties"].values())
    pc, mw = node(s, "spec.podCapacity"), node(s, "spec.maxWakeReplicas")
    assert (pc["type"], pc["minimum"], pc["maximum"]) == ("integer", 1, 10000000)
    assert (mw["type"], mw["minimum"], mw["maximum"]) == ("integer", 1, 100000)
    ww = node(s, "spec.wakeWith")
    assert ww["type"] == "array" and ww["maxItems"] == 16
    assert ww["items"]["required"] == ["kind", "name"]
    assert ww["items"]["properties"]["kind"]["enum"] == ["Deployment", "StatefulSet", "Rollout"]
    wr = node(s, "status.wakeWithReplicas")
    assert wr["type"] == "object" and wr["additionalProperties"]["type"] == "integer"
    lc = node(s, "status.lastColdStart")
    assert lc["type"] == "object" and lc["required"] == ["startedAt", "totalMs"]
    assert lc["properties"]["startedAt"]["format"] == "date-time"
    assert set(lc["properties"]["phases"]["properties"]) == {
        "scaleSent", "scaleAnswered", "podCreated", "podScheduled", "containersStarted",
        "earlyReady", "ready", "firstByte"}
    er = node(s, "spec.earlyReadiness")
    assert er["type"] == "object" and set(er["properties"]) == {"enabled"}
    assert er["properties"]["enabled"]["type"] == "boolean" and "default" not in er["properties"]["enabled"]
    for v in lc["properties"]["phases"]["properties"].values():
        assert (v["type"], v["minimum"], v["maximum"]) == ("integer", 0, 86400000)
    g = node(s, "status.observedGeneration")
    assert g["type"] == "integer" and g.get("minimum") == 0
    ports = node(s, "status.ports")
    assert ports["type"] == "array" and ports["x-kubernetes-list-type"] == "map"
    item = ports["items"]
    assert set(item["properties"]) >= {"name", "port", "protocol", "resolverPort"}
    for key in ports["x-kubernetes-list-map-keys"]:  # map keys must be required or defaulted
        assert key in item.get("required", []) or "default" in item["properties"][key], key
    conds = node(s, "status.conditions")
    assert conds["type"] == "array"
    assert conds["x-kubernetes-list-type"] == "map" and conds["x-kubernetes-list-map-keys"] == ["type"]
    c = conds["items"]["properties"]
    assert set(c) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
    assert c["status"]["enum"] == ["True", "False", "Unknown"]
    assert c["lastTransitionTime"] == {**c["lastTransitionTime"], "type": "string", "format": "date-time"}
    assert "type" in conds["items"]["required"]


def _no_cel_outside_additions(n, path, found):
    if "x-kubernetes-validations" in n and not any(path == a or path.startswith(a + ".") for a in ADDITIONS):
        found.append(path or "<root>")
    for name, sub in (n.get("properties") or {}).items():
        _no_cel_outside_additions(sub, (path + "." if path else "") + name, found)
    if isinstance(n.get("items"), dict):
        _no_cel_outside_additions(n["items"], (path + "." if path else "") + "[]", found)


def test_cel_rules_only_on_holdfast_additions():
    found = []
    _no_cel_outside_additions(schema_of(ours()), "", found)
    assert not found, "CEL rules on KubeElasti's fields could reject what KubeElasti accepts: %r" % found


# --------------------------------------------------------------------------------------------
# printer columns

def jsonpath(obj, path):
    """The JSONPath subset printer columns use: .a.b, [n], [?(@.k=="v")]."""
    cur = [obj]
    for field, idx, fk, fv in re.findall(
            r'\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_]+)==["\']([^"\']*)["\']\)\]', path):
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


def test_printer_columns():
    cols = version(ours())["additionalPrinterColumns"]
    by_name = {c["name"]: c for c in cols}
    assert by_name["Mode"]["jsonPath"] == ".status.mode"
    assert by_name["Target"]["jsonPath"] == ".spec.scaleTargetRef.name"
    assert by_name["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert by_name["Age"]["jsonPath"] == ".metadata.creationTimestamp"
    assert by_name["Age"]["type"] == "date"
    default_cols = [c["name"] for c in cols if not c.get("priority")]
    assert default_cols == ["Mode", "Target", "Ready", "Age"], default_cols
    for c in cols:
        assert c["type"] in ("string", "integer", "number", "boolean", "date"), c
        assert c["jsonPath"].startswith("."), c
    obj = {"metadata": {"creationTimestamp": "2025-01-01T00:00:00Z"},
           "spec": {"service": "web", "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                                          "name": "web-dep"}},
           "status": {"mode": "proxy", "conditions": [
               {"type": "ScaledToZero", "status": "True", "reason": "BelowThreshold", "message": "",
                "lastTransitionTime": "2025-01-01T00:00:00Z"},
               {"type": "Ready", "status": "False", "reason": "ScaleUpFailed", "message": "quota",
                "lastTransitionTime": "2025-01-01T00:00:00Z"}]}}
    cells = {c["name"]: jsonpath(obj, c["jsonPath"]) for c in cols}
    assert cells["Mode"] == "proxy" and cells["Target"] == "web-dep" and cells["Ready"] == "False"
    assert cells["Reason"] == "ScaleUpFailed" and cells["Service"] == "web" and cells["Kind"] == "Deployment"


# --------------------------------------------------------------------------------------------
# validating manifests: a small structural validator, and a real kube-apiserver

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


def _type_ok(v, t):
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, _TYPES[t])


def local_process(obj, schema):
    """Default then validate `obj` in place, as the API server would. Unknown fields (which the
    API server would prune) are reported as errors: a documented field must not vanish."""
    errs = []

    def default(o, s):
        if isinstance(o, dict):
            for k, ps in (s.get("properties") or {}).items():
                if k not in o and "default" in ps:
                    o[k] = copy.deepcopy(ps["default"])
                if k in o:
                    default(o[k], ps)
        elif isinstance(o, list) and isinstance(s.get("items"), dict):
            for v in o:
                default(v, s["items"])

    def check(o, s, path, root=False):
        shown = path or "<root>"
        t = s.get("type")
        if t and not _type_ok(o, t):
            errs.append("%s: must be of type %s, got %r" % (shown, t, o))
            return
        if "enum" in s and o not in s["enum"]:
            errs.append("%s: %r not in %r" % (shown, o, s["enum"]))
        if isinstance(o, (int, float)) and not isinstance(o, bool):
            if "minimum" in s and o < s["minimum"]:
                errs.append("%s: %r below minimum %r" % (shown, o, s["minimum"]))
            if "maximum" in s and o > s["maximum"]:
                errs.append("%s: %r above maximum %r" % (shown, o, s["maximum"]))
        if isinstance(o, str):
            if "maxLength" in s and len(o) > s["maxLength"]:
                errs.append("%s: longer than %d" % (shown, s["maxLength"]))
            if "minLength" in s and len(o) < s["minLength"]:
                errs.append("%s: shorter than %d" % (shown, s["minLength"]))
            if "pattern" in s and not re.search(s["pattern"], o):
                errs.append("%s: %r does not match %s" % (shown, o, s["pattern"]))
        if isinstance(o, list):
            if "maxItems" in s and len(o) > s["maxItems"]:
                errs.append("%s: more than %d items" % (shown, s["maxItems"]))
            if "minItems" in s and len(o) < s["minItems"]:
                errs.append("%s: fewer than %d items" % (shown, s["minItems"]))
            if isinstance(s.get("items"), dict):
                for i, v in enumerate(o):
                    check(v, s["items"], "%s[%d]" % (path, i))
            if s.get("x-kubernetes-list-type") == "map":
                keys = [tuple(json.dumps(v.get(k)) for k in s["x-kubernetes-list-map-keys"]) for v in o]
                if len(set(keys)) != len(keys):
                    errs.append("%s: duplicate map-list keys" % shown)
        if isinstance(o, dict):
            props = s.get("properties") or {}
            for r in s.get("required") or []:
                if r not in o:
                    errs.append("%s: required" % ((path + "." if path else "") + r))
            for k, v in o.items():
                sub = (path + "." if path else "") + k
                if root and k in ("apiVersion", "kind", "metadata"):
                    continue
                if k in props:
                    check(v, props[k], sub)
                elif isinstance(s.get("additionalProperties"), dict):
                    check(v, s["additionalProperties"], sub)
                elif not s.get("x-kubernetes-preserve-unknown-fields"):
                    errs.append("%s: unknown field" % sub)
            if "maxProperties" in s and len(o) > s["maxProperties"]:
                errs.append("%s: more than %d properties" % (shown, s["maxProperties"]))

    default(obj, schema)
    check(obj, schema, "", root=True)
    return errs


class _ApiServer:
    """A real kube-apiserver as a validator: the test cluster (tests/hftest/realcluster.py), with our
    CRD installed as it is and KubeElasti's under another group (THEIR_GROUP; nothing else
    changed), so both can be asked side by side. Started at its first use, stopped when this
    module ends (the fixture below); the test process's main thread lives in the cluster's
    network namespace meanwhile."""

    THEIR_GROUP = "kubeelasti.holdfast.test"
    NAMESPACE = "crd"

    def __init__(self):
        self.cluster = None
        self.state_dir = None
        self.names = 0

    def started(self):
        if self.cluster is None:
            assert self.state_dir, "the kube-apiserver validator is used outside this module's tests"
            from hftest.realcluster import RealCluster
            cluster = RealCluster(self.state_dir)
            cluster.start()
            try:
                cluster.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", ours())
                renamed = copy.deepcopy(theirs())
                renamed["spec"]["group"] = self.THEIR_GROUP
                renamed["metadata"] = {"name": "%s.%s" % (renamed["spec"]["names"]["plural"], self.THEIR_GROUP)}
                cluster.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", renamed)
                cluster.create("/api/v1/namespaces", {"metadata": {"name": self.NAMESPACE}})
                for group in ("elasti.truefoundry.com", self.THEIR_GROUP):
                    path = "/apis/%s/v1alpha1/namespaces/%s/elastiservices" % (group, self.NAMESPACE)
                    _wait(lambda: cluster.request("GET", path)[0] == 200, "%s served" % path)
            except BaseException:
                cluster.stop()
                raise
            self.cluster = cluster
        return self.cluster

    def stop(self):
        if self.cluster is not None:
            left = self.cluster.stop()
            self.cluster = None
            assert left == [], "the test cluster left %s behind" % (left,)

    def process(self, obj, schema):
        """Creates obj (then writes its status, if it has one) on the real server, reads back what
        was stored into obj (spec and status: the defaults), and deletes it. Returns the server's
        refusals; an unknown field is one (fieldValidation=Strict), as local_process reports it."""
        if schema is schema_of(ours()):
            group = "elasti.truefoundry.com"
        elif schema is schema_of(theirs()):
            group = self.THEIR_GROUP
        else:
            raise AssertionError("the kube-apiserver validator knows only our CRD and KubeElasti's")
        cluster = self.started()
        self.names += 1
        name = "m%d" % self.names
        base = "/apis/%s/v1alpha1/namespaces/%s/elastiservices" % (group, self.NAMESPACE)
        body = copy.deepcopy(obj)
        status = body.pop("status", None)
        body["apiVersion"] = group + "/v1alpha1"
        body["metadata"] = {"name": name, "namespace": self.NAMESPACE}
        code, stored = cluster.request("POST", base + "?fieldValidation=Strict", body)
        if code != 201:
            return ["create: %d %s" % (code, _message(stored))]
        try:
            if status is not None:
                stored["status"] = status
                code, stored = cluster.request("PUT", "%s/%s/status?fieldValidation=Strict" % (base, name),
                                               stored)
                if code != 200:
                    return ["status: %d %s" % (code, _message(stored))]
            obj["spec"] = stored["spec"]
            if status is not None:
                obj["status"] = stored["status"]
            return []
        finally:
            code, answer = cluster.request("DELETE", "%s/%s" % (base, name))
            assert code == 200, "deleting %s: %d %s" % (name, code, _message(answer))


def _message(answer):
    return answer.get("message", answer) if isinstance(answer, dict) else answer


def _wait(pred, what, timeout=30):
    from hftest.kubeclient import wait_for
    wait_for(pred, timeout, 0.1, what, retry_on=(), error=AssertionError)


_API = _ApiServer()


@pytest.fixture(scope="module", autouse=True)
def _api_server(tmp_path_factory):
    _API.state_dir = str(tmp_path_factory.mktemp("crd-cluster"))
    yield
    _API.stop()


VALIDATORS = {"local": local_process, "kube-apiserver": _API.process}


def es(spec, name="web", namespace="default", status=None):
    obj = {"apiVersion": "elasti.truefoundry.com/v1alpha1", "kind": "ElastiService",
           "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    if status is not None:
        obj["status"] = status
    return obj


def target(kind="Deployment", api="apps/v1", name="web"):
    return {"apiVersion": api, "kind": kind, "name": name}


# Every ElastiService example of KubeElasti's configuration reference
# (../shared/reference/elastiservice-configuration.txt), placeholders filled in.
REFERENCE_EXAMPLES = {
    # "An ElastiService custom resource has the following structure" (every field)
    "full-structure": es({
        "service": "httpbin",
        "minTargetReplicas": 1,
        "cooldownPeriod": 900,
        "scaleTargetRef": target("Deployment", "apps/v1", "httpbin"),
        "triggers": [{"type": "prometheus", "metadata": {
            "query": "sum(rate(nginx_ingress_controller_nginx_process_requests_total[1m])) or vector(0)",
            "serverAddress": "http://kube-prometheus-stack-prometheus.monitoring.svc.cluster.local:9090",
            "threshold": "0.5",
            "uptimeFilter": 'container="prometheus"'}}],
        "autoscaler": {"name": "httpbin-scaled-object", "type": "keda"},
        "probeResponse": [{
            "method": "GET",
            "path": {"type": "PathPrefix", "value": "/healthz"},
            "headers": [{"name": "User-Agent", "type": "RegularExpression", "value": "^kube-probe/.*"}],
            "queryParams": [{"name": "probe", "type": "Exact", "value": "1"}],
            "response": {"status": 200, "body": '{"ok":true}'}}],
        "enabledPeriod": {"schedule": "0 0 * * *", "duration": "24h"},
    }, name="httpbin", namespace="elasti-demo"),
    # "2. triggers": the example trigger
    "triggers": es({
        "service": "httpbin", "minTargetReplicas": 1, "scaleTargetRef": target(name="httpbin"),
        "triggers": [{"type": "prometheus", "metadata": {
            "query": "sum(rate(nginx_ingress_controller_requests[1m])) or vector(0)",
            "serverAddress": "http://kube-prometheus-stack-prometheus.monitoring.svc.cluster.local:9090",
            "threshold": "0.5"}}]}),
    # "3. probeResponse"
    "probeResponse": es({
        "service": "httpbin", "scaleTargetRef": target(name="httpbin"),
        "probeResponse": [
            {"method": "GET", "path": {"type": "PathPrefix", "value": "/healthz"},
             "response": {"status": 200, "body": '{"ok":true}'}},
            {"method": "HEAD", "path": {"type": "Exact", "value": "/ready"},
             "response": {"status": 204, "body": "{}"}}]}),
    # "6. enabledPeriod" and its schedule examples
    "enabledPeriod-night": es({"service": "web", "scaleTargetRef": target(),
                               "enabledPeriod": {"schedule": "0 22 * * *", "duration": "12h"}}),
    "enabledPeriod-weekdays": es({"service": "web", "scaleTargetRef": target(),
                                  "enabledPeriod": {"schedule": "0 9 * * 1-5", "duration": "8h"}}),
    "enabledPeriod-steps": es({"service": "web", "scaleTargetRef": target(),
                               "enabledPeriod": {"schedule": "*/15 8-17 * * 1-5", "duration": "30m"}}),
    # "1. scaleTargetRef": Deployment, StatefulSet, Argo Rollout
    "target-statefulset": es({"service": "db", "scaleTargetRef": target("StatefulSet", "apps/v1", "db")}),
    "target-rollout": es({"service": "web", "scaleTargetRef": target("Rollout", "argoproj.io/v1alpha1")}),
    # "5. cooldownPeriod": bounds
    "cooldown-0": es({"service": "web", "scaleTargetRef": target(), "cooldownPeriod": 0}),
    "cooldown-max": es({"service": "web", "scaleTargetRef": target(), "cooldownPeriod": 604800}),
    # "4. scalers"
    "autoscaler-keda": es({"service": "web", "scaleTargetRef": target(),
                           "autoscaler": {"type": "keda", "name": "web-scaledobject"}}),
}

# Accepted by KubeElasti's CRD though the reference does not show them.
KUBEELASTI_ALSO_ACCEPTS = {
    "alias-deployments": es({"service": "web", "scaleTargetRef": target("deployments")}),
    "alias-rollouts": es({"service": "web", "scaleTargetRef": target("rollouts", "argoproj.io/v1alpha1")}),
    "autoscaler-hpa": es({"service": "web", "scaleTargetRef": target(), "autoscaler": {"type": "hpa", "name": "w"}}),
    "numeric-threshold": es({"service": "web", "scaleTargetRef": target(), "triggers": [
        {"type": "prometheus", "metadata": {"query": "up", "threshold": 0.5, "headers": {"X-Org": "1"}}}]}),
    "enabledPeriod-empty": es({"service": "web", "scaleTargetRef": target(), "enabledPeriod": {}}),
    "probe-no-path": es({"service": "web", "scaleTargetRef": target(),
                         "probeResponse": [{"response": {"status": 503, "body": ""}}]}),
    "kubeelasti-status": es({"service": "web", "scaleTargetRef": target()}, status={
        "mode": "proxy", "lastScaledUpTime": "2025-01-01T00:00:00Z",
        "lastReconciledTime": "2025-01-01T00:01:00Z"}),
}

HOLDFAST_EXAMPLES = {
    "holdfast-spec": es({"service": "web", "scaleTargetRef": target(), "holdTimeoutSeconds": 120,
                         "maxHeldConnections": 5000}),
    "holdfast-wake": es({"service": "web", "scaleTargetRef": target(), "podCapacity": 20,
                         "maxWakeReplicas": 10, "wakeWith": [
                             {"kind": "Deployment", "name": "worker"},
                             {"kind": "Rollout", "name": "cache", "apiVersion": "argoproj.io/v1alpha1"}]},
                        status={"wakeWithReplicas": {"Deployment/worker": 3}}),
    "holdfast-cold-start": es({"service": "web", "scaleTargetRef": target()}, status={
        "lastColdStart": {"startedAt": "2025-01-01T00:00:00.250Z", "totalMs": 41200, "phases": {
            "scaleSent": 3, "scaleAnswered": 40, "podCreated": 40, "podScheduled": 40,
            "containersStarted": 35000, "ready": 41000, "firstByte": 41200}}}),
    "holdfast-status": es({"service": "web", "scaleTargetRef": target()}, status={
        "mode": "proxy", "observedGeneration": 3, "lastReconciledTime": "2025-01-01T00:00:00Z",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "resolverPort": 20000},
                  {"name": "grpc", "port": 9090, "resolverPort": 20001}],
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Proxying", "message": "",
             "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 3},
            {"type": "ScaledToZero", "status": "True", "reason": "BelowThreshold",
             "message": "sum(...) = 0 < 0.5", "lastTransitionTime": "2025-01-01T00:00:00Z"},
            {"type": "TriggerHealthy", "status": "True", "reason": "QuerySucceeded", "message": "",
             "lastTransitionTime": "2025-01-01T00:00:00Z"},
            {"type": "ScaleUpFailed", "status": "False", "reason": "ScaledUp", "message": "",
             "lastTransitionTime": "2025-01-01T00:00:00Z"}]}),
}


def _bad(change):
    obj = copy.deepcopy(REFERENCE_EXAMPLES["full-structure"])
    change(obj)
    return obj


def _set(path, value):
    def change(obj):
        cur = obj
        parts = path.split(".")
        for p in parts[:-1]:
            cur = cur[int(p)] if p.isdigit() else cur[p]
        if value is KeyError:
            del cur[parts[-1]]
        else:
            cur[parts[-1]] = value
    return change


# Rejected by KubeElasti's CRD; ours must reject them too (same meaning), plus the bounds of
# holdfast's own fields. (name -> (object, whether KubeElasti's CRD rejects it too))
INVALID = {
    "cooldown-too-long": (_bad(_set("spec.cooldownPeriod", 604801)), True),
    "cooldown-negative": (_bad(_set("spec.cooldownPeriod", -1)), True),
    "min-replicas-0": (_bad(_set("spec.minTargetReplicas", 0)), True),
    "kind-job": (_bad(_set("spec.scaleTargetRef.kind", "Job")), True),
    "api-extensions": (_bad(_set("spec.scaleTargetRef.apiVersion", "extensions/v1beta1")), True),
    "no-service": (_bad(_set("spec.service", KeyError)), True),
    "no-target-name": (_bad(_set("spec.scaleTargetRef.name", KeyError)), True),
    "trigger-type": (_bad(_set("spec.triggers.0.type", "cpu")), True),
    "no-triggers": (_bad(_set("spec.triggers", [])), True),
    "probe-status-201": (_bad(_set("spec.probeResponse.0.response.status", 201)), True),
    "probe-status-string": (_bad(_set("spec.probeResponse.0.response.status", "200")), True),
    "probe-method": (_bad(_set("spec.probeResponse.0.method", "get")), True),
    "probe-no-body": (_bad(_set("spec.probeResponse.0.response.body", KeyError)), True),
    "probe-path-long": (_bad(_set("spec.probeResponse.0.path.value", "/" * 1025)), True),
    "too-many-probes": (_bad(_set("spec.probeResponse", [{"response": {"status": 200, "body": ""}}] * 33)),
                        True),
    "autoscaler-type": (_bad(_set("spec.autoscaler.type", "vpa")), True),
    "cooldown-string": (_bad(_set("spec.cooldownPeriod", "900")), True),
    "hold-timeout-0": (_bad(_set("spec.holdTimeoutSeconds", 0)), False),
    "hold-timeout-too-long": (_bad(_set("spec.holdTimeoutSeconds", 86401)), False),
    "max-held-0": (_bad(_set("spec.maxHeldConnections", 0)), False),
    "pod-capacity-0": (_bad(_set("spec.podCapacity", 0)), False),
    "pod-capacity-string": (_bad(_set("spec.podCapacity", "2")), False),
    "max-wake-0": (_bad(_set("spec.maxWakeReplicas", 0)), False),
    "wake-with-kind": (_bad(_set("spec.wakeWith", [{"kind": "Job", "name": "x"}])), False),
    "wake-with-no-name": (_bad(_set("spec.wakeWith", [{"kind": "Deployment"}])), False),
    "wake-with-replicas-negative": (es({"service": "w", "scaleTargetRef": target()}, status={
        "wakeWithReplicas": {"Deployment/worker": -1}}), False),
    "cold-start-negative": (es({"service": "w", "scaleTargetRef": target()}, status={
        "lastColdStart": {"startedAt": "2025-01-01T00:00:00Z", "totalMs": 5,
                          "phases": {"ready": -1}}}), False),
    "cold-start-no-start": (es({"service": "w", "scaleTargetRef": target()}, status={
        "lastColdStart": {"totalMs": 5}}), False),
    "wake-with-17": (_bad(_set("spec.wakeWith", [{"kind": "Deployment", "name": "w%d" % i}
                                                  for i in range(17)])), False),
    "condition-status": (es({"service": "w", "scaleTargetRef": target()}, status={"conditions": [
        {"type": "Ready", "status": "Maybe", "reason": "X", "message": "",
         "lastTransitionTime": "2025-01-01T00:00:00Z"}]}), False),
    "condition-duplicate": (es({"service": "w", "scaleTargetRef": target()}, status={"conditions": [
        {"type": "Ready", "status": "True", "reason": "X", "message": "",
         "lastTransitionTime": "2025-01-01T00:00:00Z"}] * 2}), False),
    "resolver-port": (es({"service": "w", "scaleTargetRef": target()}, status={"ports": [
        {"name": "http", "port": 80, "resolverPort": 70000}]}), False),
}

VALID = {**REFERENCE_EXAMPLES, **KUBEELASTI_ALSO_ACCEPTS}


@pytest.mark.parametrize("validator", sorted(VALIDATORS))
@pytest.mark.parametrize("name", sorted(VALID))
def test_kubeelasti_manifests_valid_against_ours_with_the_same_defaults(name, validator):
    process = VALIDATORS[validator]
    mine, kubeelasti = copy.deepcopy(VALID[name]), copy.deepcopy(VALID[name])
    errs = process(mine, schema_of(ours()))
    assert not errs, "%s rejected by our CRD: %s" % (name, errs)
    their_errs = process(kubeelasti, schema_of(theirs()))
    assert not their_errs, "%s: sample is not valid for KubeElasti's CRD either: %s" % (name, their_errs)
    assert mine == kubeelasti, "%s: stored differently (defaults): ours %r, KubeElasti's %r" % (
        name, mine, kubeelasti)


@pytest.mark.parametrize("validator", sorted(VALIDATORS))
@pytest.mark.parametrize("name", sorted(HOLDFAST_EXAMPLES))
def test_holdfast_fields_valid(name, validator):
    obj = copy.deepcopy(HOLDFAST_EXAMPLES[name])
    errs = VALIDATORS[validator](obj, schema_of(ours()))
    assert not errs, errs
    if "status" in obj and "ports" in obj["status"]:
        assert obj["status"]["ports"][1]["protocol"] == "TCP"  # defaulted


@pytest.mark.parametrize("name,validator", [(n, v) for n in sorted(INVALID) for v in sorted(VALIDATORS)])
def test_invalid_manifests_rejected(name, validator):
    obj, kubeelasti_rejects = INVALID[name]
    process = VALIDATORS[validator]
    assert process(copy.deepcopy(obj), schema_of(ours())), "%s accepted by our CRD" % name
    if kubeelasti_rejects:
        assert process(copy.deepcopy(obj), schema_of(theirs())), "%s: KubeElasti's CRD accepts it" % name


def test_defaults():
    obj = es({"service": "web", "scaleTargetRef": target(), "enabledPeriod": {}})
    assert not local_process(obj, schema_of(ours()))
    assert obj["spec"]["cooldownPeriod"] == 900
    assert obj["spec"]["enabledPeriod"] == {"schedule": "0 0 * * *", "duration": "24h"}
    assert "minTargetReplicas" not in obj["spec"] and "holdTimeoutSeconds" not in obj["spec"]
    bare = es({"service": "web", "scaleTargetRef": target()})
    local_process(bare, schema_of(ours()))
    assert "enabledPeriod" not in bare["spec"]


def test_fixture_never_copied_into_repo():
    fixture_text = theirs() and FIXTURE_PATH.read_text()
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in (".git", "build", "node_modules", "__pycache__")]
        for f in files:
            if f.endswith((".yaml", ".yml")):
                p = pathlib.Path(root, f)
                assert p.read_text(errors="replace") != fixture_text, "%s is a copy of KubeElasti's CRD" % p


def _structural_problems(n, path, problems):
    shown = path or "<root>"
    if "type" not in n and not (n.get("x-kubernetes-preserve-unknown-fields") or n.get("x-kubernetes-int-or-string")):
        problems.append("%s: no type" % shown)
    for e in n.get("enum") or []:
        if "type" in n and not _type_ok(e, n["type"]):
            problems.append("%s: enum value %r is not a %s" % (shown, e, n["type"]))
    if "default" in n:
        errs = local_process(copy.deepcopy(n["default"]), {k: v for k, v in n.items() if k != "default"})
        problems += ["%s: default %r invalid: %s" % (shown, n["default"], e) for e in errs]
    for r in n.get("required") or []:
        if r not in (n.get("properties") or {}):
            problems.append("%s: requires unknown property %s" % (shown, r))
    if n.get("x-kubernetes-list-type") == "map":
        item = n["items"]
        for key in n.get("x-kubernetes-list-map-keys") or [problems.append("%s: no map keys" % shown)]:
            p = (item.get("properties") or {}).get(key)
            if p is None or (key not in (item.get("required") or []) and "default" not in p):
                problems.append("%s: map key %s must be a required or defaulted property" % (shown, key))
    for name, sub in (n.get("properties") or {}).items():
        _structural_problems(sub, (path + "." if path else "") + name, problems)
    if isinstance(n.get("items"), dict):
        _structural_problems(n["items"], path + "[]", problems)


def test_our_schema_is_structural():
    """What the API server checks when the CRD is created (a non-structural schema is refused)."""
    problems = []
    _structural_problems(schema_of(ours()), "", problems)
    assert not problems, "\n".join(problems)
    root = schema_of(ours())
    assert root["type"] == "object" and root["properties"]["metadata"] == {"type": "object"}


def test_docs_examples_are_valid():
    """Every ElastiService manifest and the status example in docs/elastiservice.md."""
    text = (REPO / "docs" / "elastiservice.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    manifests = [b for b in blocks if isinstance(b, dict) and b.get("kind") == "ElastiService"]
    statuses = [b for b in blocks if isinstance(b, dict) and set(b) == {"status"}]
    assert len(manifests) >= 2 and len(statuses) == 1
    for m in manifests + [es({"service": "web", "scaleTargetRef": target()}, status=statuses[0]["status"])]:
        for name, process in VALIDATORS.items():
            errs = process(copy.deepcopy(m), schema_of(ours()))
            assert not errs, "%s (%s): %s" % (m["metadata"]["name"], name, errs)
