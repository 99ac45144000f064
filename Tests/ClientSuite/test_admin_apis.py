"""The admin APIs tools call that the broker used to lack (issue 15): OffsetDelete, DescribeLogDirs,
ElectLeaders, DescribeProducers, GetTelemetrySubscriptions/PushTelemetry, ListClientMetricsResources.

Clients: kafka-python 3.0.12 (delete_group_offsets, describe_log_dirs), confluent-kafka 2.16.1
(elect_leaders, and librdkafka 2.16's telemetry, on by default), and a raw DescribeProducers v0
(flexible) encoded here on top of kafka_wire's framing. confluent-kafka 2.16.1 has no
delete_consumer_group_offsets in Python, so OffsetDelete is driven by kafka-python and by the
wheel's librdkafka 2.16 C call rd_kafka_DeleteConsumerGroupOffsets through ctypes.
"""
import ctypes
import logging
import os
import socket
import struct
import time
import uuid

import pytest

import kafka_wire
from conftest import admin, create_topic, wait_for

# API keys and the versions the broker serves (ApiVersions must advertise exactly these).
ADMIN_APIS = {47: (0, 0), 35: (0, 4), 43: (0, 2), 61: (0, 0), 71: (0, 0), 72: (0, 0), 74: (0, 0)}


def kafka_python_admin(bootstrap):
    from kafka.admin import KafkaAdminClient
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)


def produce(bootstrap, topic, count, partition=None, extra=None):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **(extra or {})})
    errors = []
    for i in range(count):
        kwargs = {"partition": partition} if partition is not None else {}
        p.produce(topic, key=b"k%d" % i, value=b"value-%06d" % i,
                  on_delivery=lambda err, msg: errors.append(err) if err else None, **kwargs)
    left = p.flush(30)
    assert left == 0 and not errors, f"produce to {topic}: {left} undelivered, errors {errors[:3]}"


def poll_records(consumer, topic, count, timeout=60.0):
    """Polls `consumer` until it has received `count` records (errors skipped), within `timeout`."""
    seen, deadline = 0, time.monotonic() + timeout
    while seen < count:
        assert time.monotonic() < deadline, f"consumed {seen} of {count} records of {topic}"
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            seen += 1


def test_api_versions_advertise_the_admin_apis(broker):
    versions = kafka_wire.probe(broker.host, broker.port)
    advertised = {key: versions.get(key) for key in ADMIN_APIS}
    assert advertised == ADMIN_APIS, f"ApiVersions advertised {advertised}, expected {ADMIN_APIS}"


def test_delete_group_offsets(broker, topic_name):
    """kafka-python's delete_group_offsets (OffsetDelete v0): refused with GROUP_SUBSCRIBED_TO_TOPIC
    while a live member subscribes to the topic, accepted for a topic it does not subscribe to,
    and for every partition once the member has left; deleted offsets are gone from OffsetFetch."""
    from confluent_kafka import Consumer
    from kafka import TopicPartition
    from kafka.errors import GroupSubscribedToTopicError, NoError, GroupIdNotFoundError
    other = topic_name + "-other"
    create_topic(broker.bootstrap, topic_name, 2)
    create_topic(broker.bootstrap, other, 1)
    produce(broker.bootstrap, topic_name, 20)
    group = "del-offsets-" + uuid.uuid4().hex[:8]
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 10000})
    kp = kafka_python_admin(broker.bootstrap)
    # An offset of a topic the member will not subscribe to, committed while the group is empty.
    from kafka.structs import OffsetAndMetadata
    altered = kp.alter_group_offsets(group, {TopicPartition(other, 0): OffsetAndMetadata(3, "", -1)})
    assert altered == {TopicPartition(other, 0): NoError}, altered
    try:
        c.subscribe([topic_name])
        poll_records(c, topic_name, 20)
        c.commit(asynchronous=False)
        committed = kp.list_group_offsets(group)[group]
        assert {(tp.topic, tp.partition) for tp in committed} == {(topic_name, 0), (topic_name, 1), (other, 0)}, committed

        refused = kp.delete_group_offsets(group, [TopicPartition(topic_name, 0), TopicPartition(other, 0)])
        assert refused == {TopicPartition(topic_name, 0): GroupSubscribedToTopicError, TopicPartition(other, 0): NoError}, refused
        left = {tp.topic: off.offset for tp, off in kp.list_group_offsets(group)[group].items()}
        assert other not in left and topic_name in left, f"offsets after deleting {other}: {left}"
    finally:
        c.close()  # leaves the group
    deleted = kp.delete_group_offsets(group, [TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)])
    assert deleted == {TopicPartition(topic_name, 0): NoError, TopicPartition(topic_name, 1): NoError}, deleted
    assert kp.list_group_offsets(group)[group] == {}, "every offset was deleted"
    with pytest.raises(GroupIdNotFoundError):
        kp.delete_group_offsets("no-such-group-" + uuid.uuid4().hex[:6], [TopicPartition(topic_name, 0)])
    kp.close()


# ------------------------------------------- librdkafka's DeleteConsumerGroupOffsets (ctypes)

class _TopicPartition(ctypes.Structure):
    """rd_kafka_topic_partition_t"""
    _fields_ = [("topic", ctypes.c_char_p), ("partition", ctypes.c_int32), ("offset", ctypes.c_int64),
                ("metadata", ctypes.c_void_p), ("metadata_size", ctypes.c_size_t), ("opaque", ctypes.c_void_p),
                ("err", ctypes.c_int), ("_private", ctypes.c_void_p)]


class _TopicPartitionList(ctypes.Structure):
    """rd_kafka_topic_partition_list_t"""
    _fields_ = [("cnt", ctypes.c_int), ("size", ctypes.c_int), ("elems", ctypes.POINTER(_TopicPartition))]


def _librdkafka(directory):
    lib = ctypes.CDLL(os.path.join(directory, "librdkafka.so.1"))
    vp, cp, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
    for name, res, args in [
        ("rd_kafka_version_str", cp, []),
        ("rd_kafka_conf_new", vp, []),
        ("rd_kafka_conf_set", ctypes.c_int, [vp, cp, cp, cp, sz]),
        ("rd_kafka_new", vp, [ctypes.c_int, vp, cp, sz]),
        ("rd_kafka_destroy", None, [vp]),
        ("rd_kafka_queue_new", vp, [vp]),
        ("rd_kafka_queue_destroy", None, [vp]),
        ("rd_kafka_queue_poll", vp, [vp, ctypes.c_int]),
        ("rd_kafka_event_destroy", None, [vp]),
        ("rd_kafka_event_error", ctypes.c_int, [vp]),
        ("rd_kafka_event_error_string", cp, [vp]),
        ("rd_kafka_topic_partition_list_new", ctypes.POINTER(_TopicPartitionList), [ctypes.c_int]),
        ("rd_kafka_topic_partition_list_add", vp, [ctypes.POINTER(_TopicPartitionList), cp, ctypes.c_int32]),
        ("rd_kafka_topic_partition_list_destroy", None, [ctypes.POINTER(_TopicPartitionList)]),
        ("rd_kafka_DeleteConsumerGroupOffsets_new", vp, [cp, ctypes.POINTER(_TopicPartitionList)]),
        ("rd_kafka_DeleteConsumerGroupOffsets_destroy", None, [vp]),
        ("rd_kafka_DeleteConsumerGroupOffsets", None, [vp, ctypes.POINTER(vp), sz, vp, vp]),
        ("rd_kafka_event_DeleteConsumerGroupOffsets_result", vp, [vp]),
        ("rd_kafka_DeleteConsumerGroupOffsets_result_groups", ctypes.POINTER(vp), [vp, ctypes.POINTER(sz)]),
        ("rd_kafka_group_result_error", vp, [vp]),
        ("rd_kafka_error_code", ctypes.c_int, [vp]),
        ("rd_kafka_group_result_partitions", ctypes.POINTER(_TopicPartitionList), [vp]),
    ]:
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    return lib


def librdkafka_delete_offsets(lib, bootstrap, group, partitions, timeout=30.0):
    """rd_kafka_DeleteConsumerGroupOffsets (the C call confluent-kafka does not expose); returns
    ("group", error code) for a group-level error, else ("partitions", {(topic, partition): code})."""
    errstr = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    assert lib.rd_kafka_conf_set(conf, b"bootstrap.servers", bootstrap.encode(), errstr, 512) == 0, errstr.value
    rk = lib.rd_kafka_new(0, conf, errstr, 512)
    assert rk, f"rd_kafka_new: {errstr.value}"
    queue = lib.rd_kafka_queue_new(rk)
    wanted = lib.rd_kafka_topic_partition_list_new(len(partitions))
    for topic, partition in partitions:
        lib.rd_kafka_topic_partition_list_add(wanted, topic.encode(), partition)
    request = lib.rd_kafka_DeleteConsumerGroupOffsets_new(group.encode(), wanted)
    event = None
    try:
        lib.rd_kafka_DeleteConsumerGroupOffsets(rk, (ctypes.c_void_p * 1)(request), 1, None, queue)
        deadline = time.monotonic() + timeout
        while not event:
            assert time.monotonic() < deadline, f"no DeleteConsumerGroupOffsets result in {timeout:.0f} s"
            event = lib.rd_kafka_queue_poll(queue, 500)
        err = lib.rd_kafka_event_error(event)
        if err:
            return ("group", err)
        result = lib.rd_kafka_event_DeleteConsumerGroupOffsets_result(event)
        count = ctypes.c_size_t()
        groups = lib.rd_kafka_DeleteConsumerGroupOffsets_result_groups(result, ctypes.byref(count))
        assert count.value == 1, f"{count.value} group results"
        group_error = lib.rd_kafka_group_result_error(groups[0])
        if group_error:
            return ("group", lib.rd_kafka_error_code(group_error))
        parts = lib.rd_kafka_group_result_partitions(groups[0]).contents
        return ("partitions", {(parts.elems[i].topic.decode(), parts.elems[i].partition): parts.elems[i].err
                               for i in range(parts.cnt)})
    finally:
        if event:
            lib.rd_kafka_event_destroy(event)
        lib.rd_kafka_DeleteConsumerGroupOffsets_destroy(request)
        lib.rd_kafka_topic_partition_list_destroy(wanted)
        lib.rd_kafka_queue_destroy(queue)
        lib.rd_kafka_destroy(rk)


def test_librdkafka_delete_consumer_group_offsets(broker, topic_name, wheel_librdkafka_dir):
    """librdkafka 2.16's DeleteConsumerGroupOffsets (the confluent-kafka wheel's library, called
    through ctypes): GROUP_SUBSCRIBED_TO_TOPIC while a member subscribes, then deleted."""
    from confluent_kafka import Consumer, TopicPartition as CTP
    lib = _librdkafka(wheel_librdkafka_dir)
    assert lib.rd_kafka_version_str().decode().startswith("2.16"), lib.rd_kafka_version_str()
    create_topic(broker.bootstrap, topic_name, 1)
    produce(broker.bootstrap, topic_name, 5)
    group = "rdk-del-offsets-" + uuid.uuid4().hex[:8]
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    try:
        c.subscribe([topic_name])
        poll_records(c, topic_name, 5)
        c.commit(asynchronous=False)
        refused = librdkafka_delete_offsets(lib, broker.bootstrap, group, [(topic_name, 0)])
        assert refused == ("partitions", {(topic_name, 0): 86}), f"while subscribed: {refused} (86: GROUP_SUBSCRIBED_TO_TOPIC)"
    finally:
        c.close()
    deleted = librdkafka_delete_offsets(lib, broker.bootstrap, group, [(topic_name, 0)])
    assert deleted == ("partitions", {(topic_name, 0): 0}), f"after the member left: {deleted}"
    from confluent_kafka import ConsumerGroupTopicPartitions
    a = admin(broker.bootstrap)  # kept referenced until its futures complete
    listed = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [CTP(topic_name, 0)])])
    offsets = listed[group].result(timeout=30).topic_partitions
    assert [tp.offset for tp in offsets] == [-1001], f"committed offset after deletion: {offsets}"
    missing = librdkafka_delete_offsets(lib, broker.bootstrap, "no-such-group-" + uuid.uuid4().hex[:6], [(topic_name, 0)])
    assert missing == ("group", 69), f"unknown group: {missing} (69: GROUP_ID_NOT_FOUND)"


def test_elect_leaders(broker, topic_name):
    """confluent-kafka elect_leaders: the owner is the preferred (and only) replica, so Kafka's answer
    is ELECTION_NOT_NEEDED for both election types; unknown partitions UNKNOWN_TOPIC_OR_PART;
    every partition (None): nothing to report."""
    from confluent_kafka import ElectionType, KafkaError, TopicPartition
    create_topic(broker.bootstrap, topic_name, 2)
    a = admin(broker.bootstrap)
    for election in (ElectionType.PREFERRED, ElectionType.UNCLEAN):
        asked = [TopicPartition(topic_name, 0), TopicPartition(topic_name, 1), TopicPartition(topic_name, 7)]
        result = a.elect_leaders(election, asked).result(timeout=30)
        codes = {(tp.topic, tp.partition): (err.code() if err else None) for tp, err in result.items()}
        expected = {(topic_name, 0): KafkaError.ELECTION_NOT_NEEDED, (topic_name, 1): KafkaError.ELECTION_NOT_NEEDED,
                    (topic_name, 7): KafkaError.UNKNOWN_TOPIC_OR_PART}
        assert codes == expected, f"{election}: {codes}"
    everything = a.elect_leaders(ElectionType.PREFERRED, None).result(timeout=30)
    assert everything == {}, f"all partitions: {everything}"


def test_describe_log_dirs(broker, topic_name):
    """kafka-python describe_log_dirs: the bucket is the one log dir (its location, without
    credentials); each partition's size covers what was produced to it."""
    create_topic(broker.bootstrap, topic_name, 2)
    produce(broker.bootstrap, topic_name, 500, partition=0)
    kp = kafka_python_admin(broker.bootstrap)
    try:
        answer = kp.describe_log_dirs(topic_partitions={topic_name: [0, 1]})
        assert len(answer) == 1 and len(answer[0]["log_dirs"]) == 1, answer
        d = answer[0]["log_dirs"][0]
        assert d["error_code"] == 0, d
        scheme = next((s for s in ("file://", "s3://") if broker.storage.startswith(s)), None)
        if scheme is None:  # an external broker: its storage is not known here
            scheme = "file://" if d["log_dir"].startswith("file://") else "s3://"
        assert d["log_dir"].startswith(scheme), f"log dir {d['log_dir']} for storage {broker.storage}"
        assert "secret" not in d["log_dir"].lower() and "AWS" not in d["log_dir"], d["log_dir"]
        if scheme == "file://":
            assert d["total_bytes"] > 0 and 0 <= d["usable_bytes"] <= d["total_bytes"], d
        else:
            assert (d["total_bytes"], d["usable_bytes"]) == (-1, -1), d
        topics = {t["name"]: {p["partition_index"]: p for p in t["partitions"]} for t in d["topics"]}
        parts = topics.get(topic_name)
        assert parts is not None and sorted(parts) == [0, 1], f"partitions listed: {topics}"
        # 500 values of 12 bytes each (uncompressed); batch overhead adds to it.
        assert parts[0]["partition_size"] >= 500 * 12, parts[0]
        assert parts[1]["partition_size"] == 0, parts[1]
        assert all(p["offset_lag"] == 0 and not p["is_future_key"] for p in parts.values()), parts
    finally:
        kp.close()


# ---------------------------------------------------------------- raw DescribeProducers v0

def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _compact_string(s: str) -> bytes:
    b = s.encode()
    return _uvarint(len(b) + 1) + b


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def take(self, fmt: str):
        (v,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return v

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            b = self.data[self.at]
            self.at += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7

    def compact_string(self):
        n = self.uvarint()
        if n == 0:
            return None
        s = self.data[self.at:self.at + n - 1].decode()
        self.at += n - 1
        return s

    def skip_tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.at += self.uvarint()


def describe_producers(host, port, topics: dict, correlation_id=5):
    """DescribeProducers v0 (request header v2, response header v1); returns
    {(topic, partition): (error code, [(producer id, epoch, last sequence, last timestamp,
    coordinator epoch, current txn start offset)])}."""
    body = _uvarint(len(topics) + 1)
    for name, partitions in topics.items():
        body += _compact_string(name) + _uvarint(len(partitions) + 1) + b"".join(struct.pack(">i", p) for p in partitions) + b"\x00"
    body += b"\x00"
    cid = b"floe-suite"
    header = struct.pack(">hhih", 61, 0, correlation_id, len(cid)) + cid + b"\x00"
    with socket.create_connection((host, port), timeout=10) as s:
        s.settimeout(10)
        s.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
        got, payload = kafka_wire.read_response(s)
    assert got == correlation_id, f"DescribeProducers answer has correlation id {got}, sent {correlation_id}"
    r = _Reader(payload)
    r.skip_tags()  # response header v1
    r.take(">i")  # throttle time
    out = {}
    for _ in range(r.uvarint() - 1):
        name = r.compact_string()
        for _ in range(r.uvarint() - 1):
            index, error = r.take(">i"), r.take(">h")
            r.compact_string()  # error message
            producers = []
            for _ in range(r.uvarint() - 1):
                producers.append((r.take(">q"), r.take(">i"), r.take(">i"), r.take(">q"), r.take(">i"), r.take(">q")))
                r.skip_tags()
            r.skip_tags()
            out[(name, index)] = (error, producers)
        r.skip_tags()
    r.skip_tags()
    assert r.at == len(payload), f"{len(payload) - r.at} bytes left after the DescribeProducers answer"
    return out


def test_describe_producers_raw(broker, topic_name):
    """After an idempotent producer wrote 30 records to partition 0, DescribeProducers shows it
    there (epoch, last sequence 29, a recent timestamp, no transaction); partition 1 has no
    producer; a partition that does not exist is UNKNOWN_TOPIC_OR_PARTITION."""
    create_topic(broker.bootstrap, topic_name, 2)
    before = int(time.time() * 1000)
    produce(broker.bootstrap, topic_name, 30, partition=0, extra={"enable.idempotence": True})
    answer = describe_producers(broker.host, broker.port, {topic_name: [0, 1, 9]})
    error, producers = answer[(topic_name, 0)]
    assert error == 0 and len(producers) == 1, f"partition 0: error {error}, producers {producers}"
    pid, epoch, last_seq, last_ts, coord_epoch, txn_start = producers[0]
    assert pid >= 0 and epoch >= 0, producers
    assert last_seq == 29, f"last sequence {last_seq} after 30 records"
    assert before - 60_000 <= last_ts <= int(time.time() * 1000) + 60_000, f"last timestamp {last_ts} (test began at {before})"
    assert (coord_epoch, txn_start) == (-1, -1), producers
    assert answer[(topic_name, 1)] == (0, []), answer[(topic_name, 1)]
    assert answer[(topic_name, 9)][0] == 3, f"partition 9: {answer[(topic_name, 9)]}"


def test_librdkafka_telemetry_has_no_errors(broker, topic_name):
    """librdkafka 2.16 asks for telemetry subscriptions by default (KIP-714): it gets an instance
    id and no requested metrics, and logs no telemetry error or warning."""
    from confluent_kafka import Producer
    create_topic(broker.bootstrap, topic_name, 1)
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    log = logging.getLogger("telemetry-" + uuid.uuid4().hex[:6])
    log.setLevel(logging.DEBUG)
    log.addHandler(Collect())
    errors = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "debug": "telemetry", "logger": log,
                  "error_cb": lambda e: errors.append(e)})
    p.produce(topic_name, value=b"x")
    assert p.flush(30) == 0
    # librdkafka logs "Handled GetTelemetrySubscriptions" (with the outcome) after its parsing lines,
    # and hands log records over on poll: wait for that line itself, not for a parsing line before it.
    wait_for(lambda: (p.poll(0.1), any("Handled GetTelemetrySubscriptions" in r.getMessage() for r in records))[1], 30,
             "librdkafka to handle the GetTelemetrySubscriptions answer")
    del p
    lines = [f"{r.levelname} {r.getMessage()}" for r in records]
    handled = [line for line in lines if "Handled GetTelemetrySubscriptions" in line]
    assert handled and "err = Success" in handled[0] and "metrics = 0" in handled[0], "\n".join(lines[-20:])
    bad = [r for r in records if r.levelno >= logging.WARNING]
    assert not bad, "librdkafka warned or failed:\n" + "\n".join(f"{r.levelname} {r.getMessage()}" for r in bad)
    assert not errors, f"error callback: {errors}"


def test_list_client_metrics_resources(broker):
    """kafka-python list_config_resources (ListClientMetricsResources v0): no client-metrics
    resources exist."""
    kp = kafka_python_admin(broker.bootstrap)
    try:
        listed = kp.list_config_resources()
        assert not listed, f"client-metrics resources listed: {listed}"
    finally:
        kp.close()
