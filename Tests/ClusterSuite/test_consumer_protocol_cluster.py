"""A KIP-848 consumer group (group.protocol=consumer, confluent-kafka 2.16) on three brokers
when its coordinator stops: the group's state moves to the next coordinator with the group
object in the bucket, members carry on, and every record is consumed exactly once (offsets
committed on revocation). Also a mixed group (a classic member and a KIP-848 member, after an
online upgrade) keeps its classic member across the move (the group object holds it)."""
import threading
import uuid

import pytest

import cluster_wire
from conftest import create_topic, wait_for
from consumer_members import ConsumerProtocolMember
from load import unique_name


def Member(bootstrap, group, topic, name, seen, lock, protocol="consumer"):
    """A member that tolerates consume errors while brokers move (the full read decides); a
    classic one uses the cooperative-sticky assignor."""
    return ConsumerProtocolMember(bootstrap, group, topic, name, seen, lock, tolerate_consume_errors=True, leave_timeout=60,
                                  protocol=protocol, assignor="cooperative-sticky" if protocol == "classic" else None)

PARTITIONS = 6
BATCH = 600


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


def listed_as_consumer_group(bootstrap, group):
    from confluent_kafka import ConsumerGroupType
    from confluent_kafka.admin import AdminClient
    adm = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the result is in
    listed = adm.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(30)
    return group in {g.group_id for g in listed.valid}


@pytest.mark.parametrize("first", ["consumer", "classic"])
def test_consumer_group_moves_with_its_coordinator(cluster, first):
    """`first`: the protocol of member a. Classic: a forms a classic group alone, then b (KIP-848)
    joins and upgrades it into a mixed group before the move."""
    topic = unique_name("kip848")
    group = "kip848-" + uuid.uuid4().hex[:8]
    create_topic(cluster, topic, PARTITIONS)
    produce(cluster.bootstrap(), topic, 0, BATCH)
    seen, lock = [], threading.Lock()
    a = Member(cluster.bootstrap(), group, topic, "a", seen, lock, protocol=first)
    if first == "classic":
        wait_for(lambda: a.assigned == set(range(PARTITIONS)), 60, lambda: f"the classic member a to own every partition ({a.assigned})")
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
        if first == "classic":
            assert listed_as_consumer_group(cluster.bootstrap(live), group), "the mixed group is a consumer group after the move"
            # The classic member kept its membership (a lost one would rejoin as a third member
            # while the old entry waits for its session to end).
            from confluent_kafka.admin import AdminClient
            adm = AdminClient({"bootstrap.servers": cluster.bootstrap(live)})
            described = adm.describe_consumer_groups([group])[group].result(30)
            assert sorted(m.client_id for m in described.members) == ["a", "b"], f"members after the move: {described.members}"
    finally:
        a.leave()
        b.leave()
    assert not a.errors and not b.errors, f"member errors: {(a.errors + b.errors)[:5]}"
    keys = [(p, o) for p, o, _ in seen]
    assert len(keys) == len(set(keys)), f"{len(keys) - len(set(keys))} records consumed twice"
    assert len(set(keys)) == 2 * BATCH, f"consumed {len(set(keys))} distinct records of {2 * BATCH}"
