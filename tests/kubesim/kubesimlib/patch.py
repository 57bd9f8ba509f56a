"""The three patch formats the API server accepts on JSON resources.

- merge_patch:     RFC 7386 (application/merge-patch+json)
- json_patch:      RFC 6902 (application/json-patch+json)
- strategic_merge: application/strategic-merge-patch+json for built-in kinds, with the merge keys
                   and directives ($patch, $retainKeys, $setElementOrder, $deleteFromPrimitiveList)
                   that kubectl and client libraries send.
"""
from .errors import ApiError
from .util import deep


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return deep(patch)
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _unescape(tok):
    return tok.replace("~1", "/").replace("~0", "~")


def _walk(doc, pointer):
    """Return (parent, last_token) for a JSON pointer."""
    if pointer == "":
        return None, None
    if not pointer.startswith("/"):
        raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request: "
                       "invalid JSON pointer %r" % pointer)
    toks = [_unescape(t) for t in pointer[1:].split("/")]
    cur = doc
    for t in toks[:-1]:
        if isinstance(cur, dict) and t in cur:
            cur = cur[t]
        elif isinstance(cur, list) and t.isdigit() and int(t) < len(cur):
            cur = cur[int(t)]
        else:
            raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request")
    return cur, toks[-1]


def _pget(doc, pointer):
    if pointer == "":
        return doc
    parent, tok = _walk(doc, pointer)
    if isinstance(parent, dict) and tok in parent:
        return parent[tok]
    if isinstance(parent, list) and tok.isdigit() and int(tok) < len(parent):
        return parent[int(tok)]
    raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request")


def json_patch(doc, ops):
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = deep(doc)
    for op in ops:
        kind = op.get("op")
        path = op.get("path", "")
        if kind == "test":
            if _pget(doc, path) != op.get("value"):
                raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request: "
                               "testing value %s failed: test failed" % path)
            continue
        if kind in ("move", "copy"):
            val = deep(_pget(doc, op.get("from", "")))
            if kind == "move":
                doc = json_patch(doc, [{"op": "remove", "path": op["from"]}])
            doc = json_patch(doc, [{"op": "add", "path": path, "value": val}])
            continue
        if path == "":
            if kind in ("add", "replace"):
                doc = deep(op.get("value"))
                continue
            raise ApiError(422, "Invalid", "the server rejected our request: cannot remove the root")
        parent, tok = _walk(doc, path)
        if kind == "add":
            if isinstance(parent, dict):
                parent[tok] = deep(op.get("value"))
            elif isinstance(parent, list):
                if tok == "-":
                    parent.append(deep(op.get("value")))
                elif tok.isdigit() and int(tok) <= len(parent):
                    parent.insert(int(tok), deep(op.get("value")))
                else:
                    raise ApiError(422, "Invalid", "the server rejected our request due to an error in our "
                                   "request: add operation does not apply: index out of range")
            else:
                raise ApiError(422, "Invalid", "the server rejected our request due to an error in our "
                               "request: add operation does not apply: doc is missing path: \"%s\"" % path)
        elif kind in ("remove", "replace"):
            if isinstance(parent, dict) and tok in parent:
                if kind == "remove":
                    del parent[tok]
                else:
                    parent[tok] = deep(op.get("value"))
            elif isinstance(parent, list) and tok.isdigit() and int(tok) < len(parent):
                if kind == "remove":
                    parent.pop(int(tok))
                else:
                    parent[int(tok)] = deep(op.get("value"))
            else:
                raise ApiError(422, "Invalid", "the server rejected our request due to an error in our "
                               "request: %s operation does not apply: doc is missing path: \"%s\": missing "
                               "value" % (kind, path))
        else:
            raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request: "
                           "Unexpected kind: %s" % kind)
    return doc


# Merge keys of list fields in built-in kinds (the patchMergeKey tags of the Go types). Lists not
# named here are atomic: the patch replaces them.
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath",
    "imagePullSecrets": "name", "hostAliases": "ip", "conditions": "type",
    "ownerReferences": "uid", "topologySpreadConstraints": "topologyKey",
    "containerStatuses": "name", "initContainerStatuses": "name",
}
PRIMITIVE_MERGE = {"finalizers"}


def _merge_key(field, items):
    if field == "ports":
        sample = next((i for i in items if isinstance(i, dict)), {})
        return "containerPort" if "containerPort" in sample else "port"
    return MERGE_KEYS.get(field)


def strategic_merge(target, patch):
    if not isinstance(patch, dict):
        return deep(patch)
    if not isinstance(target, dict):
        target = {}
    if patch.get("$patch") == "replace":
        return {k: deep(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    out = dict(target)
    retain = patch.get("$retainKeys")
    for k, v in patch.items():
        if k.startswith("$setElementOrder/") or k in ("$retainKeys", "$patch"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            out[field] = [x for x in out.get(field) or [] if x not in v]
            continue
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list):
            out[k] = _merge_list(k, out.get(k), v)
        elif isinstance(v, dict):
            merged = strategic_merge(out.get(k), v)
            if merged is None:
                out.pop(k, None)
            else:
                out[k] = merged
        else:
            out[k] = v
    if retain is not None:
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _merge_list(field, current, patch):
    current = current if isinstance(current, list) else []
    if field in PRIMITIVE_MERGE:
        out = list(current)
        for x in patch:
            if x not in out:
                out.append(x)
        return out
    key = _merge_key(field, patch + current)
    if not key or not all(isinstance(i, dict) for i in patch):
        if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
            return [i for i in patch if not (isinstance(i, dict) and "$patch" in i)]
        return deep(patch)
    if any(i.get("$patch") == "replace" for i in patch):
        return [deep(i) for i in patch if "$patch" not in i]
    out = [deep(i) for i in current]
    for item in patch:
        kv = item.get(key)
        idx = next((n for n, c in enumerate(out) if isinstance(c, dict) and c.get(key) == kv), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(strategic_merge({}, item))
        else:
            out[idx] = strategic_merge(out[idx], item)
    return out
