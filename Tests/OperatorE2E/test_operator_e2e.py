"""End-to-end: the real `floe-operator run` binary against the Python fake API server
(HTTPS with a bearer token, `--simulate-workloads`). Every wait polls a condition with a
deadline; nothing sleeps as synchronisation.

Run: python3 -m pytest -q Tests/OperatorE2E   (builds the binary if needed; FLOE_OPERATOR_BIN overrides)
"""
from __future__ import annotations

import signal
import time

from conftest import FC_API, wait_for

NS = "apps"
FCS = f"{FC_API}/namespaces/{NS}/floeclusters"
CMS = f"/api/v1/namespaces/{NS}/configmaps"
SVCS = f"/api/v1/namespaces/{NS}/services"
STSS = f"/apis/apps/v1/namespaces/{NS}/statefulsets"
PDBS = f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/floe-system/leases/floe-operator-leader"
WRITES = {"create", "update", "patch", "delete"}
FAST_LEASE = ["--leader-elect", "--leader-election-namespace=floe-system", "--lease-duration=3", "--renew-deadline=2",
              "--retry-period=0.5"]


def cluster(name, replicas=2, **spec):
    s = {"replicas": replicas, "storage": {"bucket": "file:///tmp/floe-data"}}
    s.update(spec)
    return {"apiVersion": "floe.dev/v1alpha1", "kind": "FloeCluster", "metadata": {"name": name}, "spec": s}


def condition(obj, type_):
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c
    return None


def ready(api, name):
    fc = api.get(f"{FCS}/{name}")
    c = condition(fc, "Ready")
    return fc if c and c["status"] == "True" and c["observedGeneration"] == fc["metadata"]["generation"] else None


def sts_replicas(api, name):
    s = api.get(f"{STSS}/{name}-broker")
    return s and s["spec"]["replicas"]


def test_apply_update_scale_prune_delete(env):
    api, server, start = env
    op = start("op-a")
    fc = api.ok("POST", FCS, cluster("demo", replicas=2, config={"log.retention.hours": "12"}))
    uid = fc["metadata"]["uid"]

    # The rendered objects appear, owned by the cluster, with the right fields.
    wait_for(lambda: api.get(f"{PDBS}/demo-broker"), what="all objects rendered")
    sts = api.get(f"{STSS}/demo-broker")
    cm = api.get(f"{CMS}/demo-config")
    headless = api.get(f"{SVCS}/demo-brokers")
    bootstrap = api.get(f"{SVCS}/demo-bootstrap")
    pdb = api.get(f"{PDBS}/demo-broker")
    for o in (sts, cm, headless, bootstrap, pdb):
        refs = o["metadata"]["ownerReferences"]
        assert refs == [{"apiVersion": "floe.dev/v1alpha1", "kind": "FloeCluster", "name": "demo", "uid": uid,
                         "controller": True, "blockOwnerDeletion": True}]
        assert o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "floe-operator"
        assert [m["manager"] for m in o["metadata"]["managedFields"] if m["operation"] == "Apply"] == ["floe-operator"]
    assert sts["spec"]["replicas"] == 2
    assert sts["spec"]["serviceName"] == "demo-brokers"
    assert sts["spec"]["template"]["spec"]["containers"][0]["command"] == ["/usr/local/bin/floe-broker"]
    assert "\nstorage=file:///tmp/floe-data\n" in cm["data"]["broker.properties"]
    assert "\nwal=object\n" in cm["data"]["broker.properties"]
    assert "log.retention.hours=12" in cm["data"]["broker.properties"]
    assert headless["spec"]["clusterIP"] == "None"
    assert bootstrap["spec"]["ports"][0]["port"] == 9092
    assert pdb["spec"]["maxUnavailable"] == 1

    # Status: Ready once the (simulated) brokers are ready, with observedGeneration.
    fc = wait_for(lambda: ready(api, "demo"), what="Ready=True")
    assert fc["status"]["readyReplicas"] == 2
    assert fc["status"]["bootstrap"] == "demo-bootstrap.apps.svc:9092"
    assert all(c["observedGeneration"] == 1 for c in fc["status"]["conditions"])
    events = api.ok("GET", f"/api/v1/namespaces/{NS}/events")["items"]
    assert {e["reason"] for e in events if e["involvedObject"]["name"] == "demo"} >= {"Created"}

    # Change the spec: the StatefulSet and the ConfigMap follow; status observes generation 2.
    api.ok("PATCH", f"{FCS}/demo", {"spec": {"replicas": 3, "config": {"log.retention.hours": "24"}}},
           "application/merge-patch+json")
    wait_for(lambda: sts_replicas(api, "demo") == 3, what="StatefulSet scaled to 3")
    wait_for(lambda: "log.retention.hours=24" in api.get(f"{CMS}/demo-config")["data"]["broker.properties"],
             what="ConfigMap updated")
    fc = wait_for(lambda: ready(api, "demo"), what="Ready at generation 2")
    assert fc["metadata"]["generation"] == 2 and fc["status"]["observedGeneration"] == 2
    assert fc["status"]["readyReplicas"] == 3

    # Scale through the scale subresource (kubectl scale): the StatefulSet follows.
    seen = len(api.requests())
    scale = api.ok("GET", f"{FCS}/demo/scale")
    assert scale["spec"]["replicas"] == 3
    scale["spec"]["replicas"] = 4
    api.ok("PUT", f"{FCS}/demo/scale", scale)
    wait_for(lambda: sts_replicas(api, "demo") == 4, what="StatefulSet scaled to 4 via /scale")
    wait_for(lambda: (ready(api, "demo") or {}).get("status", {}).get("replicas") == 4, what="status.replicas 4")
    # Only the StatefulSet changed, so only it was applied: the other objects' cached copies
    # carry our hash and every field we render, and the passes skip them.
    # (Event patches are not applies: a second "Updated StatefulSet demo-broker" counts on the first.)
    applied = {r["path"] for r in api.requests()[seen:] if r["method"] == "PATCH" and "(op-a)" in r["userAgent"]
               and "/floeclusters/" not in r["path"] and "/events/" not in r["path"]}
    assert applied == {f"{STSS}/demo-broker"}, applied
    updated = [e for e in api.ok("GET", f"/api/v1/namespaces/{NS}/events")["items"]
               if e["involvedObject"]["name"] == "demo" and e["message"] == "Updated StatefulSet demo-broker"]
    assert len(updated) == 1 and updated[0]["count"] == 2, updated

    # An edit to a field we own is undone on the next pass (server-side apply with force).
    api.ok("PATCH", f"{STSS}/demo-broker", {"spec": {"replicas": 1}}, "application/merge-patch+json")
    wait_for(lambda: sts_replicas(api, "demo") == 4, what="drift on spec.replicas corrected")

    # An object we own but no longer render is pruned; one without our owner reference is not.
    owner = {"apiVersion": "floe.dev/v1alpha1", "kind": "FloeCluster", "name": "demo", "uid": uid, "controller": True}
    api.ok("POST", CMS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "demo-stale", "labels": {"app.kubernetes.io/managed-by": "floe-operator"}, "ownerReferences": [owner]}})
    api.ok("POST", CMS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "demo-foreign", "labels": {"app.kubernetes.io/managed-by": "floe-operator"}}})
    wait_for(lambda: api.get(f"{CMS}/demo-stale") is None, what="stale owned ConfigMap pruned")
    assert api.get(f"{CMS}/demo-foreign") is not None

    # Delete: the children go with the cluster (owner references, garbage collection).
    api.ok("DELETE", f"{FCS}/demo")
    for path in (f"{STSS}/demo-broker", f"{CMS}/demo-config", f"{SVCS}/demo-brokers", f"{SVCS}/demo-bootstrap",
                 f"{PDBS}/demo-broker"):
        wait_for(lambda: api.get(path) is None, what=f"{path} removed")
    assert op.proc.poll() is None, op.output()


def test_invalid_spec_and_ownership_conflict_are_conditions_not_crashes(env):
    api, server, start = env
    op = start("op-a")
    api.ok("POST", FCS, cluster("bad", storage={"bucket": "ftp://nowhere"}))
    fc = wait_for(lambda: (lambda f: f if (condition(f, "Degraded") or {}).get("reason") == "InvalidSpec" else None)(
        api.get(f"{FCS}/bad")), what="Degraded/InvalidSpec")
    assert condition(fc, "Degraded")["status"] == "True"
    assert "bucket" in condition(fc, "Degraded")["message"]
    assert api.get(f"{STSS}/bad-broker") is None

    # spec.config may set only declared, user-settable broker settings (BrokerSettings).
    for name, config, named in [("typo", {"num.partiton": "3"}, 'key "num.partiton" is not a broker setting'),
                                ("nodurability", {"wal": "memory"}, 'key "wal" is set by the operator'),
                                ("badvalue", {"group.min.session.timeout.ms": "soon"}, '"group.min.session.timeout.ms" value "soon"')]:
        api.ok("POST", FCS, cluster(name, config=config))
        fc = wait_for(lambda: (lambda f: f if (condition(f, "Degraded") or {}).get("reason") == "InvalidSpec" else None)(
            api.get(f"{FCS}/{name}")), what=f"{name}: Degraded/InvalidSpec")
        assert named in condition(fc, "Degraded")["message"], condition(fc, "Degraded")
        assert api.get(f"{STSS}/{name}-broker") is None

    # A ConfigMap named as ours but not owned by us: never adopted, never overwritten.
    api.ok("POST", CMS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "taken-config"},
                         "data": {"mine": "yes"}})
    api.ok("POST", FCS, cluster("taken"))
    fc = wait_for(lambda: (lambda f: f if (condition(f, "Degraded") or {}).get("reason") == "OwnershipConflict" else None)(
        api.get(f"{FCS}/taken")), what="Degraded/OwnershipConflict")
    assert "taken-config" in condition(fc, "Degraded")["message"]
    cm = api.get(f"{CMS}/taken-config")
    assert cm["data"] == {"mine": "yes"} and "ownerReferences" not in cm["metadata"]

    # Fixing the spec clears the condition without a restart.
    api.ok("PATCH", f"{FCS}/bad", {"spec": {"storage": {"bucket": "file:///tmp/x"}}}, "application/merge-patch+json")
    wait_for(lambda: ready(api, "bad"), what="fixed cluster becomes Ready")
    assert op.proc.poll() is None, op.output()
    status, body = op.probe("/metrics")
    assert status == 200 and "floe_reconcile_total" in body


def test_recovers_from_dropped_watches_and_compacted_history(env):
    api, server, start = env
    op = start("op-a")
    api.ok("POST", FCS, cluster("w", replicas=1))
    wait_for(lambda: ready(api, "w"), what="Ready")
    wait_for(lambda: op.probe("/readyz")[0] == 200, what="operator ready")

    # Abruptly drop every watch connection: the operator reconnects and keeps reconciling.
    api.control(action="close_watches", abrupt=True)
    api.control(action="wait_watches", count=5, timeout=20)
    api.ok("PATCH", f"{FCS}/w", {"spec": {"replicas": 2}}, "application/merge-patch+json")
    wait_for(lambda: sts_replicas(api, "w") == 2, what="reconciled after dropped watches")

    # Forget the history and close the watches cleanly: resuming gets a 410 ERROR event, the
    # operator relists. (Bookmarks are paused first and an unrelated write moves the server's
    # resourceVersion past every informer's, so all five resume from before the compaction.)
    wait_for(lambda: (ready(api, "w") or {}).get("status", {}).get("readyReplicas") == 2, what="Ready with 2")
    api.control(action="settle")
    api.control(action="bookmark_interval", seconds=3600)
    api.control(action="close_watches", abrupt=False)
    api.control(action="wait_watches", count=5, timeout=20)
    api.ok("POST", CMS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unrelated"}})
    lists_before = sum(1 for r in api.requests() if r["verb"] == "list" and "(op-a)" in r["userAgent"])
    api.control(action="compact")
    api.control(action="close_watches", abrupt=False)
    wait_for(lambda: sum(1 for r in api.requests() if r["verb"] == "list" and "(op-a)" in r["userAgent"]) >= lists_before + 5,
             what="every informer relisted after 410")
    api.ok("PATCH", f"{FCS}/w", {"spec": {"replicas": 3}}, "application/merge-patch+json")
    wait_for(lambda: sts_replicas(api, "w") == 3, what="reconciled after 410 relist")

    # A watch answered with HTTP 410 (not an event) is also a relist.
    lists_before = sum(1 for r in api.requests() if r["verb"] == "list" and "(op-a)" in r["userAgent"])
    api.control(action="fail", path="/apis/apps/v1/statefulsets", code=410, count=1, watch=True, reason="Expired", message="too old")
    api.control(action="close_watches", abrupt=True)
    wait_for(lambda: sum(1 for r in api.requests() if r["verb"] == "list" and "(op-a)" in r["userAgent"]) > lists_before,
             what="relist after HTTP 410 on a watch")
    api.ok("PATCH", f"{FCS}/w", {"spec": {"replicas": 3, "image": "floe:e2e"}}, "application/merge-patch+json")
    wait_for(lambda: api.get(f"{STSS}/w-broker")["spec"]["template"]["spec"]["containers"][0]["image"] == "floe:e2e",
             what="reconciled after HTTP 410")
    wait_for(lambda: (ready(api, "w") or {}).get("status", {}).get("readyReplicas") == 3, what="Ready with 3")
    assert op.proc.poll() is None, op.output()


def writes_by(api, identity, exclude_leases=True):
    return [r for r in api.requests() if f"({identity})" in r["userAgent"] and r["verb"] in WRITES
            and not (exclude_leases and "/leases" in r["path"])]


def holder(api):
    lease = api.get(LEASE)
    return lease and lease["spec"].get("holderIdentity")


def test_only_the_leader_writes_and_a_standby_takes_over(env):
    api, server, start = env
    a = start("op-a", FAST_LEASE)
    wait_for(lambda: holder(api) == "op-a", what="op-a leads")
    b = start("op-b", FAST_LEASE)
    wait_for(lambda: b.probe("/readyz")[0] == 200, what="standby op-b ready")
    api.ok("POST", FCS, cluster("le", replicas=1))
    wait_for(lambda: ready(api, "le"), what="Ready under op-a")
    assert writes_by(api, "op-a"), "the leader wrote"
    assert writes_by(api, "op-b", exclude_leases=False) == [], "the standby wrote nothing, not even the lease"
    assert "floe_operator_leader 1" in a.probe("/metrics")[1]
    assert "floe_operator_leader 0" in b.probe("/metrics")[1]

    # SIGTERM: op-a releases the lease on its way out; op-b takes over and reconciles.
    # (The release build once ignored SIGTERM and SIGINT: scripts/test runs this with it.)
    began = time.monotonic()
    assert a.stop(signal.SIGTERM, timeout=5) == 0, a.output()
    assert time.monotonic() - began < 5, "SIGTERM took too long"
    assert "released the lease" in a.output()
    wait_for(lambda: holder(api) == "op-b", timeout=3, what="op-b takes over within seconds of the release")
    api.ok("PATCH", f"{FCS}/le", {"spec": {"replicas": 2}}, "application/merge-patch+json")
    wait_for(lambda: sts_replicas(api, "le") == 2, what="op-b reconciles")
    assert any("/statefulsets/le-broker" in r["path"] for r in writes_by(api, "op-b"))

    # SIGKILL: nothing is released; op-c takes over once the lease (3 s) has expired.
    c = start("op-c", FAST_LEASE)
    wait_for(lambda: c.probe("/readyz")[0] == 200, what="standby op-c ready")
    assert writes_by(api, "op-c", exclude_leases=False) == []
    b.stop(signal.SIGKILL)
    wait_for(lambda: holder(api) == "op-c", timeout=20, what="op-c takes over after expiry")
    lease = api.get(LEASE)
    assert lease["spec"]["leaseTransitions"] >= 2
    api.ok("PATCH", f"{FCS}/le", {"spec": {"replicas": 3}}, "application/merge-patch+json")
    wait_for(lambda: sts_replicas(api, "le") == 3, what="op-c reconciles")
    assert c.proc.poll() is None, c.output()

    # SIGINT (Ctrl-C) stops it the same way.
    assert c.stop(signal.SIGINT, timeout=5) == 0, c.output()
    assert "released the lease" in c.output()


def test_a_leader_renews_without_reading_and_stops_when_another_holder_writes_the_lease(env):
    """The leader renews the Lease with the resourceVersion it wrote last (PUT only, no GET);
    when someone else writes the Lease meanwhile, its renewal gets 409, it reads the Lease, sees
    the other holder, and stops (the process exits: a replica that lost leadership restarts)."""
    api, server, start = env
    a = start("op-a", FAST_LEASE)
    wait_for(lambda: holder(api) == "op-a", what="op-a leads")
    api.control(action="reset_requests")
    time.sleep(3)  # six retry periods of 0.5 s
    lease_requests = [r for r in api.requests() if "/leases/" in r["path"] and "op-a" in (r["userAgent"] or "")]
    assert [r["method"] for r in lease_requests].count("PUT") >= 4, lease_requests
    assert [r for r in lease_requests if r["method"] == "GET"] == [], "a leader renews without reading first"

    # Another holder takes the Lease. Its write races the leader's renewals (every 0.5 s): on a
    # 409 it reads the Lease again and retries, as any writer with optimistic concurrency does.
    for _ in range(20):
        lease = api.get(LEASE)
        lease["spec"]["holderIdentity"] = "intruder"
        lease["spec"]["leaseDurationSeconds"] = 60
        code, _ = api.req("PUT", LEASE, lease)
        if code == 409:
            continue
        assert 200 <= code < 300, code
        break
    else:
        raise AssertionError("the intruder's write lost 20 races with the leader's renewals")
    began = time.monotonic()
    wait_for(lambda: a.proc.poll() is not None, timeout=10, what="op-a stops after losing the lease")
    assert time.monotonic() - began < 5
    assert "lost leadership" in a.output(), a.output()[-2000:]
    assert holder(api) == "intruder", "the stopped leader did not write the lease back"


def test_a_restarted_operator_writes_nothing_when_nothing_changed(env):
    """List responses carry no kind/apiVersion for built-in objects (as a real API server
    sends them); a restarted operator must still see its objects as unchanged."""
    api, server, start = env
    a = start("op-first")
    api.ok("POST", FCS, cluster("calm", replicas=2, config={"num.partitions": "3"}))
    wait_for(lambda: ready(api, "calm"), what="Ready")
    assert a.stop(signal.SIGTERM, timeout=5) == 0, a.output()
    b = start("op-second")
    wait_for(lambda: b.probe("/readyz")[0] == 200, what="op-second ready")
    wait_for(lambda: any("(op-second)" in r["userAgent"] and "/floeclusters" in r["path"] for r in api.requests()),
             what="op-second listed the clusters")
    # A measurement window, not synchronisation: several reconcile passes happen in it.
    time.sleep(3)
    writes = [(r["verb"], r["path"]) for r in writes_by(api, "op-second")]
    assert writes == [], writes


def events_of(api, name, reason=None):
    return [e for e in api.ok("GET", f"/api/v1/namespaces/{NS}/events")["items"]
            if e["involvedObject"]["name"] == name and e["involvedObject"]["kind"] == "FloeCluster"
            and (reason is None or e["reason"] == reason)]


def test_a_repeated_failure_is_one_warning_event_whose_count_grows(env):
    """The same failure over several passes is one Event with a growing count, not an Event
    object per pass (client-go's EventCorrelator, in ControllerRuntime.EventRecorder)."""
    api, server, start = env
    op = start("op-a")
    # The StatefulSet's apply fails six times: six passes end Degraded/SyncFailed with the
    # same message (each failing pass stops at that apply), the seventh succeeds.
    api.control(action="fail", path=f"{STSS}/flaky-broker", method="PATCH", code=500, count=6, reason="InternalError",
                message="etcd is having a bad day")
    api.ok("POST", FCS, cluster("flaky", replicas=1))
    fc = wait_for(lambda: ready(api, "flaky"), what="Ready once the apply succeeds")
    assert condition(fc, "Degraded")["status"] == "False"
    warnings = events_of(api, "flaky", "SyncFailed")
    assert len(warnings) == 1, warnings
    w = warnings[0]
    assert w["type"] == "Warning" and w["count"] == 6, w
    assert "etcd is having a bad day" in w["message"] and w["message"].startswith("Applying the rendered objects failed: ")
    assert w["firstTimestamp"] <= w["lastTimestamp"]
    assert w["source"]["component"] == "floe-operator" and w["involvedObject"]["uid"] == fc["metadata"]["uid"]
    # Counted by patches, not by new objects.
    event_writes = [r for r in writes_by(api, "op-a") if "/events" in r["path"]]
    patches = [r for r in event_writes if r["verb"] == "patch" and r["path"] == f"/api/v1/namespaces/{NS}/events/{w['metadata']['name']}"]
    assert len(patches) == 5, event_writes
    # Each other Event (Created ConfigMap, Services, StatefulSet, PDB) is one object too.
    created = events_of(api, "flaky", "Created")
    assert sorted(e["message"] for e in created) == sorted({e["message"] for e in created})
    assert op.proc.poll() is None, op.output()


PODS = f"/api/v1/namespaces/{NS}/pods"


def pod_uids(api, prefix):
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in api.ok("GET", PODS)["items"]
            if p["metadata"]["name"].startswith(prefix)}


def claim_of(sts):
    return [(c["metadata"]["name"], c["spec"]["resources"]["requests"]["storage"], c["spec"].get("storageClassName"))
            for c in sts["spec"].get("volumeClaimTemplates") or []]


def test_an_immutable_statefulset_change_recreates_it_and_keeps_the_pods(env):
    """Changing the WAL volume (volumeClaimTemplates, immutable: the API server answers 422)
    re-creates the StatefulSet as Strimzi does: deleted with propagationPolicy Orphan, so the
    broker pods keep running, then applied again; the new StatefulSet adopts them."""
    api, server, start = env
    op = start("op-a")
    api.ok("POST", FCS, cluster("wal", replicas=2, storage={"bucket": "file:///tmp/floe-data",
                                                             "wal": {"kind": "file", "volumeSize": "1Gi"}}))
    wait_for(lambda: ready(api, "wal"), what="Ready with the file WAL")
    before = api.get(f"{STSS}/wal-broker")
    assert claim_of(before) == [("wal", "1Gi", None)]
    pods = pod_uids(api, "wal-broker-")
    assert sorted(pods) == ["wal-broker-0", "wal-broker-1"]
    seen = len(api.requests())

    # A bigger WAL volume: the StatefulSet is re-created with the new claim template.
    api.ok("PATCH", f"{FCS}/wal", {"spec": {"storage": {"wal": {"volumeSize": "2Gi"}}}}, "application/merge-patch+json")
    after = wait_for(lambda: (lambda s: s if s and s["metadata"]["uid"] != before["metadata"]["uid"] else None)(
        api.get(f"{STSS}/wal-broker")), what="StatefulSet re-created")
    assert claim_of(after) == [("wal", "2Gi", None)]
    fc = wait_for(lambda: ready(api, "wal"), what="Ready at generation 2")
    assert fc["metadata"]["generation"] == 2 and fc["status"]["readyReplicas"] == 2
    assert condition(fc, "Degraded")["status"] == "False"
    # The pods were not deleted (same uids), and the new StatefulSet owns them now.
    assert pod_uids(api, "wal-broker-") == pods
    for name in pods:
        refs = api.get(f"{PODS}/{name}")["metadata"]["ownerReferences"]
        assert [(r["kind"], r["uid"], r["controller"]) for r in refs] == [("StatefulSet", after["metadata"]["uid"], True)]
    # What the operator did: one refused apply, one delete of the StatefulSet (no pod deleted),
    # one apply that created it again; and no pass ended SyncFailed.
    mine = [(r["method"], r["path"], r["code"]) for r in api.requests()[seen:] if "(op-a)" in r["userAgent"]
            and r["path"].startswith(STSS) or ("(op-a)" in r["userAgent"] and r["path"].startswith(PODS))]
    assert [m for m in mine if m[0] != "GET"] == [("PATCH", f"{STSS}/wal-broker", 422), ("DELETE", f"{STSS}/wal-broker", 200),
                                                  ("PATCH", f"{STSS}/wal-broker", 201)], mine
    assert events_of(api, "wal", "SyncFailed") == []
    recreated = events_of(api, "wal", "Recreated")
    assert [(e["type"], e["message"], e["count"]) for e in recreated] == [
        ("Normal", "StatefulSet wal-broker re-created: immutable field changed; pods kept", 1)]

    # Another storage class: re-created again, counted on the same Event.
    api.ok("PATCH", f"{FCS}/wal", {"spec": {"storage": {"wal": {"storageClassName": "fast"}}}}, "application/merge-patch+json")
    third = wait_for(lambda: (lambda s: s if s and s["metadata"]["uid"] != after["metadata"]["uid"] else None)(
        api.get(f"{STSS}/wal-broker")), what="StatefulSet re-created for the storage class")
    assert claim_of(third) == [("wal", "2Gi", "fast")]
    wait_for(lambda: ready(api, "wal"), what="Ready at generation 3")
    assert pod_uids(api, "wal-broker-") == pods
    assert [e["count"] for e in events_of(api, "wal", "Recreated")] == [2]

    # The object WAL: no claims, and the pod template loses the WAL mount, so after the
    # re-creation the adopted pods are rolled as after any template change.
    api.ok("PATCH", f"{FCS}/wal", {"spec": {"storage": {"wal": {"kind": "object", "volumeSize": None, "storageClassName": None}}}},
           "application/merge-patch+json")
    fourth = wait_for(lambda: (lambda s: s if s and s["metadata"]["uid"] != third["metadata"]["uid"] else None)(
        api.get(f"{STSS}/wal-broker")), what="StatefulSet re-created for the object WAL")
    assert claim_of(fourth) == []
    wait_for(lambda: ready(api, "wal"), what="Ready at generation 4")
    rolled = pod_uids(api, "wal-broker-")
    assert sorted(rolled) == sorted(pods) and all(rolled[n] != pods[n] for n in pods)
    assert events_of(api, "wal", "SyncFailed") == []
    assert op.proc.poll() is None, op.output()
