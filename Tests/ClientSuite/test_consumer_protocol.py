"""KIP-848 consumer groups (group.protocol=consumer) with confluent-kafka 2.16 (librdkafka 2.16):
members joining and leaving while records flow, every record consumed exactly once across the
members (offsets committed synchronously on revocation and on leaving), a new member resuming
from the committed offsets, and the group seen through the admin API. Mixed groups: a classic
group upgraded online to a consumer group one member at a time, and downgraded back."""
import os
import sys
import threading
import time
import uuid

import pytest

from conftest import admin, create_topic, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "PythonSupport"))
from consumer_members import ConsumerProtocolMember as Member  # noqa: E402

PARTITIONS = 6
MAX_RECORDS = 200_000


def covered(members):
    """The partitions the members own together, if no two own the same one; else None."""
    owned = [p for m in members for p in m.assigned]
    return set(owned) if len(owned) == len(set(owned)) else None


class PacedProducer:
    """Writes records round-robin over the partitions in its own thread, in small paced batches,
    until `finish()`, which returns how many were written."""

    def __init__(self, bootstrap, topic):
        self.bootstrap, self.topic = bootstrap, topic
        self.stop = threading.Event()
        self.produced = []
        self.errors = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "linger.ms": 5})
        i = 0
        while not self.stop.is_set() and i < MAX_RECORDS:
            for _ in range(50):
                p.produce(self.topic, key=str(i).encode(), value=f"v{i}".encode(), partition=i % PARTITIONS,
                          on_delivery=lambda err, msg: err and self.errors.append(str(err)))
                i += 1
            p.flush(30)
            time.sleep(0.05)  # pacing, not synchronization
        assert p.flush(30) == 0
        self.produced.append(i)

    def finish(self):
        self.stop.set()
        self.thread.join(60)
        assert self.produced, "the producer did not finish"
        assert not self.errors, f"produce errors: {self.errors[:5]}"
        return self.produced[0]


def assert_every_record_once(seen, produced, everyone):
    """No member error, no record consumed twice, every produced record consumed."""
    errors = [e for m in everyone for e in m.errors]
    assert not errors, f"member errors: {errors[:5]}"
    keys = [(p, o) for p, o, _ in seen]
    dupes = {k for k in keys if keys.count(k) > 1} if len(keys) != len(set(keys)) else set()
    assert not dupes, f"{len(keys) - len(set(keys))} records consumed twice, e.g. {sorted(dupes)[:5]}"
    assert len(set(keys)) == produced, f"consumed {len(set(keys))} distinct records of {produced}"


def test_members_join_and_leave_every_record_once(broker, topic_name):
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, PARTITIONS)
    group = "kip848-" + uuid.uuid4().hex[:8]
    seen, lock = [], threading.Lock()
    producer = PacedProducer(bootstrap, topic_name)
    produced = None

    a = Member(bootstrap, group, topic_name, "a", seen, lock)
    b = Member(bootstrap, group, topic_name, "b", seen, lock)
    members = [a, b]
    everyone = [a, b]
    try:
        wait_for(lambda: covered([a, b]) == set(range(PARTITIONS)) and a.assigned and b.assigned, 40,
                 "a and b to share all partitions")
        c = Member(bootstrap, group, topic_name, "c", seen, lock)
        members.append(c)
        everyone.append(c)
        wait_for(lambda: covered([a, b, c]) == set(range(PARTITIONS)) and all(m.assigned for m in (a, b, c)), 40,
                 "three members to share all partitions")
        b.leave()
        members.remove(b)
        wait_for(lambda: covered([a, c]) == set(range(PARTITIONS)), 40, "a and c to take over b's partitions")
        c.leave()
        members.remove(c)
        d = Member(bootstrap, group, topic_name, "d", seen, lock)
        members.append(d)
        everyone.append(d)
        wait_for(lambda: covered([a, d]) == set(range(PARTITIONS)) and d.assigned, 40,
                 "a new member d to share the partitions with a")
        produced = producer.finish()
        wait_for(lambda: len({(p, o) for p, o, _ in seen}) >= produced, 60,
                 f"all {produced} records to be consumed by the group")
    finally:
        for m in list(members):
            m.leave()
    assert_every_record_once(seen, produced, everyone)
    by_member = {}
    for p, _, name in seen:
        by_member.setdefault(name, {}).setdefault(p, 0)
        by_member[name][p] += 1
    assert {name for _, _, name in seen} >= {"a", "b", "c", "d"}, f"not every member consumed something: {by_member}"

    # The group is seen through the admin API: listed as a consumer-protocol group, described
    # by ConsumerGroupDescribe (type CONSUMER), and its committed offsets cover every record.
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    adm = admin(bootstrap)
    committed = adm.list_consumer_group_offsets([ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic_name, p) for p in range(PARTITIONS)])])[group].result(30)
    total = sum(tp.offset for tp in committed.topic_partitions)
    assert total == produced, f"committed offsets sum to {total}, expected {produced}: {committed.topic_partitions}"


def test_describe_and_list_consumer_group(broker, topic_name):
    from confluent_kafka import ConsumerGroupType
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 3)
    group = "kip848-d-" + uuid.uuid4().hex[:8]
    seen, lock = [], threading.Lock()
    m = Member(bootstrap, group, topic_name, "solo", seen, lock)
    try:
        wait_for(lambda: m.assigned == {0, 1, 2}, 40, "the single member to own all 3 partitions")
        adm = admin(bootstrap)
        desc = adm.describe_consumer_groups([group])[group].result(30)
        assert desc.type == ConsumerGroupType.CONSUMER, f"group type {desc.type}, expected CONSUMER"
        assert str(desc.state).upper().endswith("STABLE"), f"group state {desc.state}"
        assert len(desc.members) == 1, f"members {desc.members}"
        got = sorted(tp.partition for tp in desc.members[0].assignment.topic_partitions)
        assert got == [0, 1, 2], f"described assignment {got}"
        listed = adm.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(30)
        ids = {g.group_id: g for g in listed.valid}
        assert group in ids, f"{group} not listed among consumer-type groups {sorted(ids)}"
        classic = adm.list_consumer_groups(types={ConsumerGroupType.CLASSIC}).result(30)
        assert group not in {g.group_id for g in classic.valid}, "a consumer group listed as classic"
    finally:
        m.leave()
    assert not m.errors, f"member errors: {m.errors[:5]}"


def test_regex_subscription_follows_new_topics(broker, topic_name):
    from confluent_kafka import Consumer
    bootstrap = broker.bootstrap
    first, second = f"{topic_name}-r1", f"{topic_name}-r2"
    create_topic(bootstrap, first, 2)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "kip848-re-" + uuid.uuid4().hex[:8], "group.protocol": "consumer",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest", "topic.metadata.refresh.interval.ms": 1000})
    try:
        c.subscribe([f"^{topic_name}-r.*"])

        def owned():
            for m in c.consume(num_messages=100, timeout=0.1):
                assert m.error() is None, f"consumer error: {m.error()}"
            return {(tp.topic, tp.partition) for tp in c.assignment()}

        wait_for(lambda: owned() == {(first, 0), (first, 1)}, 40, f"the regex member to own {first}'s 2 partitions")
        create_topic(bootstrap, second, 1)
        wait_for(lambda: owned() == {(first, 0), (first, 1), (second, 0)}, 40,
                 f"the regex member to own {second} too, created after it subscribed")
    finally:
        c.close()


def group_type(bootstrap, group):
    """"classic" or "consumer": the type filter of ListGroups (v5) that lists `group` (None: neither)."""
    from confluent_kafka import ConsumerGroupType
    adm = admin(bootstrap)
    for kind, name in [(ConsumerGroupType.CLASSIC, "classic"), (ConsumerGroupType.CONSUMER, "consumer")]:
        if group in {g.group_id for g in adm.list_consumer_groups(types={kind}).result(30).valid}:
            return name
    return None


@pytest.mark.parametrize("assignor", ["cooperative-sticky", "range"])
def test_mixed_group_upgrade_and_downgrade_every_record_once(broker, topic_name, assignor):
    """A classic group rolled to group.protocol=consumer one member at a time while records
    flow (a consumer-protocol member joins the Stable classic group, converting it; the classic
    members are then replaced one by one), then rolled back (the consumer-protocol members
    replaced by classic ones; the group becomes classic again when the last one leaves). Every
    member commits what it processed synchronously on revocation and on leaving: every record is
    consumed exactly once."""
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, PARTITIONS)
    group = "mixed-" + uuid.uuid4().hex[:8]
    seen, lock = [], threading.Lock()
    everyone, members = [], []
    produced = None

    def start(name, protocol):
        m = Member(bootstrap, group, topic_name, name, seen, lock, protocol=protocol,
                   assignor=assignor if protocol == "classic" else None)
        everyone.append(m)
        members.append(m)
        return m

    def stop(m):
        members.remove(m)
        m.leave()

    def settled(what):
        try:
            wait_for(lambda: covered(members) == set(range(PARTITIONS)) and all(m.assigned for m in members), 60,
                     f"{what}: {[m.name for m in members]} to share all partitions")
        except AssertionError as e:
            owned = {m.name: sorted(m.assigned) for m in members}
            raise AssertionError(f"{e}; owned {owned}; member errors {[x for m in everyone for x in m.errors][:5]}") from None

    producer = PacedProducer(bootstrap, topic_name)
    try:
        start("classic-a", "classic")
        start("classic-b", "classic")
        settled("a classic group")
        assert group_type(bootstrap, group) == "classic"
        # Upgrade: a consumer-protocol member joins the Stable classic group.
        start("consumer-c", "consumer")
        settled("upgraded")
        assert group_type(bootstrap, group) == "consumer", "the group is a consumer group once mixed"
        stop(everyone[0])
        start("consumer-d", "consumer")
        settled("classic-a replaced")
        stop(everyone[1])
        start("consumer-e", "consumer")
        settled("classic-b replaced")
        assert group_type(bootstrap, group) == "consumer"
        # Downgrade: classic members replace the consumer-protocol ones; the group turns classic
        # when the last consumer-protocol member leaves.
        for name in ["classic-f", "classic-g", "classic-h"]:
            consumer_member = next(m for m in members if m.protocol == "consumer")
            stop(consumer_member)
            start(name, "classic")
            settled(f"{consumer_member.name} replaced by {name}")
        # The group turns classic once the classic members are reconciled to one epoch (each
        # rejoins when its Heartbeat says so), which may be a heartbeat after they own everything.
        wait_for(lambda: group_type(bootstrap, group) == "classic", 30, "the group to be classic again")
        settled("the classic group's own generation")
        produced = producer.finish()
        wait_for(lambda: len({(p, o) for p, o, _ in seen}) >= produced, 60,
                 f"all {produced} records to be consumed by the group")
    finally:
        producer.stop.set()
        for m in list(members):
            m.leave()
    assert_every_record_once(seen, produced, everyone)
    assert {name for _, _, name in seen} >= {"classic-a", "consumer-c", "classic-h"}, "members that never consumed"
