"""The fault proxy itself, against tiny local HTTP/1.1 servers (no broker, no moto): a few seconds."""
import http.server
import socket
import threading

import pytest

from faultproxy import FaultProxy

# How long a silent connection is watched before it counts as silent. Silence cannot be observed
# any other way; the held request is then checked to complete after the mode changes back.
SILENCE_S = 0.5


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers with the server's name, the method, the path and (PUT) the body's length and first
    bytes; http.server answers `Expect: 100-continue` by itself."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self, text: str):
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._answer(f"{self.server.name} GET {self.path}")

    def do_PUT(self):
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
        else:
            data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._answer(f"{self.server.name} PUT {self.path} {len(data)} {data[:8].decode()}")


def _server(name: str):
    s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    s.daemon_threads = True
    s.name = name
    threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True).start()
    return s


@pytest.fixture
def upstreams():
    a, b = _server("A"), _server("B")
    yield a, b
    a.shutdown()
    b.shutdown()
    a.server_close()
    b.server_close()


@pytest.fixture
def proxy(upstreams):
    p = FaultProxy(("127.0.0.1", upstreams[0].server_address[1])).start()
    yield p
    p.stop()


class Client:
    """One kept-alive raw HTTP/1.1 connection, reading responses with Content-Length."""

    def __init__(self, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split(" ")[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if status == 100:
            return status, b""
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, body

    def get(self, path: str) -> tuple[int, bytes]:
        self.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return self.response()

    def put(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.send(f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        return self.response()

    def close(self):
        self.sock.close()


def test_pass_forwards_both_ways_on_one_connection(proxy):
    c = Client(proxy.port)
    assert c.get("/one") == (200, b"A GET /one")
    body = b"0123456789" * 20000  # 200 kB: several reads
    assert c.put("/two", body) == (200, b"A PUT /two 200000 01234567")
    c.send(b"PUT /three HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
    assert c.response() == (200, b"A PUT /three 11 hello wo")
    c.close()
    s = proxy.stats()
    assert s["forwarded"] == 3 and s["accepted"] == 1 and s["upstream_connections"] == 1, s


def test_slowdown_answers_503_then_pass_forwards_again_on_the_same_connection(proxy):
    c = Client(proxy.port)
    assert c.get("/before") == (200, b"A GET /before")
    proxy.slowdown()
    status, body = c.put("/wal/1", b"x" * 1000)
    assert status == 503 and b"<Code>SlowDown</Code>" in body and b"Please reduce your request rate." in body
    # Expect: 100-continue: the proxy says continue, reads the body, then answers 503
    c.send(b"PUT /wal/2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert c.response() == (100, b"")
    c.send(b"hello")
    status, body = c.response()
    assert status == 503 and b"SlowDown" in body
    proxy.pass_through()
    assert c.get("/after") == (200, b"A GET /after")
    c.close()
    s = proxy.stats()
    assert s["slowdown"] == 2 and s["forwarded"] == 2, s


def test_expect_continue_passes_through_to_the_upstream(proxy):
    c = Client(proxy.port)
    c.send(b"PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert c.response() == (100, b"")
    c.send(b"hello")
    assert c.response() == (200, b"A PUT /e 5 hello")
    c.close()


def _is_reset(c: Client) -> bool:
    """True when the connection was reset (or closed) by the proxy."""
    try:
        c.get("/after-reset")
    except (ConnectionResetError, BrokenPipeError, EOFError):
        return True
    return False


def test_refuse_resets_open_and_new_connections(proxy):
    c = Client(proxy.port)
    assert c.get("/x")[0] == 200
    proxy.refuse()
    assert _is_reset(c), "an open connection survived refuse"
    # Accepted by the kernel, then reset by the proxy: on loopback the reset can arrive before
    # connect() has returned (Python then raises it from connect), or at the first read.
    with pytest.raises((ConnectionResetError, EOFError)):
        fresh = Client(proxy.port)
        fresh.response()
    s = proxy.stats()
    assert s["reset"] >= 2, s
    proxy.pass_through()
    again = Client(proxy.port)
    assert again.get("/back") == (200, b"A GET /back")
    again.close()


def test_blackhole_holds_requests_silently_and_releases_them(proxy):
    open_before = Client(proxy.port, timeout=SILENCE_S)
    assert open_before.get("/warm") == (200, b"A GET /warm")
    proxy.blackhole()
    open_before.send(b"GET /held-old HTTP/1.1\r\nHost: x\r\n\r\n")
    fresh = Client(proxy.port, timeout=SILENCE_S)  # accepted: connect succeeds
    fresh.send(b"GET /held-new HTTP/1.1\r\nHost: x\r\n\r\n")
    for c in (open_before, fresh):
        with pytest.raises(socket.timeout):
            c.response()
    assert proxy.stats()["held"] >= 2
    proxy.pass_through()
    for c in (open_before, fresh):
        c.sock.settimeout(5)
    assert open_before.response() == (200, b"A GET /held-old")
    assert fresh.response() == (200, b"A GET /held-new")


def test_blackhole_then_refuse_resets_held_connections(proxy):
    c = Client(proxy.port, timeout=SILENCE_S)
    assert c.get("/warm")[0] == 200
    proxy.blackhole()
    c.send(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(socket.timeout):
        c.response()
    proxy.refuse()
    c.sock.settimeout(5)
    with pytest.raises((ConnectionResetError, EOFError)):
        c.response()


def test_retarget_switches_upstream_at_the_next_request_and_back(proxy, upstreams):
    _, b = upstreams
    c = Client(proxy.port)
    assert c.get("/1") == (200, b"A GET /1")
    proxy.retarget("127.0.0.1", b.server_address[1])
    assert c.get("/2") == (200, b"B GET /2")
    assert Client(proxy.port).get("/3") == (200, b"B GET /3")
    proxy.retarget("127.0.0.1", upstreams[0].server_address[1])
    assert c.get("/4") == (200, b"A GET /4")
    by = proxy.stats()["forwarded_by_upstream"]
    assert by == {f"127.0.0.1:{upstreams[0].server_address[1]}": 2, f"127.0.0.1:{b.server_address[1]}": 2}, by
