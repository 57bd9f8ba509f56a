"""A small client of the Kubernetes REST API over http.client, authenticated by the client
certificate of a kubeconfig (file paths or inline *-data). One connection per thread, reopened
after any error; watches get a connection of their own.

    api = Api.from_kubeconfig(path, scratch_dir)
    api.get(path) / post / put / patch / delete  -> parsed JSON, or raises ApiError
    api.watch(path, rv, timeout)                 -> yields (type, object) until the server ends it"""
import base64
import http.client
import json
import os
import socket
import ssl
import threading
import urllib.parse

import yaml


class ApiError(Exception):
    def __init__(self, status, body, method="", path=""):
        self.status = status
        self.body = body if isinstance(body, dict) else {"message": str(body)}
        super().__init__("%s %s: %s %s" % (method, path, status, self.body.get("message", "")))

    @property
    def reason(self):
        return self.body.get("reason", "")


class Api:
    def __init__(self, server, ctx, timeout=10.0):
        u = urllib.parse.urlsplit(server)
        self.host = u.hostname
        self.port = u.port or 443
        self.ctx = ctx
        self.timeout = timeout
        self.local = threading.local()

    @classmethod
    def from_kubeconfig(cls, path, scratch_dir):
        """Reads the current context of the kubeconfig at path; inline certificate data is written
        to scratch_dir (mode 0600) because ssl wants files."""
        with open(path) as f:
            kc = yaml.safe_load(f)
        base = os.path.dirname(os.path.abspath(path))
        ctxname = kc.get("current-context")
        ctx = next((c["context"] for c in kc.get("contexts") or [] if c["name"] == ctxname),
                   (kc.get("contexts") or [{}])[0].get("context", {}))
        cluster = next(c["cluster"] for c in kc["clusters"] if c["name"] == ctx.get("cluster", kc["clusters"][0]["name"]))
        users = kc.get("users") or []
        user = next((u["user"] for u in users if u["name"] == ctx.get("user")), users[0]["user"] if users else {})

        def material(obj, key, name):
            if obj.get(key + "-data"):
                os.makedirs(scratch_dir, exist_ok=True)
                p = os.path.join(scratch_dir, name)
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(base64.b64decode(obj[key + "-data"]))
                return p
            if obj.get(key):
                return os.path.join(base, obj[key])
            return None

        sslctx = ssl.create_default_context(cafile=material(cluster, "certificate-authority", "ca.crt"))
        cert, key = material(user, "client-certificate", "client.crt"), material(user, "client-key", "client.key")
        if cert:
            sslctx.load_cert_chain(cert, key)
        return cls(cluster["server"], sslctx)

    def _conn(self, timeout=None):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout or self.timeout)

    def request(self, method, path, body=None, content_type="application/json", params=None):
        if params:
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode(params)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", "User-Agent": "hfc-nodeagent/1"}
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in (0, 1):
            conn = getattr(self.local, "conn", None)
            reused = conn is not None
            if conn is None:
                conn = self.local.conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 1 or not reused:      # a kept-alive connection the server closed: once more
                    raise
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            doc = {"message": raw[:200].decode(errors="replace")}
        if resp.status >= 400:
            raise ApiError(resp.status, doc, method, path)
        return doc

    def request_text(self, method, path):
        """A request whose answer is not JSON (pods/log): the body as text; raises ApiError."""
        conn = self._conn()
        try:
            conn.request(method, path, headers={"User-Agent": "hfc-nodeagent/1"})
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        if resp.status >= 400:
            raise ApiError(resp.status, {"message": raw[:300].decode(errors="replace")}, method, path)
        return raw.decode(errors="replace")

    def get(self, path, **params):
        return self.request("GET", path, params=params or None)

    def post(self, path, body):
        return self.request("POST", path, body)

    def put(self, path, body):
        return self.request("PUT", path, body)

    def patch(self, path, body, kind="merge"):
        return self.request("PATCH", path, body, content_type="application/%s-patch+json" % kind)

    def delete(self, path, body=None):
        return self.request("DELETE", path, body)

    def watch(self, path, resource_version, timeout_seconds=300, stop=None):
        """Yields (type, object) from one watch request; returns when the server ends it. Raises
        ApiError for an HTTP error (410 Gone among them) and OSError if the connection drops."""
        params = {"watch": "1", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(timeout_seconds)}
        path += ("&" if "?" in path else "?") + urllib.parse.urlencode(params)
        conn = self._conn(timeout=timeout_seconds + 30)
        try:
            conn.request("GET", path, headers={"Accept": "application/json", "User-Agent": "hfc-nodeagent/1"})
            resp = conn.getresponse()
            if resp.status >= 400:
                raw = resp.read()
                try:
                    doc = json.loads(raw)
                except ValueError:
                    doc = {"message": raw[:200].decode(errors="replace")}
                raise ApiError(resp.status, doc, "WATCH", path)
            if stop is not None:
                stop.append(conn)
            while True:
                line = resp.readline()
                if not line:
                    return
                if line.strip():
                    ev = json.loads(line)
                    yield ev["type"], ev["object"]
        except (socket.timeout, ValueError) as e:
            raise OSError("watch %s: %s" % (path, e))
        finally:
            conn.close()
