"""Probe and lifecycle-hook handlers, as the kubelet runs them: httpGet and tcpSocket from the
node to the pod IP, grpc (the standard health service) to the pod IP, exec inside the
container's namespaces (nsenter into its main process). Each returns (ok, message)."""
import http.client
import socket
import subprocess

KUBE_PROBE_UA = "kube-probe/1.37"


def port_of(cspec, p):
    if isinstance(p, int):
        return p
    if isinstance(p, str) and p.isdigit():
        return int(p)
    for cp in cspec.get("ports") or []:
        if cp.get("name") == p:
            return cp["containerPort"]
    raise ValueError("unknown port %r" % p)


def http_get(hg, cspec, pod_ip, timeout):
    port = port_of(cspec, hg.get("port"))
    host = hg.get("host") or pod_ip
    scheme = (hg.get("scheme") or "HTTP").upper()
    if scheme == "HTTPS":
        import ssl
        ctx = ssl._create_unverified_context()      # the kubelet does not verify probe certificates
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {h["name"]: h["value"] for h in hg.get("httpHeaders") or []}
        headers.setdefault("User-Agent", KUBE_PROBE_UA)
        headers.setdefault("Accept", "*/*")
        conn.request("GET", hg.get("path") or "/", headers=headers)
        status = conn.getresponse().status
        if 200 <= status < 400:
            return True, ""
        return False, "HTTP probe failed with statuscode: %d" % status
    finally:
        conn.close()


def tcp_socket(ts, cspec, pod_ip, timeout):
    with socket.create_connection((ts.get("host") or pod_ip, port_of(cspec, ts.get("port"))), timeout=timeout):
        return True, ""


SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def grpc_health(g, pod_ip, timeout):
    """grpc.health.v1.Health/Check. The two messages are one field each, so they are encoded
    here by hand (the grpc_health package is not installed): request field 1 = service
    (string), response field 1 = status (enum)."""
    import grpc                                      # imported only when a pod asks for it
    service = (g.get("service") or "").encode()
    req = (b"\x0a" + bytes([len(service)]) + service) if service else b""
    with grpc.insecure_channel("%s:%d" % (pod_ip, g["port"])) as ch:
        check = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=None, response_deserializer=None)
        raw = check(req, timeout=timeout)
    status = raw[1] if len(raw) >= 2 and raw[0] == 0x08 else 0
    if status == 1:
        return True, ""
    return False, "service unhealthy (responded with %s)" % SERVING_STATUS.get(status, status)


def exec_in(pid, command, env, timeout):
    """Runs command inside the network and mount namespaces of process pid, with env."""
    if not command:
        return False, "no command"
    r = subprocess.run(["nsenter", "--target", str(pid), "--net", "--mount", "--"] + list(command), env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    if r.returncode == 0:
        return True, ""
    return False, "command %r exited with %d: %s" % (command, r.returncode, r.stdout[-200:].decode(errors="replace"))


def run(handler, cspec, pod_ip, pid, env, timeout):
    """Runs one probe or hook handler; never raises."""
    try:
        if "httpGet" in handler:
            return http_get(handler["httpGet"], cspec, pod_ip, timeout)
        if "tcpSocket" in handler:
            return tcp_socket(handler["tcpSocket"], cspec, pod_ip, timeout)
        if "grpc" in handler:
            return grpc_health(handler["grpc"], pod_ip, timeout)
        if "exec" in handler:
            if pid is None:
                return False, "container not running"
            return exec_in(pid, handler["exec"].get("command"), env, timeout)
        if "sleep" in handler:
            import time
            time.sleep(min(handler["sleep"].get("seconds", 0), timeout))
            return True, ""
    except subprocess.TimeoutExpired:
        return False, "command timed out after %ss" % timeout
    except Exception as e:  # noqa: BLE001 - a probe that cannot run has failed, as the kubelet says
        return False, str(e) or e.__class__.__name__
    return False, "unknown handler"
