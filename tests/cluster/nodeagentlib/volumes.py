"""A pod's volumes, materialized as directories under the pod's state directory: projected
(serviceAccountToken by the TokenRequest API, configMap, secret, downwardAPI), configMap, secret,
downwardAPI and emptyDir. Files are replaced by rename, so a reader never sees half a token.
Tokens are requested again at 80% of their lifetime, as the kubelet does."""
import base64
import logging
import os
import re
import time

from .kubeapi import ApiError

log = logging.getLogger("nodeagent.volumes")


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def field_value(pod, path, node_name, node_ip):
    """The downward API's fieldRef values."""
    md, st = pod["metadata"], pod.get("status") or {}
    simple = {"metadata.name": md.get("name"), "metadata.namespace": md.get("namespace"),
              "metadata.uid": md.get("uid"), "spec.nodeName": node_name,
              "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", "default"),
              "status.hostIP": node_ip, "status.hostIPs": node_ip,
              "status.podIP": st.get("podIP", ""), "status.podIPs": ",".join(i["ip"] for i in st.get("podIPs") or [])}
    if path in simple:
        return simple[path] or ""
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path)
    if m:
        return (md.get(m.group(1)) or {}).get(m.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        d = md.get(path.split(".")[1]) or {}
        return "\n".join('%s="%s"' % (k, d[k]) for k in sorted(d))
    raise ValueError("unsupported fieldRef %s" % path)


class Volumes:
    def __init__(self, api, pod, root, node_name, node_ip):
        self.api = api
        self.root = root
        self.node_name, self.node_ip = node_name, node_ip
        self.pod = pod
        self.refresh_at = None     # monotonic time the next token is due, if any

    def path(self, name):
        return os.path.join(self.root, name)

    def _get(self, kind, name):
        ns = self.pod["metadata"]["namespace"]
        # the Node authorizer learns of a pod's references a moment after the pod: retry 403 briefly
        for attempt in range(20):
            try:
                return self.api.get("/api/v1/namespaces/%s/%s/%s" % (ns, kind, name))
            except ApiError as e:
                if e.status != 403 or attempt == 19:
                    raise
                time.sleep(0.25)

    def _keys(self, kind, src, optional_default=False):
        """{key: bytes} of a configMap or secret source, honouring items and optional."""
        try:
            obj = self._get(kind, src["name"])
        except ApiError as e:
            if e.status == 404 and src.get("optional", optional_default):
                return {}
            raise
        data = {}
        for k, v in (obj.get("data") or {}).items():
            data[k] = base64.b64decode(v) if kind == "secrets" else v.encode()
        for k, v in (obj.get("binaryData") or {}).items():
            data[k] = base64.b64decode(v)
        if src.get("items"):
            return {it.get("path", it["key"]): data[it["key"]] for it in src["items"] if it["key"] in data}
        return data

    def _token(self, sat, dest):
        md = self.pod["metadata"]
        sa = (self.pod.get("spec") or {}).get("serviceAccountName") or "default"
        spec = {"expirationSeconds": sat.get("expirationSeconds", 3607),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": md["name"], "uid": md["uid"]}}
        if sat.get("audience"):
            spec["audiences"] = [sat["audience"]]     # else the API server's own audiences
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        for attempt in range(20):
            try:
                tr = self.api.post("/api/v1/namespaces/%s/serviceaccounts/%s/token" % (md["namespace"], sa), body)
                break
            except ApiError as e:
                if e.status != 403 or attempt == 19:
                    raise
                time.sleep(0.25)
        _write(os.path.join(dest, sat.get("path", "token")), tr["status"]["token"])
        life = (tr.get("spec") or {}).get("expirationSeconds") or sat.get("expirationSeconds", 3607)
        due = time.monotonic() + 0.8 * life
        self.refresh_at = due if self.refresh_at is None else min(self.refresh_at, due)

    def _downward(self, items, dest):
        for it in items or []:
            if it.get("fieldRef"):
                _write(os.path.join(dest, it["path"]),
                       field_value(self.pod, it["fieldRef"]["fieldPath"], self.node_name, self.node_ip))

    def materialize(self, only_tokens=False):
        """Writes every volume (only the token files if only_tokens). Raises ApiError/OSError."""
        self.refresh_at = None
        for v in (self.pod.get("spec") or {}).get("volumes") or []:
            dest = self.path(v["name"])
            os.makedirs(dest, exist_ok=True)
            if "projected" in v:
                for src in v["projected"].get("sources") or []:
                    if "serviceAccountToken" in src:
                        self._token(src["serviceAccountToken"], dest)
                    elif only_tokens:
                        continue
                    elif "configMap" in src:
                        for k, data in self._keys("configmaps", src["configMap"]).items():
                            _write(os.path.join(dest, k), data)
                    elif "secret" in src:
                        for k, data in self._keys("secrets", src["secret"]).items():
                            _write(os.path.join(dest, k), data)
                    elif "downwardAPI" in src:
                        self._downward(src["downwardAPI"].get("items"), dest)
            elif only_tokens:
                continue
            elif "configMap" in v:
                for k, data in self._keys("configmaps", v["configMap"]).items():
                    _write(os.path.join(dest, k), data)
            elif "secret" in v:
                src = dict(v["secret"], name=v["secret"].get("secretName"))
                for k, data in self._keys("secrets", src).items():
                    _write(os.path.join(dest, k), data)
            elif "downwardAPI" in v:
                self._downward(v["downwardAPI"].get("items"), dest)
            elif "emptyDir" not in v:
                log.warning("pod %s/%s: volume %s of an unsupported kind is an empty directory",
                            self.pod["metadata"]["namespace"], self.pod["metadata"]["name"], v["name"])

    def mounts(self, cspec):
        """podexec --mount arguments for the container's volumeMounts."""
        out = []
        for vm in cspec.get("volumeMounts") or []:
            src = self.path(vm["name"])
            if vm.get("subPath"):
                src = os.path.join(src, vm["subPath"])
            out.append("%s:%s%s" % (src, vm["mountPath"], ":ro" if vm.get("readOnly") else ""))
        return out
