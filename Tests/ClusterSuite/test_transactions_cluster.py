"""Transactions on three brokers: the partitions of one transaction are owned by different
brokers, so the transaction coordinator writes most markers through WriteTxnMarkers to their
owners, and the group's offsets through its coordinator. read_committed sees exactly the
committed transactions; the group sees the offsets of the committed one only."""
import uuid

import pytest

from conftest import _cluster, create_topic, wait_for

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


def _txn_produce_body(tid: str, topic: str, pid: int, epoch: int) -> bytes:
    import struct
    from cluster_wire import kafka_wire
    batch = kafka_wire.transactional_batch(pid, epoch, b"z")

    def s(x):
        return struct.pack(">h", len(x)) + x.encode()
    return s(tid) + struct.pack(">hii", -1, 10000, 1) + s(topic) + struct.pack(">ii", 1, 0) + struct.pack(">i", len(batch)) + batch


@pytest.mark.parametrize("storage_kind", ["file"], indirect=True)
def test_produce_outside_the_transaction_is_refused_by_an_owner_that_is_not_the_coordinator(cluster):
    """The partition's owner is not the transaction coordinator: it verifies the producer's
    first batch with the coordinator (AddPartitionsToTxn v4, verifyOnly) and refuses it with
    INVALID_TXN_STATE, as Kafka 4 does."""
    import struct
    import cluster_wire
    topic = "verify-" + uuid.uuid4().hex[:6]
    create_topic(cluster, topic, PARTITIONS)
    leaders = cluster.leaders(topic)
    any_broker = cluster.brokers[next(iter(cluster.live()))]
    for attempt in range(20):
        tid = f"verify-{attempt}-" + uuid.uuid4().hex[:4]
        with cluster_wire.connect("127.0.0.1", any_broker.port) as sock:
            r = cluster_wire._exchange(sock, 10, 1, cluster_wire._string(tid) + struct.pack(">b", 1), 31)
        _throttle, error = r.take("ih")
        r.string()
        coordinator = r.take("i")
        assert error == 0, f"FindCoordinator for transactional id {tid} answered error {error}"
        others = [p for p, owner in leaders.items() if owner != coordinator]
        if others:
            break
    else:
        pytest.fail(f"every partition of {topic} is on the coordinator of 20 random ids: {leaders}")
    partition = others[0]
    with cluster_wire.connect("127.0.0.1", cluster.brokers[coordinator].port) as sock:
        r = cluster_wire._exchange(sock, 22, 1, cluster_wire._string(tid) + struct.pack(">i", 10000), 32)
        _throttle, error, pid, epoch = r.take("ihqh")
    assert error == 0, f"InitProducerId answered error {error}"
    body = _txn_produce_body(tid, topic, pid, epoch).replace(struct.pack(">ii", 1, 0), struct.pack(">ii", 1, partition), 1)
    with cluster_wire.connect("127.0.0.1", cluster.brokers[leaders[partition]].port) as sock:
        r = cluster_wire._exchange(sock, 0, 3, body, 33)
        r.take("i")
        r.string()
        r.take("i")
        index, code = r.take("ih")
    assert (index, code) == (partition, 48), (
        f"broker {leaders[partition]} (coordinator {coordinator}) answered error {code} for a transactional batch to "
        f"{topic}-{index} outside the transaction, expected INVALID_TXN_STATE (48)")


def test_commit_survives_sigkill_of_the_coordinator_broker(cluster_s3):
    """s3 (object WAL): a transaction is open with records on every broker when the broker
    coordinating its id is killed. The id moves to another broker, which reads the open
    transaction from the bucket; the producer's commit completes there and read_committed sees
    every record of the transaction exactly once."""
    import signal
    import struct
    import cluster_wire
    from confluent_kafka import Producer
    cluster = cluster_s3
    topic = "txnkill-" + uuid.uuid4().hex[:6]
    create_topic(cluster, topic, PARTITIONS)
    tid = "kill-" + uuid.uuid4().hex[:6]
    p = Producer({"bootstrap.servers": cluster.bootstrap(), "transactional.id": tid, "linger.ms": 2,
                  "reconnect.backoff.max.ms": 500, "transaction.timeout.ms": 60000})
    p.init_transactions(30)
    p.begin_transaction()
    batch = [f"k{i}" for i in range(PARTITIONS * 10)]
    for i, v in enumerate(batch):
        p.produce(topic, value=v.encode(), partition=i % PARTITIONS)
    assert p.flush(30) == 0, "records of the open transaction not delivered"
    any_broker = cluster.brokers[next(iter(cluster.live()))]
    with cluster_wire.connect("127.0.0.1", any_broker.port) as sock:
        r = cluster_wire._exchange(sock, 10, 1, cluster_wire._string(tid) + struct.pack(">b", 1), 41)
    _throttle, error = r.take("ih")
    r.string()
    coordinator = r.take("i")
    assert error == 0, f"FindCoordinator for {tid} answered error {error}"
    cluster.brokers[coordinator].expect_exit = True
    cluster.kill(coordinator, signal.SIGKILL)
    p.commit_transaction(90)
    survivors = [n for n in cluster.live() if n != coordinator]
    got = _read_committed(cluster.bootstrap(survivors), topic, len(batch))
    assert got == sorted(batch), f"read_committed saw {len(got)} of {len(batch)} records after the coordinator's SIGKILL"


@pytest.fixture
def cluster_unstable(tmp_path):
    """Three brokers (local directory) started with `--set unstable.api.versions.enable=true`."""
    c = _cluster("file", tmp_path, settings={"unstable.api.versions.enable": "true"})
    yield c
    crashed = c.teardown()
    assert not crashed, "; ".join(crashed) + "\n" + c.logs()


def test_end_txn_v5_commits_partitions_and_a_group_on_other_brokers(cluster_unstable):
    """EndTxn v5 (KIP-890 part 2) on three brokers, over the raw wire: the transaction's
    partitions are spread over the brokers and its group is coordinated by a broker other than
    the transaction coordinator, so the markers (at the bumped epoch) and the group's commit go
    through WriteTxnMarkers. read_committed sees every record, the group gets the offset its
    TxnOffsetCommit wrote at the epoch before the bump, and the old epoch is fenced on another
    broker's partition."""
    import cluster_wire
    from cluster_wire import kafka_wire
    from confluent_kafka import Consumer, TopicPartition
    cluster = cluster_unstable
    topic = "v5span-" + uuid.uuid4().hex[:6]
    create_topic(cluster, topic, PARTITIONS)
    leaders = cluster.leaders(topic)
    asker = cluster.brokers[next(iter(cluster.live()))]
    tid = "v5span-" + uuid.uuid4().hex[:6]
    error, coordinator, _, _ = cluster_wire.find_coordinator("127.0.0.1", asker.port, tid, key_type=1)
    assert error == 0, f"FindCoordinator for transactional id {tid} answered error {error}"
    for _ in range(40):
        group = "v5g-" + uuid.uuid4().hex[:6]
        error, group_coordinator, _, _ = cluster_wire.find_coordinator("127.0.0.1", asker.port, group)
        assert error == 0, f"FindCoordinator for group {group} answered error {error}"
        if group_coordinator != coordinator:
            break
    else:
        pytest.fail(f"40 random groups are all coordinated by broker {coordinator}, the transaction coordinator")
    others = [p for p, owner in leaders.items() if owner != coordinator]
    assert others, f"every partition of {topic} is on the coordinator {coordinator}: {leaders}"

    conns = {node: kafka_wire.RawTxnProducer(cluster.brokers[node].address, tid) for node in cluster.live()}
    try:
        txn = conns[coordinator]
        pid, e0 = txn.init()
        for p in range(PARTITIONS):
            assert txn.add(pid, e0, topic, p) == 0
        assert txn.add_offsets(pid, e0, group) == 0
        for p, owner in leaders.items():
            assert conns[owner].produce(pid, e0, topic, p, b"v5-%d" % p, sequence=0) == 0, f"produce to {topic}-{p} on broker {owner}"
        assert conns[group_coordinator].commit_offset(pid, e0, group, topic, 0, 42) == 0
        err, pid1, e1 = txn.end(pid, e0, commit=True)
        assert (err, pid1, e1) == (0, pid, e0 + 1), f"EndTxn v5 answered error {err}, producer {pid1} epoch {e1}"
        late = others[0]
        assert conns[leaders[late]].produce(pid, e0, topic, late, b"late", sequence=1) == 47, (
            f"a produce of the old epoch to {topic}-{late} on broker {leaders[late]} must get INVALID_PRODUCER_EPOCH")
    finally:
        for c in conns.values():
            c.close()
    got = _read_committed(cluster.bootstrap(), topic, PARTITIONS)
    assert got == sorted(f"v5-{p}" for p in range(PARTITIONS)), f"read_committed saw {got}"
    c = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": group, "enable.auto.commit": False})
    try:
        off = c.committed([TopicPartition(topic, 0)], timeout=30)[0].offset
    finally:
        c.close()
    assert off == 42, (f"group {group} (coordinator {group_coordinator}, transaction coordinator {coordinator}) has offset "
                       f"{off}: the committed transaction's 42 must be applied")
