"""Key compaction (cleanup.policy=compact) with confluent-kafka: many updates over 1,000 keys
converge to one record per key; a consumer from the beginning sees the newest value of every key;
tombstones disappear after delete.retention.ms; a group committed inside a removed gap resumes;
keyless records are refused with INVALID_RECORD. The broker's key compaction interval
(log.cleaner.backoff.ms, dynamic) is set to 200 ms so the test does not wait long."""
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from conftest import admin, create_topic, wait_for

KEYS = 1000
ROUNDS = 30
DELETED = 100  # keys 0..99 get a tombstone after the updates
RETENTION_MS = 3000


def _set_cleaner_backoff(bootstrap: str, ms: int) -> None:
    a = admin(bootstrap)
    broker_ids = list(a.list_topics(timeout=10).brokers.keys())
    assert broker_ids, "metadata names no broker"
    for b in broker_ids:
        res = ConfigResource(ConfigResource.Type.BROKER, str(b), incremental_configs=[
            ConfigEntry("log.cleaner.backoff.ms", str(ms), incremental_operation=AlterConfigOpType.SET)])
        for f in a.incremental_alter_configs([res]).values():
            f.result(timeout=30)


def _produce(bootstrap: str, topic: str, records) -> list:
    """Produces (key, value) pairs; returns the delivery errors."""
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})

    def report(err, msg):
        if err is not None:
            errors.append(err)
    for key, value in records:
        while True:
            try:
                p.produce(topic, key=key, value=value, partition=0, on_delivery=report)
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(60) == 0, "producer did not deliver everything within 60 s"
    return errors


def _read_all(bootstrap: str, topic: str, timeout: float = 30.0):
    """Every record of partition 0 from offset 0 until the consumer reaches the high watermark
    (librdkafka's end-of-partition event fires only there): [(partition, offset, key, value)]."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "read-" + uuid.uuid4().hex[:6],
                  "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        return out
                    raise AssertionError(f"consumer error on {topic}: {m.error()}")
                out.append((m.partition(), m.offset(), m.key(), m.value()))
        last = out[-1][1] if out else None
        raise AssertionError(f"did not reach the end of {topic} in {timeout:.0f} s: {len(out)} records, last offset {last}")
    finally:
        c.close()


def _newest(records):
    """key -> newest value (None for a tombstone), and the count of records per key."""
    newest, counts = {}, {}
    for _, _, key, value in sorted(records, key=lambda r: r[1]):
        newest[key] = value
        counts[key] = counts.get(key, 0) + 1
    return newest, counts


def test_compaction_converges_and_expires_tombstones(broker, topic_name):
    bootstrap = broker.bootstrap
    _set_cleaner_backoff(bootstrap, 200)
    create_topic(bootstrap, topic_name, 1, config={
        "cleanup.policy": "compact", "delete.retention.ms": str(RETENTION_MS), "min.cleanable.dirty.ratio": "0.01"})

    # Keyless records are refused on a compacted topic (Kafka's INVALID_RECORD).
    errors = _produce(bootstrap, topic_name, [(None, b"no key")])
    assert [e.code() for e in errors] == [KafkaError.INVALID_RECORD], f"keyless record: expected INVALID_RECORD, got {errors}"

    updates = [(f"key-{k:04d}".encode(), f"v{r}-{k}".encode()) for r in range(ROUNDS) for k in range(KEYS)]
    assert _produce(bootstrap, topic_name, updates) == [], "updates were refused"
    tombstones = [(f"key-{k:04d}".encode(), None) for k in range(DELETED)]
    assert _produce(bootstrap, topic_name, tombstones) == [], "tombstones were refused"
    total = len(updates) + len(tombstones)
    expected = {f"key-{k:04d}".encode(): f"v{ROUNDS - 1}-{k}".encode() for k in range(DELETED, KEYS)}

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm-" + uuid.uuid4().hex[:6]})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)
    finally:
        c.close()
    assert (low, high) == (0, total), f"watermarks before cleaning: {(low, high)}, expected (0, {total})"

    seen = {}

    def snapshot():
        records = _read_all(bootstrap, topic_name)
        newest, counts = _newest(records)
        # Whatever the cleaner has done so far, the newest value of every key is there.
        for k, v in expected.items():
            assert newest.get(k) == v, f"key {k!r}: newest value {newest.get(k)!r}, expected {v!r}"
        for k in range(DELETED):
            key = f"key-{k:04d}".encode()
            assert newest.get(key) is None, f"deleted key {key!r} shows value {newest.get(key)!r}"
        seen["records"], seen["counts"] = records, counts
        return records, counts

    # Converges to one record per key (900 values and, until they expire, 100 tombstones).
    def converged():
        records, counts = snapshot()
        return len(records) <= KEYS and max(counts.values()) == 1
    wait_for(converged, 45, f"{total} updates over {KEYS} keys to converge to one record per key "
             f"(last: {len(seen.get('records', []))} records)", interval=0.5)

    # Tombstones disappear after delete.retention.ms.
    def tombstones_gone():
        records, _ = snapshot()
        return len(records) == KEYS - DELETED and all(v is not None for _, _, _, v in records)
    wait_for(tombstones_gone, 30, f"tombstones to expire after {RETENTION_MS} ms "
             f"(last: {len(seen.get('records', []))} records)", interval=0.5)

    # Offsets are preserved: the high watermark and log start are unchanged.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "gap-" + uuid.uuid4().hex[:6],
                  "enable.auto.commit": False, "auto.offset.reset": "error"})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)
        assert (low, high) == (0, total), f"watermarks after cleaning: {(low, high)}, expected (0, {total})"
        # A group committed inside a removed gap (offset 5 was superseded) resumes at the next record.
        kept = sorted(o for _, o, _, _ in seen["records"])
        assert 5 not in kept, "offset 5 (a superseded update) is still there"
        c.commit(offsets=[TopicPartition(topic_name, 0, 5)], asynchronous=False)
        c.subscribe([topic_name])
        first = None
        deadline = time.monotonic() + 30
        while first is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, f"consumer resumed inside a gap got an error: {m.error()}"
            first = m.offset()
        want = min(o for o in kept if o >= 5)
        assert first == want, f"resumed at {first}, expected {want} (the first kept offset after the gap at 5)"
    finally:
        c.close()
