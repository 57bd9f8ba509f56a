"""Test helper for kubesim: start it, talk to it, inject faults, wait for conditions.

    from simctl import KubeSim, wait_for
    with KubeSim(tmp_path, image_map=IMAGES) as sim:
        sim.kubectl("apply", "-f", "manifest.yaml")
        wait_for(lambda: sim.get("/apis/apps/v1/namespaces/default/deployments/web")
                 .get("status", {}).get("readyReplicas") == 2, what="2 ready")
        sim.outage(3)                      # API refuses connections for 3 s
        sim.compact()                      # next watch from an old RV gets 410

Only the Python standard library is needed (the kubernetes client is optional: `python_client`).
Kept, with the simulator, only for the soak's kubesim mode (tests/soak, through
tests/lib/testcluster.py) until the soak moves onto the real control plane: every test runs on
the real one (docs/test-cluster.md)."""
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))

from kubeclient import ApiError, RestVerbs, WaitTimeout, wait_for  # noqa: E402,F401
from kubeclient import decode as _decode  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
KUBESIM = os.path.join(HERE, "kubesim")
KUBECTL = os.environ.get("KUBECTL", "kubectl")


class KubeSim(RestVerbs):
    """One kubesim process. state_dir is created if needed; everything it writes goes there."""

    def __init__(self, state_dir, image_map=None, proxy_delay_ms=0, api_latency_ms=0, rules=None,
                 extra_args=(), listen="127.0.0.1:0"):
        self.state_dir = os.path.abspath(str(state_dir))
        self.args = ["--state-dir", self.state_dir, "--listen", listen,
                     "--proxy-delay-ms", str(proxy_delay_ms), "--api-latency-ms", str(api_latency_ms)]
        if image_map:
            if isinstance(image_map, dict):
                os.makedirs(self.state_dir, exist_ok=True)
                path = os.path.join(self.state_dir, "images.json")
                with open(path, "w") as f:
                    json.dump(image_map, f)
                image_map = path
            self.args += ["--image-map", str(image_map)]
        if rules:
            self.args += ["--rules", str(rules)]
        self.args += list(extra_args)
        self.proc = None
        self.info = None

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout=30):
        os.makedirs(self.state_dir, exist_ok=True)
        ready = os.path.join(self.state_dir, "ready")
        if os.path.exists(ready):
            os.unlink(ready)
        self._log = open(os.path.join(self.state_dir, "stdout.log"), "ab")
        self.proc = subprocess.Popen([KUBESIM] + self.args, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

        def is_ready():
            if self.proc.poll() is not None:
                raise RuntimeError("kubesim exited with %s; see %s/stdout.log" % (self.proc.returncode, self.state_dir))
            return os.path.exists(ready)
        deadline = time.monotonic() + timeout
        while not is_ready():
            if time.monotonic() > deadline:
                self.stop()
                raise WaitTimeout("kubesim not ready after %ss" % timeout)
            time.sleep(0.02)
        with open(ready) as f:
            self.info = json.load(f)
        with open(os.path.join(self.state_dir, "token")) as f:
            self.token = f.read().strip()
        self._ctx = ssl.create_default_context(cafile=self.info["ca"])
        return self

    def stop(self, timeout=15):
        """SIGTERM and wait. Returns the pids of pod processes still alive afterwards (killed)."""
        if self.proc is None:
            return []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        leftovers = self.leftover_processes()
        for pid in leftovers:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        self._log.close()
        self.proc = None
        return leftovers

    def leftover_processes(self):
        """Pids of live processes whose environment marks them as pods of this kubesim."""
        if not self.info:
            return []
        marker = ("KUBESIM_INSTANCE=%s-%d" % (os.path.basename(self.state_dir.rstrip("/")), self.info["pid"])).encode()
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/environ" % d, "rb") as f:
                    if marker in f.read().split(b"\0"):
                        out.append(int(d))
            except OSError:
                pass
        return out

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------ addresses

    @property
    def kubeconfig(self):
        return os.path.join(self.state_dir, "kubeconfig")

    @property
    def api_url(self):
        return self.info["api"]

    @property
    def control_url(self):
        return self.info["control"]

    @property
    def ca_file(self):
        return self.info["ca"]

    # ------------------------------------------------------------ REST

    def request(self, method, path, body=None, content_type="application/json", token=None, timeout=10,
                headers=None):
        """Returns (status, decoded JSON or text). Never raises for HTTP errors."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.api_url + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + (self.token if token is None else token))
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, context=self._ctx, timeout=timeout) as r:
                return r.status, _decode(r.read())
        except urllib.error.HTTPError as e:
            return e.code, _decode(e.read())


    # ------------------------------------------------------------ kubectl

    def kubectl_cmd(self, *args):
        return [KUBECTL, "--kubeconfig", self.kubeconfig, "--cache-dir", os.path.join(self.state_dir, "kubectl-cache")] \
            + list(args)

    def kubectl_env(self):
        env = dict(os.environ)
        env["HOME"] = self.state_dir
        env.pop("KUBECONFIG", None)
        return env

    def kubectl(self, *args, input=None, check=True, timeout=60):
        """Run kubectl against this cluster. Returns CompletedProcess with text stdout/stderr."""
        r = subprocess.run(self.kubectl_cmd(*args), input=input, capture_output=True, text=True,
                           timeout=timeout, env=self.kubectl_env())
        if check and r.returncode != 0:
            raise AssertionError("kubectl %s failed (%d): %s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def kubectl_popen(self, *args):
        return subprocess.Popen(self.kubectl_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.kubectl_env())

    def python_client(self):
        """A kubernetes.client.ApiClient for this cluster (needs python3-kubernetes)."""
        import kubernetes
        cfg = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=self.kubeconfig, client_configuration=cfg)
        return kubernetes.client.ApiClient(cfg)

    # ------------------------------------------------------------ faults

    def state(self):
        with urllib.request.urlopen(self.control_url + "/state", timeout=10) as r:
            return json.loads(r.read())

    def fault(self, fault_name, **body):
        req = urllib.request.Request(self.control_url + "/faults/" + fault_name, data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, _decode(e.read()))

    def outage(self, seconds, mode="refuse"):
        """API unreachable for `seconds`: "refuse" (connection refused) or "503"."""
        return self.fault("outage", seconds=seconds, mode=mode)

    def drop_watches(self):
        return self.fault("drop-watches")

    def compact(self):
        return self.fault("compact")["compactedResourceVersion"]

    def latency(self, ms, seconds=None):
        return self.fault("latency", ms=ms, seconds=seconds)

    def slow_write_answers(self, ms, seconds=None):
        """Answers to writes wait `ms` after the write is done and watchers were told (0 ends it)."""
        return self.fault("slow-write-answers", ms=ms, seconds=seconds)

    def kill_pod(self, namespace, name, signal="KILL"):
        return self.fault("kill-pod", namespace=namespace, name=name, signal=signal)

    def clear_faults(self):
        return self.fault("clear")

    # ------------------------------------------------------------ conditions

    def ready_endpoints(self, namespace, service):
        """Addresses with conditions.ready true in the Service's managed EndpointSlices."""
        sl = self.get("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices?labelSelector="
                      "kubernetes.io/service-name%%3D%s" % (namespace, service))
        return sorted(ep["addresses"][0] for s in sl["items"] for ep in s.get("endpoints") or []
                      if (ep.get("conditions") or {}).get("ready"))

    def wait_ready_replicas(self, namespace, name, n, kind="deployments", group="apps/v1", timeout=30):
        path = "/apis/%s/namespaces/%s/%s/%s" % (group, namespace, kind, name)
        return wait_for(lambda: (self.get(path).get("status") or {}).get("readyReplicas", 0) == n
                        and self.get(path)["status"].get("replicas", 0) == n,
                        timeout=timeout, what="%s %s/%s to have %d ready replicas" % (kind, namespace, name, n))

    def wait_service_endpoints(self, namespace, service, n, timeout=30):
        return wait_for(lambda: len(self.ready_endpoints(namespace, service)) == n, timeout=timeout,
                        what="Service %s/%s to have %d ready endpoints" % (namespace, service, n))

    def cluster_ip(self, namespace, service):
        return self.get("/api/v1/namespaces/%s/services/%s" % (namespace, service))["spec"]["clusterIP"]
