"""Fixtures for the operator's end-to-end tests: the Python fake API server (HTTPS + token,
simulated workloads) in-process, and the real `floe-operator` binary as child processes."""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "Tests", "FakeKubeAPI"))
from fake_apiserver import FakeAPIServer  # noqa: E402

FC_API = "/apis/floe.dev/v1alpha1"


def operator_binary() -> str:
    """FLOE_OPERATOR_BIN, or the debug build, brought up to date first (never a stale binary)."""
    path = os.environ.get("FLOE_OPERATOR_BIN")
    if path:
        return path
    subprocess.run(["swift", "build", "--product", "floe-operator"], cwd=ROOT, check=True)
    out = subprocess.run(["swift", "build", "--show-bin-path"], cwd=ROOT, check=True, capture_output=True, text=True)
    return os.path.join(out.stdout.strip(), "floe-operator")


def wait_for(predicate, timeout=30.0, what="condition", interval=0.05):
    """Polls `predicate` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except AssertionError as e:  # not yet
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


class Api:
    """A minimal HTTPS client of the fake (bearer token, CA verified)."""

    def __init__(self, server: FakeAPIServer, token: str):
        self.port = server.port
        self.token = token
        self.ctx = ssl.create_default_context(cafile=server.ca_file)

    def req(self, method, path, body=None, ctype="application/json"):
        c = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=20, context=self.ctx)
        h = {"Authorization": f"Bearer {self.token}", "User-Agent": "floe-e2e/1"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = ctype
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        raw = r.read()
        c.close()
        return r.status, (json.loads(raw) if raw else None)

    def ok(self, method, path, body=None, ctype="application/json"):
        code, obj = self.req(method, path, body, ctype)
        assert 200 <= code < 300, (method, path, code, obj)
        return obj

    def get(self, path):
        code, obj = self.req("GET", path)
        return obj if code == 200 else None

    def control(self, **cmd):
        return self.ok("POST", "/fake/control", cmd)

    def requests(self):
        return self.ok("GET", "/fake/requests")["requests"]


class Operator:
    """One `floe-operator run` child process."""

    def __init__(self, binary, kubeconfig, identity, extra=(), log_dir="."):
        self.identity = identity
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.http_port = s.getsockname()[1]
        s.close()
        self.log_path = os.path.join(log_dir, f"operator-{identity}.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "run", "--kubeconfig", kubeconfig, f"--http=127.0.0.1:{self.http_port}", f"--identity={identity}",
             "--log-level=debug", *extra],
            stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def user_agent_suffix(self):
        return f"({self.identity})"

    def probe(self, path):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=2)
            c.request("GET", path)
            r = c.getresponse()
            body = r.read().decode()
            c.close()
            return r.status, body
        except OSError:
            return None, ""

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


@pytest.fixture(scope="session")
def binary():
    return operator_binary()


@pytest.fixture
def env(binary, tmp_path):
    """A fresh fake API server with the CRD and namespace `apps`, plus a kubeconfig for it."""
    token = "e2e-token"
    server = FakeAPIServer(port=0, tls_dir=str(tmp_path / "tls"), token=token, simulate_workloads=True,
                           bookmark_interval=1.0).start()
    api = Api(server, token)
    crd = yaml.safe_load(subprocess.run([binary, "crd"], check=True, capture_output=True, text=True).stdout)
    api.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    api.ok("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}})
    api.ok("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "floe-system"}})
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server.url, "certificate-authority": server.ca_file}}],
        "users": [{"name": "op", "user": {"token": token}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "op", "namespace": "floe-system"}}],
    }))
    started = []

    def start_operator(identity="op-a", extra=()):
        op = Operator(binary, str(kubeconfig), identity, extra, log_dir=str(tmp_path))
        started.append(op)
        return op

    yield api, server, start_operator
    for op in started:
        op.stop(signal.SIGKILL)
    server.stop()
