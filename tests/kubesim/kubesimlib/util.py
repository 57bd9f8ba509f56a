"""Small helpers shared by every kubesim module."""
import copy
import datetime
import json
import random
import string
import uuid


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro():
    """MicroTime, as Lease renewTime and events.k8s.io eventTime are written."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s):
    if not s:
        return None
    s = s.replace("Z", "+00:00")
    try:
        return datetime.datetime.fromisoformat(s).timestamp()
    except ValueError:
        return None


def new_uid():
    return str(uuid.uuid4())


_ALNUM = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet Kubernetes uses for generated suffixes


def rand_suffix(n=5):
    return "".join(random.choice(_ALNUM) for _ in range(n))


def deep(o):
    return copy.deepcopy(o)


def dumps(o):
    return json.dumps(o, separators=(",", ":"))


def get_path(obj, path, default=None):
    """get_path(obj, "spec.replicas")"""
    cur = obj
    for part in path.split("."):
        if not part:
            continue
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def set_path(obj, path, value):
    parts = [p for p in path.split(".") if p]
    cur = obj
    for part in parts[:-1]:
        if not isinstance(cur.get(part), dict):
            cur[part] = {}
        cur = cur[part]
    cur[parts[-1]] = value


def owner_ref(obj, controller=True):
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def controller_of(obj):
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def valid_dns_subdomain(name):
    if not name or len(name) > 253:
        return False
    allowed = string.ascii_lowercase + string.digits + "-."
    return all(c in allowed for c in name) and name[0].isalnum() and name[-1].isalnum()


def valid_dns_label(name):
    return valid_dns_subdomain(name) and "." not in name and len(name) <= 63
