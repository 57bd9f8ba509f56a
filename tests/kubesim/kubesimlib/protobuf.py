"""Decoding of Kubernetes protobuf request bodies (application/vnd.kubernetes.protobuf) for the
kinds some kubectl commands send that way: the rbac.authorization.k8s.io/v1 kinds (kubectl
1.31's `create rolebinding --user`, `create clusterrolebinding --group`, ...).

The body is the "k8s\\0" magic, then a runtime.Unknown message (typeMeta, raw, ...) whose raw
bytes are the object, encoded with the field numbers of the API's generated.proto. Decoded
objects come out as the JSON form; fields not listed here are dropped (as an old server drops
unknown protobuf fields)."""
from .errors import bad_request

MAGIC = b"k8s\x00"

# message schemas: field number -> (json name, type, repeated); type is "string", "bytes",
# "int", "bool", a message name, or "map" (map<string,string>)
S, I, B, MAP = "string", "int", "bool", "map"
SCHEMAS = {
    "Unknown": {1: ("typeMeta", "TypeMeta", False), 2: ("raw", "bytes", False),
                3: ("contentEncoding", S, False), 4: ("contentType", S, False)},
    "TypeMeta": {1: ("apiVersion", S, False), 2: ("kind", S, False)},
    "ObjectMeta": {1: ("name", S, False), 2: ("generateName", S, False), 3: ("namespace", S, False),
                   5: ("uid", S, False), 6: ("resourceVersion", S, False), 7: ("generation", I, False),
                   11: ("labels", MAP, False), 12: ("annotations", MAP, False),
                   13: ("ownerReferences", "OwnerReference", True), 14: ("finalizers", S, True)},
    "OwnerReference": {1: ("kind", S, False), 3: ("name", S, False), 4: ("uid", S, False),
                       5: ("apiVersion", S, False), 6: ("controller", B, False),
                       7: ("blockOwnerDeletion", B, False)},
    "LabelSelector": {1: ("matchLabels", MAP, False), 2: ("matchExpressions", "LabelSelectorRequirement", True)},
    "LabelSelectorRequirement": {1: ("key", S, False), 2: ("operator", S, False), 3: ("values", S, True)},
    "PolicyRule": {1: ("verbs", S, True), 2: ("apiGroups", S, True), 3: ("resources", S, True),
                   4: ("resourceNames", S, True), 5: ("nonResourceURLs", S, True)},
    "AggregationRule": {1: ("clusterRoleSelectors", "LabelSelector", True)},
    "Subject": {1: ("kind", S, False), 2: ("apiGroup", S, False), 3: ("name", S, False), 4: ("namespace", S, False)},
    "RoleRef": {1: ("apiGroup", S, False), 2: ("kind", S, False), 3: ("name", S, False)},
    "Role": {1: ("metadata", "ObjectMeta", False), 2: ("rules", "PolicyRule", True)},
    "ClusterRole": {1: ("metadata", "ObjectMeta", False), 2: ("rules", "PolicyRule", True),
                    3: ("aggregationRule", "AggregationRule", False)},
    "RoleBinding": {1: ("metadata", "ObjectMeta", False), 2: ("subjects", "Subject", True),
                    3: ("roleRef", "RoleRef", False)},
    "ClusterRoleBinding": {1: ("metadata", "ObjectMeta", False), 2: ("subjects", "Subject", True),
                           3: ("roleRef", "RoleRef", False)},
}
DECODABLE = {("rbac.authorization.k8s.io", k) for k in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")}


def _varint(data, i):
    shift = result = 0
    while True:
        if i >= len(data):
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(data):
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(data, i)
        elif wt == 2:
            n, i = _varint(data, i)
            v, i = data[i:i + n], i + n
        elif wt == 1:
            v, i = data[i:i + 8], i + 8
        elif wt == 5:
            v, i = data[i:i + 4], i + 4
        else:
            raise ValueError("unsupported wire type %d" % wt)
        yield num, wt, v


def decode_message(data, schema):
    out = {}
    for num, wt, v in _fields(data):
        f = SCHEMAS[schema].get(num)
        if f is None:
            continue
        name, typ, repeated = f
        if typ == S:
            val = v.decode()
        elif typ == "bytes":
            val = bytes(v)
        elif typ == I:
            val = v - (1 << 64) if v >= 1 << 63 else v
        elif typ == B:
            val = bool(v)
        elif typ == MAP:
            entry = dict((k, x.decode()) for k, _w, x in _fields(v))
            out.setdefault(name, {})[entry.get(1, "")] = entry.get(2, "")
            continue
        else:
            val = decode_message(v, typ)
        if repeated:
            out.setdefault(name, []).append(val)
        elif val not in ("", 0, False) or typ not in (S, I, B):
            out[name] = val     # zero scalars are left out, as Go's omitempty does in JSON
    return out


def decode(body, group, kind):
    """The JSON form of a protobuf-encoded object of group/kind, or a 400."""
    if not body.startswith(MAGIC):
        raise bad_request("provided protobuf body does not start with the k8s magic prefix")
    try:
        env = decode_message(body[len(MAGIC):], "Unknown")
        tm = env.get("typeMeta") or {}
        if tm.get("kind") and tm["kind"] != kind:
            raise bad_request("Object kind %s does not match %s" % (tm["kind"], kind))
        obj = decode_message(env.get("raw", b""), kind)
    except (ValueError, UnicodeDecodeError, IndexError) as e:
        raise bad_request("unable to decode protobuf body: %s" % e)
    obj["apiVersion"] = tm.get("apiVersion") or group + "/v1"
    obj["kind"] = kind
    return obj
