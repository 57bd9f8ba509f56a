"""net: loopback addresses and free ports for the processes a test starts.

    free_port(host)   a port nothing is bound to on host now
    Addrs()           hands out (host, port) pairs, each on a loopback address of its own
    hp((host, port))  "host:port"
    recv_all(sock)    every byte until the peer closes
"""
import itertools
import socket


def free_port(host):
    """A port free on host at the time of the call (bound to port 0 and released)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def hp(addr):
    return f"{addr[0]}:{addr[1]}"


def recv_all(sock):
    """Every byte sock receives until the peer closes (its timeout bounds each read)."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


_host_counter = itertools.count(2)


class Addrs:
    """Hands out (host, port) pairs, each on its own loopback address: backends on 127.0.1.x,
    holdfast listeners on 127.0.3.x, admin endpoints on 127.0.0.1."""

    def _free(self, prefix):
        host = f"{prefix}.{next(_host_counter) % 250 + 2}"
        return host, free_port(host)

    def backend(self):
        return self._free("127.0.1")

    def listener(self):
        return self._free("127.0.3")

    def admin(self):
        return "127.0.0.1", free_port("127.0.0.1")
