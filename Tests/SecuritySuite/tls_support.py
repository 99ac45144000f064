"""TLS helpers of the security suite: test certificates made with the openssl CLI, a broker on TLS
listeners, and the `pki` and `start_broker` fixtures (registered by conftest.py).

Environment:
  FLOE_BROKER_BIN   the floe-broker binary (scripts/test sets the release build). Required.
  CI                when set, a missing peer (confluent-kafka, kafka-python, openssl) fails the run.
"""
import os
import sys
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time

import pytest

BROKER_BIN = os.environ.get("FLOE_BROKER_BIN", "").strip()
IN_CI = bool(os.environ.get("CI"))


def require_module(name: str):
    """Imports a peer client library; a missing one fails under CI and skips (visibly) otherwise."""
    try:
        return __import__(name)
    except ImportError:
        if IN_CI:
            pytest.fail(f"{name} is not installed (CI): pip install {name.replace('_', '-')}")
        pytest.skip(f"SKIPPED: {name} is not installed")


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "PythonSupport"))
from floe_suite import free_port  # noqa: E402,F401  (never hands out one port twice in a process)


class PKI:
    """A CA, a server certificate (localhost, 127.0.0.1) and a client certificate (O=acme, CN=alice)."""

    def __init__(self, directory: str):
        self.dir = directory
        self.run("""
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=Floe Test CA'
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr -subj '/CN=localhost'
            printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n' > server.ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 1001 -days 2 -extfile server.ext -out server.pem
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout client.key -out client.csr -subj '/O=acme/CN=alice'
            printf 'extendedKeyUsage=clientAuth\\n' > client.ext
            openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -set_serial 2001 -days 2 -extfile client.ext -out client.pem
            """)

    def run(self, script: str) -> None:
        subprocess.run(["/bin/sh", "-ec", script], cwd=self.dir, check=True, capture_output=True)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("SKIPPED: the openssl CLI is missing")
    return PKI(str(tmp_path_factory.mktemp("pki")))


def tls_probe(port: int, ca: str, timeout: float = 2.0, cert: str | None = None, key: str | None = None) -> None:
    """One TLS connection, one ApiVersions v0 exchange (raises on any failure)."""
    context = ssl.create_default_context(cafile=ca)
    if cert:
        context.load_cert_chain(cert, key)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as s:
            s.settimeout(timeout)
            cid = b"floe-suite"
            s.sendall(struct.pack(">ihhih", 4 + 2 + 2 + 2 + len(cid), 18, 0, 1, len(cid)) + cid)
            head = b""
            while len(head) < 4:
                chunk = s.recv(4 - len(head))
                if not chunk:
                    raise OSError("no ApiVersions answer")
                head += chunk


class Broker:
    """The release floe-broker on 127.0.0.1 with file storage; `settings` go through --set."""

    def __init__(self, log_dir: str, settings: dict[str, str], ca: str | None, client_cert: tuple[str, str] | None = None,
                 data: str | None = None, node: int = 0):
        self.port = free_port()
        self.http_port = free_port()
        self.owns_data = data is None
        self.data = data or tempfile.mkdtemp(prefix="floe-security-")
        self.node = node
        self.log_path = os.path.join(log_dir, f"broker-{self.port}.log")
        self.settings = settings
        self.ca = ca
        self.client_cert = client_cert
        self.proc = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        args = [BROKER_BIN, "--node-id", str(self.node), "--listen", self.bootstrap, "--advertise", self.bootstrap, "--storage", f"file://{self.data}",
                "--http", f"127.0.0.1:{self.http_port}"]
        for k, v in self.settings.items():
            args += ["--set", f"{k}={v}"]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the broker exited before serving:\n{self.log_tail()}")
            try:
                if self.ca:
                    cert, key = self.client_cert or (None, None)
                    tls_probe(self.port, self.ca, cert=cert, key=key)
                else:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except (OSError, ssl.SSLError) as e:
                last = e
            time.sleep(0.05)  # poll interval while waiting for the port, not synchronization
        pytest.fail(f"the broker did not serve in time (last error: {last}):\n{self.log_tail()}")

    def metric(self, name: str) -> float:
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{") or line.startswith(name + " "))

    def log_tail(self, lines: int = 30) -> str:
        with open(self.log_path, "rb") as f:
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if self.owns_data:
            shutil.rmtree(self.data, ignore_errors=True)
        self.proc = None


def tls_settings(pki: PKI, client_auth: str = "none") -> dict[str, str]:
    settings = {"security.protocol": "SSL", "ssl.certificate.file": pki.path("server.pem"),
                "ssl.key.file": pki.path("server.key"), "ssl.client.auth": client_auth,
                "inter.broker.ssl.ca.file": pki.path("ca.pem")}
    if client_auth != "none":
        settings["ssl.client.ca.file"] = pki.path("ca.pem")
    return settings


@pytest.fixture
def start_broker(tmp_path):
    started: list[Broker] = []

    def start(settings: dict[str, str], ca: str | None, client_cert: tuple[str, str] | None = None,
              data: str | None = None, node: int = 0) -> Broker:
        b = Broker(str(tmp_path), settings, ca, client_cert, data=data, node=node)
        started.append(b)
        b.start()
        return b

    yield start
    for b in started:
        b.stop()


def plaintext_and_tls_broker(prefix: str):
    """A started broker with a plaintext internal listener and an SSL external one, for the
    side-by-side benchmarks: (broker, TLS bootstrap, the TLS client settings, the certificates'
    directory, which the caller removes)."""
    directory = tempfile.mkdtemp(prefix=prefix)
    pki = PKI(directory)
    external = free_port()
    settings = {"external.listen": f"127.0.0.1:{external}", "external.security.protocol": "SSL",
                "ssl.certificate.file": pki.path("server.pem"), "ssl.key.file": pki.path("server.key")}
    broker = Broker(directory, settings, ca=None)
    broker.start()
    return broker, f"127.0.0.1:{external}", {"security.protocol": "SSL", "ssl.ca.location": pki.path("ca.pem")}, directory
