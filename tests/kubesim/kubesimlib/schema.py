"""Structural-schema handling of custom resources, in the order the API server applies it:
prune unknown fields (and non-nullable nulls), apply `default`s, then validate.

Validation errors are (fieldPath, reason, message) triples, worded like the API server's."""
import json
import re

from .util import deep

META_KEYS = ("apiVersion", "kind", "metadata")


def _typename(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _fmt(v):
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


def prune(obj, schema, root=True, unknown=None, path=""):
    """Drop fields the schema does not know. Records dropped paths in `unknown`."""
    if schema is None:
        return obj
    if isinstance(obj, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields")
        embedded = schema.get("x-kubernetes-embedded-resource")
        for k in list(obj.keys()):
            sub = path + "." + k if path else k
            if (root or embedded) and k in META_KEYS:
                continue
            v = obj[k]
            if props is not None and k in props:
                ps = props[k]
                if v is None and not ps.get("nullable"):
                    del obj[k]
                    continue
                obj[k] = prune(v, ps, False, unknown, sub)
            elif isinstance(addl, dict):
                obj[k] = prune(v, addl, False, unknown, sub)
            elif addl is True or preserve:
                continue
            else:
                del obj[k]
                if unknown is not None:
                    unknown.append(sub)
    elif isinstance(obj, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(obj):
                obj[i] = prune(v, items, False, unknown, "%s[%d]" % (path, i))
    return obj


def apply_defaults(obj, schema):
    if schema is None:
        return obj
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        for k, ps in props.items():
            if k not in obj and "default" in ps:
                obj[k] = deep(ps["default"])
            if k in obj:
                obj[k] = apply_defaults(obj[k], ps)
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            for k in obj:
                if k not in props:
                    obj[k] = apply_defaults(obj[k], addl)
    elif isinstance(obj, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(obj):
                obj[i] = apply_defaults(v, items)
    return obj


def validate(obj, schema, path="", errs=None, root=True):
    if errs is None:
        errs = []
    if schema is None:
        return errs
    shown = path or "<root>"
    t = schema.get("type")
    intstr = schema.get("x-kubernetes-int-or-string")
    if obj is None:
        if not schema.get("nullable") and t:
            errs.append((shown, "FieldValueTypeInvalid",
                         'Invalid value: "null": %s in body must be of type %s: "null"' % (shown, t)))
        return errs
    actual = _typename(obj)
    if intstr:
        if actual not in ("integer", "string"):
            errs.append((shown, "FieldValueTypeInvalid", "Invalid value: %s: %s in body must be of type "
                         "integer,string: %s" % (_fmt(actual), shown, _fmt(actual))))
            return errs
    elif t:
        ok = actual == t or (t == "number" and actual == "integer")
        if not ok:
            errs.append((shown, "FieldValueTypeInvalid", "Invalid value: %s: %s in body must be of type %s: %s"
                         % (_fmt(actual), shown, t, _fmt(actual))))
            return errs
    if "enum" in schema and obj not in schema["enum"]:
        errs.append((shown, "FieldValueNotSupported", "Unsupported value: %s: supported values: %s"
                     % (_fmt(obj), ", ".join(_fmt(e) for e in schema["enum"]))))
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        if "minimum" in schema:
            lim = schema["minimum"]
            if obj < lim or (schema.get("exclusiveMinimum") and obj == lim):
                errs.append((shown, "FieldValueInvalid", "Invalid value: %s: %s in body should be greater than %s%s"
                             % (_fmt(obj), shown, "" if schema.get("exclusiveMinimum") else "or equal to ", _fmt(lim))))
        if "maximum" in schema:
            lim = schema["maximum"]
            if obj > lim or (schema.get("exclusiveMaximum") and obj == lim):
                errs.append((shown, "FieldValueInvalid", "Invalid value: %s: %s in body should be less than %s%s"
                             % (_fmt(obj), shown, "" if schema.get("exclusiveMaximum") else "or equal to ", _fmt(lim))))
        if "multipleOf" in schema and schema["multipleOf"] and obj % schema["multipleOf"] != 0:
            errs.append((shown, "FieldValueInvalid", "Invalid value: %s: %s in body should be a multiple of %s"
                         % (_fmt(obj), shown, _fmt(schema["multipleOf"]))))
    if isinstance(obj, str):
        if "maxLength" in schema and len(obj) > schema["maxLength"]:
            errs.append((shown, "FieldValueTooLong", "Too long: may not be longer than %d" % schema["maxLength"]))
        if "minLength" in schema and len(obj) < schema["minLength"]:
            errs.append((shown, "FieldValueInvalid", "Invalid value: %s: %s in body should be at least %d chars long"
                         % (_fmt(obj), shown, schema["minLength"])))
        if "pattern" in schema:
            try:
                if not re.search(schema["pattern"], obj):
                    errs.append((shown, "FieldValueInvalid", "Invalid value: %s: %s in body should match '%s'"
                                 % (_fmt(obj), shown, schema["pattern"])))
            except re.error:
                pass
    if isinstance(obj, list):
        if "maxItems" in schema and len(obj) > schema["maxItems"]:
            errs.append((shown, "FieldValueTooMany", "Too many: %d: must have at most %d items"
                         % (len(obj), schema["maxItems"])))
        if "minItems" in schema and len(obj) < schema["minItems"]:
            errs.append((shown, "FieldValueInvalid", "Invalid value: %d: %s in body should have at least %d items"
                         % (len(obj), shown, schema["minItems"])))
        items = schema.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(obj):
                validate(v, items, "%s[%d]" % (path, i), errs, False)
        if schema.get("x-kubernetes-list-type") == "set":
            seen = []
            for i, v in enumerate(obj):
                if v in seen:
                    errs.append(("%s[%d]" % (path, i), "FieldValueDuplicate", "Duplicate value: %s" % _fmt(v)))
                seen.append(v)
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        for req in schema.get("required") or []:
            if req not in obj:
                errs.append(((path + "." if path else "") + req, "FieldValueRequired", "Required value"))
        for k, v in obj.items():
            if root and k in META_KEYS:
                continue
            sub = (path + "." if path else "") + k
            if k in props:
                validate(v, props[k], sub, errs, False)
            elif isinstance(schema.get("additionalProperties"), dict):
                validate(v, schema["additionalProperties"], sub, errs, False)
        if "maxProperties" in schema and len(obj) > schema["maxProperties"]:
            errs.append((shown, "FieldValueTooMany", "Too many: %d: must have at most %d items"
                         % (len(obj), schema["maxProperties"])))
        if "minProperties" in schema and len(obj) < schema["minProperties"]:
            errs.append((shown, "FieldValueInvalid", "Invalid value: %d: %s in body should have at least %d properties"
                         % (len(obj), shown, schema["minProperties"])))
    for sub in schema.get("allOf") or []:
        validate(obj, sub, path, errs, root)
    if schema.get("anyOf"):
        if not any(not validate(obj, s, path, [], root) for s in schema["anyOf"]):
            errs.append((shown, "FieldValueInvalid", "Invalid value: %s: %s in body must be valid against "
                         "at least one schema in anyOf" % (_fmt(obj), shown)))
    if schema.get("oneOf"):
        n = sum(1 for s in schema["oneOf"] if not validate(obj, s, path, [], root))
        if n != 1:
            errs.append((shown, "FieldValueInvalid", "Invalid value: %s: %s in body must validate one and "
                         "only one schema (oneOf)" % (_fmt(obj), shown)))
    if schema.get("not") is not None and not validate(obj, schema["not"], path, [], root):
        errs.append((shown, "FieldValueInvalid", "Invalid value: %s: %s in body must not validate the "
                     "schema (not)" % (_fmt(obj), shown)))
    return errs


def process(obj, schema, strict_unknown=None):
    """Prune, default and validate `obj` in place. Returns (errors, dropped_field_paths)."""
    if schema is None:
        return [], []
    dropped = []
    prune(obj, schema, True, dropped)
    apply_defaults(obj, schema)
    return validate(obj, schema), dropped
