"""Security suite: real Kafka clients against floe-broker with `authorizer=acl` (see README.md).

Clients connect as a `Principal`: today only User:ANONYMOUS on a PLAINTEXT listener; a SASL
user is another `Principal` whose `client_config` adds the SASL settings, so every test can be
run for it unchanged.

Environment:
  FLOE_BROKER_BIN    the floe-broker binary to test (scripts/test sets the release build). Required.
  FLOE_SECURITY_LOGS directory for broker logs (default: pytest's temporary directory).
  CI                 when set, a missing confluent-kafka fails the run instead of skipping it.
"""
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ClientSuite"))
import kafka_wire  # noqa: E402
from tls_support import pki, start_broker  # noqa: E402,F401  (fixtures of test_tls.py)

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
            f"\n*** FLOE_BROKER_BIN is unset or not executable ({BROKER_BIN!r}): the security suite needs floe-broker "
            "(swift build --product floe-broker). ***\n")
    if not HAVE_CONFLUENT and IN_CI:
        raise pytest.UsageError("\n*** confluent-kafka is not installed: the security suite needs it (CI). ***\n")
    if IN_CI and shutil.which("openssl") is None:
        raise pytest.UsageError("\n*** the openssl CLI is missing: the security suite makes its certificates with it (CI). ***\n")


def pytest_collection_modifyitems(config, items):
    if HAVE_CONFLUENT:
        return
    for item in items:
        item.add_marker(pytest.mark.skip(reason="SKIPPED: confluent-kafka is not installed (pip install confluent-kafka)"))


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who a client is, and the client settings that make it so."""
    name: str                       # as ACLs name it, e.g. "User:ANONYMOUS"
    settings: tuple = ()            # extra confluent-kafka settings (SASL mechanism, username, ...)

    def client_config(self, bootstrap: str, **extra) -> dict:
        return {"bootstrap.servers": bootstrap, **dict(self.settings), **extra}


ANONYMOUS = Principal("User:ANONYMOUS")


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "PythonSupport"))
from floe_suite import free_port  # noqa: E402,F401  (never hands out one port twice in a process)


class Broker:
    """One floe-broker process (its own process group), stopped by PID."""

    def __init__(self, data_dir: str, log_path: str):
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc = None

    def start(self, settings: dict, timeout: float = 60.0) -> None:
        args = [BROKER_BIN, "--listen", self.bootstrap, "--advertise", self.bootstrap,
                "--storage", f"file://{self.data_dir}", "--log-level", "info"]
        for key, value in settings.items():
            args += ["--set", f"{key}={value}"]
        log = open(self.log_path, "ab")
        log.write(f"\n=== {' '.join(args)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        try:
            kafka_wire.wait_serving("127.0.0.1", self.port, time.monotonic() + timeout, alive=lambda: self.proc.poll() is None)
        except kafka_wire.WireError as e:
            self.stop()
            pytest.fail(f"broker did not start: {e}\n--- log tail:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        with open(self.log_path, "rb") as f:
            return b"".join(f.readlines()[-lines:]).decode(errors="replace")


@pytest.fixture
def broker(tmp_path):
    logs = os.environ.get("FLOE_SECURITY_LOGS") or str(tmp_path)
    os.makedirs(logs, exist_ok=True)
    data = tmp_path / "bucket"
    data.mkdir()
    b = Broker(str(data), os.path.join(logs, f"broker-{os.getpid()}-{time.monotonic_ns()}.log"))
    yield b
    b.stop()
