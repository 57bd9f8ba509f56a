"""Held connections released onto a backend that just became ready are paced (--pace-held,
resolver/pace.h): at most a window of them is outstanding (connecting or unanswered) at a
time, so a cold app's accept backlog is not overrun; every one is answered, in arrival order.
With --pace-held=false they are all released at once, as before."""
import socket
import threading

from hftest.http1 import Reader, connect, get_request
from hftest.kubeclient import wait_for
from hflib import service

N = 150  # held connections: more than the first window (64) and its growth (128)
WINDOW = 64  # PACE_INITIAL_WINDOW, one worker
GROWN = 128  # the window after slow start (PACE_SLOW_START_GROWTH x 64)


class CountingBackend:
    """A backend that answers each request `delay` seconds after it arrived, and records each
    connection in the order it accepted them (its kernel accept queue's order, the order
    holdfast connected in): its request's path, and how many connections it had accepted and
    not answered yet when it came (outstanding: what a cold app's accept queue and workers
    would hold). holdfast's readiness probes (a connect, then a close) are left out."""

    def __init__(self, addr, delay):
        self.addr, self.delay = addr, delay
        self.lock = threading.Lock()
        self.accepted = []  # [path (None until read, "" for a probe), outstanding, answered]
        self.outstanding = self.answered = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(addr)
        self.sock.listen(1024)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def arrivals(self):
        with self.lock:
            return [tuple(a) for a in self.accepted if a[0] != ""]

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                entry = [None, self.outstanding, self.answered]
                self.accepted.append(entry)
                self.outstanding += 1
            threading.Thread(target=self._serve, args=(c, entry), daemon=True).start()

    def _serve(self, c, entry):
        with c:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(4096)
                if not chunk:
                    with self.lock:  # a readiness probe
                        entry[0] = ""
                        self.outstanding -= 1
                    return
                data += chunk
            path = data.split(b" ", 2)[1].decode()
            with self.lock:
                entry[0] = path
            threading.Event().wait(self.delay)
            body = f"answer {path}".encode()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                      % (len(body), body))
            with self.lock:
                self.outstanding -= 1
                self.answered += 1

    def close(self):
        self.sock.close()


def release_held(holdfast, addrs, extra_args, delay, during=None):
    """N connections held while the backend is down (one worker, so one window), then the
    backend starts listening. Returns the backend (its arrivals) and every client's answer."""
    listen, back = addrs.listener(), addrs.backend()
    hf = holdfast.start({"services": [service(
        "paced", [listen], [back], readiness={"tcp": {}}, holdTimeoutSeconds=60)]},
        workers=1, log_level="info", extra_args=extra_args)
    socks = []
    for i in range(N):
        s = connect(listen)
        s.sendall(get_request(f"/r/{i}", extra="Connection: close\r\n"))
        socks.append(s)
        # one at a time into the hold queue, so arrival order is the order sent
        wait_for(lambda: hf.metric("holdfast_held_connections", service="paced") == i + 1,
                 timeout=20, interval=0.005, what=f"connection {i} held")
    backend = CountingBackend(back, delay)
    try:
        late = during(hf, listen) if during else None
        answers = []
        for s in socks:
            r = Reader(s).read_response()
            answers.append((r.status, r.body))
            s.close()
        if late:
            r = Reader(late).read_response()
            answers.append((r.status, r.body))
            late.close()
    finally:
        backend.close()
    assert hf.metric("holdfast_pace_waiting_connections", service="paced") == 0
    assert hf.metric("holdfast_held_connections", service="paced") == 0
    return hf, backend, answers


def assert_all_answered_in_order(backend, answers):
    for i, (status, body) in enumerate(answers[:N]):
        assert (status, body) == (200, f"answer /r/{i}".encode()), i
    # FIFO: the backend saw the requests in the order they were held
    assert [p for p, _, _ in backend.arrivals][:N] == [f"/r/{i}" for i in range(N)]


def test_released_held_connections_are_paced_by_a_window_per_endpoint(holdfast, addrs):
    # answers well within the 1 s after which a window of unanswered requests grows by itself
    hf, backend, answers = release_held(holdfast, addrs, [], delay=0.3)
    assert_all_answered_in_order(backend, answers)
    most = max(o for _, o, _ in backend.arrivals)
    # never more outstanding than the window, grown at most by slow start (a readiness probe
    # being accepted at the same moment may add one)
    assert most <= GROWN, backend.arrivals
    # the first window went, then the next waited for an answer
    _, outstanding, answered = backend.arrivals[WINDOW]
    assert answered >= 1, backend.arrivals
    assert hf.metric("holdfast_requests_total", service="paced", outcome="forwarded") == N


def test_pacing_off_releases_every_held_connection_at_once(holdfast, addrs):
    hf, backend, answers = release_held(holdfast, addrs, ["--pace-held=false"], delay=1.0)
    assert_all_answered_in_order(backend, answers)
    # more than a window reached the backend before its first answer
    _, outstanding, answered = backend.arrivals[WINDOW]
    assert (outstanding, answered) == (WINDOW, 0), backend.arrivals[:WINDOW + 1]


def test_a_new_connection_waits_behind_held_ones_waiting_for_a_pacing_slot(holdfast, addrs):
    def new_connection_while_they_wait(hf, listen):
        wait_for(lambda: hf.metric("holdfast_pace_waiting_connections", service="paced") > 0,
                 timeout=20, interval=0.005, what="held connections waiting for a slot")
        s = connect(listen)
        s.sendall(get_request("/late", extra="Connection: close\r\n"))
        return s

    hf, backend, answers = release_held(holdfast, addrs, [], delay=0.3,
                                        during=new_connection_while_they_wait)
    assert_all_answered_in_order(backend, answers)
    # the service was ready when it came, yet it went after every held one
    assert answers[N] == (200, b"answer /late")
    assert [p for p, _, _ in backend.arrivals][N:] == ["/late"]
