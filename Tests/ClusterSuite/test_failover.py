"""Failover (moto S3, object-store WAL): a dead broker's partitions move to live brokers, a dead
controller is replaced, a paused broker (zombie) may not acknowledge anything once its
partitions have moved, and nothing acknowledged is lost."""
import signal
import time

import cluster_wire
from conftest import SESSION_TIMEOUT_MS, all_led_by_live, create_topic, read_everything, wait_for
from load import ProducerLoad, check_full_read, stop_all, transient_errors, unique_name

PARTITIONS = 6
# The controller lease runs out one session timeout after the last renewal; a few seconds more
# for the election and the fencing of the dead broker on a loaded 2-core machine.
TAKEOVER_SECONDS = SESSION_TIMEOUT_MS / 1000 + 5


def _under_load(cluster, topic):
    producer = ProducerLoad(cluster.bootstrap(), topic, 1, rate=200,
                            extra={"request.timeout.ms": 5000, "reconnect.backoff.max.ms": 500})
    producer.start()
    wait_for(lambda: producer.acked_count() >= 200, 30, "200 acknowledgements before the fault")
    return producer


def _finish_and_check(cluster, topic, producer, problems, foreign_ok=()):
    acked_at_fault = producer.acked_count()
    wait_for(lambda: producer.acked_count() >= acked_at_fault + 200, 60,
             lambda: f"200 more acknowledgements after recovery (at {producer.acked_count()})")
    producer.finish()
    full = read_everything(cluster.bootstrap(), topic, PARTITIONS)
    read_problems, figures = check_full_read(full, [producer], foreign_ok)
    problems += read_problems + producer.problems()
    summary = (f"records: {figures['acked']} acked, {figures['read']} in the full read; transient client "
               f"errors: {transient_errors([producer])[:5]}")
    print("\n" + summary)
    assert not problems, "\n".join(problems) + "\n" + summary


def _kill_and_recover(cluster, victim_is_controller: bool):
    topic = unique_name("failover")
    create_topic(cluster, topic, PARTITIONS)
    controller = cluster.controller()
    assert controller in cluster.brokers, f"describe_cluster names controller {controller}"
    victim = controller if victim_is_controller else next(n for n in cluster.brokers if n != controller)
    owned = [p for p, l in cluster.leaders(topic).items() if l == victim]
    producer = _under_load(cluster, topic)
    problems = []
    try:
        killed_at = time.monotonic()
        cluster.kill(victim, signal.SIGKILL)

        new_controller = wait_for(cluster.controller_seen_by_all, TAKEOVER_SECONDS + 10,
                                  lambda: f"every live broker to name one live controller "
                                          f"(metadata: {[cluster.metadata(n)['controller'] for n in cluster.live()]})")
        takeover = time.monotonic() - killed_at
        if victim_is_controller and takeover > TAKEOVER_SECONDS:
            problems.append(f"a new controller ({new_controller}) took {takeover:.1f} s, more than "
                            f"{TAKEOVER_SECONDS:.0f} s (session timeout + 5 s)")
        if not victim_is_controller and new_controller != controller:
            problems.append(f"the controller changed from {controller} to {new_controller} though it was not killed")
        admin_controller = cluster.controller()
        if admin_controller != new_controller:
            problems.append(f"describe_cluster names controller {admin_controller}, Metadata {new_controller}")

        wait_for(lambda: all(all_led_by_live(cluster, topic, PARTITIONS, n) for n in cluster.live()),
                 TAKEOVER_SECONDS + 15,
                 lambda: f"every partition led by a live broker in every live broker's Metadata "
                         f"(leaders {cluster.leaders(topic)}, live {cluster.live()})")
        recovered = time.monotonic() - killed_at
        print(f"\nkilled broker {victim} (controller {controller}, owned partitions {owned}); controller "
              f"{new_controller} after {takeover:.1f} s; all partitions led by live brokers after {recovered:.1f} s")
        _finish_and_check(cluster, topic, producer, problems)
    finally:
        stop_all([producer])


def test_sigkill_controller_new_controller_and_nothing_acked_lost(cluster_s3):
    _kill_and_recover(cluster_s3, victim_is_controller=True)


def test_sigkill_broker_partitions_fail_over_and_nothing_acked_lost(cluster_s3):
    _kill_and_recover(cluster_s3, victim_is_controller=False)


def test_zombie_broker_does_not_acknowledge_after_its_partitions_moved(cluster_s3):
    cluster = cluster_s3
    topic = unique_name("zombie")
    create_topic(cluster, topic, PARTITIONS)
    controller = cluster.controller()
    zombie = next(n for n in cluster.brokers if n != controller)
    owned = sorted(p for p, l in cluster.leaders(topic).items() if l == zombie)
    assert owned, f"broker {zombie} owns no partition of {topic}: {cluster.leaders(topic)}"
    partition = owned[0]
    zb = cluster.brokers[zombie]

    producer = _under_load(cluster, topic)
    problems = []
    # A connection opened while the broker is healthy; the Produce on it is sent while the broker
    # is stopped and is the first thing it reads when it continues.
    early = cluster_wire.connect("127.0.0.1", zb.port, timeout=20)
    try:
        cluster_wire.kafka_wire.api_versions(early)
        cluster.kill(zombie, signal.SIGSTOP)
        others = [n for n in cluster.brokers if n != zombie]
        wait_for(lambda: all(cluster.leaders(topic, n).get(p) not in (zombie, None, -1)
                             for n in others for p in owned), SESSION_TIMEOUT_MS / 1000 + 20,
                 lambda: f"partitions {owned} of the stopped broker {zombie} to move "
                         f"(leaders {cluster.leaders(topic, others[0])})")
        moved_to = {p: cluster.leaders(topic, others[0])[p] for p in owned}

        answers = {}
        early_key, late_key = b"zombie-early", b"zombie-late"
        cluster_wire.send_produce(early, topic, partition, early_key, b"must not be acknowledged", correlation_id=31)
        cluster.kill(zombie, signal.SIGCONT)
        try:
            answers["connection opened before SIGSTOP"] = cluster_wire.read_produce_answer(early, partition, 31)
        except (OSError, cluster_wire.WireError) as e:
            answers["connection opened before SIGSTOP"] = f"no answer: {e}"
        try:
            with cluster_wire.connect("127.0.0.1", zb.port, timeout=20) as late:
                answers["new connection after SIGCONT"] = cluster_wire.produce(
                    late, topic, partition, late_key, b"must not be acknowledged", correlation_id=32)
        except (OSError, cluster_wire.WireError) as e:
            answers["new connection after SIGCONT"] = f"no answer: {e}"
        for what, answer in answers.items():
            if isinstance(answer, tuple) and answer[0] == 0:
                problems.append(f"the zombie broker {zombie} ACKNOWLEDGED a Produce to {topic}[{partition}] "
                                f"({what}) at offset {answer[1]} after the partition moved to {moved_to[partition]}")
        print(f"\nzombie broker {zombie} (partitions {owned} moved to {moved_to}); Produce answers "
              f"(error code, offset): {answers}")
        # The zombie's records must not be in the log, whatever it answered.
        zb.expect_exit = True  # a fenced broker may shut itself down
        _finish_and_check(cluster, topic, producer, problems)
    finally:
        early.close()
        stop_all([producer])
