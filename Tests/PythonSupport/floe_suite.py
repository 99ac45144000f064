"""What the Python suites share: how a missing peer is reported, free ports, and
`floe-operator local` as a child process.

A suite's conftest.py puts this folder on sys.path:

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "PythonSupport"))
    from floe_suite import Peers, free_port

Missing peers: under CI (the CI environment variable set) a peer a test needs is a failure; elsewhere
the test is skipped with a line on stderr nobody can miss.
"""
import os
import random
import re
import signal
import socket
import subprocess
import sys

import pytest

IN_CI = bool(os.environ.get("CI"))


class Peers:
    """Reports missing peers in the name of one suite ("cluster suite: ...")."""

    def __init__(self, suite: str):
        self.suite = suite

    def missing(self, what: str) -> None:
        message = f"{self.suite}: {what}"
        if IN_CI:
            pytest.fail(message + " (CI is set: a missing peer is a failure)", pytrace=False)
        sys.stderr.write(f"\n*** SKIPPED: {message} ***\n")
        pytest.skip(message)

    def require_modules(self, *names: str) -> None:
        for name in names:
            try:
                __import__(name)
            except ImportError as e:
                self.missing(f"Python module {name} is not installed ({e})")


_handed_out: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1 now and never returned before by this process: the kernel may
    hand the same ephemeral port to two binds in a row once the first socket is closed (CI saw a
    broker given one port for both --listen and --http)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no fresh free port on 127.0.0.1")


def free_port_range(count: int, gap: int = 100) -> int:
    """A base P with P..P+count-1 and P+gap..P+gap+count-1 free on 127.0.0.1 (the Kafka and HTTP
    ports `floe-operator local --port P` gives its brokers)."""
    for _ in range(200):
        base = random.randrange(20000, 40000)
        ports = [base + i for i in range(count)] + [base + gap + i for i in range(count)]
        if all(_bindable(p) for p in ports):
            return base
    raise RuntimeError("no free port range")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class LocalOperator:
    """`floe-operator local` writing its log to `<data_dir>/operator.log`; stopped with SIGINT, and
    every broker it reported starting is killed afterwards if it is somehow still there."""

    def __init__(self, args: list[str], data_dir: str, env: dict | None = None):
        self.log_path = os.path.join(data_dir, "operator.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def text(self) -> str:
        with open(self.log_path) as f:
            return f.read()

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
