"""Pod workers: one thread per pod UID, as the kubelet's pod workers, driving the pod through
sandbox (network namespace, volumes) -> init containers -> containers (image "pull" from the
image map, start, probes, restarts with back-off) -> termination (preStop, SIGTERM, grace period,
SIGKILL, sandbox removed, pod object deleted with grace period 0), and writing pods/status as the
kubelet writes it. The logic grew out of kubesim's kubelet (the stand-in the tests ran on
before; docs/test-cluster.md, "What kubesim was"), for the real API server and a real network.

Container "images" are entries of the image map; a container is a process group started by
podexec.py inside the pod's network namespace, with the pod's volumes mounted in a private
mount namespace. Its stdout and stderr go to STATE/pods/<ns>_<name>_<uid>/<container>-<n>.log,
n being its restartCount then (what `kubectl logs` and `kubectl logs --previous` read). Events
go to the API as the kubelet's do (events.py)."""
import hashlib
import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time

from . import probes
from .imagemap import command_argv, strip_tag
from .kubeapi import ApiError
from .volumes import Volumes, field_value

log = logging.getLogger("nodeagent.pods")

PODEXEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "podexec.py")
ERR_IMAGE_PULL_SHOWN = 1.0       # seconds ErrImagePull shows before ImagePullBackOff
POLL = 0.5                       # how often a running process is checked for exit (the kubelet's PLEG: 1 s)


def now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Backoff:
    """The kubelet's per-container back-off (flowcontrol.Backoff): no wait before the first
    restart, then initial, doubling up to cap; forgotten after 2*cap without a restart."""

    def __init__(self, initial, cap):
        self.initial, self.cap = initial, cap
        self.delay = None
        self.updated = None

    def wait(self, since, now):
        """Seconds still to wait, counted from since (when the container finished)."""
        if self.delay is None:
            return 0.0
        if now - self.updated > 2 * self.cap:
            self.delay = None
            return 0.0
        return max(0.0, since + self.delay - now)

    def next(self, now):
        self.delay = self.initial if self.delay is None else min(self.delay * 2, self.cap)
        self.updated = now


def parse_quantity(q):
    """A Kubernetes quantity as a float (cores for CPU, bytes for memory)."""
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(q))
    if not m:
        raise ValueError("bad quantity %r" % q)
    mult = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 1024, "Mi": 1024 ** 2,
            "Gi": 1024 ** 3, "Ti": 1024 ** 4}[m.group(2)]
    return float(m.group(1)) * mult


def service_env(svc):
    """The docker-link style variables the kubelet gives a container for one Service."""
    spec = svc.get("spec") or {}
    ip = spec.get("clusterIP")
    if not ip or ip == "None" or not spec.get("ports"):
        return {}
    name = svc["metadata"]["name"].upper().replace("-", "_")
    ports = spec["ports"]
    env = {name + "_SERVICE_HOST": ip, name + "_SERVICE_PORT": str(ports[0]["port"])}
    for p in ports:
        if p.get("name"):
            env["%s_SERVICE_PORT_%s" % (name, p["name"].upper().replace("-", "_"))] = str(p["port"])
    first = ports[0]
    env[name + "_PORT"] = "%s://%s:%d" % (first.get("protocol", "TCP").lower(), ip, first["port"])
    for p in ports:
        proto = p.get("protocol", "TCP")
        pre = "%s_PORT_%d_%s" % (name, p["port"], proto)
        env[pre] = "%s://%s:%d" % (proto.lower(), ip, p["port"])
        env[pre + "_PROTO"] = proto.lower()
        env[pre + "_PORT"] = str(p["port"])
        env[pre + "_ADDR"] = ip
    return env


def expand_k8s(s, env):
    """$(VAR) from env, $$ an escaped $, as Kubernetes expands env values."""
    def rep(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", rep, s)


class CreateConfigError(Exception):
    """The container's configuration cannot be made yet (a missing ConfigMap key, say)."""


class Container:
    """Runtime state of one container of a pod."""

    def __init__(self, spec, init, backoff):
        self.spec = spec
        self.name = spec["name"]
        self.init = init
        self.proc = None
        self.log = None                # path of its log file
        self.state = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state = {}
        self.instances = 0             # processes started so far; restartCount = instances - 1
        self.started_mono = None
        self.started = False           # its startupProbe passed (or it has none)
        self.ready = False
        self.counts = {}               # probe kind -> [consecutive successes, consecutive failures]
        self.due = {}                  # probe kind -> monotonic time of its next run
        self.restart_at = None         # in CrashLoopBackOff until then
        self.backoff = Backoff(*backoff)
        self.pull_backoff = Backoff(*backoff)
        self.pull_failed_at = None
        self.pull_retry_at = None
        self.entry = None              # the image map entry, once "pulled"
        self.pulled_at = None
        self.done = False              # terminated and not to be restarted
        self.exit_code = None
        self.finished_mono = None      # when its last process was seen gone
        self.kill_deadline = None      # being stopped: SIGKILL at this monotonic time
        self.env = {}
        self.cid = ""

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def status(self):
        image = self.spec.get("image", "")
        st = {"name": self.name, "image": image, "imageID": "", "ready": self.ready,
              "restartCount": max(0, self.instances - 1), "started": self.proc is not None and self.started,
              "state": self.state, "lastState": self.last_state}
        if self.entry is not None:
            digest = hashlib.sha256(repr(sorted(self.entry.items())).encode()).hexdigest()
            st["imageID"] = "%s@sha256:%s" % (strip_tag(image), digest)
        if self.cid:
            st["containerID"] = self.cid
        return st


class PodWorker(threading.Thread):
    def __init__(self, agent, pod):
        md = pod["metadata"]
        super().__init__(name="pod-%s/%s" % (md["namespace"], md["name"]), daemon=True)
        self.a = agent
        self.pod = pod
        self.uid, self.ns, self.name = md["uid"], md["namespace"], md["name"]
        self.wake = threading.Event()
        self.gone = False              # the pod object is gone from the API (force-deleted)
        self.stopping = False          # the agent is shutting down
        self.dir = os.path.join(agent.state_dir, "pods", "%s_%s_%s" % (self.ns, self.name, self.uid))
        self.ip = self.slot = self.netns = None
        self.sandbox = False           # network ready (its own namespace, or the node's for hostNetwork)
        self.stop_mono = None          # when the agent asked this worker to stop
        self.gone_mono = None          # when the pod was seen gone from the API
        self.init_containers = []
        self.containers = []
        self.volumes = None
        self.conds = {}                # condition type -> (status, lastTransitionTime)
        self.written = None            # the status last written
        self.start_time = None
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ events from the agent

    def update(self, pod):
        self.pod = pod
        self.wake.set()

    def removed(self):
        self.gone_mono = self.gone_mono or time.monotonic()
        self.gone = True
        self.wake.set()

    def stop(self):
        self.stop_mono = time.monotonic()
        self.stopping = True
        self.wake.set()

    def _sleep(self, until):
        self.wake.wait(max(0.0, min(until - time.monotonic(), 5.0)))
        self.wake.clear()

    def _event(self, c, etype, reason, message):
        self.a.events.emit(self.pod, c, etype, reason, message)

    def log_path(self, name, previous=False):
        """The log file of container name's current (or previous) process, or None."""
        c = next((c for c in self.all_containers() if c.name == name), None)
        if c is None or c.instances == 0:
            return None
        n = c.instances - (2 if previous else 1)
        return os.path.join(self.dir, "%s-%d.log" % (name, n)) if n >= 0 else None

    def _leaving(self):
        md = self.pod["metadata"]
        return self.stopping or self.gone or bool(md.get("deletionTimestamp"))

    # ------------------------------------------------------------------ life

    def run(self):
        try:
            self._run()
        except Exception:
            log.exception("pod worker %s/%s failed", self.ns, self.name)
        finally:
            for c in self.all_containers():
                self._kill_now(c)
            self._teardown()
            self.a.worker_done(self)

    def all_containers(self):
        return self.init_containers + self.containers

    def _run(self):
        spec = self.pod.get("spec") or {}
        b = (self.a.backoff_initial, self.a.backoff_max)
        self.init_containers = [Container(c, True, b) for c in spec.get("initContainers") or []]
        self.containers = [Container(c, False, b) for c in spec.get("containers") or []]
        self.start_time = now_rfc3339()
        os.makedirs(self.dir, exist_ok=True)
        if not self._sandbox():
            return self._finish()
        while True:
            if self._leaving():
                return self._finish()
            now = time.monotonic()
            nxt = now + 5.0
            if self.volumes.refresh_at is not None and now >= self.volumes.refresh_at:
                self._refresh_tokens()
            if self.volumes.refresh_at is not None:
                nxt = min(nxt, self.volumes.refresh_at)
            pending_init = [c for c in self.init_containers if not (c.done and c.exit_code == 0)]
            if pending_init:
                c = pending_init[0]
                nxt = min(nxt, self._step(c, now))
                if c.done and c.exit_code != 0:          # restartPolicy Never: the pod has failed
                    self._write_status("Failed")
                    return self._wait_for_deletion()
            else:
                for c in self.containers:
                    nxt = min(nxt, self._step(c, now))
            phase = self._phase()
            self._write_status(phase)
            if phase in ("Succeeded", "Failed"):
                return self._wait_for_deletion()
            self._sleep(nxt)

    def _sandbox(self):
        """Network namespace and volumes; retried every 2 s until they work or the pod goes."""
        while not self._leaving():
            try:
                if not self.sandbox and (self.pod.get("spec") or {}).get("hostNetwork"):
                    self.ip, self.sandbox = self.a.node_ip, True      # the cluster namespace itself
                    self._write_status("Pending")
                if not self.sandbox:
                    self.ip, self.slot = self.a.networks.allocate("%s/%s" % (self.ns, self.name), self.uid,
                                                                  (self.pod.get("status") or {}).get("podIP"))
                    try:
                        self.netns = self.a.networks.create(self.ip, self.slot)
                        self.sandbox = True
                    except OSError:
                        self.a.networks.release(self.ip)
                        self.ip = self.slot = None
                        raise
                    self._write_status("Pending")
                self.volumes = Volumes(self.a.api, self.pod, os.path.join(self.dir, "volumes"),
                                       self.a.node_name, self.a.node_ip)
                self.volumes.materialize()
                return True
            except (OSError, ApiError, ValueError, KeyError) as e:
                log.warning("pod %s/%s: sandbox not ready, retrying in 2 s: %s", self.ns, self.name, e)
                for c in self.all_containers():
                    c.state = {"waiting": {"reason": "ContainerCreating", "message": str(e)[:300]}}
                self._write_status("Pending")
                self._sleep(time.monotonic() + 2.0)
        return False

    def _refresh_tokens(self):
        self.volumes.pod = self.pod
        try:
            self.volumes.materialize(only_tokens=True)
        except (OSError, ApiError) as e:
            log.warning("pod %s/%s: token refresh failed, retrying in 10 s: %s", self.ns, self.name, e)
            self.volumes.refresh_at = time.monotonic() + 10.0

    def _wait_for_deletion(self):
        """A pod in a terminal phase keeps its status until someone deletes it; its sandbox goes
        at once, as the kubelet's does (the pod IP is free again; status keeps it)."""
        for c in self.all_containers():
            if c.pid is not None:
                self._signal(c, signal.SIGTERM)
                c.kill_deadline = time.monotonic() + 2.0
        while any(c.pid is not None for c in self.all_containers()) and time.monotonic() < max(
                c.kill_deadline or 0 for c in self.all_containers()):
            self._sleep(time.monotonic() + 0.1)
        for c in self.all_containers():
            self._kill_now(c)
        self._teardown()
        while not self._leaving():
            self._sleep(time.monotonic() + 5.0)
        return self._finish()

    # ------------------------------------------------------------------ one container

    def _step(self, c, now):
        """Advances one container by what is due now; returns when it next needs a look."""
        if c.proc is not None:
            if c.proc.poll() is not None:
                self._exited(c, now)
                return now
            if c.kill_deadline is not None:
                if now >= c.kill_deadline:
                    self._signal(c, signal.SIGKILL)
                return min(c.kill_deadline, now + 0.1)
            return self._probe(c, now)
        if c.done:
            return math.inf
        if c.entry is None and not self._pull(c, now):
            return c.pull_retry_at if now >= c.pull_failed_at + ERR_IMAGE_PULL_SHOWN else c.pull_failed_at + ERR_IMAGE_PULL_SHOWN
        delay = (c.entry.get("startDelayMs") or 0) / 1000.0
        if now < c.pulled_at + delay:
            return c.pulled_at + delay
        if c.restart_at is not None:
            if now < c.restart_at:
                return c.restart_at
            c.restart_at = None
        self._start(c, now)
        return now + 0.05

    def _pull(self, c, now):
        """The image map stands for the registry: an image not in it fails to pull."""
        image = c.spec.get("image", "")
        if c.pull_retry_at is not None and now < c.pull_retry_at:
            if now >= c.pull_failed_at + ERR_IMAGE_PULL_SHOWN and \
                    (c.state.get("waiting") or {}).get("reason") != "ImagePullBackOff":
                c.state = {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "%s"' % image}}
                self._event(c, "Normal", "BackOff", 'Back-off pulling image "%s"' % image)
                self._event(c, "Warning", "Failed", "Error: ImagePullBackOff")
            return False
        entry = self.a.images.lookup(image)
        if entry is None:
            c.pull_failed_at = now
            c.pull_backoff.next(now)
            c.pull_retry_at = now + c.pull_backoff.delay
            msg = 'failed to pull and unpack image "%s": not found in the node agent\'s image map' % image
            c.state = {"waiting": {"reason": "ErrImagePull", "message": msg}}
            self._event(c, "Warning", "Failed", 'Failed to pull image "%s": %s' % (image, msg))
            self._event(c, "Warning", "Failed", "Error: ErrImagePull")
            return False
        c.entry, c.pulled_at = entry, now
        c.pull_retry_at = None
        self._event(c, "Normal", "Pulled", 'Container image "%s" already present on machine' % image)
        return True

    def _start(self, c, now):
        try:
            c.env = self._env(c)
        except (CreateConfigError, ApiError, ValueError) as e:
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(e)[:300]}}
            c.restart_at = now + 2.0
            return
        argv = command_argv(c.entry, c.spec, c.env)
        if c.instances > 0:
            c.backoff.next(now)
        c.instances += 1
        c.log = os.path.join(self.dir, "%s-%d.log" % (c.name, c.instances - 1))
        stage = os.path.join(self.dir, "mnt", c.name)
        cmd = [sys.executable, PODEXEC, "--parent", str(os.getpid()), "--stage", stage,
               "--cwd", c.spec.get("workingDir") or self.dir]
        if self.netns:
            cmd += ["--netns", self.netns]
        for m in self.volumes.mounts(c.spec):
            cmd += ["--mount", m]
        logf = open(c.log, "ab")
        try:
            c.proc = subprocess.Popen(cmd + ["--"] + argv, env=c.env, stdin=subprocess.DEVNULL, stdout=logf,
                                      stderr=logf, start_new_session=True)
        except OSError as e:
            c.proc = None
            c.state = {"waiting": {"reason": "RunContainerError", "message": str(e)}}
            c.finished_mono = now
            c.restart_at = now + c.backoff.wait(now, now)
            return
        finally:
            logf.close()
        self.a.register_pid(c.proc.pid)
        c.cid = "hfc://" + hashlib.sha256(("%s/%s/%d" % (self.uid, c.name, c.instances)).encode()).hexdigest()
        c.started_mono = now
        c.state = {"running": {"startedAt": now_rfc3339()}}
        c.ready = False
        c.counts = {}
        c.kill_deadline = None
        c.started = not c.spec.get("startupProbe")
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            c.due[kind] = now + (c.spec.get(kind) or {}).get("initialDelaySeconds", 0)
        log.info("pod %s/%s: container %s started, pid %d, pod IP %s: %s", self.ns, self.name, c.name,
                 c.proc.pid, self.ip, argv)
        self._event(c, "Normal", "Created", "Created container: %s" % c.name)
        self._event(c, "Normal", "Started", "Started container %s" % c.name)

    def _exited(self, c, now):
        code = c.proc.returncode
        if code < 0:
            code = 128 - code                          # killed by signal -code, as a runtime reports it
        term = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                "startedAt": (c.state.get("running") or {}).get("startedAt"), "finishedAt": now_rfc3339(),
                "containerID": c.cid}
        self._kill_now(c)
        c.exit_code = code
        c.finished_mono = now
        c.ready = False
        c.kill_deadline = None
        policy = (self.pod.get("spec") or {}).get("restartPolicy", "Always")
        if c.init:
            restart = code != 0 and policy != "Never"
        else:
            restart = policy == "Always" or (policy == "OnFailure" and code != 0)
        restart = restart and not self._leaving()
        log.info("pod %s/%s: container %s exited %d%s", self.ns, self.name, c.name, code,
                 ", to be restarted" if restart else "")
        if not restart:
            c.state = {"terminated": term}
            c.done = True
            return
        c.last_state = {"terminated": term}
        wait = c.backoff.wait(now, now)
        if wait > 0:
            c.restart_at = now + wait
            c.state = {"waiting": {"reason": "CrashLoopBackOff",
                                   "message": "back-off %ds restarting failed container=%s pod=%s_%s(%s)"
                                              % (round(c.backoff.delay), c.name, self.name, self.ns, self.uid)}}
            self._event(c, "Warning", "BackOff", "Back-off restarting failed container %s in pod %s_%s(%s)"
                        % (c.name, self.name, self.ns, self.uid))
        else:
            c.restart_at = None
            c.state = {"waiting": {"reason": "ContainerCreating"}}

    def _probe(self, c, now):
        """Runs the probes that are due; returns when the next one is."""
        nxt = now + POLL
        sp = c.spec.get("startupProbe")
        if not c.started:
            if now >= c.due["startupProbe"]:
                ok = self._run_probe(c, "startupProbe", sp, now)
                if ok:
                    c.started = True
                elif c.counts["startupProbe"][1] >= sp.get("failureThreshold", 3):
                    self._kill(c, sp, "Startup probe failed")
                    return now + 0.05
            if not c.started:
                return min(nxt, c.due["startupProbe"])
        rp = c.spec.get("readinessProbe")
        if rp is None:
            c.ready = True
        elif now >= c.due["readinessProbe"]:
            ok = self._run_probe(c, "readinessProbe", rp, now)
            succ, fail = c.counts["readinessProbe"]
            if ok and succ >= rp.get("successThreshold", 1):
                c.ready = True
            elif not ok and (fail >= rp.get("failureThreshold", 3) or not c.ready):
                c.ready = False
        if rp is not None:
            nxt = min(nxt, c.due["readinessProbe"])
        lp = c.spec.get("livenessProbe")
        if lp is not None:
            if now >= c.due["livenessProbe"]:
                self._run_probe(c, "livenessProbe", lp, now)
                if c.counts["livenessProbe"][1] >= lp.get("failureThreshold", 3):
                    self._kill(c, lp, "Liveness probe failed")
                    return now + 0.05
            nxt = min(nxt, c.due["livenessProbe"])
        return nxt

    def _run_probe(self, c, kind, probe, now):
        ok, msg = probes.run(probe, c.spec, self.ip, c.pid, c.env, probe.get("timeoutSeconds", 1))
        counts = c.counts.setdefault(kind, [0, 0])
        if ok:
            counts[0], counts[1] = counts[0] + 1, 0
        else:
            counts[0], counts[1] = 0, counts[1] + 1
            log.info("pod %s/%s: container %s: %s failed (%d): %s", self.ns, self.name, c.name, kind, counts[1], msg)
            self._event(c, "Warning", "Unhealthy", "%s probe failed: %s" % (kind[:-5].capitalize(), msg))
        c.due[kind] = time.monotonic() + probe.get("periodSeconds", 10)
        return ok

    # ------------------------------------------------------------------ stopping containers

    def _signal(self, c, sig):
        if c.proc is not None:
            try:
                os.killpg(c.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def kill(self, sig):
        """Fault injection (the node agent's POST /faults/killPod): sig to the process group of
        every running container of the pod, as kubesim's kill_pod. The restart follows from
        restartPolicy when the worker sees the process gone, as for any exit. Returns
        [(container, pid)] of the processes signalled."""
        hit = []
        for c in list(self.containers):
            proc = c.proc
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                continue
            hit.append((c.name, proc.pid))
        if hit:
            log.info("pod %s/%s: fault: %s sent to %s", self.ns, self.name, signal.Signals(sig).name,
                     ", ".join("%s (pid %d)" % h for h in hit))
        self.wake.set()
        return hit

    def _kill_now(self, c):
        """SIGKILL the container's whole process group and reap it."""
        if c.proc is None:
            return
        self._signal(c, signal.SIGKILL)
        try:
            c.proc.wait(5)
        except subprocess.TimeoutExpired:
            log.warning("pod %s/%s: container %s (pid %d) did not die on SIGKILL", self.ns, self.name, c.name,
                        c.proc.pid)
        self.a.unregister_pid(c.proc.pid)
        c.proc = None

    def _grace(self, probe=None):
        spec = self.pod.get("spec") or {}
        g = (probe or {}).get("terminationGracePeriodSeconds")
        return g if g is not None else spec.get("terminationGracePeriodSeconds", 30)

    def _kill(self, c, probe, why):
        """A failed liveness/startup probe: preStop, SIGTERM, SIGKILL after the grace period; the
        restart is then decided by restartPolicy when the process is seen gone."""
        log.info("pod %s/%s: container %s: %s, will be restarted", self.ns, self.name, c.name, why)
        self._event(c, "Normal", "Killing", "Container %s failed %s probe, will be restarted"
                    % (c.name, why.split()[0].lower()))
        deadline = time.monotonic() + self._grace(probe)
        self._pre_stop(c, deadline)
        self._signal(c, signal.SIGTERM)
        c.kill_deadline = deadline

    def _pre_stop(self, c, deadline):
        hook = ((c.spec.get("lifecycle") or {}).get("preStop"))
        if hook and c.pid is not None:
            ok, msg = probes.run(hook, c.spec, self.ip, c.pid, c.env, max(0.0, deadline - time.monotonic()))
            log.info("pod %s/%s: container %s: preStop %s %s", self.ns, self.name, c.name,
                     "done" if ok else "failed:", msg)

    def _stop_container(self, c, deadline):
        """Pod termination for one container: preStop within the grace period, then SIGTERM (the
        agent stopping skips preStop: a kubelet that stops runs nothing)."""
        if not self.stopping:
            self._event(c, "Normal", "Killing", "Stopping container %s" % c.name)
            self._pre_stop(c, deadline)
        self._signal(c, signal.SIGTERM)

    def _finish(self):
        """The pod is leaving: deleted (graceful), removed from the API (forced) or the agent
        stops. Stops its containers, then for a graceful deletion writes the terminal status,
        removes the sandbox and deletes the pod object with grace period 0."""
        running = [c for c in self.all_containers() if c.pid is not None]
        md = self.pod["metadata"]
        if self.stopping:
            grace = 2.0
        elif self.gone:
            grace = min(2.0, self._grace())
        else:
            g = md.get("deletionGracePeriodSeconds")
            grace = g if g is not None else self._grace()
        start = time.monotonic()
        deadline = start + grace
        stoppers = [threading.Thread(target=self._stop_container, args=(c, deadline), daemon=True) for c in running]
        for t in stoppers:
            t.start()
        while any(c.proc is not None and c.proc.poll() is None for c in running):
            g = self.pod["metadata"].get("deletionGracePeriodSeconds")
            if g is not None and not self.stopping:
                deadline = min(deadline, start + g)    # a shorter grace period was asked for
            if self.stopping:
                deadline = min(deadline, self.stop_mono + 2.0)   # the agent stops meanwhile
            if self.gone:
                deadline = min(deadline, self.gone_mono + 2.0)   # force-deleted meanwhile
            if time.monotonic() >= deadline:
                for c in running:
                    self._signal(c, signal.SIGKILL)
                break
            self.wake.wait(0.05)
            self.wake.clear()
        for t in stoppers:
            t.join(1.0)
        for c in running:
            if c.proc is not None:
                try:
                    c.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
                self._exited(c, time.monotonic())
        if self.stopping or self.gone:
            return
        phase = "Succeeded" if all(c.exit_code == 0 for c in self.containers) else "Failed"
        prev = (self.pod.get("status") or {}).get("phase")
        if prev in ("Succeeded", "Failed"):
            phase = prev
        self._write_status(phase)
        self._teardown()
        self._delete_from_api()

    def _delete_from_api(self, retry_s=0.5, give_up_s=300.0):
        """The pod's final delete, once its containers are gone. Like the kubelet's, it is tried
        again while the API server does not answer (an outage: the pod would stay Terminating
        forever) or answers 429/5xx, until the agent stops or give_up_s; a 404 or 409 means
        the pod is gone or replaced already."""
        deadline = time.monotonic() + give_up_s
        while True:
            try:
                self.a.api.delete("/api/v1/namespaces/%s/pods/%s" % (self.ns, self.name),
                                  {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                                   "preconditions": {"uid": self.uid}})
                log.info("pod %s/%s: deleted", self.ns, self.name)
                return
            except ApiError as e:
                if e.status in (404, 409):
                    return
                if e.status != 429 and e.status < 500:
                    log.warning("pod %s/%s: delete failed: %s", self.ns, self.name, e)
                    return
                err = e
            except OSError as e:
                err = e
            if time.monotonic() >= deadline or self.a.stop_event.wait(retry_s):
                log.warning("pod %s/%s: delete failed, given up: %s", self.ns, self.name, err)
                return
            log.warning("pod %s/%s: delete failed (tried again in %.1f s): %s", self.ns, self.name,
                        retry_s, err)

    def _teardown(self):
        with self.lock:
            if self.slot is not None:
                self.a.networks.delete(self.slot)
                self.a.networks.release(self.ip)
                self.slot = None

    # ------------------------------------------------------------------ environment

    def _env(self, c):
        spec, pod = c.spec, self.pod
        ports = [p.get("containerPort") for p in spec.get("ports") or []]
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
               "LANG": "C.UTF-8", "HOSTNAME": (pod.get("spec") or {}).get("hostname") or self.name}
        env.update({k: str(v) for k, v in (c.entry.get("env") or {}).items()})     # the "image's" ENV
        # The image map's conventions, as in kubesim: what a test's script needs to listen.
        env.update({"POD_IP": self.ip, "POD_NAME": self.name, "POD_NAMESPACE": self.ns})
        if ports and ports[0]:
            env["PORT"] = str(ports[0])
        env.update(self.a.service_env(self.ns, (pod.get("spec") or {}).get("enableServiceLinks", True)))
        for ef in spec.get("envFrom") or []:
            prefix = ef.get("prefix", "")
            for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
                if key in ef:
                    data = self._object_data(kind, ef[key]["name"], ef[key].get("optional", False))
                    env.update({prefix + k: v for k, v in data.items()})
        for e in spec.get("env") or []:
            if "valueFrom" not in e:
                env[e["name"]] = expand_k8s(str(e.get("value", "")), env)
                continue
            vf = e["valueFrom"]
            if "fieldRef" in vf:
                env[e["name"]] = field_value(dict(pod, status={"podIP": self.ip, "podIPs": [{"ip": self.ip}]}),
                                             vf["fieldRef"]["fieldPath"], self.a.node_name, self.a.node_ip)
            elif "resourceFieldRef" in vf:
                env[e["name"]] = self._resource(vf["resourceFieldRef"], spec)
            else:
                kind, key = ("configmaps", "configMapKeyRef") if "configMapKeyRef" in vf else ("secrets", "secretKeyRef")
                ref = vf[key]
                data = self._object_data(kind, ref["name"], ref.get("optional", False))
                if ref["key"] in data:
                    env[e["name"]] = data[ref["key"]]
                elif not ref.get("optional", False):
                    raise CreateConfigError('couldn\'t find key %s in %s %s/%s'
                                            % (ref["key"], kind[:-1].capitalize(), self.ns, ref["name"]))
        return env

    def _object_data(self, kind, name, optional):
        try:
            obj = self.a.api.get("/api/v1/namespaces/%s/%s/%s" % (self.ns, kind, name))
        except ApiError as e:
            if e.status == 404:
                if optional:
                    return {}
                raise CreateConfigError('%s "%s" not found' % ("configmap" if kind == "configmaps" else "secret", name))
            raise
        data = obj.get("data") or {}
        if kind == "secrets":
            import base64
            return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
        return dict(data)

    def _resource(self, ref, spec):
        res = ref["resource"]
        kind, what = res.split(".", 1)
        value = ((spec.get("resources") or {}).get(kind) or {}).get(what)
        if value is None and kind == "limits":
            value = self.a.allocatable.get(what)
        if value is None:
            value = "0"
        divisor = parse_quantity(ref.get("divisor") or "1")
        return str(int(math.ceil(parse_quantity(value) / divisor)))

    # ------------------------------------------------------------------ status

    def _phase(self):
        cs = self.containers
        if not cs:
            return "Pending"
        if all(c.done for c in cs):
            return "Succeeded" if all(c.exit_code == 0 for c in cs) else "Failed"
        if all(c.instances > 0 for c in cs):
            return "Running"
        return "Pending"

    def _cond(self, ctype, status, reason=None, message=None):
        prev = self.conds.get(ctype)
        if prev is None or prev[0] != status:
            self.conds[ctype] = (status, now_rfc3339())
        c = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": self.conds[ctype][1]}
        if reason:
            c["reason"] = reason
        if message:
            c["message"] = message
        return c

    def _write_status(self, phase):
        cur = self.pod.get("status") or {}
        spec = self.pod.get("spec") or {}
        inited = all(c.done and c.exit_code == 0 for c in self.init_containers)
        ready = bool(self.containers) and all(c.ready for c in self.containers)
        conds = [self._cond("PodReadyToStartContainers", "True" if self.sandbox else "False")]
        if inited:
            conds.append(self._cond("Initialized", "True"))
        else:
            names = [c.name for c in self.init_containers if not (c.done and c.exit_code == 0)]
            conds.append(self._cond("Initialized", "False", "ContainersNotInitialized",
                                    "containers with incomplete status: [%s]" % " ".join(names)))
        if ready:
            conds.append(self._cond("ContainersReady", "True"))
        else:
            names = " ".join(c.name for c in self.containers if not c.ready)
            conds.append(self._cond("ContainersReady", "False", "ContainersNotReady",
                                    "containers with unready status: [%s]" % names))
        gates = [g["conditionType"] for g in spec.get("readinessGates") or []]
        others = {c["type"]: c for c in cur.get("conditions") or []}
        unready_gates = [g for g in gates if (others.get(g) or {}).get("status") != "True"]
        if not ready:
            conds.append(self._cond("Ready", "False", "ContainersNotReady", conds[-1].get("message")))
        elif unready_gates:
            conds.append(self._cond("Ready", "False", "ReadinessGatesNotReady",
                                    "corresponding condition of pod readiness gate \"%s\" does not exist."
                                    % unready_gates[0]))
        else:
            conds.append(self._cond("Ready", "True"))
        mine = {c["type"] for c in conds}
        conds += [c for t, c in others.items() if t not in mine]      # PodScheduled, readiness gates, ...
        st = {"phase": phase, "conditions": conds, "hostIP": self.a.node_ip, "hostIPs": [{"ip": self.a.node_ip}],
              "startTime": self.start_time, "containerStatuses": [c.status() for c in self.containers]}
        gen = self.pod["metadata"].get("generation")
        if gen is not None:                  # PodObservedGenerationTracking: the kubelet reports what it saw
            st["observedGeneration"] = gen
            for c in conds:
                if c["type"] != "PodScheduled":
                    c["observedGeneration"] = gen
        if self.ip:
            st["podIP"] = self.ip
            st["podIPs"] = [{"ip": self.ip}]
        if self.init_containers:
            st["initContainerStatuses"] = [c.status() for c in self.init_containers]
        if st == self.written or self.gone:
            return
        try:
            self.a.api.patch("/api/v1/namespaces/%s/pods/%s/status" % (self.ns, self.name),
                             {"metadata": {"uid": self.uid}, "status": st})
            self.written = st
        except ApiError as e:
            if e.status == 404:
                self.removed()
            else:
                log.warning("pod %s/%s: status write failed (next loop tries again): %s", self.ns, self.name, e)
        except OSError as e:
            log.warning("pod %s/%s: status write failed (next loop tries again): %s", self.ns, self.name, e)
