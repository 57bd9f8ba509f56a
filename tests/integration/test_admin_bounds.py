"""The admin listener's bounds (docs/operating.md, "Admin endpoint"): a request head is read up to
8 KiB and a body up to 1 KiB; past either, the request is answered 400 or 413 and the connection
closed, so one client can neither grow holdfast's memory nor keep the control thread reading."""
import socket

import pytest

from hftest.http1 import Reader, connect
from hftest.kubeclient import wait_for
from hftest.net import hp

HEAD_CAP = 8192
STREAM_LIMIT = 16 << 20  # what a test sends at most; the current cap stops it far earlier
CHUNK = 65536

# (prefix, filler repeated after it): each never ends the request head or the body.
ENDLESS = {
    "request line": (b"GET /healthz?", b"a"),
    "one header line": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: ", b"a"),
    "header lines": (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"X-Filler: aaaaaaaaaaaaaaaa\r\n"),
    "body": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n", b"a"),
}


def fill(prefix, filler, size):
    return prefix + filler * ((size - len(prefix)) // len(filler) + 1)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def read_until_closed(sock, timeout):
    """Whatever arrives until the peer closes (or resets) the connection, or None when it is
    still open after `timeout` seconds."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data
    except socket.timeout:
        return None


def start(holdfast, addrs):
    """holdfast with one idle service (the admin endpoint is what is tested)."""
    svc = {"namespace": "default", "name": "idle", "listen": [hp(addrs.listener())],
           "backends": [hp(addrs.backend())]}
    return holdfast.start({"services": [svc]}, workers=1)


def healthz_answers(hf):
    return hf.admin_get("/healthz")[0] == 200


@pytest.mark.parametrize("kind", sorted(ENDLESS))
def test_admin_head_or_body_past_the_cap_is_answered_and_closed(holdfast, addrs, kind):
    """Twice the cap in one go, then nothing more: the answer is a 4xx and the connection is
    closed, not a wait for the rest (the request line and headers: 400; the body: 413, which
    evhttp sends as soon as it reads the Content-Length)."""
    hf = start(holdfast, addrs)
    prefix, filler = ENDLESS[kind]
    sent = prefix if kind == "body" else fill(prefix, filler, 2 * HEAD_CAP)
    with connect(hf.admin) as s:
        s.sendall(sent)
        # Bounded by evhttp's own idle timeout (10 s): without a cap it closes silently then.
        data = read_until_closed(s, timeout=20)
    assert data is not None, "the connection is still open"
    status = data.split(b"\r\n", 1)[0]
    want = b"HTTP/1.1 413" if kind == "body" else b"HTTP/1.1 400"
    assert status.startswith(want), f"{kind}: {data[:200]!r}"
    assert healthz_answers(hf)


@pytest.mark.parametrize("kind", sorted(ENDLESS))
def test_admin_endless_request_is_cut_memory_stays_bounded(holdfast, addrs, kind):
    """A client that never ends the head or the body, as fast as it can: the connection ends
    after a small part of what it could send, holdfast's memory does not follow the client,
    and /healthz answers on."""
    hf = start(holdfast, addrs)
    prefix, filler = ENDLESS[kind]
    piece = filler * (CHUNK // len(filler))
    rss_before = rss_kb(hf.pid)
    sent = 0
    ended = None
    with connect(hf.admin) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CHUNK)
        s.settimeout(30)
        try:
            s.sendall(prefix)
            while sent < STREAM_LIMIT:
                s.sendall(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError) as e:
            ended = e
    rss_grown_kb = rss_kb(hf.pid) - rss_before
    # What the kernel buffers between the two ends is all that gets past the cap.
    assert ended is not None and sent < 4 << 20, f"{kind}: {sent} bytes sent, still reading"
    assert rss_grown_kb < 8 << 10, f"{kind}: RSS grew by {rss_grown_kb} KiB"
    assert wait_for(lambda: healthz_answers(hf), what="/healthz")


def test_admin_head_under_the_cap_is_served(holdfast, addrs):
    """The cap leaves room for what scrapers and probes send (a long bearer token included)."""
    hf = start(holdfast, addrs)
    token = "t" * 4096
    with connect(hf.admin) as s:
        s.sendall(f"GET /metrics HTTP/1.1\r\nHost: {hp(hf.admin)}\r\n"
                  f"Authorization: Bearer {token}\r\nAccept: text/plain\r\n"
                  "Connection: close\r\n\r\n".encode())
        r = Reader(s).read_response()
    assert r.status == 200 and b"holdfast_draining" in r.body
