"""Crash test: an idempotent producer (confluent-kafka wheel, acks=all) keeps producing while the
broker is killed with SIGKILL and restarted several times. Every record the producer's delivery
reports acknowledged must be read back exactly once, at the offset it was acknowledged at, in
produce order per partition."""
import signal
import threading

import pytest

from conftest import BrokerProcess, consume_all, create_topic, start_broker, wait_for

KILLS = 4
PARTITIONS = 3
ACKS_BETWEEN_KILLS = 3000

pytestmark = [
    pytest.mark.needs_broker_cmd,
    pytest.mark.known_failure(target=("tansu", "tansu-relay"), params={"storage_kind": "file"},
                              reason="the suite runs tansu with memory storage for file:// URLs: a killed tansu loses everything"),
    pytest.mark.known_failure(target=("tansu", "tansu-relay"), params={"storage_kind": "s3"}, strict=False,
                              reason="tansu 0.6.0 on S3 loses acknowledged records when killed (a partition restarts "
                                     "at offset 0 after a restart; seen: 50 of ~16,600 lost after 4 kills)"),
]


class SteadyProducer:
    """Produces sequence-numbered records (partition = seq % PARTITIONS) from a thread until
    stopped; keeps the delivery reports."""

    def __init__(self, bootstrap, topic):
        from confluent_kafka import Producer
        self.topic = topic
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5,
            "message.timeout.ms": 300000, "retry.backoff.ms": 100, "reconnect.backoff.max.ms": 500,
            "queue.buffering.max.messages": 20000})
        self.lock = threading.Lock()
        self.acked = []    # (partition, offset, seq)
        self.failed = []   # (seq, error)
        self.produced = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="steady-producer", daemon=True)

    def _on_delivery(self, err, msg):
        seq = int(msg.value())
        with self.lock:
            if err is None:
                off = msg.offset()
                self.acked.append((msg.partition(), off if off is not None and off >= 0 else None, seq))
            else:
                self.failed.append((seq, str(err)))

    def _run(self):
        seq = 0
        while not self.stopping.is_set():
            for _ in range(50):
                try:
                    self.producer.produce(self.topic, value=b"%09d" % seq, partition=seq % PARTITIONS,
                                          on_delivery=self._on_delivery)
                    seq += 1
                except BufferError:
                    break  # queue full (broker down): serve callbacks and try again
            self.produced = seq
            self.producer.poll(0.01)  # serves delivery reports; paces the load (~5,000 records/s at most)

    def acked_count(self):
        with self.lock:
            return len(self.acked)

    def start(self):
        self.thread.start()

    def stop_and_flush(self, timeout):
        self.stopping.set()
        self.thread.join()
        return self.producer.flush(timeout)


@pytest.fixture
def crash_broker(storage_kind, tmp_path, log_dir):
    b = start_broker(storage_kind, str(tmp_path), log_dir, "crash")
    yield b
    b.stop()


def test_sigkill_under_load_loses_and_duplicates_nothing(crash_broker, topic_name):
    b: BrokerProcess = crash_broker
    create_topic(b.bootstrap, topic_name, PARTITIONS)
    p = SteadyProducer(b.bootstrap, topic_name)
    p.start()
    try:
        for kill in range(KILLS + 1):
            target = p.acked_count() + ACKS_BETWEEN_KILLS
            wait_for(lambda: p.acked_count() >= target or p.failed, 120,
                     f"{ACKS_BETWEEN_KILLS} more acknowledgements (after {kill} kills; acked {p.acked_count()})")
            assert not p.failed, f"delivery failures after {kill} kills: {p.failed[:5]}"
            if kill < KILLS:
                b.kill(signal.SIGKILL)
                b.start()
    finally:
        left = p.stop_and_flush(120)
    assert left == 0, f"{left} records were never acknowledged after the last restart"
    assert not p.failed, f"{len(p.failed)} delivery failures, first: {p.failed[:5]}"

    acked = {seq: (part, off) for part, off, seq in p.acked}
    assert len(acked) == len(p.acked), "a record was acknowledged twice"
    assert len(acked) == p.produced, f"{p.produced} produced, {len(acked)} acknowledged"
    consumed = consume_all(b.bootstrap, topic_name, PARTITIONS, len(acked), timeout=180, stop_at_end=True)
    seen = {}
    for part, off, _, value in consumed:
        seq = int(value)
        assert seq not in seen, f"record {seq} read twice: at {seen[seq]} and at {part}/{off}"
        seen[seq] = (part, off)
    missing = sorted(set(acked) - set(seen))
    assert not missing, f"{len(missing)} acknowledged records lost after {KILLS} kills, e.g. {[(s, acked[s]) for s in missing[:5]]}"
    # An acknowledgement can come without an offset (librdkafka reports none when the broker
    # answers a retried batch as a duplicate without its offset); those are only checked for
    # being read exactly once.
    moved = [(s, acked[s], seen[s]) for s in acked if acked[s][1] is not None and acked[s] != seen[s]]
    assert not moved, f"{len(moved)} records read at another offset than acknowledged, e.g. {moved[:5]}"
    extra = sorted(set(seen) - set(acked))
    assert not extra, f"{len(extra)} records read that were never acknowledged, e.g. {extra[:5]}"
    for part in range(PARTITIONS):
        seqs = [int(v) for q, _, _, v in sorted(consumed) if q == part]
        assert seqs == sorted(seqs), f"partition {part}: records are not in produce order"
    no_offset = sum(1 for s in acked if acked[s][1] is None)
    print(f"{len(acked)} records acknowledged across {KILLS} SIGKILLs ({no_offset} without an offset), "
          f"all read back once, in order")
