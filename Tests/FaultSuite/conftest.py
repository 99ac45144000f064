"""Fault suite: storage outages through a fault-injecting proxy in front of moto, and a full disk on
a small tmpfs, with an idempotent producer running (see README.md).

Environment:
  FLOE_BROKER_BIN   the floe-broker binary, absolute path (required by the storage fault tests;
                    scripts/test exports the release build). The proxy's own tests need nothing.
  CI                when set, a missing peer (FLOE_BROKER_BIN, moto, confluent-kafka, boto3, the
                    right to mount a tmpfs) fails the test instead of skipping it.
"""
import errno
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "PythonSupport"))
from floe_suite import Peers, free_port  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

BROKER_BIN = os.environ.get("FLOE_BROKER_BIN", "").strip()

# One line per scenario, printed at the end of the run (pytest_terminal_summary).
SUMMARIES: list[str] = []


PEERS = Peers("fault suite")
missing_peer = PEERS.missing
require_modules = PEERS.require_modules


def require_broker() -> str:
    if not BROKER_BIN:
        missing_peer("FLOE_BROKER_BIN is unset: no broker to run (scripts/test exports the release build; "
                     "by hand: FLOE_BROKER_BIN=$PWD/.build/release/floe-broker)")
    if not os.path.isabs(BROKER_BIN) or not os.access(BROKER_BIN, os.X_OK):
        pytest.fail(f"FLOE_BROKER_BIN={BROKER_BIN} is not an absolute path to an executable file", pytrace=False)
    return BROKER_BIN


def pytest_terminal_summary(terminalreporter):
    if SUMMARIES:
        terminalreporter.section("storage fault scenarios")
        for line in SUMMARIES:
            terminalreporter.write_line(line)


def wait_for(condition, timeout: float, interval: float = 0.1):
    """Polls `condition` until it returns a truthy value (returned) or `timeout` seconds pass
    (returns the last falsy value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def s3_env() -> dict:
    return {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


# ------------------------------------------------------------------------ processes

class Moto:
    """moto's S3 server (scripts/moto-serialized) on a free loopback port, stopped by PID."""

    def __init__(self, log_path: str):
        self.port = free_port()
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, os.path.join(REPO, "scripts", "moto-serialized"),
                                          "127.0.0.1", str(self.port)], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        if not wait_for(self._answers, 30):
            self.stop()
            missing_peer(f"moto did not start on 127.0.0.1:{self.port} (log {log_path}: {tail(log_path)})")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(self.endpoint + "/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError):
            return False

    def create_bucket(self, name: str) -> None:
        import boto3
        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test").create_bucket(Bucket=name)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def tail(path: str, lines: int = 40, width: int = 100000) -> str:
    """The last `lines` lines of a log, each cut to `width` characters."""
    try:
        with open(path, "rb") as f:
            return "\n".join(line.decode(errors="replace").rstrip("\n")[:width] for line in f.readlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"


def collapsed_tail(path: str, lines: int = 30, width: int = 400) -> str:
    """The end of a log with runs of lines that differ only in their timestamp folded into one
    (`(xN)` in front): the last `lines` distinct lines, each cut to `width` characters."""
    out: list[list] = []
    for line in tail(path, 2000, width).splitlines():
        text = line.split(" ", 1)[1] if line[:4].isdigit() and " " in line else line
        if out and out[-1][1] == text:
            out[-1][2] += 1
        else:
            out.append([line, text, 1])
    return "\n".join((f"(x{n}) " if n > 1 else "") + line for line, _, n in out[-lines:])


class Broker:
    """One floe-broker process (own process group, killed by PID at teardown)."""

    def __init__(self, storage: str, log_path: str, extra_args: list[str] | None = None):
        self.bin = require_broker()
        self.port, self.http_port = free_port(), free_port()
        self.storage, self.log_path = storage, log_path
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None
        self.exits: list[tuple[float, int]] = []  # (monotonic time seen, status)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [self.bin, "--listen", self.bootstrap, "--advertise", self.bootstrap,
                "--http", f"127.0.0.1:{self.http_port}", "--node-id", "0",
                "--storage", self.storage, *self.extra_args]

    def start(self, timeout: float = 60.0) -> None:
        cmd = self.command()
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, env=dict(os.environ, **s3_env()), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        if not wait_for(lambda: not self.running() or self.readyz()[0] == 200, timeout):
            raise AssertionError(f"broker not ready within {timeout:.0f} s; log tail:\n{tail(self.log_path, 40, 400)}")
        if not self.running():
            raise AssertionError(f"broker exited with {self.proc.returncode} while starting; log tail:\n"
                                 f"{tail(self.log_path, 40, 400)}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def readyz(self) -> tuple[int | None, str]:
        """(status, body) of GET /readyz; (None, error) when it does not answer."""
        return self.probe("/readyz")

    def probe(self, path: str) -> tuple[int | None, str]:
        """(status, body) of GET `path` on the HTTP listener; (None, error) when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=1) as r:
                return r.status, r.read(300).decode(errors="replace").strip()
        except urllib.error.HTTPError as e:
            return e.code, e.read(300).decode(errors="replace").strip()
        except (urllib.error.URLError, OSError) as e:
            return None, f"{type(e).__name__}: {e}"

    def metric(self, name: str) -> str | None:
        """The first sample line of `name` in /metrics (None when absent or unreachable)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=2) as r:
                for line in r.read().decode(errors="replace").splitlines():
                    if line.startswith(name + " ") or line.startswith(name + "{"):
                        return line
        except (urllib.error.URLError, OSError):
            return None
        return None

    def kill(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


class ReadyzPoller(threading.Thread):
    """GET /readyz every 200 ms: `samples` [(monotonic time, status or None, body)]; also notes
    when the broker process is seen to have exited."""

    def __init__(self, broker: Broker, interval: float = 0.2):
        super().__init__(name="readyz-poller", daemon=True)
        self.broker, self.interval = broker, interval
        self.samples: list[tuple[float, int | None, str]] = []
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            status, body = self.broker.readyz()
            self.samples.append((time.monotonic(), status, body))
            if not self.broker.running() and not self.broker.exits:
                self.broker.exits.append((time.monotonic(), self.broker.proc.returncode))
            self._stop_event.wait(self.interval)  # pacing of the poll, not synchronization

    def stop(self):
        self._stop_event.set()
        self.join(5)

    def between(self, start: float, end: float) -> list[tuple[float, int | None, str]]:
        return [s for s in list(self.samples) if start <= s[0] <= end]


# ------------------------------------------------------------------------ tmpfs

class Tmpfs:
    """A tmpfs of `size` mounted on a fresh directory (root, or sudo -n); unmounted by `close()`."""

    def __init__(self, parent: str, size: str = "20m"):
        self.path = os.path.join(parent, "tmpfs")
        os.makedirs(self.path, exist_ok=True)
        prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
        r = subprocess.run(prefix + ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", self.path],
                           capture_output=True, text=True)
        self.mounted = r.returncode == 0
        self.prefix = prefix
        if not self.mounted:
            missing_peer(f"cannot mount a {size} tmpfs on {self.path} (needs root or passwordless sudo): "
                         f"{r.stderr.strip()}")

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, name: str = "ballast") -> int:
        """Writes a ballast file until the file system is full (ENOSPC); returns its size."""
        path = os.path.join(self.path, name)
        written = 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for chunk in (b"\0" * (1 << 20), b"\0" * 4096):
                while True:
                    try:
                        n = os.write(fd, chunk)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
                    written += n
                    if n < len(chunk):
                        break
        finally:
            os.close(fd)
        return written

    def close(self) -> None:
        if not self.mounted:
            return
        r = subprocess.run(self.prefix + ["umount", self.path], capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run(self.prefix + ["umount", "-l", self.path], capture_output=True, text=True)
        self.mounted = False


# ------------------------------------------------------------------------ clients

class IdProducer(threading.Thread):
    """An idempotent confluent-kafka producer (acks=all, message.timeout.ms 300 s: it never gives
    up during a scenario) sending values that carry a sequential id, `rate` per second, keyed by
    the id (spread over the partitions). Delivery reports: `acked` {id: monotonic time of the
    report}, `failed` [(id, error)]; `sent_at[id]` is when the id was handed to the client."""

    def __init__(self, bootstrap: str, topic: str, rate: float = 300.0):
        super().__init__(name="id-producer", daemon=True)
        from confluent_kafka import Producer
        self.topic, self.rate = topic, rate
        self.sent_at: list[float] = []
        self.acked: dict[int, float] = {}
        self.failed: list[tuple[int, str]] = []
        self.errors: list[str] = []
        self.unflushed: int | None = None
        self.exception: BaseException | None = None
        self._stop_event = threading.Event()
        self._flush_timeout = 10.0
        # Guards `acked` and `sent_at` between this thread (callbacks run in poll/flush here) and
        # the test thread reading snapshots; held only for a dict/list operation.
        self._lock = threading.Lock()
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                  "message.timeout.ms": 300000, "linger.ms": 5,
                                  "client.id": "fault-suite", "error_cb": self._error})

    def _error(self, err):
        self.errors.append(f"{err.name()}: {err.str()}")

    def _delivered(self, err, msg):
        ident = int(msg.value()[:10])
        if err is None:
            with self._lock:
                self.acked[ident] = time.monotonic()
        else:
            self.failed.append((ident, f"{err.name()}: {err.str()}"))

    def run(self):
        try:
            burst = max(1, int(self.rate / 50))
            next_at = time.monotonic()
            while not self._stop_event.is_set():
                for _ in range(burst):
                    ident = len(self.sent_at)
                    while not self._stop_event.is_set():
                        try:
                            self.producer.produce(self.topic, key=b"%d" % ident,
                                                  value=b"%010d|" % ident + b"v" * 90, on_delivery=self._delivered)
                            with self._lock:
                                self.sent_at.append(time.monotonic())
                            break
                        except BufferError:  # the local queue is full (an outage): wait for room
                            self.producer.poll(0.1)
                self.producer.poll(0)
                next_at += burst / self.rate
                self._stop_event.wait(max(0.0, next_at - time.monotonic()))  # pacing, not synchronization
            self.unflushed = self.producer.flush(self._flush_timeout)
        except BaseException as e:  # reported by the scenario
            self.exception = e
        finally:
            # Records still queued are dropped (they were never acknowledged, so no check needs
            # them) and the client is closed, so it stops reconnecting once the broker is gone.
            self.producer.purge()
            self.producer.poll(0)
            self.producer.close()

    def finish(self, flush_timeout: float) -> None:
        self._flush_timeout = flush_timeout
        self._stop_event.set()
        self.join(flush_timeout + 15)

    def snapshot(self) -> tuple[dict[int, float], list[float]]:
        """Copies of (`acked`, `sent_at`)."""
        with self._lock:
            return dict(self.acked), list(self.sent_at)

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def last_ack_before(self, t: float) -> float | None:
        times = [a for a in self.snapshot()[0].values() if a <= t]
        return max(times) if times else None

    def first_ack_after(self, t: float) -> float | None:
        times = [a for a in self.snapshot()[0].values() if a > t]
        return min(times) if times else None

    def first_fresh_ack_after(self, t: float) -> float | None:
        """The earliest report for an id sent after `t` (the backlog drained, new records flow)."""
        acked, sent = self.snapshot()
        times = [a for i, a in acked.items() if i < len(sent) and sent[i] > t]
        return min(times) if times else None


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=30, request_timeout=30)
    futures[topic].result(30)


def read_ids(bootstrap: str, topic: str, partitions: int, timeout: float) -> tuple[list[int], bool, list[str]]:
    """Every value's id in `topic`, read from offset 0 of each partition until each is at its high
    watermark: (ids in the order read, complete, consumer errors seen)."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "fault-verify-" + uuid.uuid4().hex[:6],
                  "enable.auto.commit": False, "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    ids, errors = [], []
    nexts, at_eof = {p: 0 for p in range(partitions)}, set()
    deadline = time.monotonic() + timeout
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        while time.monotonic() < deadline:
            if len(at_eof) == partitions:
                try:
                    highs = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
                             for p in range(partitions)}
                except KafkaException as e:
                    errors.append(f"watermarks: {e}")
                    at_eof.clear()
                    continue
                if all(nexts[p] >= highs[p] for p in range(partitions)):
                    return ids, True, errors
                at_eof = {p for p in at_eof if nexts[p] >= highs[p]}
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        at_eof.add(m.partition())
                    elif len(errors) < 50:
                        errors.append(str(m.error()))
                    continue
                at_eof.discard(m.partition())
                nexts[m.partition()] = m.offset() + 1
                if not m.value().startswith(b"probe|"):  # the scenarios' raw Produce probes
                    ids.append(int(m.value()[:10]))
        return ids, False, errors
    finally:
        c.close()
