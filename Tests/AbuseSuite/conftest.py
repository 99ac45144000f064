"""Abuse suite: abusive and slow clients against the release floe-broker (see README.md).

Environment:
  FLOE_BROKER_BIN   the floe-broker binary to test (scripts/test sets the release build). Required.
  FLOE_ABUSE_LOGS   directory for broker logs (default: pytest's temporary directory).
  CI                when set, a missing peer (binary, confluent-kafka) fails the run instead of
                    skipping it.
"""
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ClientSuite"))
import kafka_wire  # noqa: E402

BROKER_BIN = os.environ.get("FLOE_BROKER_BIN", "").strip()
IN_CI = bool(os.environ.get("CI"))

try:
    import confluent_kafka  # noqa: F401
    HAVE_CONFLUENT = True
except ImportError:
    HAVE_CONFLUENT = False


def pytest_configure(config):
    if not BROKER_BIN or not os.access(BROKER_BIN, os.X_OK):
        raise pytest.UsageError(
            f"\n*** FLOE_BROKER_BIN is unset or not executable ({BROKER_BIN!r}): the abuse suite needs the release "
            "floe-broker (swift build -c release --product floe-broker). ***\n")
    if not HAVE_CONFLUENT and IN_CI:
        raise pytest.UsageError("\n*** confluent-kafka is not installed: the abuse suite's steady producer needs it (CI). ***\n")


def pytest_collection_modifyitems(config, items):
    if HAVE_CONFLUENT:
        return
    for item in items:
        item.add_marker(pytest.mark.skip(reason="SKIPPED: confluent-kafka is not installed (pip install confluent-kafka)"))


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "PythonSupport"))
from floe_suite import free_port  # noqa: E402,F401  (never hands out one port twice in a process)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Broker:
    """The release floe-broker on 127.0.0.1 with file storage in a temporary directory."""

    def __init__(self, log_dir: str, extra_args: list[str] | None = None):
        self.port = free_port()
        self.http_port = free_port()
        self.data = tempfile.mkdtemp(prefix="floe-abuse-")
        self.log_path = os.path.join(log_dir, f"broker-{self.port}.log")
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        args = [BROKER_BIN, "--listen", self.bootstrap, "--advertise", self.bootstrap, "--storage", f"file://{self.data}",
                "--http", f"127.0.0.1:{self.http_port}"] + self.extra_args
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        kafka_wire.wait_serving("127.0.0.1", self.port, time.monotonic() + timeout, alive=lambda: self.proc.poll() is None)

    def rss(self) -> int:
        return rss_bytes(self.proc.pid)

    def metric(self, name: str) -> float:
        """Sum of the samples of one metric family on /metrics (0 when absent)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log_text(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM by PID, SIGKILL after `timeout`; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture
def start_broker(tmp_path):
    log_dir = os.environ.get("FLOE_ABUSE_LOGS") or str(tmp_path)
    os.makedirs(log_dir, exist_ok=True)
    started: list[Broker] = []

    def start(extra_args: list[str] | None = None) -> Broker:
        b = Broker(log_dir, extra_args)
        started.append(b)
        b.start()
        return b

    yield start
    for b in started:
        b.stop()
        b.cleanup()


class SteadyProducer(threading.Thread):
    """A well-behaved confluent-kafka producer (acks=all, linger 0) sending `rate` records of
    `size` bytes per second on a fixed schedule; records each record's produce-to-ack latency
    by the time it was sent."""

    def __init__(self, bootstrap: str, topic: str, rate: int = 500, size: int = 1024):
        super().__init__(daemon=True)
        from confluent_kafka import Producer
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                                  "enable.idempotence": True, "message.timeout.ms": 60000})
        self.topic = topic
        self.interval = 1.0 / rate
        self.value = b"v" * size
        self.samples: list[tuple[float, float]] = []
        self.errors: list[str] = []
        self.sent = 0
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stopping.is_set():
            now = time.monotonic()
            if now < next_at:
                self.producer.poll(min(next_at - now, 0.002))
                continue
            sent_at = time.monotonic()

            def done(err, _msg, sent_at=sent_at):
                if err is not None:
                    with self.lock:
                        self.errors.append(str(err))
                    return
                with self.lock:
                    self.samples.append((sent_at, time.monotonic() - sent_at))

            while True:
                try:
                    self.producer.produce(self.topic, self.value, on_delivery=done)
                    break
                except BufferError:
                    self.producer.poll(0.01)
            self.sent += 1
            next_at += self.interval
            self.producer.poll(0)
        self.producer.flush(30)
        self.producer = None  # destroyed now: it would keep reconnecting to the stopped broker

    def stop(self) -> None:
        self.stopping.set()
        self.join(60)

    def wait_acks(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.samples) >= count:
                    return
            time.sleep(0.05)  # poll interval while waiting for acknowledgements
        raise AssertionError(f"the steady producer got only {len(self.samples)} acks of {count} in {timeout} s; errors {self.errors[:3]}")

    def latencies(self, start: float, end: float) -> list[float]:
        with self.lock:
            return [lat for t, lat in self.samples if start <= t < end]


def p99(values: list[float]) -> float:
    assert len(values) >= 100, f"too few samples for a p99: {len(values)}"
    return statistics.quantiles(values, n=100)[98]


# The bounds every abuse test asserts (docs/operations.md, "Abusive and slow clients"):
RSS_GROWTH_BOUND = 64 << 20          # broker RSS growth during the abuse, over the baseline's end
P99_FACTOR = 2.0                     # produce p99 during the abuse <= 2 x baseline p99 ...
P99_FLOOR_SECONDS = 0.005            # ... + 5 ms (the machine is shared and noisy)
WINDOW_SECONDS = 8.0                 # length of the baseline and of the measured abuse window


class Measurement:
    """Baseline, then abuse, with the steady producer running throughout and RSS sampled."""

    def __init__(self, broker: Broker, producer: SteadyProducer):
        self.broker = broker
        self.producer = producer
        self.rss_peak = 0
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    def baseline(self) -> None:
        # Warm-up (topic creation, connections), then the baseline window.
        self.producer.wait_acks(500)
        self.base_start = time.monotonic()
        time.sleep(WINDOW_SECONDS)  # measurement window length, not synchronization
        self.base_end = time.monotonic()
        self.rss_before = self.broker.rss()
        self.rss_peak = self.rss_before

    def start_abuse(self) -> None:
        self.abuse_start = time.monotonic()
        self._sampling.set()

        def sample():
            while self._sampling.is_set():
                try:
                    self.rss_peak = max(self.rss_peak, self.broker.rss())
                except (OSError, RuntimeError):
                    return
                time.sleep(0.1)  # RSS sampling period

        self._sampler = threading.Thread(target=sample, daemon=True)
        self._sampler.start()

    def end_abuse(self) -> None:
        self.abuse_end = time.monotonic()
        self._sampling.clear()
        self._sampler.join(5)
        self.rss_peak = max(self.rss_peak, self.broker.rss())

    def report(self, name: str) -> dict:
        base = self.producer.latencies(self.base_start, self.base_end)
        during = self.producer.latencies(self.abuse_start, self.abuse_end)
        r = {
            "test": name,
            "baseline_p99_ms": round(p99(base) * 1000, 2),
            "abuse_p99_ms": round(p99(during) * 1000, 2),
            "baseline_p50_ms": round(statistics.median(base) * 1000, 2),
            "abuse_p50_ms": round(statistics.median(during) * 1000, 2),
            "rss_before_mib": round(self.rss_before / 2**20, 1),
            "rss_peak_mib": round(self.rss_peak / 2**20, 1),
            "rss_growth_mib": round((self.rss_peak - self.rss_before) / 2**20, 1),
            "samples": (len(base), len(during)),
        }
        print(f"\nABUSE-FIGURES {r}")
        return r

    def assert_memory(self, r: dict) -> None:
        assert not self.producer.errors, f"the steady producer had errors: {self.producer.errors[:5]}"
        growth = self.rss_peak - self.rss_before
        assert growth <= RSS_GROWTH_BOUND, f"broker RSS grew {growth / 2**20:.1f} MiB (bound {RSS_GROWTH_BOUND >> 20} MiB): {r}"


def p99_limit(r: dict) -> float:
    return P99_FACTOR * r["baseline_p99_ms"] + P99_FLOOR_SECONDS * 1000


def measured(run) -> None:
    """Runs `run()` (a fresh broker, baseline, abuse; returns its report after asserting the
    memory bound) and asserts the p99 bound. The machine is shared with other builds: when the
    p99 bound fails, the whole measurement is repeated once and the second one decides (both
    are printed). Every other assertion holds on every attempt."""
    r = run()
    if r["abuse_p99_ms"] <= p99_limit(r):
        return
    print(f"\nABUSE-RETRY p99 {r['abuse_p99_ms']} ms > {p99_limit(r):.2f} ms on the first attempt; measuring again")
    r = run()
    assert r["abuse_p99_ms"] <= p99_limit(r), f"produce p99 {r['abuse_p99_ms']} ms > {p99_limit(r):.2f} ms (2x baseline + 5 ms): {r}"
