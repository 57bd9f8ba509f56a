"""The part of the kubelet's HTTPS API on NODE_IP:10250 that `kubectl logs` needs: the API server
forwards pods/log there (GET /containerLogs/NS/POD/CONTAINER with follow, previous, tailLines,
limitBytes). Also /healthz. No exec, attach or port-forward.

One fault for tests, which no kubelet has: POST /faults/killPod/NS/POD?signal=NAME (KILL when
not given; TERM, INT, ... or SIGTERM) sends the signal to the process group of every running
container of the pod, as kubesim's kill-pod fault; the container then exits and is restarted per
restartPolicy, as any exited container. Answers 200 with JSON {"killed": "NS/POD", "signal":
"SIGKILL", "containers": {"NAME": PID...}}, 404 if no such pod runs on this node, 409 if none of
its containers runs, 400 for an unknown signal.

The serving certificate is self-signed, made by openssl at start (the API server does not verify
a kubelet's certificate unless it is given --kubelet-certificate-authority). There is no client
authentication; instead only connections from the node's own address are served, which inside
the cluster's network namespace means the API server (and other cluster processes), not pods."""
import http.server
import json
import logging
import os
import signal
import ssl
import subprocess
import threading
import time
import urllib.parse

log = logging.getLogger("nodeagent.server")

PORT = 10250


def parse_signal(name):
    """signal.Signals for "KILL", "SIGKILL", "kill"; None for anything else."""
    n = name.upper()
    n = n if n.startswith("SIG") else "SIG" + n
    return getattr(signal.Signals, n, None) if n.isalnum() else None


def make_cert(directory, ip):
    os.makedirs(directory, exist_ok=True)
    crt, key = os.path.join(directory, "kubelet.crt"), os.path.join(directory, "kubelet.key")
    if not (os.path.exists(crt) and os.path.exists(key)):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", crt, "-days", "30", "-subj", "/CN=hfc-nodeagent",
                        "-addext", "subjectAltName=IP:%s" % ip], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    return crt, key


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    agent = None

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.client_address[0], fmt % args)

    def _reply(self, code, body, ctype="text/plain"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.client_address[0] != self.agent.node_ip:
            return self._reply(403, "only the node's own address is served\n")
        u = urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query).items()}
        parts = [urllib.parse.unquote(p) for p in u.path.strip("/").split("/")]
        if parts == ["healthz"]:
            return self._reply(200, "ok")
        if len(parts) == 4 and parts[0] == "containerLogs":
            return self._logs(parts[1], parts[2], parts[3], q)
        return self._reply(404, "not found: %s\n" % u.path)

    def do_POST(self):
        if self.client_address[0] != self.agent.node_ip:
            return self._reply(403, "only the node's own address is served\n")
        u = urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query).items()}
        parts = [urllib.parse.unquote(p) for p in u.path.strip("/").split("/")]
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        if len(parts) == 4 and parts[:2] == ["faults", "killPod"]:
            return self._kill_pod(parts[2], parts[3], q.get("signal", "KILL"))
        return self._reply(404, "not found: POST %s\n" % u.path)

    def _kill_pod(self, ns, name, signame):
        sig = parse_signal(signame)
        if sig is None:
            return self._reply(400, "signal %r: not a signal name (KILL, TERM, SIGINT, ...)\n" % signame)
        w = self.agent.worker_by_name(ns, name)
        if w is None:
            return self._reply(404, "pod %s/%s does not run on this node\n" % (ns, name))
        hit = w.kill(sig)
        if not hit:
            return self._reply(409, "pod %s/%s: none of its containers runs\n" % (ns, name))
        body = {"killed": "%s/%s" % (ns, name), "signal": sig.name, "containers": dict(hit)}
        return self._reply(200, json.dumps(body) + "\n", "application/json")

    def _logs(self, ns, name, container, q):
        w = self.agent.worker_by_name(ns, name)
        path = w.log_path(container, previous=q.get("previous") == "true") if w else None
        if path is None or not os.path.exists(path):
            return self._reply(404, 'container "%s" in pod "%s" has no %slog\n'
                               % (container, name, "previous " if q.get("previous") == "true" else ""))
        with open(path, "rb") as f:
            data = f.read()
        if q.get("tailLines"):
            n = int(q["tailLines"])
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-n:]) if n > 0 else b""
        if q.get("limitBytes"):
            data = data[:int(q["limitBytes"])]
        if q.get("follow") != "true":
            return self._reply(200, data)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        pos = os.path.getsize(path)
        if data and not self._chunk(data):
            return
        # Follow until this process's log is no longer the current one or the pod's worker ends.
        while w.is_alive() and w.log_path(container) == path and not self.agent.stop_event.is_set():
            time.sleep(0.2)
            with open(path, "rb") as f:
                f.seek(pos)
                more = f.read()
            pos += len(more)
            if more and not self._chunk(more):
                return
        self._chunk(b"")

    def _chunk(self, data):
        """Writes one chunk (an empty one ends the body); False if the client has gone."""
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            return True
        except OSError:
            return False


def serve(agent, cert_dir):
    """Starts the server in a thread; returns it (shutdown() to stop), or None if it cannot listen."""
    crt, key = make_cert(cert_dir, agent.node_ip)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    handler = type("AgentHandler", (Handler,), {"agent": agent})
    try:
        srv = http.server.ThreadingHTTPServer((agent.node_ip, PORT), handler)
    except OSError as e:
        log.warning("no kubelet API on %s:%d (kubectl logs will not work): %s", agent.node_ip, PORT, e)
        return None
    srv.daemon_threads = True
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, name="kubelet-api", daemon=True).start()
    return srv
