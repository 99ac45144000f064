"""End to end with real brokers: the real `floe-operator run` against the fake API server whose
kubelet simulation (Tests/FakeKubeAPI/kubelet.py) runs every broker pod as a real `floe-broker`
process (release build), with the rendered command, args, env and ConfigMap volume. A Kafka
client produces and consumes through the advertised address.

Run: python3 -m pytest -q Tests/OperatorE2E/test_executing_pods.py
(FLOE_OPERATOR_BIN / FLOE_BROKER_BIN override the binaries; otherwise they are built.)
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest
import yaml

from conftest import FC_API, Api, Operator, wait_for
from fake_apiserver import FakeAPIServer
from test_rendered_brokers import s3_endpoint, swift_binary  # noqa: F401  (fixture)

NS = "apps"
FCS = f"{FC_API}/namespaces/{NS}/floeclusters"
PODS = f"/api/v1/namespaces/{NS}/pods"
BROKER_COMMAND = "/usr/local/bin/floe-broker"


@pytest.fixture(scope="module")
def broker_bin() -> str:
    return swift_binary("floe-broker", "FLOE_BROKER_BIN", "release")


@pytest.fixture
def kube(binary, broker_bin, tmp_path):
    token = "e2e-token"
    server = FakeAPIServer(port=0, tls_dir=str(tmp_path / "tls"), token=token, simulate_workloads=True,
                           bookmark_interval=1.0, execute_pods={BROKER_COMMAND: broker_bin},
                           kubelet_dir=str(tmp_path / "kubelet")).start()
    api = Api(server, token)
    crd = yaml.safe_load(subprocess.run([binary, "crd"], check=True, capture_output=True, text=True).stdout)
    api.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    api.ok("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server.url, "certificate-authority": server.ca_file}}],
        "users": [{"name": "op", "user": {"token": token}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "op", "namespace": NS}}],
    }))
    op = Operator(binary, str(kubeconfig), "op-exec", log_dir=str(tmp_path))
    yield api, server, op
    op.stop(signal.SIGTERM)
    server.stop()


def condition(obj, type_):
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c
    return None


def is_ready(pod) -> bool:
    return (condition(pod, "Ready") or {}).get("status") == "True"


def ready_pod(api, name, uid_not=None):
    """The pod if it is Ready (and not the one with uid `uid_not`), else None."""
    pod = api.get(f"{PODS}/{name}")
    return pod if is_ready(pod) and pod["metadata"]["uid"] != uid_not else None


def consume(confluent_kafka, bootstrap, topic, count, group, timeout, what, extra_polls=0, **config):
    """The values of `topic` read from the beginning by consumer group `group` once `count` have
    arrived; `extra_polls` more polls of 0.5 s catch records beyond them (duplicates)."""
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest", **config})
    got = []

    def poll_once():
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value().decode())
    try:
        consumer.subscribe([topic])

        def drained():
            poll_once()
            return len(got) >= count
        wait_for(drained, timeout=timeout, what=what, interval=0)
        for _ in range(extra_polls):
            poll_once()
    finally:
        consumer.close()
    return got


def s3_floecluster(api, endpoint, name, replicas, bucket_prefix, path="/cluster", config=None, extra=None):
    """A new bucket on moto, the credentials Secret `s3`, and a FloeCluster `name` on the bucket
    (object WAL) reading its credentials from that Secret; returns the bucket name."""
    from test_rendered_brokers import create_bucket
    bucket = bucket_prefix + uuid.uuid4().hex[:8]
    create_bucket(endpoint, bucket)
    api.ok("POST", f"/api/v1/namespaces/{NS}/secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3"},
                                                        "stringData": {"AWS_ACCESS_KEY_ID": "floe", "AWS_SECRET_ACCESS_KEY": "moto"}})
    spec = {"replicas": replicas, "storage": {"bucket": f"s3://{bucket}{path}", "endpoint": endpoint, "pathStyle": True,
                                              "credentials": {"secretName": "s3"}}}
    if config:
        spec["config"] = config
    spec.update(extra or {})
    api.ok("POST", FCS, {"apiVersion": "floe.dev/v1alpha1", "kind": "FloeCluster", "metadata": {"name": name}, "spec": spec})
    return bucket


def broker_addresses(bootstrap) -> dict[int, str]:
    """Metadata as a client connected to `bootstrap` sees it: broker id -> host:port."""
    from confluent_kafka.admin import AdminClient
    brokers = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).brokers
    return {i: f"{b.host}:{b.port}" for i, b in brokers.items()}


def test_a_floecluster_on_a_local_directory_serves_kafka_clients(kube, tmp_path):
    confluent_kafka = pytest.importorskip("confluent_kafka") if os.environ.get("CI") != "true" else __import__("confluent_kafka")
    api, server, op = kube
    kubelet = server.kubelet
    bucket = tmp_path / "bucket"
    api.ok("POST", FCS, {"apiVersion": "floe.dev/v1alpha1", "kind": "FloeCluster", "metadata": {"name": "local"},
                         "spec": {"replicas": 1, "storage": {"bucket": f"file://{bucket}"},
                                  "config": {"num.partitions": "2", "group.initial.rebalance.delay.ms": "0"}}})

    try:
        pod = wait_for(lambda: ready_pod(api, "local-broker-0"), timeout=60, what="broker pod Ready (real /readyz)")
    except AssertionError:
        raise AssertionError("pod not ready; broker output:\n" + kubelet.log(NS, "local-broker-0") + "\noperator:\n" + op.output()[-3000:])
    ip = pod["status"]["podIP"]
    assert ip.startswith("127.") and ip != "127.0.0.1", ip
    assert kubelet.running() == [(NS, "local-broker-0")]

    fc = wait_for(lambda: (lambda f: f if (condition(f, "Ready") or {}).get("status") == "True" else None)(api.get(f"{FCS}/local")),
                  timeout=30, what="FloeCluster Ready")
    assert fc["status"]["readyReplicas"] == 1, fc["status"]
    fc = wait_for(lambda: (lambda f: f if (f["status"].get("brokers") or [{}])[0].get("ready") else None)(api.get(f"{FCS}/local")),
                  timeout=10, what="status.brokers")
    assert fc["status"]["brokers"] == [{"name": "local-broker-0", "ready": True, "state": "Running", "restarts": 0}], fc["status"]
    assert "unknown setting" not in kubelet.log(NS, "local-broker-0")

    # The advertised address is the pod's DNS name, which the kubelet simulation maps to the pod IP.
    bootstrap = f"{ip}:9092"
    topic = "e2e-" + uuid.uuid4().hex[:8]
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    errors = []
    for i in range(20):
        producer.produce(topic, value=f"m{i}".encode(), on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert producer.flush(30) == 0 and errors == [], errors
    got = consume(confluent_kafka, bootstrap, topic, 20, "g-" + topic, 45, "all 20 records consumed")
    assert sorted(got) == sorted(f"m{i}" for i in range(20))
    # kcat (librdkafka's CLI) through the same advertised address.
    kcat = shutil.which("kcat")
    if kcat is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kcat is not installed")
    else:
        subprocess.run([kcat, "-b", bootstrap, "-P", "-t", topic + "-kcat"], input=b"k1\nk2\nk3\n", check=True, timeout=30)
        out = subprocess.run([kcat, "-b", bootstrap, "-C", "-t", topic + "-kcat", "-o", "beginning", "-e", "-q", "-c", "3"],
                             capture_output=True, check=True, timeout=30)
        assert sorted(out.stdout.decode().split()) == ["k1", "k2", "k3"], out

    # The pod mounts an emptyDir at /tmp, so a file:///tmp/... bucket lands in that volume (as it
    # would in Kubernetes: ephemeral).
    in_pod = os.path.join(kubelet.workdir, "pods", NS, "local-broker-0", "volumes", "tmp", os.path.relpath(bucket, "/tmp"))
    assert os.path.isdir(in_pod), f"bucket not at {in_pod}"

    # Deleting the FloeCluster stops the broker process (preStop /drain, then SIGTERM).
    api.ok("DELETE", f"{FCS}/local")
    wait_for(lambda: kubelet.running() == [], timeout=60, what="broker process stopped")
    assert "broker stopped" in kubelet.log(NS, "local-broker-0"), kubelet.log(NS, "local-broker-0")[-2000:]
    assert op.proc.poll() is None, op.output()


def test_a_floecluster_on_s3_with_credentials_from_a_secret(kube, request):
    """Object WAL on moto S3; the credentials reach the broker only through the Secret."""
    confluent_kafka = pytest.importorskip("confluent_kafka") if os.environ.get("CI") != "true" else __import__("confluent_kafka")
    endpoint = request.getfixturevalue("s3_endpoint")
    api, server, op = kube
    kubelet = server.kubelet
    bucket = s3_floecluster(api, endpoint, "s3", 1, "floe-e2e-")

    try:
        pod = wait_for(lambda: ready_pod(api, "s3-broker-0"), timeout=60, what="S3 broker pod Ready")
    except AssertionError:
        raise AssertionError("pod not ready; broker output:\n" + kubelet.log(NS, "s3-broker-0"))
    log = kubelet.log(NS, "s3-broker-0")
    assert "wal=object" in log and bucket in log, log
    bootstrap = f"{pod['status']['podIP']}:9092"
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    errors = []
    for i in range(5):
        producer.produce("s3-topic", value=f"s{i}".encode(), on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert producer.flush(30) == 0 and errors == [], errors
    # The object WAL wrote to the bucket on moto.
    with urllib.request.urlopen(f"{endpoint}/{bucket}?list-type=2&prefix=cluster/wal/", timeout=10) as r:
        assert b"<Key>cluster/wal/" in r.read()
    api.ok("DELETE", f"{FCS}/s3")
    wait_for(lambda: kubelet.running() == [], timeout=60, what="broker process stopped")


def test_a_crash_looping_broker_is_a_degraded_condition_naming_the_pod(kube):
    """A bucket the broker cannot create (under /proc) makes every start fail: the pod crash
    loops, and the FloeCluster says so instead of 'RollingUpdate'."""
    api, server, op = kube
    api.ok("POST", FCS, {"apiVersion": "floe.dev/v1alpha1", "kind": "FloeCluster", "metadata": {"name": "broken"},
                         "spec": {"replicas": 1, "storage": {"bucket": "file:///proc/floe-cannot-be-here"}}})

    def degraded():
        fc = api.get(f"{FCS}/broken")
        c = condition(fc, "Degraded")
        return fc if c and c["status"] == "True" and c["reason"] == "CrashLoopBackOff" else None

    try:
        fc = wait_for(degraded, timeout=60, what="Degraded/CrashLoopBackOff")
    except AssertionError:
        raise AssertionError("broker output:\n" + server.kubelet.log(NS, "broken-broker-0") + "\noperator:\n" + op.output()[-3000:])
    message = condition(fc, "Degraded")["message"]
    assert "broken-broker-0: CrashLoopBackOff" in message and "exit code 1" in message, message
    assert condition(fc, "Ready")["status"] == "False"
    broker = fc["status"]["brokers"][0]
    assert broker["name"] == "broken-broker-0" and not broker["ready"] and broker["state"] == "CrashLoopBackOff", broker
    assert broker["restarts"] >= 1 and "exit code 1" in broker["message"], broker
    assert "cannot start" in server.kubelet.log(NS, "broken-broker-0")
    warnings = [e for e in api.ok("GET", f"/api/v1/namespaces/{NS}/events")["items"]
                if e["involvedObject"]["name"] == "broken" and e["type"] == "Warning" and e["reason"] == "CrashLoopBackOff"]
    assert warnings and "broken-broker-0" in warnings[0]["message"], warnings


def test_a_rolling_restart_after_a_config_change_keeps_every_acknowledged_record(kube, request):
    """S3 (moto) with the object WAL: change spec.config, the pod is replaced (drain, SIGTERM,
    new process with the new properties), and every acknowledged record is still there."""
    confluent_kafka = pytest.importorskip("confluent_kafka") if os.environ.get("CI") != "true" else __import__("confluent_kafka")
    endpoint = request.getfixturevalue("s3_endpoint")
    api, server, op = kube
    kubelet = server.kubelet
    s3_floecluster(api, endpoint, "roll", 1, "floe-roll-", path="", config={"group.initial.rebalance.delay.ms": "0"})

    first = wait_for(lambda: ready_pod(api, "roll-broker-0"), timeout=60, what="roll-broker-0 Ready")
    bootstrap = f"{first['status']['podIP']}:9092"
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    acked = []
    for i in range(30):
        producer.produce("roll", value=f"r{i}".encode(),
                         on_delivery=lambda err, msg: acked.append(msg.value().decode()) if err is None else None)
    assert producer.flush(30) == 0
    assert len(acked) == 30

    api.ok("PATCH", f"{FCS}/roll", {"spec": {"config": {"group.initial.rebalance.delay.ms": "0", "num.partitions": "4"}}},
           "application/merge-patch+json")
    second = wait_for(lambda: ready_pod(api, "roll-broker-0", uid_not=first["metadata"]["uid"]), timeout=90, what="the replaced pod Ready")
    assert second["status"]["podIP"] == first["status"]["podIP"]
    log = kubelet.log(NS, "roll-broker-0")
    assert log.count("--- start") >= 2 and "broker stopped" in log, log[-3000:]

    got = consume(confluent_kafka, bootstrap, "roll", 30, "roll-check", 60, "every acknowledged record after the restart")
    assert sorted(got) == sorted(acked)


def test_three_brokers_on_s3_scale_to_one_and_back_keeping_every_acknowledged_record(kube, request):
    """replicas: 3 on moto S3 (object WAL) forms one cluster of three real brokers; `kubectl scale`
    to 1 stops two of them (preStop /drain, SIGTERM: each uploads its WAL and hands its
    partitions to the survivor) and back to 3 starts them again; an idempotent producer writes
    before, between and after, and every acknowledged record is read back exactly once."""
    confluent_kafka = pytest.importorskip("confluent_kafka") if os.environ.get("CI") != "true" else __import__("confluent_kafka")
    endpoint = request.getfixturevalue("s3_endpoint")
    api, server, op = kube
    kubelet = server.kubelet
    s3_floecluster(api, endpoint, "trio", 3, "floe-scale-", config={"num.partitions": "6"})

    def ready_pods():
        pods = (api.get(PODS) or {}).get("items") or []
        return sorted(p["metadata"]["name"] for p in pods if p["metadata"]["name"].startswith("trio-broker-") and is_ready(p))

    def logs():
        return "\n".join(f"--- {n}\n" + kubelet.log(NS, n)[-3000:] for n in ("trio-broker-0", "trio-broker-1", "trio-broker-2"))

    def brokers_in_metadata(bootstrap):
        return sorted(broker_addresses(bootstrap))

    try:
        wait_for(lambda: ready_pods() == ["trio-broker-0", "trio-broker-1", "trio-broker-2"], timeout=90, what="three broker pods Ready")
    except AssertionError:
        raise AssertionError("pods not ready; brokers:\n" + logs() + "\noperator:\n" + op.output()[-3000:])
    ip0 = api.get(f"{PODS}/trio-broker-0")["status"]["podIP"]
    bootstrap = f"{ip0}:9092"
    wait_for(lambda: brokers_in_metadata(bootstrap) == [0, 1, 2], timeout=30, what="one cluster of brokers 0, 1, 2")
    fc = wait_for(lambda: (lambda f: f if f["status"].get("readyReplicas") == 3 else None)(api.get(f"{FCS}/trio")),
                  timeout=30, what="status.readyReplicas 3")
    assert (condition(fc, "Ready") or {}).get("status") == "True", fc["status"]

    topic = "scale-" + uuid.uuid4().hex[:8]
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                         "message.timeout.ms": 120000})
    acked, errors = [], []

    def produce(tag, n):
        for i in range(n):
            producer.produce(topic, value=f"{tag}-{i}".encode(),
                             on_delivery=lambda err, msg: errors.append(str(err)) if err else acked.append(msg.value().decode()))
        assert producer.flush(120) == 0, f"{tag}: records left unsent"

    def scale(n):
        s = api.ok("GET", f"{FCS}/trio/scale")
        s["spec"]["replicas"] = n
        api.ok("PUT", f"{FCS}/trio/scale", s)

    produce("three", 300)
    # Sample (StatefulSet replicas, partition owners) while the scale subresource is lowered, as an
    # HPA would: the operator must move every partition off brokers 1 and 2 while the StatefulSet
    # still has them, and only then shrink it.
    samples, sampling = [], threading.Event()
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def sample():
        while not sampling.is_set():
            sts = api.get(f"/apis/apps/v1/namespaces/{NS}/statefulsets/trio-broker")
            try:
                parts = admin.list_topics(topic, timeout=2).topics[topic].partitions
                owners = sorted({p.leader for p in parts.values()})
            except Exception:
                owners = None
            samples.append(((sts or {}).get("spec", {}).get("replicas"), owners))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    scale(1)
    try:
        wait_for(lambda: kubelet.running() == [(NS, "trio-broker-0")], timeout=90, what="brokers 1 and 2 stopped")
        wait_for(lambda: brokers_in_metadata(bootstrap) == [0], timeout=30, what="metadata with broker 0 alone")
    except AssertionError:
        raise AssertionError("scale-down did not settle:\n" + logs())
    sampling.set()
    sampler.join()
    first_shrunk = next((i for i, (r, _) in enumerate(samples) if r == 1), None)
    assert first_shrunk is not None, samples[-5:]
    assert any(r == 3 and owners == [0] for r, owners in samples[:first_shrunk]), \
        f"the StatefulSet shrank before brokers 1 and 2 were drained: {samples[:first_shrunk][-10:]} then {samples[first_shrunk]}"
    events = api.ok("GET", f"/api/v1/namespaces/{NS}/events")["items"]
    assert any(e.get("reason") == "Drained" and e["involvedObject"].get("name") == "trio" for e in events), \
        [e.get("reason") for e in events]
    for n in ("trio-broker-1", "trio-broker-2"):
        assert "broker stopped" in kubelet.log(NS, n), kubelet.log(NS, n)[-2000:]
    produce("one", 300)
    scale(3)
    try:
        wait_for(lambda: ready_pods() == ["trio-broker-0", "trio-broker-1", "trio-broker-2"], timeout=90, what="three pods Ready again")
        wait_for(lambda: brokers_in_metadata(bootstrap) == [0, 1, 2], timeout=30, what="brokers 1 and 2 back in the cluster")
    except AssertionError:
        raise AssertionError("scale-up did not settle:\n" + logs())
    produce("three-again", 300)
    assert errors == [], errors[:5]
    assert len(acked) == 900

    # Anything beyond the acknowledged records would be a duplicate: poll a little longer.
    got = consume(confluent_kafka, bootstrap, topic, len(acked), "g-" + topic, 90, "every acknowledged record consumed",
                  extra_polls=4, **{"enable.auto.commit": False})
    assert sorted(got) == sorted(acked), (len(got), len(acked), sorted(set(acked) - set(got))[:10])
    api.ok("DELETE", f"{FCS}/trio")
    wait_for(lambda: kubelet.running() == [], timeout=90, what="broker processes stopped")


def test_an_external_listener_gives_external_clients_the_external_addresses(kube, tmp_path):
    """spec.listeners.external (LoadBalancer, advertisedHost $(POD_IP)): each broker also listens
    on 9094 and tells clients connected there the external address; a client that only knows the
    external address produces and consumes; the per-broker Service exists and is removed with the
    cluster."""
    confluent_kafka = pytest.importorskip("confluent_kafka") if os.environ.get("CI") != "true" else __import__("confluent_kafka")
    api, server, op = kube
    kubelet = server.kubelet
    api.ok("POST", FCS, {"apiVersion": "floe.dev/v1alpha1", "kind": "FloeCluster", "metadata": {"name": "edge"},
                         "spec": {"replicas": 1, "storage": {"bucket": f"file://{tmp_path / 'bucket'}"},
                                  "listeners": {"external": {"type": "LoadBalancer", "port": 9094, "advertisedHost": "$(POD_IP)"}}}})

    try:
        pod = wait_for(lambda: ready_pod(api, "edge-broker-0"), timeout=60, what="broker pod Ready")
    except AssertionError:
        raise AssertionError("pod not ready; broker output:\n" + kubelet.log(NS, "edge-broker-0") + "\noperator:\n" + op.output()[-3000:])
    ip = pod["status"]["podIP"]
    svc = wait_for(lambda: api.get(f"/api/v1/namespaces/{NS}/services/edge-broker-0-external"), timeout=30, what="external Service")
    assert svc["spec"]["type"] == "LoadBalancer", svc["spec"]
    assert svc["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == "edge-broker-0", svc["spec"]

    assert sorted(broker_addresses(f"{ip}:9094").values()) == [f"{ip}:9094"], "external clients get the external address"
    assert sorted(broker_addresses(f"{ip}:9092").values()) == [f"{ip}:9092"], "internal clients get the internal address"

    external = f"{ip}:9094"
    topic = "ext-" + uuid.uuid4().hex[:8]
    producer = confluent_kafka.Producer({"bootstrap.servers": external, "enable.idempotence": True, "acks": "all"})
    errors = []
    for i in range(10):
        producer.produce(topic, value=f"x{i}".encode(), on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert producer.flush(30) == 0 and errors == [], errors
    got = consume(confluent_kafka, external, topic, 10, "g-" + topic, 45, "all 10 records consumed through the external listener")
    assert sorted(got) == sorted(f"x{i}" for i in range(10))
    api.ok("DELETE", f"{FCS}/edge")
    wait_for(lambda: kubelet.running() == [], timeout=60, what="broker process stopped")


def test_autoscaling_grows_the_statefulset_under_load_and_drains_it_afterwards(kube, request):
    """spec.autoscaling on: one broker on moto S3 under ~4x its bytes-in target. The operator
    (scraping the pods' /metrics) raises spec.replicas through the scale subresource, waits for
    the new brokers, moves partitions onto them; when the load stops it drains and removes them
    one at a time. Status and Events tell the story; every acknowledged record is read once."""
    confluent_kafka = pytest.importorskip("confluent_kafka") if os.environ.get("CI") != "true" else __import__("confluent_kafka")
    endpoint = request.getfixturevalue("s3_endpoint")
    api, server, op = kube
    kubelet = server.kubelet
    target = 128 * 1024
    s3_floecluster(api, endpoint, "elastic", 1, "floe-auto-", config={"num.partitions": "6"}, extra={
        "autoscaling": {"enabled": True, "minBrokers": 1, "maxBrokers": 3, "targets": {"bytesInPerSecond": target},
                        "scaleUp": {"stabilizationWindowSeconds": 4}, "scaleDown": {"stabilizationWindowSeconds": 20}},
        "balancing": {"intervalSeconds": 10, "moveCooldownSeconds": 10}})

    def logs():
        names = [p["metadata"]["name"] for p in (api.get(PODS) or {}).get("items") or [] if p["metadata"]["name"].startswith("elastic-")]
        return "\n".join(f"--- {n}\n" + kubelet.log(NS, n)[-2000:] for n in names) + "\n--- operator\n" + op.output()[-5000:]

    try:
        pod = wait_for(lambda: ready_pod(api, "elastic-broker-0"), timeout=90, what="broker 0 Ready")
    except AssertionError:
        raise AssertionError("broker 0 not ready:\n" + logs())
    bootstrap = f"{pod['status']['podIP']}:9092"
    topic = "auto-" + uuid.uuid4().hex[:8]
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 6, 1)])[topic].result(timeout=30)
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                         "linger.ms": 5, "message.timeout.ms": 120000})
    acked, errors = [], []
    padding = b"x" * 1000

    def on_delivery(err, msg):
        (errors.append(str(err)) if err else acked.append(msg.value()[:32].decode()))

    def owners():
        return sorted({p.leader for p in admin.list_topics(topic, timeout=10).topics[topic].partitions.values()})

    # ~4x the target (512 KiB/s) until the cluster has 3 brokers owning partitions, at most 150 s.
    start, sent = time.time(), 0
    while time.time() - start < 150:
        for _ in range(25):
            producer.produce(topic, key=str(sent).encode(), value=f"{sent:032d}".encode() + padding, on_delivery=on_delivery)
            sent += 1
        producer.poll(0)
        time.sleep(0.05)
        if sent % 1000 == 0 and owners() == [0, 1, 2]:
            break
    assert producer.flush(120) == 0
    fc = api.get(f"{FCS}/elastic")
    assert fc["spec"]["replicas"] == 3, "did not scale out to 3:\n" + logs()
    assert owners() == [0, 1, 2], f"partitions not spread over the new brokers: {owners()}\n" + logs()
    status = wait_for(lambda: (lambda f: f["status"] if (f["status"].get("autoscaling") or {}).get("lastDecision") else None)(api.get(f"{FCS}/elastic")),
                      timeout=40, what="status.autoscaling.lastDecision")
    assert "bytesIn" in status["autoscaling"]["lastDecision"]["reason"], status["autoscaling"]
    # The web console (docs/console.md) on the operator's HTTP port shows the same cluster.
    page = urllib.request.urlopen(f"http://127.0.0.1:{op.http_port}/clusters/{NS}/elastic", timeout=5)
    assert page.status == 200 and b"<title>Floe console</title>" in page.read()

    def console_api():
        return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{op.http_port}/api/clusters/{NS}/elastic", timeout=5).read())
    # A later round may still be moving: wait for one that finished.
    console = wait_for(lambda: (lambda c: c if any(m["why"] == "scale-out" and m["outcome"] == "done" for m in c["moves"]) else None)(console_api()),
                       timeout=60, what="a completed scale-out move in the console's /api")
    assert any(d["to"] > d["from"] and "bytesIn" in d["reason"] for d in console["decisions"]), console["decisions"]
    assert console["autoscaler"]["targetBytesInPerSecond"] == target, console["autoscaler"]

    # Load stops: back to one broker, draining first (ScaleInGuard), one step per window.
    try:
        wait_for(lambda: api.get(f"{FCS}/elastic")["spec"]["replicas"] == 1 and kubelet.running() == [(NS, "elastic-broker-0")],
                 timeout=180, what="scaled in to one broker")
    except AssertionError:
        raise AssertionError("scale-in did not finish:\n" + logs())
    assert owners() == [0]
    reasons = {e.get("reason") for e in api.ok("GET", f"/api/v1/namespaces/{NS}/events")["items"]
               if e["involvedObject"].get("name") == "elastic"}
    for r in ("ScalingOut", "ScaledOut", "PartitionsMoved", "ScalingIn", "ScaledIn", "Drained"):
        assert r in reasons, (r, sorted(reasons))
    assert errors == [], errors[:5]
    got = consume(confluent_kafka, bootstrap, topic, len(acked), "g-" + topic, 90, "every acknowledged record consumed",
                  extra_polls=4, **{"enable.auto.commit": False})
    got = [g[:32] for g in got]
    assert sorted(got) == sorted(acked), (len(got), len(acked))
    api.ok("DELETE", f"{FCS}/elastic")
    wait_for(lambda: kubelet.running() == [], timeout=90, what="broker processes stopped")
