"""A few Kafka requests encoded by hand, for the raw-socket tests.

Only what the suite needs and independent of every client library under test: the request
headers v1 and v2 (flexible versions), ApiVersions v0 (readiness probe and liveness check),
Fetch v4 (to read the attributes of stored record batches, which no client exposes) and the
compact encodings of flexible versions, and a transactional producer speaking the transaction
APIs by hand (`RawTxnProducer`, for requests no client here sends, such as EndTxn v5).
"""
import socket
import struct
import time


class WireError(Exception):
    pass


def request_frame(api_key: int, api_version: int, correlation_id: int, body: bytes, client_id: str = "floe-suite",
                  flexible: bool = False) -> bytes:
    """Size prefix + request header v1 (key, version, correlation id, client id) + body. With
    `flexible` (a flexible version of the API), header v2: v1 plus an empty tagged-field section."""
    cid = client_id.encode()
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(cid)) + cid
    if flexible:
        header += b"\x00"
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Reads exactly n bytes; raises WireError on EOF (the peer closed)."""
    chunks = []
    while n > 0:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise WireError("connection closed by the broker")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Reads one response frame; returns (correlation id, body after the v0 response header)."""
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    if size < 4 or size > 256 << 20:
        raise WireError(f"response frame size {size} is not plausible")
    frame = recv_exact(sock, size)
    return struct.unpack(">i", frame[:4])[0], frame[4:]


def api_versions(sock: socket.socket, correlation_id: int = 1) -> dict[int, tuple[int, int]]:
    """Sends ApiVersions v0; returns {api key: (min, max)}. Raises WireError on an error code."""
    sock.sendall(request_frame(18, 0, correlation_id, b""))
    cid, body = read_response(sock)
    if cid != correlation_id:
        raise WireError(f"ApiVersions answer has correlation id {cid}, sent {correlation_id}")
    (error,) = struct.unpack(">h", body[:2])
    if error != 0:
        raise WireError(f"ApiVersions v0 answered error code {error}")
    (count,) = struct.unpack(">i", body[2:6])
    out = {}
    for i in range(count):
        key, lo, hi = struct.unpack(">hhh", body[6 + 6 * i: 12 + 6 * i])
        out[key] = (lo, hi)
    return out


def probe(host: str, port: int, timeout: float = 2.0) -> dict[int, tuple[int, int]]:
    """One fresh connection, one ApiVersions v0 exchange."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        return api_versions(s)


def wait_serving(host: str, port: int, deadline: float, alive=lambda: True) -> None:
    """Polls until the broker answers ApiVersions, `alive()` turns false, or the deadline passes."""
    last = None
    while time.monotonic() < deadline:
        if not alive():
            raise WireError(f"the broker process exited before serving on {host}:{port}")
        try:
            probe(host, port, timeout=1.0)
            return
        except (OSError, WireError) as e:
            last = e
        time.sleep(0.05)  # poll interval while waiting for a port, not synchronization
    raise WireError(f"nothing answered ApiVersions on {host}:{port} in time (last error: {last})")


def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def fetch_batch_attributes(sock: socket.socket, topic: str, partition: int, offset: int,
                           max_bytes: int = 4 << 20, correlation_id: int = 7) -> list[tuple[int, int, int]]:
    """Fetch v4 from one partition; returns [(base offset, record count, attributes)] per
    complete record batch (magic 2) in the answer."""
    body = struct.pack(">iiiib", -1, 500, 1, max_bytes, 0)
    body += struct.pack(">i", 1) + _string(topic)
    body += struct.pack(">i", 1) + struct.pack(">iqi", partition, offset, max_bytes)
    sock.sendall(request_frame(1, 4, correlation_id, body))
    cid, resp = read_response(sock)
    if cid != correlation_id:
        raise WireError(f"Fetch answer has correlation id {cid}, sent {correlation_id}")
    pos = 4  # throttle_time_ms
    (ntopics,) = struct.unpack_from(">i", resp, pos); pos += 4
    batches = []
    for _ in range(ntopics):
        (tlen,) = struct.unpack_from(">h", resp, pos); pos += 2 + tlen
        (nparts,) = struct.unpack_from(">i", resp, pos); pos += 4
        for _ in range(nparts):
            _, error, _, _ = struct.unpack_from(">ihqq", resp, pos); pos += 22
            if error != 0:
                raise WireError(f"Fetch {topic}[{partition}] at {offset}: error code {error}")
            (naborted,) = struct.unpack_from(">i", resp, pos); pos += 4
            pos += max(0, naborted) * 16
            (rlen,) = struct.unpack_from(">i", resp, pos); pos += 4
            records = resp[pos: pos + max(0, rlen)]; pos += max(0, rlen)
            rp = 0
            while rp + 61 <= len(records):
                base, blen = struct.unpack_from(">qi", records, rp)
                if rp + 12 + blen > len(records):
                    break  # a partial batch at the end of the answer
                magic = records[rp + 16]
                if magic != 2:
                    raise WireError(f"record batch at offset {base} has magic {magic}")
                (attributes,) = struct.unpack_from(">h", records, rp + 21)
                (count,) = struct.unpack_from(">i", records, rp + 57)
                batches.append((base, count, attributes))
                rp += 12 + blen
    return batches


def uvarint(n: int) -> bytes:
    """Unsigned varint (compact lengths and tagged-field counts of flexible versions)."""
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def read_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    """Returns (value, position after it)."""
    value, shift = 0, 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def compact_string(s: str | None) -> bytes:
    """COMPACT_(NULLABLE_)STRING: length + 1 as an unsigned varint (0: null), then the bytes."""
    if s is None:
        return b"\x00"
    b = s.encode()
    return uvarint(len(b) + 1) + b


def compact_bytes(b: bytes) -> bytes:
    return uvarint(len(b) + 1) + b


def skip_compact_string(data: bytes, pos: int) -> int:
    n, pos = read_uvarint(data, pos)
    return pos + max(0, n - 1)


def skip_tagged_fields(data: bytes, pos: int) -> int:
    count, pos = read_uvarint(data, pos)
    for _ in range(count):
        _, pos = read_uvarint(data, pos)
        size, pos = read_uvarint(data, pos)
        pos += size
    return pos


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _varint(n: int) -> bytes:
    """Zigzag varint (record fields)."""
    return uvarint((n << 1) ^ (n >> 63))


def transactional_batch(pid: int, epoch: int, value: bytes, sequence: int = 0) -> bytes:
    """A record batch v2 of one transactional record (offset 0), CRC32C filled in."""
    record = bytes([0]) + _varint(0) + _varint(0) + _varint(-1) + _varint(len(value)) + value + _varint(0)
    record = _varint(len(record)) + record
    ts = int(time.time() * 1000)
    after_crc = struct.pack(">hiqqqhii", 1 << 4, 0, ts, ts, pid, epoch, sequence, 1) + record
    head = struct.pack(">ib", -1, 2)
    crc = struct.pack(">I", _crc32c(after_crc))
    body = head + crc + after_crc
    return struct.pack(">qi", 0, len(body)) + body


class RawTxnProducer:
    """A transactional producer on one connection, speaking the APIs by hand:
    InitProducerId v1, AddPartitionsToTxn v2 (the first version answering PRODUCER_FENCED),
    Produce v3 or v11 (flexible; the first version that may answer TRANSACTION_ABORTABLE) of one
    transactional record, AddOffsetsToTxn v2, TxnOffsetCommit v2, and EndTxn v3–v5 (flexible; v5
    answers the producer id and epoch)."""

    def __init__(self, bootstrap: str, tid: str):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.tid = tid
        self.correlation = 0

    def close(self):
        self.sock.close()

    def call(self, key: int, version: int, body: bytes, flexible: bool = False) -> bytes:
        """One request; returns the response body (after the tagged fields of a flexible header)."""
        self.correlation += 1
        self.sock.sendall(request_frame(key, version, self.correlation, body, flexible=flexible))
        cid, resp = read_response(self.sock)
        assert cid == self.correlation, f"answer to {self.correlation} has correlation id {cid}"
        return resp[skip_tagged_fields(resp, 0):] if flexible else resp

    def init(self) -> tuple[int, int]:
        body = self.call(22, 1, _string(self.tid) + struct.pack(">i", 20000))
        _, err, pid, epoch = struct.unpack(">ihqh", body[:16])
        assert err == 0, f"InitProducerId answered error {err}"
        return pid, epoch

    def add(self, pid: int, epoch: int, topic: str, partition: int) -> int:
        """AddPartitionsToTxn v2 of one partition; returns its error code."""
        body = self.call(24, 2, _string(self.tid) + struct.pack(">qh", pid, epoch) + struct.pack(">i", 1) + _string(topic)
                         + struct.pack(">ii", 1, partition))
        at = 4 + 4  # throttle time, topic count
        (nlen,) = struct.unpack(">h", body[at:at + 2])
        at += 2 + nlen + 4  # topic name, partition count
        _, code = struct.unpack(">ih", body[at:at + 6])
        return code

    def produce(self, pid: int, epoch: int, topic: str, partition: int, value: bytes, sequence: int, version: int = 3) -> int:
        """Produce of one transactional record; returns the partition's error code."""
        batch = transactional_batch(pid, epoch, value, sequence)
        if version < 9:
            req = (_string(self.tid) + struct.pack(">hii", -1, 10000, 1) + _string(topic) + struct.pack(">ii", 1, partition)
                   + struct.pack(">i", len(batch)) + batch)
            body = self.call(0, version, req)
            at = 4
            (nlen,) = struct.unpack(">h", body[at:at + 2])
            at += 2 + nlen + 4  # topic name, partition count
        else:
            req = (compact_string(self.tid) + struct.pack(">hi", -1, 10000) + uvarint(2)
                   + compact_string(topic) + uvarint(2) + struct.pack(">i", partition)
                   + compact_bytes(batch) + b"\x00" + b"\x00" + b"\x00")
            body = self.call(0, version, req, flexible=True)
            _, at = read_uvarint(body, 0)  # topic count
            at = skip_compact_string(body, at)
            _, at = read_uvarint(body, at)  # partition count
        _, code = struct.unpack(">ih", body[at:at + 6])
        return code

    def add_offsets(self, pid: int, epoch: int, group: str) -> int:
        """AddOffsetsToTxn v2; returns its error code."""
        body = self.call(25, 2, _string(self.tid) + struct.pack(">qh", pid, epoch) + _string(group))
        return struct.unpack(">ih", body[:6])[1]

    def commit_offset(self, pid: int, epoch: int, group: str, topic: str, partition: int, offset: int) -> int:
        """TxnOffsetCommit v2 of one partition's offset; returns its error code."""
        req = (_string(self.tid) + _string(group) + struct.pack(">qh", pid, epoch) + struct.pack(">i", 1) + _string(topic)
               + struct.pack(">i", 1) + struct.pack(">iqih", partition, offset, -1, -1))
        body = self.call(28, 2, req)
        at = 4 + 4  # throttle time, topic count
        (nlen,) = struct.unpack(">h", body[at:at + 2])
        at += 2 + nlen + 4  # topic name, partition count
        return struct.unpack(">ih", body[at:at + 6])[1]

    def end(self, pid: int, epoch: int, commit: bool, version: int = 5) -> tuple[int, int, int]:
        """EndTxn (flexible versions); returns (error, producer id, epoch), the last two -1 below v5."""
        req = compact_string(self.tid) + struct.pack(">qhb", pid, epoch, 1 if commit else 0) + b"\x00"
        body = self.call(26, version, req, flexible=True)
        _, err = struct.unpack(">ih", body[:6])
        if version < 5 or len(body) < 16:
            return err, -1, -1
        new_pid, new_epoch = struct.unpack(">qh", body[6:16])
        return err, new_pid, new_epoch
