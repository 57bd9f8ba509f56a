"""holdfast: the holdfast binary as a process under test.

HoldfastProcess is what every way of running it shares: the binary ($HOLDFAST_BIN, else
<repo>/build/holdfast), the JSON log lines it writes to stderr (a file), its admin endpoint
(/readyz, /metrics) and the sanitizer report a debug build may leave. Holdfast runs it in
standalone mode for the integration tests (uses pytest):

    hf = Holdfast(tmp_path, Addrs()).start(config)   # writes the config, waits for /readyz
    hf.log_lines(msg, **fields); hf.wait_log(msg); hf.metric(name, **labels)
    hf.stop()                                        # SIGTERM (again, then SIGKILL)

hfk8s.HoldfastK8s runs it in Kubernetes mode beside the test cluster.
"""
import json
import os
import signal
import subprocess
import urllib.request

from . import REPO, procfs, promtext
from .kubeclient import wait_for
from .net import hp

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def holdfast_bin():
    return os.environ.get("HOLDFAST_BIN", os.path.join(REPO, "build", "holdfast"))


def child_env():
    """The environment a holdfast under test gets: no proxy variables (libcurl honours them),
    leak detection and UBSan stack traces on unless the caller set them."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    return env


def json_lines(lines):
    """The lines that are JSON objects, parsed (holdfast's log lines); any other line skipped."""
    out = []
    for line in lines:
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def sanitizer_report(text):
    """The first sanitizer report in text (with 200 characters before it), or None."""
    for marker in SANITIZER_MARKERS:
        i = text.find(marker)
        if i >= 0:
            return text[max(0, i - 200):i + 6000]
    return None


class HoldfastProcess:
    """A running holdfast: self.proc (Popen), self.admin ((host, port)) and self.stderr_path (the
    file its stderr goes to) are set by the subclass."""

    proc = None
    admin = None
    stderr_path = None

    @property
    def pid(self):
        return self.proc.pid

    def admin_get(self, path, timeout=5):
        with _opener.open(f"http://{hp(self.admin)}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()

    def metrics_text(self):
        return self.admin_get("/metrics")[1]

    def metric(self, name, **labels):
        """Sum of the samples of `name` whose labels include `labels` (0.0 when none)."""
        return promtext.value(self.metrics_text(), name, **labels) or 0.0

    def stderr_text(self):
        if not self.stderr_path:
            return ""
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def logs(self):
        """holdfast's log lines that are JSON objects, parsed."""
        return json_lines(self.stderr_text().splitlines())

    def log_lines(self, msg, **fields):
        return [entry for entry in self.logs() if entry.get("msg") == msg and
                all(entry.get(k) == v for k, v in fields.items())]

    def vm_hwm_kb(self):
        return procfs.status_value(self.pid, "VmHWM") or 0

    def sanitizer_report(self):
        return sanitizer_report(self.stderr_text())


class Holdfast(HoldfastProcess):
    """holdfast in standalone mode (`run --config`), for the integration tests: failures are
    pytest failures."""

    def __init__(self, tmp_path, addrs):
        self.tmp = tmp_path
        self.addrs = addrs
        self.config_path = None
        self._stderr = None
        self.exit_code = None

    def start(self, config, workers=2, drain_timeout=3, log_level="debug", wait_ready=True, extra_args=()):
        self.admin = self.addrs.admin()
        self.config_path = self.tmp / "holdfast.json"
        self.config_path.write_text(json.dumps(config, indent=2))
        self.stderr_path = self.tmp / "holdfast.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [holdfast_bin(), "run", "--config", str(self.config_path), "--admin-listen",
             hp(self.admin), "--workers", str(workers), "--log-level", log_level,
             "--drain-timeout", str(drain_timeout)] + list(extra_args),
            stdout=subprocess.DEVNULL, stderr=self._stderr, env=child_env(), cwd=str(self.tmp))
        if wait_ready:
            wait_for(self.ready, timeout=20, interval=0.02, what="holdfast /readyz")
        return self

    def ready(self):
        import pytest
        if self.proc.poll() is not None:
            pytest.fail(f"holdfast exited with {self.proc.returncode}:\n{self.stderr_text()}")
        try:
            return self.admin_get("/readyz", timeout=1)[0] == 200
        except OSError:
            return False

    def wake_output(self):
        return [entry.get("line", "") for entry in self.log_lines("wake command output")]

    def wait_log(self, msg, count=1, timeout=20, **fields):
        return wait_for(lambda: len(self.log_lines(msg, **fields)) >= count and
                        self.log_lines(msg, **fields), timeout=timeout, interval=0.02,
                        what=f"log {msg!r}")

    def wake_pids(self):
        return [entry["pid"] for entry in self.log_lines("wake command started") if "pid" in entry]

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        try:
            self.exit_code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.exit_code

    def stop(self):
        if not self.proc:
            return
        wake_pids = self.wake_pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait_exit(1) is None:
                self.proc.send_signal(signal.SIGTERM)  # second signal: stop now
                if self.wait_exit(20) is None:
                    self.proc.kill()
                    self.proc.wait()
        self.exit_code = self.proc.returncode
        for pid in wake_pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        self._stderr.close()
