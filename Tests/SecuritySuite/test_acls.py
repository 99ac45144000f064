"""ACLs with real clients: confluent-kafka's AdminClient manages them, producers and consumers
are allowed or refused by them. Principals come from conftest (User:ANONYMOUS today; SASL users
are added there, and the tests take the principal as a parameter)."""
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient, NewTopic,
                                   ResourcePatternType, ResourceType)

from conftest import ANONYMOUS

PRINCIPALS = [ANONYMOUS]
# Kafka's CLUSTER resource type (4); confluent-kafka names that code BROKER.
CLUSTER = ResourceType.BROKER


def admin(bootstrap, principal):
    return AdminClient(principal.client_config(bootstrap))


def wait(futures, timeout=30):
    return {k: f.result(timeout=timeout) for k, f in futures.items()}


def binding(principal, rtype, name, op, permission=AclPermissionType.ALLOW, pattern=ResourcePatternType.LITERAL, host="*"):
    return AclBinding(rtype, name, pattern, principal.name, host, op, permission)


def produce(bootstrap, principal, topic, count=5, **extra):
    """Produces `count` messages; returns the delivery errors (None for each success)."""
    errors = []
    p = Producer(principal.client_config(bootstrap, **{"message.timeout.ms": 15000, **extra}))
    for i in range(count):
        p.produce(topic, value=f"m{i}".encode(), on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    assert len(errors) == count, f"only {len(errors)} of {count} deliveries reported"
    return errors


def consume(bootstrap, principal, topic, group, want, timeout=30):
    """Consumes until `want` messages or a consumer error; returns (values, first error)."""
    c = Consumer(principal.client_config(bootstrap, **{"group.id": group, "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    values, error = [], None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(values) < want:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                error = m.error()
                break
            values.append(m.value())
    finally:
        c.close()
    return values, error


@pytest.mark.parametrize("principal", PRINCIPALS, ids=lambda p: p.name)
def test_admin_client_creates_describes_and_deletes_acls(broker, principal):
    broker.start({"authorizer": "acl", "super.users": principal.name})
    a = admin(broker.bootstrap, principal)
    acls = [
        binding(principal, ResourceType.TOPIC, "orders", AclOperation.READ),
        binding(principal, ResourceType.TOPIC, "orders-", AclOperation.WRITE, pattern=ResourcePatternType.PREFIXED),
        binding(principal, ResourceType.GROUP, "billing", AclOperation.READ, permission=AclPermissionType.DENY, host="10.0.0.1"),
        binding(principal, CLUSTER, "kafka-cluster", AclOperation.DESCRIBE),
    ]
    results = wait(a.create_acls(acls))
    assert set(results) == set(acls) and all(r is None for r in results.values())

    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.ANY)
    assert set(a.describe_acls(everything).result(timeout=30)) == set(acls)
    # MATCH: the bindings that apply to topic orders-eu (the prefixed one, not the literal "orders").
    match = AclBindingFilter(ResourceType.TOPIC, "orders-eu", ResourcePatternType.MATCH, None, None, AclOperation.ANY, AclPermissionType.ANY)
    assert a.describe_acls(match).result(timeout=30) == [acls[1]]
    denies = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.DENY)
    assert a.describe_acls(denies).result(timeout=30) == [acls[2]]

    topics = AclBindingFilter(ResourceType.TOPIC, None, ResourcePatternType.ANY, principal.name, None, AclOperation.ANY, AclPermissionType.ANY)
    deleted = wait(a.delete_acls([topics]))
    assert set(deleted[topics]) == {acls[0], acls[1]}
    assert set(a.describe_acls(everything).result(timeout=30)) == {acls[2], acls[3]}

    # A binding the broker refuses (bad principal) fails alone.
    bad = AclBinding(ResourceType.TOPIC, "t", ResourcePatternType.LITERAL, "nobody", "*", AclOperation.READ, AclPermissionType.ALLOW)
    with pytest.raises(KafkaException):
        wait(a.create_acls([bad]))


@pytest.mark.parametrize("principal", PRINCIPALS, ids=lambda p: p.name)
def test_acls_allow_and_deny_produce_and_consume(broker, principal):
    run = uuid.uuid4().hex[:8]
    allowed, secret, hidden, group = f"app-{run}", f"secret-{run}", f"hidden-{run}", f"app-group-{run}"
    # Phase 1, as a super user: topics and ACLs.
    broker.start({"authorizer": "acl", "super.users": principal.name})
    a = admin(broker.bootstrap, principal)
    wait(a.create_topics([NewTopic(allowed, 1), NewTopic(secret, 1), NewTopic(hidden, 1)]))
    results = wait(a.create_acls([
        binding(principal, ResourceType.TOPIC, "app-", AclOperation.ALL, pattern=ResourcePatternType.PREFIXED),
        binding(principal, ResourceType.TOPIC, secret, AclOperation.DESCRIBE),
        binding(principal, ResourceType.GROUP, group, AclOperation.READ),
        binding(principal, CLUSTER, "kafka-cluster", AclOperation.ALTER),
    ]))
    assert all(r is None for r in results.values())
    broker.stop()

    # Phase 2, no longer a super user: the ACLs (read back from the bucket) decide.
    broker.start({"authorizer": "acl"})
    assert produce(broker.bootstrap, principal, allowed, **{"enable.idempotence": True}) == [None] * 5
    errors = produce(broker.bootstrap, principal, secret)
    assert [e.code() if e else None for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED] * 5

    values, error = consume(broker.bootstrap, principal, allowed, group, want=5)
    assert error is None and sorted(values) == [f"m{i}".encode() for i in range(5)]
    values, error = consume(broker.bootstrap, principal, secret, group, want=1)
    assert values == [] and error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # The group is not covered for another name: GROUP_AUTHORIZATION_FAILED.
    values, error = consume(broker.bootstrap, principal, allowed, f"other-{run}", want=1)
    assert values == [] and error is not None and error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED

    # Deny wins over the prefixed ALLOW ALL; ALTER on the cluster lets this principal manage ACLs.
    a = admin(broker.bootstrap, principal)
    wait(a.create_acls([binding(principal, ResourceType.TOPIC, allowed, AclOperation.WRITE, permission=AclPermissionType.DENY)]))
    errors = produce(broker.bootstrap, principal, allowed, count=2)
    assert [e.code() if e else None for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED] * 2
    # Creating topics needs CREATE, which it does not have.
    created = a.create_topics([NewTopic(f"other-{run}", 1)])
    with pytest.raises(KafkaException) as refused:
        wait(created)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # Host-specific bindings match the client's address (a binding for another host does not).
    wait(a.create_acls([binding(principal, ResourceType.TOPIC, secret, AclOperation.WRITE, host="127.0.0.2")]))
    assert [e.code() if e else None for e in produce(broker.bootstrap, principal, secret, count=1)] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    wait(a.create_acls([binding(principal, ResourceType.TOPIC, secret, AclOperation.WRITE, host="127.0.0.1")]))
    assert produce(broker.bootstrap, principal, secret, count=1) == [None]
    # Metadata lists only the topics it may describe.
    listed = set(a.list_topics(timeout=30).topics)
    assert allowed in listed and secret in listed and hidden not in listed


def test_authorizer_off_allows_everything(broker):
    broker.start({})
    run = uuid.uuid4().hex[:8]
    assert produce(broker.bootstrap, ANONYMOUS, f"open-{run}", count=2) == [None, None]
    # As in Kafka, the ACL APIs answer SECURITY_DISABLED without an authorizer (librdkafka reports
    # it per creation; it ignores DescribeAcls' top-level error).
    a = admin(broker.bootstrap, ANONYMOUS)  # kept: a destroyed client fails its requests with _DESTROY
    with pytest.raises(KafkaException) as refused:
        wait(a.create_acls([binding(ANONYMOUS, ResourceType.TOPIC, "t", AclOperation.READ)]))
    assert refused.value.args[0].code() == KafkaError.SECURITY_DISABLED
