"""Tests for the fake Kubernetes API server, through HTTP only (http.client / urllib).

Run: python3 -m pytest -q Tests/FakeKubeAPI
No sleeps are used for synchronisation: controllers are awaited with the `settle` control
action, watches by reading the stream (with a socket timeout as a safety net only).
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from urllib.parse import quote

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from fake_apiserver import FakeAPIServer  # noqa: E402

NS = "default"
CM = f"/api/v1/namespaces/{NS}/configmaps"
STS = f"/apis/apps/v1/namespaces/{NS}/statefulsets"
DEP = f"/apis/apps/v1/namespaces/{NS}/deployments"
PODS = f"/api/v1/namespaces/{NS}/pods"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
FC = f"/apis/floe.dev/v1alpha1/namespaces/{NS}/floeclusters"
MERGE = "application/merge-patch+json"
APPLY = "application/apply-patch+yaml"
SAFETY_TIMEOUT = 10  # seconds a blocking read may take before the test fails


class Client:
    def __init__(self, server, token=None, context=None):
        self.port = server.port
        self.token = token
        self.context = context
        self.tls = context is not None

    def conn(self, timeout=SAFETY_TIMEOUT):
        if self.tls:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                               context=self.context)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def req(self, method, path, body=None, ctype="application/json", headers=None):
        c = self.conn()
        h = dict(headers or {})
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h["Content-Type"] = ctype
        h.setdefault("User-Agent", "floe-test/1.0")
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        raw = r.read()
        c.close()
        ct = r.getheader("Content-Type") or ""
        return r.status, (json.loads(raw) if raw and "json" in ct else raw.decode())

    def ok(self, method, path, body=None, ctype="application/json", expect=(200, 201)):
        code, obj = self.req(method, path, body, ctype)
        assert code in (expect if isinstance(expect, tuple) else (expect,)), (code, obj)
        return obj

    def control(self, **cmd):
        return self.ok("POST", "/fake/control", cmd)

    def settle(self):
        return self.control(action="settle")

    def watch(self, path):
        """Opens a watch; returns (response, connection)."""
        c = self.conn()
        h = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        c.request("GET", path, headers=h)
        r = c.getresponse()
        assert r.status == 200, r.read()
        return r, c


def read_events(resp, n=None, until=None):
    """Reads watch events (one JSON per line) until n events, `until(ev)` is true, or the stream
    ends. Returns the list."""
    out = []
    while n is None or len(out) < n:
        line = resp.readline()
        if not line:
            break
        assert line.endswith(b"\n")
        ev = json.loads(line)
        out.append(ev)
        if until and until(ev):
            break
    return out


def cm(name, labels=None, data=None):
    md = {"name": name}
    if labels:
        md["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": data or {"k": "v"}}


def sts(name, replicas=1, labels=None):
    labels = labels or {"app": name}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "serviceName": name,
                     "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "img:1"}]}}}}


FLOE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "floeclusters.floe.dev"},
    "spec": {"group": "floe.dev", "scope": "Namespaced",
             "names": {"plural": "floeclusters", "singular": "floecluster", "kind": "FloeCluster",
                       "shortNames": ["floe"]},
             "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}},
                           "subresources": {"status": {}, "scale": {
                               "specReplicasPath": ".spec.brokers.replicas",
                               "statusReplicasPath": ".status.replicas",
                               "labelSelectorPath": ".status.selector"}}}]}}


def floe(name, replicas=3):
    return {"apiVersion": "floe.dev/v1alpha1", "kind": "FloeCluster", "metadata": {"name": name},
            "spec": {"brokers": {"replicas": replicas, "image": "floe:1"},
                     "storage": {"bucket": "b"}}}


@pytest.fixture
def server():
    s = FakeAPIServer(port=0, bookmark_interval=0.2).start()
    yield s
    s.stop()


@pytest.fixture
def client(server):
    return Client(server)


def assert_status(obj, code, reason):
    assert obj["kind"] == "Status" and obj["apiVersion"] == "v1"
    assert obj["status"] == "Failure"
    assert obj["code"] == code and obj["reason"] == reason, obj
    assert obj["message"]


# ------------------------------------------------------------------------------------------
# Discovery
# ------------------------------------------------------------------------------------------


def test_discovery(client):
    api = client.ok("GET", "/api")
    assert api["kind"] == "APIVersions" and api["versions"] == ["v1"]
    core = client.ok("GET", "/api/v1")
    byname = {r["name"]: r for r in core["resources"]}
    assert byname["configmaps"]["namespaced"] is True and byname["configmaps"]["kind"] == "ConfigMap"
    assert byname["namespaces"]["namespaced"] is False
    assert "watch" in byname["pods"]["verbs"] and "pods/status" in byname
    groups = {g["name"]: g for g in client.ok("GET", "/apis")["groups"]}
    for g in ("apps", "policy", "coordination.k8s.io", "apiextensions.k8s.io"):
        assert g in groups
    assert groups["apps"]["preferredVersion"]["groupVersion"] == "apps/v1"
    apps = {r["name"]: r for r in client.ok("GET", "/apis/apps/v1")["resources"]}
    assert apps["statefulsets/scale"]["kind"] == "Scale"
    assert apps["statefulsets/scale"]["group"] == "autoscaling"
    assert "deployments/status" in apps
    code, body = client.req("GET", "/apis/floe.dev/v1alpha1")
    assert code == 404 and body["reason"] == "NotFound"
    assert client.ok("GET", "/version")["major"] == "1"


# ------------------------------------------------------------------------------------------
# CRUD, resourceVersion, errors
# ------------------------------------------------------------------------------------------


def test_create_get_and_metadata(client):
    created = client.ok("POST", CM, cm("a"), expect=201)
    md = created["metadata"]
    assert md["namespace"] == NS and md["uid"] and md["creationTimestamp"].endswith("Z")
    assert isinstance(md["resourceVersion"], str) and int(md["resourceVersion"]) > 0
    assert created["kind"] == "ConfigMap" and created["apiVersion"] == "v1"
    got = client.ok("GET", f"{CM}/a")
    assert got["metadata"]["uid"] == md["uid"] and got["data"] == {"k": "v"}
    gen = client.ok("POST", CM, {"metadata": {"generateName": "gen-"}, "data": {}}, expect=201)
    assert gen["metadata"]["name"].startswith("gen-") and len(gen["metadata"]["name"]) == 9


def test_global_resource_version_increments_on_every_write(client):
    rv1 = int(client.ok("POST", CM, cm("a"))["metadata"]["resourceVersion"])
    rv2 = int(client.ok("POST", STS, sts("s"))["metadata"]["resourceVersion"])
    rv3 = int(client.ok("PATCH", f"{CM}/a", {"data": {"x": "1"}}, MERGE)["metadata"]["resourceVersion"])
    assert rv1 < rv2 < rv3 and rv2 == rv1 + 1 and rv3 == rv2 + 1
    lst = client.ok("GET", CM)
    assert lst["metadata"]["resourceVersion"] == str(rv3)


def test_create_errors(client):
    client.ok("POST", CM, cm("a"))
    code, body = client.req("POST", CM, cm("a"))
    assert code == 409
    assert_status(body, 409, "AlreadyExists")
    assert body["details"]["name"] == "a" and body["details"]["kind"] == "configmaps"
    code, body = client.req("POST", "/api/v1/namespaces/nope/configmaps", cm("a"))
    assert code == 404 and body["reason"] == "NotFound" and "nope" in body["message"]
    other = cm("b")
    other["metadata"]["namespace"] = "kube-system"
    code, body = client.req("POST", CM, other)
    assert code == 400 and body["reason"] == "BadRequest"
    code, body = client.req("POST", CM, cm("Bad_Name"))
    assert code == 422 and body["reason"] == "Invalid"
    code, body = client.req("POST", STS, cm("wrongkind"))
    assert code == 400
    withrv = cm("c")
    withrv["metadata"]["resourceVersion"] = "5"
    assert client.req("POST", CM, withrv)[0] == 400
    code, body = client.req("GET", f"{CM}/missing")
    assert code == 404
    assert_status(body, 404, "NotFound")
    assert body["message"] == 'configmaps "missing" not found'
    code, body = client.req("GET", "/apis/apps/v1/namespaces/default/statefulsets/missing")
    assert body["message"] == 'statefulsets.apps "missing" not found'
    assert client.req("GET", "/api/v1/namespaces/default/widgets")[0] == 404
    assert client.req("POST", CM, b"{not json")[0] == 400


def test_list_items_omit_kind_for_builtins(client):
    client.ok("POST", CM, cm("a"))
    lst = client.ok("GET", CM)
    assert lst["kind"] == "ConfigMapList" and lst["apiVersion"] == "v1"
    assert "kind" not in lst["items"][0] and "apiVersion" not in lst["items"][0]
    client.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "other"}})
    client.ok("POST", "/api/v1/namespaces/other/configmaps", cm("b"))
    names = [i["metadata"]["name"] for i in client.ok("GET", "/api/v1/configmaps")["items"]]
    assert names == ["a", "b"]


def test_put_optimistic_concurrency(client):
    obj = client.ok("POST", CM, cm("a"))
    stale = json.loads(json.dumps(obj))
    obj["data"] = {"k": "new"}
    updated = client.ok("PUT", f"{CM}/a", obj)
    assert int(updated["metadata"]["resourceVersion"]) > int(stale["metadata"]["resourceVersion"])
    stale["data"] = {"k": "lost"}
    code, body = client.req("PUT", f"{CM}/a", stale)
    assert code == 409
    assert_status(body, 409, "Conflict")
    assert "the object has been modified" in body["message"]
    assert client.ok("GET", f"{CM}/a")["data"] == {"k": "new"}
    # Built-ins accept an unconditional update (no resourceVersion).
    unconditional = cm("a", data={"k": "uncond"})
    assert client.ok("PUT", f"{CM}/a", unconditional)["data"] == {"k": "uncond"}
    # PUT does not create.
    assert client.req("PUT", f"{CM}/zzz", cm("zzz"))[0] == 404
    # Name mismatch between URL and body.
    assert client.req("PUT", f"{CM}/a", cm("b"))[0] == 400


def test_noop_update_keeps_resource_version(client):
    obj = client.ok("POST", CM, cm("a"))
    again = client.ok("PUT", f"{CM}/a", obj)
    assert again["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    again = client.ok("PATCH", f"{CM}/a", {"data": {"k": "v"}}, MERGE)
    assert again["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]


def test_generation_tracks_spec_only(client):
    s = client.ok("POST", STS, sts("s"))
    assert s["metadata"]["generation"] == 1
    s = client.ok("PATCH", f"{STS}/s", {"metadata": {"labels": {"x": "y"}}}, MERGE)
    assert s["metadata"]["generation"] == 1
    s = client.ok("PATCH", f"{STS}/s/status", {"status": {"replicas": 1}}, MERGE)
    assert s["metadata"]["generation"] == 1 and s["status"]["replicas"] == 1
    s = client.ok("PATCH", f"{STS}/s", {"spec": {"replicas": 4}}, MERGE)
    assert s["metadata"]["generation"] == 2
    assert "generation" not in client.ok("POST", CM, cm("c"))["metadata"]


def test_status_subresource(client):
    body = sts("s")
    body["status"] = {"replicas": 9}
    s = client.ok("POST", STS, body)
    assert "status" not in s or s["status"].get("replicas") != 9   # create drops status
    s["status"] = {"replicas": 2, "readyReplicas": 1}
    s["spec"]["replicas"] = 7   # ignored by /status
    st = client.ok("PUT", f"{STS}/s/status", s)
    assert st["status"] == {"replicas": 2, "readyReplicas": 1} and st["spec"]["replicas"] == 1
    st["status"] = {"replicas": 100}
    st["spec"]["replicas"] = 3   # main resource ignores status
    main = client.ok("PUT", f"{STS}/s", st)
    assert main["spec"]["replicas"] == 3 and main["status"]["replicas"] == 2
    stale = dict(main, status={"replicas": 5})
    client.ok("PATCH", f"{STS}/s/status", {"status": {"replicas": 3}}, MERGE)
    code, body = client.req("PUT", f"{STS}/s/status", stale)
    assert code == 409 and body["reason"] == "Conflict"
    assert client.req("GET", f"{CM}/x/status")[0] == 404  # configmaps have no status


# ------------------------------------------------------------------------------------------
# Patches
# ------------------------------------------------------------------------------------------


def test_merge_patch_null_deletes(client):
    client.ok("POST", CM, cm("a", labels={"a": "1", "b": "2"}, data={"x": "1", "y": "2"}))
    out = client.ok("PATCH", f"{CM}/a",
                    {"metadata": {"labels": {"a": None, "c": "3"}}, "data": {"y": None}}, MERGE)
    assert out["metadata"]["labels"] == {"b": "2", "c": "3"}
    assert out["data"] == {"x": "1"}
    stale = {"metadata": {"resourceVersion": "1"}, "data": {"x": "9"}}
    code, body = client.req("PATCH", f"{CM}/a", stale, MERGE)
    assert code == 409 and body["reason"] == "Conflict"
    assert client.req("PATCH", f"{CM}/none", {"data": {}}, MERGE)[0] == 404


def test_events_are_counted_by_patch_and_update(client):
    """What an event recorder does with a repeated Event: raise count and lastTimestamp."""
    ev = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "demo.17a"},
          "involvedObject": {"kind": "FloeCluster", "name": "demo", "namespace": NS, "uid": "u-1"},
          "reason": "SyncFailed", "message": "apply failed", "type": "Warning",
          "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:00:00Z",
          "count": 1, "source": {"component": "floe-operator"}}
    EV = f"/api/v1/namespaces/{NS}/events"
    client.ok("POST", EV, ev, expect=201)
    out = client.ok("PATCH", f"{EV}/demo.17a", {"count": 2, "lastTimestamp": "2025-01-01T00:01:00Z"}, MERGE)
    assert out["count"] == 2 and out["lastTimestamp"] == "2025-01-01T00:01:00Z"
    assert out["firstTimestamp"] == "2025-01-01T00:00:00Z" and out["message"] == "apply failed"
    out["count"] = 3
    assert client.ok("PUT", f"{EV}/demo.17a", out)["count"] == 3
    items = client.ok("GET", EV)["items"]
    assert [(e["metadata"]["name"], e["count"]) for e in items] == [("demo.17a", 3)]
    client.ok("DELETE", f"{EV}/demo.17a")
    code, st = client.req("PATCH", f"{EV}/demo.17a", {"count": 4}, MERGE)
    assert code == 404 and st["reason"] == "NotFound"


def test_strategic_merge_and_json_patch(client):
    client.ok("POST", CM, cm("a", data={"x": "1"}))
    out = client.ok("PATCH", f"{CM}/a", {"data": {"y": "2"}},
                    "application/strategic-merge-patch+json")
    assert out["data"] == {"x": "1", "y": "2"}
    out = client.ok("PATCH", f"{CM}/a", [{"op": "replace", "path": "/data/x", "value": "10"},
                                         {"op": "remove", "path": "/data/y"},
                                         {"op": "add", "path": "/metadata/labels",
                                          "value": {"a/b": "c"}}],
                    "application/json-patch+json")
    assert out["data"] == {"x": "10"} and out["metadata"]["labels"] == {"a/b": "c"}
    code, body = client.req("PATCH", f"{CM}/a", [{"op": "test", "path": "/data/x", "value": "0"}],
                            "application/json-patch+json")
    assert code == 422
    code, body = client.req("PATCH", f"{CM}/a", {"data": {}}, "text/plain")
    assert code == 415 and body["reason"] == "UnsupportedMediaType"


# ------------------------------------------------------------------------------------------
# Server-side apply
# ------------------------------------------------------------------------------------------


def test_apply_requires_field_manager(client):
    code, body = client.req("PATCH", f"{CM}/a", cm("a"), APPLY)
    assert code == 422 and body["reason"] == "Invalid" and "fieldManager" in body["message"]


def test_apply_create_update_and_field_removal(client):
    path = f"{CM}/a?fieldManager=op"
    code, created = client.req("PATCH", path, cm("a", data={"x": "1", "y": "2"}), APPLY)
    assert code == 201
    mf = created["metadata"]["managedFields"]
    assert len(mf) == 1 and mf[0]["manager"] == "op" and mf[0]["operation"] == "Apply"
    assert mf[0]["fieldsType"] == "FieldsV1" and "f:x" in mf[0]["fieldsV1"]["f:data"]
    # Re-applying the same configuration is a no-op.
    code, same = client.req("PATCH", path, cm("a", data={"x": "1", "y": "2"}), APPLY)
    assert code == 200 and same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    # Dropping y from the applied configuration removes it (the applier owned it alone).
    out = client.ok("PATCH", path, cm("a", data={"x": "1"}), APPLY)
    assert out["data"] == {"x": "1"}
    # A field set by another manager through an update survives the applier's next apply.
    client.ok("PATCH", f"{CM}/a?fieldManager=human", {"data": {"z": "3"}}, MERGE)
    out = client.ok("PATCH", path, cm("a", data={"x": "2"}), APPLY)
    assert out["data"] == {"x": "2", "z": "3"}
    managers = {m["manager"]: m for m in out["metadata"]["managedFields"]}
    assert managers["human"]["operation"] == "Update"
    assert managers["human"]["fieldsV1"] == {"f:data": {"f:z": {}}}


def test_apply_conflicts_and_force(client):
    client.ok("PATCH", f"{STS}/s?fieldManager=op", sts("s", replicas=2), APPLY)
    client.ok("PUT", f"{STS}/s/scale?fieldManager=autoscaler",
              {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "s"},
               "spec": {"replicas": 5}})
    code, body = client.req("PATCH", f"{STS}/s?fieldManager=op", sts("s", replicas=2), APPLY)
    assert code == 409 and body["reason"] == "Conflict"
    assert 'conflict with "autoscaler"' in body["message"] and ".spec.replicas" in body["message"]
    assert body["details"]["causes"][0]["field"] == ".spec.replicas"
    assert client.ok("GET", f"{STS}/s")["spec"]["replicas"] == 5
    # Applying the value the other manager set is not a conflict: ownership is shared.
    client.ok("PATCH", f"{STS}/s?fieldManager=op", sts("s", replicas=5), APPLY)
    # force=true takes the field.
    client.ok("PUT", f"{STS}/s/scale?fieldManager=autoscaler",
              {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "s"},
               "spec": {"replicas": 6}})
    out = client.ok("PATCH", f"{STS}/s?fieldManager=op&force=true", sts("s", replicas=2), APPLY)
    assert out["spec"]["replicas"] == 2
    owners = {m["manager"]: m["fieldsV1"] for m in out["metadata"]["managedFields"]}
    assert "f:replicas" in owners["op"]["f:spec"]
    assert "autoscaler" not in owners or "f:replicas" not in owners["autoscaler"].get("f:spec", {})


def test_apply_status_subresource(client):
    client.ok("POST", STS, sts("s"))
    out = client.ok("PATCH", f"{STS}/s/status?fieldManager=op",
                    {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
                     "status": {"replicas": 1}, "spec": {"replicas": 99}}, APPLY)
    assert out["status"]["replicas"] == 1 and out["spec"]["replicas"] == 1
    entry = [m for m in out["metadata"]["managedFields"] if m["manager"] == "op"][0]
    assert entry["subresource"] == "status"
    # Apply to main resource ignores status.
    body = sts("s")
    body["status"] = {"replicas": 50}
    out = client.ok("PATCH", f"{STS}/s?fieldManager=op2", body, APPLY)
    assert out["status"]["replicas"] == 1


# ------------------------------------------------------------------------------------------
# Scale subresource, CRDs and custom resources
# ------------------------------------------------------------------------------------------


def test_statefulset_scale(client):
    client.ok("POST", STS, sts("s", replicas=2, labels={"app": "s", "tier": "b"}))
    sc = client.ok("GET", f"{STS}/s/scale")
    assert sc["kind"] == "Scale" and sc["apiVersion"] == "autoscaling/v1"
    assert sc["spec"]["replicas"] == 2 and sc["status"]["selector"] == "app=s,tier=b"
    sc["spec"]["replicas"] = 4
    out = client.ok("PUT", f"{STS}/s/scale", sc)
    assert out["spec"]["replicas"] == 4
    s = client.ok("GET", f"{STS}/s")
    assert s["spec"]["replicas"] == 4 and s["metadata"]["generation"] == 2
    code, body = client.req("PUT", f"{STS}/s/scale", sc)   # stale resourceVersion
    assert code == 409
    out = client.ok("PATCH", f"{STS}/s/scale", {"spec": {"replicas": 1}}, MERGE)
    assert out["spec"]["replicas"] == 1
    assert client.req("PATCH", f"{STS}/s/scale", {"spec": {"replicas": -1}}, MERGE)[0] == 422
    assert client.ok("GET", f"{DEP}")["items"] == []
    assert client.req("GET", f"{CM}/x/scale")[0] == 404


def test_statefulset_spec_fields_other_than_the_mutable_ones_are_forbidden(client):
    body = sts("s", replicas=1)
    body["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "wal"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
    client.ok("POST", STS, body)
    bigger = {"spec": {"volumeClaimTemplates": [{"metadata": {"name": "wal"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}}]}}
    applied = sts("s", replicas=1)
    applied["spec"].update(bigger["spec"])
    for method, path, payload, ctype in [
            ("PATCH", f"{STS}/s", bigger, MERGE),                              # the claim size
            ("PATCH", f"{STS}/s?fieldManager=m&force=true", applied, APPLY),   # the same, applied
            ("PATCH", f"{STS}/s", {"spec": {"serviceName": "other"}}, MERGE),
            ("PATCH", f"{STS}/s", {"spec": {"selector": {"matchLabels": {"app": "t"}}}}, MERGE),
            ("PATCH", f"{STS}/s", {"spec": {"podManagementPolicy": "Parallel"}}, MERGE)]:
        code, st = client.req(method, path, payload, ctype)
        assert code == 422, (payload, st)
        assert_status(st, 422, "Invalid")
        assert st["message"].startswith('StatefulSet.apps "s" is invalid: spec: Forbidden: updates to '
                                        "statefulset spec for fields other than 'replicas', 'ordinals', "
                                        "'template', 'updateStrategy'"), st["message"]
        assert st["details"]["causes"] == [{"reason": "FieldValueForbidden", "field": "spec",
                                            "message": st["message"].split("spec: ", 1)[1]}]
    assert client.ok("GET", f"{STS}/s")["metadata"]["generation"] == 1   # nothing was stored
    full = client.ok("GET", f"{STS}/s")
    full["spec"]["volumeClaimTemplates"] = bigger["spec"]["volumeClaimTemplates"]
    assert client.req("PUT", f"{STS}/s", full)[0] == 422
    # The mutable ones change freely; status and scale writes are not spec updates.
    client.ok("PATCH", f"{STS}/s", {"spec": {
        "replicas": 3, "minReadySeconds": 5, "revisionHistoryLimit": 2,
        "updateStrategy": {"type": "OnDelete"},
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
        "template": {"metadata": {"annotations": {"v": "2"}}}}}, MERGE)
    client.ok("PATCH", f"{STS}/s/scale", {"spec": {"replicas": 1}}, MERGE)
    client.ok("PATCH", f"{STS}/s/status", {"status": {"replicas": 1}}, MERGE)
    # A ConfigMap has no such rule.
    client.ok("POST", CM, cm("c"))
    client.ok("PATCH", f"{CM}/c", {"data": {"k": "w"}}, MERGE)


def test_crd_serves_floecluster_with_status_and_scale(client):
    crd = client.ok("POST", CRDS, FLOE_CRD, expect=201)
    conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conds["Established"] == "True"
    apis = {g["name"] for g in client.ok("GET", "/apis")["groups"]}
    assert "floe.dev" in apis
    res = {r["name"]: r for r in client.ok("GET", "/apis/floe.dev/v1alpha1")["resources"]}
    assert res["floeclusters"]["namespaced"] and res["floeclusters"]["shortNames"] == ["floe"]
    assert "floeclusters/status" in res and res["floeclusters/scale"]["kind"] == "Scale"
    fc = client.ok("POST", FC, floe("prod", 3), expect=201)
    assert fc["metadata"]["generation"] == 1
    # CR list items keep apiVersion/kind.
    item = client.ok("GET", FC)["items"][0]
    assert item["kind"] == "FloeCluster" and item["apiVersion"] == "floe.dev/v1alpha1"
    # Status, including the selector the scale subresource reports.
    fc["status"] = {"replicas": 3, "selector": "app.kubernetes.io/instance=prod"}
    fc = client.ok("PUT", f"{FC}/prod/status", fc)
    assert fc["metadata"]["generation"] == 1
    sc = client.ok("GET", f"{FC}/prod/scale")
    assert sc["spec"]["replicas"] == 3 and sc["status"] == {
        "replicas": 3, "selector": "app.kubernetes.io/instance=prod"}
    sc["spec"]["replicas"] = 5
    client.ok("PUT", f"{FC}/prod/scale", sc)
    fc = client.ok("GET", f"{FC}/prod")
    assert fc["spec"]["brokers"]["replicas"] == 5 and fc["metadata"]["generation"] == 2
    out = client.ok("PATCH", f"{FC}/prod/scale", {"spec": {"replicas": 2}}, MERGE)
    assert out["spec"]["replicas"] == 2
    # Custom resources: PUT needs a resourceVersion; strategic merge patch is unsupported.
    unconditional = floe("prod")
    assert client.req("PUT", f"{FC}/prod", unconditional)[0] == 422
    assert client.req("PATCH", f"{FC}/prod", {"spec": {}},
                      "application/strategic-merge-patch+json")[0] == 415
    # Deleting the CRD removes its objects and stops serving it.
    client.ok("DELETE", f"{CRDS}/floeclusters.floe.dev")
    assert client.req("GET", FC)[0] == 404
    client.ok("POST", CRDS, FLOE_CRD)
    assert client.ok("GET", FC)["items"] == []


def test_crd_validation(client):
    bad = json.loads(json.dumps(FLOE_CRD))
    bad["metadata"]["name"] = "wrong.floe.dev"
    code, body = client.req("POST", CRDS, bad)
    assert code == 422 and "metadata.name" in body["message"]


def test_crd_cluster_scoped_without_subresources(client):
    crd = json.loads(json.dumps(FLOE_CRD))
    crd["metadata"]["name"] = "widgets.example.com"
    crd["spec"].update(group="example.com", scope="Cluster",
                       names={"plural": "widgets", "kind": "Widget"})
    crd["spec"]["versions"][0]["name"] = "v1"
    del crd["spec"]["versions"][0]["subresources"]
    client.ok("POST", CRDS, crd)
    w = client.ok("POST", "/apis/example.com/v1/widgets",
                  {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                   "spec": {"a": 1}, "status": {"s": 1}})
    assert w["status"] == {"s": 1}      # no status subresource: status is ordinary data
    w["metadata"]["labels"] = {"x": "y"}
    w = client.ok("PUT", "/apis/example.com/v1/widgets/w", w)
    assert w["metadata"]["generation"] == 1
    assert client.req("GET", "/apis/example.com/v1/widgets/w/scale")[0] == 404
    assert client.req("GET", "/apis/example.com/v1/widgets/w/status")[0] == 404


# ------------------------------------------------------------------------------------------
# LIST: selectors, pagination, resourceVersion semantics
# ------------------------------------------------------------------------------------------


def names(lst):
    return [i["metadata"]["name"] for i in lst["items"]]


def test_label_and_field_selectors(client):
    client.ok("POST", CM, cm("a", labels={"app": "x", "tier": "web"}))
    client.ok("POST", CM, cm("b", labels={"app": "y", "tier": "db"}))
    client.ok("POST", CM, cm("c", labels={"app": "z"}))
    def sel(s):
        return names(client.ok("GET", f"{CM}?labelSelector={quote(s)}"))
    assert sel("app=x") == ["a"]
    assert sel("app==y") == ["b"]
    assert sel("app!=x") == ["b", "c"]
    assert sel("app in (x,z)") == ["a", "c"]
    assert sel("app notin (x)") == ["b", "c"]
    assert sel("tier") == ["a", "b"]
    assert sel("!tier") == ["c"]
    assert sel("app in (x,y),tier=db") == ["b"]
    assert names(client.ok("GET", f"{CM}?fieldSelector=metadata.name%3Db")) == ["b"]
    assert names(client.ok("GET", f"{CM}?fieldSelector=metadata.name!%3Db")) == ["a", "c"]
    code, body = client.req("GET", f"{CM}?fieldSelector=spec.nodeName%3Dx")
    assert code == 400 and body["reason"] == "BadRequest"
    assert client.req("GET", f"{CM}?labelSelector=%28%28%28")[0] == 400


def test_pagination_is_consistent_and_expires(client):
    for i in range(7):
        client.ok("POST", CM, cm(f"cm-{i}"))
    first = client.ok("GET", f"{CM}?limit=3")
    assert names(first) == ["cm-0", "cm-1", "cm-2"]
    assert first["metadata"]["remainingItemCount"] == 4
    tok = first["metadata"]["continue"]
    client.ok("POST", CM, cm("cm-5a"))                  # created after the first page
    client.ok("DELETE", f"{CM}/cm-6")                   # deleted after the first page
    second = client.ok("GET", f"{CM}?limit=3&continue={tok}")
    assert names(second) == ["cm-3", "cm-4", "cm-5"]
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    third = client.ok("GET", f"{CM}?limit=3&continue={second['metadata']['continue']}")
    assert names(third) == ["cm-6"] and "continue" not in third["metadata"]
    # After compaction the snapshot is gone: 410 Expired.
    client.control(action="compact")
    code, body = client.req("GET", f"{CM}?limit=3&continue={tok}")
    assert code == 410
    assert_status(body, 410, "Expired")
    assert client.req("GET", f"{CM}?limit=3&continue=garbage")[0] == 400


def test_list_exact_resource_version(client):
    a = client.ok("POST", CM, cm("a"))
    rv = a["metadata"]["resourceVersion"]
    client.ok("PATCH", f"{CM}/a", {"data": {"k": "changed"}}, MERGE)
    client.ok("POST", CM, cm("b"))
    old = client.ok("GET", f"{CM}?resourceVersion={rv}&resourceVersionMatch=Exact")
    assert names(old) == ["a"] and old["items"][0]["data"] == {"k": "v"}
    assert old["metadata"]["resourceVersion"] == rv
    # Default (NotOlderThan) semantics serve the current state.
    assert names(client.ok("GET", f"{CM}?resourceVersion={rv}")) == ["a", "b"]
    # Legacy rule: limit + non-zero resourceVersion means Exact.
    assert names(client.ok("GET", f"{CM}?resourceVersion={rv}&limit=10")) == ["a"]
    client.control(action="compact")
    code, body = client.req("GET", f"{CM}?resourceVersion={rv}&resourceVersionMatch=Exact")
    assert code == 410 and body["reason"] == "Expired"
    assert client.req("GET", f"{CM}?resourceVersion={rv}&limit=10")[0] == 410
    code, body = client.req("GET", f"{CM}?resourceVersion=999999")
    assert code == 504 and body["reason"] == "Timeout"


# ------------------------------------------------------------------------------------------
# WATCH
# ------------------------------------------------------------------------------------------


def test_watch_delivers_events_after_resource_version(client):
    rv = client.ok("POST", CM, cm("before"))["metadata"]["resourceVersion"]
    resp, conn = client.watch(f"{CM}?watch=1&resourceVersion={rv}&timeoutSeconds=30")
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.getheader("Content-Type") == "application/json"
    client.ok("POST", CM, cm("a"))
    client.ok("PATCH", f"{CM}/a", {"data": {"k": "2"}}, MERGE)
    client.ok("DELETE", f"{CM}/a")
    evs = read_events(resp, 3)
    conn.close()
    assert [e["type"] for e in evs] == ["ADDED", "MODIFIED", "DELETED"]
    assert all(e["object"]["kind"] == "ConfigMap" and e["object"]["apiVersion"] == "v1"
               for e in evs)
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)
    assert evs[1]["object"]["data"] == {"k": "2"}


def test_watch_replays_retained_history(client):
    rv = client.ok("POST", CM, cm("a"))["metadata"]["resourceVersion"]
    client.ok("PATCH", f"{CM}/a", {"data": {"k": "2"}}, MERGE)
    client.ok("POST", CM, cm("b"))
    resp, conn = client.watch(f"{CM}?watch=true&resourceVersion={rv}&timeoutSeconds=30")
    evs = read_events(resp, 2)
    conn.close()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [
        ("MODIFIED", "a"), ("ADDED", "b")]


def test_watch_without_resource_version_starts_with_current_state(client):
    client.ok("POST", CM, cm("a"))
    client.ok("POST", CM, cm("b"))
    resp, conn = client.watch(f"{CM}?watch=1&timeoutSeconds=30")
    evs = read_events(resp, 2)
    client.ok("POST", CM, cm("c"))
    evs += read_events(resp, 1)
    conn.close()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [
        ("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")]


def test_watch_send_initial_events_ends_with_bookmark(client):
    client.ok("POST", CM, cm("a"))
    resp, conn = client.watch(f"{CM}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"
                              "&resourceVersionMatch=NotOlderThan&timeoutSeconds=30")
    evs = read_events(resp, 2)
    conn.close()
    assert evs[0]["type"] == "ADDED"
    assert evs[1]["type"] == "BOOKMARK"
    assert evs[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_watch_bookmarks(client):
    rv = client.ok("POST", CM, cm("a"))["metadata"]["resourceVersion"]
    resp, conn = client.watch(
        f"{CM}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=30")
    client.ok("POST", STS, sts("s"))          # a write to another type moves the global RV
    evs = read_events(resp, until=lambda e: e["type"] == "BOOKMARK")
    conn.close()
    bm = evs[-1]
    assert bm["type"] == "BOOKMARK"
    assert bm["object"]["kind"] == "ConfigMap" and bm["object"]["apiVersion"] == "v1"
    assert set(bm["object"]["metadata"]) == {"resourceVersion"}
    assert int(bm["object"]["metadata"]["resourceVersion"]) > int(rv)
    # Without allowWatchBookmarks no bookmark arrives before the watch times out.
    resp, conn = client.watch(f"{CM}?watch=1&resourceVersion={rv}&timeoutSeconds=1")
    evs = read_events(resp)
    conn.close()
    assert evs == []


def test_watch_timeout_ends_stream(client):
    rv = client.ok("GET", CM)["metadata"]["resourceVersion"]
    resp, conn = client.watch(f"{CM}?watch=1&resourceVersion={rv}&timeoutSeconds=1")
    assert read_events(resp) == []     # the stream ended cleanly (terminating chunk)
    conn.close()


def test_watch_too_old_resource_version_gets_410_error_event(client):
    rv = client.ok("POST", CM, cm("a"))["metadata"]["resourceVersion"]
    client.ok("PATCH", f"{CM}/a", {"data": {"k": "2"}}, MERGE)
    client.control(action="compact")
    resp, conn = client.watch(f"{CM}?watch=1&resourceVersion={rv}")
    evs = read_events(resp)
    conn.close()
    assert len(evs) == 1 and evs[0]["type"] == "ERROR"
    assert_status(evs[0]["object"], 410, "Expired")
    assert "too old resource version" in evs[0]["object"]["message"]


def test_bounded_history_expires_old_resource_versions():
    with FakeAPIServer(port=0, history=5) as s:
        c = Client(s)
        rv = c.ok("POST", CM, cm("a"))["metadata"]["resourceVersion"]
        for i in range(3):
            c.ok("PATCH", f"{CM}/a", {"data": {"k": str(i)}}, MERGE)
        resp, conn = c.watch(f"{CM}?watch=1&resourceVersion={rv}&timeoutSeconds=30")
        assert [e["type"] for e in read_events(resp, 3)] == ["MODIFIED"] * 3
        conn.close()
        for i in range(5):
            c.ok("PATCH", f"{CM}/a", {"data": {"k": f"x{i}"}}, MERGE)
        resp, conn = c.watch(f"{CM}?watch=1&resourceVersion={rv}")
        evs = read_events(resp)
        conn.close()
        assert evs[0]["type"] == "ERROR" and evs[0]["object"]["code"] == 410


def test_writes_reach_all_open_watches_with_selector_transitions(client):
    rv = client.ok("GET", CM)["metadata"]["resourceVersion"]
    all_r, all_c = client.watch(f"{CM}?watch=1&resourceVersion={rv}&timeoutSeconds=30")
    sel_r, sel_c = client.watch(
        f"{CM}?watch=1&resourceVersion={rv}&labelSelector=role%3Dbroker&timeoutSeconds=30")
    named_r, named_c = client.watch(f"{CM}?watch=1&resourceVersion={rv}"
                                    "&fieldSelector=metadata.name%3Da&timeoutSeconds=30")
    client.ok("POST", CM, cm("a"))
    client.ok("PATCH", f"{CM}/a", {"metadata": {"labels": {"role": "broker"}}}, MERGE)
    client.ok("PATCH", f"{CM}/a", {"metadata": {"labels": {"role": None}}}, MERGE)
    client.ok("POST", CM, cm("b", labels={"role": "broker"}))
    all_evs = read_events(all_r, 4)
    sel_evs = read_events(sel_r, 3)
    named_evs = read_events(named_r, 3)
    for c in (all_c, sel_c, named_c):
        c.close()
    assert [e["type"] for e in all_evs] == ["ADDED", "MODIFIED", "MODIFIED", "ADDED"]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in sel_evs] == [
        ("ADDED", "a"), ("DELETED", "a"), ("ADDED", "b")]
    assert [e["type"] for e in named_evs] == ["ADDED", "MODIFIED", "MODIFIED"]


def test_watch_wire_format_one_event_per_chunk(server, client):
    rv = client.ok("GET", CM)["metadata"]["resourceVersion"]
    s = socket.create_connection(("127.0.0.1", server.port), timeout=SAFETY_TIMEOUT)
    s.sendall(f"GET {CM}?watch=1&resourceVersion={rv}&timeoutSeconds=1 HTTP/1.1\r\n"
              "Host: x\r\n\r\n".encode())
    client.ok("POST", CM, cm("a"))
    client.ok("POST", CM, cm("b"))
    data = b""
    while not data.endswith(b"\r\n0\r\n\r\n"):
        chunk = s.recv(65536)
        assert chunk, "connection closed before the terminating chunk"
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    chunks = []
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        chunks.append(rest[:size])
        body = rest[size + 2:]
    assert len(chunks) == 2
    for ch in chunks:
        assert ch.endswith(b"\n") and ch.count(b"\n") == 1
        assert json.loads(ch)["type"] == "ADDED"


def test_close_watches_ends_streams(client):
    rv = client.ok("GET", CM)["metadata"]["resourceVersion"]
    r1, c1 = client.watch(f"{CM}?watch=1&resourceVersion={rv}&timeoutSeconds=60")
    client.ok("POST", CM, cm("a"))
    assert read_events(r1, 1)[0]["type"] == "ADDED"   # the watch is registered
    assert client.control(action="close_watches")["closed"] == 1
    assert read_events(r1) == []                       # clean end of stream
    c1.close()
    # Abrupt: the TCP connection drops without the terminating zero-length chunk.
    s = socket.create_connection(("127.0.0.1", client.port), timeout=SAFETY_TIMEOUT)
    s.sendall(f"GET {CM}?watch=1&resourceVersion={rv}&timeoutSeconds=60 HTTP/1.1\r\n"
              "Host: x\r\n\r\n".encode())
    data = b""
    while b'"ADDED"' not in data:        # replayed event: the watch is registered
        chunk = s.recv(65536)
        assert chunk
        data += chunk
    client.control(action="close_watches", abrupt=True)
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    assert b"HTTP/1.1 200" in data and not data.endswith(b"0\r\n\r\n")


def test_legacy_watch_path_and_single_object(client):
    rv = client.ok("POST", CM, cm("a"))["metadata"]["resourceVersion"]
    client.ok("POST", CM, cm("b"))
    resp, conn = client.watch(f"/api/v1/watch/namespaces/{NS}/configmaps/a"
                              f"?resourceVersion={rv}&timeoutSeconds=30")
    client.ok("PATCH", f"{CM}/b", {"data": {"x": "1"}}, MERGE)
    client.ok("PATCH", f"{CM}/a", {"data": {"x": "1"}}, MERGE)
    evs = read_events(resp, 1)
    conn.close()
    assert evs[0]["type"] == "MODIFIED" and evs[0]["object"]["metadata"]["name"] == "a"


# ------------------------------------------------------------------------------------------
# DELETE: cascading, orphaning, finalizers, namespaces, preconditions
# ------------------------------------------------------------------------------------------


def owned_cm(name, owner, kind="StatefulSet", api="apps/v1"):
    body = cm(name)
    body["metadata"]["ownerReferences"] = [{"apiVersion": api, "kind": kind,
                                            "name": owner["metadata"]["name"],
                                            "uid": owner["metadata"]["uid"], "controller": True}]
    return body


def test_cascading_background_deletion(client):
    owner = client.ok("POST", STS, sts("s"))
    client.ok("POST", CM, owned_cm("child", owner))
    grand = client.ok("GET", f"{CM}/child")
    client.ok("POST", CM, owned_cm("grandchild", grand, "ConfigMap", "v1"))
    client.ok("POST", CM, cm("unrelated"))
    client.ok("DELETE", f"{STS}/s")
    client.settle()
    assert names(client.ok("GET", CM)) == ["unrelated"]


def test_orphan_and_foreground_deletion(client):
    owner = client.ok("POST", STS, sts("s"))
    client.ok("POST", CM, owned_cm("child", owner))
    # Orphan: the owner stays (deletionTimestamp, `orphan` finalizer) until the garbage
    # collector has freed its dependents; then it goes and the dependents stay.
    deleting = client.ok("DELETE", f"{STS}/s", {"propagationPolicy": "Orphan"})
    assert deleting["metadata"]["deletionTimestamp"] and deleting["metadata"]["finalizers"] == ["orphan"]
    client.settle()
    assert client.req("GET", f"{STS}/s")[0] == 404
    child = client.ok("GET", f"{CM}/child")
    assert "ownerReferences" not in child["metadata"]
    # Another finalizer still holds the owner after the orphaning.
    body = sts("held")
    body["metadata"]["finalizers"] = ["floe.dev/hold"]
    held = client.ok("POST", STS, body)
    client.ok("POST", CM, owned_cm("child3", held))
    client.ok("DELETE", f"{STS}/held?propagationPolicy=Orphan")
    client.settle()
    assert client.ok("GET", f"{STS}/held")["metadata"]["finalizers"] == ["floe.dev/hold"]
    assert "ownerReferences" not in client.ok("GET", f"{CM}/child3")["metadata"]
    owner = client.ok("POST", STS, sts("t"))
    client.ok("POST", CM, owned_cm("child2", owner))
    code, _ = client.req("DELETE", f"{STS}/t?propagationPolicy=Foreground")
    assert code == 200
    assert client.req("GET", f"{CM}/child2")[0] == 404   # synchronous in this fake


def test_gc_keeps_dependent_with_another_live_owner(client):
    a = client.ok("POST", STS, sts("a"))
    b = client.ok("POST", STS, sts("b"))
    body = owned_cm("shared", a)
    body["metadata"]["ownerReferences"].append(
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "b", "uid": b["metadata"]["uid"]})
    client.ok("POST", CM, body)
    client.ok("DELETE", f"{STS}/a")
    client.settle()
    refs = client.ok("GET", f"{CM}/shared")["metadata"]["ownerReferences"]
    assert [r["name"] for r in refs] == ["b"]


def test_finalizers_delay_deletion(client):
    body = cm("f")
    body["metadata"]["finalizers"] = ["floe.dev/cleanup"]
    client.ok("POST", CM, body)
    rv = client.ok("GET", CM)["metadata"]["resourceVersion"]
    resp, conn = client.watch(f"{CM}?watch=1&resourceVersion={rv}&timeoutSeconds=30")
    deleting = client.ok("DELETE", f"{CM}/f")
    assert deleting["metadata"]["deletionTimestamp"]
    assert client.ok("GET", f"{CM}/f")["metadata"]["deletionTimestamp"]
    code, _ = client.req("PATCH", f"{CM}/f", {"metadata": {"finalizers": ["a", "b"]}}, MERGE)
    assert code == 422          # no new finalizers on an object being deleted
    client.ok("PATCH", f"{CM}/f", {"metadata": {"finalizers": None}}, MERGE)
    assert client.req("GET", f"{CM}/f")[0] == 404
    evs = read_events(resp, 2)
    conn.close()
    assert [e["type"] for e in evs] == ["MODIFIED", "DELETED"]


def test_namespace_deletion_removes_contents(client):
    client.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "tmp"}})
    client.ok("POST", "/api/v1/namespaces/tmp/configmaps", cm("a"))
    client.ok("POST", "/apis/apps/v1/namespaces/tmp/statefulsets", sts("s"))
    ns = client.ok("DELETE", "/api/v1/namespaces/tmp")
    assert ns["status"]["phase"] == "Terminating"
    client.settle()
    assert client.req("GET", "/api/v1/namespaces/tmp")[0] == 404
    assert client.ok("GET", "/api/v1/namespaces/tmp/configmaps")["items"] == []


def test_create_in_terminating_namespace_is_forbidden(client):
    client.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "tmp"}})
    body = cm("held")
    body["metadata"]["finalizers"] = ["x/y"]
    client.ok("POST", "/api/v1/namespaces/tmp/configmaps", body)
    client.ok("DELETE", "/api/v1/namespaces/tmp")
    client.settle()
    code, st = client.req("POST", "/api/v1/namespaces/tmp/configmaps", cm("new"))
    assert code == 403 and st["reason"] == "Forbidden"
    client.ok("PATCH", "/api/v1/namespaces/tmp/configmaps/held",
              {"metadata": {"finalizers": None}}, MERGE)
    client.settle()
    assert client.req("GET", "/api/v1/namespaces/tmp")[0] == 404


def test_delete_preconditions_and_collection(client):
    a = client.ok("POST", CM, cm("a", labels={"g": "1"}))
    client.ok("POST", CM, cm("b", labels={"g": "1"}))
    client.ok("POST", CM, cm("c"))
    code, body = client.req("DELETE", f"{CM}/a", {"preconditions": {"uid": "nope"}})
    assert code == 409 and body["reason"] == "Conflict"
    code, body = client.req("DELETE", f"{CM}/a",
                            {"preconditions": {"resourceVersion": "1"}})
    assert code == 409
    client.ok("DELETE", f"{CM}/a", {"preconditions": {"uid": a["metadata"]["uid"]}})
    client.ok("DELETE", f"{CM}?labelSelector=g%3D1")
    assert names(client.ok("GET", CM)) == ["c"]
    assert client.req("DELETE", f"{CM}/a")[0] == 404


# ------------------------------------------------------------------------------------------
# Other resource types and defaults
# ------------------------------------------------------------------------------------------


def test_secret_string_data_and_other_types(client):
    s = client.ok("POST", f"/api/v1/namespaces/{NS}/secrets",
                  {"metadata": {"name": "creds"}, "stringData": {"key": "secret"}})
    assert s["data"] == {"key": "c2VjcmV0"} and "stringData" not in s and s["type"] == "Opaque"
    svc = client.ok("POST", f"/api/v1/namespaces/{NS}/services",
                    {"metadata": {"name": "boot"}, "spec": {"ports": [{"port": 9092}]}})
    assert svc["spec"]["clusterIP"] and svc["spec"]["ports"][0]["targetPort"] == 9092
    lease = client.ok("POST", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases",
                      {"metadata": {"name": "floe-operator"},
                       "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15}})
    stale = json.loads(json.dumps(lease))
    lease["spec"]["holderIdentity"] = "pod-b"
    client.ok("PUT", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/floe-operator", lease)
    stale["spec"]["holderIdentity"] = "pod-c"
    code, _ = client.req("PUT",
                         f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/floe-operator", stale)
    assert code == 409     # the leader-election race is lost by the stale writer
    for path, body in [
            (f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets",
             {"metadata": {"name": "pdb"}, "spec": {"maxUnavailable": 1}}),
            (f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": "sa"}}),
            (f"/api/v1/namespaces/{NS}/events",
             {"metadata": {"name": "ev1"}, "reason": "Scaled", "message": "m"}),
            (DEP, {"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
                                                       "template": {}}})]:
        obj = client.ok("POST", path, body, expect=201)
        assert client.ok("GET", f"{path}/{obj['metadata']['name']}")["metadata"]["uid"]


def test_dry_run_does_not_persist(client):
    out = client.ok("POST", f"{CM}?dryRun=All", cm("a"), expect=201)
    assert out["metadata"]["name"] == "a"
    assert client.req("GET", f"{CM}/a")[0] == 404


# ------------------------------------------------------------------------------------------
# Auth and TLS
# ------------------------------------------------------------------------------------------


def test_token_auth():
    with FakeAPIServer(port=0, token="s3cret") as s:
        anon = Client(s)
        code, body = anon.req("GET", CM)
        assert code == 401
        assert_status(body, 401, "Unauthorized")
        assert Client(s, token="wrong").req("GET", CM)[0] == 401
        assert Client(s, token="s3cret").req("GET", CM)[0] == 200
        assert anon.req("GET", "/fake/requests")[0] == 200   # control plane is not guarded


def test_tls_with_ca_verification(tmp_path):
    tls = tmp_path / "tls"
    with FakeAPIServer(port=0, tls_dir=str(tls), token="t") as s:
        for f in ("ca.crt", "server.crt", "server.key"):
            assert (tls / f).exists()
        ctx = ssl.create_default_context(cafile=s.ca_file)
        assert Client(s, token="t", context=ctx).req("GET", "/api/v1")[0] == 200
        # Verification with the CA works by hostname "localhost" too.
        req = urllib.request.Request(f"https://localhost:{s.port}/version",
                                     headers={"Authorization": "Bearer t"})
        with urllib.request.urlopen(req, context=ctx, timeout=SAFETY_TIMEOUT) as r:
            assert json.loads(r.read())["major"] == "1"
        # Without the CA the certificate is rejected.
        with pytest.raises(ssl.SSLCertVerificationError):
            Client(s, token="t", context=ssl.create_default_context()).req("GET", "/api/v1")
        # The server keeps serving after a failed handshake.
        assert Client(s, token="t", context=ctx).req("GET", "/api/v1")[0] == 200
        first_ca = (tls / "ca.crt").read_bytes()
    # Restarting with the same directory reuses the material.
    with FakeAPIServer(port=0, tls_dir=str(tls)) as s2:
        assert (tls / "ca.crt").read_bytes() == first_ca
        ctx = ssl.create_default_context(cafile=s2.ca_file)
        assert Client(s2, context=ctx).req("GET", "/version")[0] == 200


# ------------------------------------------------------------------------------------------
# Fault injection and request accounting
# ------------------------------------------------------------------------------------------


def test_fail_next_requests_then_recover(client):
    client.ok("POST", CM, cm("a"))
    client.control(action="fail", path=f"{CM}/a", method="GET", code=503, count=2,
                   retryAfterSeconds=1)
    for _ in range(2):
        code, body = client.req("GET", f"{CM}/a")
        assert code == 503
        assert_status(body, 503, "ServiceUnavailable")
    assert client.req("GET", f"{CM}/a")[0] == 200
    # Method filter: a PUT fault does not affect GETs.
    client.control(action="fail", path=CM, prefix=True, method="PATCH", code=500, count=1)
    assert client.req("GET", f"{CM}/a")[0] == 200
    assert client.req("PATCH", f"{CM}/a", {"data": {}}, MERGE)[0] == 500
    assert client.req("PATCH", f"{CM}/a", {"data": {}}, MERGE)[0] == 200
    # A fault limited to watches leaves lists of the same path alone.
    client.control(action="fail", path=CM, code=500, count=1, watch=True)
    assert client.req("GET", CM)[0] == 200
    assert client.req("GET", f"{CM}?watch=1&timeoutSeconds=1")[0] == 500
    # Custom reason, e.g. a 429 throttle.
    client.control(action="fail", path=CM, code=429, reason="TooManyRequests", count=1)
    code, body = client.req("GET", CM)
    assert code == 429 and body["reason"] == "TooManyRequests"


def test_request_counts(client):
    client.control(action="reset_requests")
    client.ok("POST", CM, cm("a"))
    client.ok("GET", f"{CM}/a")
    client.ok("GET", f"{CM}/a")
    client.ok("GET", CM)
    client.ok("PATCH", f"{CM}/a?fieldManager=leader", {"data": {"x": "1"}}, MERGE)
    rep = client.ok("GET", "/fake/requests")
    assert rep["counts"] == {f"POST {CM}": 1, f"GET {CM}/a": 2, f"GET {CM}": 1,
                             f"PATCH {CM}/a": 1}
    assert rep["byVerb"] == {"create": 1, "get": 2, "list": 1, "patch": 1}
    writers = {r["fieldManager"] for r in rep["requests"] if r["verb"] in ("patch", "create")}
    assert writers == {None, "leader"}
    assert all(r["userAgent"] == "floe-test/1.0" for r in rep["requests"])
    assert all(r["code"] in (200, 201) for r in rep["requests"])
    client.control(action="reset_requests")
    assert client.ok("GET", "/fake/requests")["counts"] == {}
    # An open watch is logged when it starts.
    resp, conn = client.watch(f"{CM}?watch=1&timeoutSeconds=30")
    client.ok("POST", CM, cm("b"))
    read_events(resp, 2)
    rep = client.ok("GET", "/fake/requests")
    conn.close()
    assert rep["byVerb"] == {"watch": 1, "create": 1}
    assert [r["code"] for r in rep["requests"] if r["verb"] == "watch"] == [200]


def test_unknown_control_action(client):
    assert client.req("POST", "/fake/control", {"action": "explode"})[0] == 400


# ------------------------------------------------------------------------------------------
# Workload simulation
# ------------------------------------------------------------------------------------------


@pytest.fixture
def sim():
    s = FakeAPIServer(port=0, simulate_workloads=True).start()
    yield Client(s)
    s.stop()


def pod_names(client, selector):
    return names(client.ok("GET", f"{PODS}?labelSelector={selector}"))


def test_simulated_statefulset_pods_and_status(sim):
    sim.ok("POST", STS, sts("brokers", replicas=3))
    sim.settle()
    assert pod_names(sim, "app%3Dbrokers") == ["brokers-0", "brokers-1", "brokers-2"]
    pod = sim.ok("GET", f"{PODS}/brokers-1")
    assert pod["status"]["phase"] == "Running"
    assert {"type": "Ready", "status": "True"}.items() <= [
        c for c in pod["status"]["conditions"] if c["type"] == "Ready"][0].items()
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"
    st = sim.ok("GET", f"{STS}/brokers")["status"]
    assert st["replicas"] == 3 and st["readyReplicas"] == 3 and st["availableReplicas"] == 3
    assert st["currentReplicas"] == 3 and st["updatedReplicas"] == 3
    assert st["observedGeneration"] == 1
    # Scale down through the scale subresource.
    sim.ok("PATCH", f"{STS}/brokers/scale", {"spec": {"replicas": 1}}, MERGE)
    sim.settle()
    assert pod_names(sim, "app%3Dbrokers") == ["brokers-0"]
    st = sim.ok("GET", f"{STS}/brokers")["status"]
    assert st["replicas"] == 1 and st["observedGeneration"] == 2
    # A pod marked not ready lowers readyReplicas; OrderedReady blocks the next pod.
    sim.control(action="set_pod_ready", namespace=NS, name="brokers-0", ready=False)
    sim.ok("PATCH", f"{STS}/brokers", {"spec": {"replicas": 2}}, MERGE)
    sim.settle()
    st = sim.ok("GET", f"{STS}/brokers")["status"]
    assert st["readyReplicas"] == 0 and pod_names(sim, "app%3Dbrokers") == ["brokers-0"]
    sim.control(action="set_pod_ready", namespace=NS, name="brokers-0", ready=True)
    sim.settle()
    st = sim.ok("GET", f"{STS}/brokers")["status"]
    assert st["readyReplicas"] == 2 and pod_names(sim, "app%3Dbrokers") == ["brokers-0", "brokers-1"]
    # A deleted pod comes back with a new uid.
    uid = sim.ok("GET", f"{PODS}/brokers-1")["metadata"]["uid"]
    sim.ok("DELETE", f"{PODS}/brokers-1")
    sim.settle()
    assert sim.ok("GET", f"{PODS}/brokers-1")["metadata"]["uid"] != uid
    # Deleting the StatefulSet garbage-collects its pods.
    sim.ok("DELETE", f"{STS}/brokers")
    sim.settle()
    assert pod_names(sim, "app%3Dbrokers") == []


def test_simulated_template_change_rolls_pods(sim):
    sim.ok("POST", STS, sts("b", replicas=2))
    sim.settle()
    before = {n: sim.ok("GET", f"{PODS}/{n}")["metadata"]["uid"] for n in ("b-0", "b-1")}
    sim.ok("PATCH", f"{STS}/b", {"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}},
           MERGE)
    sim.settle()
    after = {n: sim.ok("GET", f"{PODS}/{n}")["metadata"]["uid"] for n in ("b-0", "b-1")}
    assert all(before[n] != after[n] for n in before)
    st = sim.ok("GET", f"{STS}/b")["status"]
    assert st["updatedReplicas"] == 2 and st["observedGeneration"] == 2


def test_simulated_statefulset_adopts_pods_orphaned_by_its_predecessor(sim):
    sim.ok("POST", STS, sts("b", replicas=2))
    sim.settle()
    before = {n: sim.ok("GET", f"{PODS}/{n}")["metadata"]["uid"] for n in ("b-0", "b-1")}
    sim.ok("DELETE", f"{STS}/b", {"propagationPolicy": "Orphan"})
    sim.settle()
    for n in before:   # the pods stay, without an owner
        pod = sim.ok("GET", f"{PODS}/{n}")
        assert pod["metadata"]["uid"] == before[n] and "ownerReferences" not in pod["metadata"]
    # A pod of another name or not matching the selector is not adopted.
    sim.ok("POST", PODS, {"metadata": {"name": "b-x", "labels": {"app": "b"}}})
    sim.ok("POST", PODS, {"metadata": {"name": "b-7", "labels": {"app": "other"}}})
    # The same set again (here with one more replica): it adopts b-0 and b-1 and keeps them,
    # since its template is unchanged, and creates b-2.
    created = sim.ok("POST", STS, sts("b", replicas=3))
    sim.settle()
    for n in ("b-0", "b-1", "b-2"):
        pod = sim.ok("GET", f"{PODS}/{n}")
        assert pod["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
        assert pod["metadata"]["ownerReferences"][0]["controller"] is True
        if n in before:
            assert pod["metadata"]["uid"] == before[n]
    for n in ("b-x", "b-7"):
        assert "ownerReferences" not in sim.ok("GET", f"{PODS}/{n}")["metadata"]
    st = sim.ok("GET", f"{STS}/b")["status"]
    assert st["replicas"] == 3 and st["readyReplicas"] == 3
    # A changed template then rolls the adopted pods as usual.
    sim.ok("PATCH", f"{STS}/b", {"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}},
           MERGE)
    sim.settle()
    assert all(sim.ok("GET", f"{PODS}/{n}")["metadata"]["uid"] != before[n] for n in before)


def test_simulated_deployment_status(sim):
    sim.ok("POST", DEP, {"metadata": {"name": "d"},
                         "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
                                  "template": {"metadata": {"labels": {"a": "b"}}}}})
    sim.settle()
    st = sim.ok("GET", f"{DEP}/d")["status"]
    assert st["replicas"] == 2 and st["readyReplicas"] == 2 and st["observedGeneration"] == 1
    assert {c["type"] for c in st["conditions"]} == {"Available", "Progressing"}


def test_no_simulation_by_default(client):
    client.ok("POST", STS, sts("s", replicas=2))
    client.settle()
    assert client.ok("GET", PODS)["items"] == []


def test_controller_writes_are_not_counted_as_requests(sim):
    sim.control(action="reset_requests")
    sim.ok("POST", STS, sts("s", replicas=2))
    sim.settle()
    rep = sim.ok("GET", "/fake/requests")
    assert rep["byVerb"] == {"create": 1}


# ------------------------------------------------------------------------------------------
# The command-line program
# ------------------------------------------------------------------------------------------


def test_cli_port_file_and_sigterm(tmp_path):
    port_file = tmp_path / "port"
    script = os.path.join(os.path.dirname(__file__), "fake_apiserver.py")
    proc = subprocess.Popen([sys.executable, script, "--port", "0", "--port-file", str(port_file),
                             "--token", "tok", "--history", "10"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Wait for readiness by the server's own announcement on stderr (it is printed after
        # the port file is written), not by sleeping.
        line = proc.stderr.readline().decode()
        assert "serving http://127.0.0.1:" in line, line
        port = int(port_file.read_text())
        assert line.strip().endswith(f":{port}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=SAFETY_TIMEOUT)
        conn.request("GET", "/api/v1/namespaces", headers={"Authorization": "Bearer tok"})
        r = conn.getresponse()
        assert r.status == 200
        assert {"default", "kube-system"} <= set(names(json.loads(r.read())))
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=SAFETY_TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_simulated_parallel_policy_ignores_readiness(sim):
    body = sts("p", replicas=1)
    body["spec"]["podManagementPolicy"] = "Parallel"
    sim.ok("POST", STS, body)
    sim.settle()
    sim.control(action="set_pod_ready", namespace=NS, name="p-0", ready=False)
    sim.ok("PATCH", f"{STS}/p", {"spec": {"replicas": 3}}, MERGE)
    sim.settle()
    assert pod_names(sim, "app%3Dp") == ["p-0", "p-1", "p-2"]
    assert sim.ok("GET", f"{STS}/p")["status"]["readyReplicas"] == 2


def test_delay_fault_and_state(client):
    client.ok("POST", CM, cm("a"))
    client.control(action="delay", path=f"{CM}/a", seconds=0.05, count=1)
    assert client.ok("GET", f"{CM}/a")["metadata"]["name"] == "a"   # stalled, then served
    client.control(action="fail", path=f"{CM}/a", code=500, count=5)
    client.control(action="clear_faults")
    assert client.req("GET", f"{CM}/a")[0] == 200
    state = client.ok("GET", "/fake/state")
    assert state["resourceVersion"] == int(client.ok("GET", CM)["metadata"]["resourceVersion"])
    assert state["openWatches"] == 0
    client.control(action="compact")
    assert client.ok("GET", "/fake/state")["historyLength"] == 0


def test_watch_closed_by_client_is_unregistered(server, client):
    resp, conn = client.watch(f"{CM}?watch=1&timeoutSeconds=600")
    assert client.ok("GET", "/fake/state")["openWatches"] == 1
    conn.close()
    resp.close()
    # The server notices the EOF and unregisters the watch.
    client.control(action="wait_watches", count=0)
    assert client.ok("GET", "/fake/state")["openWatches"] == 0
    code, body = client.req("POST", "/fake/control",
                            {"action": "wait_watches", "count": 3, "timeout": 0.1})
    assert code == 504 and body["reason"] == "Timeout"
