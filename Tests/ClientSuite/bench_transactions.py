"""Transactional against plain (idempotent) produce throughput, same load, same run.

Method: one broker (started here with --broker, file storage in a temporary directory, or an
existing one with --bootstrap); one confluent-kafka producer per mode, acks=all, idempotent,
linger.ms=5; RECORDS records of SIZE bytes round-robin over PARTITIONS partitions of a fresh
topic per mode. The transactional producer commits every TXN_RECORDS records. Each mode runs
ROUNDS times, alternating, and the median is reported. The figure judged is the ratio
transactional / plain (1.0 = transactions cost nothing).

Usage: python3 Tests/ClientSuite/bench_transactions.py --broker .build/release/floe-broker
       python3 Tests/ClientSuite/bench_transactions.py --bootstrap 127.0.0.1:9092
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import kafka_wire  # noqa: E402


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "PythonSupport"))
from floe_suite import free_port  # noqa: E402,F401  (never hands out one port twice in a process)


def create_topic(bootstrap, name, partitions):
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        t = a.list_topics(name, timeout=10).topics.get(name)
        if t and t.error is None and len(t.partitions) == partitions and all(p.leader >= 0 for p in t.partitions.values()):
            return
        time.sleep(0.05)
    raise RuntimeError(f"topic {name} not ready")


def run(bootstrap, transactional, records, size, partitions, txn_records):
    from confluent_kafka import Producer
    topic = f"bench-{'txn' if transactional else 'plain'}-{uuid.uuid4().hex[:6]}"
    create_topic(bootstrap, topic, partitions)
    conf = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5,
            "queue.buffering.max.messages": 200000}
    if transactional:
        conf["transactional.id"] = "bench-" + uuid.uuid4().hex[:6]
    p = Producer(conf)
    errors = []
    value = b"x" * size

    def cb(err, _msg):
        if err is not None:
            errors.append(err)
    if transactional:
        p.init_transactions(30)
    start = time.monotonic()
    i = 0
    while i < records:
        if transactional:
            p.begin_transaction()
        n = min(txn_records, records - i)
        for j in range(n):
            while True:
                try:
                    p.produce(topic, value=value, partition=(i + j) % partitions, on_delivery=cb)
                    break
                except BufferError:
                    p.poll(0.01)
        i += n
        if transactional:
            p.commit_transaction(60)
        else:
            p.poll(0)
    p.flush(60)
    elapsed = time.monotonic() - start
    if errors:
        raise RuntimeError(f"{len(errors)} delivery errors, first: {errors[0]}")
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", help="floe-broker binary to start (file storage in a temporary directory)")
    ap.add_argument("--bootstrap", help="an already running broker")
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--txn-records", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    proc, tmp = None, None
    if args.bootstrap:
        bootstrap = args.bootstrap
    elif args.broker:
        tmp = tempfile.TemporaryDirectory()
        bootstrap = f"127.0.0.1:{free_port()}"
        log = open(os.path.join(tmp.name, "broker.log"), "wb")
        proc = subprocess.Popen([args.broker, "--listen", bootstrap, "--advertise", bootstrap, "--storage", f"file://{tmp.name}/data"],
                                stdout=log, stderr=subprocess.STDOUT)
        host, port = bootstrap.rsplit(":", 1)
        kafka_wire.wait_serving(host, int(port), time.monotonic() + 30, alive=lambda: proc.poll() is None)
    else:
        ap.error("give --broker or --bootstrap")
    try:
        print(f"method: {args.records} records of {args.size} B over {args.partitions} partitions, acks=all, idempotent, "
              f"linger.ms=5; transactional commits every {args.txn_records} records; {args.rounds} rounds alternating, median")
        times = {"plain": [], "transactional": []}
        for _ in range(args.rounds):
            times["plain"].append(run(bootstrap, False, args.records, args.size, args.partitions, args.txn_records))
            times["transactional"].append(run(bootstrap, True, args.records, args.size, args.partitions, args.txn_records))
        mib = args.records * args.size / (1 << 20)
        rates = {}
        for mode, ts in times.items():
            t = statistics.median(ts)
            rates[mode] = args.records / t
            print(f"{mode:>13}: {rates[mode]:,.0f} records/s, {mib / t:.2f} MiB/s (median of {', '.join(f'{x:.2f}' for x in ts)} s)")
        print(f"ratio transactional/plain: {rates['transactional'] / rates['plain']:.2f}")
    finally:
        if proc:
            proc.terminate()
            proc.wait(30)
        if tmp:
            tmp.cleanup()


if __name__ == "__main__":
    main()
