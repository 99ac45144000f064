"""confluent-kafka checks, run as a separate process so that the same code runs on both
bindings: the PyPI wheel (confluent-kafka 2.16.1, librdkafka 2.16.0) under the suite's python3,
and Debian's python3-confluent-kafka (1.7.0, librdkafka 2.0.2) under /usr/bin/python3.

Usage: confluent_checks.py CHECK BOOTSTRAP TOPIC [CODEC]
Checks: idempotent, group, admin, partitions, compression. Exits 0 and prints "OK ..." when every assertion
holds; otherwise the AssertionError names what differed.
"""
import os
import sys
import time
import uuid

import confluent_kafka
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka_wire  # noqa: E402

TIMEOUT = 60.0
# The wheel's version() is a string; Debian 1.7.0's is a (string, int) tuple.
BINDING = (f"confluent-kafka {getattr(confluent_kafka, '__version__', None) or confluent_kafka.version()[0]}"
           f" / librdkafka {confluent_kafka.libversion()[0]}")


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def partition_count(admin, topic):
    t = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
    if t is None or t.error is not None:
        return -1
    return sum(1 for p in t.partitions.values() if p.leader >= 0)


def create_topic(admin, topic, partitions, config=None):
    fs = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
                             operation_timeout=30, request_timeout=30)
    fs[topic].result(timeout=TIMEOUT)
    wait_for(lambda: partition_count(admin, topic) == partitions, TIMEOUT,
             f"{topic} to have {partitions} partitions with leaders")


def produce(bootstrap, topic, records, extra):
    """records: [(partition, key, value)]; returns delivery reports [(partition, offset, key, value)]
    in the order they arrived; fails on any delivery error."""
    p = Producer({"bootstrap.servers": bootstrap, **extra})
    reports, errors = [], []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"{msg.key()}: {err}")
        else:
            reports.append((msg.partition(), msg.offset(), msg.key(), msg.value()))

    for part, key, value in records:
        while True:
            try:
                p.produce(topic, key=key, value=value, partition=part, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)  # local queue full: serve delivery reports, then retry
        p.poll(0)
    left = p.flush(TIMEOUT)
    assert left == 0, f"{left} records still unacknowledged after {TIMEOUT:.0f} s"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:3]}"
    return reports


def consume_assigned(bootstrap, topic, partitions, expected):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-" + uuid.uuid4().hex[:6],
                  "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        return _drain(c, topic, partitions, expected)
    finally:
        c.close()


def _drain(c, topic, partitions, expected):
    """Consumes until `expected` records arrived and every partition reported its end."""
    out, eof = [], set()
    deadline = time.monotonic() + TIMEOUT
    while not (len(out) >= expected and len(eof) == partitions):
        assert time.monotonic() < deadline, \
            f"consumed {len(out)} of {expected} records of {topic}; partitions at end: {sorted(eof)}"
        for m in c.consume(num_messages=5000, timeout=0.5):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    continue
                raise AssertionError(f"consumer error on {topic}: {m.error()}")
            eof.discard(m.partition())
            out.append((m.partition(), m.offset(), m.key(), m.value()))
    return out


def check_idempotent(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    create_topic(admin, topic, 3)
    n = 20000
    records = [(i % 3, f"k{i:06d}".encode(), f"value {i} {'x' * (i % 97)}".encode()) for i in range(n)]
    reports = produce(bootstrap, topic, records,
                      {"enable.idempotence": True, "acks": "all", "linger.ms": 5, "max.in.flight": 5})
    assert len(reports) == n, f"{len(reports)} delivery reports for {n} records"
    for part in range(3):
        mine = [r for r in reports if r[0] == part]
        offsets = sorted(r[1] for r in mine)
        assert offsets == list(range(len(mine))), f"partition {part}: acknowledged offsets are not 0..{len(mine) - 1}"
        in_offset_order = [r[2] for r in sorted(mine, key=lambda r: r[1])]
        assert in_offset_order == [k for p, k, _ in records if p == part], \
            f"partition {part}: records are not stored in produce order"
    consumed = consume_assigned(bootstrap, topic, 3, n)
    assert sorted(consumed) == sorted(reports), \
        f"consumed records differ from acknowledged ones ({len(consumed)} consumed, {len(reports)} acknowledged)"
    return f"{n} idempotent records acknowledged and read back"


def check_group(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    create_topic(admin, topic, 3)
    group = "group-" + topic
    first = [(i % 3, f"a{i:05d}".encode(), f"first {i}".encode()) for i in range(3000)]
    produce(bootstrap, topic, first, {"acks": "all", "linger.ms": 5})
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "enable.partition.eof": True, "session.timeout.ms": 10000}
    c = Consumer(conf)
    try:
        c.subscribe([topic])
        got = _drain(c, topic, 3, len(first))
        c.commit(asynchronous=False)
        committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(3)], timeout=30)}
    finally:
        c.close()
    assert sorted(k for _, _, k, _ in got) == sorted(k for _, k, _ in first), "first pass read other records than produced"
    ends = {p: sum(1 for q, _, _ in first if q == p) for p in range(3)}
    assert committed == ends, f"committed offsets {committed}, expected the partition ends {ends}"

    second = [(i % 3, f"b{i:05d}".encode(), f"second {i}".encode()) for i in range(1500)]
    produce(bootstrap, topic, second, {"acks": "all", "linger.ms": 5})
    c = Consumer(conf)
    try:
        c.subscribe([topic])
        got2 = _drain(c, topic, 3, len(second))
    finally:
        c.close()
    keys2 = sorted(k for _, _, k, _ in got2)
    assert keys2 == sorted(k for _, k, _ in second), \
        f"the resumed consumer read {len(got2)} records ({sum(1 for k in keys2 if k.startswith(b'a'))} from before the commit), expected exactly the {len(second)} new ones"
    return f"group {group}: commit at {committed}, resumed with exactly the {len(second)} new records"


def _config_value(admin, topic, name):
    res = ConfigResource(ConfigResource.Type.TOPIC if hasattr(ConfigResource, "Type") else "topic", topic)
    fs = admin.describe_configs([res], request_timeout=30)
    configs = list(fs.values())[0].result(timeout=TIMEOUT)
    entry = configs.get(name)
    return None if entry is None else entry.value


def check_admin(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    create_topic(admin, topic, 2, {"retention.ms": "3600000"})
    fs = admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)], request_timeout=30)
    try:
        fs[topic].result(timeout=TIMEOUT)
        raise AssertionError(f"creating {topic} a second time succeeded")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, f"second create of {topic}: {e}, expected TOPIC_ALREADY_EXISTS"

    v = _config_value(admin, topic, "retention.ms")
    assert v == "3600000", f"describe_configs {topic} retention.ms = {v!r}, created with 3600000"

    res = ConfigResource("topic", topic)
    if hasattr(admin, "incremental_alter_configs"):
        from confluent_kafka.admin import AlterConfigOpType, ConfigEntry
        res = ConfigResource("topic", topic, incremental_configs=[
            ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])
        fs, how = admin.incremental_alter_configs([res], request_timeout=30), "incremental_alter_configs"
    else:
        res.set_config("retention.ms", "7200000")
        fs, how = admin.alter_configs([res], request_timeout=30), "alter_configs"
    list(fs.values())[0].result(timeout=TIMEOUT)
    wait_for(lambda: _config_value(admin, topic, "retention.ms") == "7200000", TIMEOUT,
             f"{how} retention.ms=7200000 on {topic} to show in describe_configs")

    fs = admin.delete_topics([topic], operation_timeout=30, request_timeout=30)
    fs[topic].result(timeout=TIMEOUT)
    wait_for(lambda: topic not in admin.list_topics(timeout=10).topics, TIMEOUT, f"{topic} to disappear from metadata")
    return f"created, described, altered ({how}) and deleted {topic}"


def check_partitions(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    create_topic(admin, topic, 2)
    fs = admin.create_partitions([NewPartitions(topic, 4)], request_timeout=30)
    fs[topic].result(timeout=TIMEOUT)
    wait_for(lambda: partition_count(admin, topic) == 4, TIMEOUT, f"{topic} to have 4 partitions after create_partitions")
    records = [(p, f"p{p}".encode(), f"to partition {p}".encode()) for p in range(4)]
    reports = produce(bootstrap, topic, records, {"acks": "all"})
    assert sorted((r[0], r[1]) for r in reports) == [(p, 0) for p in range(4)], \
        f"one record to each of the 4 partitions should land at offset 0: {reports}"
    return f"{topic} extended from 2 to 4 partitions, all writable"


CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def check_compression(bootstrap, topic, codec):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    create_topic(admin, topic, 1)
    n = 5000
    records = [(0, f"k{i:05d}".encode(), (f"{codec} record {i} " + "compressible text " * (5 + i % 20)).encode())
               for i in range(n)]
    records[7] = (0, b"k00007", b"")  # an empty value among them
    reports = produce(bootstrap, topic, records, {"compression.type": codec, "linger.ms": 50, "acks": "all"})
    consumed = consume_assigned(bootstrap, topic, 1, n)
    assert sorted(consumed) == sorted(reports), f"{codec}: consumed records differ from acknowledged ones"
    assert [(k, v) for _, _, k, v in sorted(consumed)] == [(k, v) for _, k, v in records], \
        f"{codec}: records read back differ from those produced"
    # The broker stores and serves the batches as the client sent them (still compressed).
    host, _, port = bootstrap.rpartition(":")
    import socket
    batches, offset = [], 0
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.settimeout(30)
        while offset < n:
            got = kafka_wire.fetch_batch_attributes(s, topic, 0, offset, correlation_id=100 + len(batches))
            assert got, f"{codec}: Fetch v4 at offset {offset} returned no complete batch"
            batches += got
            offset = got[-1][0] + got[-1][1]
    codecs = {a & 7 for _, _, a in batches}
    assert codecs == {CODECS[codec]}, \
        f"{codec}: stored batches carry codec ids {sorted(codecs)}, the producer sent {CODECS[codec]}"
    return f"{codec}: {n} records in {len(batches)} batches, all stored with codec id {CODECS[codec]}"


def main():
    check, bootstrap, topic = sys.argv[1:4]
    fn = {"idempotent": check_idempotent, "group": check_group, "admin": check_admin, "partitions": check_partitions,
          "compression": check_compression}[check]
    result = fn(bootstrap, topic, *sys.argv[4:])
    print(f"OK [{BINDING}] {result}")


if __name__ == "__main__":
    main()
