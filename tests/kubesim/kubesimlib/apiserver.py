"""The HTTPS Kubernetes REST API: authentication, authorization rules, discovery, CRUD, list,
watch, patch, and the status and scale subresources, answering as kube-apiserver does.

Transport: one thread per TLS connection, HTTP/1.1 keep-alive, JSON bodies. Watches stream
newline-delimited JSON events with chunked transfer encoding. The listening socket can be
stopped and restarted on the same port (fault injection: API outage)."""
import http.server
import json
import logging
import os
import random
import socket
import ssl
import threading
import time
import urllib.parse

import yaml

from . import auth, builtins, errors, openapi, patch as patchmod, protobuf, selectors, tables
from .errors import ApiError
from .util import get_path, now_rfc3339, set_path

log = logging.getLogger("kubesim.api")

VERSION_INFO = {
    "major": "1", "minor": "31", "gitVersion": "v1.31.0-kubesim", "gitCommit": "kubesim",
    "gitTreeState": "clean", "buildDate": "2024-08-13T00:00:00Z", "goVersion": "go1.22.5",
    "compiler": "gc", "platform": "linux/amd64",
}


class Rules:
    """Optional per-token authorization (a static token file with RBAC-style allow rules),
    re-read when the file changes. Unioned with RBAC: a rules token is also granted whatever
    RoleBindings and ClusterRoleBindings give its user and groups.

    File (YAML or JSON):
      tokens:
        <token>:
          user: system:serviceaccount:ns:name     # the user name (403 messages, RBAC subjects)
          groups: [team-a]                        # optional; system:authenticated is always added
          rules:                                  # RBAC PolicyRules; whatever is not allowed is forbidden
            - apiGroups: ["apps"]
              resources: ["deployments/scale"]     # "*" and "<plural>/*" work as in RBAC
              verbs: ["get", "patch"]
              namespaces: ["demo"]                 # optional (kubesim extension; RBAC uses RoleBindings)
              resourceNames: ["web"]               # optional
            - nonResourceURLs: ["/metrics"]        # optional, as in RBAC
              verbs: ["get"]
    """

    def __init__(self, path):
        self.path = path
        self.mtime = None
        self.tokens = {}
        self.lock = threading.Lock()

    def _load(self):
        if not self.path:
            return
        with self.lock:
            try:
                m = os.stat(self.path).st_mtime_ns
            except OSError:
                self.tokens = {}
                return
            if m != self.mtime:
                with open(self.path) as f:
                    doc = yaml.safe_load(f) or {}
                self.tokens = doc.get("tokens") or {}
                self.mtime = m

    def user(self, token):
        """The auth.User of a rules token, or None."""
        self._load()
        t = self.tokens.get(token)
        if t is None:
            return None
        groups = [g for g in t.get("groups") or [] if g != "system:authenticated"] + ["system:authenticated"]
        return auth.User(t.get("user") or "kubesim-user", groups, admin="system:masters" in groups, token=token)

    def allowed(self, token, a):
        self._load()
        for r in (self.tokens.get(token) or {}).get("rules") or []:
            if not _match(r.get("verbs"), a.verb):
                continue
            if not a.resource_request:
                if auth.rule_allows({"verbs": ["*"], "nonResourceURLs": r.get("nonResourceURLs")}, a):
                    return True
                continue
            if not _match(r.get("apiGroups"), a.group):
                continue
            resource = a.combined()
            res_ok = any(x == "*" or x == resource or (x.endswith("/*") and resource.startswith(x[:-1]))
                         or (x.startswith("*/") and resource.endswith(x[1:]))
                         for x in r.get("resources") or [])
            if not res_ok:
                continue
            if r.get("namespaces") and a.namespace not in r["namespaces"]:
                continue
            if r.get("resourceNames") and a.name not in r["resourceNames"]:
                continue
            return True
        return False

    def rules_for(self, token, namespace):
        """The token's rules that apply in namespace, as SelfSubjectRulesReview lists them."""
        self._load()
        res_rules, nonres = [], []
        for r in (self.tokens.get(token) or {}).get("rules") or []:
            if r.get("nonResourceURLs"):
                nonres.append({"verbs": list(r.get("verbs") or []), "nonResourceURLs": list(r["nonResourceURLs"])})
            elif not r.get("namespaces") or namespace in r["namespaces"]:
                out = {k: list(r[k]) for k in ("verbs", "apiGroups", "resources", "resourceNames") if r.get(k)}
                res_rules.append(out)
        return res_rules, nonres


def _match(lst, v):
    return bool(lst) and ("*" in lst or v in lst)


class Request:
    """A parsed resource request."""

    def __init__(self, res, version, ns, name, sub, query):
        self.res, self.version, self.ns, self.name, self.sub, self.query = res, version, ns, name, sub, query

    def q(self, key, default=None):
        return self.query.get(key, [default])[-1]


class ApiServer:
    def __init__(self, store, registry, token, host="127.0.0.1", port=0, certfile=None, keyfile=None,
                 rules_file=None, latency_ms=0, bookmark_interval=10.0):
        self.store = store
        self.registry = registry
        self.token = token
        self.rules = Rules(rules_file)
        self.rbac = auth.RBACAuthorizer(store, registry)
        self.tokens = auth.TokenIssuer(store, registry)
        self.base_latency = latency_ms / 1000.0
        self.extra_latency = 0.0
        self.extra_latency_until = 0.0
        self.unavailable_until = 0.0      # 503 outage
        self.write_answer_delay = 0.0     # slow-write-answers fault: seconds, until ..._until
        self.write_answer_delay_until = 0.0
        self.bookmark_interval = bookmark_interval
        self.log_dir = None               # state dir, for pods/{name}/log
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certfile, keyfile)
        self.ctx.set_alpn_protocols(["http/1.1"])
        self.host = host
        self.sock, self.port = _bind_explicit(host, port)
        self.listening = threading.Event()
        self.stopping = False
        self.conns = set()
        self.conns_lock = threading.Lock()

    # ------------------------------------------------------------ transport

    def start(self):
        self.sock.listen(1024)
        self.listening.set()
        threading.Thread(target=self._accept_loop, name="api-accept", daemon=True).start()

    def _accept_loop(self):
        while not self.stopping:
            self.listening.wait()
            try:
                conn, addr = self.sock.accept()
            except OSError:
                if self.stopping:
                    return
                time.sleep(0.01)   # listener shut down for an outage; wait for resume
                continue
            threading.Thread(target=self._serve_conn, args=(conn, addr), daemon=True).start()

    def _serve_conn(self, conn, addr):
        with self.conns_lock:
            self.conns.add(conn)
        tls = None
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = self.ctx.wrap_socket(conn, server_side=True)
            # wrap_socket detaches `conn` (its fd now belongs to `tls`): an outage must shut
            # down the TLS socket, or kept-alive connections would go on working through it.
            with self.conns_lock:
                self.conns.discard(conn)
                self.conns.add(tls)
            Handler(tls, addr, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self.conns_lock:
                self.conns.discard(conn)
                if tls is not None:
                    self.conns.discard(tls)
            for s in (tls, conn):
                try:
                    if s is not None:
                        s.close()
                except OSError:
                    pass

    def close_connections(self):
        with self.conns_lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(conns)

    def refuse(self):
        """Stop listening (new connections refused) but keep the port; drop open connections."""
        self.listening.clear()
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass
        self.close_connections()

    def resume(self):
        if not self.listening.is_set():
            self.sock.listen(1024)
            self.listening.set()

    def stop(self):
        self.stopping = True
        self.refuse()
        self.store.drop_watches()
        try:
            self.sock.close()
        except OSError:
            pass

    def latency(self):
        d = self.base_latency
        if time.monotonic() < self.extra_latency_until:
            d += self.extra_latency
        if d > 0:
            time.sleep(d)

    # ------------------------------------------------------------ dispatch

    def handle(self, h, method):
        """Entry point for every HTTP request. Returns nothing; writes the response on h."""
        h._body = None
        url = urllib.parse.urlsplit(h.path)
        path = url.path.rstrip("/") or "/"
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        self.latency()
        try:
            if time.monotonic() < self.unavailable_until:
                # No Retry-After: a load balancer in front of a dead API server answers like this,
                # and clients (urllib3, client-go) would otherwise retry it transparently.
                raise ApiError(503, "ServiceUnavailable", "the server is currently unable to handle the request")
            if path in ("/healthz", "/livez", "/readyz"):
                return h.send_raw(200, b"ok", "text/plain; charset=utf-8")
            if path == "/version":
                return h.send_json(200, VERSION_INFO)
            user = self._impersonate(h, self._authenticate(h))
            if path.startswith("/openapi") or _is_discovery(path):
                self._authorize(user, auth.Attributes(method.lower(), path=path))
                if method != "GET":
                    raise errors.method_not_allowed()
            if path.startswith("/openapi"):
                return h.send_json(200, self._openapi(path))
            doc = self._discovery(path)
            if doc is not None:
                return h.send_json(200, doc)
            req = self._route(path, query)
            verb = self._verb(method, req)
            self._authorize(user, self._attributes(verb, req))
            return self._serve(h, method, verb, req, user)
        except ApiError as e:
            h.send_json(e.code, e.status(), e.headers)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            h.close_connection = True
        except Exception as e:  # a kubesim bug must still answer like an API server would
            log.exception("internal error on %s %s", method, h.path)
            h.send_json(500, errors.status_object(500, "InternalError", "Internal error occurred: %s" % e))

    def authenticate_token(self, token):
        """The auth.User a bearer token stands for, or None."""
        if not token:
            return None
        if token == self.token:
            return auth.User(auth.ADMIN_USER, ["system:masters", "system:authenticated"], admin=True, token=token)
        return self.rules.user(token) or self.tokens.verify(token)

    def _authenticate(self, h):
        auth_header = h.headers.get("Authorization", "")
        token = auth_header[7:].strip() if auth_header.startswith("Bearer ") else None
        user = self.authenticate_token(token)
        if user is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return user

    def _impersonate(self, h, user):
        """Impersonate-User / Impersonate-Group / Impersonate-Uid (kubectl --as, --as-group), each
        authorized with the `impersonate` verb as the real impersonation filter does."""
        name = h.headers.get("Impersonate-User")
        groups = h.headers.get_all("Impersonate-Group") or []
        uid = h.headers.get("Impersonate-Uid")
        if name is None and not groups and uid is None:
            return user
        if not name:
            raise ApiError(500, "InternalError", "Internal error occurred: requested %s without impersonating a user"
                           % ("groups" if groups else "uid"))
        checks = []
        sa = auth.split_sa_username(name)
        if sa:
            checks.append(auth.Attributes("impersonate", "", "serviceaccounts", namespace=sa[0], name=sa[1]))
        else:
            checks.append(auth.Attributes("impersonate", "", "users", name=name))
        checks += [auth.Attributes("impersonate", "", "groups", name=g) for g in groups]
        if uid:
            checks.append(auth.Attributes("impersonate", "authentication.k8s.io", "uids", name=uid))
        for a in checks:
            allowed, reason = self.authorize(user, a)
            if not allowed:
                raise ApiError(403, "Forbidden", auth.forbidden_message(user.name, a, reason),
                               _details(a.name, a.group, a.resource))
        if sa and not groups:
            groups = auth.sa_groups(sa[0])
        elif name != "system:anonymous" and not {"system:authenticated", "system:unauthenticated"} & set(groups):
            groups = groups + ["system:authenticated"]
        return auth.User(name, groups, uid or "", admin="system:masters" in groups)

    def authorize(self, user, a):
        """(allowed, reason): system:masters, then the --rules file, then RBAC (a union, as
        kube-apiserver's authorizer chain)."""
        if user.admin:
            return True, ""
        if user.token and self.rules.allowed(user.token, a):
            return True, ""
        return self.rbac.authorize(user, a)

    def _authorize(self, user, a):
        allowed, reason = self.authorize(user, a)
        if not allowed:
            raise ApiError(403, "Forbidden", auth.forbidden_message(user.name, a, reason),
                           _details(a.name, a.group, a.resource))

    def _attributes(self, verb, req):
        name = req.name or ""
        if verb in ("list", "watch") and not name:
            # as the RequestInfo resolver: a list or watch of one name (fieldSelector
            # metadata.name=x) is authorized as a request for that name
            fs = [p.strip() for p in req.q("fieldSelector", "").split(",") if p.strip()]
            if len(fs) == 1:
                key, sep, val = fs[0].partition("==") if "==" in fs[0] else fs[0].partition("=")
                if sep and key.strip() == "metadata.name" and not key.endswith("!"):
                    name = val.strip()
        return auth.Attributes(verb, req.res.group, req.res.plural, req.sub or "", req.ns or "", name)

    def _openapi(self, path):
        if path == "/openapi/v3":
            return openapi.index(self.registry)
        parts = path.split("/")[3:]
        doc = None
        if parts[:1] == ["api"] and len(parts) == 2:
            doc = openapi.document(self.registry, "", parts[1])
        elif parts[:1] == ["apis"] and len(parts) == 3:
            doc = openapi.document(self.registry, parts[1], parts[2])
        if doc is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        return doc

    def _discovery(self, path):
        reg = self.registry
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                    "serverAddress": "%s:%d" % (self.host, self.port)}]}
        if path == "/apis":
            return reg.api_group_list()
        if path == "/api/v1":
            return reg.resource_list("", "v1")
        parts = path.split("/")
        if len(parts) == 3 and parts[1] == "apis":
            doc = reg.api_group(parts[2])
            if doc is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
            return doc
        if len(parts) == 4 and parts[1] == "apis":
            doc = reg.resource_list(parts[2], parts[3])
            if doc is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
            return doc
        return None

    def _route(self, path, query):
        parts = [urllib.parse.unquote(p) for p in path.split("/")[1:]]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        if rest and rest[0] == "watch":   # legacy /watch/ paths
            rest = rest[1:]
            query["watch"] = ["true"]
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
            ns, rest = rest[1], rest[2:]
        if not rest:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        res = self.registry.lookup(group, version, rest[0])
        if res is None or (ns is not None and not res.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        name = rest[1] if len(rest) > 1 else None
        sub = "/".join(rest[2:]) if len(rest) > 2 else None
        if sub and not ((sub == "status" and res.status) or (sub == "scale" and res.scale)
                        or (sub == "log" and res.storage_key == "/pods")
                        or (sub == "token" and res.storage_key == "/serviceaccounts")):
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        return Request(res, version, ns, name, sub, query)

    def _verb(self, method, req):
        watch = req.q("watch", "") in ("1", "true", "True")
        if method == "GET":
            if req.name is None:
                return "watch" if watch else "list"
            return "get"
        if method == "POST":
            return "create"
        if method == "PUT":
            return "update"
        if method == "PATCH":
            return "patch"
        if method == "DELETE":
            return "delete" if req.name else "deletecollection"
        raise errors.method_not_allowed()

    # ------------------------------------------------------------ presentation

    def present(self, req, obj, in_list=False):
        """A stored object as the client's version shows it."""
        res = req.res
        if res.storage_key == "events" and res.group == "events.k8s.io":
            out = builtins.event_from_core(obj)
        else:
            out = dict(obj)
            out["apiVersion"] = res.api_version(req.version)
        if in_list and res.crd is None:
            out.pop("apiVersion", None)
            out.pop("kind", None)
        return out

    def storage_res(self, res):
        return self.registry.by_storage(res.storage_key) if res.storage_key == "events" else res

    def _to_storage(self, req, obj):
        if req.res.storage_key == "events" and req.res.group == "events.k8s.io":
            return builtins.event_to_core(obj)
        return obj

    def _wants_table(self, h):
        acc = h.headers.get("Accept", "")
        for part in acc.split(","):
            if "as=Table" in part and "g=meta.k8s.io" in part:
                return True
            if part.strip().startswith("application/json") and "as=" not in part:
                return False
        return False

    # ------------------------------------------------------------ verbs

    def _serve(self, h, method, verb, req, user):
        store, res = self.store, req.res
        if res.virtual:
            return self._review(h, verb, req, user)
        if req.sub == "token":
            return self._token_request(h, verb, req)
        sres = self.storage_res(res)
        ns = req.ns if res.namespaced else None
        if verb == "list":
            return self._list(h, req, sres)
        if verb == "watch":
            return self._watch(h, req, sres)
        if verb == "get":
            obj = store.get(sres, ns, req.name)
            if req.sub == "log":
                return self._pod_log(h, req, obj)
            if req.sub == "scale":
                return h.send_json(200, self._scale_view(res, obj))
            if self._wants_table(h):
                return h.send_json(200, tables.table(res, req.version, [self.present(req, obj)],
                                                     obj["metadata"]["resourceVersion"],
                                                     req.q("includeObject", "Metadata")))
            return h.send_json(200, self.present(req, obj))
        body = h.read_body()
        dry = req.q("dryRun") == "All"
        fv = req.q("fieldValidation", "Ignore" if not h.headers.get("User-Agent", "").startswith("kubectl") else "Warn")
        if verb == "create":
            if req.name is not None:
                raise errors.method_not_allowed()
            obj = self._decode(body, h, res)
            self._check_kind(req, obj)
            if res is not sres:
                builtins.validate_object(res, obj)
            out, warns = store.create(sres, self._to_storage(req, obj), ns, req.version, fv, dry)
            return h.send_json(201, self.present(req, out), _warn(warns))
        if verb == "update":
            obj = self._decode(body, h, None if req.sub else res)
            if req.sub == "scale":
                return h.send_json(200, self._scale_write(req, sres, obj, dry))
            self._check_kind(req, obj)
            out, warns = store.update(sres, self._to_storage(req, obj), ns, req.name, req.sub, req.version, fv, dry)
            return h.send_json(200, self.present(req, out), _warn(warns))
        if verb == "patch":
            return self._patch(h, req, sres, body, fv, dry)
        if verb == "delete":
            opts = {}
            if body.strip():
                opts = self._decode(body, h)
            grace = opts.get("gracePeriodSeconds", req.q("gracePeriodSeconds"))
            grace = int(grace) if grace is not None else None
            prop = opts.get("propagationPolicy") or req.q("propagationPolicy")
            if opts.get("orphanDependents") is True or req.q("orphanDependents") == "true":
                prop = "Orphan"
            warn = None
            if prop is None and res.group == "batch" and res.plural == "jobs" and \
                    opts.get("orphanDependents") is None and req.q("orphanDependents") is None:
                # batch/v1 Jobs keep the old default: their pods are orphaned, with a warning
                prop = "Orphan"
                warn = _warn(["child pods are preserved by default when jobs are deleted; set "
                              "propagationPolicy=Background to remove them or set propagationPolicy=Orphan to "
                              "suppress this warning"])
            out, finished = store.delete(sres, ns, req.name, grace, prop, opts.get("preconditions"), dry)
            if finished and res.crd is not None:
                md = out["metadata"]
                return h.send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                         "status": "Success",
                                         "details": {"name": md["name"], "group": res.group,
                                                     "kind": res.plural, "uid": md["uid"]}})
            return h.send_json(200 if finished else 202, self.present(req, out), warn)
        if verb == "deletecollection":
            lreqs = selectors.parse_label_selector(req.q("labelSelector", ""))
            freqs = selectors.parse_field_selector(req.q("fieldSelector", ""), res.plural)
            items, rv = store.list_raw(sres, ns, lreqs, freqs)
            out = []
            for o in items:
                try:
                    out.append(self.present(req, store.delete(sres, o["metadata"].get("namespace"),
                                                              o["metadata"]["name"])[0], True))
                except ApiError:
                    pass
            return h.send_json(200, {"kind": res.kind + "List", "apiVersion": res.api_version(req.version),
                                     "metadata": {"resourceVersion": str(store.rv)}, "items": out})
        raise errors.method_not_allowed()

    # ------------------------------------------------------------ reviews and tokens

    def _review(self, h, verb, req, user):
        """The create-only types: access reviews, rules review, whoami, token review."""
        res = req.res
        if verb != "create" or req.name is not None:
            raise errors.method_not_allowed()
        obj = self._decode(h.read_body(), h)
        self._check_kind(req, obj)
        spec = obj.get("spec") or {}
        out = {"kind": res.kind, "apiVersion": res.api_version(req.version),
               "metadata": {"creationTimestamp": None}, "spec": spec}
        if res.kind in ("SelfSubjectAccessReview", "SubjectAccessReview", "LocalSubjectAccessReview"):
            ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
            errs = []
            if ra is not None and nra is not None:
                errs.append(("spec.nonResourceAttributes", "FieldValueInvalid", "Invalid value: %s: cannot be "
                             "specified in combination with resourceAttributes" % json.dumps(nra)))
            if ra is None and nra is None:
                errs.append(("spec.resourceAttributes", "FieldValueRequired", "Required value: exactly one of "
                             "nonResourceAttributes or resourceAttributes must be specified"))
            subject = user
            if res.kind != "SelfSubjectAccessReview":
                if not spec.get("user") and not spec.get("groups"):
                    errs.append(("spec.user", "FieldValueInvalid",
                                 'Invalid value: "": at least one of user or group must be specified'))
                groups = list(spec.get("groups") or [])
                subject = auth.User(spec.get("user") or "", groups, spec.get("uid") or "",
                                    admin="system:masters" in groups)
            if res.kind == "LocalSubjectAccessReview":
                md_ns = (obj.get("metadata") or {}).get("namespace") or req.ns
                if md_ns != req.ns:
                    raise errors.bad_request("metadata.namespace must match the request namespace")
                if nra is not None:
                    errs.append(("spec.nonResourceAttributes", "FieldValueInvalid",
                                 "Invalid value: %s: disallowed on this kind of request" % json.dumps(nra)))
                if ra is not None and ra.get("namespace", req.ns) != req.ns:
                    raise errors.bad_request("spec.resourceAttributes.namespace must match namespace: %s" % req.ns)
                if ra is not None:
                    ra["namespace"] = req.ns
                out["metadata"]["namespace"] = req.ns
            if errs:
                raise errors.invalid(res.kind, res.group, "", errs)
            if ra is not None:
                a = auth.Attributes(ra.get("verb", ""), ra.get("group", ""), ra.get("resource", ""),
                                    ra.get("subresource", ""), ra.get("namespace", ""), ra.get("name", ""))
            else:
                a = auth.Attributes(nra.get("verb", ""), path=nra.get("path", ""))
            allowed, reason = self.authorize(subject, a)
            out["status"] = {"allowed": allowed}
            if reason:
                out["status"]["reason"] = reason
        elif res.kind == "SelfSubjectRulesReview":
            ns = spec.get("namespace", "")
            if not ns:
                raise errors.invalid(res.kind, res.group, "", [("spec.namespace", "FieldValueRequired",
                                                                "Required value")])
            rr, nr, errs = self.rbac.rules_for(user, ns)
            if user.token and not user.admin:
                frr, fnr = self.rules.rules_for(user.token, ns)
                rr, nr = frr + rr, fnr + nr
            out["status"] = {"resourceRules": rr, "nonResourceRules": nr, "incomplete": bool(errs)}
            if errs:
                out["status"]["evaluationError"] = errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"
        elif res.kind == "SelfSubjectReview":
            out.pop("spec")
            out["status"] = {"userInfo": user.info()}
        elif res.kind == "TokenReview":
            if not spec.get("token"):
                raise errors.invalid(res.kind, res.group, "", [("spec.token", "FieldValueRequired", "Required value")])
            auds = spec.get("audiences") or [auth.API_AUDIENCE]
            who = None
            for aud in auds:
                who = (self.tokens.verify(spec["token"], aud) or
                       (self.authenticate_token(spec["token"]) if aud == auth.API_AUDIENCE else None))
                if who is not None:
                    break
            out["status"] = {"authenticated": True, "user": who.info(), "audiences": auds} if who else \
                {"user": {}, "error": "[invalid bearer token, service account token has been invalidated]"}
        return h.send_json(201, out)

    def _token_request(self, h, verb, req):
        """POST serviceaccounts/{name}/token (TokenRequest): a JWT for the account."""
        if verb != "create":
            raise errors.method_not_allowed()
        sa = self.store.get(req.res, req.ns, req.name)
        body = h.read_body()
        obj = self._decode(body, h) if body.strip() else {}
        if not isinstance(obj, dict):
            raise errors.bad_request("Object 'Kind' is missing in '%s'" % json.dumps(obj))
        spec = dict(obj.get("spec") or {})
        exp = spec.get("expirationSeconds")
        exp = 3600 if exp is None else exp
        if not isinstance(exp, int) or exp < 600:
            raise errors.invalid("TokenRequest", "authentication.k8s.io", req.name, [(
                "spec.expirationSeconds", "FieldValueInvalid",
                "Invalid value: %s: may not specify a duration less than 10 minutes" % json.dumps(exp))])
        if exp > 2 ** 32:
            raise errors.invalid("TokenRequest", "authentication.k8s.io", req.name, [(
                "spec.expirationSeconds", "FieldValueInvalid",
                "Invalid value: %d: may not specify a duration larger than 2^32 seconds" % exp)])
        spec["expirationSeconds"] = exp
        spec["audiences"] = list(spec.get("audiences") or [auth.API_AUDIENCE])
        bound = None
        ref = spec.get("boundObjectRef")
        if ref:
            plural = {"Pod": "pods", "Secret": "secrets", "Node": "nodes"}.get(ref.get("kind"))
            if plural is None:
                raise errors.invalid("TokenRequest", "authentication.k8s.io", req.name, [(
                    "spec.boundObjectRef.kind", "FieldValueNotSupported",
                    'Unsupported value: "%s": supported values: "Pod", "Secret", "Node"' % ref.get("kind", ""))])
            target = self.store.get(self.registry.lookup("", "v1", plural), req.ns if plural != "nodes" else None,
                                    ref.get("name"))
            if ref.get("uid") and ref["uid"] != target["metadata"]["uid"]:
                raise ApiError(409, "Conflict", 'the UID in the bound object reference (%s) does not match the UID '
                               "in record. The object might have been deleted and then recreated" % ref["uid"])
            bound = {"kind": ref["kind"], "name": ref["name"], "uid": target["metadata"]["uid"]}
            spec["boundObjectRef"] = dict(ref, uid=bound["uid"])
        else:
            spec["boundObjectRef"] = None
        token, exp_ts = self.tokens.issue(sa, spec, bound)
        return h.send_json(201, {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                                 "metadata": {"name": req.name, "namespace": req.ns,
                                              "creationTimestamp": now_rfc3339()},
                                 "spec": spec, "status": {"token": token, "expirationTimestamp": exp_ts}})

    def _pod_log(self, h, req, pod):
        """pods/{name}/log: the container's output so far (no follow)."""
        containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        container = req.q("container") or (containers[0] if len(containers) == 1 else None)
        if container not in containers:
            raise errors.bad_request("a container name must be specified for pod %s, choose one of: [%s]"
                                     % (req.name, " ".join(containers)))
        path = os.path.join(self.log_dir or "", "pods", "%s_%s_%s.log" % (req.ns, req.name, container))
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            data = b""
        tail = req.q("tailLines")
        if tail:
            data = b"".join(data.splitlines(True)[-int(tail):])
        return h.send_raw(200, data, "text/plain")

    def _decode(self, body, h, res=None):
        ctype = (h.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if ctype == "application/vnd.kubernetes.protobuf" and res is not None and \
                (res.group, res.kind) in protobuf.DECODABLE:
            return protobuf.decode(body, res.group, res.kind)
        if "protobuf" in ctype:
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                           "accepted media types include: application/json, application/yaml")
        try:
            if ctype.endswith("yaml"):
                return yaml.safe_load(body.decode())
            return json.loads(body.decode() or "null")
        except (ValueError, yaml.YAMLError) as e:
            raise errors.bad_request("Object 'Kind' is missing in '%s': %s" % (body[:200].decode(errors="replace"), e))

    def _check_kind(self, req, obj):
        if not isinstance(obj, dict):
            raise errors.bad_request("Object 'Kind' is missing in '%s'" % json.dumps(obj))
        kind = obj.get("kind")
        if kind and kind != req.res.kind:
            raise errors.bad_request("the API version in the data (%s) does not match the expected API version (%s)"
                                     % (obj.get("apiVersion"), req.res.api_version(req.version))
                                     if obj.get("apiVersion") != req.res.api_version(req.version) else
                                     "Object kind %s does not match %s" % (kind, req.res.kind))

    def _list(self, h, req, sres):
        res = req.res
        lreqs = selectors.parse_label_selector(req.q("labelSelector", ""))
        freqs = selectors.parse_field_selector(req.q("fieldSelector", ""), res.plural)
        limit = int(req.q("limit", "0") or 0)
        items, rv, cont, remaining = self.store.list_page(sres, req.ns if res.namespaced else None, lreqs, freqs,
                                                          limit, req.q("continue"))
        if self._wants_table(h):
            return h.send_json(200, tables.table(res, req.version, [self.present(req, o) for o in items], rv,
                                                 req.q("includeObject", "Metadata"), cont, remaining))
        md = {"resourceVersion": rv}
        if cont:
            md["continue"] = cont
        if remaining is not None:
            md["remainingItemCount"] = remaining
        return h.send_json(200, {"kind": res.kind + "List", "apiVersion": res.api_version(req.version),
                                 "metadata": md, "items": [self.present(req, o, True) for o in items]})

    def _watch(self, h, req, sres):
        res = req.res
        lreqs = selectors.parse_label_selector(req.q("labelSelector", ""))
        freqs = selectors.parse_field_selector(req.q("fieldSelector", ""), res.plural)
        timeout = req.q("timeoutSeconds")
        timeout = float(timeout) if timeout else random.uniform(1800, 3600)
        bookmarks = req.q("allowWatchBookmarks") in ("true", "1")
        table = self._wants_table(h)
        include = req.q("includeObject", "Metadata")
        try:
            w = self.store.watch(sres, req.ns if res.namespaced else None, lreqs, freqs, req.q("resourceVersion"))
        except ApiError as e:
            if e.code != 410:
                raise
            # As kube-apiserver: the watch is accepted, then ends with an ERROR event (410 Expired).
            h.start_stream()
            h.send_chunk({"type": "ERROR", "object": e.status()})
            h.end_stream()
            return
        h.start_stream()
        first = True
        try:
            end = time.monotonic() + timeout
            next_bm = time.monotonic() + self.bookmark_interval
            while True:
                now = time.monotonic()
                if now >= end:
                    break
                ev = w.next(min(end, next_bm) - now)
                if ev is None:
                    if bookmarks and time.monotonic() >= next_bm:
                        h.send_chunk({"type": "BOOKMARK", "object": {
                            "kind": res.kind, "apiVersion": res.api_version(req.version),
                            "metadata": {"resourceVersion": str(self.store.rv)}}})
                        next_bm = time.monotonic() + self.bookmark_interval
                    continue
                etype, obj = ev
                if etype == "CLOSED":
                    h.close_connection = True
                    break
                out = self.present(req, obj)
                if table:
                    out = tables.table(res, req.version, [out], obj["metadata"]["resourceVersion"], include,
                                       headers=first)
                    first = False
                h.send_chunk({"type": etype, "object": out})
        finally:
            self.store.unwatch(w)
        h.end_stream()

    # ------------------------------------------------------------ patch and scale

    def _patch(self, h, req, sres, body, fv, dry):
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip()
        res = req.res
        ns = req.ns if res.namespaced else None
        if ctype == "application/strategic-merge-patch+json" and res.crd is not None and req.sub != "scale":
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                           "accepted media types include: application/json-patch+json, "
                           "application/merge-patch+json, application/apply-patch+yaml")
        if ctype not in ("application/merge-patch+json", "application/json-patch+json",
                         "application/strategic-merge-patch+json", "application/apply-patch+yaml"):
            raise errors.unsupported_media(ctype)
        if ctype == "application/apply-patch+yaml":
            try:
                p = yaml.safe_load(body.decode())
            except yaml.YAMLError as e:
                raise errors.bad_request("error decoding YAML: %s" % e)
        else:
            try:
                p = json.loads(body.decode() or "null")
            except ValueError as e:
                raise errors.bad_request("error decoding patch: %s" % e)
        for attempt in range(10):
            try:
                cur = self.store.get(sres, ns, req.name)
            except ApiError as e:
                if e.code == 404 and ctype == "application/apply-patch+yaml" and req.sub is None:
                    obj = dict(p)
                    out, warns = self.store.create(sres, self._to_storage(req, obj), ns, req.version, fv, dry)
                    return h.send_json(201, self.present(req, out), _warn(warns))
                raise
            base = self._scale_view(res, cur) if req.sub == "scale" else self.present(req, cur)
            if ctype == "application/json-patch+json":
                new = patchmod.json_patch(base, p)
            elif ctype == "application/strategic-merge-patch+json":
                new = patchmod.strategic_merge(base, p)
            else:
                if not isinstance(p, dict):
                    raise errors.bad_request("json: cannot unmarshal %s into Go value of type map[string]interface {}"
                                             % type(p).__name__)
                new = patchmod.merge_patch(base, p)
            if not isinstance(new, dict):
                raise errors.bad_request("patch produced a non-object")
            pinned = isinstance(p, dict) and get_path(p, "metadata.resourceVersion") is not None or \
                isinstance(p, list) and any(o.get("path") == "/metadata/resourceVersion" for o in p if isinstance(o, dict))
            if not pinned:
                new.setdefault("metadata", {})["resourceVersion"] = cur["metadata"]["resourceVersion"]
            try:
                if req.sub == "scale":
                    return h.send_json(200, self._scale_write(req, sres, new, dry))
                out, warns = self.store.update(sres, self._to_storage(req, new), ns, req.name, req.sub,
                                               req.version, fv, dry)
                return h.send_json(200, self.present(req, out), _warn(warns))
            except ApiError as e:
                if e.code == 409 and e.reason == "Conflict" and not pinned and attempt < 9:
                    continue
                raise

    def _scale_view(self, res, obj):
        md = obj["metadata"]
        sc = res.scale
        spec_path = sc.get("specReplicasPath", ".spec.replicas")
        status_path = sc.get("statusReplicasPath", ".status.replicas")
        if res.crd is None:
            selector = selectors.selector_string((obj.get("spec") or {}).get("selector"))
        else:
            selector = get_path(obj, sc.get("labelSelectorPath", "") or ".-") if sc.get("labelSelectorPath") else None
        status = {"replicas": get_path(obj, status_path, 0) or 0}
        if selector:
            status["selector"] = selector
        spec = {}
        reps = get_path(obj, spec_path)
        if reps:
            spec["replicas"] = reps
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": md["name"], "namespace": md.get("namespace"), "uid": md["uid"],
                             "resourceVersion": md["resourceVersion"],
                             "creationTimestamp": md["creationTimestamp"]},
                "spec": spec, "status": status}

    def _scale_write(self, req, sres, scale, dry):
        res = req.res
        reps = get_path(scale, "spec.replicas", 0)
        if not isinstance(reps, int) or isinstance(reps, bool) or reps < 0:
            raise errors.invalid("Scale", "autoscaling", req.name, [(
                "spec.replicas", "FieldValueInvalid", "Invalid value: %s: must be greater than or equal to 0"
                % json.dumps(reps))])
        cur = self.store.get(sres, req.ns, req.name)
        want_rv = get_path(scale, "metadata.resourceVersion")
        if want_rv and want_rv != cur["metadata"]["resourceVersion"]:
            raise errors.conflict(res, req.name)
        set_path(cur, res.scale.get("specReplicasPath", ".spec.replicas"), reps)
        out, _ = self.store.update(sres, cur, req.ns, req.name, None, None, "Ignore", dry)
        return self._scale_view(res, out)


def _is_discovery(path):
    parts = path.split("/")
    return path in ("/api", "/apis", "/api/v1") or (len(parts) in (3, 4) and parts[1] == "apis")


def _details(name, group, kind):
    return {k: v for k, v in (("name", name), ("group", group), ("kind", kind)) if v}


def _warn(warnings):
    if not warnings:
        return None
    return {"Warning": ['299 - "%s"' % w.replace('"', '\\"') for w in warnings]}


def _bind_explicit(host, port):
    """Bind with an explicit port number. A socket auto-bound to port 0 loses its port when it
    stops listening (shutdown), so outages would move the API server; pick the port first."""
    for _ in range(20):
        want = port
        if not want:
            probe = socket.socket()
            probe.bind((host, 0))
            want = probe.getsockname()[1]
            probe.close()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, want))
            return s, want
        except OSError:
            s.close()
            if port:
                raise
    raise OSError("no free port for the API server on %s" % host)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubesim"
    sys_version = ""

    def __init__(self, sock, addr, api):
        self.api = api
        super().__init__(sock, addr, None)

    def setup(self):
        self.connection = self.request
        self.rfile = self.connection.makefile("rb", -1)
        self.wfile = self.connection.makefile("wb", 0)

    def finish(self):
        for f in (self.wfile, self.rfile):
            try:
                f.close()
            except OSError:
                pass

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)

    def do_GET(self):
        self.api.handle(self, "GET")

    def do_POST(self):
        self.api.handle(self, "POST")

    def do_PUT(self):
        self.api.handle(self, "PUT")

    def do_PATCH(self):
        self.api.handle(self, "PATCH")

    def do_DELETE(self):
        self.api.handle(self, "DELETE")

    def read_body(self):
        if getattr(self, "_body", None) is not None:
            return self._body
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            body = self.rfile.read(n)
        elif "chunked" in (self.headers.get("Transfer-Encoding") or ""):
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = b""
        self._body = body
        return body

    def _drain(self):
        if self.command in ("POST", "PUT", "PATCH", "DELETE"):
            try:
                self.read_body()
            except OSError:
                pass

    def send_raw(self, code, data, ctype, headers=None):
        self._drain()
        if self.command in ("POST", "PUT", "PATCH", "DELETE") and \
                time.monotonic() < self.api.write_answer_delay_until:
            # the write is done and its watchers have it; its answer comes later (the
            # slow-write-answers fault)
            time.sleep(self.api.write_answer_delay)
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            for item in (v if isinstance(v, list) else [v]):
                self.send_header(k, item)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_json(self, code, obj, headers=None):
        self.send_raw(code, json.dumps(obj, separators=(",", ":")).encode() + b"\n", "application/json", headers)

    def start_stream(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def send_chunk(self, obj):
        data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self):
        try:
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
