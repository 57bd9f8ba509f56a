"""realcluster: the real test cluster (tests/cluster/clusterlib.py, docs/test-cluster.md) as the
integration tests' client: upstream kube-apiserver, etcd, the controllers, the scheduler and
kube-proxy, with the node agent running the pods. (Its calls are those kubesim's client had, the
simulator the tests ran on before issue 11.)

    rc = RealCluster(state_dir, image_map=IMAGES, proxy_delay_ms=800)
    rc.start()          # scripts/cluster up; the calling thread moves into the cluster's netns
    rc.start_rollouts() # the Argo Rollouts controller (or RealCluster(..., rollouts=True))
    rc.get(path); rc.create(path, obj); rc.patch(path, patch); rc.kubectl("scale", ...)
    rc.fresh_ip()       # an address on the node's bridge for one holdfast process
    rc.exec_prefix      # argv prefix that runs a program in the cluster's namespace
    rc.stop()           # back to the host namespace; scripts/cluster down; [] if nothing is left

Network. Everything the cluster serves lives in its network namespace hfc-ID: the API server
at 10.88.0.1:6443, pods on 10.88.0.0/24, ClusterIPs on 10.96.0.0/24. start() moves the calling
thread (pytest's main thread, which runs the fixtures and tests) into hfc-ID, as the node
agent's tests do, so the test's own requests, the threads and processes it starts afterwards
(clients, Prometheus and its exporter, holdfast) all live there, and nothing is sent from the
host namespace. stop() moves it back.

holdfast's address. holdfast binds its resolver ports on an address that pods and kube-proxy's
DNAT can reach, and the API server refuses loopback addresses in EndpointSlices: so each
holdfast process gets one of 10.88.0.241-249, added (as /32) to the node's bridge hfbr0 in
hfc-ID. The top of the pod range (.240-.254) is left to tests by the node agent, which
hands out pod addresses from .2 up; .250-.254 are other tests'.

Connections to a Service before kube-proxy routes it. A SYN to a ClusterIP that kube-proxy has
not programmed yet is not DNATed: it goes to the ClusterIP itself on the bridge, and conntrack
keeps its entry, without NAT, for 120 s (SYN_SENT). A later connection that gets the same
source port (the tests' clients cycle through the ephemeral ports in about 14,000 connections)
is taken for a retransmission of it, stays un-DNATed and fails with "No route to host" after
ARP gives up (the switch test's lost request). So every test cluster's node rejects traffic to
the service CIDR that no DNAT rule took, before conntrack keeps the entry
(tests/cluster/netns.py, make_node_network): such a connect fails at once, as kube-proxy's own
reject of a Service without endpoints does, and leaves nothing behind.

The API proxy. tests/hftest/apiproxy.py on 10.88.0.1:6445, a proxy in front of kube-apiserver run
by this process, injects the faults a real API server cannot be asked for (503s, short latency,
write answers held back). Only the clients given `proxy_kubeconfig` go through it (a test that
needs those faults starts holdfast or its probe with it); `kubeconfig`, the test's own REST
calls and `kubectl` go to kube-apiserver directly, and so do the cluster's components: those
faults hit only the proxy's clients, and the cluster goes on working underneath.

Faults. A fault is offered only where the real control plane, or the proxy, has an equivalent
(the names are kubesim's, whose faults the tests asked for first); the others raise
NoRealEquivalent, so a test that asks for one fails loudly:

| fault                                 | here                                                      |
| ------------------------------------- | --------------------------------------------------------- |
| outage(s, mode="refuse")              | kube-apiserver stopped (SIGTERM: 429s for up to 2 s, then every connection closed and refused) and started again s seconds after the call; starting takes 3-5 s more, so the API is away longer than s |
| outage(s, mode="503")                 | the API proxy answers every request 503 for s seconds (kept-alive connections through it cut) |
| drop_watches()                        | kube-apiserver stopped and started: every watch (and every other connection) ends; returns once /readyz passes and the Deployment controller acts again (wait_controllers) |
| latency(ms, seconds) with ms >= seconds*1000 | kube-apiserver SIGSTOPped for `seconds`: connections are accepted by the kernel and nothing is answered; SIGCONT afterwards (or at clear_faults) |
| latency(ms, seconds), shorter         | the API proxy forwards each request ms late for `seconds` (until latency(0) or clear_faults when None) |
| slow_write_answers(ms, seconds)       | the API proxy holds each write's answer ms after kube-apiserver answered it (its watch events are out by then), for `seconds` (until cleared when None) |
| fault("ignore-unmanaged-slices", on=) | kube-proxy paused (SIGSTOP) / resumed: the data path does not follow holdfast's resolver slices, nor any other change meanwhile, so make the Service routed first |
| compact()                             | etcd compacted at its current revision; with a restart of kube-apiserver after it (drop_watches), watches from older resourceVersions get 410 |
| kill_pod(ns, name, signal)            | the node agent signals the process group of each running container of the pod (its POST /faults/killPod); restarts follow restartPolicy |
| clear_faults()                        | ends all of the above now                                 |
"""
import json
import os
import signal
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request

import clusterlib  # tests/cluster, the test cluster's own program (hftest/__init__.py)
import procs

from . import apiproxy
from .kubeclient import RestVerbs, wait_for
from .kubeclient import decode as _decode

HERE = os.path.dirname(os.path.abspath(__file__))

HOLDFAST_IPS = ["10.88.0.%d" % i for i in range(241, 250)]
_opener_handlers = [urllib.request.ProxyHandler({})]  # never a proxy


class NoRealEquivalent(AssertionError):
    """A fault the real control plane has no equivalent for: the test that asks for it fails."""


class RealCluster(RestVerbs):
    """One real test cluster, in state_dir, with the client API of KubeSim."""

    node_name = clusterlib.NODE_NAME

    def __init__(self, state_dir, image_map=None, proxy_delay_ms=0, rollouts=False):
        if os.environ.get("HOLDFAST_TEST_CLUSTER", "real") != "real":
            raise RuntimeError("HOLDFAST_TEST_CLUSTER=%r: the tests run on the real control plane "
                               "only (kubesim, the stand-in, is gone); unset it or set it to real"
                               % os.environ["HOLDFAST_TEST_CLUSTER"])
        self.state_dir = os.path.realpath(str(state_dir))
        os.makedirs(self.state_dir, exist_ok=True)
        if isinstance(image_map, (str, os.PathLike)):  # a file, as scripts/cluster up --image-map
            with open(image_map) as f:
                image_map = json.load(f)
        if not isinstance(image_map or {}, dict):
            raise TypeError("image_map: expected a dict or the path of a JSON file, got %r" % (image_map,))
        self.image_map = image_map or {}
        self.proxy_delay_ms = proxy_delay_ms
        self.rollouts = rollouts
        self.cluster = clusterlib.Cluster(self.state_dir)
        self.ns = self.cluster.ns
        self.exec_prefix = ["nsenter", "--net=/run/netns/" + self.ns]
        self._host_ns = None
        self._ctx = None
        self._ips = 0
        self._lock = threading.Lock()
        self._outage = None          # the thread that ends an outage
        self._outage_cut = None      # set: that thread ends it now
        self._apiserver_stopped = None  # (pid, start) of a SIGSTOPped kube-apiserver
        self._cont_timer = None
        self._proxy_paused = False
        self.api_proxy = None
        self._log = open(os.path.join(self.state_dir, "realcluster.log"), "a")

    # ------------------------------------------------------------ lifecycle

    def start(self):
        path = os.path.join(self.state_dir, "images.json")
        with open(path, "w") as f:
            json.dump(self.image_map, f)
        self.cluster.up(image_map=path, proxy_delay_ms=self.proxy_delay_ms, out=self._out, rollouts=self.rollouts)
        try:
            for ip in HOLDFAST_IPS:
                subprocess.run(["ip", "-n", self.ns, "addr", "add", ip + "/32", "dev", "hfbr0"],
                               check=True, capture_output=True, timeout=10)
            pki = self.cluster.pki
            self._ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
            self._ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))
            self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=self._ctx),
                                                       *_opener_handlers)
            self._enter()
            # in the cluster's namespace (this thread is there now): its threads live there too
            self.api_proxy = apiproxy.ApiProxy(pki).start()
            self.api_proxy.write_kubeconfig(os.path.join(self.state_dir, "proxy.kubeconfig"))
        except BaseException:
            self.stop()
            raise
        return self

    def start_rollouts(self):
        """The upstream Argo Rollouts controller on this running cluster, with its own CRDs
        (clusterlib.Cluster.start_rollouts); a no-op once it runs. Returns the seconds taken."""
        took = self.cluster.start_rollouts(step=lambda m: self._out("rollouts: " + m))
        self._out("Argo Rollouts controller running (%.1fs)" % took)
        return took

    def stop(self):
        """Ends every fault, leaves the cluster's namespace, runs `down`. Returns what is left
        of the cluster (namespaces hfc-ID*): [] when all is gone."""
        try:
            self._clear()
        finally:
            if self.api_proxy is not None:
                self.api_proxy.stop()
                self.api_proxy = None
            self._leave()
            try:
                self.cluster.down(out=self._out)
            finally:
                self._log.close()
        return clusterlib.netns.with_prefix(self.ns)

    def restart_component(self, name, extra_args):
        """Stops one component and starts it again with extra_args after the flags it was
        started with (the later of two equal flags wins); start_component (a fault's restart)
        keeps them. For a benchmark that needs, e.g., kube-controller-manager's client rate
        limit raised (its --kube-api-qps, upstream's default 20/s, bounds how fast 10,000
        Deployments get their ReplicaSets)."""
        self.cluster.stop_component(name)
        argv = self.cluster.daemons.argv(name) + list(extra_args)
        self._out("restarting %s with %s" % (name, " ".join(extra_args)))
        self.cluster._start(name, argv)

    def component_pid(self, name):
        """The PID of the component's own program (under its supervisor, if any), or None."""
        child = self.cluster.child_pid(name)
        if child:
            return child
        r = self.cluster.daemons.get(name)
        return r[0] if r and procs.alive(*r) else None

    def _out(self, msg):
        self._log.write("%s %s\n" % (time.strftime("%H:%M:%S"), msg))
        self._log.flush()

    def _enter(self):
        self._host_ns = clusterlib.netns.enter(self.ns)

    def _leave(self):
        if self._host_ns is not None:
            host, self._host_ns = self._host_ns, None
            clusterlib.netns.leave(host)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------ addresses

    @property
    def kubeconfig(self):
        return self.cluster.kubeconfig

    @property
    def proxy_kubeconfig(self):
        """The admin's kubeconfig through the API proxy (see the module's doc)."""
        return os.path.join(self.state_dir, "proxy.kubeconfig")

    @property
    def api_url(self):
        return clusterlib.APISERVER

    def fresh_ip(self):
        """An address of the node's bridge for one holdfast process (round robin over
        10.88.0.241-249; holdfast's random port range keeps two users of one address apart)."""
        with self._lock:
            ip = HOLDFAST_IPS[self._ips % len(HOLDFAST_IPS)]
            self._ips += 1
        return ip

    # ------------------------------------------------------------ REST (as KubeSim's)

    def request(self, method, path, body=None, content_type="application/json", token=None, timeout=10,
                headers=None):
        """Returns (status, decoded JSON or text), as admin. Never raises for HTTP errors."""
        assert token is None, "the real cluster's client authenticates with the admin certificate"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.api_url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with self._opener.open(req, timeout=timeout) as r:
                return r.status, _decode(r.read())
        except urllib.error.HTTPError as e:
            return e.code, _decode(e.read())


    def kubectl(self, *args, input=None, check=True, timeout=60):
        """The upstream kubectl, as admin, inside the cluster's namespace."""
        r = self.cluster.kubectl(*args, input=input, check=False, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError("kubectl %s failed (%d): %s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    # ------------------------------------------------------------ conditions (as KubeSim's)

    def ready_endpoints(self, namespace, service):
        """Addresses with conditions.ready true in the Service's EndpointSlices."""
        sl = self.get("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices?labelSelector="
                      "kubernetes.io/service-name%%3D%s" % (namespace, service))
        return sorted(ep["addresses"][0] for s in sl["items"] for ep in s.get("endpoints") or []
                      if (ep.get("conditions") or {}).get("ready"))

    def wait_ready_replicas(self, namespace, name, n, kind="deployments", group="apps/v1", timeout=60):
        path = "/apis/%s/namespaces/%s/%s/%s" % (group, namespace, kind, name)

        def ready():
            st = self.get(path).get("status") or {}
            return st.get("readyReplicas", 0) == n and st.get("replicas", 0) == n
        return wait_for(ready, timeout=timeout, what="%s %s/%s to have %d ready replicas" % (kind, namespace, name, n))

    def wait_service_endpoints(self, namespace, service, n, timeout=30):
        return wait_for(lambda: len(self.ready_endpoints(namespace, service)) == n, timeout=timeout,
                        what="Service %s/%s to have %d ready endpoints" % (namespace, service, n))

    def cluster_ip(self, namespace, service):
        return self.get("/api/v1/namespaces/%s/services/%s" % (namespace, service))["spec"]["clusterIP"]

    # ------------------------------------------------------------ faults

    def fault(self, fault_name, **body):
        if fault_name == "outage":
            return self.outage(body["seconds"], body.get("mode", "refuse"))
        if fault_name == "drop-watches":
            return self.drop_watches()
        if fault_name == "latency":
            return self.latency(body["ms"], body.get("seconds"))
        if fault_name == "slow-write-answers":
            return self.slow_write_answers(body["ms"], body.get("seconds"))
        if fault_name == "ignore-unmanaged-slices":
            return self.pause_data_path(body.get("on", True))
        if fault_name == "clear":
            return self.clear_faults()
        raise NoRealEquivalent("fault %r has no equivalent on the real cluster" % fault_name)

    def outage(self, seconds, mode="refuse"):
        """refuse: kube-apiserver stopped now (returns once it has exited) and started again
        `seconds` after the call, by a thread; clear_faults() or wait_outage() wait for it.
        503: the API proxy answers every request 503 for `seconds` (returns at once)."""
        if mode == "503":
            self._clear()
            self._out("fault: the API proxy answers 503 for %ss" % seconds)
            return self.api_proxy.fault("503", seconds=seconds)
        if mode != "refuse":
            raise NoRealEquivalent("outage mode %r: neither the real API server nor the API proxy "
                                   "answers like it" % mode)
        self._clear()
        t0 = time.monotonic()
        self._out("fault: stopping kube-apiserver for %ss" % seconds)
        self.cluster.stop_component("kube-apiserver")
        self._out("fault: kube-apiserver stopped after %.1fs" % (time.monotonic() - t0))

        cut = threading.Event()

        def end():
            cut.wait(max(0.0, seconds - (time.monotonic() - t0)))
            self._start_apiserver()
        self._outage_cut = cut
        self._outage = threading.Thread(target=end, daemon=True)
        self._outage.start()
        return {"seconds": seconds, "mode": mode}

    def wait_outage(self, timeout=120, now=False):
        """Waits (bounded) until a running outage is over and the API serves again; with now,
        ends it first."""
        t = self._outage
        if t is not None:
            if now:
                self._outage_cut.set()
            t.join(timeout)
            assert not t.is_alive(), "kube-apiserver not started again within %ss" % timeout
            self._outage = None

    def _start_apiserver(self):
        t0 = time.monotonic()
        if not self.cluster.daemons.is_running("kube-apiserver"):
            self.cluster.start_component("kube-apiserver")
        self._out("fault: kube-apiserver ready again after %.1fs" % (time.monotonic() - t0))

    def drop_watches(self):
        """Every watch ends: kube-apiserver stopped and started (every other connection ends
        too). Returns once it serves again and the controller-manager acts again
        (wait_controllers)."""
        self._clear()
        self.cluster.stop_component("kube-apiserver")
        self._start_apiserver()
        self.wait_controllers()
        return {}

    CANARY = "/apis/apps/v1/namespaces/kube-system/deployments/hf-test-canary"

    def wait_controllers(self, timeout=120):
        """Waits (bounded) until kube-controller-manager's Deployment controller acts on a change
        again: a canary Deployment (0 replicas, in kube-system) gets a new generation and its
        status.observedGeneration must follow. After an API server restart the controllers'
        informers come back only after client-go's back-off (0.8 s doubling to 30 s), and the
        ReplicaSet and EndpointSlice controllers refuse to act while their cache is older than
        what they wrote ("read version ... is not as new as written version"): measured here,
        tens of seconds with no scale-up, which kubesim (the simulator before issue 11), whose
        controllers lived in its API server, never showed. Returns the seconds waited."""
        t0 = time.monotonic()
        if not self.exists(self.CANARY):
            labels = {"app": "hf-test-canary"}
            self.create(self.CANARY.rsplit("/", 1)[0], {
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hf-test-canary"},
                "spec": {"replicas": 0, "selector": {"matchLabels": labels}, "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "main", "image": "hf-test/canary"}]}}}})
        cur = self.get(self.CANARY)
        gen = self.patch(self.CANARY, {"spec": {"minReadySeconds": 1 - cur["spec"].get("minReadySeconds", 0)}})[
            "metadata"]["generation"]
        wait_for(lambda: (self.get(self.CANARY).get("status") or {}).get("observedGeneration", 0) >= gen,
                 timeout=timeout, interval=0.2, what="the Deployment controller acting again (canary)")
        waited = time.monotonic() - t0
        self._out("controllers act again after %.1fs" % waited)
        return waited

    def latency(self, ms, seconds=None):
        """ms >= seconds * 1000: an API server that accepts and never answers for `seconds`
        (SIGSTOP, then SIGCONT). Shorter: the API proxy forwards each request `ms` late for
        `seconds` (None: until latency(0) or clear_faults)."""
        if seconds is None or ms < seconds * 1000:
            if ms == 0:
                self.api_proxy.clear("latency")
                return {}
            self._out("fault: the API proxy delays each request %d ms for %ss" % (ms, seconds))
            return self.api_proxy.fault("latency", seconds=1e9 if seconds is None else seconds, ms=ms)
        self._clear()
        r = self.cluster.daemons.get("kube-apiserver")
        assert r is not None and procs.alive(*r), "kube-apiserver does not run"
        os.kill(r[0], signal.SIGSTOP)
        self._apiserver_stopped = r
        self._out("fault: kube-apiserver SIGSTOPped for %ss" % seconds)
        self._cont_timer = threading.Timer(seconds, self._cont_apiserver)
        self._cont_timer.daemon = True
        self._cont_timer.start()
        return {"ms": ms, "seconds": seconds}

    def _cont_apiserver(self):
        with self._lock:
            r, self._apiserver_stopped = self._apiserver_stopped, None
        if r is not None and procs.alive(*r):
            os.kill(r[0], signal.SIGCONT)
            self._out("fault: kube-apiserver SIGCONTed")

    def slow_write_answers(self, ms, seconds=None):
        """The API proxy holds each write's answer `ms` after kube-apiserver answered it (its
        watch events went out before), for `seconds` (None: until cleared); 0 ends it."""
        if ms == 0:
            self.api_proxy.clear("slow-write-answers")
            return {}
        self._out("fault: the API proxy holds write answers %d ms for %ss" % (ms, seconds))
        return self.api_proxy.fault("slow-write-answers", seconds=1e9 if seconds is None else seconds, ms=ms)

    def pause_data_path(self, on=True):
        """kube-proxy paused (on) or resumed: while paused the ClusterIPs keep the routes they
        had, so the data path does not follow holdfast's resolver slices (nor anything else)."""
        if on and not self._proxy_paused:
            self.cluster.pause_kube_proxy(True)
            self._proxy_paused = True
            self._out("fault: kube-proxy paused")
        elif not on and self._proxy_paused:
            self.cluster.pause_kube_proxy(False)
            self._proxy_paused = False
            self._out("fault: kube-proxy resumed")
        return {"on": on}

    def compact(self):
        """etcd compacted at its current revision (through its HTTP gateway on 127.0.0.1:2379 in
        the cluster's namespace): the history is gone. The API server's watch cache still
        serves what it holds; the next drop_watches() (a restart) starts the cache at the
        current revision, so a watch from an older resourceVersion gets 410 Expired. Returns
        the revision."""
        def etcd(path, body):
            req = urllib.request.Request("http://127.0.0.1:2379" + path, data=json.dumps(body).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
            with urllib.request.build_opener(*_opener_handlers).open(req, timeout=10) as r:
                return json.loads(r.read())
        rev = int(etcd("/v3/kv/range", {"key": "AA==", "limit": 1})["header"]["revision"])
        etcd("/v3/kv/compaction", {"revision": str(rev), "physical": True})
        self._out("fault: etcd compacted at revision %d" % rev)
        return rev

    def kill_pod(self, namespace, name, signal="KILL"):
        """The signal (KILL, TERM, ...) to every running container of the pod, by the node agent
        (its fault POST /faults/killPod): the containers exit and are restarted
        per restartPolicy (restartCount, lastState.terminated: exit code 137 for KILL)."""
        r = self.cluster.kill_pod(namespace, name, signal)
        self._out("fault: %s sent to pod %s/%s: %s" % (r["signal"], namespace, name, r["containers"]))
        return r

    def clear_faults(self):
        """Ends every fault now: kube-proxy resumed, kube-apiserver continued or started again
        (returns once it serves)."""
        self._clear()
        return {}

    def _clear(self):
        if self.api_proxy is not None:
            self.api_proxy.clear()
        if self._cont_timer is not None:
            self._cont_timer.cancel()
            self._cont_timer = None
        self._cont_apiserver()
        if self._proxy_paused:
            self.pause_data_path(False)
        self.wait_outage(now=True)
