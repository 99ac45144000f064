"""Reassignment under load: partitions keep moving between brokers while idempotent producers
and a consumer group run; nothing acknowledged may be lost, duplicated or reordered."""
import random
import threading
import time

from conftest import create_topic, read_everything, wait_for
from load import GroupMember, ProducerLoad, check_full_read, stop_all, transient_errors, unique_name

PARTITIONS = 6
MOVE_SECONDS = 30.0
MOVE_INTERVAL = 0.2
REASSIGNMENT_IN_PROGRESS = 60


class Mover(threading.Thread):
    """Every ~200 ms reassigns a random partition to a random broker other than its current
    leader (kafka-python alter_partition_reassignments), and counts leader changes it observes."""

    def __init__(self, cluster, topic: str, seed: int):
        super().__init__(name="mover", daemon=True)
        self.cluster, self.topic = cluster, topic
        self.rng = random.Random(seed)
        self.accepted: list[tuple[float, int, int]] = []  # (time, partition, target)
        self.refused: dict[str, int] = {}
        self.unexpected: list[str] = []
        self.leader_changes = 0
        self.last_target: dict[int, int] = {}
        self.exception = None
        self._stop_event = threading.Event()

    def run(self):
        from kafka.structs import TopicPartition
        admin = self.cluster.admin()
        try:
            previous = None
            while not self._stop_event.is_set():
                leaders = self.cluster.leaders(self.topic)
                if previous is not None:
                    self.leader_changes += sum(1 for p, l in leaders.items() if previous.get(p, l) != l)
                previous = leaders
                p = self.rng.randrange(PARTITIONS)
                others = [n for n in self.cluster.brokers if n != leaders.get(p)]
                target = self.rng.choice(others)
                try:
                    result = admin.alter_partition_reassignments({TopicPartition(self.topic, p): [target]})
                except Exception as e:  # a failed request is a finding, listed by the test
                    self.unexpected.append(f"alter {p}->{target}: {e!r}")
                else:
                    err = result.get(TopicPartition(self.topic, p), "absent from the answer")
                    if err is None:
                        self.accepted.append((time.monotonic(), p, target))
                        self.last_target[p] = target
                    elif getattr(err, "errno", None) == REASSIGNMENT_IN_PROGRESS:
                        self.refused[err.__name__] = self.refused.get(err.__name__, 0) + 1
                    else:
                        self.unexpected.append(f"alter {p}->{target}: {err}")
                self._stop_event.wait(MOVE_INTERVAL)  # the move cadence, not synchronization
        except Exception as e:
            self.exception = e
        finally:
            admin.close()

    def finish(self):
        self._stop_event.set()
        self.join(30)


def test_every_acked_record_once_in_order_under_continuous_moves(cluster):
    topic = unique_name("moves")
    create_topic(cluster, topic, PARTITIONS)
    bootstrap = cluster.bootstrap()
    leaders_before = cluster.leaders(topic)

    producers = [ProducerLoad(bootstrap, topic, i, rate=200) for i in (1, 2)]
    group = unique_name("moves-group")
    members = [GroupMember(bootstrap, topic, group, i) for i in (1, 2, 3)]
    mover = Mover(cluster, topic, seed=int(time.time()))
    try:
        for t in members + producers:
            t.start()
        wait_for(lambda: all(p.acked_count() > 0 for p in producers), 30, "the first acknowledgements")

        mover.start()
        time.sleep(MOVE_SECONDS)  # the load phase's length
        mover.finish()

        for p in producers:
            p.finish()
        acked = {}
        for p in producers:
            acked.update(p.acked)

        # Moves done: nothing pending, and each moved partition ends on the last broker it was sent to.
        admin = cluster.admin()
        try:
            pending = wait_for(lambda: not admin.list_partition_reassignments() and "none", 30,
                               lambda: f"no pending reassignment (pending: {admin.list_partition_reassignments()})")
        finally:
            admin.close()
        leaders_after = cluster.leaders(topic)
        wrong_place = {p: (t, leaders_after.get(p)) for p, t in mover.last_target.items() if leaders_after.get(p) != t}

        # The group catches up with everything acknowledged (a rebalance may redeliver).
        def group_has_all():
            seen = set()
            for m in members:
                seen.update(m.keys())
            return all(k in seen for k in acked)
        group_done = True
        try:
            wait_for(group_has_all, 60, "the consumer group to see every acknowledged record")
        except AssertionError:
            group_done = False
        for m in members:
            m.finish()
        seen_counts: dict[bytes, int] = {}
        for m in members:
            for k in m.keys():
                seen_counts[k] = seen_counts.get(k, 0) + 1
        group_missing = [k for k in acked if k not in seen_counts]
        group_duplicates = sum(c - 1 for c in seen_counts.values() if c > 1)

        full = read_everything(cluster.bootstrap(), topic, PARTITIONS)
        problems, figures = check_full_read(full, producers)

        for p in producers:
            problems += p.problems()
        for m in members:
            problems += m.problems()
        if mover.exception is not None:
            problems.append(f"the mover raised {mover.exception!r}")
        if mover.unexpected:
            problems.append(f"{len(mover.unexpected)} reassignment requests failed unexpectedly: {mover.unexpected[:10]}")
        if not mover.accepted:
            problems.append("no reassignment was accepted")
        if mover.accepted and mover.leader_changes == 0:
            problems.append(f"{len(mover.accepted)} reassignments accepted but no leader change was observed")
        if wrong_place:
            problems.append(f"partitions not on the broker they were last moved to (target, leader): {wrong_place}")
        if not group_done or group_missing:
            problems.append(f"the consumer group never saw {len(group_missing)} acknowledged records, "
                            f"e.g. {sorted(group_missing)[:10]}")
    finally:
        stop_all([mover] + producers + members)

    summary = (f"moves: {len(mover.accepted)} accepted, {sum(mover.refused.values())} refused as in progress "
               f"{mover.refused}, {mover.leader_changes} leader changes observed, pending at end: {pending}; "
               f"leaders before {leaders_before} after {leaders_after}; records: {figures['acked']} acked, "
               f"{figures['read']} in the full read; group: {sum(seen_counts.values())} deliveries, "
               f"{group_duplicates} duplicates; transient client errors: "
               f"{transient_errors(producers + members)[:10]}")
    print("\n" + summary)
    assert not problems, "\n".join(problems) + "\n" + summary
