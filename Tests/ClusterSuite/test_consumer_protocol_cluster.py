"""A KIP-848 consumer group (group.protocol=consumer, confluent-kafka 2.16) on three brokers
when its coordinator stops: the group's state moves to the next coordinator with the group
object in the bucket, members carry on, and every record is consumed exactly once (offsets
committed on revocation)."""
import threading
import uuid

import cluster_wire
from conftest import create_topic, wait_for
from load import unique_name

PARTITIONS = 6
BATCH = 600


class Member:
    def __init__(self, bootstrap, group, topic, name, seen, lock):
        self.bootstrap, self.group, self.topic, self.name = bootstrap, group, topic, name
        self.seen, self.lock = seen, lock
        self.assigned, self.positions, self.errors = set(), {}, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name=name, daemon=True)
        self.thread.start()

    def commit(self, consumer, partitions):
        from confluent_kafka import TopicPartition
        offsets = [TopicPartition(self.topic, p, self.positions[p]) for p in partitions if p in self.positions]
        if offsets:
            for tp in consumer.commit(offsets=offsets, asynchronous=False):
                if tp.error is not None:
                    self.errors.append(f"commit of partition {tp.partition} failed: {tp.error}")
        for p in partitions:
            self.positions.pop(p, None)

    def run(self):
        from confluent_kafka import Consumer
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group, "group.protocol": "consumer",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest", "client.id": self.name})

        def on_assign(consumer, partitions):
            self.assigned |= {tp.partition for tp in partitions}

        def on_revoke(consumer, partitions):
            revoked = [tp.partition for tp in partitions]
            self.commit(consumer, revoked)
            self.assigned -= set(revoked)

        try:
            c.subscribe([self.topic], on_assign=on_assign, on_revoke=on_revoke)
            while not self.stop.is_set():
                for m in c.consume(num_messages=500, timeout=0.2):
                    if m.error():
                        continue  # transient errors while brokers move (the full-read check decides)
                    with self.lock:
                        self.seen.append((m.partition(), m.offset(), self.name))
                    self.positions[m.partition()] = m.offset() + 1
            self.commit(c, sorted(self.positions))
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(f"{type(e).__name__}: {e}")
        finally:
            c.close()

    def leave(self, timeout=60):
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"member {self.name} did not leave within {timeout} s"


def produce(bootstrap, topic, start, count):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    errors = []
    for i in range(start, start + count):
        p.produce(topic, key=str(i).encode(), value=b"v", partition=i % PARTITIONS,
                  on_delivery=lambda err, msg: err and errors.append(str(err)))
    assert p.flush(60) == 0, "records left unsent"
    assert not errors, f"produce errors: {errors[:5]}"


def coordinator(cluster, group, node):
    b = cluster.brokers[node]
    error, coord, _, _ = cluster_wire.find_coordinator("127.0.0.1", b.port, group)
    return coord if error == 0 else None


def test_consumer_group_moves_with_its_coordinator(cluster):
    topic = unique_name("kip848")
    group = "kip848-" + uuid.uuid4().hex[:8]
    create_topic(cluster, topic, PARTITIONS)
    produce(cluster.bootstrap(), topic, 0, BATCH)
    seen, lock = [], threading.Lock()
    a = Member(cluster.bootstrap(), group, topic, "a", seen, lock)
    b = Member(cluster.bootstrap(), group, topic, "b", seen, lock)
    try:
        wait_for(lambda: a.assigned and b.assigned and a.assigned | b.assigned == set(range(PARTITIONS))
                 and not a.assigned & b.assigned, 60, lambda: f"a and b to share the partitions (a {a.assigned}, b {b.assigned})")
        wait_for(lambda: len({(p, o) for p, o, _ in seen}) >= BATCH, 60, lambda: f"the first {BATCH} records (got {len(seen)})")
        old = coordinator(cluster, group, min(cluster.live()))
        assert old is not None, "no coordinator for the group"
        assert cluster.stop(old) == 0, f"broker {old} did not stop cleanly"
        live = cluster.live()
        wait_for(lambda: coordinator(cluster, group, live[0]) in live, 30, f"a live broker of {live} to coordinate the group")
        produce(cluster.bootstrap(live), topic, BATCH, BATCH)
        wait_for(lambda: len({(p, o) for p, o, _ in seen}) >= 2 * BATCH, 90,
                 lambda: f"all {2 * BATCH} records after broker {old} stopped (got {len({(p, o) for p, o, _ in seen})})")
        wait_for(lambda: a.assigned | b.assigned == set(range(PARTITIONS)), 60,
                 lambda: f"a and b to own every partition again (a {a.assigned}, b {b.assigned})")
    finally:
        a.leave()
        b.leave()
    assert not a.errors and not b.errors, f"member errors: {(a.errors + b.errors)[:5]}"
    keys = [(p, o) for p, o, _ in seen]
    assert len(keys) == len(set(keys)), f"{len(keys) - len(set(keys))} records consumed twice"
    assert len(set(keys)) == 2 * BATCH, f"consumed {len(set(keys))} distinct records of {2 * BATCH}"
