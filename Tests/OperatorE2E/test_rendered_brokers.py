"""The configuration contract, end to end: every FloeCluster sample in deploy/ (and in charts/,
should a chart template one) is rendered by the real `floe-operator render`, and the real
release `floe-broker` is started with exactly the rendered container (args, env, properties
file). The broker must report no unknown setting, become ready, serve a produce and a fetch,
and stop on SIGTERM.

Only what cannot exist on this machine is mapped (the fake kubelet does the same, see
docs/fake-apiserver.md):
- the ConfigMap mount `/etc/floe/broker.properties` -> a temporary file with the rendered text;
- `--listen`/`--http`/`--advertise` -> free ports on 127.0.0.1 (pod networking);
- `$(POD_NAME)`, `$(NODE_ID)`, fieldRef and secretKeyRef env -> a pod name, 0, and the sample's
  Secret (or test credentials);
- `file:///...` bucket and `wal.dir` paths -> under a temporary directory (volumes);
- an S3 bucket's `endpoint` -> the moto server (FLOE_TEST_S3_ENDPOINT, or one started here), with
  path-style addressing, as a bare IP has no virtual-host names. Region, anonymous access and
  credentials are kept as rendered.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
IN_CI = os.environ.get("CI") == "true"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def swift_binary(product: str, env_name: str, configuration: str) -> str:
    """`env_name`, or the product built now (never a stale binary)."""
    path = os.environ.get(env_name)
    if path:
        return path
    subprocess.run(["swift", "build", "-c", configuration, "--product", product], cwd=ROOT, check=True)
    out = subprocess.run(["swift", "build", "-c", configuration, "--show-bin-path"], cwd=ROOT, check=True,
                         capture_output=True, text=True)
    return os.path.join(out.stdout.strip(), product)


def sample_files() -> list[str]:
    """Every YAML file under deploy/ and charts/ holding a FloeCluster (chart templates are
    rendered with `helm template` first when helm is installed)."""
    files = sorted(glob.glob(os.path.join(ROOT, "deploy", "**", "*.yaml"), recursive=True))
    found = []
    for path in files:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        if any(d.get("kind") == "FloeCluster" for d in docs):
            found.append(path)
    return found


def chart_documents() -> list[dict]:
    charts = sorted(glob.glob(os.path.join(ROOT, "charts", "*", "Chart.yaml")))
    if not charts or shutil.which("helm") is None:
        return []
    docs = []
    for chart in charts:
        out = subprocess.run(["helm", "template", "floe", os.path.dirname(chart)], capture_output=True, text=True, check=True)
        docs += [d for d in yaml.safe_load_all(out.stdout) if d and d.get("kind") == "FloeCluster"]
    return docs


SAMPLES = sample_files()


def test_samples_exist():
    assert len(SAMPLES) >= 4, SAMPLES
    # The chart installs the operator only; if it ever templates a FloeCluster, it must be
    # covered here too.
    assert chart_documents() == [], "charts/ now template a FloeCluster: add it to the rendered-broker cases"


@pytest.fixture(scope="session")
def broker_bin() -> str:
    return swift_binary("floe-broker", "FLOE_BROKER_BIN", "release")


@pytest.fixture(scope="session")
def operator_bin() -> str:
    return swift_binary("floe-operator", "FLOE_OPERATOR_BIN", "debug")


@pytest.fixture(scope="session")
def s3_endpoint():
    endpoint = os.environ.get("FLOE_TEST_S3_ENDPOINT")
    if endpoint:
        yield endpoint
        return
    if shutil.which("moto_server") is None:
        message = "moto_server is not installed (pip install 'moto[server]') and FLOE_TEST_S3_ENDPOINT is not set"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="floe-moto.", suffix=".log", delete=False)
    proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(endpoint + "/", timeout=1).read()
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(f"moto_server did not start; log {log.name}")
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def render(operator_bin: str, manifest_path: str) -> list[dict]:
    out = subprocess.run([operator_bin, "render", "--file", manifest_path, "--namespace", "floe-test"],
                         capture_output=True, text=True)
    assert out.returncode == 0, f"render {manifest_path} failed: {out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def cases() -> list[tuple[str, str, str | None]]:
    """(id, sample path, variant): every sample as written, plus an anonymous-S3 variant of the
    MinIO sample (no Secret; unsigned requests)."""
    out = [(os.path.relpath(p, ROOT), p, None) for p in SAMPLES]
    out += [(os.path.relpath(p, ROOT) + "+anonymous", p, "anonymous") for p in SAMPLES if "s3-minio" in p]
    return out


def apply_variant(path: str, variant: str | None, workdir: str) -> str:
    if variant is None:
        return path
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for d in docs:
        if d.get("kind") == "FloeCluster" and variant == "anonymous":
            d["spec"]["storage"].pop("credentials", None)
            d["spec"]["storage"]["anonymous"] = True
            # A bucket of its own that allows anonymous access (create_bucket makes it public).
            d["spec"]["storage"]["bucket"] = "s3://floe-public-" + uuid.uuid4().hex[:8] + "/cluster-a"
    out = os.path.join(workdir, "variant.yaml")
    with open(out, "w") as f:
        yaml.safe_dump_all(docs, f)
    return out


def create_bucket(endpoint: str, bucket: str):
    """Creates the bucket on moto (public read-write for the anonymous variant's buckets)."""
    headers = {"x-amz-acl": "public-read-write"} if bucket.startswith("floe-public-") else {}
    req = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT", headers=headers)
    try:
        urllib.request.urlopen(req, timeout=10).read()
    except urllib.error.HTTPError as e:  # already exists (another case, same bucket)
        if e.code != 409:
            raise


def map_storage(value: str, s3_endpoint: str, workdir: str) -> tuple[str, str | None]:
    """The rendered `storage` URL with the endpoint pointed at moto; returns (url, bucket)."""
    if value.startswith("file://"):
        return "file://" + os.path.join(workdir, "bucket") + value[len("file://"):], None
    assert value.startswith("s3://"), value
    body, _, query = value.partition("?")
    bucket = body[len("s3://"):].split("/", 1)[0]
    params = [p for p in query.split("&") if p and not p.startswith("endpoint=") and not p.startswith("path_style=")]
    params += [f"endpoint={s3_endpoint}", "path_style=true"]
    return body + "?" + "&".join(sorted(params)), bucket


def rewrite_properties(text: str, s3_endpoint: str, workdir: str) -> tuple[str, str | None]:
    """Maps `storage` and `wal.dir` lines; every other line is kept byte for byte."""
    bucket = None
    lines = []
    for line in text.splitlines():
        if line.startswith("storage="):
            url, bucket = map_storage(line[len("storage="):].replace("\\:", ":").replace("\\=", "="), s3_endpoint, workdir)
            line = "storage=" + url
        elif line.startswith("wal.dir="):
            line = "wal.dir=" + workdir + line[len("wal.dir="):]
        lines.append(line)
    return "\n".join(lines) + "\n", bucket


def container_env(container: dict, secrets: dict[str, dict], pod_name: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    fields = {"metadata.name": pod_name, "metadata.namespace": "floe-test",
              "metadata.labels['apps.kubernetes.io/pod-index']": "0", "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1"}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
            continue
        source = e["valueFrom"]
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            assert path in fields, f"unexpected fieldRef {path}"
            env[e["name"]] = fields[path]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            data = secrets.get(ref["name"], {})
            env[e["name"]] = data.get(ref["key"], "floe-test-" + ref["key"].lower())
        else:
            raise AssertionError(f"unsupported env source {source}")
    return env


def expand(arg: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.mark.parametrize("case_id,path,variant", cases(), ids=[c[0] for c in cases()])
def test_broker_starts_on_rendered_configuration(case_id, path, variant, broker_bin, operator_bin, s3_endpoint, tmp_path):
    workdir = str(tmp_path)
    manifest = apply_variant(path, variant, workdir)
    with open(manifest) as f:
        source_docs = [d for d in yaml.safe_load_all(f) if d]
    secrets = {d["metadata"]["name"]: {**d.get("stringData", {})} for d in source_docs if d.get("kind") == "Secret"}
    rendered = render(operator_bin, manifest)
    configmaps = [d for d in rendered if d["kind"] == "ConfigMap"]
    statefulsets = [d for d in rendered if d["kind"] == "StatefulSet"]
    assert len(configmaps) == len(statefulsets) >= 1, [d["kind"] for d in rendered]

    for cm, sts in zip(configmaps, statefulsets):
        pod = sts["spec"]["template"]["spec"]
        container = pod["containers"][0]
        mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
        config_dir = mounts["config"]
        properties, bucket = rewrite_properties(cm["data"]["broker.properties"], s3_endpoint, workdir)
        if bucket:
            create_bucket(s3_endpoint, bucket)
        props_path = os.path.join(workdir, "broker.properties")
        with open(props_path, "w") as f:
            f.write(properties)

        pod_name = sts["metadata"]["name"] + "-0"
        env = container_env(container, secrets, pod_name)
        kafka_port, http_port, external_port = free_port(), free_port(), free_port()
        args = []
        for arg in container.get("args", []):
            arg = expand(arg, env)
            name, _, value = arg.partition("=")
            if name == "--config":
                assert value.startswith(config_dir + "/"), arg
                arg = "--config=" + props_path
            elif name == "--listen":
                arg = f"--listen=127.0.0.1:{kafka_port}"
            elif name == "--advertise":
                arg = f"--advertise=127.0.0.1:{kafka_port}"
            elif name == "--http":
                arg = f"--http=127.0.0.1:{http_port}"
            elif name == "--external-listen":
                arg = f"--external-listen=127.0.0.1:{external_port}"
            args.append(arg)
        assert container["command"][-1].endswith("floe-broker"), container["command"]

        log_path = os.path.join(workdir, "broker.log")
        with open(log_path, "w") as log:
            proc = subprocess.Popen([broker_bin] + args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
        try:
            def log_text():
                with open(log_path) as f:
                    return f.read()

            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, f"{case_id}: broker exited with {proc.returncode}:\n{log_text()}"
                try:
                    if http_get(http_port, "/readyz")[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, f"{case_id}: broker not ready after 30 s:\n{log_text()}"
                time.sleep(0.1)
            assert "unknown setting" not in log_text(), f"{case_id}: the broker ignored rendered keys:\n{log_text()}"
            produce_and_consume(kafka_port, case_id)
        finally:
            code = proc.returncode
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    code = proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    raise AssertionError(f"{case_id}: the release broker ignored SIGTERM for 20 s")
        assert code == 0, f"{case_id}: broker exited with {code} after SIGTERM:\n{log_text()}"
        assert "unknown setting" not in log_text(), log_text()


def produce_and_consume(port: int, case_id: str):
    confluent_kafka = pytest.importorskip("confluent_kafka") if not IN_CI else __import__("confluent_kafka")
    bootstrap = f"127.0.0.1:{port}"
    topic = "contract-" + uuid.uuid4().hex[:8]
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    failures = []
    for i in range(10):
        producer.produce(topic, value=f"{case_id}-{i}".encode(),
                         on_delivery=lambda err, msg: failures.append(err) if err else None)
    assert producer.flush(30) == 0, f"{case_id}: produce did not complete"
    assert failures == [], failures
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 10 and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is None or m.error():
                continue
            got.append(m.value().decode())
        # Several partitions (num.partitions in spec.config): order holds per partition only.
        assert sorted(got) == sorted(f"{case_id}-{i}" for i in range(10)), got
    finally:
        consumer.close()
