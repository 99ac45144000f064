"""Cluster suite: several floe-broker processes sharing one bucket (see README.md).

Environment:
  FLOE_BROKER_BIN         the floe-broker binary (required; scripts/test exports the release build).
  FLOE_TEST_S3_ENDPOINT   moto's S3 server; enables the `s3` storage parameter (object WAL).
  CI                      when set, a missing peer (moto, confluent-kafka, kafka-python, boto3) fails
                          the test instead of skipping it.
"""
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "PythonSupport"))
from floe_suite import Peers, free_port  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_wire  # noqa: E402

BROKER_BIN = os.environ.get("FLOE_BROKER_BIN", "").strip()
S3_ENDPOINT = os.environ.get("FLOE_TEST_S3_ENDPOINT", "").strip()

SESSION_TIMEOUT_MS = 3000
HEARTBEAT_INTERVAL_MS = 300


PEERS = Peers("cluster suite")
missing_peer = PEERS.missing
require_modules = PEERS.require_modules


def pytest_configure(config):
    if not BROKER_BIN:
        raise pytest.UsageError("\n*** FLOE_BROKER_BIN is unset: the cluster suite has no broker to run. "
                                "e.g. FLOE_BROKER_BIN=.build/debug/floe-broker ***\n")
    if not os.access(BROKER_BIN, os.X_OK):
        raise pytest.UsageError(f"FLOE_BROKER_BIN={BROKER_BIN} is not an executable file")


def wait_for(condition, timeout: float, what, interval: float = 0.1):
    """Polls `condition` until it returns a truthy value (returned) or `timeout` seconds pass.
    `what` is a string or a function returning one (called on timeout, for the last state)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {detail}")
        time.sleep(interval)


def s3_env() -> dict:
    return {"AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "test"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "test")}


def make_storage(kind: str, tmp_dir: str) -> tuple[str, str]:
    """A fresh, empty bucket of the given kind: (storage URL, WAL kind)."""
    if kind == "file":
        path = os.path.join(tmp_dir, "bucket")
        os.makedirs(path, exist_ok=True)
        return "file://" + path, "file"
    if kind == "s3":
        if not S3_ENDPOINT:
            missing_peer("FLOE_TEST_S3_ENDPOINT is unset: the s3 runs need moto's S3 server "
                         "(scripts/test starts it; or `python3 scripts/moto-serialized 127.0.0.1 PORT`)")
        require_modules("boto3")
        import boto3
        bucket = "floe-cluster-" + uuid.uuid4().hex[:12]
        env = s3_env()
        boto3.client("s3", endpoint_url=S3_ENDPOINT, region_name="us-east-1",
                     aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=bucket)
        return f"s3://{bucket}/floe?endpoint={S3_ENDPOINT}&region=us-east-1&path_style=true", "object"
    raise AssertionError(f"unknown storage kind {kind}")


class Broker:
    """One floe-broker process of a Cluster, in its own process group (its PID is the group id)."""

    def __init__(self, node: int, port: int, http_port: int, log_path: str):
        self.node, self.port, self.http_port, self.log_path = node, port, http_port, log_path
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.expect_exit = False  # set by tests that kill or fence it on purpose

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=1) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 60) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-lines:]).decode(errors="replace")
        except OSError as e:
            return f"(no log: {e})"


class Cluster:
    """N brokers (node ids 1..N) sharing one bucket, started as subprocesses with short session
    timeouts. Every process is stopped by PID at teardown."""

    def __init__(self, size: int, storage: str, wal: str, log_dir: str, kind: str, settings: dict | None = None):
        self.storage, self.wal, self.log_dir, self.kind = storage, wal, log_dir, kind
        self.settings = settings or {}  # broker settings passed as `--set KEY=VALUE`
        self.brokers: dict[int, Broker] = {}
        for node in range(1, size + 1):
            self.brokers[node] = Broker(node, free_port(), free_port(), os.path.join(log_dir, f"broker-{node}.log"))

    # ---------------------------------------------------------------- process control

    def command(self, node: int, port: int, http_port: int) -> list[str]:
        return [BROKER_BIN, "--node-id", str(node), "--listen", f"127.0.0.1:{port}",
                "--http", f"127.0.0.1:{http_port}", "--storage", self.storage, "--wal", self.wal,
                "--broker-session-timeout-ms", str(SESSION_TIMEOUT_MS),
                "--broker-heartbeat-interval-ms", str(HEARTBEAT_INTERVAL_MS)] + [
                    arg for k, v in self.settings.items() for arg in ("--set", f"{k}={v}")]

    def spawn(self, node: int, port: int, http_port: int, log_path: str) -> subprocess.Popen:
        log = open(log_path, "ab")
        cmd = self.command(node, port, http_port)
        log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(cmd)}\n".encode())
        log.flush()
        try:
            return subprocess.Popen(cmd, env=dict(os.environ, **s3_env()), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()

    def start(self, node: int, timeout: float = 60.0) -> None:
        b = self.brokers[node]
        assert not b.running(), f"broker {node} is already running (pid {b.pid})"
        b.proc = self.spawn(node, b.port, b.http_port, b.log_path)
        b.starts += 1
        b.expect_exit = False
        try:
            wait_for(lambda: not b.running() or b.ready(), timeout, f"broker {node} /readyz")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- broker {node} log tail:\n{b.log_tail()}") from None
        if not b.running():
            raise AssertionError(f"broker {node} exited with {b.proc.returncode} while starting; log tail:\n"
                                 f"{b.log_tail()}")

    def start_all(self, timeout: float = 60.0) -> None:
        for node in self.brokers:
            self.start(node, timeout)
        wait_for(lambda: self.registered() == set(self.brokers), timeout,
                 lambda: f"every broker to be registered (controller lists {self.registered()})")

    def kill(self, node: int, sig: int = signal.SIGKILL) -> None:
        """Sends `sig` to the broker's process group; waits for the exit when it is SIGKILL."""
        b = self.brokers[node]
        assert b.proc is not None, f"broker {node} was never started"
        if sig in (signal.SIGKILL, signal.SIGTERM):
            b.expect_exit = True
        try:
            os.killpg(b.proc.pid, sig)
        except ProcessLookupError:
            pass
        if sig == signal.SIGKILL:
            b.proc.wait()

    def stop(self, node: int, timeout: float = 30.0) -> int:
        """SIGTERM (clean stop: the broker hands its partitions over) and wait; SIGKILL after
        `timeout`. Returns the exit status."""
        b = self.brokers[node]
        if b.proc is None:
            return 0
        b.expect_exit = True
        try:
            os.killpg(b.proc.pid, signal.SIGCONT)
            os.killpg(b.proc.pid, signal.SIGTERM)
            return b.proc.wait(timeout=timeout)
        except ProcessLookupError:
            return b.proc.wait()
        except subprocess.TimeoutExpired:
            self.kill(node, signal.SIGKILL)
            raise AssertionError(f"broker {node} did not stop within {timeout:.0f} s of SIGTERM; log tail:\n"
                                 f"{b.log_tail()}")

    def teardown(self) -> list[str]:
        """Kills every broker by PID; returns the ones that died on their own during the test."""
        crashed = []
        for node, b in self.brokers.items():
            if b.proc is None:
                continue
            if b.proc.poll() is not None and not b.expect_exit:
                crashed.append(f"broker {node} exited with {b.proc.returncode} during the test")
            try:
                os.killpg(b.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            b.proc.wait()
        return crashed

    # ---------------------------------------------------------------- views

    def live(self) -> list[int]:
        return [n for n, b in self.brokers.items() if b.running()]

    def bootstrap(self, nodes=None) -> str:
        nodes = self.live() if nodes is None else nodes
        return ",".join(self.brokers[n].address for n in nodes)

    def admin(self, nodes=None):
        """A kafka-python admin client bootstrapped from the given (default: live) brokers."""
        from kafka.admin import KafkaAdminClient
        return KafkaAdminClient(bootstrap_servers=self.bootstrap(nodes), request_timeout_ms=10000,
                                client_id="cluster-suite")

    def metadata(self, node: int) -> dict:
        b = self.brokers[node]
        return cluster_wire.metadata("127.0.0.1", b.port)

    def registered(self) -> set[int]:
        """Brokers listed in Metadata by the first live broker that answers."""
        for n in self.live():
            try:
                return set(self.metadata(n)["brokers"])
            except (OSError, cluster_wire.WireError):
                continue
        return set()

    def controller(self) -> int:
        """The controller as kafka-python's describe_cluster() reports it (-1: none)."""
        def ask():
            # kafka-python may pick a broker its cached metadata still lists but that is dead.
            from kafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError
            try:
                a = self.admin()
            except (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError):
                return None
            try:
                return (a.describe_cluster()["controller_id"],)
            except (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError):
                return None
            finally:
                a.close()
        return wait_for(ask, 20, "describe_cluster to answer from a live broker")[0]

    def controller_seen_by_all(self) -> int | None:
        """The controller id if every live broker's Metadata names the same live broker, else None."""
        seen = set()
        for n in self.live():
            try:
                seen.add(self.metadata(n)["controller"])
            except (OSError, cluster_wire.WireError):
                return None
        if len(seen) == 1:
            (c,) = seen
            return c if c in self.live() else None
        return None

    def leaders(self, topic: str, node: int | None = None) -> dict[int, int]:
        """{partition: leader} from one live broker's Metadata ({} if the topic is unknown there)."""
        for n in ([node] if node is not None else self.live()):
            try:
                md = self.metadata(n)
            except (OSError, cluster_wire.WireError):
                continue
            return {p: leader for p, (_err, leader) in md["topics"].get(topic, {}).items()}
        return {}

    def logs(self, lines: int = 80) -> str:
        out = []
        for node, b in self.brokers.items():
            state = "never started" if b.proc is None else (
                f"pid {b.pid}, running" if b.running() else f"pid {b.pid}, exited {b.proc.returncode}")
            out.append(f"--- broker {node} ({b.address}, {state}) log tail ({b.log_path}):\n{b.log_tail(lines)}")
        return "\n".join(out)


# ------------------------------------------------------------------------ fixtures

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attaches every broker's log tail to a failed test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for name in ("cluster", "cluster_s3", "cluster_file"):
            c = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if isinstance(c, Cluster):
                report.sections.append((f"broker logs ({c.kind})", c.logs()))
                break


@pytest.fixture(params=["file", "s3"])
def storage_kind(request):
    return request.param


def _cluster(kind: str, tmp_path, size: int = 3, settings: dict | None = None):
    require_modules("kafka", "confluent_kafka")
    storage, wal = make_storage(kind, str(tmp_path))
    c = Cluster(size, storage, wal, str(tmp_path), kind, settings)
    try:
        c.start_all()
    except BaseException:
        c.teardown()
        raise
    return c


@pytest.fixture
def cluster(storage_kind, tmp_path):
    """Three brokers on the parameterised storage (file: local directory + file WAL; s3: moto +
    object WAL)."""
    c = _cluster(storage_kind, tmp_path)
    yield c
    crashed = c.teardown()
    assert not crashed, "; ".join(crashed) + "\n" + c.logs()


@pytest.fixture
def cluster_s3(tmp_path):
    """Three brokers on moto S3 with the object-store WAL (the only kind whose partitions fail over)."""
    c = _cluster("s3", tmp_path)
    yield c
    crashed = c.teardown()
    assert not crashed, "; ".join(crashed) + "\n" + c.logs()


# ------------------------------------------------------------------------ client helpers

def create_topic(cluster: Cluster, name: str, partitions: int, timeout: float = 30.0) -> None:
    """Creates a topic and waits until every live broker's Metadata shows all its partitions led
    by live brokers."""
    from kafka.admin import NewTopic
    a = cluster.admin()
    try:
        a.create_topics([NewTopic(name, partitions, 1)], timeout_ms=int(timeout * 1000))
    finally:
        a.close()
    wait_for(lambda: all(all_led_by_live(cluster, name, partitions, n) for n in cluster.live()), timeout,
             lambda: f"topic {name}: {partitions} partitions led by live brokers in every broker's Metadata "
                     f"(now {cluster.leaders(name)})")


def all_led_by_live(cluster: Cluster, topic: str, partitions: int, node: int | None = None) -> bool:
    leaders = cluster.leaders(topic, node)
    live = set(cluster.live())
    return len(leaders) == partitions and all(l in live for l in leaders.values())


def read_everything(bootstrap: str, topic: str, partitions: int, timeout: float = 90.0):
    """Reads every partition of `topic` from offset 0 with an assign()-based consumer (no group)
    until each is at its high watermark (asked again after reaching it). Returns
    [(partition, offset, key, value)] in per-partition offset order."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "verify-" + uuid.uuid4().hex[:6],
                  "enable.auto.commit": False, "enable.partition.eof": True, "auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out, nexts, at_eof = [], {p: 0 for p in range(partitions)}, set()
        deadline = time.monotonic() + timeout
        while True:
            if len(at_eof) == partitions:
                highs = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
                if all(nexts[p] >= highs[p] for p in range(partitions)):
                    return out
                at_eof = {p for p in at_eof if nexts[p] >= highs[p]}
            if time.monotonic() > deadline:
                raise AssertionError(f"full read of {topic}: {len(out)} records in {timeout:.0f} s, partitions "
                                     f"at end {sorted(at_eof)}, next offsets {nexts}")
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        at_eof.add(m.partition())
                        continue
                    raise AssertionError(f"full read of {topic}: consumer error {m.error()}")
                at_eof.discard(m.partition())
                nexts[m.partition()] = m.offset() + 1
                out.append((m.partition(), m.offset(), m.key(), m.value()))
    finally:
        c.close()
