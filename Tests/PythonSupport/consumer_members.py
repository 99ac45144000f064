"""A consumer group member (confluent-kafka; group.protocol=consumer by default, or classic with
an assignor, for mixed groups) in its own thread, shared by the client suite and the cluster
suite."""
import threading


class ConsumerProtocolMember:
    """One consumer in its own thread. Records every (partition, offset) it processes in `seen`
    (under `lock`) and commits its positions synchronously when partitions are revoked and when
    it leaves. Consume errors are recorded in `errors` unless `tolerate_consume_errors` (a
    cluster whose brokers move, where the full read decides)."""

    def __init__(self, bootstrap, group, topic, name, seen, lock, tolerate_consume_errors=False, leave_timeout=30,
                 protocol="consumer", assignor=None):
        self.bootstrap, self.group, self.topic, self.name = bootstrap, group, topic, name
        self.protocol, self.assignor = protocol, assignor
        self.seen, self.lock = seen, lock
        self.tolerate_consume_errors, self.leave_timeout = tolerate_consume_errors, leave_timeout
        self.assigned = set()
        self.positions = {}
        self.errors = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name=name, daemon=True)
        self.thread.start()

    def commit(self, consumer, partitions):
        from confluent_kafka import TopicPartition
        offsets = [TopicPartition(self.topic, p, self.positions[p]) for p in partitions if p in self.positions]
        if offsets:
            for tp in consumer.commit(offsets=offsets, asynchronous=False):
                if tp.error is not None:
                    self.errors.append(f"commit of {self.topic}-{tp.partition} failed: {tp.error}")
        for p in partitions:
            self.positions.pop(p, None)

    def run(self):
        from confluent_kafka import Consumer
        config = {"bootstrap.servers": self.bootstrap, "group.id": self.group, "group.protocol": self.protocol,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest", "client.id": self.name}
        if self.assignor:
            config["partition.assignment.strategy"] = self.assignor
        c = Consumer(config)

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
                        if not self.tolerate_consume_errors:
                            self.errors.append(f"consumer error: {m.error()}")
                        continue
                    with self.lock:
                        self.seen.append((m.partition(), m.offset(), self.name))
                    self.positions[m.partition()] = m.offset() + 1
            self.commit(c, sorted(self.positions))
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(f"{type(e).__name__}: {e}")
        finally:
            try:
                c.close()
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append(f"close: {type(e).__name__}: {e}")

    def leave(self):
        self.stop.set()
        self.thread.join(self.leave_timeout)
        assert not self.thread.is_alive(), f"member {self.name} did not leave within {self.leave_timeout} s"
