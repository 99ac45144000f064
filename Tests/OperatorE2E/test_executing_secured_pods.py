"""End to end with real brokers and security (issue 14): a FloeCluster with a TLS + SCRAM-SHA-512
internal listener and a user from a Secret, run by the real `floe-operator` against the fake API
server whose kubelet runs the broker pod as a real `floe-broker`. A confluent-kafka client with the
user's credentials produces and consumes over SASL_SSL; a wrong password is refused; rotating the
certificate Secret is picked up by the running broker (new connections see the new certificate)
without restarting the pod.

The fake kubelet's `FLOE_TEST_PATH_MAP` maps the Secret mounts (certificate, key, CA, users file)
to its temporary directories. Certificates are made with `openssl` in a temporary directory.

Run: python3 -m pytest -q Tests/OperatorE2E/test_executing_secured_pods.py
"""
from __future__ import annotations

import base64
import os
import ssl
import subprocess
import time
import uuid

import pytest

from conftest import FC_API, wait_for
from test_executing_pods import NS, PODS, broker_bin, consume, kube, ready_pod  # noqa: F401  (fixtures)

FCS = f"{FC_API}/namespaces/{NS}/floeclusters"
SECRETS = f"/api/v1/namespaces/{NS}/secrets"



def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=floe-e2e-ca", cwd=d)


def make_server_cert(d, name, serial):
    """A server certificate for the pod addresses the kubelet hands out (127.0.0.2-.40) and the
    brokers' DNS names, signed by the CA in `d`."""
    sans = ",".join([f"IP:127.0.0.{i}" for i in range(2, 41)] + ["DNS:*.secure-brokers.apps.svc", "DNS:secure-bootstrap.apps.svc"])
    (d / f"{name}.ext").write_text(f"subjectAltName={sans}\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=broker-{serial}", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", str(serial), "-days", "2",
            "-out", f"{name}.crt", "-extfile", f"{name}.ext", cwd=d)
    return (d / f"{name}.crt").read_text(), (d / f"{name}.key").read_text()


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def served_serial(ip, port, ca_file):
    """The serial of the certificate a new TLS connection to ip:port is given (verified with the CA)."""
    ctx = ssl.create_default_context(cafile=ca_file)
    import socket
    with socket.create_connection((ip, port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=ip) as s:
        return int(s.getpeercert()["serialNumber"], 16)


def test_a_secured_floecluster_serves_an_authenticated_tls_client_and_reloads_its_certificate(kube, tmp_path):
    confluent_kafka = pytest.importorskip("confluent_kafka") if os.environ.get("CI") != "true" else __import__("confluent_kafka")
    api, server, op = kube
    kubelet = server.kubelet
    certs = tmp_path / "certs"
    certs.mkdir()
    make_ca(certs)
    crt, key = make_server_cert(certs, "server1", 1001)
    ca = (certs / "ca.crt").read_text()
    api.ok("POST", SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "secure-tls"}, "type": "kubernetes.io/tls",
                             "data": {"tls.crt": b64(crt), "tls.key": b64(key), "ca.crt": b64(ca)}})
    api.ok("POST", SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "alice-kafka"},
                             "stringData": {"password": "alice-pw-1"}})
    api.ok("POST", FCS, {"apiVersion": "floe.dev/v1alpha1", "kind": "FloeCluster", "metadata": {"name": "secure"},
                         "spec": {"replicas": 1, "storage": {"bucket": f"file://{tmp_path / 'bucket'}"},
                                  "listeners": {"tls": {"secretName": "secure-tls"}, "authentication": {"type": "scram-sha-512"}},
                                  "users": [{"name": "alice", "passwordSecret": {"name": "alice-kafka", "key": "password"}}],
                                  "config": {"group.initial.rebalance.delay.ms": "0"}}})
    try:
        pod = wait_for(lambda: ready_pod(api, "secure-broker-0"), timeout=90, what="secured broker pod Ready")
    except AssertionError:
        raise AssertionError("pod not ready; broker output:\n" + kubelet.log(NS, "secure-broker-0")[-4000:]
                             + "\noperator:\n" + op.output()[-3000:])
    ip = pod["status"]["podIP"]
    uid = pod["metadata"]["uid"]
    bootstrap = f"{ip}:9092"
    ca_file = str(certs / "ca.crt")
    auth = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "alice", "ssl.ca.location": ca_file}

    topic = "sec-" + uuid.uuid4().hex[:8]
    producer = confluent_kafka.Producer({**auth, "sasl.password": "alice-pw-1", "acks": "all"})
    errors = []
    for i in range(10):
        producer.produce(topic, value=f"s{i}".encode(), on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert producer.flush(30) == 0 and errors == [], errors
    got = consume(confluent_kafka, bootstrap, topic, 10, "g-" + topic, 45, "10 records over SASL_SSL",
                  **{k: v for k, v in auth.items() if k != "bootstrap.servers"}, **{"sasl.password": "alice-pw-1"})
    assert sorted(got) == sorted(f"s{i}" for i in range(10))

    # A wrong password is refused with an authentication error (librdkafka reports it through
    # error_cb, delivered while the client polls).
    reported = []
    bad = confluent_kafka.Producer({**auth, "sasl.password": "wrong", "error_cb": reported.append})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(e.code() == confluent_kafka.KafkaError._AUTHENTICATION for e in reported):
        bad.poll(0.2)
    assert any(e.code() == confluent_kafka.KafkaError._AUTHENTICATION for e in reported), reported

    # Rotate the certificate in place: the running broker serves the new one; the pod stays.
    assert served_serial(ip, 9092, ca_file) == 1001
    crt2, key2 = make_server_cert(certs, "server2", 1002)
    s = api.get(f"{SECRETS}/secure-tls")
    s["data"].update({"tls.crt": b64(crt2), "tls.key": b64(key2)})
    api.ok("PUT", f"{SECRETS}/secure-tls", s)
    wait_for(lambda: served_serial(ip, 9092, ca_file) == 1002, timeout=60, what="new certificate served")
    pod = api.get(f"{PODS}/secure-broker-0")
    assert pod["metadata"]["uid"] == uid
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    assert "alice-pw-1" not in kubelet.log(NS, "secure-broker-0") and "alice-pw-1" not in op.output()
