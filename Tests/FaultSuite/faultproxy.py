"""A fault-injecting TCP proxy for an S3 endpoint (moto), driven from the test process.

    proxy = FaultProxy(("127.0.0.1", moto_port)).start()   # listens on 127.0.0.1:proxy.port
    proxy.refuse()        # S3 unreachable: new connections and every open one are reset
    proxy.pass_through()  # back to forwarding
    proxy.blackhole()     # accepts, never answers; open connections fall silent (bytes held, not lost)
    proxy.slowdown()      # every request answered `503 SlowDown` with S3's XML error body
    proxy.retarget(host, port)  # following requests go to another upstream (e.g. an empty moto)
    proxy.stop()

The proxy runs an asyncio loop on its own thread; every control method returns once the mode is
in force (in `refuse`, once every open connection has been reset).

It understands just enough HTTP/1.1 on the client → server side to find request boundaries
(request line, headers, a `Content-Length` or chunked body, `Expect: 100-continue`): the mode
and the upstream are chosen per request, so `slowdown` and `retarget` take effect on kept-alive
connections at their next request, as they would behind a real load balancer. Responses are
forwarded as bytes. Requests are assumed not to be pipelined (libcurl does not pipeline
HTTP/1.1): a new request on a connection means the previous response is complete.

Modes and what a client sees:
- `pass`: bytes forwarded both ways.
- `refuse`: a new connection is accepted and reset at once (RST, SO_LINGER 0); every open
  connection is reset when the mode is set. curl reports "Connection reset by peer" /
  "Recv failure".
- `blackhole`: a new connection is accepted and never read; open connections stop being read in
  both directions (their bytes wait in the proxy and in socket buffers). When the mode changes
  back to `pass` they resume where they stopped (like TCP across a healed partition); when it
  changes to `refuse` they are reset.
- `slowdown`: each new request is read in full (answering `100 Continue` when asked) and answered
  `503 Slow Down` with `<Error><Code>SlowDown</Code>...`, without reaching the upstream; a
  request already being forwarded finishes normally.

`stats()` counts what the proxy did (connections, requests forwarded per upstream, requests
answered 503, resets, connections held) so a test can check that a fault was really exercised.
"""
import asyncio
import collections
import socket
import struct
import threading
import time

SLOWDOWN_BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
                 b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
                 b"<RequestId>FAULTPROXY0000001</RequestId><HostId>faultproxy</HostId></Error>")

MODES = ("pass", "refuse", "blackhole", "slowdown")
MAX_HEAD_BYTES = 64 * 1024
CHUNK = 64 * 1024


class ProtocolError(Exception):
    """The client sent something the proxy cannot frame as HTTP/1.1."""


class _Aborted(Exception):
    """The connection was reset by the proxy (refuse mode)."""


def _reset(writer) -> None:
    """Closes the connection with an RST (SO_LINGER 0) instead of a FIN."""
    if writer is None:
        return
    transport = writer.transport
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """(method, target, lower-cased headers) of a request head ending in CRLF CRLF."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as e:  # latin-1 decodes every byte; kept for clarity
        raise ProtocolError(str(e)) from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ProtocolError(f"bad request line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"bad header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], headers


class _Connection:
    """One client connection: its reader/writer, the upstream it is forwarding to (if any) and
    the task pumping that upstream's responses back."""

    def __init__(self, proxy: "FaultProxy", reader, writer):
        self.proxy, self.reader, self.writer = proxy, reader, writer
        self.up_reader = self.up_writer = None
        self.up_target = None
        self.pump: asyncio.Task | None = None
        self.aborted = False

    def reset(self) -> None:
        self.aborted = True
        _reset(self.writer)
        _reset(self.up_writer)
        if self.pump is not None:
            self.pump.cancel()

    async def gate(self) -> None:
        """Waits while the proxy black-holes; raises _Aborted once reset."""
        held = False
        while True:
            if self.aborted:
                raise _Aborted()
            mode = self.proxy._mode
            if mode == "refuse":  # set_mode resets every connection; this is a safety net
                self.reset()
                raise _Aborted()
            if mode != "blackhole":
                return
            if not held:
                held = True
                self.proxy._count("held")
            await self.proxy._changed.wait()

    async def read(self, n: int) -> bytes:
        await self.gate()
        data = await self.reader.read(n)
        await self.gate()
        return data

    async def read_exactly(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            data = await self.read(min(CHUNK, n - len(out)))
            if not data:
                raise ProtocolError(f"client closed with {n - len(out)} body bytes missing")
            out += data
        return bytes(out)

    async def read_line(self) -> bytes:
        await self.gate()
        line = await self.reader.readuntil(b"\r\n")
        await self.gate()
        return line

    async def read_head(self) -> bytes | None:
        """The next request head, or None at a clean end of stream."""
        await self.gate()
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if e.partial:
                raise ProtocolError("client closed in the middle of a request head") from None
            return None
        except asyncio.LimitOverrunError:
            raise ProtocolError(f"request head over {MAX_HEAD_BYTES} bytes") from None
        await self.gate()
        return head

    async def body(self, headers: dict[str, str], sink) -> None:
        """Reads the request body (Content-Length or chunked), passing raw bytes to `sink`."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size_line = await self.read_line()
                await sink(size_line)
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:  # trailers, ended by an empty line
                        line = await self.read_line()
                        await sink(line)
                        if line == b"\r\n":
                            return
                await sink(await self.read_exactly(size + 2))
        remaining = int(headers.get("content-length", "0") or 0)
        while remaining > 0:
            data = await self.read(min(CHUNK, remaining))
            if not data:
                raise ProtocolError(f"client closed with {remaining} body bytes missing")
            remaining -= len(data)
            await sink(data)

    async def to_client(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def to_upstream(self, data: bytes) -> None:
        self.up_writer.write(data)
        await self.up_writer.drain()

    async def connect_upstream(self) -> None:
        target = self.proxy._target
        if self.up_writer is not None and self.up_target == target and not self.up_writer.is_closing():
            return
        await self.close_upstream()
        self.up_reader, self.up_writer = await asyncio.open_connection(*target)
        self.up_target = target
        self.proxy._count("upstream_connections")
        self.pump = asyncio.ensure_future(self.pump_responses(self.up_reader))

    async def close_upstream(self) -> None:
        if self.pump is not None:
            self.pump.cancel()
            self.pump = None
        if self.up_writer is not None:
            self.up_writer.close()
            self.up_writer = self.up_reader = None

    async def pump_responses(self, up_reader) -> None:
        """Upstream → client, gated by blackhole. The upstream closing ends the client connection."""
        try:
            while True:
                await self.gate()
                data = await up_reader.read(CHUNK)
                await self.gate()
                if not data:
                    break
                await self.to_client(data)
            self.writer.close()
        except (_Aborted, asyncio.CancelledError):
            pass
        except (ConnectionError, OSError):
            _reset(self.writer)

    async def serve(self) -> None:
        while True:
            head = await self.read_head()
            if head is None:
                return
            method, target, headers = parse_head(head)
            mode = self.proxy._mode
            if mode == "slowdown":
                await self.answer_slowdown(method, target, headers)
                continue
            # pass (blackhole and refuse were handled by the gate)
            try:
                await self.connect_upstream()
            except OSError:
                self.proxy._record("upstream_unreachable", method, target)
                raise _Aborted() from None
            self.proxy._record("forwarded", method, target, upstream=self.up_target)
            await self.to_upstream(head)
            await self.body(headers, self.to_upstream)

    async def answer_slowdown(self, method: str, target: str, headers: dict[str, str]) -> None:
        if headers.get("expect", "").lower() == "100-continue":
            await self.to_client(b"HTTP/1.1 100 Continue\r\n\r\n")

        async def discard(_data):
            pass

        await self.body(headers, discard)
        self.proxy._record("slowdown", method, target)
        body = b"" if method == "HEAD" else SLOWDOWN_BODY
        await self.to_client(b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                             b"Content-Length: %d\r\nConnection: keep-alive\r\n"
                             b"x-amz-request-id: FAULTPROXY0000001\r\n\r\n" % len(SLOWDOWN_BODY) + body)


class FaultProxy:
    """See the module documentation. `listen_port` 0 picks a free port (read `port`)."""

    def __init__(self, target: tuple[str, int], listen_port: int = 0, log_limit: int = 10000):
        self._target = (target[0], int(target[1]))
        self._listen_port = listen_port
        self._mode = "pass"
        self._connections: set[_Connection] = set()
        self._stats = collections.Counter()
        self._per_upstream = collections.Counter()
        self._lock = threading.Lock()  # guards _stats, _per_upstream and log for readers on other threads
        self.log = collections.deque(maxlen=log_limit)  # (monotonic time, event, method, path, upstream)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._server = None
        self._changed: asyncio.Event | None = None
        self.port = None

    # ---------------------------------------------------------------- control (any thread)

    def start(self) -> "FaultProxy":
        self._thread.start()
        self._call(self._start_server())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def target(self) -> tuple[str, int]:
        return self._target

    def pass_through(self) -> None:
        self._set_mode("pass")

    def refuse(self) -> None:
        self._set_mode("refuse")

    def blackhole(self) -> None:
        self._set_mode("blackhole")

    def slowdown(self) -> None:
        self._set_mode("slowdown")

    def retarget(self, host: str, port: int) -> None:
        """Requests from now on (new ones on open connections too) go to host:port."""
        async def apply():
            self._target = (host, int(port))
        self._call(apply())

    def stats(self) -> dict:
        with self._lock:
            out = dict(self._stats)
            out["forwarded_by_upstream"] = {f"{h}:{p}": n for (h, p), n in self._per_upstream.items()}
            out["open_connections"] = len(self._connections)
            return out

    def events_between(self, start: float, end: float) -> list[tuple]:
        with self._lock:
            return [e for e in self.log if start <= e[0] <= end]

    # ---------------------------------------------------------------- loop side

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start_server(self) -> None:
        self._changed = asyncio.Event()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._listen_port,
                                                  limit=MAX_HEAD_BYTES, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        self._server.close()
        for c in list(self._connections):
            c.reset()
        await asyncio.sleep(0)

    def _set_mode(self, mode: str) -> None:
        assert mode in MODES, mode

        async def apply():
            self._mode = mode
            with self._lock:
                self.log.append((time.monotonic(), "mode:" + mode, "", "", None))
            if mode == "refuse":
                for c in list(self._connections):
                    c.reset()
                    self._count("reset")
            # wake every connection waiting in blackhole; they re-check the mode
            self._changed.set()
            self._changed = asyncio.Event()

        self._call(apply())

    def _count(self, what: str) -> None:
        with self._lock:
            self._stats[what] += 1

    def _record(self, event: str, method: str, path: str, upstream=None) -> None:
        with self._lock:
            self._stats[event] += 1
            if upstream is not None:
                self._per_upstream[upstream] += 1
            self.log.append((time.monotonic(), event, method, path, upstream))

    async def _accept(self, reader, writer) -> None:
        self._count("accepted")
        if self._mode == "refuse":
            self._count("reset")
            _reset(writer)
            return
        conn = _Connection(self, reader, writer)
        self._connections.add(conn)
        try:
            await conn.serve()
            await conn.close_upstream()
            writer.close()
        except _Aborted:
            pass
        except ProtocolError as e:
            self._record("protocol_error:" + str(e)[:80], "", "")
            conn.reset()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            conn.reset()
        finally:
            self._connections.discard(conn)
            if conn.pump is not None:
                conn.pump.cancel()
