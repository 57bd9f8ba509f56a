"""Leader election (controller/kube/leader) and Kubernetes Events (controller/kube/events) against the real
control plane (tests/hftest/realcluster.py; root; the probes run inside the cluster's network
namespace).

The C drivers tests/tools/leader_probe and tests/tools/events_probe (built by meson; directory
from HOLDFAST_TOOLS_DIR, default tests/tools beside $HOLDFAST_BIN, else <repo>/build/tests/tools)
run the modules. leader_probe prints its callbacks stamped with CLOCK_MONOTONIC seconds, the
clock time.monotonic() reads, so leadership intervals of different processes can be compared.

Short durations keep the file quick: lease 2 s, renew deadline 1.5 s, retry period 0.3 s. Every
leader test also runs an observer thread polling the Lease (a third party, as a real cluster's
other clients see it) and checks that no two candidates ever led at the same time.
Every wait is bounded polling; the probes' stderr must hold no sanitizer report.
"""
import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from hftest.kubeclient import wait_for
from hftest.realcluster import RealCluster

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

_BUILD = os.path.dirname(os.environ["HOLDFAST_BIN"]) if os.environ.get("HOLDFAST_BIN") else os.path.join(REPO, "build")
TOOLS = os.environ.get("HOLDFAST_TOOLS_DIR", os.path.join(_BUILD, "tests", "tools"))
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

LEASE_MS, RENEW_MS, RETRY_MS = 2000, 1500, 300
LEASE = "holdfast-leader"


class Proc:
    """A probe process: JSON lines read by a thread; commands by id (events_probe)."""

    def __init__(self, tmp_path, tool, args, tag, prefix=()):
        path = os.path.join(TOOLS, tool)
        if not os.path.exists(path):
            pytest.fail("%s is missing: build it (ninja -C build) or set HOLDFAST_TOOLS_DIR" % path)
        self.tag = tag
        self.stderr_path = os.path.join(str(tmp_path), "%s.stderr" % tag)
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(list(prefix) + [path] + list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, bufsize=1)
        self.lines = []
        self.answers = {}
        self.cv = threading.Condition()
        self.ids = iter(range(1, 1 << 30))
        self.eof = False  # stdout fully read: the process exited and every line is in
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                obj = {"event": "garbage", "line": line}
            with self.cv:
                self.lines.append(obj)
                if "id" in obj:
                    self.answers[obj["id"]] = obj
                self.cv.notify_all()
        with self.cv:
            self.eof = True
            self.cv.notify_all()

    def cmd(self, verb, *args, timeout=20):
        i = str(next(self.ids))
        self.proc.stdin.write(" ".join([i, verb] + [a if isinstance(a, str) else json.dumps(a) for a in args]) + "\n")
        self.proc.stdin.flush()
        with self.cv:
            if not self.cv.wait_for(lambda: i in self.answers or self.eof, timeout):
                pytest.fail("%s: no answer to %s after %ss; stderr:\n%s" % (self.tag, verb, timeout, self.stderr()))
            if i not in self.answers:
                pytest.fail("%s exited (%s); stderr:\n%s" % (self.tag, self.proc.returncode, self.stderr()))
            return self.answers[i]

    def events(self, kind=None):
        with self.cv:
            return [e for e in self.lines if "event" in e and (kind is None or e["event"] == kind)]

    def wait_event(self, kind, count=1, timeout=20):
        deadline = time.monotonic() + timeout
        with self.cv:
            while len([e for e in self.lines if e.get("event") == kind]) < count:
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    pytest.fail("%s: timed out waiting for %s #%d; events: %s\nstderr:\n%s"
                                % (self.tag, kind, count, self.lines[-20:], self.stderr()[-4000:]))
                self.cv.wait(min(left, 0.1))
            return [e for e in self.lines if e.get("event") == kind][count - 1]

    def leading(self):
        """True when the last leadership callback was started_leading."""
        ev = [e["event"] for e in self.events() if e["event"] in ("started_leading", "stopped_leading")]
        return bool(ev) and ev[-1] == "started_leading"

    def intervals(self, end=None):
        """[(start, stop)] of leadership in monotonic seconds; an open one ends at `end`."""
        out, start = [], None
        for e in self.events():
            if e["event"] == "started_leading":
                start = e["t"]
            elif e["event"] == "stopped_leading" and start is not None:
                out.append((start, e["t"]))
                start = None
        if start is not None:
            out.append((start, end if end is not None else time.monotonic()))
        return out

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def logs(self, msg):
        out = []
        for line in self.stderr().splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("msg") == msg:
                out.append(obj)
        return out

    def signal(self, sig):
        self.proc.send_signal(sig)
        self.killed_at = time.monotonic()

    def close(self):
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
            except OSError:
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._stderr.close()
        err = self.stderr()
        for m in SANITIZER_MARKERS:
            assert m not in err, "sanitizer report in %s's stderr:\n%s" % (self.tag, err[-8000:])


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = RealCluster(tmp_path_factory.mktemp("cluster"))
    s.start()
    try:
        yield s
    finally:
        leftovers = s.stop()
    assert leftovers == [], "left behind by the cluster: %s" % leftovers


def api_away(sim, seconds):
    """The API server unusable for `seconds` from now: kube-apiserver is SIGSTOPped, connections
    are accepted and nothing is answered, as across a network partition (stopping it takes longer
    than these outages last)."""
    return sim.latency(seconds * 1000, seconds)


_ns_counter = iter(range(1, 1 << 30))


@pytest.fixture
def ns(sim, request):
    sim.clear_faults()
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    name = "le%d-%s" % (next(_ns_counter), slug)
    sim.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    sim.clear_faults()
    sim.request("DELETE", "/api/v1/namespaces/" + name)


def lease_path(ns):
    return "/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s" % (ns, LEASE)


class Observer:
    """A third party polling the Lease every 50 ms: (monotonic time, spec) per change."""

    def __init__(self, sim, ns):
        self.sim, self.ns = sim, ns
        self.seen = []
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        last = None
        while not self.stop_ev.is_set():
            try:
                r = self.sim.request("GET", lease_path(self.ns), timeout=2)
                spec = r[1].get("spec") if isinstance(r, tuple) and isinstance(r[1], dict) else None
            except Exception:  # outages: nothing to see
                spec = None
            if spec is not None and spec != last:
                self.seen.append((time.monotonic(), spec))
                last = spec
            self.stop_ev.wait(0.05)

    def holders(self):
        return [s.get("holderIdentity", "") for _, s in self.seen]

    def close(self):
        self.stop_ev.set()
        self.thread.join(5)


@pytest.fixture
def election(sim, ns, tmp_path):
    """Starts candidates in `ns`; at the end checks that leadership never overlapped."""
    class Election:
        procs = []
        observer = Observer(sim, ns)

        def candidate(self, identity, *extra, lease=LEASE_MS, renew=RENEW_MS, retry=RETRY_MS):
            p = Proc(tmp_path, "leader_probe",
                     ["--kubeconfig", sim.kubeconfig, "--identity", identity, "--namespace", ns,
                      "--name", LEASE, "--lease-ms", str(lease), "--renew-ms", str(renew),
                      "--retry-ms", str(retry), "--log-level", "debug"] + list(extra), identity,
                     prefix=getattr(sim, "exec_prefix", ()))
            self.procs.append(p)
            p.wait_event("ready")
            return p

        def leaders(self):
            return [p for p in self.procs if p.proc.poll() is None and p.leading()]

        def assert_no_overlap(self):
            spans = []
            for p in self.procs:
                end = getattr(p, "killed_at", None) if p.proc.poll() is not None else None
                spans += [(a, b, p.tag) for a, b in p.intervals(end)]
            spans.sort()
            for (a1, b1, t1), (a2, b2, t2) in zip(spans, spans[1:]):
                assert a2 >= b1, "%s led %.3f-%.3f while %s led %.3f-%.3f" % (t1, a1, b1, t2, a2, b2)

    e = Election()
    e.procs = []
    yield e
    e.observer.close()
    for p in e.procs:
        p.close()
    e.assert_no_overlap()


def lease(sim, ns):
    return sim.get(lease_path(ns))["spec"]


MICROTIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


# ---------------------------------------------------------------- leader election


def test_one_candidate_acquires_and_renews(sim, ns, election):
    a = election.candidate("pod-a")
    a.wait_event("started_leading", timeout=10)
    assert a.wait_event("new_leader")["identity"] == "pod-a"
    spec = lease(sim, ns)
    assert spec["holderIdentity"] == "pod-a"
    assert spec["leaseDurationSeconds"] == 2
    assert spec["leaseTransitions"] == 0
    assert MICROTIME.match(spec["renewTime"]) and MICROTIME.match(spec["acquireTime"]), spec
    first = spec["renewTime"]
    wait_for(lambda: lease(sim, ns)["renewTime"] > first, timeout=5, what="renewTime to advance")
    later = lease(sim, ns)
    assert later["holderIdentity"] == "pod-a" and later["acquireTime"] == spec["acquireTime"]
    # Renewals every retry period, not one per lease: several changes within ~1.5 s.
    n = len(election.observer.seen)
    time.sleep(1.5)
    assert len(election.observer.seen) - n >= 3, election.observer.seen[-6:]
    assert len(a.logs("started leading")) == 1 and a.events("stopped_leading") == []


def test_two_candidates_exactly_one_leads(sim, ns, election):
    a = election.candidate("pod-a")
    b = election.candidate("pod-b")
    wait_for(lambda: len(election.leaders()) == 1, timeout=10, what="a leader")
    time.sleep(2.5)  # more than a lease duration: the other must not take over a live lease
    leaders = election.leaders()
    assert len(leaders) == 1
    other = b if leaders[0] is a else a
    assert other.events("started_leading") == []
    assert other.wait_event("new_leader")["identity"] == leaders[0].tag
    assert set(election.observer.holders()) == {leaders[0].tag}


def test_killed_leader_is_replaced_after_the_lease_duration(sim, ns, election):
    a = election.candidate("pod-a")
    a.wait_event("started_leading", timeout=10)
    b = election.candidate("pod-b")
    b.wait_event("new_leader")
    time.sleep(0.5)
    assert b.events("started_leading") == []
    a.signal(signal.SIGKILL)
    a.proc.wait(5)
    started = b.wait_event("started_leading", timeout=10)
    waited = started["t"] - a.killed_at
    # Not before the lease ran out as b observed it (the last renewal was up to one retry period
    # before the kill), and not much after.
    assert LEASE_MS / 1000 - RETRY_MS / 1000 - 0.1 <= waited <= LEASE_MS / 1000 + 3, waited
    spec = lease(sim, ns)
    assert spec["holderIdentity"] == "pod-b" and spec["leaseTransitions"] == 1


def test_graceful_stop_releases_and_the_other_takes_over_at_once(sim, ns, election):
    a = election.candidate("pod-a")
    a.wait_event("started_leading", timeout=10)
    b = election.candidate("pod-b")
    b.wait_event("new_leader")
    a.signal(signal.SIGTERM)
    rel = a.wait_event("released", timeout=5)
    assert rel["ok"] is True
    assert a.wait_event("stopped_leading")["t"] <= rel["t"]
    assert a.proc.wait(5) == 0
    started = b.wait_event("started_leading", timeout=10)
    # Taken over on the released lease, before it could have expired (what a takeover without
    # the release would wait for: the lease duration after a's last renewal, at or after the
    # SIGTERM). A candidate tries every 0.3-0.66 s.
    assert started["t"] - a.killed_at < LEASE_MS / 1000, started["t"] - a.killed_at
    assert "" in election.observer.holders()  # the release was visible to others
    spec = lease(sim, ns)
    assert spec["holderIdentity"] == "pod-b" and spec["leaseTransitions"] == 1


def test_outage_longer_than_renew_deadline_steps_down_then_reacquires(sim, ns, election):
    a = election.candidate("pod-a")
    a.wait_event("started_leading", timeout=10)
    api_away(sim, 4)
    t0 = time.monotonic()
    stopped = a.wait_event("stopped_leading", timeout=8)
    # Within the renew deadline after the last renewal: before the 2 s lease can expire for others.
    assert stopped["t"] - t0 <= RENEW_MS / 1000 + 0.3, stopped["t"] - t0
    assert not a.leading()
    again = a.wait_event("started_leading", count=2, timeout=15)
    assert again["t"] - t0 >= 3.5  # only once the API server is back
    assert lease(sim, ns)["holderIdentity"] == "pod-a"
    assert len(a.logs("stopped leading")) == 1


def test_stale_renewal_gets_409_and_never_double_leads(sim, ns, election):
    a = election.candidate("pod-a")
    a.wait_event("started_leading", timeout=10)
    b = election.candidate("pod-b")
    b.wait_event("new_leader")
    # A third party takes the Lease behind a's back: a's next renewal carries a stale
    # resourceVersion and must get 409 Conflict.
    # The intruder's own write can lose the race to a's renewal (a 409 for it: CI on the real
    # control plane, twice): it reads the Lease again and retries, as any writer would.
    for _ in range(20):
        obj = sim.get(lease_path(ns))
        obj["spec"]["holderIdentity"] = "intruder"
        obj["spec"]["leaseDurationSeconds"] = 2
        code, body = sim.request("PUT", lease_path(ns), obj)
        if code != 409:
            break
    assert code < 300, (code, body)
    t0 = time.monotonic()
    stopped = a.wait_event("stopped_leading", timeout=5)
    # At its next renewal, which got 409 and read the intruder's lease (the log line says so),
    # and before the intruder's 2 s lease could run out: never two leaders.
    assert a.logs("lease write lost a race, reading it again")
    assert stopped["t"] - t0 < 2.0, stopped["t"] - t0
    assert any(e["identity"] == "intruder" for e in a.events("new_leader"))
    # While the intruder's lease is live nobody leads; afterwards exactly one does.
    time.sleep(1.0)
    assert election.leaders() == []
    wait_for(lambda: len(election.leaders()) == 1, timeout=10, what="a new leader after the intruder's lease")
    time.sleep(1.0)
    assert len(election.leaders()) == 1
    winner = election.leaders()[0]
    spec = lease(sim, ns)
    assert spec["holderIdentity"] == winner.tag and spec["leaseTransitions"] == 1
    seen = election.observer.seen
    first_intruder = next(i for i, (_, s) in enumerate(seen) if s.get("holderIdentity") == "intruder")
    taken = next(t for t, s in seen[first_intruder:] if s.get("holderIdentity") != "intruder")
    assert taken - t0 >= 1.5, taken - t0  # nobody took the intruder's live lease


def test_disabled_is_always_leader_without_a_lease(sim, ns, election):
    a = election.candidate("pod-a", "--disabled")
    a.wait_event("started_leading", timeout=5)
    time.sleep(0.5)
    assert not sim.exists(lease_path(ns))
    a.signal(signal.SIGTERM)
    assert a.wait_event("released")["ok"] is False  # nothing to hand back
    a.wait_event("stopped_leading")


# ---------------------------------------------------------------- events


@pytest.fixture
def recorder(sim, tmp_path):
    procs = []

    def start(*extra):
        p = Proc(tmp_path, "events_probe", ["--kubeconfig", sim.kubeconfig, "--instance", "holdfast-7d9f-x2"]
                 + list(extra), "events%d" % len(procs), prefix=getattr(sim, "exec_prefix", ()))
        procs.append(p)
        p.wait_event("ready")
        return p
    yield start
    for p in procs:
        p.close()


def involved(sim, ns, name="web"):
    cm = sim.create("/api/v1/namespaces/%s/configmaps" % ns,
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
    md = cm["metadata"]
    return {"apiVersion": "v1", "kind": "ConfigMap", "namespace": ns, "name": name, "uid": md["uid"],
            "resourceVersion": md["resourceVersion"]}


def kubectl_events(sim, ns):
    out = sim.kubectl("get", "events", "-n", ns, "-o", "json")
    text = out.stdout if hasattr(out, "stdout") else out
    return json.loads(text)["items"]


def flushed(p):
    ans = p.cmd("flush", "5000")
    assert ans["drained"], p.stderr()[-2000:]


def test_event_created_with_object_reason_message_and_visible_in_kubectl(sim, ns, recorder):
    obj = involved(sim, ns)
    p = recorder()
    assert p.cmd("record", {"object": obj, "type": "Normal", "reason": "ScaledToZero",
                            "message": "scaled web to 0: below threshold for 300s"})["ok"]
    assert p.cmd("record", {"object": obj, "type": "Warning", "reason": "ScaleUpFailed",
                            "message": "exceeded quota: q, requested: pods=1"})["ok"]
    flushed(p)
    items = sorted(kubectl_events(sim, ns), key=lambda e: e["reason"])
    assert [e["reason"] for e in items] == ["ScaleUpFailed", "ScaledToZero"]
    warn, normal = items
    assert normal["type"] == "Normal" and warn["type"] == "Warning"
    assert normal["message"] == "scaled web to 0: below threshold for 300s"
    io = normal["involvedObject"]
    assert (io["apiVersion"], io["kind"], io["namespace"], io["name"], io["uid"]) == \
        ("v1", "ConfigMap", ns, "web", obj["uid"])
    assert normal["count"] == 1 and normal["firstTimestamp"] == normal["lastTimestamp"]
    assert normal["source"] == {"component": "holdfast", "host": "holdfast-7d9f-x2"}
    assert normal["reportingInstance"] == "holdfast-7d9f-x2"
    assert re.match(r"^web\.[0-9a-f]{16}$", normal["metadata"]["name"]), normal["metadata"]["name"]
    assert normal["metadata"]["namespace"] == ns
    table = sim.kubectl("get", "events", "-n", ns)
    text = table.stdout if hasattr(table, "stdout") else table
    assert "ScaledToZero" in text and "configmap/web" in text.lower(), text


def test_repeat_within_window_bumps_count_on_the_same_event(sim, ns, recorder):
    obj = involved(sim, ns)
    p = recorder()
    rec = {"object": obj, "type": "Normal", "reason": "ScaledUp", "message": "woken by a request"}
    assert p.cmd("record", rec)["ok"]
    flushed(p)
    time.sleep(1.1)  # lastTimestamp has a one-second resolution
    assert p.cmd("record", rec)["ok"]
    flushed(p)
    items = kubectl_events(sim, ns)
    assert len(items) == 1, items
    assert items[0]["count"] == 2 and items[0]["lastTimestamp"] > items[0]["firstTimestamp"]
    # A burst while writes are in flight folds into the count, still one object.
    for _ in range(5):
        p.cmd("record", rec)
    flushed(p)
    items = kubectl_events(sim, ns)
    assert len(items) == 1 and items[0]["count"] == 7, items
    st = p.cmd("stats")
    assert st["created"] == 1 and st["failed"] == 0
    # A different message is a different Event.
    assert p.cmd("record", dict(rec, message="woken by a probe"))["ok"]
    flushed(p)
    assert len(kubectl_events(sim, ns)) == 2


def test_expired_event_is_created_anew(sim, ns, recorder):
    obj = involved(sim, ns)
    p = recorder()
    rec = {"object": obj, "type": "Warning", "reason": "ScaleUpFailed", "message": "quota"}
    p.cmd("record", rec)
    flushed(p)
    first = kubectl_events(sim, ns)[0]["metadata"]["name"]
    sim.kubectl("delete", "event", first, "-n", ns)
    p.cmd("record", rec)
    flushed(p)
    items = kubectl_events(sim, ns)
    assert len(items) == 1 and items[0]["metadata"]["name"] != first and items[0]["count"] == 1
    assert p.cmd("stats")["recreated"] == 1


def test_long_object_name_fits_and_outage_is_survived(sim, ns, recorder):
    name = ("a" * 200) + "-" + ("b" * 40)
    obj = {"apiVersion": "elasti.truefoundry.com/v1alpha1", "kind": "ElastiService", "namespace": ns,
           "name": name, "uid": "0f0e0d0c-0000-4000-8000-000000000001"}
    p = recorder()
    p.cmd("record", {"object": obj, "type": "Normal", "reason": "ScaledToZero", "message": "m"})
    flushed(p)
    ev = kubectl_events(sim, ns)[0]
    assert len(ev["metadata"]["name"]) <= 253 and ev["involvedObject"]["name"] == name
    # With the API down, records return at once (fire and forget) and failures are logged once.
    # (An API server that fails requests: stopped, which returns once it has exited and closed
    # every connection; a SIGSTOPped one would only delay the records, and they would all
    # succeed.)
    sim.outage(3)
    t0 = time.monotonic()
    for i in range(20):
        assert p.cmd("record", {"object": obj, "type": "Warning", "reason": "Failed", "message": "x%d" % i})["ok"]
    assert time.monotonic() - t0 < 2
    p.cmd("flush", "10000")
    st = p.cmd("stats")
    assert st["failed"] >= 1 and st["in_flight"] == 0
    assert len(p.logs("event not created")) <= 2
