"""TLS listeners with real clients: confluent-kafka (librdkafka), kafka-python, openssl s_client."""
import subprocess
import uuid

import pytest

from tls_support import require_module, tls_settings


def confluent_roundtrip(ck, bootstrap: str, config: dict, count: int = 200) -> list[bytes]:
    """Produces `count` records to a fresh topic and consumes them back; returns the values read."""
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    producer = ck.Producer({"bootstrap.servers": bootstrap, **config})
    for i in range(count):
        producer.produce(topic, value=f"value-{i}".encode())
    assert producer.flush(30) == 0, "records still unsent after 30 s"
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "auto.offset.reset": "earliest", **config})
    consumer.subscribe([topic])
    values: list[bytes] = []
    import time
    deadline = time.monotonic() + 60
    while len(values) < count and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is None:
            continue
        if message.error() is not None:
            # A broker that has not yet replayed the new topic from the metadata log answers
            # UNKNOWN_TOPIC_OR_PART; librdkafka reports it and retries (as against Kafka).
            assert message.error().code() == ck.KafkaError.UNKNOWN_TOPIC_OR_PART, message.error()
            continue
        values.append(message.value())
    consumer.close()
    return values


def test_confluent_kafka_produces_and_consumes_over_ssl(pki, start_broker):
    ck = require_module("confluent_kafka")
    broker = start_broker(tls_settings(pki), ca=pki.path("ca.pem"))
    values = confluent_roundtrip(ck, broker.bootstrap, {"security.protocol": "SSL", "ssl.ca.location": pki.path("ca.pem")})
    assert values == [f"value-{i}".encode() for i in range(200)]


def test_confluent_kafka_with_a_client_certificate_when_it_is_required(pki, start_broker):
    ck = require_module("confluent_kafka")
    cert = (pki.path("client.pem"), pki.path("client.key"))
    broker = start_broker(tls_settings(pki, client_auth="required"), ca=pki.path("ca.pem"), client_cert=cert)
    config = {"security.protocol": "SSL", "ssl.ca.location": pki.path("ca.pem"),
              "ssl.certificate.location": cert[0], "ssl.key.location": cert[1]}
    values = confluent_roundtrip(ck, broker.bootstrap, config, count=50)
    assert values == [f"value-{i}".encode() for i in range(50)]

    # Without a certificate the broker refuses the handshake: metadata never arrives.
    failures_before = broker.metric("floe_broker_tls_handshake_failures_total")
    anonymous = ck.Producer({"bootstrap.servers": broker.bootstrap, "security.protocol": "SSL",
                             "ssl.ca.location": pki.path("ca.pem")})
    with pytest.raises(ck.KafkaException):
        anonymous.list_topics(timeout=5)
    assert broker.metric("floe_broker_tls_handshake_failures_total") > failures_before


def test_kafka_python_produces_and_consumes_over_ssl(pki, start_broker):
    kafka = require_module("kafka")
    broker = start_broker(tls_settings(pki), ca=pki.path("ca.pem"))
    topic = f"tls-kp-{uuid.uuid4().hex[:8]}"
    ssl_config = {"security_protocol": "SSL", "ssl_cafile": pki.path("ca.pem")}
    producer = kafka.KafkaProducer(bootstrap_servers=broker.bootstrap, **ssl_config)
    for i in range(100):
        producer.send(topic, f"kp-{i}".encode())
    producer.flush(30)
    producer.close()
    consumer = kafka.KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                                   consumer_timeout_ms=20000, **ssl_config)
    values = []
    for message in consumer:
        values.append(message.value)
        if len(values) == 100:
            break
    consumer.close()
    assert values == [f"kp-{i}".encode() for i in range(100)]


def test_tls_1_1_is_refused(pki, start_broker):
    broker = start_broker(tls_settings(pki), ca=pki.path("ca.pem"))
    # SECLEVEL=0 so that the client really offers TLS 1.1: the refusal is the broker's.
    result = subprocess.run(["openssl", "s_client", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-connect", broker.bootstrap],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0, result.stdout + result.stderr
    # The broker's alert 70 (protocol_version), not a refusal by the client itself.
    assert "alert protocol version" in result.stdout + result.stderr, result.stdout + result.stderr
    assert "no peer certificate available" in result.stdout
    assert broker.metric("floe_broker_tls_handshake_failures_total") >= 1

    # TLS 1.2 is accepted.
    ok = subprocess.run(["openssl", "s_client", "-tls1_2", "-CAfile", pki.path("ca.pem"), "-connect", broker.bootstrap],
                        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert "Verify return code: 0 (ok)" in ok.stdout, ok.stdout + ok.stderr


def test_two_brokers_talk_to_each_other_over_mutual_tls(pki, start_broker, tmp_path):
    """The internal listener is SSL with client certificates required: the second broker joins
    through the first (the controller) with inter.broker.ssl.ca.file and its own certificate."""
    ck = require_module("confluent_kafka")
    cert = (pki.path("client.pem"), pki.path("client.key"))
    bucket = str(tmp_path / "bucket")
    settings = tls_settings(pki, client_auth="required")
    first = start_broker(settings, ca=pki.path("ca.pem"), client_cert=cert, data=bucket, node=1)
    second = start_broker(settings, ca=pki.path("ca.pem"), client_cert=cert, data=bucket, node=2)
    config = {"security.protocol": "SSL", "ssl.ca.location": pki.path("ca.pem"),
              "ssl.certificate.location": cert[0], "ssl.key.location": cert[1]}
    import time
    deadline = time.monotonic() + 60
    brokers = set()
    while time.monotonic() < deadline:
        metadata = ck.Producer({"bootstrap.servers": first.bootstrap, **config}).list_topics(timeout=10)
        brokers = {b.port for b in metadata.brokers.values()}
        if brokers == {first.port, second.port}:
            break
        time.sleep(0.2)  # poll interval while the second broker registers, not synchronization
    assert brokers == {first.port, second.port}, f"brokers in metadata: {brokers}\n{second.log_tail()}"
    values = confluent_roundtrip(ck, f"{first.bootstrap},{second.bootstrap}", config, count=100)
    assert values == [f"value-{i}".encode() for i in range(100)]
