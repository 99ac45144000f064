"""Client quotas (AlterClientQuotas / DescribeClientQuotas, KIP-219 throttling) with real clients.

The admin calls go through kafka-python's own protocol codecs (confluent-kafka 2.16 has no
client-quota admin API); the throttled producer and consumer are confluent-kafka (librdkafka
2.16), which reports the broker's throttle_time_ms through `throttle_cb`.

How the rate is judged: Kafka measures a rate over 11 one-second samples and, until ten
windows have passed, over at least ten seconds (plus the part of the current second gone), so
a fresh client may send about eleven seconds' worth of its quota within its first second, and
is then held back until the rate is back at the quota; when that first sample expires (11 s
after the first record) a new burst goes through. The bytes moved from the client's start up
to 10.6 s later (the broker's first record is at or after the start, so the second burst is
never inside the span, however late the first request is) are therefore about quota × 11 s,
plus one small request per throttle (Kafka handles the next request once the mute ends, even
if the client is still over): the rate over the span must be within 10 % of the quota.
"""
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from kafka.admin import KafkaAdminClient
from kafka.protocol.admin.client_quotas import AlterClientQuotasRequest as AlterQ
from kafka.protocol.admin.client_quotas import DescribeClientQuotasRequest as DescribeQ

from conftest import create_topic

MiB = 1 << 20
QUOTA = MiB
SPAN = 10.6  # seconds measured from the client's start (see the module's comment)
INVALID_REQUEST = 42


@pytest.fixture(scope="module")
def kadmin(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="quota-admin")
    yield a
    a.close()


def alter(kadmin, entries, validate_only=False):
    """entries: [(entity [(type, name)], ops [(key, value or None to remove)])]; returns [(code, message)]."""
    request = AlterQ(entries=[
        AlterQ.EntryData(entity=[AlterQ.EntryData.EntityData(entity_type=t, entity_name=n) for t, n in entity],
                         ops=[AlterQ.EntryData.OpData(key=k, value=float(v or 0), remove=v is None) for k, v in ops])
        for entity, ops in entries], validate_only=validate_only)
    response = kadmin._manager.run(kadmin._manager.send, request)
    return [(e.error_code, e.error_message) for e in response.entries]


def describe(kadmin, components, strict=False):
    """components: [(type, match type, match)]; returns (code, message, {entity: {key: value}})."""
    request = DescribeQ(components=[DescribeQ.ComponentData(entity_type=t, match_type=m, match=x) for t, m, x in components],
                        strict=strict)
    response = kadmin._manager.run(kadmin._manager.send, request)
    found = {tuple((e.entity_type, e.entity_name) for e in entry.entity): {v.key: v.value for v in entry.values}
             for entry in (response.entries or [])}
    return response.error_code, response.error_message, found


def test_alter_and_describe_client_quotas(broker, kadmin):
    user = f"u-{uuid.uuid4().hex[:6]}"
    assert alter(kadmin, [
        ([("user", user)], [("producer_byte_rate", 2048), ("request_percentage", 12.5)]),
        ([("user", user), ("client-id", None)], [("consumer_byte_rate", 4096)]),
        ([("user", user), ("client-id", "app")], [("bogus_key", 1)]),
        ([("user", user), ("client-id", "app2")], [("consumer_byte_rate", 1.5)]),
    ]) == [(0, None), (0, None), (INVALID_REQUEST, "Invalid configuration key bogus_key"),
           (INVALID_REQUEST, "Proposed value for consumer_byte_rate must be an integer, not 1.5")]
    # validate_only stores nothing.
    assert alter(kadmin, [([("user", user), ("client-id", "dry")], [("producer_byte_rate", 1)])], validate_only=True) == [(0, None)]

    code, message, found = describe(kadmin, [("user", 0, user)])
    assert (code, message) == (0, None)
    assert found == {(("user", user),): {"producer_byte_rate": 2048.0, "request_percentage": 12.5},
                     (("user", user), ("client-id", None)): {"consumer_byte_rate": 4096.0}}, \
        "partial match: every entity with that user, whatever else it names"
    code, _, found = describe(kadmin, [("user", 0, user)], strict=True)
    assert code == 0 and list(found) == [(("user", user),)], f"strict match names only /users/{user}: {found}"
    code, _, found = describe(kadmin, [("user", 0, user), ("client-id", 1, None)], strict=True)
    assert code == 0 and list(found) == [(("user", user), ("client-id", None))], f"the default client id of {user}: {found}"
    code, message, _ = describe(kadmin, [("user", 0, None)])
    assert code == INVALID_REQUEST and "MATCH_TYPE_EXACT" in (message or ""), f"bad filter answered {code} {message!r}"

    # Removing every key removes the entity.
    assert alter(kadmin, [([("user", user)], [("producer_byte_rate", None), ("request_percentage", None)])]) == [(0, None)]
    _, _, found = describe(kadmin, [("user", 0, user)], strict=True)
    assert found == {}, f"/users/{user} still described after its quotas were removed: {found}"


def _drain_throttles(events):
    out = list(events)
    events.clear()
    return out


def test_producer_over_its_byte_rate_is_throttled(broker, kadmin, topic_name):
    create_topic(broker.bootstrap, topic_name, 1)
    client_id = f"quota-producer-{uuid.uuid4().hex[:6]}"
    assert alter(kadmin, [([("client-id", client_id)], [("producer_byte_rate", QUOTA)])]) == [(0, None)]
    throttles = []
    acked = []
    # Small batches: each throttle lets one more request through (as in Kafka).
    p = Producer({"bootstrap.servers": broker.bootstrap, "client.id": client_id, "linger.ms": 5, "batch.size": 16384,
                  "throttle_cb": lambda e: throttles.append(e.throttle_time)})

    def delivered(err, msg):
        assert err is None, f"delivery failed: {err}"
        acked.append((time.monotonic(), len(msg.value())))

    value = b"q" * 10_000
    # Far faster than the quota: keep ~4 MiB queued in the client at all times.
    start = time.monotonic()
    while time.monotonic() - start < SPAN:
        if len(p) < 400:
            p.produce(topic_name, value, on_delivery=delivered)
            p.poll(0)
        else:
            p.poll(0.01)
    sent = sum(b for t, b in acked if t - start < SPAN)
    rate = sent / SPAN
    print(f"producer: {sent} bytes acknowledged in {SPAN} s = {rate / MiB:.3f} MiB/s (quota {QUOTA / MiB} MiB/s)")
    assert 0.9 * QUOTA <= rate <= 1.1 * QUOTA, \
        f"producer acknowledged {sent} bytes in {SPAN} s = {rate / MiB:.3f} MiB/s against a quota of {QUOTA / MiB} MiB/s"
    assert any(t > 0 for t in throttles), f"the broker reported no throttle time to librdkafka (throttle_cb saw {throttles[:10]})"

    # Removing the quota lifts the throttle: what is sent after it is never throttled.
    assert alter(kadmin, [([("client-id", client_id)], [("producer_byte_rate", None)])]) == [(0, None)]
    assert p.flush(60) == 0, "messages queued before the removal were not delivered"
    _drain_throttles(throttles)
    before = len(acked)
    for _ in range(300):  # 3 MB: three seconds of the removed quota, far over what the sensor allows now
        p.produce(topic_name, value, on_delivery=delivered)
        p.poll(0)
    assert p.flush(60) == 0, "messages produced after the removal were not delivered"
    assert len(acked) - before == 300
    late = [t for t in _drain_throttles(throttles) if t > 0]
    assert late == [], f"throttled after the quota was removed: {late}"


def test_consumer_over_its_byte_rate_is_throttled(broker, kadmin, topic_name):
    create_topic(broker.bootstrap, topic_name, 1)
    filler = Producer({"bootstrap.servers": broker.bootstrap, "client.id": "quota-filler", "linger.ms": 5})
    value = b"c" * 10_000
    count = 1500  # 15 MB: more than the consumer may read in the measured span
    for _ in range(count):
        filler.produce(topic_name, value)
        filler.poll(0)
    assert filler.flush(120) == 0, "filling the topic did not finish"

    client_id = f"quota-consumer-{uuid.uuid4().hex[:6]}"
    assert alter(kadmin, [([("client-id", client_id)], [("consumer_byte_rate", QUOTA)])]) == [(0, None)]
    throttles = []
    c = Consumer({"bootstrap.servers": broker.bootstrap, "client.id": client_id, "group.id": f"g-{client_id}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, "max.partition.fetch.bytes": 65536,
                  "throttle_cb": lambda e: throttles.append(e.throttle_time)})
    try:
        start = time.monotonic()
        c.subscribe([topic_name])
        received = []
        while time.monotonic() - start < SPAN:
            m = c.poll(0.05)
            if m is None:
                continue
            assert m.error() is None, f"consumer error: {m.error()}"
            received.append((time.monotonic(), len(m.value())))
        got = sum(b for t, b in received if t - start < SPAN)
        rate = got / SPAN
        print(f"consumer: {got} bytes received in {SPAN} s = {rate / MiB:.3f} MiB/s (quota {QUOTA / MiB} MiB/s)")
        assert len(received) < count, "the consumer read the whole topic: the measurement is not limited by the quota"
        assert 0.9 * QUOTA <= rate <= 1.1 * QUOTA, \
            f"consumer received {got} bytes in {SPAN} s = {rate / MiB:.3f} MiB/s against a quota of {QUOTA / MiB} MiB/s"
        c.poll(0)
        assert any(t > 0 for t in throttles), f"the broker reported no throttle time to librdkafka (throttle_cb saw {throttles[:10]})"
    finally:
        c.close()
    assert alter(kadmin, [([("client-id", client_id)], [("consumer_byte_rate", None)])]) == [(0, None)]
