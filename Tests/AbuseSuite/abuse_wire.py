"""Raw Kafka frames for the abusive clients (no client library would send them this way).

Request header v1 and Fetch v4, encoded by hand; responses are read by size prefix only.
"""
import socket
import struct


def request_frame(api_key: int, api_version: int, correlation_id: int, body: bytes, client_id: str = "abuse") -> bytes:
    """Size prefix + request header v1 + body."""
    cid = client_id.encode()
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(cid)) + cid
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def fetch_v4(topic: str, partition: int, offset: int, correlation_id: int, max_wait_ms: int = 0, min_bytes: int = 1,
             max_bytes: int = 50 << 20, partition_max_bytes: int = 1 << 20) -> bytes:
    """One Fetch v4 frame for one partition (replica id -1, read_uncommitted)."""
    t = topic.encode()
    body = struct.pack(">iiiib", -1, max_wait_ms, min_bytes, max_bytes, 0)
    body += struct.pack(">i", 1) + struct.pack(">h", len(t)) + t
    body += struct.pack(">i", 1) + struct.pack(">iqi", partition, offset, partition_max_bytes)
    return request_frame(1, 4, correlation_id, body)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """(correlation id, body after the v0 response header)."""
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    frame = recv_exact(sock, size)
    return struct.unpack(">i", frame[:4])[0], frame[4:]


def fetch_v4_error_codes(body: bytes) -> list[int]:
    """The partition error codes of a Fetch v4 response body."""
    pos = 4  # throttle_time_ms
    (ntopics,) = struct.unpack_from(">i", body, pos); pos += 4
    codes = []
    for _ in range(ntopics):
        (tlen,) = struct.unpack_from(">h", body, pos); pos += 2 + tlen
        (nparts,) = struct.unpack_from(">i", body, pos); pos += 4
        for _ in range(nparts):
            _, error, _, _ = struct.unpack_from(">ihqq", body, pos); pos += 22
            codes.append(error)
            (naborted,) = struct.unpack_from(">i", body, pos); pos += 4
            pos += max(0, naborted) * 16
            (rlen,) = struct.unpack_from(">i", body, pos); pos += 4 + max(0, rlen)
    return codes
