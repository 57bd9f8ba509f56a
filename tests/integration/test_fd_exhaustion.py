"""Running out of file descriptors: accepting pauses (no crash, no busy loop), it is counted
and logged once, and connections waiting in the backlog are served once descriptors free up."""
import json
import os
import resource
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("HOLDFAST_BIN", str(REPO / "build" / "holdfast"))
LISTEN = ("127.0.3.201", 18301)
ADMIN = ("127.0.0.1", 18302)
FD_LIMIT = 48
PROBE = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def wait_for(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def metric(name):
    try:
        with urllib.request.urlopen(f"http://{ADMIN[0]}:{ADMIN[1]}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def answered(sock):
    """True when the probe answer arrived on sock (non-blocking look)."""
    sock.settimeout(0.01)
    try:
        data = sock.recv(4096, socket.MSG_PEEK)
    except (socket.timeout, BlockingIOError):
        return False
    return data.startswith(b"HTTP/1.1 200")


def test_out_of_descriptors_pauses_accept_counts_logs_once_and_recovers():
    cfg = {
        "services": [{
            "namespace": "default", "name": "fdtest",
            "listen": [f"{LISTEN[0]}:{LISTEN[1]}"],
            "backends": ["127.0.1.201:18399"],
            "probeResponse": [{"path": {"type": "Exact", "value": "/healthz"},
                               "response": {"status": 200, "body": "{}"}}],
        }]
    }
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "fd.json"
        cfg_path.write_text(json.dumps(cfg))
        log_path = Path(tmp) / "holdfast.log"
        limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [BIN, "run", "--config", str(cfg_path), "--workers", "1",
                 "--admin-listen", f"{ADMIN[0]}:{ADMIN[1]}"],
                stderr=log, preexec_fn=limit)
        clients = []
        try:
            wait_for(lambda: metric("holdfast_open_connections") is not None, what="admin")
            # More clients than descriptors: the kernel queues the rest in the backlog.
            for _ in range(FD_LIMIT + 20):
                s = socket.create_connection(LISTEN, timeout=5)
                s.sendall(PROBE)
                clients.append(s)
            # The admin endpoint needs a descriptor too, so the log tells first.
            wait_for(lambda: "out of file descriptors" in log_path.read_text(),
                     what="fd exhaustion to be logged")
            served = [s for s in clients if answered(s)]
            waiting = [s for s in clients if s not in served]
            assert served and waiting, "some served, the rest waiting in the backlog"

            # Exhausted for a while: the process stays alive and does not spin.
            cpu_before = cpu_seconds(proc.pid)
            time.sleep(1.5)
            assert proc.poll() is None
            assert cpu_seconds(proc.pid) - cpu_before < 0.5, "accept must not busy-loop"

            # Free descriptors: every waiting client is accepted and answered.
            for s in served:
                s.close()
            wait_for(lambda: all(answered(s) for s in waiting), timeout=15,
                     what="waiting clients to be served")
            for s in waiting:
                s.close()
            wait_for(lambda: (metric("holdfast_accept_fd_exhausted_total") or 0) >= 1,
                     what="fd exhaustion to be counted")
        finally:
            for s in clients:
                s.close()
            proc.terminate()
            proc.wait(timeout=10)
        lines = [json.loads(l) for l in log_path.read_text().splitlines() if l.startswith("{")]
        paused = [l for l in lines if l["msg"].startswith("out of file descriptors")]
        assert len(paused) >= 1
        resumed = [l for l in lines if l["msg"].startswith("accepting again")]
        assert len(resumed) >= 1
        # Logged once per episode: never twice without a recovery in between.
        episodes = [l["msg"][:3] for l in lines if l in paused or l in resumed]
        assert all(a != b for a, b in zip(episodes, episodes[1:])), episodes
        assert proc.returncode == 0
