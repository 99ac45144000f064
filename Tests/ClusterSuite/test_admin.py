"""Cluster administration seen from every broker: Metadata, reassignment errors, a duplicate
node id, group coordinators."""
import os
import re
import subprocess

import cluster_wire
from conftest import create_topic, free_port, wait_for
from load import unique_name

PARTITIONS = 4
INVALID_REPLICA_ASSIGNMENT = 39
UNKNOWN_TOPIC_OR_PARTITION = 3
NO_REASSIGNMENT_IN_PROGRESS = 85


def test_metadata_from_every_broker_lists_all_brokers_and_the_same_leaders(cluster):
    topic = unique_name("admin-md")
    create_topic(cluster, topic, PARTITIONS)
    expected_brokers = {n: ("127.0.0.1", b.port) for n, b in cluster.brokers.items()}
    views = {}

    def agree():
        for n in cluster.brokers:
            md = cluster.metadata(n)
            views[n] = (md["brokers"], md["controller"], md["topics"].get(topic))
        leader_maps = {n: v[2] for n, v in views.items()}
        return (all(v[0] == expected_brokers for v in views.values())
                and len({repr(sorted(m.items())) if m else None for m in leader_maps.values()}) == 1
                and len({v[1] for v in views.values()}) == 1)
    wait_for(agree, 10, lambda: f"every broker's Metadata to list brokers {expected_brokers}, one controller "
                                f"and the same leaders; views (brokers, controller, {{partition: (error, leader)}}): "
                                f"{views}")
    parts = views[1][2]
    assert sorted(parts) == list(range(PARTITIONS)), parts
    assert all(err == 0 and leader in cluster.brokers for err, leader in parts.values()), parts


def test_reassignment_errors(cluster):
    from kafka.structs import TopicPartition
    topic = unique_name("admin-reassign")
    create_topic(cluster, topic, PARTITIONS)
    admin = cluster.admin()
    try:
        results = admin.alter_partition_reassignments({
            TopicPartition(topic, 0): [99],                   # no such broker
            TopicPartition(topic, PARTITIONS + 5): [1],       # no such partition
            TopicPartition(unique_name("absent"), 0): [1],    # no such topic
        })
        cancel = admin.alter_partition_reassignments({TopicPartition(topic, 1): None})
        pending = admin.list_partition_reassignments()
    finally:
        admin.close()
    codes = {f"{tp.topic}[{tp.partition}]": (getattr(err, "errno", 0) if err else 0)
             for tp, err in list(results.items()) + list(cancel.items())}
    expected = {f"{topic}[0]": INVALID_REPLICA_ASSIGNMENT,
                f"{topic}[{PARTITIONS + 5}]": UNKNOWN_TOPIC_OR_PARTITION,
                f"{topic}[1]": NO_REASSIGNMENT_IN_PROGRESS}
    absent = [k for k in codes if k.startswith("absent-")]
    assert len(absent) == 1, f"the answer does not name the unknown topic's partition: {codes}"
    expected[absent[0]] = UNKNOWN_TOPIC_OR_PARTITION
    assert codes == expected, f"error codes per partition: got {codes}, expected {expected}"
    assert not pending, f"refused reassignments left something pending: {pending}"


def test_duplicate_node_id_is_refused_and_the_live_broker_keeps_serving(cluster, tmp_path):
    from confluent_kafka import Producer
    topic = unique_name("admin-dup")
    create_topic(cluster, topic, PARTITIONS)
    node = 2
    log_path = os.path.join(str(tmp_path), f"duplicate-node-{node}.log")
    proc = cluster.spawn(node, free_port(), free_port(), log_path)
    try:
        status = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        status = None
    with open(log_path, errors="replace") as f:
        output = f.read()
    assert status not in (None, 0), (f"a second broker with node id {node} {'kept running' if status is None else 'exited 0'}"
                                     f"; its output:\n{output[-3000:]}")
    assert re.search(rf"node[._ -]?(?:id)?[ =:]*{node}\b", output, re.IGNORECASE), \
        f"the duplicate broker exited {status} without naming node id {node}:\n{output[-3000:]}"
    assert cluster.brokers[node].running(), "the live broker with that node id exited"

    # The live broker still owns its partitions and acknowledges writes to them.
    owned = [p for p, l in cluster.leaders(topic).items() if l == node]
    assert owned, f"broker {node} leads no partition of {topic}: {cluster.leaders(topic)}"
    acks, errors = [], []
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "enable.idempotence": True, "acks": "all",
                         "message.timeout.ms": 20000, "error_cb": errors.append})
    for p in owned:
        for i in range(10):
            producer.produce(topic, key=b"after-dup-%d" % i, value=b"v", partition=p,
                             on_delivery=lambda err, msg: acks.append((msg.partition(), err)))
    assert producer.flush(30) == 0, "records still undelivered 30 s after the duplicate broker was refused"
    failed = [(p, str(e)) for p, e in acks if e is not None]
    assert not failed, f"writes to broker {node}'s partitions failed after the duplicate was refused: {failed[:10]}"
    assert cluster.leaders(topic) and all(cluster.leaders(topic)[p] == node for p in owned), \
        f"broker {node}'s partitions moved: {cluster.leaders(topic)}"


def test_find_coordinator_agrees_across_brokers(cluster):
    groups = [unique_name("admin-group") for _ in range(8)]
    answers = {}

    def agree():
        for g in groups:
            answers[g] = {n: cluster_wire.find_coordinator("127.0.0.1", b.port, g) for n, b in cluster.brokers.items()}
        return all(len(set(a.values())) == 1 and next(iter(a.values()))[0] == 0 for a in answers.values())
    wait_for(agree, 10, lambda: f"every broker to give the same coordinator for each group: {answers}")
    for g, a in answers.items():
        error, node, host, port = next(iter(a.values()))
        assert node in cluster.brokers and (host, port) == ("127.0.0.1", cluster.brokers[node].port), \
            f"group {g}: coordinator {node} at {host}:{port} is not a broker of the cluster"
    spread = {next(iter(a.values()))[1] for a in answers.values()}
    print(f"\ncoordinators of {len(groups)} groups: brokers {sorted(spread)}")
