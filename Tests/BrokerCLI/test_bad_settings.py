"""floe-broker's command line, settings and start-up errors, run against the RELEASE binary
(issue 13: "a table-driven test over bad settings: each gives a one-line error naming the
setting and exits non-zero, creating nothing").

Every bad case runs in a fresh temporary working directory with a fresh bucket path (not yet
created) under a second temporary directory, and must:
  - exit with a non-zero status within 15 s (2 for a wrong setting, 1 for a start failure),
  - write exactly one line to stderr, `floe-broker: ...`, naming the setting as it was given,
  - leave both temporary directories as they were (nothing created: no bucket, no WAL).
A few good configurations must still start: the broker accepts a TCP connection on its port,
then SIGTERM stops it with status 0. Error messages that used to mislead (an endpoint that is
not S3, a WAL directory held by another broker) are checked at the end.

FLOE_BROKER_BIN: absolute path of the release floe-broker (scripts/test sets it). Unset: the
tests fail when CI=true, and are skipped (loudly) otherwise.
"""
import http.server
import os
import sys
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field

import pytest

BROKER = os.environ.get("FLOE_BROKER_BIN", "")
IN_CI = os.environ.get("CI") == "true"
DEADLINE = 15.0


@pytest.fixture(scope="session")
def broker_bin() -> str:
    if not BROKER:
        message = "FLOE_BROKER_BIN is not set (absolute path of the release floe-broker; scripts/test sets it)"
        if IN_CI:
            pytest.fail(message + " and CI=true: a missing binary is a failure")
        pytest.skip("*** SKIPPED: " + message + " ***")
    if not os.path.isabs(BROKER) or not os.access(BROKER, os.X_OK):
        pytest.fail(f"FLOE_BROKER_BIN={BROKER!r} is not an absolute path to an executable")
    return BROKER


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "PythonSupport"))
from floe_suite import free_port  # noqa: E402,F401  (never hands out one port twice in a process)


def snapshot(root: str) -> list[str]:
    """Every path under `root`, relative, sorted (what a case may not add to)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(out)


@dataclass
class Case:
    """`args`, `env` and `config` may use {bucket} (a path that does not exist yet), {tmp} (the
    bucket's parent directory), {cwd} and {port}. `base` adds `--listen 127.0.0.1:{port}` and
    `--storage file://{bucket}` for the keys the case does not set itself. `expect`: fragments
    the single stderr line must contain (the setting as given, and what is wrong)."""
    id: str
    args: list[str]
    expect: list[str]
    env: dict[str, str] = field(default_factory=dict)
    config: str | None = None
    base: tuple[str, ...] = ("listen", "storage")
    setup: str | None = None  # "file:NAME" creates the file {tmp}/NAME first
    status: int = 2


CASES = [
    # The list: accepted, ignored or defaulted before.
    Case("positional", ["serve"], ['unexpected argument "serve"', "only options"]),
    Case("positional-after-options", ["--node-id", "1", "extra"], ['unexpected argument "extra"']),
    Case("single-dash-x", ["-x"], ["unknown option -x"]),
    Case("single-dash-option", ["-node-id", "3"], ["unknown option -node-id"]),
    Case("double-dash-alone", ["--", "x"], ['unexpected argument "--"']),
    Case("storage-empty-file-path", ["--storage", "file://"], ['--storage "file://"', "path after file:// is empty"],
         base=("listen",)),
    Case("advertise-port-not-number", ["--advertise", "host:abc"], ['--advertise "host:abc"', "port must be a number 1-65535"]),
    Case("advertise-port-empty", ["--advertise", "host:"], ['--advertise "host:"', "port must be a number 1-65535"]),
    Case("advertise-port-zero", ["--advertise", "host:0"], ['--advertise "host:0"', "port"]),
    Case("advertise-no-host", ["--advertise", ":9092"], ['--advertise ":9092"', "host is empty"]),
    Case("node-id-negative", ["--node-id", "-1"], ['--node-id "-1"', "between 0 and"]),
    Case("node-id-path", ["--node-id", "../../x"], ['--node-id "../../x"', "not an integer"]),
    Case("node-id-no-value", ["--node-id"], ["option --node-id needs a value"]),
    Case("max-connections-zero", ["--set", "max.connections=0"], ['--set max.connections="0"', "between 1 and"]),
    Case("max-connections-negative", ["--max-connections", "-5"], ['--max-connections "-5"', "between 1 and"]),
    Case("socket-request-max-bytes-zero", ["--set", "socket.request.max.bytes=0"], ["socket.request.max.bytes", "between 1024 and"]),
    Case("message-max-bytes-negative", ["--set", "message.max.bytes=-1"], ["message.max.bytes", "between 1 and"]),
    Case("message-max-bytes-above-frame", ["--set", "message.max.bytes=200000000"],
         ["message.max.bytes", "exceeds socket.request.max.bytes"]),
    Case("num-partitions-zero", ["--set", "num.partitions=0"], ['--set num.partitions="0"', "between 1 and"]),
    Case("num-partitions-abc", ["--set", "num.partitions=abc"], ['--set num.partitions="abc"', "not an integer"]),
    Case("auto-create-maybe", ["--set", "auto.create.topics.enable=maybe"], ["auto.create.topics.enable", "true or false"]),
    Case("log-level-bogus", ["--log-level", "bogus"], ['--log-level "bogus"', "must be one of"]),
    Case("unknown-set-key", ["--set", "no.such.key=1"], ["unknown setting no.such.key"]),
    Case("unknown-flag", ["--no-such-key", "1"], ["unknown setting --no-such-key"]),
    Case("typo-flag", ["--num-partition", "3"], ["unknown setting --num-partition", "did you mean --num-partitions?"]),
    Case("typo-set-key", ["--set", "log.levl=debug"], ["unknown setting log.levl", "did you mean log.level?"]),
    # The same checks whichever way a value is given.
    Case("env-num-partitions-abc", [], ['FLOE_NUM_PARTITIONS="abc"', "not an integer"], env={"FLOE_NUM_PARTITIONS": "abc"}),
    Case("env-node-id-negative", [], ['FLOE_NODE_ID="-1"'], env={"FLOE_NODE_ID": "-1"}),
    Case("config-num-partitions-zero", ["--config", "{cwd}/broker.properties"], ['num.partitions="0" in ', "broker.properties"],
         config="num.partitions=0\n"),
    Case("config-unknown-key", ["--config", "{cwd}/broker.properties"], ["unknown setting no.such.key in ", "broker.properties"],
         config="# a comment\nno.such.key=1\n"),
    Case("config-typo-key", ["--config", "{cwd}/broker.properties"], ["unknown setting num.partition in", "did you mean num.partitions?"],
         config="num.partition=3\n"),
    Case("config-missing", ["--config", "{cwd}/missing.properties"], ["config file", "missing.properties", "No such file"]),
    Case("config-is-directory", ["--config", "{tmp}"], ["config file", "is a directory"]),
    Case("config-malformed", ["--config", "{cwd}/broker.properties"], ["broker.properties", "line 2"], config="a=1\nnovalue\n"),
    Case("config-bad-storage", ["--config", "{cwd}/broker.properties"], ['storage="/data" in', "must start with file://"],
         config="storage=/data\n", base=("listen",)),
    # Addresses.
    Case("listen-hostname", ["--listen", "foo:9092"], ['--listen "foo:9092"', "IPv4 address"], base=("storage",)),
    Case("listen-no-port", ["--listen", "127.0.0.1"], ['--listen "127.0.0.1"', "HOST:PORT"], base=("storage",)),
    Case("listen-port-range", ["--listen", "127.0.0.1:70000"], ["--listen", "0-65535"], base=("storage",)),
    Case("http-no-colon", ["--http", "9644"], ['--http "9644"', "HOST:PORT"]),
    Case("external-listen-bad-port", ["--external-listen", "0.0.0.0:x"], ["--external-listen", "port"]),
    Case("external-advertise-placeholder", ["--external-advertise", "h:{x}"], ["--external-advertise", "unknown placeholder {x}"]),
    Case("advertise-line-break", ["--advertise", "a\nb:9092"], ["--advertise", "control character"]),
    # Storage and WAL.
    Case("wal-kind-unknown", ["--wal", "disk"], ['--wal "disk"', "must be one of"]),
    Case("wal-memory-with-file-storage", ["--wal", "memory"], ['--wal "memory"', "not be durable"]),
    Case("storage-no-scheme", ["--storage", "/data"], ['--storage "/data"', "file://, s3:// or memory://"], base=("listen",)),
    Case("storage-s3-no-bucket", ["--storage", "s3://"], ['--storage "s3://"', "no bucket"], base=("listen",)),
    Case("storage-s3-bad-endpoint", ["--storage", "s3://b?endpoint=ftp://x"], ["--storage", "endpoint must start with http"],
         base=("listen",)),
    Case("storage-is-a-file", ["--storage", "file://{tmp}/afile"], ["--storage", "is a file, not a directory"],
         base=("listen",), setup="file:afile"),
    Case("storage-under-a-file", ["--storage", "file://{tmp}/afile/bucket"], ["--storage", "afile is a file, not a directory"],
         base=("listen",), setup="file:afile"),
    Case("wal-dir-under-a-file", ["--wal-dir", "{tmp}/afile/wal"], ["--wal-dir", "afile is a file, not a directory"],
         setup="file:afile"),
    # Rules between settings, fixed settings, repeats.
    Case("group-session-min-above-max", ["--set", "group.min.session.timeout.ms=9000", "--set", "group.max.session.timeout.ms=8000"],
         ["group.min.session.timeout.ms", "exceeds group.max.session.timeout.ms"]),
    Case("heartbeat-above-third-of-session", ["--set", "broker.heartbeat.interval.ms=5000"],
         ["broker.heartbeat.interval.ms", "at most a third"]),
    Case("fixed-setting", ["--set", "offsets.topic.replication.factor=3"], ["offsets.topic.replication.factor", "fixed"]),
    Case("given-twice", ["--node-id", "1", "--set", "node.id=2"], ["node.id is given twice"]),
    Case("event-loops-zero", ["--event-loops", "0"], ['--event-loops "0"', "between 1 and 256"]),
    Case("retention-below-minus-one", ["--set", "log.retention.ms=-2"], ["log.retention.ms", "must be at least -1"]),
    Case("compression-unknown", ["--set", "compression.type=brotli"], ["compression.type", "must be one of"]),
    Case("migration-policy-unknown", ["--set", "group.consumer.migration.policy=sideways"],
         ["group.consumer.migration.policy", "must be one of"]),
    Case("cleanup-policy-unknown", ["--set", "log.cleanup.policy=shred"], ["log.cleanup.policy", "shred is not one of"]),
    Case("set-without-equals", ["--set", "num.partitions"], ["--set expects KEY=VALUE"]),
]


def expand(text: str, values: dict[str, str]) -> str:
    for k, v in values.items():
        text = text.replace("{" + k + "}", v)
    return text


def run_case(broker: str, case: Case, tmp_path) -> None:
    cwd = tmp_path / "cwd"
    tmp = tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    values = {"cwd": str(cwd), "tmp": str(tmp), "bucket": str(tmp / "bucket"), "port": str(free_port())}
    if case.setup and case.setup.startswith("file:"):
        (tmp / case.setup[5:]).write_text("not a directory\n")
    if case.config is not None:
        (cwd / "broker.properties").write_text(case.config)
    args = [expand(a, values) for a in case.args]
    if "listen" in case.base:
        args += ["--listen", f"127.0.0.1:{values['port']}"]
    if "storage" in case.base:
        args += ["--storage", "file://" + values["bucket"]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOE_") or k == "FLOE_BROKER_BIN"}
    env.update({k: expand(v, values) for k, v in case.env.items()})
    before = (snapshot(str(cwd)), snapshot(str(tmp)))
    started = time.monotonic()
    try:
        done = subprocess.run([broker] + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case.id}: floe-broker {args} was still running after {DEADLINE:.0f} s (it must refuse the configuration)")
    elapsed = time.monotonic() - started
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == case.status, (
        f"{case.id}: exit status {done.returncode}, expected {case.status}; stderr:\n{done.stderr}")
    assert len(lines) == 1, f"{case.id}: stderr must be one line, got {len(lines)}:\n{done.stderr}"
    line = lines[0]
    assert line.startswith("floe-broker: "), line
    for fragment in case.expect:
        assert fragment in line, f"{case.id}: {fragment!r} not in {line!r}"
    assert done.stdout == "", f"{case.id}: stdout: {done.stdout!r}"
    after = (snapshot(str(cwd)), snapshot(str(tmp)))
    assert after == before, f"{case.id}: the refused broker created {set(after[0] + after[1]) - set(before[0] + before[1])}"
    assert elapsed < DEADLINE


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_setting_is_refused_with_one_line(broker_bin, case, tmp_path):
    run_case(broker_bin, case, tmp_path)


def test_listen_port_in_use_is_refused_before_anything_is_created(broker_bin, tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        case = Case("listen-in-use", ["--listen", f"127.0.0.1:{port}"], [f'--listen "127.0.0.1:{port}"', "already in use"],
                    base=("storage",), status=1)
        run_case(broker_bin, case, tmp_path)
    finally:
        holder.close()


def test_help_and_version_exit_zero(broker_bin, tmp_path):
    for args in (["--help"], ["-h"], ["--version"]):
        done = subprocess.run([broker_bin] + args, cwd=tmp_path, capture_output=True, text=True, timeout=DEADLINE)
        assert done.returncode == 0 and done.stdout.startswith("floe-broker"), (args, done.stdout, done.stderr)
    assert os.listdir(tmp_path) == []


# Good configurations: they must still start.

class Running:
    def __init__(self, broker: str, args: list[str], cwd, env: dict[str, str] | None = None):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("FLOE_")}
        full_env.update(env or {})
        self.log = open(os.path.join(cwd, "broker.log"), "w+")
        self.process = subprocess.Popen([broker] + args, cwd=cwd, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_for_port(self, port: int) -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"floe-broker exited with {self.process.returncode} before listening:\n{self.text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)  # polling for the port, with a deadline
        pytest.fail(f"floe-broker did not listen on {port} within {DEADLINE:.0f} s:\n{self.text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"floe-broker did not stop within {DEADLINE:.0f} s of SIGTERM:\n{self.text()}")

    def text(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()


GOOD = [
    ("flags", lambda p, b, d: ["--listen", f"127.0.0.1:{p}", "--storage", f"file://{b}", "--set", "num.partitions=3",
                               "--log-level=debug", "--advertise", f"localhost:{p}", "--node-id", "0"], {}, None),
    ("equals-forms-and-dots", lambda p, b, d: [f"--listen=127.0.0.1:{p}", f"--storage=file://{b}", "--num.partitions=2",
                                               "--http=", "--set", "message.max.bytes=1"], {}, None),
    ("environment-and-file", lambda p, b, d: ["--config", f"{d}/broker.properties"],
     {"FLOE_AUTO_CREATE_TOPICS_ENABLE": "false", "FLOE_MAX_CONNECTIONS": "5"},
     "# Kafka users write these\nnum.partitions = 4\nlog.retention.hours=1\nlisten=127.0.0.1:{port}\nstorage=file://{bucket}\n"),
    ("relative-storage-and-http", lambda p, b, d: ["--listen", f"127.0.0.1:{p}", "--storage", "file://./data", "--http", "127.0.0.1:0",
                                                   "--external-listen", "127.0.0.1:0", "--external-advertise", "localhost:{31090+node}"],
     {}, None),
]


@pytest.mark.parametrize("name,make_args,env,config", GOOD, ids=[g[0] for g in GOOD])
def test_good_settings_still_start(broker_bin, tmp_path, name, make_args, env, config):
    port = free_port()
    bucket = str(tmp_path / "bucket")
    if config is not None:
        (tmp_path / "broker.properties").write_text(config.replace("{port}", str(port)).replace("{bucket}", bucket))
    broker = Running(broker_bin, make_args(port, bucket, str(tmp_path)), tmp_path, env)
    broker.wait_for_port(port)
    status = broker.stop()
    assert status == 0, f"{name}: exit status {status}:\n{broker.text()}"
    assert "unknown setting" not in broker.text()


# Messages that used to mislead.

class NotS3Handler(http.server.BaseHTTPRequestHandler):
    """A web server, not S3: HTML pages, 404 for GET, 200 without ETag for PUT."""

    def _answer(self, status: int) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = b"<!DOCTYPE html>\n<html><head><title>Not here</title></head>\n<body>nothing</body></html>\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        self._answer(self.server.get_status)

    def do_HEAD(self):
        self._answer(self.server.get_status)

    def do_PUT(self):
        self._answer(200)

    def do_POST(self):
        self._answer(200)

    def do_DELETE(self):
        self._answer(204)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("get_status", [404, 200])
def test_an_endpoint_that_is_not_s3_is_named_as_such(broker_bin, tmp_path, get_status):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotS3Handler)
    server.get_status = get_status
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        args = ["--listen", f"127.0.0.1:{free_port()}",
                "--storage", f"s3://bucket/prefix?endpoint={endpoint}&region=us-east-1&path_style=true&anonymous=true"]
        done = subprocess.run([broker_bin] + args, cwd=tmp_path, capture_output=True, text=True, timeout=DEADLINE)
    finally:
        server.shutdown()
        server.server_close()
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr
    assert lines and lines[-1].startswith("floe-broker: cannot start"), done.stderr
    assert f"{endpoint} did not answer like S3" in lines[-1], lines[-1]
    assert "bucket missing" not in done.stderr and "no ETag" not in done.stderr.replace("but no ETag header", "")
    assert os.listdir(tmp_path) == [], "nothing may be created in the working directory"


def test_a_second_broker_with_the_same_node_id_names_it(broker_bin, tmp_path):
    """Same bucket: the registration check names the live broker. Another bucket but the same
    --wal-dir: the file WAL's lock names the broker holding the directory (not "was fenced:
    another writer holds .../LOCK (errno 11)")."""
    bucket = str(tmp_path / "bucket")
    wal = str(tmp_path / "wal")
    first_port = free_port()
    first = Running(broker_bin, ["--listen", f"127.0.0.1:{first_port}", "--storage", f"file://{bucket}", "--node-id", "4",
                                 "--wal-dir", wal], tmp_path)
    try:
        first.wait_for_port(first_port)
        for other_bucket, expected in ((bucket, "node.id 4 is in use by a live broker"),
                                       (str(tmp_path / "other"), f"another floe-broker with node id 4 holds the WAL directory {wal}")):
            done = subprocess.run([broker_bin, "--listen", f"127.0.0.1:{free_port()}", "--storage", f"file://{other_bucket}",
                                   "--node-id", "4", "--wal-dir", wal],
                                  cwd=tmp_path, capture_output=True, text=True, timeout=DEADLINE)
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            assert done.returncode == 1, done.stderr
            assert lines and lines[-1].startswith("floe-broker: cannot start: "), done.stderr
            assert expected in lines[-1], lines[-1]
            assert "errno 11" not in done.stderr and "was fenced" not in done.stderr, done.stderr
    finally:
        status = first.stop()
    assert status == 0, first.text()
