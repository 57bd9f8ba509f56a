"""world: what the soak believes about the cluster, and the record of what it did to it.

- `App`: one workload under test (Deployment + Service + ElastiService, all named `name` in
  namespace `ns`), with what the soak last wrote for it (Service ports, trigger value, the
  ElastiService's spec knobs) and whether each object should exist.
- `Replica`: one holdfast process (a "pod": its own name and IP, one of the node bridge's
  10.88.0.241-249).
- `OpLog`: every operation the soak made, with start and end times, so that a failure can be
  shown with the operations around it.
- `Excuses`: time windows in which a failed request is explained by something the soak did and
  the documentation says breaks connections (a Service deleted, every pod removed by hand, a
  holdfast replica SIGKILLed...). A failure outside every window is a violation.

Times are `time.monotonic()` seconds; reports show them relative to the soak's start.
"""
import ipaddress
import threading
import time

ES_API = "/apis/elasti.truefoundry.com/v1alpha1"
DEPLOY_API = "/apis/apps/v1"
SLICE_API = "/apis/discovery.k8s.io/v1"
FINALIZER = "elasti.truefoundry.com/finalizer"
METRIC = "soak_load"            # the Exporter gauge every trigger queries, one series per app
HAND_ANNOTATION = "soak.holdfast.io/hand-scale"  # set with every scale the soak makes by hand
PROBE_BODY = '{"soak":"probe"}'  # the probeResponse rule's answer, when the rule is there
RESOLVER_NS = "hf-system"       # the resolver's own Service and the leader Lease live here
RESOLVER_SVC = "holdfast"

PROXY_DELAY_MS = 300   # kube-proxy applies every endpoint change this late
BOUND = 10.0           # seconds for an ElastiService to agree after the last operation on it
SHUTDOWN_DELAY = 5     # holdfast --shutdown-delay (the chart's default)
DRAIN_TIMEOUT = 10     # holdfast --drain-timeout
LEASE_BOUND = 25.0     # a SIGKILLed leader: its Lease (15 s) expires, a follower takes it (retry 2 s)
MAX_APPS = 6           # apps alive at once (namespaces are created with 1-2 apps up to this)


def es_path(ns, name=None):
    return "%s/namespaces/%s/elastiservices%s" % (ES_API, ns, "/" + name if name else "")


def deploy_path(ns, name=None):
    return "%s/namespaces/%s/deployments%s" % (DEPLOY_API, ns, "/" + name if name else "")


def svc_path(ns, name=None):
    return "/api/v1/namespaces/%s/services%s" % (ns, "/" + name if name else "")


class App:
    """One Deployment + Service + ElastiService, all named `name`, in namespace `ns`. Fields are
    read by client threads and written by the operation thread: use `lock`."""

    def __init__(self, ns, name, load):
        self.ns = ns
        self.name = name
        self.key = "%s/%s" % (ns, name)
        self.lock = threading.Lock()
        self.ports = [("http", 80)]   # the Service's (name, port) as last written; target 8080
        self.cluster_ip = None
        self.has_deploy = False
        self.has_svc = False
        self.has_es = False
        self.gone = False             # its namespace was deleted: no traffic, no operations
        self.load = load              # the trigger's value (the Exporter gauge)
        self.replicas = 1             # spec.replicas as the soak last set it by hand
        self.spec = {}                # the ElastiService spec knobs as last written

    # where the soak's traffic may go: the cluster's Service range, 10.96.0.0/24, which exists
    # only inside the cluster's network namespace, where the clients run (soak.Soak.setup sets
    # it; None: nowhere)
    service_net = None

    def traffic_target(self):
        """(cluster IP, [ports]) to send requests to, or None while there is no Service. The
        soak's traffic stays in the cluster's Service range: any other address is never used."""
        with self.lock:
            if self.gone or not self.has_svc or not self.cluster_ip or self.service_net is None:
                return None
            if ipaddress.ip_address(self.cluster_ip) not in self.service_net:
                return None
            return self.cluster_ip, [p for _, p in self.ports]


class Replica:
    """One holdfast process (hfk8s.HoldfastK8s) and what the soak did to it. `name` is the
    process's own ("hf-3.1": pod hf-3's container restarted once); `pod` is the identity it
    leads with (--pod-name)."""

    def __init__(self, name, pod, hf):
        self.name = name
        self.pod = pod
        self.hf = hf
        self.scan_pos = 0             # how much of its stderr was scanned for sanitizer reports
        self.started_at = None
        self.ready = False            # listed ready in the resolver Service's EndpointSlice
        self.terminating = False      # SIGTERM sent: listed ready=false, terminating=true
        self.signalled = None         # "TERM" or "KILL" once the soak signalled it
        self.signalled_at = None
        self.exited_at = None
        self.exit_checked = False

    @property
    def ip(self):
        return self.hf.ip

    def alive(self):
        return self.hf.alive()


class Op:
    __slots__ = ("seq", "t0", "t1", "kind", "obj", "detail", "result")

    def __init__(self, seq, t0, kind, obj, detail):
        self.seq, self.t0, self.t1 = seq, t0, None
        self.kind, self.obj, self.detail, self.result = kind, obj, detail, None


class OpLog:
    """Every operation, in order. `obj` is "ns/name" for an app, "ns" for a namespace, a replica
    name, "api" or "prometheus"."""

    def __init__(self, t0):
        self.t0 = t0
        self.lock = threading.Lock()
        self.ops = []

    def start(self, kind, obj, detail=""):
        with self.lock:
            op = Op(len(self.ops) + 1, time.monotonic(), kind, obj, detail)
            self.ops.append(op)
        return op

    def end(self, op, result="ok"):
        op.t1 = time.monotonic()
        op.result = result
        return op

    def rel(self, t):
        return t - self.t0

    def fmt(self, op):
        end = "%.2f" % self.rel(op.t1) if op.t1 is not None else "..."
        return "#%d [%.2f-%s] %s %s %s -> %s" % (op.seq, self.rel(op.t0), end, op.kind, op.obj,
                                                 op.detail, op.result)

    def around(self, key, t, before=30.0, after=5.0, limit=25):
        """The operations on `key` (an app "ns/name": also its namespace's) and the cluster-wide
        ones (API, Prometheus, holdfast replicas) from t-before to t+after, formatted."""
        ns = key.split("/")[0] if key else None
        with self.lock:
            ops = list(self.ops)
        out = []
        for op in ops:
            if op.t0 > t + after or (op.t1 or op.t0) < t - before:
                continue
            mine = key and (op.obj == key or op.obj == ns)
            cluster = op.obj in ("api", "prometheus") or op.obj.startswith("hf-")
            if mine or cluster:
                out.append(("  " if mine else "  (cluster) ") + self.fmt(op))
        return out[-limit:]

    def first_on_after(self, key, t, kinds):
        """The start of the first operation on app `key` of the given kinds after time t."""
        with self.lock:
            for op in self.ops:
                if op.t0 > t and op.obj == key and op.kind in kinds:
                    return op.t0
        return None

    def last_on(self, key, kinds=None):
        """The end time of the last operation on app `key` (or its namespace) of the given kinds."""
        ns = key.split("/")[0]
        with self.lock:
            for op in reversed(self.ops):
                if (op.obj == key or op.obj == ns) and (kinds is None or op.kind in kinds):
                    return op.t1 if op.t1 is not None else time.monotonic()
        return None


def routed(view, key):
    """True when something serves app `key` in the checker's view: a ready pod in its Service's
    own EndpointSlices (not a deleted predecessor's), or an address in holdfast's resolver slice. A new Service routes only once
    the EndpointSlice controller (or holdfast) wrote its slice: when the controller-manager gets
    to it (tens of seconds after an API server restart)."""
    return view["own_pods"].get(key, 0) > 0 or any(
        e.get("addresses") for s in view["resolver"].get(key, []) for e in s.get("endpoints") or [])


# The failures a lost connection explains: refused (no endpoint), reset, closed before or inside
# the answer. A request held and never answered (a timeout) is not among them: holdfast holds
# what reaches it until a backend answers or its hold timeout does.
CONNECTION_LOST = ("refused", "reset", "closed", "truncated", "oserror")


class Window:
    __slots__ = ("key", "reason", "start", "end", "until", "due_from", "kinds")

    def __init__(self, key, reason, start, end, until, due_from, kinds):
        self.key, self.reason, self.start, self.end = key, reason, start, end
        self.until, self.due_from, self.kinds = until, due_from, kinds


class Excuses:
    """Windows in which a failed request on an app (key) or on any app (key None) is explained.
    A window ends at a fixed time, or when `until(view)` first holds at a check (plus `grace`),
    but no later than `deadline(due_from)`: the bound, pushed past the disruptions meanwhile
    (Soak.deadline). A window with neither stays open (the app is gone for good)."""

    def __init__(self, grace, deadline):
        self.grace = grace
        self.deadline = deadline
        self.lock = threading.Lock()
        self.windows = []

    def add(self, key, reason, start, end=None, until=None, due_from=None, kinds=None):
        """`kinds`: the failures it explains ("reset", "refused", ...), or None: every one."""
        w = Window(key, reason, start, end, until, due_from, kinds)
        with self.lock:
            self.windows.append(w)
        return w

    def close(self, w, t):
        with self.lock:
            if w.end is None:
                w.end = t + self.grace

    def update(self, view, now):
        """Ends the windows whose condition holds in `view` (the checker's latest sweep)."""
        with self.lock:
            open_ = [w for w in self.windows if w.end is None]
        for w in open_:
            due = self.deadline(w.due_from) if w.due_from is not None else None
            if due is not None and now > due:
                w.end = due
            elif w.until is not None:
                try:
                    if w.until(view):
                        w.end = now + self.grace
                except Exception:  # noqa: BLE001 - a view missing something is "not yet"
                    pass

    def find(self, key, t, kind=None):
        """The reason of a window of `key` (or cluster-wide) covering time t and explaining a
        failure of this kind, or None."""
        with self.lock:
            for w in self.windows:
                if w.key not in (None, key) or (w.kinds is not None and kind not in w.kinds):
                    continue
                if w.start - 0.2 <= t and (w.end is None or t <= w.end):
                    return w.reason
        return None

    def began_between(self, key, reasons, t0, t1):
        """The reason of a window of `key` with one of `reasons` that began within [t0, t1], or
        None."""
        with self.lock:
            for w in self.windows:
                if w.key == key and w.reason in reasons and t0 <= w.start <= t1:
                    return w.reason
        return None

    def settled_before(self, t):
        """True when no window that could still cover t is open (so failures at t can be
        classified for good)."""
        with self.lock:
            return all(w.end is not None or w.start > t for w in self.windows)
