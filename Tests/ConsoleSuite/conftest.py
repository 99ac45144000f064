"""Console suite: the operator's web console in headless Chromium (see README.md).

Environment:
  FLOE_OPERATOR_BIN, FLOE_BROKER_BIN   the binaries (required; scripts/test exports the release builds).
  FLOE_TEST_OUTPUT                      where screenshots go (default .build/test-output).
  CI                                    when set, a missing peer (chromium, confluent-kafka) fails instead of skipping.
"""
import os
import sys
import time
import urllib.error
import urllib.request
import json

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cdp  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "PythonSupport"))
import floe_suite  # noqa: E402
from floe_suite import Peers, free_port, free_port_range  # noqa: E402,F401

OPERATOR_BIN = os.environ.get("FLOE_OPERATOR_BIN", "").strip()
BROKER_BIN = os.environ.get("FLOE_BROKER_BIN", "").strip()
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUTPUT = os.environ.get("FLOE_TEST_OUTPUT", os.path.join(REPO, ".build", "test-output"))


def pytest_configure(config):
    for name, path in (("FLOE_OPERATOR_BIN", OPERATOR_BIN), ("FLOE_BROKER_BIN", BROKER_BIN)):
        if not path:
            raise pytest.UsageError(f"\n*** {name} is unset: the console suite has nothing to run. "
                                    "e.g. FLOE_OPERATOR_BIN=.build/release/floe-operator FLOE_BROKER_BIN=.build/release/floe-broker ***\n")
        if not os.access(path, os.X_OK):
            raise pytest.UsageError(f"{name}={path} is not an executable file")


PEERS = Peers("console suite")
require_modules = PEERS.require_modules


def require_chromium() -> str:
    path = cdp.find_chromium()
    if not path:
        PEERS.missing("no chromium on PATH (Debian: apt-get install -y chromium)")
    return path


def free_ports(count: int) -> int:
    return free_port_range(count)


class LocalOperator(floe_suite.LocalOperator):
    """`floe-operator local` with its console on `http_port`; `fault_file` switches the API to 503."""

    def __init__(self, data_dir: str, base: int, http_port: int, max_brokers: int, target: int, extra: list[str] | None = None):
        self.fault_file = os.path.join(data_dir, "console-fault")
        self.http = f"http://127.0.0.1:{http_port}"
        env = dict(os.environ, FLOE_CONSOLE_FAULT_FILE=self.fault_file)
        super().__init__(
            [OPERATOR_BIN, "local", "--data-dir", data_dir, "--port", str(base), "--view", "log",
             "--http", f"127.0.0.1:{http_port}", "--min-brokers", "1", "--max-brokers", str(max_brokers),
             "--target-bytes-in", str(target), "--broker-bin", BROKER_BIN, "--log-level", "notice"] + (extra or []),
            data_dir, env=env)

    def api(self, path: str = "/api/clusters/local"):
        with urllib.request.urlopen(self.http + path, timeout=5) as r:
            return json.loads(r.read())

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while "is ready" not in self.text():
            assert self.proc.poll() is None, "operator exited:\n" + self.text()
            assert time.time() < deadline, "broker 1 never became ready:\n" + self.text()
            time.sleep(0.2)
