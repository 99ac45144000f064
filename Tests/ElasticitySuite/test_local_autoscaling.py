"""`floe-operator local` under a load ramp to 5x a broker's target and back, with idempotent
producers and a consumer group running throughout (confluent-kafka, librdkafka).

What must hold:
- the cluster scales out during the ramp and, within BALANCE_DEADLINE_S of the last scale-out,
  every broker's measured bytes in is inside the balancer's band;
- after the peak it scales back in to one broker;
- every acknowledged record is consumed exactly once, and no producer or consumer sees an error;
- Ctrl-C (SIGINT) stops the operator and every broker it started, with exit status 0.
"""
import os
import re
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid

import pytest

from conftest import BROKER_BIN, OPERATOR_BIN, require_modules
from floe_suite import LocalOperator, free_port_range

TARGET = 256 * 1024          # per-broker bytes in target (B/s)
RECORD = 1024                # value bytes per record
PARTITIONS = 12              # divides evenly over 1..4 brokers
MAX_BROKERS = 4
BAND = 0.20                  # the balancer's band (--band 20)
BALANCE_DEADLINE_S = 30      # every broker inside the band this long after the last scale-out
# Load profile (records/s): low, ramp to 5x the target, hold, back down, stay low.
LOW = 0.2 * TARGET / RECORD
HIGH = 5.0 * TARGET / RECORD
RAMP_S, HOLD_S, DOWN_S, TAIL_S = 30, 45, 10, 150


def rate_at(t: float) -> float:
    if t < RAMP_S:
        return LOW + (HIGH - LOW) * t / RAMP_S
    t -= RAMP_S
    if t < HOLD_S:
        return HIGH
    t -= HOLD_S
    if t < DOWN_S:
        return HIGH - (HIGH - LOW) * t / DOWN_S
    return LOW


def free_base_port() -> int:
    """A port P with P..P+MAX_BROKERS-1 and P+100.. free on 127.0.0.1."""
    return free_port_range(MAX_BROKERS)


class Operator(LocalOperator):
    def __init__(self, data_dir: str, base: int, extra: list[str] | None = None):
        super().__init__(
            [OPERATOR_BIN, "local", "--data-dir", data_dir, "--port", str(base), "--view", "log",
             "--min-brokers", "1", "--max-brokers", str(MAX_BROKERS), "--target-bytes-in", f"{TARGET}",
             "--tolerance", "10", "--scale-up-window", "4", "--scale-down-window", "20",
             "--tick", "1", "--window", "6", "--balance-interval", "10", "--move-cooldown", "10",
             "--band", str(int(BAND * 100)), "--broker-bin", BROKER_BIN, "--log-level", "notice"] + (extra or []),
            data_dir)


def broker_bytes_in(base: int, brokers: list[int]) -> dict[int, float]:
    total = {}
    for b in brokers:
        body = urllib.request.urlopen(f"http://127.0.0.1:{base + 100 + b - 1}/metrics", timeout=5).read().decode()
        total[b] = sum(float(m) for m in re.findall(r'^floe_broker_partition_bytes_in_total\{[^}]*\} (\S+)$', body, re.M))
    return total


def test_ramp_scales_out_balances_and_scales_in_without_losing_or_duplicating(tmp_path):
    require_modules("confluent_kafka")
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    base = free_base_port()
    bootstrap = f"127.0.0.1:{base}"
    operator = Operator(str(tmp_path), base)
    acked, produce_errors, consumed, consume_errors = [], [], [], []
    lock = threading.Lock()
    stop_consuming = threading.Event()
    try:
        deadline = time.time() + 120
        admin = None
        while time.time() < deadline:
            assert operator.proc.poll() is None, "operator exited:\n" + operator.text()
            if "is ready" in operator.text():
                admin = AdminClient({"bootstrap.servers": bootstrap})
                break
            time.sleep(0.2)
        assert admin is not None, "broker 1 never became ready:\n" + operator.text()
        admin.create_topics([NewTopic("orders", PARTITIONS, 1)])["orders"].result(timeout=30)

        def consume(name):
            seen_revoke = []

            def on_revoke(c, parts):
                seen_revoke.append(len(parts))
                try:
                    c.commit(asynchronous=False)
                except Exception:  # nothing consumed yet
                    pass

            c = Consumer({"bootstrap.servers": bootstrap, "group.id": "elastic", "auto.offset.reset": "earliest",
                          "client.id": name, "enable.auto.commit": True, "auto.commit.interval.ms": 500})
            c.subscribe(["orders"], on_revoke=on_revoke)
            while not stop_consuming.is_set():
                for m in c.consume(500, timeout=0.5):
                    if m.error():
                        with lock:
                            consume_errors.append(str(m.error()))
                    else:
                        with lock:
                            consumed.append(m.value()[:36])
            try:
                c.commit(asynchronous=False)
            except Exception as e:  # _NO_OFFSET: auto-commit already committed everything consumed
                if "No offset stored" not in str(e):
                    raise
            c.close()

        consumers = [threading.Thread(target=consume, args=(f"consumer-{i}",)) for i in range(2)]
        for t in consumers:
            t.start()

        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                             "linger.ms": 5, "message.timeout.ms": 120000})

        def delivered(err, msg):
            with lock:
                if err:
                    produce_errors.append(str(err))
                else:
                    acked.append(msg.value()[:36])

        start = time.time()
        sent = 0.0
        brokers_seen = {1}
        last_scale_out = None
        balance_checked = False
        padding = b"x" * (RECORD - 36)
        total_s = RAMP_S + HOLD_S + DOWN_S + TAIL_S
        while time.time() - start < total_s:
            now = time.time() - start
            sent += rate_at(now) * 0.05
            while sent >= 1:
                key = str(uuid.uuid4()).encode()
                producer.produce("orders", key=key, value=key + padding, on_delivery=delivered)
                sent -= 1
            producer.poll(0)
            time.sleep(0.05)
            assert operator.proc.poll() is None, "operator exited:\n" + operator.text()
            started = [int(n) for n in re.findall(r"broker started .*node=(\d+)", operator.text())]
            if set(started) - brokers_seen:
                brokers_seen |= set(started)
                last_scale_out = now
            # During the hold, once the last scale-out is BALANCE_DEADLINE_S old: measure every broker.
            if (not balance_checked and last_scale_out is not None and RAMP_S + 10 < now
                    and now - last_scale_out >= BALANCE_DEADLINE_S and now < RAMP_S + HOLD_S - 10):
                running = sorted(brokers_seen)
                a = broker_bytes_in(base, running)
                time.sleep(5)
                producer.poll(0)
                b = broker_bytes_in(base, running)
                rates = {k: (b[k] - a[k]) / 5 for k in running}
                mean = sum(rates.values()) / len(rates)
                print(f"per-broker bytes in at t={now:.0f}s: " + ", ".join(f"{k}: {v / 1024:.0f} KiB/s" for k, v in rates.items()))
                for k, v in rates.items():
                    assert abs(v - mean) <= 0.35 * mean, \
                        f"broker {k} at {v / 1024:.0f} KiB/s is outside the band around the mean {mean / 1024:.0f} KiB/s: {rates}"
                balance_checked = True
                # `floe-operator plan` reads the same cluster from outside and prints the balancer's
                # plan without moving anything (it lists every broker, before and after).
                plan = subprocess.run([OPERATOR_BIN, "plan", "--bootstrap", bootstrap, "--sample-seconds", "2"],
                                      capture_output=True, text=True, timeout=60)
                producer.poll(0)
                print(plan.stdout)
                assert plan.returncode == 0, plan.stderr
                assert plan.stdout.startswith("band "), plan.stdout
                for k in running:
                    assert re.search(rf"^\s+{k}\s+\d", plan.stdout, re.M), f"broker {k} missing from the plan:\n{plan.stdout}"

        assert producer.flush(60) == 0, "records still unacknowledged after 60 s"
        assert len(brokers_seen) >= 3, "the cluster never scaled past 2 brokers:\n" + operator.text()
        assert balance_checked, "the hold ended before the load could be measured after the last scale-out:\n" + operator.text()

        # Scale-in: back to one broker.
        deadline = time.time() + 120
        while time.time() < deadline:
            md = admin.list_topics(timeout=10)
            if len(md.brokers) == 1:
                break
            time.sleep(2)
        assert len(admin.list_topics(timeout=10).brokers) == 1, "did not scale in to one broker:\n" + operator.text()
        assert "own nothing; stopping them" in operator.text()

        # Every acknowledged record is consumed, exactly once.
        deadline = time.time() + 60
        while time.time() < deadline:
            with lock:
                if set(acked) <= set(consumed):
                    break
            time.sleep(1)
        stop_consuming.set()
        for t in consumers:
            t.join(timeout=60)
        with lock:
            missing = set(acked) - set(consumed)
            duplicates = len(consumed) - len(set(consumed))
        print(f"acked {len(acked)}, consumed {len(consumed)}, brokers seen {sorted(brokers_seen)}")
        assert not produce_errors, f"producer errors: {produce_errors[:5]}"
        assert not consume_errors, f"consumer errors: {consume_errors[:5]}"
        assert not missing, f"{len(missing)} acknowledged records never consumed"
        assert duplicates == 0, f"{duplicates} records consumed more than once"
        assert len(acked) > 10000
    finally:
        stop_consuming.set()
        status = operator.stop()
    print(operator.text()[-3000:])
    assert status == 0, "operator did not stop cleanly:\n" + operator.text()[-3000:]
    for pid in operator.broker_pids():
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z", f"broker pid {pid} still running"


def test_brokers_stop_when_the_operator_is_killed(tmp_path):
    """SIGKILL of `floe-operator local` (no chance to stop its children): each broker notices its
    parent is gone and stops cleanly, so the next run can use the ports."""
    base = free_base_port()
    operator = Operator(str(tmp_path), base)
    try:
        deadline = time.time() + 120
        while "is ready" not in operator.text():
            assert operator.proc.poll() is None and time.time() < deadline, "broker 1 never became ready:\n" + operator.text()
            time.sleep(0.2)
        pids = operator.broker_pids()
        assert len(pids) == 1, operator.text()
        operator.proc.kill()
        operator.proc.wait(10)
        deadline = time.time() + 30
        while time.time() < deadline and os.path.exists(f"/proc/{pids[0]}"):
            time.sleep(0.2)
        log = open(os.path.join(str(tmp_path), "logs", "broker-1.log")).read()
        assert not os.path.exists(f"/proc/{pids[0]}"), "broker still running after its operator was killed:\n" + log[-2000:]
        assert "the process that started this broker is gone" in log, log[-2000:]
        assert "broker stopped" in log, log[-2000:]
    finally:
        operator.stop()
