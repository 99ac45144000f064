"""SASL_PLAINTEXT with real clients against floe-broker (see README.md)."""
import logging
import os
import signal
import socket
import struct
import subprocess
import time
import uuid

import pytest

BROKER = os.environ.get("FLOE_BROKER_BIN", "")
IN_CI = os.environ.get("CI") == "true"
USERS = {"admin": "admin-secret", "alice": "alice:with:colons", "bob": "bob-secret"}


def _need(what: str, reason: str):
    if IN_CI:
        pytest.fail(f"{what} is missing ({reason}) and CI=true: a missing peer is a failure")
    pytest.skip(f"*** SKIPPED: {what} is missing ({reason}) ***")


try:
    import confluent_kafka
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
    from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialDeletion,
                                       UserScramCredentialUpsertion)
except ImportError as e:  # pragma: no cover - reported by the fixture
    confluent_kafka = None
    CONFLUENT_ERROR = str(e)
try:
    import kafka as kafka_python
except ImportError as e:  # pragma: no cover
    kafka_python = None
    KAFKA_PYTHON_ERROR = str(e)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningBroker:
    def __init__(self, root: str, extra: tuple = ()):
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.users_file = os.path.join(root, "users")
        with open(self.users_file, "w") as f:
            f.write("# bootstrap users\n" + "".join(f"{u}:{p}\n" for u, p in USERS.items()))
        self.log_path = os.path.join(root, "broker.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [BROKER, "--listen", self.bootstrap, "--advertise", self.bootstrap, "--storage", f"file://{root}/bucket",
             "--security-protocol", "SASL_PLAINTEXT", "--sasl-users-file", self.users_file, "--inter-broker-user", "admin",
             "--connection-failed-authentication-delay-ms", "50", *extra],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=root)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"floe-broker exited with {self.proc.returncode}: {open(self.log_path).read()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("floe-broker did not listen within 30 s")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def conf(self, mechanism: str, user: str, password: str) -> dict:
        return {"bootstrap.servers": self.bootstrap, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": mechanism,
                "sasl.username": user, "sasl.password": password}


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    if not BROKER:
        _need("FLOE_BROKER_BIN", "absolute path of floe-broker; scripts/test sets it")
    if not os.path.isabs(BROKER) or not os.access(BROKER, os.X_OK):
        pytest.fail(f"FLOE_BROKER_BIN={BROKER!r} is not an absolute path to an executable")
    b = RunningBroker(str(tmp_path_factory.mktemp("sasl")))
    yield b
    b.stop()
    log = open(b.log_path).read()
    # Secrets never reach the log.
    for password in list(USERS.values()) + ["carol-pw", "wrong-password"]:
        assert password not in log, "a password appeared in the broker log"


@pytest.fixture
def confluent():
    if confluent_kafka is None:
        _need("confluent-kafka", CONFLUENT_ERROR)


@pytest.fixture
def kafka_py():
    if kafka_python is None:
        _need("kafka-python", KAFKA_PYTHON_ERROR)


def produce_and_consume(conf: dict, count: int = 5) -> list:
    topic = "sasl-" + uuid.uuid4().hex[:8]
    p = Producer(conf)
    for i in range(count):
        p.produce(topic, value=b"m%d" % i)
    assert p.flush(30) == 0, "messages left unsent"
    c = Consumer({**conf, "group.id": "g-" + topic, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    deadline = time.time() + 30
    while len(got) < count and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    return got


def auth_error(conf: dict) -> KafkaError:
    """The error librdkafka reports (error_cb) for a login that must fail."""
    errors = []
    p = Producer({**conf, "error_cb": errors.append})
    deadline = time.time() + 20
    while time.time() < deadline and not any(e.code() == KafkaError._AUTHENTICATION for e in errors):
        p.poll(0.2)
    return next((e for e in errors if e.code() == KafkaError._AUTHENTICATION), errors[0] if errors else None)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_confluent_produces_and_consumes(broker, confluent, mechanism):
    got = produce_and_consume(broker.conf(mechanism, "alice", USERS["alice"]))
    assert got == [b"m%d" % i for i in range(5)]


@pytest.mark.parametrize("user,password", [("alice", "wrong-password"), ("nobody", "wrong-password")])
def test_confluent_wrong_credentials_fail_with_authentication_error(broker, confluent, user, password):
    error = auth_error(broker.conf("SCRAM-SHA-512", user, password))
    assert error is not None and error.code() == KafkaError._AUTHENTICATION, f"got {error}"
    assert "Authentication failed" in error.str()
    # The broker keeps serving others.
    assert produce_and_consume(broker.conf("SCRAM-SHA-256", "bob", USERS["bob"]), count=1) == [b"m0"]


def test_request_before_authentication_closes_the_connection(broker):
    # Metadata v0 (api 3), correlation id 1, client id "t", no topics: the broker must close.
    body = struct.pack(">hhih", 3, 0, 1, 1) + b"t" + struct.pack(">i", 0)
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        assert s.recv(4) == b"", "the broker answered a request made before SASL authentication"


def test_kafka_python_scram(broker, kafka_py):
    from kafka import KafkaConsumer, KafkaProducer
    topic = "kp-" + uuid.uuid4().hex[:8]
    common = {"bootstrap_servers": broker.bootstrap, "security_protocol": "SASL_PLAINTEXT"}
    p = KafkaProducer(**common, sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="bob", sasl_plain_password=USERS["bob"])
    p.send(topic, b"hello").get(timeout=30)
    p.close()
    c = KafkaConsumer(topic, **common, sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="alice",
                      sasl_plain_password=USERS["alice"], auto_offset_reset="earliest", consumer_timeout_ms=15000, group_id="g-" + topic)
    values = [m.value for m in c]
    c.close()
    assert values == [b"hello"]


def test_aiokafka_scram(broker):
    try:
        import asyncio
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    except ImportError as e:
        _need("aiokafka", str(e))
    topic = "aio-" + uuid.uuid4().hex[:8]
    common = {"bootstrap_servers": broker.bootstrap, "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
              "sasl_plain_username": "alice", "sasl_plain_password": USERS["alice"]}

    async def run():
        p = AIOKafkaProducer(**common)
        await p.start()
        try:
            await p.send_and_wait(topic, b"aio")
        finally:
            await p.stop()
        c = AIOKafkaConsumer(topic, **common, auto_offset_reset="earliest", group_id="g-" + topic)
        await c.start()
        try:
            m = await asyncio.wait_for(c.getone(), 30)
            return m.value
        finally:
            await c.stop()

    assert asyncio.run(run()) == b"aio"


def test_kafka_python_wrong_password(broker, kafka_py, caplog):
    from kafka import KafkaProducer
    from kafka.errors import KafkaTimeoutError
    caplog.set_level(logging.INFO, logger="kafka")
    with pytest.raises(KafkaTimeoutError):
        KafkaProducer(bootstrap_servers=broker.bootstrap, security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                      sasl_plain_username="bob", sasl_plain_password="wrong-password", bootstrap_timeout_ms=3000)
    assert any("SaslAuthenticationFailedError" in r.getMessage() for r in caplog.records), \
        "kafka-python did not report SaslAuthenticationFailedError"


def test_confluent_reauthenticates_on_the_same_connection(tmp_path, confluent):
    """KIP-368: with connections.max.reauth.ms the broker announces a session lifetime and
    librdkafka logs in again on its open connection before it ends; producing never stops."""
    http = free_port()
    if not BROKER:
        _need("FLOE_BROKER_BIN", "absolute path of floe-broker; scripts/test sets it")
    b = RunningBroker(str(tmp_path), extra=("--connections-max-reauth-ms", "1500", "--http", f"127.0.0.1:{http}"))
    try:
        delivered = []
        p = Producer({**b.conf("SCRAM-SHA-512", "bob", USERS["bob"]), "linger.ms": 0})
        topic = "reauth-" + uuid.uuid4().hex[:8]
        end = time.time() + 5
        i = 0
        while time.time() < end:
            p.produce(topic, value=b"r%d" % i, on_delivery=lambda err, msg: delivered.append(err))
            i += 1
            p.poll(0.25)
        assert p.flush(30) == 0
        assert len(delivered) == i and all(e is None for e in delivered), f"delivery errors: {[e for e in delivered if e]}"
        import urllib.request
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=10).read().decode()
        line = next((l for l in metrics.splitlines() if l.startswith("floe_broker_sasl_reauthentications_total{")), None)
        assert line is not None and float(line.split()[-1]) >= 1, f"no re-authentication counted: {line}"
    finally:
        b.stop()


def test_admin_client_manages_scram_users(broker, confluent):
    admin = AdminClient(broker.conf("SCRAM-SHA-512", "admin", USERS["admin"]))
    futures = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"carol-pw")])
    for f in futures.values():
        f.result(timeout=30)
    described = admin.describe_user_scram_credentials(["carol"])["carol"].result(timeout=30)
    infos = [(i.mechanism, i.iterations) for i in described.scram_credential_infos]
    assert infos == [(ScramMechanism.SCRAM_SHA_512, 8192)]
    assert produce_and_consume(broker.conf("SCRAM-SHA-512", "carol", "carol-pw"), count=2) == [b"m0", b"m1"]
    # No SCRAM-SHA-256 credential for carol: that mechanism fails.
    error = auth_error(broker.conf("SCRAM-SHA-256", "carol", "carol-pw"))
    assert error is not None and error.code() == KafkaError._AUTHENTICATION, f"got {error}"
    # Deleted: carol can no longer log in.
    for f in admin.alter_user_scram_credentials([UserScramCredentialDeletion("carol", ScramMechanism.SCRAM_SHA_512)]).values():
        f.result(timeout=30)
    error = auth_error(broker.conf("SCRAM-SHA-512", "carol", "carol-pw"))
    assert error is not None and error.code() == KafkaError._AUTHENTICATION, f"got {error}"
