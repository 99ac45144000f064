"""The admin APIs of issue 15 on three brokers sharing a bucket: each broker reports the
partitions it owns (DescribeLogDirs, DescribeProducers), the group coordinator deletes offsets
(OffsetDelete), and elections are never needed (ElectLeaders), whichever broker is asked."""
import uuid

import pytest

import cluster_wire
from conftest import create_topic
from load import unique_name

PARTITIONS = 6
RECORDS = 60


def test_admin_apis_on_three_brokers(cluster):
    from confluent_kafka import Producer
    from kafka.admin import KafkaAdminClient
    from kafka.errors import NoError, NotLeaderForPartitionError, NotCoordinatorError
    from kafka.structs import OffsetAndMetadata, TopicPartition
    topic = unique_name("admin-apis")
    create_topic(cluster, topic, PARTITIONS)
    leaders = cluster.leaders(topic)
    assert len(set(leaders.values())) > 1, f"partitions spread over brokers: {leaders}"

    p = Producer({"bootstrap.servers": cluster.bootstrap(), "enable.idempotence": True, "linger.ms": 5})
    failed = []
    for i in range(RECORDS):
        p.produce(topic, value=b"v%04d" % i, partition=i % PARTITIONS, on_delivery=lambda e, m: e and failed.append(e))
    assert p.flush(30) == 0 and not failed, f"produce: {failed[:3]}"

    a = KafkaAdminClient(bootstrap_servers=cluster.bootstrap(), request_timeout_ms=30000)
    try:
        # DescribeLogDirs from every broker: each lists exactly the partitions it leads.
        answers = a.describe_log_dirs(topic_partitions=[topic])
        listed = {}
        for broker in answers:
            for d in broker["log_dirs"]:
                for t in d["topics"]:
                    if t["name"] != topic:
                        continue
                    for part in t["partitions"]:
                        assert part["partition_index"] not in listed, f"partition {part['partition_index']} listed twice: {answers}"
                        listed[part["partition_index"]] = (broker["broker"], part["partition_size"])
        assert {i: b for i, (b, _) in listed.items()} == leaders, f"log dirs {listed} vs leaders {leaders}"
        assert all(size > 0 for _, size in listed.values()), f"sizes after {RECORDS} records: {listed}"

        # DescribeProducers at each leader: the idempotent producer; at a non-owner: refused.
        tps = [TopicPartition(topic, i) for i in range(PARTITIONS)]
        producers = a.describe_producers(tps)
        for tp, state in producers.items():
            assert len(state.active_producers) == 1, f"{tp}: {state}"
            assert state.active_producers[0].last_sequence == RECORDS // PARTITIONS - 1, f"{tp}: {state}"
        other = next(n for n in cluster.brokers if n != leaders[0])
        with pytest.raises(NotLeaderForPartitionError):
            a.describe_producers([TopicPartition(topic, 0)], broker_id=other)

        # OffsetDelete at the group's coordinator (found by the client), refused elsewhere.
        group = "admin-apis-" + uuid.uuid4().hex[:8]
        committed = a.alter_group_offsets(group, {tp: OffsetAndMetadata(5, "", -1) for tp in tps})
        assert set(committed.values()) == {NoError}, committed
        error, coordinator, _, _ = cluster_wire.find_coordinator("127.0.0.1", cluster.brokers[other].port, group)
        assert error == 0 and coordinator in cluster.brokers, f"FindCoordinator: error {error}, node {coordinator}"
        elsewhere = next(n for n in cluster.brokers if n != coordinator)
        with pytest.raises(NotCoordinatorError):
            a.delete_group_offsets(group, tps[:1], group_coordinator_id=elsewhere)
        deleted = a.delete_group_offsets(group, tps[:3])
        assert deleted == {tp: NoError for tp in tps[:3]}, deleted
        left = sorted(tp.partition for tp in a.list_group_offsets(group)[group])
        assert left == [3, 4, 5], f"offsets left after deleting partitions 0-2: {left}"

        # ElectLeaders (preferred) asked of the cluster: no election needed anywhere.
        response = a.elect_leaders(0, topic_partitions={topic: list(range(PARTITIONS))}, raise_errors=False)
        codes = {(r.topic, p.partition_id): p.error_code for r in response.replica_election_results for p in r.partition_result}
        assert codes == {(topic, i): 84 for i in range(PARTITIONS)}, f"ElectLeaders codes (84: ELECTION_NOT_NEEDED): {codes}"
    finally:
        a.close()
