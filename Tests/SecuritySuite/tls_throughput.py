"""Produce throughput over TLS and plaintext, side by side (docs/benchmarks.md).

    FLOE_BROKER_BIN=.build/release/floe-broker python3 Tests/SecuritySuite/tls_throughput.py [--runs 3] [--mib 256]

Starts one broker with a PLAINTEXT internal listener and a SSL external listener (same process,
same storage), then alternates runs of one confluent-kafka producer (acks=all, lz4 off, 1 KiB
values) against each; prints MiB/s per run and the TLS/plaintext ratio of the medians.
"""
import argparse
import os
import shutil
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import tls_support  # noqa: E402


def produce(ck, bootstrap: str, config: dict, mib: int) -> float:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    producer = ck.Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "batch.size": 1 << 20,
                            "queue.buffering.max.kbytes": 1 << 20, **config})
    value = os.urandom(1024)
    count = mib * 1024
    producer.produce(topic, value=value)  # topic creation and connection set-up outside the timing
    producer.flush(60)
    start = time.monotonic()
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, value=value)
                break
            except BufferError:
                producer.poll(0.01)
    remaining = producer.flush(120)
    elapsed = time.monotonic() - start
    if remaining:
        raise SystemExit(f"{remaining} records unsent")
    return mib / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    import confluent_kafka as ck
    broker, tls_bootstrap, tls, directory = tls_support.plaintext_and_tls_broker("floe-tls-bench-")
    try:
        results = {"plaintext": [], "tls": []}
        for run in range(args.runs):
            results["plaintext"].append(produce(ck, broker.bootstrap, {}, args.mib))
            results["tls"].append(produce(ck, tls_bootstrap, tls, args.mib))
            print(f"run {run + 1}: plaintext {results['plaintext'][-1]:.1f} MiB/s, TLS {results['tls'][-1]:.1f} MiB/s", flush=True)
        p, t = statistics.median(results["plaintext"]), statistics.median(results["tls"])
        print(f"median: plaintext {p:.1f} MiB/s, TLS {t:.1f} MiB/s, TLS/plaintext {t / p:.2f}")
    finally:
        broker.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
