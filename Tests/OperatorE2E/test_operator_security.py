"""End-to-end: a secured FloeCluster (TLS + SCRAM listener, users from Secrets, ACLs) with the real
`floe-operator run` binary against the Python fake API server (docs/operator.md, Security).

What it shows: the operator checks the Secrets the spec names (a missing one is a Degraded
condition naming it), creates `<cluster>-operator-credentials` once, renders `<cluster>-users` and
mounts it with the TLS Secret; the properties carry the contract's settings and no password
appears outside the two Secrets; a rotated certificate changes nothing in the pod template while
a changed password rolls it; turning SASL off removes the users Secret. Every wait polls a
condition with a deadline; "nothing changed" is checked after a pass that provably read the
rotated Secret (the fake's request log), not after a sleep.

Run: python3 -m pytest -q Tests/OperatorE2E/test_operator_security.py
"""
from __future__ import annotations

import base64
import json

from conftest import FC_API, wait_for

NS = "apps"
FCS = f"{FC_API}/namespaces/{NS}/floeclusters"
CMS = f"/api/v1/namespaces/{NS}/configmaps"
SECRETS = f"/api/v1/namespaces/{NS}/secrets"
STSS = f"/apis/apps/v1/namespaces/{NS}/statefulsets"
RESYNC = ["--resync-period=1"]   # Secrets are not watched: a password change is seen on the next pass


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def unb64(s: str) -> str:
    return base64.b64decode(s).decode()


def secret(name, data, type_="Opaque"):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": type_,
            "data": {k: b64(v) for k, v in data.items()}}


def tls_secret(name, serial):
    # The operator only checks the keys; the brokers (not run here) read the content.
    return secret(name, {"tls.crt": f"-----BEGIN CERTIFICATE-----\nserial {serial}\n-----END CERTIFICATE-----\n",
                         "tls.key": f"-----BEGIN PRIVATE KEY-----\nkey {serial}\n-----END PRIVATE KEY-----\n",
                         "ca.crt": "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"}, "kubernetes.io/tls")


def secured(name):
    return {"apiVersion": "floe.dev/v1alpha1", "kind": "FloeCluster", "metadata": {"name": name},
            "spec": {"replicas": 2, "storage": {"bucket": "file:///tmp/floe-data"},
                     "listeners": {"tls": {"secretName": f"{name}-tls"}, "authentication": {"type": "scram-sha-512"}},
                     "users": [{"name": "orders-app", "passwordSecret": {"name": "orders-pw", "key": "password"}}],
                     "authorization": {"type": "acl", "superUsers": ["User:admin"]}}}


def condition(obj, type_):
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c
    return None


def degraded_with(api, name, text):
    fc = api.get(f"{FCS}/{name}")
    c = condition(fc, "Degraded")
    return fc if c and c["status"] == "True" and text in c["message"] else None


def template(api, name):
    sts = api.get(f"{STSS}/{name}-broker")
    return sts and sts["spec"]["template"]


def users_hash(api, name):
    t = template(api, name)
    return t and t["metadata"].get("annotations", {}).get("floe.dev/users-hash")


def secret_reads_since(api, path, since):
    return [r for r in api.requests()[since:] if r["verb"] == "get" and r["path"] == path]


def test_a_secured_cluster_gets_its_secrets_mounts_and_settings(env):
    api, server, start = env
    start("op-a", RESYNC)
    api.ok("POST", SECRETS, tls_secret("sec-tls", 1))
    api.ok("POST", FCS, secured("sec"))

    # The password Secret is missing: Degraded names it; nothing is rendered.
    fc = wait_for(lambda: degraded_with(api, "sec", "Secret orders-pw"), what="Degraded naming the missing Secret")
    assert "spec.users[0].passwordSecret" in condition(fc, "Degraded")["message"]
    assert api.get(f"{STSS}/sec-broker") is None

    api.ok("POST", SECRETS, secret("orders-pw", {"password": "orders-1"}))
    creds = wait_for(lambda: api.get(f"{SECRETS}/sec-operator-credentials"), what="operator credentials created")
    users = wait_for(lambda: api.get(f"{SECRETS}/sec-users"), what="users Secret rendered")
    uid = api.get(f"{FCS}/sec")["metadata"]["uid"]
    for s in (creds, users):
        assert [r["uid"] for r in s["metadata"]["ownerReferences"]] == [uid]
        assert s["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "floe-operator"
    op_pw, broker_pw = unb64(creds["data"]["floe-operator"]), unb64(creds["data"]["floe-broker"])
    assert len(op_pw) == 64 and len(broker_pw) == 64 and op_pw != broker_pw
    lines = [l for l in unb64(users["data"]["users.txt"]).splitlines() if l and not l.startswith("#")]
    assert lines == [f"floe-broker:{broker_pw}", f"floe-operator:{op_pw}", "orders-app:orders-1"]

    sts = wait_for(lambda: api.get(f"{STSS}/sec-broker"), what="StatefulSet rendered")
    spec = sts["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "sec-tls"
    assert volumes["users"]["secret"]["secretName"] == "sec-users"
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["tls"] == {"name": "tls", "mountPath": "/var/run/secrets/floe/tls", "readOnly": True}
    assert mounts["users"] == {"name": "users", "mountPath": "/var/run/secrets/floe/users", "readOnly": True}
    props = api.get(f"{CMS}/sec-config")["data"]["broker.properties"]
    for line in ["security.protocol=SASL_SSL", "ssl.certificate.file=/var/run/secrets/floe/tls/tls.crt",
                 "ssl.key.file=/var/run/secrets/floe/tls/tls.key", "inter.broker.ssl.ca.file=/var/run/secrets/floe/tls/ca.crt",
                 "sasl.users.file=/var/run/secrets/floe/users/users.txt", "inter.broker.user=floe-broker",
                 "sasl.enabled.mechanisms=SCRAM-SHA-512", "authorizer=acl",
                 "super.users=User:floe-broker;User:floe-operator;User:admin"]:
        assert line in props.splitlines(), (line, props)
    # Passwords appear in the two Secrets only: not in the ConfigMap, the StatefulSet, the status or Events.
    fc = api.get(f"{FCS}/sec")
    events = api.get(f"/api/v1/namespaces/{NS}/events")
    for text in (props, json.dumps(sts), json.dumps(fc), json.dumps(events)):
        for pw in (op_pw, broker_pw, "orders-1"):
            assert pw not in text

    # A rotated certificate: the next pass reads the Secret and leaves the pod template alone.
    before = template(api, "sec")
    generation = api.get(f"{STSS}/sec-broker")["metadata"]["generation"]
    mark = len(api.requests())
    rotated = tls_secret("sec-tls", 2)
    rotated["metadata"]["resourceVersion"] = api.get(f"{SECRETS}/sec-tls")["metadata"]["resourceVersion"]
    api.ok("PUT", f"{SECRETS}/sec-tls", rotated)
    wait_for(lambda: len(secret_reads_since(api, f"{SECRETS}/sec-tls", mark)) >= 2, what="two passes read the rotated Secret")
    assert template(api, "sec") == before
    assert api.get(f"{STSS}/sec-broker")["metadata"]["generation"] == generation

    # A changed password rolls the brokers (the users hash changes) and rewrites the users Secret;
    # the operator's own credentials stay as they were.
    old_hash = users_hash(api, "sec")
    pw = api.get(f"{SECRETS}/orders-pw")
    pw["data"] = {"password": b64("orders-2")}
    api.ok("PUT", f"{SECRETS}/orders-pw", pw)
    wait_for(lambda: users_hash(api, "sec") not in (None, old_hash), what="users hash changes")
    assert "orders-app:orders-2" in unb64(api.get(f"{SECRETS}/sec-users")["data"]["users.txt"]).splitlines()
    assert api.get(f"{SECRETS}/sec-operator-credentials")["metadata"]["resourceVersion"] == creds["metadata"]["resourceVersion"]

    # SASL off: the users Secret goes, the volume with it; the credentials stay (owned: collected with the cluster).
    mark = len(api.requests())
    api.ok("PATCH", f"{FCS}/sec", {"spec": {"listeners": {"authentication": None}, "users": None, "authorization": None}},
           "application/merge-patch+json")
    wait_for(lambda: api.get(f"{SECRETS}/sec-users") is None, what="users Secret deleted")
    assert "users" not in {v["name"] for v in template(api, "sec")["spec"]["volumes"]}
    # In that order: the StatefulSet stops mounting the Secret before it is deleted (a pod made
    # from the old template in between must still find it).
    since = api.requests()[mark:]
    deleted = next(i for i, r in enumerate(since) if r["verb"] == "delete" and r["path"] == f"{SECRETS}/sec-users")
    assert any(r["verb"] in ("put", "patch") and r["path"] == f"{STSS}/sec-broker" for r in since[:deleted]), since[:deleted + 1]
    assert "security.protocol=SSL" in api.get(f"{CMS}/sec-config")["data"]["broker.properties"].splitlines()
    assert api.get(f"{SECRETS}/sec-operator-credentials") is not None


def test_invalid_security_specs_are_conditions(env):
    api, server, start = env
    start("op-a")
    bad = secured("bad")
    bad["spec"]["listeners"]["authentication"] = {"type": "tls"}
    api.ok("POST", FCS, bad)
    fc = wait_for(lambda: degraded_with(api, "bad", "not supported on the internal listener"), what="Degraded/InvalidSpec")
    assert condition(fc, "Degraded")["reason"] == "InvalidSpec"
    assert api.get(f"{SECRETS}/bad-operator-credentials") is None   # nothing is created for an invalid spec

    # clientAuth without a CA (the CRD's CEL rule says so too; the fake does not evaluate CEL).
    noca = secured("noca")
    noca["spec"]["listeners"]["tls"]["clientAuth"] = "required"
    api.ok("POST", FCS, noca)
    wait_for(lambda: degraded_with(api, "noca", "clientAuth required needs spec.listeners.tls.caSecretName"),
             what="Degraded naming caSecretName")
