#!/usr/bin/env python3
"""Writes the gzip fixtures for CompressionTests and RecordBatchTests.

Run once from this folder: `python3 make_fixtures.py`. The outputs are committed; the tests
never run Python. Everything here is built with the Python standard library only (gzip,
struct, json) and an independent CRC32C and varint encoder, so the Swift code is checked
against a second implementation rather than against itself.

Outputs:
  text.txt             plain text (deterministic)
  text.txt.gz          gzip.compress(text, mtime=0)
  multi-member.gz      two gzip members concatenated: "first member\n" + "second member\n"
  gzip-batch.bin       one RecordBatch v2, gzip-compressed records, with producer id/epoch/seq
  gzip-batch.json      what gzip-batch.bin holds, for the test to compare against
"""
import gzip
import json
import struct


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def varint(n: int) -> bytes:  # zigzag, 64-bit
    return uvarint((n << 1) ^ (n >> 63))


def nullable(b):
    return varint(-1) if b is None else varint(len(b)) + b


def record(offset_delta, ts_delta, key, value, headers):
    body = bytes([0]) + varint(ts_delta) + varint(offset_delta) + nullable(key) + nullable(value)
    body += varint(len(headers))
    for hk, hv in headers:
        hkb = hk.encode()
        body += varint(len(hkb)) + hkb + nullable(hv)
    return varint(len(body)) + body


text = "".join(f"line {i:04d}: the quick brown fox jumps over the lazy dog {i * 7919 % 1000}\n" for i in range(400))
with open("text.txt", "w") as f:
    f.write(text)
with open("text.txt.gz", "wb") as f:
    f.write(gzip.compress(text.encode(), mtime=0))
with open("multi-member.gz", "wb") as f:
    f.write(gzip.compress(b"first member\n", mtime=0) + gzip.compress(b"second member\n", mtime=0))

base_ts = 1_700_000_000_000
records = [
    (0, 0, b"key-0", b"value-0", [("trace", b"abc"), ("empty", b""), ("nullv", None)]),
    (1, 5, None, b"value with a null key", []),
    (2, 9, b"key-2", None, [("h", b"\x00\x01\x02")]),
    (3, 3, b"", b"x" * 3000, []),
]
payload = b"".join(record(*r) for r in records)
compressed = gzip.compress(payload, mtime=0)

producer_id, producer_epoch, base_sequence = 4242, 7, 100
attributes = 1  # gzip, create time, not transactional
after_crc = struct.pack(
    ">hiqqqhii", attributes, len(records) - 1, base_ts, base_ts + 9, producer_id, producer_epoch, base_sequence,
    len(records)) + compressed
crc = crc32c(after_crc)
partition_leader_epoch = 3
body = struct.pack(">ibI", partition_leader_epoch, 2, crc) + after_crc
batch = struct.pack(">qi", 0, len(body)) + body
with open("gzip-batch.bin", "wb") as f:
    f.write(batch)

with open("gzip-batch.json", "w") as f:
    json.dump({
        "crc": crc, "partitionLeaderEpoch": partition_leader_epoch, "producerId": producer_id,
        "producerEpoch": producer_epoch, "baseSequence": base_sequence, "baseTimestamp": base_ts,
        "maxTimestamp": base_ts + 9, "records": [
            {"offsetDelta": o, "timestampDelta": t, "key": None if k is None else k.hex(),
             "value": None if v is None else v.hex(),
             "headers": [{"key": hk, "value": None if hv is None else hv.hex()} for hk, hv in h]}
            for (o, t, k, v, h) in records],
    }, f, indent=1)
