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

from hftest import procfs, promtext
from hftest.holdfast import json_lines
from hftest.kubeclient import wait_for
from hftest.net import hp

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("HOLDFAST_BIN", str(REPO / "build" / "holdfast"))
LISTEN = ("127.0.3.201", 18301)
ADMIN = ("127.0.0.1", 18302)
FD_LIMIT = 48
PROBE = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def metric(name, **labels):
    try:
        with urllib.request.urlopen(f"http://{ADMIN[0]}:{ADMIN[1]}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    return promtext.value(text, name, **labels)


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
            wait_for(lambda: metric("holdfast_open_connections") is not None, timeout=10, what="admin")
            # More clients than descriptors: the kernel queues the rest in the backlog.
            for _ in range(FD_LIMIT + 20):
                s = socket.create_connection(LISTEN, timeout=5)
                s.sendall(PROBE)
                clients.append(s)
            # The admin endpoint needs a descriptor too, so the log tells first.
            wait_for(lambda: "out of file descriptors" in log_path.read_text(), timeout=10,
                     what="fd exhaustion to be logged")
            served = [s for s in clients if answered(s)]
            waiting = [s for s in clients if s not in served]
            assert served and waiting, "some served, the rest waiting in the backlog"

            # Exhausted for a while: the process stays alive and does not spin.
            cpu_before = procfs.cpu_seconds([proc.pid])
            time.sleep(1.5)
            assert proc.poll() is None
            assert procfs.cpu_seconds([proc.pid]) - cpu_before < 0.5, "accept must not busy-loop"

            # Free descriptors: every waiting client is accepted and answered.
            for s in served:
                s.close()
            wait_for(lambda: all(answered(s) for s in waiting), timeout=15,
                     what="waiting clients to be served")
            for s in waiting:
                s.close()
            wait_for(lambda: (metric("holdfast_accept_fd_exhausted_total", listener="data") or 0)
                     >= 1, timeout=10,
                     what="fd exhaustion to be counted")
        finally:
            for s in clients:
                s.close()
            proc.terminate()
            proc.wait(timeout=10)
        lines = json_lines(log_path.read_text().splitlines())
        # The data worker's lines; the admin listener has its own episodes, asserted below.
        worker = [l for l in lines if "worker" in l]
        paused = [l for l in worker if l["msg"].startswith("out of file descriptors")]
        assert len(paused) >= 1
        resumed = [l for l in worker if l["msg"].startswith("accepting again")]
        assert len(resumed) >= 1
        # Logged once per episode: never twice without a recovery in between, for each source.
        episodes = ["out" if l in paused else "acc" for l in worker if l in paused or l in resumed]
        assert all(a != b for a, b in zip(episodes, episodes[1:])), episodes
        admin = [l for l in lines if "listener" in l and ("out of file descriptors" in l["msg"]
                                                          or "accepting again" in l["msg"])]
        admin_episodes = ["out" if l["msg"].startswith("out") else "acc" for l in admin]
        assert all(a != b for a, b in zip(admin_episodes, admin_episodes[1:])), admin_episodes
        assert proc.returncode == 0


# ---- the admin listener (issue 9) ----

def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def exhaustion_lines(path):
    """stderr lines about running out of descriptors: holdfast's own JSON ones and any raw ones
    an accept loop prints. Reads at most 4 MB: a spinning loop writes tens of MB a second."""
    with open(path, "rb") as f:
        text = f.read(4 << 20).decode(errors="replace")
    return [l for l in text.splitlines()
            if "Too many open files" in l or "out of file descriptors" in l]


def test_admin_out_of_descriptors_pauses_accept_logs_once_counts_and_recovers(holdfast, addrs):
    """The admin listener runs on the control thread's loop. When accept() fails for lack of
    descriptors it pauses (not an accept/log loop on that thread), logs one warning for the
    episode, counts it as holdfast_accept_fd_exhausted_total{listener="admin"}, and once
    descriptors free up /healthz answers again and the recovery is logged."""
    listen = addrs.listener()
    hf = holdfast.start({"services": [{"namespace": "default", "name": "fdadmin",
                                       "listen": [hp(listen)], "backends": [hp(addrs.backend())]}]},
                        workers=1, log_level="info")
    # A few descriptors to spare, then the admin listener's backlog holds the rest.
    spare = 4
    soft, hard = resource.prlimit(hf.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(hf.pid, resource.RLIMIT_NOFILE, (open_fds(hf.pid) + spare, hard))
    clients = []
    try:
        for _ in range(spare + 8):
            clients.append(socket.create_connection(hf.admin, timeout=5))
        wait_for(lambda: exhaustion_lines(hf.stderr_path), timeout=10, what="admin fd exhaustion logged")
        size_at_start = os.path.getsize(hf.stderr_path)
        # The episode goes on (connections keep waiting in the backlog): no accept loop.
        time.sleep(1.0)
        assert hf.proc.poll() is None
        grown = os.path.getsize(hf.stderr_path) - size_at_start
        assert grown < 16384, f"stderr grew by {grown} bytes during one episode"
        assert len(exhaustion_lines(hf.stderr_path)) == 1, exhaustion_lines(hf.stderr_path)[:5]
    finally:
        for s in clients:
            s.close()
    # Descriptors free up (the clients closed): the listener accepts again.
    def healthz():
        try:
            return hf.admin_get("/healthz", timeout=2)[0] == 200
        except OSError:
            return False
    wait_for(healthz, timeout=20, what="/healthz to answer again")
    paused = [l for l in hf.logs() if l.get("msg", "").startswith("out of file descriptors")]
    resumed = [l for l in hf.logs() if l.get("msg", "").startswith("admin listener accepting again")]
    assert paused and resumed
    assert all(l.get("listener") == hp(hf.admin) for l in paused), paused
    # Logged once per episode: never twice without a recovery in between (connections still in
    # the backlog when the clients closed may start a short episode or two more).
    episodes = [l["msg"][:3] for l in hf.logs() if l in paused or l in resumed]
    assert all(a != b for a, b in zip(episodes, episodes[1:])), episodes
    assert hf.metric("holdfast_accept_fd_exhausted_total", listener="admin") == len(paused)
    assert hf.metric("holdfast_accept_fd_exhausted_total", listener="data") == 0
    resource.prlimit(hf.pid, resource.RLIMIT_NOFILE, (soft, hard))
