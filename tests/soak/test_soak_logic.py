"""The soak's own judgement, without a cluster: that its invariants can fail (a soak whose checks
never fire proves nothing) and do not fail on what is allowed. Runs in a second."""
import json
import os
import time

import soak
import observe
from traffic import judge
from world import Excuses, OpLog

HERE = os.path.dirname(os.path.abspath(__file__))


def es(uid, mode, reason=None, name="a1"):
    conds = [{"type": "ScaledToZero", "status": "True", "reason": reason}] if reason else []
    return {"metadata": {"uid": uid, "namespace": "soak-1", "name": name},
            "status": {"mode": mode, "conditions": conds}}


def test_judge_accepts_the_pod_the_probe_and_documented_answers_only():
    assert judge("a1", "/x", 200, "a1-5d8f-xk2p\n") == (True, "pod")
    assert judge("a1", "/healthz", 200, '{"soak":"probe"}') == (True, "probe")
    assert judge("a1", "/x", 200, '{"soak":"probe"}')[0] is False  # the probe body off /healthz
    assert judge("a1", "/x", 200, "a12-5d8f-xk2p\n")[0] is False   # another app's pod
    for status, error in ((502, "bad gateway"), (503, "overloaded"), (504, "timeout")):
        body = json.dumps({"error": error, "service": "soak-1/a1", "reason": "r"})
        assert judge("a1", "/x", status, body) == (True, "holdfast_%d" % status)
    body = json.dumps({"error": "service unavailable", "service": "soak-1/a1",
                       "reason": "service was removed"})
    assert judge("a1", "/x", 503, body) == (False, "removed")  # excused only by a deletion
    body = json.dumps({"error": "service unavailable", "service": "soak-1/a1", "reason": "other"})
    assert judge("a1", "/x", 503, body) == (False, "undocumented_answer")
    assert judge("a1", "/x", 403, "forbidden") == (False, "wrong_answer")


def test_mode_history_counts_transitions_per_object_not_repeats():
    h = observe.ModeHistory()
    h.on_event(1.0, "ADDED", es("u1", ""))
    h.on_event(2.0, "MODIFIED", es("u1", "serve"))      # the first mode: no switch
    h.on_event(3.0, "MODIFIED", es("u1", "proxy", "BelowThreshold"))
    h.on_event(3.5, "MODIFIED", es("u1", "proxy", "BelowThreshold"))  # a status rewrite
    h.on_event(4.0, "MODIFIED", es("u1", "serve"))
    h.on_event(5.0, "ADDED", es("u2", "proxy", "ScaledToZeroByHand"))  # re-created at zero
    assert h.count("proxy", 0, 10) == 2 and h.count("serve", 0, 10) == 1
    assert [x[0] for x in h.scale_downs_near("soak-1/a1", 3.0, 1, 1)] == [3.0]
    assert h.scale_downs_near("soak-1/a1", 5.0, 1, 1) == []  # by hand: not holdfast's
    assert h.proxy_between("soak-1/a1", 5.5, 6.0)  # u2 is the object now, in proxy since 5.0


def test_wake_history_ignores_the_soaks_own_scales():
    w = observe.WakeHistory()

    def dep(replicas, hand):
        return {"metadata": {"uid": "d1", "namespace": "n", "name": "a1",
                             "annotations": {observe.HAND_ANNOTATION: hand}},
                "spec": {"replicas": replicas}}
    w.on_event(1, "ADDED", dep(1, "0"))
    w.on_event(2, "MODIFIED", dep(0, "1"))  # the soak to 0
    w.on_event(3, "MODIFIED", dep(1, "1"))  # a wake (annotation unchanged)
    w.on_event(4, "MODIFIED", dep(0, "2"))
    w.on_event(5, "MODIFIED", dep(2, "3"))  # the soak back up
    assert w.count(0, 10) == 1


def test_excuse_windows_end_on_their_condition_or_at_the_deadline():
    x = Excuses(1.0, lambda t: t + 10)
    now = time.monotonic()
    cond = Excuses(1.0, lambda t: t + 10)
    w = cond.add("k", "why", now, until=lambda v: v["ok"], due_from=now)
    cond.update({"ok": False}, now + 1)
    assert cond.find("k", now + 5) == "why" and cond.find("other", now + 5) is None
    cond.update({"ok": True}, now + 2)
    assert w.end == now + 3 and cond.find("k", now + 3.5) is None
    w2 = x.add(None, "anyone", now, until=lambda v: False, due_from=now)
    x.update({}, now + 11)
    assert w2.end == now + 10 and x.find("k", now + 9) == "anyone" and x.find("k", now + 10.5) is None


class FakeSoak:
    """Just what MetricsAuditor.audit_epoch reads."""

    def __init__(self):
        self.oplog = OpLog(0)
        self.modes = observe.ModeHistory()
        self.wakes = observe.WakeHistory()
        self.violations = observe.Violations(self.oplog, 1, (), lambda s: None)
        self.debug = lambda s: None


def deploy(uid, replicas):
    return {"metadata": {"uid": uid, "namespace": "n", "name": "a1"}, "spec": {"replicas": replicas}}


def sweep(t, downs, switches=0, ups=0):
    m = {"holdfast_scale_downs_total": downs, "holdfast_serve_switches_total": switches,
         "holdfast_scale_ups_total": ups}
    return (t, t + 0.1, {"hf-1": m})


def test_metrics_audit_fails_a_counter_that_does_not_move_with_the_mode():
    s = FakeSoak()
    a = observe.MetricsAuditor(s)
    s.modes.on_event(5.0, "ADDED", es("u1", "serve"))
    s.modes.on_event(10.0, "MODIFIED", es("u1", "proxy", "BelowThreshold"))
    a.audit_epoch([sweep(0, 0), sweep(20, 1), sweep(40, 1)], end_reason_time=50)
    assert s.violations.items == []  # counted once, shown once
    a.audit_epoch([sweep(0, 0), sweep(20, 0), sweep(40, 0)], end_reason_time=50)
    assert [v["object"] for v in s.violations.items] == ["holdfast_scale_downs_total"]  # never counted
    s.violations.items.clear()
    a.audit_epoch([sweep(1, 0), sweep(20, 3), sweep(40, 3)], end_reason_time=50)
    assert [v["object"] for v in s.violations.items] == ["holdfast_scale_downs_total"]  # counted thrice


def test_metrics_audit_allows_a_wake_shown_just_before_the_answer_that_counts_it():
    """Found by seed 188701454 with answers to writes 216 ms late: holdfast's wake PATCH made a
    Deployment go from 0 to 1 (the watch showed it at t=185.45), the epoch's first sweep scraped
    the replica at t=185.5, and the PATCH's answer, which is when holdfast_scale_ups_total moves,
    came at t=185.67: counted inside the epoch, shown just before it. Not a double count."""
    s = FakeSoak()
    a = observe.MetricsAuditor(s)
    s.wakes.on_event(1.0, "ADDED", deploy("u1", 0))
    s.wakes.on_event(19.8, "MODIFIED", deploy("u1", 1))
    a.audit_epoch([sweep(20, 0, ups=0), sweep(30, 0, ups=1), sweep(40, 0, ups=1)], end_reason_time=50)
    assert s.violations.items == []
    s.wakes.on_event(25.0, "MODIFIED", deploy("u1", 0))
    s.wakes.on_event(25.5, "MODIFIED", deploy("u1", 1))
    a.audit_epoch([sweep(20, 0, ups=0), sweep(30, 0, ups=3), sweep(40, 0, ups=3)], end_reason_time=50)
    assert [v["object"] for v in s.violations.items] == ["holdfast_scale_ups_total"]  # two shown, three counted


def test_deadline_is_pushed_past_disruptions_that_began_before_it():
    s = soak.Soak.__new__(soak.Soak)
    s.bound = 10.0
    s.lock = __import__("threading").RLock()
    s.disruptions = [(5.0, 30.0, "outage"), (100.0, 110.0, "later")]
    assert s.deadline(0.0) == 40.0    # pushed past the outage that began at 5
    assert s.deadline(50.0) == 60.0   # the later disruption began after the deadline
    assert s.deadline(95.0) == 120.0


def test_a_connect_the_real_kube_proxy_rejects_is_a_refusal():
    """A real kube-proxy rejects a connection to a Service without a usable endpoint with ICMP
    host unreachable, and a connect to an address nothing answers ARP for
    ends the same way: both are "refused", which the excuse windows know."""
    import errno
    from traffic import _error_kind
    assert _error_kind(OSError(errno.EHOSTUNREACH, "No route to host")) == "refused"
    assert _error_kind(ConnectionRefusedError(errno.ECONNREFUSED, "refused")) == "refused"
    assert _error_kind(OSError(errno.ENETUNREACH, "unreachable")) == "oserror"


def slice_(ns, svc, ready, owner_uid=None, managed="endpointslice-controller.k8s.io"):
    md = {"namespace": ns, "name": "%s-x" % svc, "labels": {
        "kubernetes.io/service-name": svc, "endpointslice.kubernetes.io/managed-by": managed}}
    if owner_uid:
        md["ownerReferences"] = [{"kind": "Service", "uid": owner_uid}]
    return {"metadata": md, "endpoints": [{"addresses": ["10.88.0.%d" % (i + 2)],
                                           "conditions": {"ready": True}} for i in range(ready)]}


def test_a_predecessors_endpointslices_do_not_route_a_recreated_service():
    """Seed 4 on the real cluster: a Service re-created while the controller-manager was away
    (an API server restart) kept its deleted predecessor's EndpointSlice (same service-name
    label, owned by the old Service) until the controllers were back; kube-proxy routed the new
    Service by it, then had no endpoint for a moment when it was replaced. The view tells them
    apart, and the re-created Service's window stays open while they are there."""
    c = observe.Checker.__new__(observe.Checker)
    svc = {"metadata": {"uid": "new", "namespace": "soak-1", "name": "a2"}}
    lists = {"elastiservices": [], "deployments": [], "services": [svc],
             "endpointslices": [slice_("soak-1", "a2", 1, "old")]}
    c._list = lambda path: lists[path.rsplit("/", 1)[-1]]
    views = []

    class S:
        excuses = Excuses(1.0, lambda t: t + 10)
    c.soak = S()
    c.sweeps = 0
    c.check = lambda view, t: views.append(view)
    c.sweep(time.monotonic())
    v = views[-1]
    from world import routed
    assert v["pods"]["soak-1/a2"] == 1 and v["stale"]["soak-1/a2"] == 1 and not routed(v, "soak-1/a2")
    lists["endpointslices"] = [slice_("soak-1", "a2", 1, "new")]
    c.sweep(time.monotonic())
    v = views[-1]
    assert not v["stale"].get("soak-1/a2") and routed(v, "soak-1/a2")
    lists["endpointslices"] = [slice_("soak-1", "a2", 0, "new"),
                               slice_("soak-1", "a2", 1, managed="holdfast")]
    c.sweep(time.monotonic())
    assert routed(views[-1], "soak-1/a2")  # holdfast's resolver slice routes it too
    # seed 7: a port added while the controller-manager was away had no slice with it, and
    # kube-proxy refused it for 13 s: the port window waits for a slice that has the port
    own = slice_("soak-1", "a2", 1, "new")
    own["ports"] = [{"name": "http", "port": 8080}]
    lists["endpointslices"] = [own, slice_("soak-1", "a2", 1, "old")]
    lists["endpointslices"][1]["ports"] = [{"name": "admin", "port": 8080}]
    c.sweep(time.monotonic())
    assert views[-1]["slice_ports"]["soak-1/a2"] == {"http"}  # not the predecessor's
    own["ports"].append({"name": "admin", "port": 8080})
    c.sweep(time.monotonic())
    assert views[-1]["slice_ports"]["soak-1/a2"] == {"http", "admin"}


class FakeFailure:
    def __init__(self, kind, t_start, t_end):
        self.kind, self.t_start, self.t_end, self.app = kind, t_start, t_end, "soak-1/a1"
        self.verdict = None
        self.port, self.path, self.client, self.detail = 80, "/x", "c-new", ""


def test_a_refused_connect_is_judged_when_it_began():
    """On the real cluster a connect sent before kube-proxy had a rule for a new ClusterIP (or to
    a pod address that is gone) fails with "No route to host" only when ARP gives up, 3 s and
    more later: the window that explains it may have closed by then."""
    s = soak.Soak.__new__(soak.Soak)
    s.t0 = 0.0
    s.lock = __import__("threading").RLock()
    s.disruptions, s.replicas, s.wakes = [], [], observe.WakeHistory()  # no outage here
    s.lease_bound, s.bound = 25.0, 10.0
    now = time.monotonic()
    s.excuses = Excuses(1.0, lambda t: t + 10)
    s.excuses.add("soak-1/a1", "Service deleted", now - 100, end=now - 97)
    import traffic
    s.traffic = traffic.Traffic(1)
    late = FakeFailure("refused", now - 99, now - 95)      # begun inside, failed after
    reset = FakeFailure("reset", now - 99, now - 95)       # a reset is judged when it happened
    s.traffic.stats.failures = [late, reset]
    s.modes = observe.ModeHistory()

    class C:
        def disagreed(self, *a):
            return False
    s.checker = C()
    s.violations = observe.Violations(OpLog(0), 1, (), lambda x: None)
    s.oplog = OpLog(0)
    s.classify_failures(final=True)
    assert late.verdict == ("excused", "Service deleted")
    assert reset.verdict == ("violation", "request")
    # a request held (a timeout) across its Service's deletion waits for the Service: excused;
    # one that timed out before the deletion, or with no deletion of its app, is not
    s.excuses.add("soak-1/a1", "Service deleted", now - 50, end=now - 49)
    held = FakeFailure("timeout", now - 52, now - 2)
    before = FakeFailure("timeout", now - 80, now - 60)
    other = FakeFailure("timeout", now - 52, now - 2)
    other.app = "soak-2/a3"
    s.traffic.stats.failures = [held, before, other]
    s.classify_failures(final=True)
    assert held.verdict == ("excused", "Service deleted while the request was held")
    assert before.verdict == ("violation", "request")
    assert other.verdict == ("violation", "request")


def test_an_api_server_restart_pushes_the_bound_until_the_controllers_act_again():
    """Seed 11 on the real cluster: the ReplicaSet controller acted again 58 s after an API
    server restart began, long after the API and holdfast's informers were back. Until the
    canary shows the controllers acting, the restart's disruption stays open (a woken target
    has no pod to be ready); then it ends when they did (or at the informers' end if later)."""
    import threading
    s = soak.Soak.__new__(soak.Soak)
    s.bound = 10.0
    s.lock = threading.RLock()
    s.disruptions, s.outages = [], []
    s.oplog = OpLog(time.monotonic())
    seen = {}

    class Sim:
        def outage(self, secs):
            pass

        def wait_outage(self, timeout):
            pass

        def wait_controllers(self, timeout):
            # the API is back, the controllers not yet: anything due now is not due yet
            now = time.monotonic()
            seen["during"] = s.deadline(now) - now
            time.sleep(0.05)
    s.sim = Sim()
    t = time.monotonic()
    op = s.oplog.start("api_outage", "api")
    s.real_api_stop(op, t, 3.0)
    assert seen["during"] > 60          # still open while the controllers were away
    (start, end, _), = s.disruptions
    assert start == t and time.monotonic() - 0.5 < end <= time.monotonic() + 3.1  # informers' end
    assert s.outages[0][1] <= end and "controllers acting again" in op.result


class _DnatNamespace:
    """A network namespace of the test's own with a 'ClusterIP' 10.96.7.9:80 DNATed to
    10.1.7.2:8080 (kube-proxy's rule, in miniature), and the local addresses 10.1.7.2/3."""

    def __init__(self):
        self.ns = "hf-conntrace-%d" % os.getpid()

    def __enter__(self):
        import subprocess
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.run("ip", "link", "set", "lo", "up")
        for a in ("10.96.7.9", "10.1.7.2", "10.1.7.3"):
            self.run("ip", "addr", "add", a + "/32", "dev", "lo")
        self.dnat("10.1.7.2")
        return self

    def dnat(self, to):
        self.run("iptables", "-t", "nat", "-F", "OUTPUT")
        self.run("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "10.96.7.9",
                 "--dport", "80", "-j", "DNAT", "--to-destination", to + ":8080")

    def run(self, *argv, check=True, timeout=20):
        import subprocess
        env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))  # tests/: the helpers import hftest
        return subprocess.run(["ip", "netns", "exec", self.ns] + list(argv), capture_output=True,
                              text=True, timeout=timeout, check=check, env=env)

    def __exit__(self, *exc):
        import subprocess
        subprocess.run(["ip", "netns", "del", self.ns])


def _needs_root():
    import pytest
    if os.geteuid() != 0:
        pytest.skip("needs root: a network namespace and a DNAT rule")


_CLIENT = r"""
import time
from hftest import conntrace
ct = conntrace.ConnTracker()
ct.start()
time.sleep(0.3)  # conntrack subscribed
c = conntrace.TracedConnection("10.96.7.9", 80, timeout=3)
try:
    c.connect()
    print("connected|" + ct.explain("10.96.7.9", 80, c.local_port))
except OSError as e:
    print(type(e).__name__ + "|" + ct.explain("10.96.7.9", 80, c.local_port))
ct.stop()
"""


def test_a_failed_connection_says_where_the_dnat_sent_it():
    """On the real cluster a refused or reset connection names where kube-proxy sent it, read
    from conntrack's events by its local port: here a DNAT rule in a network namespace of the
    test's own sends a 'ClusterIP' to an address where nothing listens (refused), then to a
    listener."""
    import subprocess
    _needs_root()
    with _DnatNamespace() as n:
        out = n.run("/usr/bin/python3", "-c", _CLIENT).stdout.strip()
        assert out == "ConnectionRefusedError|to 10.1.7.2:8080", out
        server = subprocess.Popen(["ip", "netns", "exec", n.ns, "/usr/bin/python3", "-c",
                                   "import socket,time; s=socket.socket(); "
                                   "s.bind(('10.1.7.2', 8080)); s.listen(); print('up', flush=True); "
                                   "time.sleep(20)"], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout.readline().strip() == "up"
            out = n.run("/usr/bin/python3", "-c", _CLIENT).stdout.strip()
            assert out == "connected|to 10.1.7.2:8080", out
        finally:
            server.kill()
            server.wait()


def test_a_connect_that_reuses_a_stale_entrys_local_port_is_named_with_that_entry():
    """The kernel keeps an entry for a connection whose far end vanished before it closed (the
    pod's address gone: nothing answers the client's FIN). A new connection from the same local
    port to the same ClusterIP matches that entry, so its SYN goes to the vanished address, not
    through the DNAT rule as it is now: the connect times out. conntrace says so (no NEW event,
    the old entry named) instead of a bare timeout."""
    _needs_root()
    script = r"""
import socket, subprocess, time
from hftest import conntrace
def listener(ip):
    s = socket.socket(); s.bind((ip, 8080)); s.listen(); return s
a, b = listener("10.1.7.2"), listener("10.1.7.3")
c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
c.bind(("0.0.0.0", 0)); port = c.getsockname()[1]
c.connect(("10.96.7.9", 80)); a.accept()
for chain, flag in (("OUTPUT", "-s"), ("INPUT", "-d")):   # the pod vanishes: nothing answers
    subprocess.run(["iptables", "-A", chain, flag, "10.1.7.2", "-j", "DROP"], check=True)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 500)  # the client gives up soon
c.close()
time.sleep(2)                                            # its socket is gone, the entry is not
subprocess.run(["iptables", "-t", "nat", "-F", "OUTPUT"], check=True)   # kube-proxy moves on
subprocess.run(["iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "10.96.7.9", "--dport",
                "80", "-j", "DNAT", "--to-destination", "10.1.7.3:8080"], check=True)
ct = conntrace.ConnTracker(); ct.start(); time.sleep(0.3)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))  # the same local port again, as an ephemeral port comes round
s.settimeout(2)
try:
    s.connect(("10.96.7.9", 80)); print("connected")
except OSError as e:
    print(type(e).__name__ + "|" + ct.explain("10.96.7.9", 80, port))
ct.stop()
"""
    with _DnatNamespace() as n:
        out = n.run("/usr/bin/python3", "-c", script, timeout=30).stdout.strip()
    kind, _, why = out.partition("|")
    assert kind == "TimeoutError", out
    assert why.startswith("no new conntrack entry; existing: ") and why.endswith(" to 10.1.7.2:8080"), out


def test_a_soak_thread_that_raises_is_a_harness_violation():
    """A soak thread that dies (here: the way the resolver's endpoint keeper died on a replica
    listed before its process started) fails the run instead of leaving it half blind."""
    s = soak.Soak.__new__(soak.Soak)
    s.threads = []
    s.violations = observe.Violations(OpLog(0), 1, (), lambda *a: None)

    def broken():
        return None.returncode
    s._thread(broken, "membership").join(5)
    s._thread(lambda: None, "quiet").join(5)
    (v,) = s.violations.items
    assert (v["invariant"], v["object"]) == ("harness", "membership")
    assert "AttributeError" in v["detail"]
    assert not any(t.is_alive() for t in s.threads)


def test_a_connection_lost_to_pods_holdfast_removed_as_the_api_went_away_is_excused_only_then():
    """On the real cluster, pods removed just as the API server restarts stay in their Service's
    slices until the controllers act again (kube-proxy keeps sending to them): a lost
    connection of that app in that span is Kubernetes', and excused. Not one of another app, or
    before the outage, or once the controllers are back and the bound has passed, or one that
    went to a holdfast replica."""
    import threading
    from traffic import Failure
    from world import Replica
    s = soak.Soak.__new__(soak.Soak)
    s.bound, s.lock = 10.0, threading.RLock()
    s.disruptions = [(100.0, 130.0, "API outage")]
    s.wakes = observe.WakeHistory()

    class Hf:
        ip = "10.88.0.241"
    s.replicas = [Replica("hf-1", "hf-1", Hf())]
    for t, n in ((50.0, 3), (100.5, 0)):   # holdfast's scale to zero, as the API goes away
        s.wakes.on_event(t, "MODIFIED", {"metadata": {"uid": "u1", "namespace": "soak-1", "name": "a1"},
                                         "spec": {"replicas": n}})

    def lost(app, t, to="10.88.0.65:8080"):
        return s.removed_as_the_api_went_away(
            Failure(t, t + 3, app, "refused", "OSError: No route to host (to %s)" % to, 80, "/", "c"), t)
    assert lost("soak-1/a1", 104.0) == "pods removed by holdfast as the API went away"
    assert lost("soak-1/a1", 139.0)                        # within the bound after the controllers
    assert lost("soak-1/a1", 141.0) is None                # past it
    assert lost("soak-1/a1", 98.0) is None                 # before the outage
    assert lost("soak-2/a3", 104.0) is None                # another app
    assert lost("soak-1/a1", 104.0, to="10.88.0.241:20000") is None   # holdfast's own address
