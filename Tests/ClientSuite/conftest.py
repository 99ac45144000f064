"""Client integration suite: real Kafka clients against a broker (see README.md).

Environment:
  FLOE_BROKER_CMD   shell command that runs the broker in the foreground. It is started by the
                    suite with FLOE_BOOTSTRAP (host:port to listen on and advertise) and
                    FLOE_STORAGE (a file:// or s3:// URL) in its environment, in its own process
                    group; the suite waits until it answers ApiVersions and stops it by PID.
  FLOE_BOOTSTRAP    host:port. With FLOE_BROKER_CMD: the address brokers are started on (default:
                    127.0.0.1 and a free port per broker). Without it: an already running broker
                    to test; storage parameterisation and the crash test are then skipped.
  FLOE_TEST_S3_ENDPOINT   moto's S3 server; enables the `s3` storage parameter.
  FLOE_SUITE_STORAGE      comma-separated storage kinds to run (default: file,s3).
  FLOE_SUITE_TARGET       `tansu` (or `tansu-relay`) turns the suite's known_failure marks naming
                          that target into expected failures (see docs/client-compatibility.md).
  FLOE_SUITE_LOGS         directory for broker logs (default: pytest's temporary directory).
"""
import glob
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import kafka_wire  # noqa: E402

BROKER_CMD = os.environ.get("FLOE_BROKER_CMD", "").strip()
BOOTSTRAP = os.environ.get("FLOE_BOOTSTRAP", "").strip()
S3_ENDPOINT = os.environ.get("FLOE_TEST_S3_ENDPOINT", "").strip()
TARGET = os.environ.get("FLOE_SUITE_TARGET", "").strip()
IN_CI = bool(os.environ.get("CI"))


def _storage_kinds():
    if not BROKER_CMD:
        return ["external"]
    kinds = [k.strip() for k in os.environ.get("FLOE_SUITE_STORAGE", "file,s3").split(",") if k.strip()]
    bad = [k for k in kinds if k not in ("file", "s3")]
    if bad:
        raise pytest.UsageError(f"FLOE_SUITE_STORAGE: unknown storage kind(s) {bad}; use file and/or s3")
    return kinds


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "known_failure(target, reason, params=None, strict=True): the named target broker is known to "
        "fail this test (for the given parameter values only, if given); an expected failure when "
        "FLOE_SUITE_TARGET names it")
    config.addinivalue_line("markers", "needs_broker_cmd: needs FLOE_BROKER_CMD (process control)")
    if not BROKER_CMD and not BOOTSTRAP:
        message = ("\n*** FLOE_BROKER_CMD and FLOE_BOOTSTRAP are both unset: the client suite has no broker "
                   "to test. Set FLOE_BROKER_CMD (see Tests/ClientSuite/README.md). ***\n")
        raise pytest.UsageError(message)


def pytest_collection_modifyitems(config, items):
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        for mark in item.iter_markers("known_failure"):
            targets = mark.kwargs.get("target")
            targets = targets if isinstance(targets, (list, tuple)) else [targets]
            if not TARGET or TARGET not in targets:
                continue
            wanted = mark.kwargs.get("params") or {}
            if all(params.get(k) in (v if isinstance(v, (list, tuple)) else [v]) for k, v in wanted.items()):
                item.add_marker(pytest.mark.xfail(reason=f"{TARGET}: {mark.kwargs['reason']}",
                                                  strict=mark.kwargs.get("strict", True)))
        if item.get_closest_marker("needs_broker_cmd") and not BROKER_CMD:
            item.add_marker(pytest.mark.skip(reason="needs FLOE_BROKER_CMD to start and kill the broker"))


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "PythonSupport"))
from floe_suite import free_port  # noqa: E402,F401  (never hands out one port twice in a process)


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise pytest.UsageError(f"expected host:port, got {address!r}")
    return host, int(port)


class BrokerProcess:
    """One broker started from FLOE_BROKER_CMD, in its own process group (its PID is the group
    id), so that a shell wrapper and the broker it runs are stopped together."""

    def __init__(self, storage_url: str, log_path: str, env_extra: dict | None = None, settings: dict | None = None):
        self.storage = storage_url
        # Broker settings appended to FLOE_BROKER_CMD as `--set KEY=VALUE`.
        self.settings = settings or {}
        self.log_path = log_path
        self.address = BOOTSTRAP or f"127.0.0.1:{free_port()}"
        self.host, self.port = split_address(self.address)
        self.env_extra = env_extra or {}
        self.proc = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return self.address

    def start(self, timeout: float = 60.0) -> None:
        assert self.proc is None, "broker already running"
        env = dict(os.environ, FLOE_BOOTSTRAP=self.address, FLOE_STORAGE=self.storage, **self.env_extra)
        cmd = BROKER_CMD + "".join(f" --set {shlex.quote(f'{k}={v}')}" for k, v in self.settings.items())
        log = open(self.log_path, "ab")
        log.write(f"\n=== start #{self.starts + 1}: {cmd} (FLOE_BOOTSTRAP={self.address} "
                  f"FLOE_STORAGE={self.storage})\n".encode())
        log.flush()
        self.proc = subprocess.Popen(["/bin/sh", "-c", cmd], env=env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.starts += 1
        try:
            kafka_wire.wait_serving(self.host, self.port, time.monotonic() + timeout,
                                    alive=lambda: self.proc.poll() is None)
        except kafka_wire.WireError as e:
            self.kill()
            pytest.fail(f"broker did not start: {e}\n--- broker log tail ({self.log_path}):\n{self.log_tail()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Sends `sig` to the broker's process group and waits for the process to exit."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        self.proc.wait()
        if sig != signal.SIGKILL:
            # Anything the wrapper left behind in its group dies with it.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc = None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (graceful shutdown), SIGKILL if it has not exited within `timeout`."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            pass
        self.kill(signal.SIGKILL)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-lines:]).decode(errors="replace")
        except OSError as e:
            return f"(no log: {e})"


class ExternalBroker:
    """A broker the suite did not start (FLOE_BOOTSTRAP only)."""

    def __init__(self, address: str):
        self.address = address
        self.host, self.port = split_address(address)
        self.storage = "external"

    @property
    def bootstrap(self) -> str:
        return self.address

    def running(self) -> bool:
        return True

    def log_tail(self, lines: int = 40) -> str:
        return "(external broker: no log)"


def make_storage(kind: str, tmp_dir: str) -> str:
    """A fresh, empty storage location of the given kind."""
    if kind == "file":
        path = os.path.join(tmp_dir, "data")
        os.makedirs(path, exist_ok=True)
        return "file://" + path
    if kind == "s3":
        if not S3_ENDPOINT:
            if IN_CI:
                pytest.fail("FLOE_TEST_S3_ENDPOINT is unset in CI: the s3 storage runs need moto (scripts/client-suite starts it)")
            pytest.skip("FLOE_TEST_S3_ENDPOINT is unset (moto's S3 server); scripts/client-suite starts one")
        import boto3
        bucket = "floe-suite-" + uuid.uuid4().hex[:12]
        boto3.client("s3", endpoint_url=S3_ENDPOINT, region_name="us-east-1",
                     aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
                     aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test")).create_bucket(Bucket=bucket)
        return f"s3://{bucket}/floe?endpoint={S3_ENDPOINT}&region=us-east-1&path_style=true"
    raise AssertionError(f"unknown storage kind {kind}")


def _s3_env():
    return {"AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "test"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "test")}


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory):
    d = os.environ.get("FLOE_SUITE_LOGS") or str(tmp_path_factory.mktemp("broker-logs"))
    os.makedirs(d, exist_ok=True)
    return d


@pytest.fixture(scope="module", params=_storage_kinds())
def storage_kind(request):
    return request.param


def start_broker(kind: str, tmp_dir: str, log_dir: str, name: str, settings: dict | None = None) -> "BrokerProcess | ExternalBroker":
    """A broker on fresh storage; `settings` are passed as `--set KEY=VALUE` (a test that needs
    them is skipped against an external broker, whose settings the suite cannot choose)."""
    if kind == "external":
        if settings:
            pytest.skip(f"needs broker settings {settings}: the external broker's cannot be chosen")
        b = ExternalBroker(BOOTSTRAP)
        try:
            kafka_wire.probe(b.host, b.port)
        except (OSError, kafka_wire.WireError) as e:
            pytest.fail(f"FLOE_BOOTSTRAP={BOOTSTRAP} does not answer ApiVersions: {e}")
        return b
    storage = make_storage(kind, tmp_dir)
    b = BrokerProcess(storage, os.path.join(log_dir, f"{name}-{kind}.log"), _s3_env(), settings)
    b.start()
    return b


@pytest.fixture(scope="module")
def broker(request, storage_kind, tmp_path_factory, log_dir):
    """A broker with fresh storage for this test module (or the external one)."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    b = start_broker(storage_kind, str(tmp_path_factory.mktemp(f"{name}-{storage_kind}")), log_dir, name)
    yield b
    if isinstance(b, BrokerProcess):
        alive = b.running()
        b.stop()
        assert alive, f"the broker exited during {name} tests; log tail:\n{b.log_tail()}"


@pytest.fixture
def topic_name(request):
    """A topic name unique to this test invocation."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60].strip("-")
    return f"{base}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------------- client helpers

def admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap: str, name: str, partitions: int, config: dict | None = None, timeout: float = 30.0) -> None:
    """Creates a topic with the wheel's AdminClient and waits until metadata shows all its
    partitions with a leader."""
    from confluent_kafka.admin import NewTopic
    a = admin(bootstrap)
    futures = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
                              operation_timeout=timeout, request_timeout=timeout)
    futures[name].result(timeout=timeout)
    wait_for(lambda: _partitions_with_leader(a, name) == partitions, timeout,
             f"topic {name} to show {partitions} partitions with a leader in metadata")


def _at_high_watermarks(c, topic, partitions, out):
    from confluent_kafka import TopicPartition
    nexts = {p: 0 for p in range(partitions)}
    for p, off, _, _ in out:
        nexts[p] = max(nexts[p], off + 1)
    for p in range(partitions):
        _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if nexts[p] < high:
            return False
    return True


def _partitions_with_leader(a, name):
    md = a.list_topics(topic=name, timeout=10)
    t = md.topics.get(name)
    if t is None or t.error is not None:
        return -1
    return sum(1 for p in t.partitions.values() if p.leader >= 0 and p.error is None)


def wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    """Polls `condition` until it returns a truthy value (returned) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def consume_all(bootstrap: str, topic: str, partitions: int, expected: int, timeout: float = 120.0,
                extra: dict | None = None, stop_at_end: bool = False):
    """Reads every record of `topic` from offset 0 with an assigned (groupless) wheel consumer
    until `expected` records have arrived and every partition is at its end; returns
    [(partition, offset, key, value)]. With `stop_at_end`, returns early (short) once every
    partition has been read up to its high watermark, so the caller can say what is missing."""
    from confluent_kafka import Consumer, TopicPartition, KafkaError
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-" + uuid.uuid4().hex[:6],
                  "enable.auto.commit": False, "enable.partition.eof": True, **(extra or {})})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out, at_eof = [], set()
        deadline = time.monotonic() + timeout
        while not (len(out) >= expected and len(at_eof) == partitions):
            if len(at_eof) == partitions and stop_at_end and _at_high_watermarks(c, topic, partitions, out):
                return out  # every partition read to its end: the log holds no more records
            if time.monotonic() > deadline:
                raise AssertionError(f"consumed {len(out)} of {expected} records of {topic} in {timeout:.0f} s "
                                     f"(partitions at end: {sorted(at_eof)})")
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        at_eof.add(m.partition())
                        continue
                    raise AssertionError(f"consumer error on {topic}: {m.error()}")
                at_eof.discard(m.partition())
                out.append((m.partition(), m.offset(), m.key(), m.value()))
        return out
    finally:
        c.close()


@pytest.fixture(scope="session")
def wheel_librdkafka_dir(tmp_path_factory):
    """A directory holding `librdkafka.so.1` -> the confluent-kafka wheel's bundled librdkafka."""
    import confluent_kafka
    site = os.path.dirname(os.path.dirname(confluent_kafka.__file__))
    libs = sorted(glob.glob(os.path.join(site, "confluent_kafka.libs", "librdkafka*.so*")))
    assert libs, f"no bundled librdkafka in {site}/confluent_kafka.libs"
    d = tmp_path_factory.mktemp("wheel-librdkafka")
    os.symlink(libs[0], d / "librdkafka.so.1")
    return str(d)


def run(cmd, timeout: float, env=None, input_path=None, what=None) -> subprocess.CompletedProcess:
    """Runs a command to completion; fails the test naming it, with its stderr, on a non-zero exit."""
    stdin = open(input_path, "rb") if input_path else subprocess.DEVNULL
    try:
        p = subprocess.run(cmd, env=env, stdin=stdin, capture_output=True, timeout=timeout)
    finally:
        if input_path:
            stdin.close()
    if p.returncode != 0:
        raise AssertionError(f"{what or shlex.join(cmd)} exited {p.returncode}:\n{p.stderr.decode(errors='replace')[-3000:]}")
    return p
