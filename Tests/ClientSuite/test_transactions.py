"""Transactions with confluent-kafka (librdkafka 2.16): commit and abort mixed, read_committed
against read_uncommitted consumers, a zombie producer fenced, and a consume-transform-produce
loop (send_offsets_to_transaction) that ends with every input reflected exactly once in the
output although the broker is killed with SIGKILL mid-loop. KIP-890 part 2 (EndTxn v5, an epoch
bump per transaction, behind `unstable.api.versions.enable`) over the raw wire, since no client
here sends EndTxn v5."""
import signal
import time
import uuid

import pytest

import kafka_wire
from conftest import consume_all, create_topic, start_broker, wait_for

pytestmark = [pytest.mark.needs_broker_cmd]


def txn_producer(bootstrap, tid, **extra):
    from confluent_kafka import Producer
    return Producer({"bootstrap.servers": bootstrap, "transactional.id": tid, "linger.ms": 2,
                     "transaction.timeout.ms": 20000, "retry.backoff.ms": 100, "reconnect.backoff.max.ms": 500,
                     **extra})


def values(records):
    return sorted(v.decode() for _, _, _, v in records)


def test_commit_and_abort_mixed(broker, topic_name):
    check_commit_and_abort_mixed(broker, topic_name)


def check_commit_and_abort_mixed(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 3)
    p = txn_producer(broker.bootstrap, "mixed-" + uuid.uuid4().hex[:6])
    p.init_transactions(30)
    committed, aborted = [], []
    for t in range(6):
        p.begin_transaction()
        batch = [f"t{t}-r{i}" for i in range(30)]
        for i, v in enumerate(batch):
            p.produce(topic_name, value=v.encode(), partition=i % 3)
        p.flush(30)
        if t % 2 == 0:
            p.commit_transaction(30)
            committed += batch
        else:
            p.abort_transaction(30)
            aborted += batch
    # A last transaction left open: read_committed must not see it, read_uncommitted does.
    p.begin_transaction()
    open_batch = [f"open-r{i}" for i in range(9)]
    for i, v in enumerate(open_batch):
        p.produce(topic_name, value=v.encode(), partition=i % 3)
    p.flush(30)

    rc = consume_all(broker.bootstrap, topic_name, 3, len(committed), timeout=60,
                     extra={"isolation.level": "read_committed"})
    assert values(rc) == sorted(committed), (
        f"read_committed saw {len(rc)} records; extra: {sorted(set(values(rc)) - set(committed))[:5]}, "
        f"missing: {sorted(set(committed) - set(values(rc)))[:5]}")
    ru = consume_all(broker.bootstrap, topic_name, 3, len(committed) + len(aborted) + len(open_batch), timeout=60,
                     extra={"isolation.level": "read_uncommitted"})
    assert values(ru) == sorted(committed + aborted + open_batch), (
        f"read_uncommitted saw {len(ru)} records, expected {len(committed) + len(aborted) + len(open_batch)}")

    # Once the open transaction commits, read_committed sees it too.
    p.commit_transaction(30)
    rc2 = consume_all(broker.bootstrap, topic_name, 3, len(committed) + len(open_batch), timeout=60,
                      extra={"isolation.level": "read_committed"})
    assert values(rc2) == sorted(committed + open_batch), f"after the last commit read_committed saw {len(rc2)} records"


def test_zombie_producer_is_fenced(broker, topic_name):
    check_zombie_producer_is_fenced(broker, topic_name)


def check_zombie_producer_is_fenced(broker, topic_name):
    from confluent_kafka import KafkaError, KafkaException
    create_topic(broker.bootstrap, topic_name, 1)
    tid = "zombie-" + uuid.uuid4().hex[:6]
    old = txn_producer(broker.bootstrap, tid)
    old.init_transactions(30)
    old.begin_transaction()
    old.produce(topic_name, value=b"from-zombie", partition=0)
    old.flush(30)
    # A new instance with the same transactional id fences the old one (its open transaction is aborted).
    new = txn_producer(broker.bootstrap, tid)
    new.init_transactions(30)
    new.begin_transaction()
    new.produce(topic_name, value=b"from-new", partition=0)
    new.commit_transaction(30)

    with pytest.raises(KafkaException) as raised:
        old.produce(topic_name, value=b"from-zombie-2", partition=0)
        old.flush(10)
        old.commit_transaction(30)
    err = raised.value.args[0]
    assert err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH) or err.fatal(), (
        f"the zombie's commit failed with {err} (code {err.code()}), not a fencing error")

    rc = consume_all(broker.bootstrap, topic_name, 1, 1, timeout=60, extra={"isolation.level": "read_committed"})
    assert values(rc) == ["from-new"], f"read_committed saw {values(rc)}: the zombie's records must not be visible"


def test_produce_outside_the_transaction_partitions_is_refused(broker, topic_name):
    """Kafka 4: a transactional batch to a partition not added with AddPartitionsToTxn gets
    INVALID_TXN_STATE. librdkafka always adds partitions first, so this speaks the wire."""
    create_topic(broker.bootstrap, topic_name, 1)
    host, port = broker.bootstrap.rsplit(":", 1)
    tid = "raw-" + uuid.uuid4().hex[:6]
    code = produce_transactional_without_add(host, int(port), tid, topic_name)
    assert code == 48, f"Produce of a transactional batch outside the transaction answered error {code}, expected INVALID_TXN_STATE (48)"


def produce_transactional_without_add(host: str, port: int, tid: str, topic: str) -> int:
    """InitProducerId v1 for `tid`, then Produce v3 of one transactional batch to partition 0
    without AddPartitionsToTxn; returns the partition's error code."""
    w = kafka_wire.RawTxnProducer(f"{host}:{port}", tid)
    try:
        pid, epoch = w.init()
        return w.produce(pid, epoch, topic, 0, b"outside", sequence=0)
    finally:
        w.close()


INVALID_TXN_STATE, INVALID_PRODUCER_EPOCH, UNSUPPORTED_VERSION, PRODUCER_FENCED, TRANSACTION_ABORTABLE = 48, 47, 35, 90, 120


def raw_producer(broker, topic: str, partitions: int, end_txn_versions: tuple[int, int], prefix: str) -> kafka_wire.RawTxnProducer:
    """Checks the EndTxn versions ApiVersions advertises, creates `topic`, and connects a raw producer."""
    host, port = broker.bootstrap.rsplit(":", 1)
    advertised = kafka_wire.probe(host, int(port))[26]
    assert advertised == end_txn_versions, f"EndTxn advertised {advertised}, expected {end_txn_versions}"
    create_topic(broker.bootstrap, topic, partitions)
    return kafka_wire.RawTxnProducer(broker.bootstrap, prefix + uuid.uuid4().hex[:6])


@pytest.fixture(scope="module")
def unstable_broker(storage_kind, tmp_path_factory, log_dir):
    """A broker started with `--set unstable.api.versions.enable=true` (EndTxn v5 served)."""
    b = start_broker(storage_kind, str(tmp_path_factory.mktemp(f"txn-unstable-{storage_kind}")), log_dir, "txn-unstable",
                     settings={"unstable.api.versions.enable": "true"})
    yield b
    alive = b.running()
    b.stop()
    assert alive, f"the broker exited during the tests; log tail:\n{b.log_tail()}"


def test_end_txn_v5_bumps_the_epoch_of_every_transaction(unstable_broker, topic_name):
    """KIP-890 part 2 over the wire: each EndTxn v5 answers the next epoch, a retry of it gets the
    same answer, the old epoch is fenced (AddPartitionsToTxn, Produce), the next transactions run
    at the new epoch, read_committed sees exactly the committed records, and the group offsets a
    transaction commits (TxnOffsetCommit at the epoch before the bump) are applied, an aborted
    one's not. A partition not added to the transaction is TRANSACTION_ABORTABLE for Produce v11,
    INVALID_TXN_STATE for v3."""
    from confluent_kafka import Consumer, TopicPartition
    b = unstable_broker
    w = raw_producer(b, topic_name, 2, (0, 5), "v5-")  # EndTxn 0-5 advertised with the setting on
    group = "v5-" + uuid.uuid4().hex[:6]
    try:
        pid, e0 = w.init()
        assert w.add(pid, e0, topic_name, 0) == 0
        assert w.produce(pid, e0, topic_name, 0, b"c1", sequence=0) == 0
        err, pid1, e1 = w.end(pid, e0, commit=True)
        assert (err, pid1, e1) == (0, pid, e0 + 1), f"EndTxn v5 commit answered error {err}, producer {pid1} epoch {e1}"
        # The answer was lost: the same request again gets the same answer, without a second bump.
        assert w.end(pid, e0, commit=True) == (0, pid, e1), "a retried EndTxn v5 must be answered as the first was"
        # The old epoch is fenced at the coordinator and on the produce path.
        assert w.add(pid, e0, topic_name, 1) == PRODUCER_FENCED
        assert w.produce(pid, e0, topic_name, 0, b"zombie", sequence=1) == INVALID_PRODUCER_EPOCH

        # Transaction 2 at the new epoch, aborted (with an offset for the group).
        assert w.add(pid, e1, topic_name, 1) == 0
        assert w.produce(pid, e1, topic_name, 1, b"a2", sequence=0) == 0
        assert w.add_offsets(pid, e1, group) == 0
        assert w.commit_offset(pid, e1, group, topic_name, 0, 7) == 0
        err, _, e2 = w.end(pid, e1, commit=False)
        assert (err, e2) == (0, e1 + 1), f"EndTxn v5 abort answered error {err}, epoch {e2}"

        # Transaction 3 over both partitions and the group, committed.
        for part in (0, 1):
            assert w.add(pid, e2, topic_name, part) == 0
            assert w.produce(pid, e2, topic_name, part, b"c3-%d" % part, sequence=0) == 0
        assert w.add_offsets(pid, e2, group) == 0
        assert w.commit_offset(pid, e2, group, topic_name, 0, 42) == 0
        err, _, e3 = w.end(pid, e2, commit=True)
        assert (err, e3) == (0, e2 + 1)

        # No transaction is open at e3: a partition not added is abortable for Produce v11 only.
        assert w.produce(pid, e3, topic_name, 0, b"unadded", sequence=0, version=11) == TRANSACTION_ABORTABLE
        assert w.produce(pid, e3, topic_name, 0, b"unadded", sequence=0, version=3) == INVALID_TXN_STATE
    finally:
        w.close()
    rc = consume_all(b.bootstrap, topic_name, 2, 3, timeout=60, extra={"isolation.level": "read_committed"})
    assert values(rc) == ["c1", "c3-0", "c3-1"], f"read_committed saw {values(rc)}"
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = c.committed([TopicPartition(topic_name, 0)], timeout=30)[0].offset
    finally:
        c.close()
    assert committed == 42, f"the group's offset is {committed}: the committed transaction's offset (42) must be applied, the aborted one's (7) not"


def test_end_txn_v5_is_refused_without_the_setting(broker, topic_name):
    """unstable.api.versions.enable off (the default): ApiVersions advertises EndTxn 0-4, an
    EndTxn v5 gets UNSUPPORTED_VERSION and changes nothing, and v4 ends the transaction at the
    same epoch as before."""
    w = raw_producer(broker, topic_name, 1, (0, 4), "v4-")  # EndTxn v5 not advertised with the setting off
    try:
        pid, e0 = w.init()
        assert w.add(pid, e0, topic_name, 0) == 0
        assert w.produce(pid, e0, topic_name, 0, b"kept", sequence=0) == 0
        assert w.end(pid, e0, commit=True)[0] == UNSUPPORTED_VERSION
        assert w.end(pid, e0, commit=True, version=4) == (0, -1, -1)
        # Same epoch: the next transaction goes on with it.
        assert w.add(pid, e0, topic_name, 0) == 0
        assert w.end(pid, e0, commit=False, version=4)[0] == 0
    finally:
        w.close()
    rc = consume_all(broker.bootstrap, topic_name, 1, 1, timeout=60, extra={"isolation.level": "read_committed"})
    assert values(rc) == ["kept"], f"read_committed saw {values(rc)}"


def test_confluent_transactions_with_unstable_versions_enabled(unstable_broker, topic_name):
    """Clients that do not send EndTxn v5 (librdkafka 2.16) are unaffected by the setting."""
    check_commit_and_abort_mixed(unstable_broker, topic_name)
    check_zombie_producer_is_fenced(unstable_broker, topic_name + "-zombie")


@pytest.fixture
def eos_broker(storage_kind, tmp_path, log_dir):
    b = start_broker(storage_kind, str(tmp_path), log_dir, "txn-eos")
    yield b
    b.stop()


INPUTS = 400
PARTS = 2


def test_consume_transform_produce_exactly_once_across_sigkill(eos_broker, topic_name):
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    b = eos_broker
    src, dst, group = topic_name + "-in", topic_name + "-out", "eos-" + uuid.uuid4().hex[:6]
    create_topic(b.bootstrap, src, PARTS)
    create_topic(b.bootstrap, dst, PARTS)
    plain = Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": True})
    for i in range(INPUTS):
        plain.produce(src, value=b"%05d" % i, partition=i % PARTS)
    assert plain.flush(30) == 0, "input records not delivered"

    tps = [TopicPartition(src, p) for p in range(PARTS)]
    # librdkafka 2.16 "re-bootstraps" when every broker is down (metadata.recovery.strategy):
    # it decommissions the only broker and a pending group-coordinator lookup then never
    # completes (send_offsets_to_transaction hangs past its timeout). With one broker that is
    # restarted at the same address, re-bootstrapping brings nothing, so it is turned off.
    no_rebootstrap = {"metadata.recovery.strategy": "none"}
    consumer = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False,
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest", **no_rebootstrap})
    tid = "eos-" + uuid.uuid4().hex[:6]

    def rewind():
        """Back to the group's committed offsets (what the last committed transaction consumed)."""
        committed = consumer.committed(tps, timeout=30)
        for tp in committed:
            consumer.seek(TopicPartition(src, tp.partition, tp.offset if tp.offset >= 0 else 0))

    consumer.assign([TopicPartition(src, p, 0) for p in range(PARTS)])
    producer = txn_producer(b.bootstrap, tid, **no_rebootstrap)
    producer.init_transactions(60)
    done_txns, killed, failures = 0, False, []
    deadline = time.monotonic() + 100
    while True:
        assert time.monotonic() < deadline, f"loop did not finish; {done_txns} transactions, failures: {failures[-5:]}"
        # Finished once the committed offsets cover every input.
        committed = consumer.committed(tps, timeout=30) if done_txns else []
        if committed and sum(max(tp.offset, 0) for tp in committed) >= INPUTS:
            break
        msgs = [m for m in consumer.consume(num_messages=25, timeout=1.0) if not m.error()]
        if not msgs:
            continue
        try:
            producer.begin_transaction()
            for m in msgs:
                producer.produce(dst, value=b"out-" + m.value(), partition=m.partition())
            positions = consumer.position(tps)
            producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
            done_txns += 1
        except KafkaException as e:
            err = e.args[0]
            failures.append(str(err))
            if err.txn_requires_abort():
                try:
                    producer.abort_transaction(30)
                except KafkaException as e2:
                    failures.append("abort: " + str(e2.args[0]))
                    producer = txn_producer(b.bootstrap, tid, **no_rebootstrap)
                    producer.init_transactions(60)
            else:
                # Fatal or unknown outcome: a new producer instance fences and aborts the old one.
                producer = txn_producer(b.bootstrap, tid, **no_rebootstrap)
                producer.init_transactions(60)
            rewind()
        if done_txns == 3 and not killed:
            # Mid-loop: SIGKILL with a transaction begun (produced, not committed).
            producer.begin_transaction()
            for m in consumer.consume(num_messages=10, timeout=2.0):
                if not m.error():
                    producer.produce(dst, value=b"out-" + m.value(), partition=m.partition())
            producer.flush(10)
            b.kill(signal.SIGKILL)
            b.start()
            killed = True
            try:
                producer.abort_transaction(30)
            except KafkaException as e:
                failures.append("abort after kill: " + str(e.args[0]))
                producer = txn_producer(b.bootstrap, tid, **no_rebootstrap)
                producer.init_transactions(60)
            rewind()
    consumer.close()
    assert killed, "the broker was never killed: the loop ended before the third transaction"

    out = consume_all(b.bootstrap, dst, PARTS, INPUTS, timeout=60, extra={"isolation.level": "read_committed"})
    got = [v.decode() for _, _, _, v in out]
    dupes = sorted({v for v in got if got.count(v) > 1})
    missing = sorted({"out-%05d" % i for i in range(INPUTS)} - set(got))
    assert not dupes and not missing and len(got) == INPUTS, (
        f"output holds {len(got)} records for {INPUTS} inputs: duplicated {dupes[:5]}, missing {missing[:5]} "
        f"({done_txns} transactions; failures: {failures[:5]})")


def test_aiokafka_commit_abort_and_send_offsets(broker, topic_name):
    """aiokafka 0.14 (older API versions: InitProducerId v0–1, EndTxn v0, TxnOffsetCommit v0):
    a committed and an aborted transaction, the committed one carrying group offsets."""
    import asyncio
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    create_topic(broker.bootstrap, topic_name, 2)
    group = "aio-" + uuid.uuid4().hex[:6]

    async def main():
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="aio-" + uuid.uuid4().hex[:6])
        await p.start()
        try:
            async with p.transaction():
                for i in range(10):
                    await p.send(topic_name, value=b"c%d" % i, partition=i % 2)
                await p.send_offsets_to_transaction({TopicPartition(topic_name, 0): 7}, group)
            await p.begin_transaction()
            for i in range(10):
                await p.send(topic_name, value=b"a%d" % i, partition=i % 2)
            await p.abort_transaction()
        finally:
            await p.stop()
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
        await c.start()
        try:
            return await c.committed(TopicPartition(topic_name, 0))
        finally:
            await c.stop()

    committed = asyncio.run(main())
    assert committed == 7, f"the group's committed offset of partition 0 is {committed}, the committed transaction sent 7"
    rc = consume_all(broker.bootstrap, topic_name, 2, 10, timeout=60, extra={"isolation.level": "read_committed"})
    assert values(rc) == sorted("c%d" % i for i in range(10)), f"read_committed saw {values(rc)}"


def test_pending_transactional_offsets_are_unstable_until_commit(broker, topic_name):
    """OffsetFetch with require_stable (librdkafka's read_committed consumers) gets
    UNSTABLE_OFFSET_COMMIT while a transaction holds offsets for the partition, and the
    transaction's offset once it commits; read_uncommitted consumers see the old offset."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition
    create_topic(broker.bootstrap, topic_name, 1)
    group = "stable-" + uuid.uuid4().hex[:6]
    tp = TopicPartition(topic_name, 0)
    p = txn_producer(broker.bootstrap, "stable-" + uuid.uuid4().hex[:6])
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic_name, value=b"x", partition=0)
    meta = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    p.send_offsets_to_transaction([TopicPartition(topic_name, 0, 42)], meta.consumer_group_metadata(), 30)
    meta.close()

    stable = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "isolation.level": "read_committed",
                       "enable.auto.commit": False})
    loose = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "isolation.level": "read_uncommitted",
                      "enable.auto.commit": False})
    try:
        with pytest.raises(KafkaException) as raised:
            stable.committed([tp], timeout=3)
        assert "UNSTABLE" in str(raised.value).upper() or "TIMED_OUT" in str(raised.value).upper(), (
            f"require_stable OffsetFetch during the transaction failed with {raised.value}, not UNSTABLE_OFFSET_COMMIT")
        assert loose.committed([tp], timeout=10)[0].offset == -1001, "the pending offset must not be visible before the commit"
        p.commit_transaction(30)
        got = stable.committed([tp], timeout=10)[0].offset
        assert got == 42, f"after the commit the group's offset is {got}, the transaction committed 42"
    finally:
        stable.close()
        loose.close()
