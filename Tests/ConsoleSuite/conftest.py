"""Console suite: the operator's web console in headless Chromium (see README.md).

Environment:
  FLOE_OPERATOR_BIN, FLOE_BROKER_BIN   the binaries (required; scripts/test exports the release builds).
  FLOE_TEST_OUTPUT                      where screenshots go (default .build/test-output).
  CI                                    when set, a missing peer (chromium, confluent-kafka) fails instead of skipping.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import json

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cdp  # noqa: E402

OPERATOR_BIN = os.environ.get("FLOE_OPERATOR_BIN", "").strip()
BROKER_BIN = os.environ.get("FLOE_BROKER_BIN", "").strip()
IN_CI = bool(os.environ.get("CI"))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUTPUT = os.environ.get("FLOE_TEST_OUTPUT", os.path.join(REPO, ".build", "test-output"))


def pytest_configure(config):
    for name, path in (("FLOE_OPERATOR_BIN", OPERATOR_BIN), ("FLOE_BROKER_BIN", BROKER_BIN)):
        if not path:
            raise pytest.UsageError(f"\n*** {name} is unset: the console suite has nothing to run. "
                                    "e.g. FLOE_OPERATOR_BIN=.build/release/floe-operator FLOE_BROKER_BIN=.build/release/floe-broker ***\n")
        if not os.access(path, os.X_OK):
            raise pytest.UsageError(f"{name}={path} is not an executable file")


def missing_peer(what: str) -> None:
    """A peer the test needs is absent: a failure in CI, a loud skip elsewhere."""
    message = f"console suite: {what}"
    if IN_CI:
        pytest.fail(message + " (CI is set: a missing peer is a failure)", pytrace=False)
    sys.stderr.write(f"\n*** SKIPPED: {message} ***\n")
    pytest.skip(message)


def require_chromium() -> str:
    path = cdp.find_chromium()
    if not path:
        missing_peer("no chromium on PATH (Debian: apt-get install -y chromium)")
    return path


def require_modules(*names: str) -> None:
    for name in names:
        try:
            __import__(name)
        except ImportError as e:
            missing_peer(f"Python module {name} is not installed ({e})")


def free_ports(count: int, gap: int = 100) -> int:
    """A base P with P..P+count-1 and P+gap..P+gap+count-1 free on 127.0.0.1."""
    import random
    for _ in range(200):
        base = random.randrange(20000, 40000)
        ok = True
        for p in [base + i for i in range(count)] + [base + gap + i for i in range(count)]:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalOperator:
    """`floe-operator local` with its console on `http_port`; `fault_file` switches the API to 503."""

    def __init__(self, data_dir: str, base: int, http_port: int, max_brokers: int, target: int, extra: list[str] | None = None):
        self.log_path = os.path.join(data_dir, "operator.log")
        self.log = open(self.log_path, "w")
        self.fault_file = os.path.join(data_dir, "console-fault")
        self.http = f"http://127.0.0.1:{http_port}"
        env = dict(os.environ, FLOE_CONSOLE_FAULT_FILE=self.fault_file)
        self.proc = subprocess.Popen(
            [OPERATOR_BIN, "local", "--data-dir", data_dir, "--port", str(base), "--view", "log",
             "--http", f"127.0.0.1:{http_port}", "--min-brokers", "1", "--max-brokers", str(max_brokers),
             "--target-bytes-in", str(target), "--broker-bin", BROKER_BIN, "--log-level", "notice"] + (extra or []),
            stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def text(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def api(self, path: str = "/api/clusters/local"):
        with urllib.request.urlopen(self.http + path, timeout=5) as r:
            return json.loads(r.read())

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while "is ready" not in self.text():
            assert self.proc.poll() is None, "operator exited:\n" + self.text()
            assert time.time() < deadline, "broker 1 never became ready:\n" + self.text()
            time.sleep(0.2)

    def broker_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"broker started .*pid=(\d+)", self.text())]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=120)
        finally:
            for pid in self.broker_pids():  # only if something went wrong: never leave brokers behind
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.log.close()
