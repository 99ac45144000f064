"""Client load for the cluster suite: idempotent confluent-kafka producers whose keys encode the
producer id and a sequence number, consumer-group members, and the check of a full read against
the producers' delivery reports.
"""
import threading
import time
import uuid


def key_of(producer: int, seq: int) -> bytes:
    return b"p%d-%09d" % (producer, seq)


def parse_key(key: bytes) -> tuple[int, int] | None:
    try:
        p, s = key.decode().split("-")
        return int(p[1:]), int(s)
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None


def describe_error(err) -> str:
    return f"{err.name()} ({err.code()}): {err.str()} retriable={err.retriable()} fatal={err.fatal()}"


def transient(err) -> bool:
    """An error-callback error that needs nothing from the application: librdkafka flags it
    retriable, or it is a dropped connection (_TRANSPORT), which librdkafka reconnects and retries
    on its own (its error_cb errors never carry the retriable flag)."""
    from confluent_kafka import KafkaError
    return err.retriable() or (err.code() == KafkaError._TRANSPORT and not err.fatal())


class ProducerLoad(threading.Thread):
    """One idempotent (acks=all) producer sending `rate` records per second, keys
    p<id>-<sequence>, partitioned by key hash, until stop(); then it flushes. Every delivery
    report is recorded: `acked` {key: (partition, offset)}, `failed` [(key, error)]."""

    def __init__(self, bootstrap: str, topic: str, producer_id: int, rate: float = 250.0, extra: dict | None = None):
        super().__init__(name=f"producer-{producer_id}", daemon=True)
        from confluent_kafka import Producer
        self.topic, self.id, self.rate = topic, producer_id, rate
        self.acked: dict[bytes, tuple[int, int]] = {}
        self.failed: list[tuple[bytes, str]] = []
        self.errors: list = []  # error_cb
        self.sent = 0
        self.unflushed = None
        self.exception = None
        self.fatal = None
        self._stop_event = threading.Event()
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                  "client.id": f"cluster-suite-p{producer_id}", "linger.ms": 5,
                                  "message.timeout.ms": 120000, "error_cb": self._error,
                                  **(extra or {})})

    # Callbacks run on this thread (poll/flush); other threads only read sizes and copies, which
    # the GIL keeps consistent for dict and list operations. No lock: a callback that raises
    # while holding one would leave it held.
    def _error(self, err):
        self.errors.append(err)
        if err.fatal() and self.fatal is None:
            self.fatal = describe_error(err)

    def _delivered(self, err, msg):
        if err is None:
            self.acked[msg.key()] = (msg.partition(), msg.offset())
        else:
            self.failed.append((msg.key(), describe_error(err)))

    def acked_count(self) -> int:
        return len(self.acked)

    def _produce_one(self, key: bytes) -> bool:
        """Queues one record (waiting while the queue is full); False once the producer is fatal."""
        while True:
            try:
                self.producer.produce(self.topic, key=key, value=key + b"|" + b"x" * 100,
                                      on_delivery=self._delivered)
                return True
            except BufferError:
                self.producer.poll(0.1)
            except Exception as e:  # KafkaException(_FATAL): the producer is unusable from now on
                if self.fatal is None:
                    self.fatal = f"produce() raised {e!r}"
                return False

    def run(self):
        try:
            burst = max(1, int(self.rate / 50))
            next_at = time.monotonic()
            while not self._stop_event.is_set():
                for _ in range(burst):
                    key = key_of(self.id, self.sent)
                    if not self._produce_one(key):
                        break
                    self.sent += 1
                if self.fatal is not None:
                    break  # a fatal (idempotence) error: produce() refuses from now on; flush and report
                self.producer.poll(0)
                next_at += burst / self.rate
                self._stop_event.wait(max(0.0, next_at - time.monotonic()))  # pacing, not synchronization
            self.unflushed = self.producer.flush(120)
        except Exception as e:  # reported by problems()
            self.exception = e
            try:
                self.unflushed = self.producer.flush(60)
            except Exception as again:
                self.exception = (e, again)

    def stop(self):
        self._stop_event.set()

    def finish(self, timeout: float = 150.0):
        """Stops producing, waits for the final flush; returns nothing, see `problems()`."""
        self.stop()
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"producer {self.id} did not finish flushing within {timeout:.0f} s")

    def problems(self) -> list[str]:
        out = []
        if self.fatal is not None:
            out.append(f"producer {self.id}: FATAL error after {len(self.acked)} acks of {self.sent} sent: {self.fatal}")
        if self.exception is not None:
            out.append(f"producer {self.id}: raised {self.exception!r}")
        if self.unflushed:
            out.append(f"producer {self.id}: {self.unflushed} records still undelivered after the final flush")
        if self.failed:
            out.append(f"producer {self.id}: {len(self.failed)} delivery errors, first: {self.failed[:5]}")
        unreported = self.sent - len(self.acked) - len(self.failed)
        if unreported and not self.unflushed:
            out.append(f"producer {self.id}: {unreported} records without a delivery report")
        bad = [describe_error(e) for e in self.errors if not transient(e)]
        if bad:
            out.append(f"producer {self.id}: non-transient error callbacks: {bad[:10]}")
        return out


class GroupMember(threading.Thread):
    """One consumer-group member (confluent-kafka, auto commit) recording every key it sees."""

    def __init__(self, bootstrap: str, topic: str, group: str, index: int):
        super().__init__(name=f"member-{index}", daemon=True)
        from confluent_kafka import Consumer
        self.index = index
        self.seen: list[bytes] = []
        self.errors: list = []  # error_cb
        self.message_errors: list[str] = []
        self.exception = None
        self._stop_event = threading.Event()
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                  "client.id": f"cluster-suite-m{index}", "auto.offset.reset": "earliest",
                                  "enable.auto.commit": True, "session.timeout.ms": 10000,
                                  "heartbeat.interval.ms": 1000, "error_cb": self._error})
        self.consumer.subscribe([topic])

    def _error(self, err):
        self.errors.append(err)

    def run(self):
        try:
            while not self._stop_event.is_set():
                for m in self.consumer.consume(num_messages=1000, timeout=0.2):
                    if m.error():
                        self.message_errors.append(describe_error(m.error()))
                        continue
                    self.seen.append(m.key())
            self.consumer.close()
        except Exception as e:
            self.exception = e

    def keys(self) -> list[bytes]:
        return list(self.seen)

    def finish(self, timeout: float = 30.0):
        self._stop_event.set()
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"group member {self.index} did not close within {timeout:.0f} s")

    def problems(self) -> list[str]:
        out = []
        if self.exception is not None:
            out.append(f"group member {self.index} raised {self.exception!r}")
        if self.message_errors:
            out.append(f"group member {self.index}: consumer errors: {self.message_errors[:10]}")
        bad = [describe_error(e) for e in self.errors if not transient(e)]
        if bad:
            out.append(f"group member {self.index}: non-transient error callbacks: {bad[:10]}")
        return out


def transient_errors(clients) -> list[str]:
    return [f"{c.name}: {describe_error(e)}" for c in clients for e in c.errors if transient(e)]


def check_full_read(records, producers, foreign_ok=()) -> tuple[list[str], dict]:
    """Checks a full read [(partition, offset, key, value)] against the producers' delivery
    reports: every acked record exactly once, at the partition and offset it was acked at, and
    each producer's records in sequence order within each partition. Returns (problems, figures)."""
    problems = []
    where: dict[bytes, list[tuple[int, int]]] = {}
    for p, off, key, _value in records:
        where.setdefault(key, []).append((p, off))
    acked = {}
    for prod in producers:
        acked.update(prod.acked)
    missing = [k for k in acked if k not in where]
    duplicated = {k: v for k, v in where.items() if len(v) > 1}
    moved = {k: (acked[k], where[k][0]) for k in acked if k in where and len(where[k]) == 1 and where[k][0] != acked[k]}
    foreign = [k for k in where if k not in acked and k not in foreign_ok]
    if missing:
        problems.append(f"{len(missing)} acked records missing from the full read, e.g. "
                        f"{[(k, acked[k]) for k in sorted(missing)[:10]]}")
    if duplicated:
        problems.append(f"{len(duplicated)} keys stored more than once, e.g. {list(duplicated.items())[:10]}")
    if moved:
        problems.append(f"{len(moved)} acked records found at another (partition, offset) than acked "
                        f"(acked, found), e.g. {list(moved.items())[:10]}")
    disorder = []
    by_partition: dict[int, list] = {}
    for p, off, key, _v in records:
        by_partition.setdefault(p, []).append((off, key))
    for p, rows in by_partition.items():
        rows.sort()
        last = {}
        for off, key in rows:
            parsed = parse_key(key)
            if parsed is None:
                continue
            prod, seq = parsed
            if prod in last and seq <= last[prod][1]:
                disorder.append((p, off, key, f"after {last[prod]}"))
            last[prod] = (off, seq)
    if disorder:
        problems.append(f"{len(disorder)} records out of producer order within their partition, e.g. {disorder[:10]}")
    if foreign:
        problems.append(f"{len(foreign)} records in the log that no producer had acknowledged, e.g. {foreign[:10]}")
    return problems, {"acked": len(acked), "read": len(records), "missing": len(missing),
                      "duplicated": len(duplicated)}


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def stop_all(threads) -> None:
    """Stops every load thread that is still running (test teardown, also after a failure)."""
    for t in threads:
        if t.is_alive():
            try:
                t.finish()
            except AssertionError:
                pass
