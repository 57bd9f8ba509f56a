"""A minimal OpenAPI v3 surface: the index at /openapi/v3 and one document per group-version
whose PATCH operations declare the `fieldValidation` query parameter.

That is what kubectl checks before it relies on server-side field validation (`apply`, `create`
with --validate=strict). No component schemas are published, so kubectl computes apply patches
from its compiled-in types (built-in kinds) or as JSON merge patches (custom resources), as it
does against any server whose OpenAPI lacks a schema for the kind."""
import hashlib
import json


def _gv_path(group, version):
    return "api/" + version if not group else "apis/%s/%s" % (group, version)


def index(registry):
    paths = {}
    for r in registry.all():
        for v in r.versions:
            p = _gv_path(r.group, v)
            paths[p] = {"serverRelativeURL": "/openapi/v3/%s?hash=%s" % (p, _hash(registry, r.group, v))}
    return {"paths": paths}


def _hash(registry, group, version):
    doc = document(registry, group, version)
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()


def document(registry, group, version):
    paths = {}
    for r in sorted(registry.all(), key=lambda r: r.plural):
        if r.group != group or version not in r.versions:
            continue
        base = "/" + _gv_path(group, version)
        coll = base + ("/namespaces/{namespace}/" if r.namespaced else "/") + r.plural
        gvk = {"group": group, "version": version, "kind": r.kind}
        params = [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                  for n in ("dryRun", "fieldManager", "fieldValidation")]
        op = {"x-kubernetes-group-version-kind": gvk, "parameters": params,
              "responses": {"200": {"description": "OK"}}}
        paths[coll + "/{name}"] = {"get": dict(op, parameters=[]), "put": op, "patch": op, "delete": dict(op)}
        paths[coll] = {"post": op, "get": dict(op, parameters=[])}
        if r.status:
            paths[coll + "/{name}/status"] = {"patch": op, "put": op}
        if r.scale:
            sop = dict(op, **{"x-kubernetes-group-version-kind":
                              {"group": "autoscaling", "version": "v1", "kind": "Scale"}})
            paths[coll + "/{name}/scale"] = {"patch": sop, "put": sop}
    if not paths:
        return None
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.31.0-kubesim"},
            "paths": paths, "components": {"schemas": {}}}
