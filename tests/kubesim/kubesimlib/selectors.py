"""Label selectors (equality and set-based, string and LabelSelector forms) and field selectors."""
import re

from .errors import bad_request

_TOKEN = re.compile(r"\s*(!=|==|=|\(|\)|,|!|[A-Za-z0-9_./-]+)")


def _tokenize(s):
    pos, out = 0, []
    while pos < len(s):
        if s[pos:].strip() == "":
            break
        m = _TOKEN.match(s, pos)
        if not m:
            raise bad_request("unable to parse requirement: invalid label selector: %r" % s)
        out.append(m.group(1))
        pos = m.end()
    return out


def parse_label_selector(s):
    """Parse `a=b,c!=d,e in (x,y),f notin (z),g,!h` into [(key, op, [values])]."""
    reqs = []
    if not s or not s.strip():
        return reqs
    toks = _tokenize(s)
    i = 0

    def expect(cond, what):
        if not cond:
            raise bad_request("unable to parse requirement: found '%s', expected: %s"
                              % (toks[i] if i < len(toks) else "", what))

    while i < len(toks):
        if toks[i] == "!":
            i += 1
            expect(i < len(toks), "identifier")
            reqs.append((toks[i], "!", []))
            i += 1
        else:
            key = toks[i]
            i += 1
            if i >= len(toks) or toks[i] == ",":
                reqs.append((key, "exists", []))
            elif toks[i] in ("=", "==", "!="):
                op = "!=" if toks[i] == "!=" else "="
                i += 1
                val = ""
                if i < len(toks) and toks[i] not in (",",):
                    val = toks[i]
                    i += 1
                reqs.append((key, op, [val]))
            elif toks[i] in ("in", "notin"):
                op = toks[i]
                i += 1
                expect(i < len(toks) and toks[i] == "(", "(")
                i += 1
                vals = []
                while i < len(toks) and toks[i] != ")":
                    if toks[i] != ",":
                        vals.append(toks[i])
                    i += 1
                expect(i < len(toks), ")")
                i += 1
                reqs.append((key, op, vals))
            else:
                expect(False, "=, !=, in, notin")
        if i < len(toks):
            expect(toks[i] == ",", ",")
            i += 1
    return reqs


def selector_from_labelselector(ls):
    """metav1.LabelSelector (matchLabels/matchExpressions) -> requirement list."""
    reqs = []
    if ls is None:
        return None
    for k, v in sorted((ls.get("matchLabels") or {}).items()):
        reqs.append((k, "=", [v]))
    for e in ls.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(e.get("operator"))
        if op is None:
            raise bad_request("invalid label selector operator %r" % e.get("operator"))
        reqs.append((e.get("key"), op, list(e.get("values") or [])))
    return reqs


def selector_string(ls):
    """The string form of a LabelSelector, as Scale.status.selector shows it."""
    parts = []
    for k, op, vals in selector_from_labelselector(ls) or []:
        if op == "=":
            parts.append("%s=%s" % (k, vals[0]))
        elif op == "!=":
            parts.append("%s!=%s" % (k, vals[0]))
        elif op in ("in", "notin"):
            parts.append("%s %s (%s)" % (k, op, ",".join(sorted(vals))))
        elif op == "exists":
            parts.append(k)
        elif op == "!":
            parts.append("!" + k)
    return ",".join(parts)


def labels_match(reqs, labels):
    labels = labels or {}
    for key, op, vals in reqs or []:
        has = key in labels
        v = labels.get(key)
        if op == "=" and (not has or v != vals[0]):
            return False
        if op == "!=" and has and v == vals[0]:
            return False
        if op == "in" and (not has or v not in vals):
            return False
        if op == "notin" and has and v in vals:
            return False
        if op == "exists" and not has:
            return False
        if op == "!" and has:
            return False
    return True


def map_selector_match(selector_map, labels):
    """Service-style selector: every key=value must be present. Empty selects nothing here."""
    labels = labels or {}
    return bool(selector_map) and all(labels.get(k) == v for k, v in selector_map.items())


# Field selectors: the real API server supports metadata.name and metadata.namespace on every
# resource, plus a per-kind list; anything else is a 400.
EXTRA_FIELDS = {
    "pods": ["spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
             "status.phase", "status.podIP", "status.nominatedNodeName"],
    "events": ["involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
               "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
               "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"],
    "namespaces": ["status.phase"],
    "secrets": ["type"],
}


def parse_field_selector(s, plural):
    reqs = []
    if not s:
        return reqs
    allowed = ["metadata.name", "metadata.namespace"] + EXTRA_FIELDS.get(plural, [])
    for part in s.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"^([^=!]+)(==|!=|=)(.*)$", part)
        if not m:
            raise bad_request("invalid selector: '%s'; can't understand '%s'" % (s, part))
        key, op, val = m.group(1).strip(), m.group(2), m.group(3).strip()
        if key not in allowed:
            raise bad_request('field label not supported: %s' % key)
        reqs.append((key, "!=" if op == "!=" else "=", val))
    return reqs


def _field_value(obj, key):
    if key == "source" and "source" in obj:
        return (obj.get("source") or {}).get("component", "")
    cur = obj
    for p in key.split("."):
        cur = cur.get(p) if isinstance(cur, dict) else None
    return "" if cur is None else str(cur)


def fields_match(reqs, obj):
    for key, op, val in reqs:
        v = _field_value(obj, key)
        if (op == "=") != (v == val):
            return False
    return True
