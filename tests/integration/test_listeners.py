"""Listening sockets: one per address, shared by every worker (docs/data-plane.md), so that
10,000 resolver ports cost 10,000 descriptors whatever `--workers` says."""
import os
import socket
import threading

from hftest.http1 import Reader, connect, get_request
from hftest.kubeclient import wait_for
from hftest.net import hp
from hflib import service


def listening_sockets(pid):
    """(host, port) of every TCP socket in LISTEN state that the process holds, one entry per
    socket (an address listed twice is two sockets)."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    out = []
    with open("/proc/%d/net/tcp" % pid) as f:
        next(f)
        for line in f:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != "0A" or inode not in inodes:
                continue
            hexip, hexport = local.split(":")
            ip = socket.inet_ntoa(bytes.fromhex(hexip)[::-1])
            out.append((ip, int(hexport, 16)))
    return out


def test_one_listening_socket_per_address_whatever_the_worker_count(holdfast, addrs, backend_cmd):
    """Four workers, three services with two addresses each: six service sockets (plus the
    admin listener), not twenty-four; and concurrent connections on every address, accepted by
    workers racing on the same socket, are all served by the right backend."""
    svcs, listens = [], []
    for i in range(3):
        a, b, back = addrs.listener(), addrs.listener(), addrs.backend()
        listens += [a, b]
        svcs.append(service("s%d" % i, [a, b], [back], backend_cmd("http", back, "b%d" % i)))
    hf = holdfast.start({"services": svcs}, workers=4)
    socks = listening_sockets(hf.pid)
    for a in listens:
        assert socks.count(a) == 1, "%s: %d listening sockets (%r)" % (hp(a), socks.count(a), socks)
    assert len(socks) == len(listens) + 1, socks  # + the admin listener
    # 60 concurrent connections spread over the six addresses: every one answered
    answers, errors = [], []

    def client(k):
        a = listens[k % len(listens)]
        try:
            s = connect(a)
            try:
                s.sendall(get_request("/c/%d" % k))
                r = Reader(s).read_response()
                answers.append((k, r.status, r.json()["backend"]))
            finally:
                s.close()
        except Exception as e:  # noqa: BLE001 - every error is a lost request
            errors.append((k, repr(e)))
    ts = [threading.Thread(target=client, args=(k,)) for k in range(60)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors[:5]
    assert len(answers) == 60
    for k, st, backend in answers:
        assert st == 200 and backend == "b%d" % ((k % len(listens)) // 2), (k, st, backend)


def test_sigterm_closes_the_shared_listening_sockets(holdfast, addrs):
    """Draining lets go of the shared sockets: new connections are refused at once (not left
    in a backlog nobody accepts from) while the process still finishes a held request."""
    a, nowhere = addrs.listener(), addrs.backend()  # nothing ever listens on `nowhere`
    hf = holdfast.start({"services": [service("s", [a], [nowhere])]}, workers=3, drain_timeout=8)
    held = connect(a)
    held.sendall(get_request("/held"))  # held: no backend will be ready
    wait_for(lambda: hf.metric("holdfast_held_connections", service="s") == 1, what="one held")
    hf.signal(15)
    wait_for(lambda: a not in listening_sockets(hf.pid), timeout=5, what="the socket closed")

    def refused():
        try:
            connect(a, timeout=1).close()
            return False
        except OSError:
            return True
    wait_for(refused, timeout=5, what="connections refused while draining")
    assert hf.proc.poll() is None, "holdfast exited instead of draining the held request"
    held.close()


def test_shutdown_delay_keeps_accepting_while_not_ready(holdfast, addrs, backend_cmd):
    """--shutdown-delay: after SIGTERM /readyz fails at once (so the replica leaves its
    Service's endpoints), but connections that still arrive during the delay (kube-proxy has
    not caught up yet) are accepted and answered; only then are the listeners closed and the
    process drains and exits."""
    a, back = addrs.listener(), addrs.backend()
    hf = holdfast.start({"services": [service("s", [a], [back], backend_cmd("http", back, "b"))]},
                        extra_args=("--shutdown-delay", "3"))
    s = connect(a)
    s.sendall(get_request("/before"))
    assert Reader(s).read_response().status == 200
    s.close()
    hf.signal(15)
    wait_for(lambda: not hf.ready(), timeout=5, what="/readyz failing after SIGTERM")
    answered = 0
    for i in range(5):  # still inside the 3 s delay: every new connection is served
        c = connect(a, timeout=5)
        c.sendall(get_request("/during-%d" % i))
        r = Reader(c).read_response()
        c.close()
        assert r.status == 200 and r.json()["backend"] == "b", r
        answered += 1
    assert answered == 5 and hf.proc.poll() is None
    hf.wait_log("draining: listeners closed, finishing held and relayed connections", timeout=10)
    assert hf.wait_exit(10) == 0
