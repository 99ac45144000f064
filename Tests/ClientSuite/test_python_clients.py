"""kafka-python 3.0.12 and aiokafka 0.14.0: produce, consume, group commit, and a new consumer
in the same group resuming exactly after the committed offsets."""
import asyncio
import time

import pytest

from conftest import create_topic

PARTITIONS = 3
N = 3000
TIMEOUT = 60.0


def make_records(prefix):
    return [(i % PARTITIONS, f"{prefix}{i:05d}".encode(), f"value {i} ".encode() * (1 + i % 7)) for i in range(N)]


# ----------------------------------------------------------------------------- kafka-python

class KafkaPythonClient:
    name = "kafka-python"

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap

    def produce(self, topic, records, **extra):
        from kafka import KafkaProducer
        p = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5, **extra)
        try:
            futures = [(p.send(topic, key=k, value=v, partition=part), k, v) for part, k, v in records]
            p.flush(timeout=TIMEOUT)
            out = []
            for f, k, v in futures:
                md = f.get(timeout=TIMEOUT)
                out.append((md.partition, md.offset, k, v))
            return out
        finally:
            p.close(timeout=10)

    def consume_then_commit(self, topic, group, at_least):
        """Group consumer: reads until it has `at_least` records, commits exactly the positions
        after the records it read, and closes. Returns the records read."""
        from kafka import KafkaConsumer, TopicPartition
        from kafka.structs import OffsetAndMetadata
        c = KafkaConsumer(topic, bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False,
                          auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=500)
        try:
            got = []
            deadline = time.monotonic() + TIMEOUT
            while len(got) < at_least:
                assert time.monotonic() < deadline, f"kafka-python group consumer read {len(got)} of {at_least} records"
                for tp, msgs in c.poll(timeout_ms=500, max_records=at_least - len(got)).items():
                    got += [(m.partition, m.offset, m.key, m.value) for m in msgs]
            positions = {}
            for part, off, _, _ in got:
                positions[part] = max(positions.get(part, 0), off + 1)
            c.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in positions.items()})
            committed = {p: c.committed(TopicPartition(topic, p)) for p in positions}
            assert committed == positions, f"kafka-python: committed {committed}, asked to commit {positions}"
            return got
        finally:
            c.close(autocommit=False)

    def consume_until(self, topic, group, wanted):
        """Group consumer: reads until every key in `wanted` has arrived; returns the records."""
        from kafka import KafkaConsumer
        c = KafkaConsumer(topic, bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False,
                          auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=500)
        try:
            got = []
            deadline = time.monotonic() + TIMEOUT
            while not wanted <= {k for _, _, k, _ in got}:
                assert time.monotonic() < deadline, \
                    f"kafka-python resumed consumer read {len(got)} records, {len(wanted - {k for _, _, k, _ in got})} wanted ones missing"
                for tp, msgs in c.poll(timeout_ms=500).items():
                    got += [(m.partition, m.offset, m.key, m.value) for m in msgs]
            return got
        finally:
            c.close(autocommit=False)


# ----------------------------------------------------------------------------- aiokafka

class AIOKafkaClient:
    name = "aiokafka"

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap

    def produce(self, topic, records, **extra):
        return asyncio.run(self._produce(topic, records, extra))

    async def _produce(self, topic, records, extra):
        from aiokafka import AIOKafkaProducer
        p = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5, request_timeout_ms=30000, **extra)
        try:
            await p.start()
            futures = [(await p.send(topic, key=k, value=v, partition=part), k, v) for part, k, v in records]
            out = []
            for f, k, v in futures:
                md = await asyncio.wait_for(f, TIMEOUT)
                out.append((md.partition, md.offset, k, v))
            return out
        finally:
            await p.stop()

    def _consumer(self, topic, group):
        from aiokafka import AIOKafkaConsumer
        return AIOKafkaConsumer(topic, bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=500)

    def consume_then_commit(self, topic, group, at_least):
        return asyncio.run(self._consume_then_commit(topic, group, at_least))

    async def _consume_then_commit(self, topic, group, at_least):
        from aiokafka import TopicPartition
        c = self._consumer(topic, group)
        await c.start()
        try:
            got = []
            deadline = time.monotonic() + TIMEOUT
            while len(got) < at_least:
                assert time.monotonic() < deadline, f"aiokafka group consumer read {len(got)} of {at_least} records"
                batch = await c.getmany(timeout_ms=500, max_records=at_least - len(got))
                for tp, msgs in batch.items():
                    got += [(m.partition, m.offset, m.key, m.value) for m in msgs]
            positions = {}
            for part, off, _, _ in got:
                positions[part] = max(positions.get(part, 0), off + 1)
            await c.commit({TopicPartition(topic, p): o for p, o in positions.items()})
            committed = {p: await c.committed(TopicPartition(topic, p)) for p in positions}
            assert committed == positions, f"aiokafka: committed {committed}, asked to commit {positions}"
            return got
        finally:
            await c.stop()

    def consume_until(self, topic, group, wanted):
        return asyncio.run(self._consume_until(topic, group, wanted))

    async def _consume_until(self, topic, group, wanted):
        c = self._consumer(topic, group)
        await c.start()
        try:
            got = []
            deadline = time.monotonic() + TIMEOUT
            while not wanted <= {k for _, _, k, _ in got}:
                assert time.monotonic() < deadline, \
                    f"aiokafka resumed consumer read {len(got)} records, {len(wanted - {k for _, _, k, _ in got})} wanted ones missing"
                for tp, msgs in (await c.getmany(timeout_ms=500)).items():
                    got += [(m.partition, m.offset, m.key, m.value) for m in msgs]
            return got
        finally:
            await c.stop()


@pytest.fixture(params=["kafka-python", "aiokafka"])
def client(request, broker):
    import aiokafka
    import kafka
    versions = {"kafka-python": kafka.__version__, "aiokafka": aiokafka.__version__}
    print(f"{request.param} {versions[request.param]}")
    return (KafkaPythonClient if request.param == "kafka-python" else AIOKafkaClient)(broker.bootstrap)


def test_produce_consume_commit_resume(broker, client, topic_name):
    create_topic(broker.bootstrap, topic_name, PARTITIONS)
    records = make_records("r")
    acked = client.produce(topic_name, records)
    assert len(acked) == N, f"{client.name}: {len(acked)} acknowledgements for {N} records"
    for part in range(PARTITIONS):
        offsets = sorted(o for p, o, _, _ in acked if p == part)
        assert offsets == list(range(len(offsets))), f"{client.name}: partition {part} offsets are not 0..{len(offsets) - 1}"
    by_key = {k: (p, o, v) for p, o, k, v in acked}

    group = "g-" + topic_name
    first = client.consume_then_commit(topic_name, group, N // 3)
    assert len(first) == N // 3, f"{client.name}: first consumer read {len(first)} records, asked for {N // 3}"
    for p, o, k, v in first:
        assert by_key.get(k) == (p, o, v), f"{client.name}: read {k} at {p}/{o} as {v!r}, acknowledged as {by_key.get(k)}"
    committed = {}
    for p, o, _, _ in first:
        committed[p] = max(committed.get(p, 0), o + 1)

    remaining = {k for p, o, k, _ in acked if o >= committed.get(p, 0)}
    assert len(remaining) == N - N // 3, "records before the commit are not a contiguous prefix per partition"
    second = client.consume_until(topic_name, group, remaining)
    keys = [k for _, _, k, _ in second]
    assert len(keys) == len(set(keys)), f"{client.name}: the resumed consumer read some records twice"
    early = [(p, o) for p, o, k, _ in second if k not in remaining]
    assert not early, f"{client.name}: the resumed consumer read {len(early)} records before the committed offsets {committed}, e.g. {early[:5]}"
    for p, o, k, v in second:
        assert by_key[k] == (p, o, v), f"{client.name}: read {k} at {p}/{o}, acknowledged at {by_key[k][:2]}"


@pytest.mark.known_failure(target=("tansu", "tansu-relay"), params={"client": "aiokafka"},
                           reason="tansu 0.6.0 answers aiokafka's InitProducerId v0 with UNKNOWN_SERVER_ERROR")
def test_idempotent_producer(broker, client, topic_name):
    """kafka-python 3.x is idempotent by default (InitProducerId v4); aiokafka sends InitProducerId v0."""
    create_topic(broker.bootstrap, topic_name, PARTITIONS)
    records = make_records("i")
    acked = client.produce(topic_name, records, enable_idempotence=True)
    for part in range(PARTITIONS):
        mine = sorted((o, k) for p, o, k, _ in acked if p == part)
        assert [o for o, _ in mine] == list(range(len(mine))), f"{client.name}: partition {part} offsets not contiguous from 0"
        assert [k for _, k in mine] == [k for p, k, _ in records if p == part], \
            f"{client.name}: partition {part} records not stored in produce order"
