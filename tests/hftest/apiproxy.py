"""apiproxy: a fault-injecting HTTPS proxy in front of the test cluster's kube-apiserver, for the
faults a real API server cannot be asked for (docs/test-cluster.md, "Faults").

    p = ApiProxy(pki_dir).start()        # listens on 10.88.0.1:6445, in the calling thread's
                                         # network namespace (the cluster's)
    p.write_kubeconfig(path)             # the admin's kubeconfig, through the proxy
    p.fault("503", seconds=3)            # every request answered 503 for 3 s
    p.fault("refuse", seconds=3)         # listener closed and every connection cut, for 3 s
    p.fault("latency", ms=450, seconds=5)        # each request forwarded 450 ms late
    p.fault("slow-write-answers", ms=1500, seconds=5)
                                         # a write's answer held back 1.5 s after the server
                                         # answered it (its watch events are already out)
    p.drop_watches()                     # every watch stream cut now; returns how many
    p.clear()                            # every fault ended now
    p.stop()

Only the clients given the proxy's kubeconfig see the faults (holdfast, and the test's own
calls when it uses that kubeconfig); the controller-manager, the scheduler, kube-proxy and the
node agent talk to the API server directly, so the cluster goes on working underneath, as it
does when only one client's path to the API server is bad.

HTTP/1.1 only (ALPN offers nothing else): each client connection gets its own upstream
connection, requests are relayed one at a time, bodies by Content-Length, answers by
Content-Length or chunked (a watch is relayed chunk by chunk as it comes). Who the API server
sees: a client that sends a bearer token is passed on as it is; a client certificate (signed by
the cluster's CA) is passed on as impersonation headers of its subject (user = CN, groups = O)
over the admin's certificate, except the admin's own.
"""
import os
import socket
import ssl
import threading
import time

NODE_IP = "10.88.0.1"
PORT = 6445
UPSTREAM = (NODE_IP, 6443)
ADMIN_CN = "holdfast-test-admin"
MODES = ("503", "refuse", "latency", "slow-write-answers")
WRITES = ("POST", "PUT", "PATCH", "DELETE")
MAX_HEAD = 1 << 20


class _Closed(Exception):
    pass


def _read_until(sock, buf, sep):
    """(line, rest) of buf plus what sock sends until sep; raises _Closed at EOF."""
    while sep not in buf:
        if len(buf) > MAX_HEAD:
            raise _Closed("head too large")
        data = sock.recv(65536)
        if not data:
            raise _Closed("eof")
        buf += data
    i = buf.index(sep) + len(sep)
    return buf[:i], buf[i:]


def _read_exact(sock, buf, n):
    while len(buf) < n:
        data = sock.recv(65536)
        if not data:
            raise _Closed("eof")
        buf += data
    return buf[:n], buf[n:]


def _headers(head):
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0]
    hdrs = []
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            hdrs.append((k.strip(), v.strip()))
    return first, hdrs


def _get(hdrs, name):
    for k, v in hdrs:
        if k.lower() == name:
            return v
    return None


class ApiProxy:
    def __init__(self, pki_dir, listen=(NODE_IP, PORT), upstream=UPSTREAM):
        self.pki = pki_dir
        self.listen = listen
        self.upstream = upstream
        self.lock = threading.Lock()
        self.faults = {}          # mode -> (until monotonic, ms)
        self.conns = set()        # client sockets
        self.watches = set()      # client sockets streaming a watch
        self.listener = None
        self.stopped = threading.Event()
        self.stats = {"requests": 0, "answered_503": 0, "delayed": 0, "held_answers": 0,
                      "dropped_watches": 0}
        self.server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_ctx.load_cert_chain(os.path.join(pki_dir, "apiserver.crt"),
                                        os.path.join(pki_dir, "apiserver.key"))
        self.server_ctx.load_verify_locations(os.path.join(pki_dir, "ca.crt"))
        self.server_ctx.verify_mode = ssl.CERT_OPTIONAL
        self.server_ctx.set_alpn_protocols(["http/1.1"])
        self.admin_ctx = ssl.create_default_context(cafile=os.path.join(pki_dir, "ca.crt"))
        self.admin_ctx.load_cert_chain(os.path.join(pki_dir, "admin.crt"), os.path.join(pki_dir, "admin.key"))
        self.token_ctx = ssl.create_default_context(cafile=os.path.join(pki_dir, "ca.crt"))

    @property
    def url(self):
        return "https://%s:%d" % self.listen

    # ------------------------------------------------------------ lifecycle

    def start(self):
        self._listen()
        return self

    def _listen(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(self.listen)
        s.listen(128)
        with self.lock:
            self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True, name="apiproxy-accept").start()

    def stop(self):
        self.stopped.set()
        self._cut(listener=True)

    def _cut(self, listener):
        with self.lock:
            conns = list(self.conns)
            s, self.listener = (self.listener, None) if listener else (None, self.listener)
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for c in conns:
            self._kill(c)

    @staticmethod
    def _kill(sock):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def write_kubeconfig(self, path, namespace="default"):
        import pki  # tests/cluster, the test cluster's own program
        pki.write_kubeconfig(path, self.pki, "admin", self.url, namespace=namespace)
        return path

    # ------------------------------------------------------------ faults

    def fault(self, mode, seconds, ms=0):
        """Starts fault `mode` for `seconds` (see the module's doc)."""
        if mode not in MODES:
            raise ValueError("apiproxy fault %r: expected one of %s" % (mode, ", ".join(MODES)))
        until = time.monotonic() + seconds
        with self.lock:
            self.faults[mode] = (until, ms)
        if mode in ("503", "refuse"):
            # kept-alive connections must notice too: cut them (503 answers the new ones)
            self._cut(listener=(mode == "refuse"))
        if mode == "refuse":
            def back():
                if not self.stopped.wait(max(0.0, until - time.monotonic())):
                    with self.lock:
                        if self.faults.get("refuse", (0,))[0] != until or self.listener is not None:
                            return
                        self.faults.pop("refuse", None)
                    self._listen()
            threading.Thread(target=back, daemon=True, name="apiproxy-refuse").start()
        return {"mode": mode, "seconds": seconds, "ms": ms}

    def clear(self, mode=None):
        """Ends fault `mode` now, or every fault."""
        with self.lock:
            refused = "refuse" in self.faults and mode in (None, "refuse")
            if mode is None:
                self.faults.clear()
            else:
                self.faults.pop(mode, None)
            listening = self.listener is not None
        if refused and not listening and not self.stopped.is_set():
            self._listen()

    def drop_watches(self):
        with self.lock:
            watches = list(self.watches)
            self.stats["dropped_watches"] += len(watches)
        for c in watches:
            self._kill(c)
        return len(watches)

    def _active(self, mode):
        with self.lock:
            f = self.faults.get(mode)
            if f is None:
                return None
            if time.monotonic() >= f[0]:
                del self.faults[mode]
                return None
            return f[1]

    # ------------------------------------------------------------ relaying

    def _accept(self, s):
        while not self.stopped.is_set():
            try:
                raw, _ = s.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True, name="apiproxy-conn").start()

    def _serve(self, raw):
        raw.settimeout(30)
        try:
            client = self.server_ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        client.settimeout(None)
        with self.lock:
            self.conns.add(client)
        up = None
        try:
            identity = None
            cert = client.getpeercert()
            if cert:
                subject = dict(x[0] for x in cert.get("subject", ()))
                orgs = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "organizationName"]
                identity = (subject.get("commonName"), orgs)
            buf = b""
            while not self.stopped.is_set():
                head, buf = _read_until(client, buf, b"\r\n\r\n")
                first, hdrs = _headers(head)
                n = int(_get(hdrs, "content-length") or 0)
                if (_get(hdrs, "expect") or "").lower() == "100-continue" and n and not buf:
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")  # the body comes after it
                body, buf = _read_exact(client, buf, n)
                method, target = first.split(" ")[0], first.split(" ")[1]
                with self.lock:
                    self.stats["requests"] += 1
                if self._active("503") is not None:
                    with self.lock:
                        self.stats["answered_503"] += 1
                    msg = (b'{"kind":"Status","apiVersion":"v1","status":"Failure",'
                           b'"message":"the API proxy answers 503 (a fault)","reason":"ServiceUnavailable","code":503}')
                    client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                   b"Content-Length: %d\r\n\r\n" % len(msg) + msg)
                    continue
                ms = self._active("latency")
                if ms:
                    with self.lock:
                        self.stats["delayed"] += 1
                    time.sleep(ms / 1000.0)
                if up is None:
                    up = self._upstream(hdrs)
                out = [first]
                for k, v in hdrs:
                    if k.lower().startswith("impersonate-") or k.lower() == "expect":
                        continue  # only what the client's certificate says; 100 Continue done
                    out.append("%s: %s" % (k, v))
                if identity and identity[0] != ADMIN_CN and _get(hdrs, "authorization") is None:
                    out.append("Impersonate-User: %s" % identity[0])
                    out.extend("Impersonate-Group: %s" % g for g in identity[1])
                up.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
                watch = "watch=true" in target or "watch=1" in target or "/watch/" in target
                if watch:
                    with self.lock:
                        self.watches.add(client)
                try:
                    hold = method in WRITES and self._active("slow-write-answers")
                    self._relay_answer(up, client, hold)
                finally:
                    with self.lock:
                        self.watches.discard(client)
                if watch:
                    break  # a watch's connection is not reused here
        except (_Closed, OSError, ssl.SSLError, ValueError, IndexError):
            pass
        finally:
            with self.lock:
                self.conns.discard(client)
                self.watches.discard(client)
            for s in (client, up):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    def _upstream(self, hdrs):
        ctx = self.token_ctx if _get(hdrs, "authorization") else self.admin_ctx
        raw = socket.create_connection(self.upstream, timeout=30)
        raw.settimeout(None)
        return ctx.wrap_socket(raw, server_hostname=self.upstream[0])

    def _relay_answer(self, up, client, hold_ms):
        """Relays one answer; with hold_ms, the whole answer is read first, then held back."""
        buf = b""
        while True:
            head, buf = _read_until(up, buf, b"\r\n\r\n")
            first, hdrs = _headers(head)
            if not first.split(" ")[1].startswith("1"):
                break  # an interim answer (1xx) is not relayed
        parts = [head]

        def send(data):
            if hold_ms:
                parts.append(data)
            else:
                client.sendall(data)
        if not hold_ms:
            client.sendall(head)
            parts = []
        status = int(first.split(" ")[1])
        if _get(hdrs, "transfer-encoding") and "chunked" in _get(hdrs, "transfer-encoding").lower():
            while True:
                line, buf = _read_until(up, buf, b"\r\n")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                data, buf = _read_exact(up, buf, size + 2)
                send(line + data)
                if size == 0:
                    break
        elif _get(hdrs, "content-length") is not None:
            data, buf = _read_exact(up, buf, int(_get(hdrs, "content-length")))
            send(data)
        elif status not in (204, 304) and not (100 <= status < 200):
            while True:  # to the end of the connection
                data = up.recv(65536)
                if not data:
                    break
                send(data)
        if hold_ms:
            with self.lock:
                self.stats["held_answers"] += 1
            time.sleep(hold_ms / 1000.0)
            client.sendall(b"".join(parts))
