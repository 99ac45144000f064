"""TLS against plaintext at a fixed produce rate, and the connection (handshake) rate (docs/benchmarks.md, issue 14).

    FLOE_BROKER_BIN=.build/release/floe-broker python3 Tests/SecuritySuite/tls_rate_bench.py [--mibps 20] [--seconds 15] [--runs 2] [--connections 300]

One broker, a PLAINTEXT internal listener and an SSL external listener (same process, same storage).
1. Produce: one confluent-kafka producer (acks=all, linger.ms 5, 1 KiB random values) paced to
   `--mibps` for `--seconds`, alternating plaintext and TLS; prints delivered MiB/s and the p50/p99
   of each record's latency (produce() call to delivery report).
2. Connections: `--connections` sequential new connections each doing connect (+ TLS handshake,
   verifying the server certificate) + ApiVersions v0 request and response + close; prints
   connections per second for plaintext and TLS.
"""
import argparse
import os
import shutil
import socket
import ssl
import statistics
import struct
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import tls_support  # noqa: E402

API_VERSIONS_V0 = struct.pack(">ihhih", 2 + 2 + 4 + 2 + 5, 18, 0, 1, 5) + b"bench"


def paced_produce(ck, bootstrap: str, config: dict, mibps: float, seconds: float) -> tuple[float, float, float]:
    topic = f"rate-{uuid.uuid4().hex[:8]}"
    producer = ck.Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, **config})
    value = os.urandom(1024)
    producer.produce(topic, value=value)  # topic creation and connection set-up outside the timing
    producer.flush(60)
    latencies: list[float] = []

    def report(started: float):
        def delivered(err, _msg):
            if err is not None:
                raise SystemExit(f"delivery failed: {err}")
            latencies.append(time.monotonic() - started)
        return delivered

    rate = mibps * 1024  # records per second
    start = time.monotonic()
    sent = 0
    while True:
        now = time.monotonic()
        elapsed = now - start
        if elapsed >= seconds:
            break
        due = int(rate * elapsed)
        while sent < due:
            producer.produce(topic, value=value, on_delivery=report(time.monotonic()))
            sent += 1
        producer.poll(0.001)
    if producer.flush(60):
        raise SystemExit("records left unsent")
    elapsed = time.monotonic() - start
    latencies.sort()
    return sent / 1024 / elapsed, latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000


def connection_rate(port: int, count: int, context: ssl.SSLContext | None) -> float:
    start = time.monotonic()
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        s = context.wrap_socket(raw, server_hostname="localhost") if context else raw
        with s:
            s.sendall(API_VERSIONS_V0)
            head = s.recv(4)
            if len(head) < 4:
                raise SystemExit("no ApiVersions answer")
            size = struct.unpack(">i", head)[0]
            got = 0
            while got < size:
                chunk = s.recv(size - got)
                if not chunk:
                    raise SystemExit("short ApiVersions answer")
                got += len(chunk)
    return count / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mibps", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--connections", type=int, default=300)
    args = parser.parse_args()
    import confluent_kafka as ck
    broker, tls_bootstrap, tls, directory = tls_support.plaintext_and_tls_broker("floe-tls-rate-")
    try:
        for run in range(args.runs):
            for name, bootstrap, config in (("plaintext", broker.bootstrap, {}), ("TLS", tls_bootstrap, tls)):
                mib, p50, p99 = paced_produce(ck, bootstrap, config, args.mibps, args.seconds)
                print(f"run {run + 1} {name:9}: {mib:.1f} MiB/s delivered (target {args.mibps}), p50 {p50:.1f} ms, p99 {p99:.1f} ms", flush=True)
        context = ssl.create_default_context(cafile=tls["ssl.ca.location"])
        plain = connection_rate(broker.port, args.connections, None)
        secure = connection_rate(int(tls_bootstrap.rsplit(":", 1)[1]), args.connections, context)
        print(f"connections/s ({args.connections} sequential, connect + ApiVersions + close): plaintext {plain:.0f}, "
              f"TLS (with handshake) {secure:.0f}, TLS/plaintext {secure / plain:.2f}")
    finally:
        broker.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
