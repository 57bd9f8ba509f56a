#!/usr/bin/python3
"""A TCP relay that delivers what the server sends DELAY ms late: kube-proxy's view of the API.

    delayrelay.py --listen 127.0.0.1:6444 --upstream 127.0.0.1:6443 --delay-ms 700

`scripts/cluster up --proxy-delay-ms N` puts this between kube-proxy and the API server, so
every watch event (a Service, an EndpointSlice) reaches kube-proxy N ms after the API server
sent it, and kube-proxy programs it that much later: the propagation delay of a loaded
cluster, made steady so that tests see the switch races every time. kube-proxy's own
rate limit (minSyncPeriod) cannot do this: it only spaces syncs apart, and a change after a
quiet spell is programmed at once (docs/test-cluster.md).

The bytes pass through untouched (TLS end to end); only their timing changes. What the client
sends goes straight on. Runs until SIGTERM.
"""
import argparse
import collections
import signal
import socket
import sys
import threading
import time

CHUNK = 65536


def pump_direct(src, dst):
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class Delayed:
    """Bytes from src reach dst `delay` seconds after they arrived, in order."""

    def __init__(self, src, dst, delay):
        self.src, self.dst, self.delay = src, dst, delay
        self.queue = collections.deque()   # (due time, bytes or None for end of stream)
        self.cond = threading.Condition()

    def read(self):
        try:
            while True:
                data = self.src.recv(CHUNK)
                self._put(data or None)
                if not data:
                    return
        except OSError:
            self._put(None)

    def _put(self, data):
        with self.cond:
            self.queue.append((time.monotonic() + self.delay, data))
            self.cond.notify()

    def write(self):
        try:
            while True:
                with self.cond:
                    while not self.queue:
                        self.cond.wait()
                    due, data = self.queue.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if data is None:
                    break
                self.dst.sendall(data)
        except OSError:
            pass
        finally:
            for s, how in ((self.dst, socket.SHUT_WR), (self.src, socket.SHUT_RD)):
                try:
                    s.shutdown(how)
                except OSError:
                    pass


def serve_one(client, upstream, delay):
    try:
        server = socket.create_connection(upstream, timeout=5)
        server.settimeout(None)
    except OSError as e:
        print("delayrelay: upstream %s:%d: %s" % (upstream[0], upstream[1], e), file=sys.stderr, flush=True)
        client.close()
        return
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    down = Delayed(server, client, delay)
    threads = [threading.Thread(target=pump_direct, args=(client, server), daemon=True),
               threading.Thread(target=down.read, daemon=True),
               threading.Thread(target=down.write, daemon=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    server.close()


def hostport(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen", required=True, type=hostport)
    p.add_argument("--upstream", required=True, type=hostport)
    p.add_argument("--delay-ms", required=True, type=int)
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(args.listen)
    ls.listen(64)
    print("delayrelay: %s:%d -> %s:%d, server bytes %d ms late" % (
        args.listen + args.upstream + (args.delay_ms,)), flush=True)
    while True:
        client, _ = ls.accept()
        threading.Thread(target=serve_one, args=(client, args.upstream, args.delay_ms / 1000.0),
                         daemon=True).start()


if __name__ == "__main__":
    main()
