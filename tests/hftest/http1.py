"""http1: HTTP/1.1 clients for tests that look at the bytes: a Reader that reads responses one
after another from a socket (keep-alive, pipelining, chunked), and one-shot helpers.

    r = http_get(("127.0.3.2", 8080), "/path")       # Response: status, reason, headers, body
    with connect(addr) as s: s.sendall(raw); Reader(s).read_response()
"""
import json
import socket


class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-cased name -> value (last wins)
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.headers} {self.body[:300]!r}>"


class Reader:
    """Reads HTTP/1.1 responses one after another from a socket (keep-alive, pipelining)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_response(self, head_request=False):
        status_line = self._line().decode()
        version, status, *reason = status_line.split(" ", 2)
        headers = {}
        while True:
            line = self._line()
            if not line:
                break
            k, v = line.decode().split(":", 1)
            headers[k.strip().lower()] = v.strip()
        status = int(status)
        if head_request or status in (204, 304):
            body = b""
        elif "content-length" in headers:
            body = self._exact(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exact(size)
                self._line()
        else:
            body = self.buf
            self.buf = b""
            try:
                while True:
                    self._fill()
                    body += self.buf
                    self.buf = b""
            except (EOFError, ConnectionResetError):
                pass
        return Response(status, reason[0] if reason else "", headers, body)

    def at_eof(self, timeout=10):
        """True when the peer closed the connection (nothing more to read)."""
        self.sock.settimeout(timeout)
        try:
            return not self.buf and self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def connect(addr, timeout=30):
    s = socket.create_connection(addr, timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def get_request(path="/", host="example", extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


def http_exchange(addr, raw, timeout=30, head_request=False):
    """Sends raw bytes on a new connection and reads one response."""
    with connect(addr, timeout) as s:
        s.sendall(raw)
        return Reader(s).read_response(head_request=head_request)


def http_get(addr, path="/", host="example", extra="", timeout=30):
    return http_exchange(addr, get_request(path, host, extra + "Connection: close\r\n"), timeout)
