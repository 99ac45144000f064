"""Kafka requests encoded by hand for the cluster suite: Metadata v1, FindCoordinator v1 and
Produce v3 (one record batch v2), each sent to ONE chosen broker on a raw socket, so that a test
knows exactly which broker answered (client libraries route requests themselves).

Framing (size prefix, request header v1, response reading) is the client suite's kafka_wire.
"""
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ClientSuite"))
import kafka_wire  # noqa: E402
from kafka_wire import WireError, read_response, request_frame  # noqa: E402,F401

NOT_LEADER_OR_FOLLOWER = 6
KAFKA_STORAGE_ERROR = 56


class Reader:
    """Big-endian cursor over one response body."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        values = struct.unpack_from(">" + fmt, self.data, self.pos)
        self.pos += struct.calcsize(">" + fmt)
        return values if len(values) > 1 else values[0]

    def string(self):
        n = self.take("h")
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s


def _string(s) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _exchange(sock: socket.socket, api_key: int, version: int, body: bytes, correlation_id: int) -> Reader:
    sock.sendall(request_frame(api_key, version, correlation_id, body))
    cid, resp = read_response(sock)
    if cid != correlation_id:
        raise WireError(f"api {api_key} answer has correlation id {cid}, sent {correlation_id}")
    return Reader(resp)


def connect(host: str, port: int, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection((host, port), timeout=timeout)
    s.settimeout(timeout)
    return s


def metadata(host: str, port: int, timeout: float = 10.0) -> dict:
    """Metadata v1 for every topic from the broker at host:port. Returns
    {"brokers": {id: (host, port)}, "controller": id, "topics": {name: {partition: (error, leader)}},
    "topic_errors": {name: error}}."""
    with connect(host, port, timeout) as s:
        r = _exchange(s, 3, 1, struct.pack(">i", -1), 11)
    brokers = {}
    for _ in range(r.take("i")):
        node, h, p, _rack = r.take("i"), r.string(), r.take("i"), r.string()
        brokers[node] = (h, p)
    controller = r.take("i")
    topics, topic_errors = {}, {}
    for _ in range(r.take("i")):
        error, name, _internal = r.take("h"), r.string(), r.take("b")
        topic_errors[name] = error
        parts = {}
        for _ in range(r.take("i")):
            perror, index, leader = r.take("hii")
            for _list in ("replicas", "isr"):
                n = r.take("i")
                r.pos += 4 * n
            parts[index] = (perror, leader)
        topics[name] = parts
    return {"brokers": brokers, "controller": controller, "topics": topics, "topic_errors": topic_errors}


def find_coordinator(host: str, port: int, group: str, timeout: float = 10.0, key_type: int = 0) -> tuple[int, int, str, int]:
    """FindCoordinator v1 asked of the broker at host:port for a group (`key_type` 0) or a
    transactional id (1): (error, node id, host, port)."""
    with connect(host, port, timeout) as s:
        r = _exchange(s, 10, 1, _string(group) + struct.pack(">b", key_type), 12)
    _throttle, error = r.take("ih")
    r.string()  # error message
    node, h, p = r.take("i"), r.string(), r.take("i")
    return error, node, h, p


# ------------------------------------------------------------------ record batch v2 + Produce v3

def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)  # zigzag
    out = bytearray()
    while True:
        if z < 0x80:
            out.append(z)
            return bytes(out)
        out.append((z & 0x7F) | 0x80)
        z >>= 7


def record_batch(key: bytes, value: bytes, timestamp_ms: int | None = None) -> bytes:
    """One uncompressed, non-idempotent record batch (magic 2) holding one record."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    body = b"\x00" + _varint(0) + _varint(0) + _varint(len(key)) + key + _varint(len(value)) + value + _varint(0)
    record = _varint(len(body)) + body
    # attributes .. records: the part the CRC covers.
    after_crc = struct.pack(">hiqqqhii", 0, 0, ts, ts, -1, -1, -1, 1) + record
    crc_part = struct.pack(">ibI", -1, 2, crc32c(after_crc)) + after_crc  # leader epoch, magic, crc
    return struct.pack(">qi", 0, len(crc_part)) + crc_part


def produce(sock: socket.socket, topic: str, partition: int, key: bytes, value: bytes,
            acks: int = -1, timeout_ms: int = 10000, correlation_id: int = 21) -> tuple[int, int]:
    """Produce v3 of one record to one partition on an open connection: (error code, base offset).
    Raises WireError if the broker closes the connection instead of answering."""
    send_produce(sock, topic, partition, key, value, acks, timeout_ms, correlation_id)
    return read_produce_answer(sock, partition, correlation_id)


def send_produce(sock: socket.socket, topic: str, partition: int, key: bytes, value: bytes,
                 acks: int = -1, timeout_ms: int = 10000, correlation_id: int = 21) -> None:
    """Sends a Produce v3 without waiting for the answer (read it with read_produce_answer)."""
    batch = record_batch(key, value)
    body = _string(None) + struct.pack(">hi", acks, timeout_ms)
    body += struct.pack(">i", 1) + _string(topic) + struct.pack(">i", 1)
    body += struct.pack(">ii", partition, len(batch)) + batch
    sock.sendall(request_frame(0, 3, correlation_id, body))


def read_produce_answer(sock: socket.socket, partition: int, correlation_id: int = 21) -> tuple[int, int]:
    cid, resp = read_response(sock)
    if cid != correlation_id:
        raise WireError(f"Produce answer has correlation id {cid}, sent {correlation_id}")
    r = Reader(resp)
    results = []
    for _ in range(r.take("i")):
        r.string()
        for _ in range(r.take("i")):
            index, error, base, _append_time = r.take("ihqq")
            results.append((index, error, base))
    if len(results) != 1 or results[0][0] != partition:
        raise WireError(f"Produce answer names partitions {results}, sent {partition}")
    return results[0][1], results[0][2]
