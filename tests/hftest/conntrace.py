"""conntrace: where the kernel sent a client's TCP connection, for tests whose clients reach pods
through a ClusterIP (kube-proxy's DNAT, in the caller's network namespace). Used by the soak and
by the end-to-end suite to say where a failed connection went (standard library and Debian's
`conntrack` only).

    ct = ConnTracker(); ct.start()          # follows conntrack's NEW events from now on
    c = TracedConnection(cluster_ip, 80, timeout=5)
    ...c.request() fails...
    ct.explain(cluster_ip, 80, c.local_port)
        -> "to 10.88.0.29:8080"             # the new entry's translated destination
        -> "no new conntrack entry; existing: LAST_ACK to 10.88.0.7:8080"
           # the SYN matched an older connection's entry from the same local port: the kernel
           # sends it to that entry's destination, which may be a pod that is gone
"""
import http.client
import re
import socket
import subprocess
import threading
import time


class TracedConnection(http.client.HTTPConnection):
    """An HTTPConnection that remembers its local port, also when connect() fails (the socket
    keeps the port it was given), so the connection can be looked up afterwards."""
    local_port = None

    def connect(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect((self.host, self.port))
        except OSError:
            self.local_port = s.getsockname()[1] or None
            s.close()
            raise
        self.local_port = s.getsockname()[1]
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = s


_NEW = re.compile(r"src=\S+ dst=(\S+) sport=(\d+) dport=(\d+) .*?src=(\S+) dst=\S+ sport=(\d+)")
_ENTRY = re.compile(r"^tcp\s+\d+\s+\d+\s+(\S+)\s+src=\S+ dst=(\S+) sport=(\d+) dport=(\d+) .*?"
                    r"src=(\S+) dst=\S+ sport=(\d+)")


class ConnTracker(threading.Thread):
    """Where the kernel sent each new TCP connection (kube-proxy's DNAT of a ClusterIP to a pod
    or a holdfast replica), from conntrack's NEW events (`conntrack -E`), which carry the
    translated reply tuple. A refused connection's entry is gone as soon as the RST comes back,
    so the events are followed from the start instead of listing entries afterwards. Runs
    `conntrack` in the caller's network namespace; stop() ends it."""

    def __init__(self):
        super().__init__(daemon=True, name="conntrack")
        self.lock = threading.Lock()
        self.dest = {}  # (ClusterIP, port, local port) -> "ADDR:PORT", the latest
        self.proc = subprocess.Popen(["conntrack", "-E", "-e", "NEW", "-p", "tcp"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)

    def run(self):
        for line in self.proc.stdout:
            m = _NEW.search(line)
            if m:
                with self.lock:
                    self.dest[(m.group(1), int(m.group(3)), int(m.group(2)))] = \
                        "%s:%s" % (m.group(4), m.group(5))

    def where(self, ip, port, local_port, wait=1.0):
        """"ADDR:PORT" the connection from local_port to ip:port went to, or None (waits up to
        `wait` seconds for the event, which the kernel sends asynchronously)."""
        if not local_port:
            return None
        deadline = time.monotonic() + wait
        while True:
            with self.lock:
                d = self.dest.get((ip, port, local_port))
            if d or time.monotonic() >= deadline:
                return d
            time.sleep(0.05)

    def explain(self, ip, port, local_port, since=None):
        """A phrase for a failed connection: "to ADDR:PORT" from its NEW event; or, when there
        was none, the entries there are now (the SYN matched an entry an older connection from
        the same local port left, which keeps that connection's destination), or that there are
        none (a rule rejected it); None when the local port is unknown."""
        if not local_port:
            return None
        d = self.where(ip, port, local_port)
        if d:
            return "to " + d
        old = entries(ip, port, local_port)
        if not old:
            return "no conntrack entry (a connection a rule rejected, as kube-proxy's for a Service " \
                   "with no endpoint, leaves none)"
        return "no new conntrack entry; existing: " + ", ".join("%s to %s" % e for e in old)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def entries(ip, port, local_port):
    """[(state, "ADDR:PORT")] of the conntrack entries of connections from local_port to ip:port
    in the caller's network namespace, as `conntrack -L` lists them now."""
    r = subprocess.run(["conntrack", "-L", "-p", "tcp", "--orig-dst", ip, "--dport", str(port),
                        "--sport", str(local_port)], capture_output=True, text=True, timeout=10)
    out = []
    for line in r.stdout.splitlines():
        m = _ENTRY.search(line)
        if m:
            out.append((m.group(1), "%s:%s" % (m.group(5), m.group(6))))
    return out
