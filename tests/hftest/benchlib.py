"""What the holdfast benchmarks share (bench/relay, bench/hold, bench/idle); /proc readings are
hftest.procfs's.

Every process a benchmark starts goes through Procs.start(): it runs in its own session, and
Procs.stop_all() (registered with atexit and on SIGINT/SIGTERM/SIGHUP) kills exactly those
process groups, nothing else. All traffic stays on 127.0.0.0/8.
"""

import atexit
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from . import REPO
from .net import recv_all


def die(msg):
    print(f"{os.path.basename(sys.argv[0])}: {msg}", file=sys.stderr)
    sys.exit(2)


def require_tools(tools):
    """tools: {name: how to get it}. Exits with one clear message listing every missing tool."""
    missing = [f"  {t}: {hint}" for t, hint in tools.items() if shutil.which(t) is None
               and not os.path.exists(t)]
    if missing:
        die("missing prerequisites:\n" + "\n".join(missing) +
            "\n(scripts/setup installs nginx-light, haproxy and wrk)")


def find_holdfast(arg):
    cand = arg or os.environ.get("HOLDFAST") or os.path.join(REPO, "build", "holdfast")
    if not (os.path.isfile(cand) and os.access(cand, os.X_OK)):
        die(f"holdfast binary not found at {cand}; build a release copy, e.g.\n"
            f"  meson setup /tmp/hf-bench/build -Dtests=false --buildtype=release "
            f"-Db_ndebug=true && ninja -C /tmp/hf-bench/build\n"
            f"and pass --holdfast /tmp/hf-bench/build/holdfast (or set HOLDFAST)")
    return os.path.abspath(cand)


class Procs:
    def __init__(self):
        self.procs = []
        self.stopped = False
        atexit.register(self.stop_all)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame):
        self.stop_all()
        sys.exit(128 + signum)

    def start(self, argv, cpus=None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
              env=None):
        if cpus is not None:
            argv = ["taskset", "-c", cpus] + list(argv)
        p = subprocess.Popen(argv, stdout=stdout, stderr=stderr, start_new_session=True,
                             env=env)
        self.procs.append(p)
        return p

    def stop(self, p, timeout=5.0):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        else:
            # the leader is gone; make sure nothing of its group survives (nginx workers)
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(reversed(self.procs)):
            try:
                self.stop(p, timeout=3.0)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass


def wait_tcp(host, port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def http_get(host, port, path="/", timeout=1.0):
    """Tiny HTTP/1.0 GET; returns (status, body) or (None, error string)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            data = recv_all(s)
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body
    except (OSError, ValueError, IndexError) as e:
        return None, str(e)


def wait_http_ok(host, port, path="/", body=None, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st, b = http_get(host, port, path)
        if st == 200 and (body is None or b == body):
            return True
        time.sleep(0.05)
    return False


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def tmpdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, d, True)
    return d


def nginx_upstream_conf(workdir, listen, body, worker_processes=1, worker_connections=1024,
                        backlog=None, rlimit=None):
    """An nginx that answers every request with 200 and `body` (no disk I/O, no logs)."""
    bl = f" backlog={backlog}" if backlog else ""
    rl = f"worker_rlimit_nofile {rlimit};\n" if rlimit else ""
    conf = f"""worker_processes {worker_processes};
{rl}daemon off;
master_process on;
pid {workdir}/upstream.pid;
error_log {workdir}/upstream.err warn;
events {{ worker_connections {worker_connections}; multi_accept on; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {workdir}/ct; proxy_temp_path {workdir}/pt;
    fastcgi_temp_path {workdir}/ft; uwsgi_temp_path {workdir}/ut; scgi_temp_path {workdir}/st;
    server {{
        listen {listen}{bl};
        location / {{ default_type text/plain; return 200 "{body}"; }}
    }}
}}
"""
    path = os.path.join(workdir, "upstream.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path


def machine_info():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def ver(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=5)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "n/a"

    git = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip() or "?"
    return {
        "git": git,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": os.uname().release,
        "nginx": ver(["nginx", "-v"]),
        "haproxy": ver(["haproxy", "-v"]),
        "wrk": re.sub(r"\s*Copyright.*", "", ver(["wrk", "-v"])),
    }


def print_machine(info):
    print(f"date: {info['date']}; nproc: {info['nproc']}; cpu: {info['cpu']}; "
          f"kernel: {info['kernel']}; repo: {info['git']}")
    print(f"versions: {info['nginx']}; {info['haproxy']}; {info['wrk']}")
