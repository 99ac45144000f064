"""Tests for the kubelet simulation (kubelet.py): pods run as real processes (a small Python
HTTP server stands in for the container), with env, volumes, pod IPs, readiness, restarts and
deletion. Waits poll a condition with a deadline.

Run: python3 -m pytest -q Tests/FakeKubeAPI/test_kubelet.py
"""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from fake_apiserver import FakeAPIServer  # noqa: E402

NS = "default"
STS = f"/apis/apps/v1/namespaces/{NS}/statefulsets"
PODS = f"/api/v1/namespaces/{NS}/pods"

# The "container": reads its config file through FLOE_TEST_PATH_MAP, serves /readyz on
# $LISTEN (after the kubelet mapped it to the pod IP), exits 3 when CRASH is set.
APP = r"""
import http.server, json, os, sys
if os.environ.get("CRASH"):
    sys.exit(3)
mapping = dict(i.split("=", 1) for i in os.environ["FLOE_TEST_PATH_MAP"].split(","))
config = open(os.path.join(mapping["/etc/app"], "app.conf")).read()
host, port = sys.argv[1].split("=", 1)[1].rsplit(":", 1)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"config": config, "env": {k: os.environ.get(k) for k in ("POD", "IDX", "SECRET", "IP")},
                           "args": sys.argv[1:]}).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer((host, int(port)), H).serve_forever()
"""


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture
def kube(tmp_path):
    s = FakeAPIServer(port=0, simulate_workloads=True, execute_pods={"/bin/app": sys.executable},
                      kubelet_dir=str(tmp_path)).start()
    yield s
    s.stop()


def call(server, method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def statefulset(name, crash=False):
    env = [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "IDX", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}},
           {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
           {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]
    if crash:
        env.append({"name": "CRASH", "value": "1"})
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"replicas": 2, "serviceName": name, "podManagementPolicy": "Parallel",
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "terminationGracePeriodSeconds": 5,
                         "containers": [{"name": "app", "command": ["/bin/app"],
                                         "args": ["-c", APP, "--listen=0.0.0.0:8080", f"--advertise=$(POD).{name}.{NS}.svc:8080"],
                                         "env": env, "ports": [{"name": "http", "containerPort": 8080}],
                                         "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
                                         "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}]}],
                         "volumes": [{"name": "config", "configMap": {"name": "app-config"}}]}}}}


def ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod or {}).get("status", {}).get("conditions", []))


def test_pods_run_as_processes_with_env_volumes_ips_and_readiness(kube):
    call(kube, "POST", f"/api/v1/namespaces/{NS}/configmaps",
         {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config"}, "data": {"app.conf": "x=1\n"}})
    call(kube, "POST", f"/api/v1/namespaces/{NS}/secrets",
         {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"token": "s3cr3t"}})
    call(kube, "POST", STS, statefulset("web"))
    pods = [wait_for(lambda i=i: (lambda p: p if ready(p) else None)(call(kube, "GET", f"{PODS}/web-{i}")),
                     what=f"web-{i} Ready") for i in range(2)]
    ips = [p["status"]["podIP"] for p in pods]
    assert len(set(ips)) == 2 and all(ip.startswith("127.") and ip != "127.0.0.1" for ip in ips), ips
    for i, ip in enumerate(ips):
        with urllib.request.urlopen(f"http://{ip}:8080/readyz", timeout=5) as r:
            seen = json.loads(r.read())
        assert seen["config"] == "x=1\n"
        assert seen["env"] == {"POD": f"web-{i}", "IDX": str(i), "SECRET": "s3cr3t", "IP": ip}
        # Listen address and the pod's own DNS name are mapped to the pod IP.
        assert seen["args"] == [f"--listen={ip}:8080", f"--advertise={ip}:8080"]
    sts = wait_for(lambda: (lambda s: s if s["status"].get("readyReplicas") == 2 else None)(call(kube, "GET", f"{STS}/web")),
                   what="StatefulSet readyReplicas 2")
    assert sts["status"]["replicas"] == 2
    assert len(kube.kubelet.running()) == 2

    # Deleting the StatefulSet deletes the pods; the kubelet stops their processes.
    call(kube, "DELETE", f"{STS}/web")
    wait_for(lambda: kube.kubelet.running() == [], what="processes stopped")


def test_crashing_containers_restart_with_backoff_and_report_it(kube):
    call(kube, "POST", f"/api/v1/namespaces/{NS}/configmaps",
         {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config"}, "data": {"app.conf": ""}})
    call(kube, "POST", f"/api/v1/namespaces/{NS}/secrets",
         {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"token": "t"}})
    call(kube, "POST", STS, statefulset("crash", crash=True))

    def crash_looping():
        p = call(kube, "GET", f"{PODS}/crash-0")
        cs = ((p or {}).get("status") or {}).get("containerStatuses") or [{}]
        waiting = cs[0].get("state", {}).get("waiting", {})
        return p if cs[0].get("restartCount", 0) >= 2 and waiting.get("reason") == "CrashLoopBackOff" else None

    pod = wait_for(crash_looping, timeout=30, what="CrashLoopBackOff with restarts")
    cs = pod["status"]["containerStatuses"][0]
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert not ready(pod)


def test_a_missing_secret_key_is_a_config_error_not_a_start(kube):
    call(kube, "POST", f"/api/v1/namespaces/{NS}/configmaps",
         {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config"}, "data": {"app.conf": ""}})
    call(kube, "POST", STS, statefulset("nosecret"))

    def config_error():
        p = call(kube, "GET", f"{PODS}/nosecret-0")
        cs = ((p or {}).get("status") or {}).get("containerStatuses") or [{}]
        w = cs[0].get("state", {}).get("waiting", {})
        return w if w.get("reason") == "CreateContainerConfigError" else None

    w = wait_for(config_error, what="CreateContainerConfigError")
    assert "creds" in w["message"] and "token" in w["message"], w
    assert kube.kubelet.running() == []


def test_configmap_and_secret_volumes_follow_their_objects_without_a_restart(kube, tmp_path):
    """As the kubelet does (and what lets a broker reload a rotated certificate): a running pod's
    ConfigMap and Secret volumes are rewritten when the objects change; the process stays."""
    call(kube, "POST", f"/api/v1/namespaces/{NS}/configmaps",
         {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config"}, "data": {"app.conf": "x=1\n", "old": "o"}})
    call(kube, "POST", f"/api/v1/namespaces/{NS}/secrets",
         {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"token": "t"}})
    call(kube, "POST", STS, statefulset("live"))
    wait_for(lambda: ready(call(kube, "GET", f"{PODS}/live-0")), what="live-0 Ready")
    pid = kube.kubelet.pods[(NS, "live-0")].proc.pid
    conf = tmp_path / "pods" / NS / "live-0" / "volumes" / "config"
    assert (conf / "app.conf").read_text() == "x=1\n"

    cm = call(kube, "GET", f"/api/v1/namespaces/{NS}/configmaps/app-config")
    cm["data"] = {"app.conf": "x=2\n"}
    call(kube, "PUT", f"/api/v1/namespaces/{NS}/configmaps/app-config", cm)
    wait_for(lambda: (conf / "app.conf").read_text() == "x=2\n", what="volume rewritten")
    assert not (conf / "old").exists()
    assert kube.kubelet.pods[(NS, "live-0")].proc.pid == pid
    pod = call(kube, "GET", f"{PODS}/live-0")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
