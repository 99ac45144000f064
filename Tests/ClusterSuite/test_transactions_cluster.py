"""Transactions on three brokers: the partitions of one transaction are owned by different
brokers, so the transaction coordinator writes most markers through WriteTxnMarkers to their
owners, and the group's offsets through its coordinator. read_committed sees exactly the
committed transactions; the group sees the offsets of the committed one only."""
import uuid

import pytest

from conftest import create_topic, wait_for

PARTITIONS = 6


def _read_committed(bootstrap, topic, expected):
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "verify-" + uuid.uuid4().hex[:6], "enable.auto.commit": False,
                  "enable.partition.eof": True, "isolation.level": "read_committed"})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        out, eof = [], set()

        def more():
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                        continue
                    raise AssertionError(f"consumer error on {topic}: {m.error()}")
                eof.discard(m.partition())
                out.append(m.value().decode())
            return len(out) >= expected and len(eof) == PARTITIONS
        wait_for(more, 60, lambda: f"read_committed of {topic}: {len(out)} of {expected} records, partitions at end {sorted(eof)}")
        return sorted(out)
    finally:
        c.close()


@pytest.mark.parametrize("storage_kind", ["file"], indirect=True)
def test_transaction_spanning_brokers(cluster):
    from confluent_kafka import Consumer, Producer, TopicPartition
    topic = "txn-" + uuid.uuid4().hex[:6]
    create_topic(cluster, topic, PARTITIONS)
    owners = set(cluster.leaders(topic).values())
    assert len(owners) > 1, f"the topic's partitions are all on broker {owners}: the test needs them spread"
    bootstrap = cluster.bootstrap()
    groups = ["g-" + uuid.uuid4().hex[:6] for _ in range(3)]  # likely coordinated by different brokers
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": "span-" + uuid.uuid4().hex[:6], "linger.ms": 2})
    p.init_transactions(30)
    committed = []
    for t, commit in enumerate([True, False, True]):
        p.begin_transaction()
        batch = [f"t{t}-{i}" for i in range(PARTITIONS * 5)]
        for i, v in enumerate(batch):
            p.produce(topic, value=v.encode(), partition=i % PARTITIONS)
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": groups[t]})
        p.send_offsets_to_transaction([TopicPartition(topic, 0, 100 + t)], c.consumer_group_metadata(), 30)
        c.close()
        if commit:
            p.commit_transaction(30)
            committed += batch
        else:
            p.abort_transaction(30)
    got = _read_committed(bootstrap, topic, len(committed))
    assert got == sorted(committed), (f"read_committed saw {len(got)} records, expected {len(committed)}; extra "
                                      f"{sorted(set(got) - set(committed))[:5]}")
    for t, g in enumerate(groups):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": g, "enable.auto.commit": False})
        try:
            off = c.committed([TopicPartition(topic, 0)], timeout=30)[0].offset
        finally:
            c.close()
        want = 100 + t if t != 1 else -1001
        assert off == want, f"group {g} of transaction {t} has committed offset {off}, expected {want}"
