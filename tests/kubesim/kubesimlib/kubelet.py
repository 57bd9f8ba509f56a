"""The kubelet: runs every pod as real local processes, one per container, each pod on its own
loopback IP. Images come from the image map (image -> argv); readiness/liveness probes
(httpGet, tcpSocket, exec) drive the Ready condition; deletion sends SIGTERM to each container's
process group, waits the grace period, then SIGKILLs, and only then removes the pod object.

One worker thread per pod, as the real kubelet's pod workers. Children are started from that
thread with PR_SET_PDEATHSIG, so they die if kubesim is killed outright."""
import ctypes
import http.client
import ipaddress
import logging
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from .errors import ApiError
from .util import deep, now_rfc3339

# The image map is shared with the node agent of the real-control-plane cluster (tests/cluster).
sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "cluster"))
from nodeagentlib.imagemap import ImageMap, command_argv, expand  # noqa: E402,F401

log = logging.getLogger("kubesim.kubelet")

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _child_setup():
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class IPAllocator:
    """Hands out loopback addresses from a range, never twice in one run, skipping any address
    where one of the pod's ports cannot be bound (e.g. taken by another kubesim)."""

    def __init__(self, cidr):
        net = ipaddress.ip_network(cidr)
        self.hosts = [h for h in net.hosts() if str(h).rsplit(".", 1)[1] not in ("0", "255")]
        self.next = random.randrange(len(self.hosts) // 2) if len(self.hosts) > 512 else 0
        self.lock = threading.Lock()

    def allocate(self, ports):
        with self.lock:
            for _ in range(len(self.hosts)):
                ip = str(self.hosts[self.next % len(self.hosts)])
                self.next += 1
                if all(_bindable(ip, p) for p in ports):
                    return ip
        raise RuntimeError("pod IP range exhausted")


def _bindable(ip, port):
    s = socket.socket()
    try:
        s.bind((ip, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _set_cond(conds, ctype, status):
    for c in conds:
        if c["type"] == ctype:
            if c["status"] != status:
                c["status"] = status
                c["lastTransitionTime"] = now_rfc3339()
            return
    conds.append({"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": now_rfc3339()})


class Container:
    """Runtime state of one container of a pod."""

    def __init__(self, spec):
        self.spec = spec
        self.name = spec["name"]
        self.proc = None
        self.state = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state = {}
        self.restarts = 0
        self.started_at = None       # monotonic start of the current process
        self.ready = False
        self.probe_ok = 0
        self.probe_fail = 0
        self.live_fail = 0
        self.next_probe = 0.0
        self.next_live = 0.0
        self.restart_at = None
        self.exit_code = None


class PodWorker(threading.Thread):
    def __init__(self, kubelet, ns, name):
        super().__init__(name="pod-%s/%s" % (ns, name), daemon=True)
        self.k = kubelet
        self.ns, self.name = ns, name
        self.wake = threading.Event()
        self.containers = []
        self.ip = None
        self.kill_requested = None   # signal number to deliver (fault injection)
        self.stopping = False        # kubesim shutting down
        self.log_dir = os.path.join(kubelet.state_dir, "pods")

    # ---------------------------------------------------------------- status

    def _write_status(self, pod, phase=None):
        st = deep(pod.get("status") or {})
        conds = st.setdefault("conditions", [])
        all_ready = bool(self.containers) and all(c.ready for c in self.containers)
        started = any(c.proc is not None for c in self.containers)
        _set_cond(conds, "PodReadyToStartContainers", "True" if self.ip else "False")
        _set_cond(conds, "Initialized", "True")
        _set_cond(conds, "Ready", "True" if all_ready else "False")
        _set_cond(conds, "ContainersReady", "True" if all_ready else "False")
        _set_cond(conds, "PodScheduled", "True")
        order = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        conds.sort(key=lambda c: order.index(c["type"]) if c["type"] in order else 99)
        for c in conds:
            if c["type"] in ("Ready", "ContainersReady") and not all_ready:
                names = [x.name for x in self.containers if not x.ready]
                c["reason"] = "ContainersNotReady"
                c["message"] = "containers with unready status: [%s]" % " ".join(names)
            else:
                c.pop("reason", None)
                c.pop("message", None)
        st["phase"] = phase or ("Running" if started else "Pending")
        st["hostIP"] = "127.0.0.1"
        st["hostIPs"] = [{"ip": "127.0.0.1"}]
        if self.ip:
            st["podIP"] = self.ip
            st["podIPs"] = [{"ip": self.ip}]
        st.setdefault("startTime", now_rfc3339())
        st.setdefault("qosClass", "BestEffort")
        cs = []
        for c in self.containers:
            image = c.spec.get("image", "")
            entry = {"name": c.name, "image": image, "imageID": "", "ready": c.ready,
                     "restartCount": c.restarts, "started": c.proc is not None, "state": c.state,
                     "lastState": c.last_state}
            if c.proc is not None:
                entry["imageID"] = "kubesim://" + image
                entry["containerID"] = "kubesim://%d" % c.proc.pid
            cs.append(entry)
        st["containerStatuses"] = cs

        def f(obj):
            if obj.get("status") == st:
                return False
            obj["status"] = st
        self.k.store.mutate(self.k.pods_res, self.ns, self.name, f, subresource="status")

    # ---------------------------------------------------------------- processes

    def _env(self, pod, c, port):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "LANG": "C.UTF-8",
               "HOSTNAME": self.name, "POD_IP": self.ip, "POD_NAME": self.name, "POD_NAMESPACE": self.ns,
               "KUBESIM_INSTANCE": self.k.instance}
        if port is not None:
            env["PORT"] = str(port)
        entry = self.k.images.lookup(c.spec.get("image", "")) or {}
        env.update({k: str(v) for k, v in (entry.get("env") or {}).items()})
        field_refs = {"metadata.name": self.name, "metadata.namespace": self.ns, "status.podIP": self.ip,
                      "spec.nodeName": self.k.node, "status.hostIP": "127.0.0.1",
                      "metadata.uid": pod["metadata"]["uid"]}
        for e in c.spec.get("env") or []:
            if "value" in e:
                env[e["name"]] = expand(str(e["value"]), env)
            elif ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") in field_refs:
                env[e["name"]] = field_refs[e["valueFrom"]["fieldRef"]["fieldPath"]]
            else:
                m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]",
                                 ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") or "")
                if m:
                    env[e["name"]] = (pod["metadata"].get(m.group(1)) or {}).get(m.group(2), "")
        return env, entry

    def _start(self, pod, c):
        ports = c.spec.get("ports") or []
        port = ports[0].get("containerPort") if ports else None
        env, entry = self._env(pod, c, port)
        argv = command_argv(entry, c.spec, env)
        os.makedirs(self.log_dir, exist_ok=True)
        logf = open(os.path.join(self.log_dir, "%s_%s_%s.log" % (self.ns, self.name, c.name)), "ab")
        try:
            c.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                      cwd=self.k.state_dir, start_new_session=True, preexec_fn=_child_setup)
        except OSError as e:
            c.proc = None
            c.state = {"waiting": {"reason": "RunContainerError", "message": str(e)}}
            c.restart_at = time.monotonic() + self._backoff(c)
            c.restarts += 1
            return
        finally:
            logf.close()
        self.k.register_pid(c.proc.pid)
        c.started_at = time.monotonic()
        c.state = {"running": {"startedAt": now_rfc3339()}}
        c.ready = False
        c.probe_ok = c.probe_fail = c.live_fail = 0
        rp = c.spec.get("readinessProbe") or {}
        c.next_probe = c.started_at + rp.get("initialDelaySeconds", 0)
        lp = c.spec.get("livenessProbe") or {}
        c.next_live = c.started_at + lp.get("initialDelaySeconds", 0) + lp.get("periodSeconds", 10)
        if not rp:
            c.ready = True

    def _backoff(self, c):
        return min(10.0, 1.0 * (2 ** min(c.restarts, 4)))

    def _signal(self, c, sig):
        if c.proc is not None and c.proc.poll() is None:
            try:
                os.killpg(c.proc.pid, sig)
            except ProcessLookupError:
                pass

    def _reap(self, c, reason):
        """The container's process exited (or was killed): record it."""
        code = c.proc.returncode if c.proc else None
        started = (c.state.get("running") or {}).get("startedAt")
        term = {"exitCode": code if code is not None and code >= 0 else 128 - (code or 0),
                "reason": reason if reason else ("Completed" if code == 0 else "Error"),
                "startedAt": started, "finishedAt": now_rfc3339()}
        self.k.unregister_pid(c.proc.pid)
        _kill_group(c.proc.pid)
        c.proc = None
        c.ready = False
        c.exit_code = term["exitCode"]
        return term

    # ---------------------------------------------------------------- probes

    def _probe(self, pod, c, probe):
        timeout = probe.get("timeoutSeconds", 1)
        try:
            if "httpGet" in probe:
                hg = probe["httpGet"]
                port = _port(c.spec, hg.get("port"))
                conn = http.client.HTTPConnection(hg.get("host") or self.ip, port, timeout=timeout)
                try:
                    headers = {h["name"]: h["value"] for h in hg.get("httpHeaders") or []}
                    headers.setdefault("User-Agent", "kube-probe/1.31")
                    conn.request("GET", hg.get("path", "/"), headers=headers)
                    return 200 <= conn.getresponse().status < 400
                finally:
                    conn.close()
            if "tcpSocket" in probe:
                ts = probe["tcpSocket"]
                with socket.create_connection((ts.get("host") or self.ip, _port(c.spec, ts.get("port"))),
                                              timeout=timeout):
                    return True
            if "exec" in probe:
                env, _ = self._env(pod, c, None)
                r = subprocess.run(probe["exec"].get("command") or ["false"], env=env, timeout=timeout,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                return r.returncode == 0
        except (OSError, subprocess.SubprocessError, http.client.HTTPException, ValueError):
            return False
        return True

    # ---------------------------------------------------------------- life

    def run(self):
        try:
            self._run()
        except Exception:
            log.exception("pod worker %s/%s failed", self.ns, self.name)
        finally:
            for c in self.containers:
                self._signal(c, signal.SIGKILL)
                if c.proc is not None:
                    try:
                        c.proc.wait(5)
                    except subprocess.TimeoutExpired:
                        pass
                    self.k.unregister_pid(c.proc.pid)
            self.k.worker_done(self)

    def _run(self):
        k = self.k
        pod = k.store.peek(k.pods_res, self.ns, self.name)
        if pod is None:
            return
        spec = pod.get("spec") or {}
        self.containers = [Container(c) for c in spec.get("containers") or []]
        ports = [p.get("containerPort") for c in spec.get("containers") or [] for p in c.get("ports") or []
                 if isinstance(p.get("containerPort"), int)]
        self.ip = k.ips.allocate(ports)

        def bind(obj):
            obj.setdefault("spec", {})["nodeName"] = k.node
        k.store.mutate(k.pods_res, self.ns, self.name, bind)
        created = time.monotonic()
        while not self.stopping:
            pod = k.store.peek(k.pods_res, self.ns, self.name)
            if pod is None:
                return                                   # force-deleted: processes die in finally
            if pod["metadata"].get("deletionTimestamp"):
                return self._terminate(pod)
            now = time.monotonic()
            next_wake = now + 1.0
            for c in self.containers:
                if self.kill_requested and c.proc is not None:
                    self._signal(c, self.kill_requested)
                if c.proc is None and c.restart_at is None and c.restarts == 0 and c.exit_code is None:
                    entry = k.images.lookup(c.spec.get("image", ""))
                    if entry is None:
                        waited = now - created
                        reason = "ErrImagePull" if waited < 1.0 else "ImagePullBackOff"
                        msg = ('Back-off pulling image "%s"' % c.spec.get("image") if reason == "ImagePullBackOff"
                               else 'failed to pull and unpack image "%s": not found in kubesim image map'
                               % c.spec.get("image"))
                        c.state = {"waiting": {"reason": reason, "message": msg}}
                        next_wake = min(next_wake, now + 0.5)
                        continue
                    delay = (entry.get("startDelayMs") or 0) / 1000.0
                    if now - created < delay:
                        c.state = {"waiting": {"reason": "ContainerCreating"}}
                        next_wake = min(next_wake, created + delay)
                        continue
                    self._start(pod, c)
                elif c.proc is None and c.restart_at is not None:
                    if now >= c.restart_at:
                        c.restart_at = None
                        self._start(pod, c)
                    else:
                        next_wake = min(next_wake, c.restart_at)
                        continue
                if c.proc is not None and c.proc.poll() is not None:
                    c.last_state = {"terminated": self._reap(c, None)}
                    policy = spec.get("restartPolicy", "Always")
                    if policy == "Always" or (policy == "OnFailure" and c.exit_code != 0):
                        c.restarts += 1
                        c.restart_at = now + self._backoff(c)
                        c.state = {"waiting": {"reason": "CrashLoopBackOff",
                                               "message": "back-off %ds restarting failed container=%s pod=%s"
                                               % (int(self._backoff(c)), c.name, self.name)}}
                    else:
                        c.state = c.last_state
                        c.last_state = {}
                    next_wake = now
                    continue
                if c.proc is None:
                    continue
                rp = c.spec.get("readinessProbe")
                if rp and now >= c.next_probe:
                    if self._probe(pod, c, rp):
                        c.probe_ok += 1
                        c.probe_fail = 0
                        if c.probe_ok >= rp.get("successThreshold", 1):
                            c.ready = True
                    else:
                        c.probe_fail += 1
                        c.probe_ok = 0
                        if c.probe_fail >= rp.get("failureThreshold", 3) or not c.ready:
                            c.ready = False
                    # Until the first success, probe quickly so readiness tracks the process closely.
                    period = rp.get("periodSeconds", 10)
                    c.next_probe = time.monotonic() + (period if c.ready else min(period, 0.2))
                if rp:
                    next_wake = min(next_wake, c.next_probe)
                lp = c.spec.get("livenessProbe")
                if lp and now >= c.next_live:
                    if self._probe(pod, c, lp):
                        c.live_fail = 0
                    else:
                        c.live_fail += 1
                        if c.live_fail >= lp.get("failureThreshold", 3):
                            self._signal(c, signal.SIGKILL)
                    c.next_live = time.monotonic() + lp.get("periodSeconds", 10)
                if lp:
                    next_wake = min(next_wake, c.next_live)
            self.kill_requested = None
            phase = None
            if self.containers and all(c.proc is None and c.restart_at is None and c.exit_code is not None
                                       for c in self.containers):
                phase = "Succeeded" if all(c.exit_code == 0 for c in self.containers) else "Failed"
            self._write_status(pod, phase)
            self.wake.wait(max(0.0, min(next_wake - time.monotonic(), 1.0)))
            self.wake.clear()

    def _terminate(self, pod):
        """Graceful termination: SIGTERM, wait the grace period, SIGKILL, then delete the pod."""
        k = self.k
        grace = pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        for c in self.containers:
            self._signal(c, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(c.proc is not None and c.proc.poll() is None for c in self.containers):
            if time.monotonic() >= deadline or self.stopping:
                for c in self.containers:
                    self._signal(c, signal.SIGKILL)
                break
            cur = k.store.peek(k.pods_res, self.ns, self.name)
            if cur is None:
                break
            g2 = cur["metadata"].get("deletionGracePeriodSeconds")
            if g2 is not None and g2 < grace:            # a shorter grace period was requested
                deadline -= grace - g2
                grace = g2
            self.wake.wait(0.05)
            self.wake.clear()
        for c in self.containers:
            if c.proc is not None:
                try:
                    c.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
                term = self._reap(c, "Completed" if c.proc.returncode == 0 else "Error")
                c.state = {"terminated": term}
        cur = k.store.peek(k.pods_res, self.ns, self.name)
        if cur is not None:
            # a container that never ran did not succeed (the real kubelet's terminal phase: Failed)
            self._write_status(cur, "Succeeded" if all(c.exit_code == 0 for c in self.containers) else "Failed")
            try:
                k.store.delete(k.pods_res, self.ns, self.name, grace=0)
            except ApiError:
                pass


def _port(cspec, p):
    if isinstance(p, int):
        return p
    if isinstance(p, str) and p.isdigit():
        return int(p)
    for cp in cspec.get("ports") or []:
        if cp.get("name") == p:
            return cp["containerPort"]
    raise ValueError("unknown port %r" % p)


def _kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Kubelet:
    def __init__(self, store, registry, state_dir, image_map, pod_cidr, node_name):
        self.store = store
        self.registry = registry
        self.state_dir = state_dir
        self.images = ImageMap(image_map)
        self.ips = IPAllocator(pod_cidr)
        self.node = node_name
        self.instance = os.path.basename(state_dir.rstrip("/")) + "-%d" % os.getpid()
        self.pods_res = registry.lookup("", "v1", "pods")
        self.workers = {}
        self.lock = threading.Lock()
        self.pids = set()
        self.stopping = False

    def start(self):
        self.store.subscribers.append(self._on_change)
        for p in self.store.list_raw(self.pods_res)[0]:
            self._on_change("ADDED", "/pods", p, None)

    def _on_change(self, etype, key, obj, old):
        if key != "/pods" or self.stopping:
            return
        k = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        with self.lock:
            w = self.workers.get(k)
            if w is None and etype == "ADDED":
                w = PodWorker(self, *k)
                self.workers[k] = w
                w.start()
            elif w is not None:
                w.wake.set()

    def worker_done(self, w):
        with self.lock:
            if self.workers.get((w.ns, w.name)) is w:
                del self.workers[(w.ns, w.name)]

    def register_pid(self, pid):
        with self.lock:
            self.pids.add(pid)
        with open(os.path.join(self.state_dir, "pods.pids"), "a") as f:
            f.write("%d\n" % pid)

    def unregister_pid(self, pid):
        with self.lock:
            self.pids.discard(pid)

    def kill_pod(self, ns, name, sig=signal.SIGKILL):
        """Fault injection: deliver sig to every container of the pod (the kubelet restarts them)."""
        with self.lock:
            w = self.workers.get((ns, name))
        if w is None:
            return False
        for c in w.containers:
            w._signal(c, sig)
        w.wake.set()
        return True

    def stop(self):
        self.stopping = True
        with self.lock:
            workers = list(self.workers.values())
        for w in workers:
            w.stopping = True
            for c in w.containers:
                w._signal(c, signal.SIGTERM)
            w.wake.set()
        deadline = time.monotonic() + 3
        for w in workers:
            w.join(max(0.1, deadline - time.monotonic()))
        with self.lock:
            left = list(self.pids)
        for pid in left:
            _kill_group(pid)
