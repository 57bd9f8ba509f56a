"""hfk8s: holdfast in Kubernetes mode beside a test cluster, for integration tests (standard
library only).

    hf = HoldfastK8s(sim, workdir, namespace="demo")
    hf.start()                    # waits for /readyz on the admin address
    hf.ip, hf.port_range          # where resolver ports are bound (--pod-ip == --bind-address)
    hf.logs(); hf.log_lines(msg); hf.wait_log(msg); hf.metrics_text()
    hf.stop()                     # SIGTERM (again, then SIGKILL); idempotent

One process per test: `--namespace` keeps it to the test's namespace (a namespace-scoped run), an
address of its own and a random resolver port range keep its listeners apart from anything else,
`--shared-port 0`, `--polling-interval 1s`, `--leader-elect=false` unless
leader_elect=True (then the Lease is `holdfast-leader` in --resolver-namespace, else "default").
The binary is $HOLDFAST_BIN, else <repo>/build/holdfast.

The test cluster (tests/hftest/realcluster.py) says where holdfast runs: its address comes from
`sim.fresh_ip()` (one on the node's bridge, which pods and kube-proxy reach and the API server
accepts in an EndpointSlice) and its argv is prefixed with `sim.exec_prefix` (nsenter into the
cluster's network namespace).
"""
import os
import random
import signal
import subprocess
import time

from .holdfast import HoldfastProcess, child_env, holdfast_bin
from .net import free_port


class HoldfastError(AssertionError):
    pass


class HoldfastK8s(HoldfastProcess):
    def __init__(self, sim, workdir, namespace=None, ip=None, polling="1s", workers=2,
                 log_level="debug", extra_args=(), env=None, pod_name="holdfast-test", leader_elect=False):
        self.sim = sim
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.namespace = namespace
        self.pod_name = pod_name
        self.leader_elect = leader_elect
        self.ip = ip or sim.fresh_ip()
        base = random.randrange(30000, 59000, 50)
        self.port_range = (base, base + 49)
        self.polling = polling
        self.workers = workers
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.proc = None
        self.admin = None
        self.stderr_path = os.path.join(self.workdir, "holdfast.stderr")
        self._stderr = None

    def argv(self):
        a = [holdfast_bin(), "run", "--kubeconfig", self.sim.kubeconfig,
             "--pod-ip", self.ip, "--bind-address", self.ip, "--pod-name", self.pod_name,
             "--proxy-port-range", "%d-%d" % self.port_range, "--shared-port", "0",
             "--polling-interval", self.polling,
             "--leader-elect=%s" % ("true" if self.leader_elect else "false"),
             "--admin-listen", "%s:%d" % self.admin, "--workers", str(self.workers),
             "--log-level", self.log_level]
        if self.namespace:
            a += ["--namespace", self.namespace]
        return a + self.extra_args

    def start(self, timeout=20):
        self.admin = (self.ip, free_port(self.ip))
        self._stderr = open(self.stderr_path, "ab")
        env = child_env()
        for k in ("KUBECONFIG", "POD_IP", "POD_NAME", "POD_NAMESPACE", "HOLDFAST_NAMESPACE"):
            env.pop(k, None)
        env.update(self.extra_env)
        self.proc = subprocess.Popen(list(self.sim.exec_prefix) + self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self._stderr, env=env, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise HoldfastError("holdfast not ready after %ss:\n%s" % (timeout, self.stderr_text()[-5000:]))
            time.sleep(0.05)
        return self

    # ---- admin endpoints

    def ready(self):
        if self.proc.poll() is not None:
            raise HoldfastError("holdfast exited with %s:\n%s" % (self.proc.returncode, self.stderr_text()[-5000:]))
        try:
            return self.admin_get("/readyz", timeout=1)[0] == 200
        except OSError:
            return False

    def kill(self):
        """SIGKILL: a replica that dies without handing its Lease back."""
        if self.alive():
            self.proc.kill()
            self.proc.wait(5)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # ---- logs

    def wait_log(self, msg, timeout=20, **fields):
        deadline = time.monotonic() + timeout
        while True:
            got = self.log_lines(msg, **fields)
            if got:
                return got
            if time.monotonic() > deadline:
                raise HoldfastError("no log line %r %s within %ss" % (msg, fields, timeout))
            time.sleep(0.1)

    # ---- life

    def stop(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)  # a second signal: stop now
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        if self._stderr:
            self._stderr.close()
            self._stderr = None
        return self.proc.returncode
