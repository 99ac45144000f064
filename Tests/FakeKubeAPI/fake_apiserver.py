#!/usr/bin/env python3
"""A fake Kubernetes API server for Floe's operator tests.

Written against the documented Kubernetes REST semantics, independently of the operator's
Swift client, so that the two cannot share a misunderstanding. Standard library only.

Run:   python3 fake_apiserver.py --port 0 --port-file PATH [--tls-dir DIR] [--token TOKEN]
                                 [--history N] [--simulate-workloads] [--bookmark-interval S]
Import: FakeAPIServer(...).start() / .stop(), plus fault-injection helpers.

Invariants kept by the store (see docs/fake-apiserver.md for the full list):
- one global resourceVersion counter; every committed write (create, update, delete) takes the
  next value, and a write that changes nothing commits nothing (no new resourceVersion, no event);
- the event history holds the most recent `history` events; `floor` is the newest
  resourceVersion that is no longer resumable: a watch/exact list at RV >= floor is served,
  an older one gets 410 Expired;
- every committed event is offered to every open watch, under the store lock, in RV order.
"""
from __future__ import annotations

import argparse
import base64
import copy
import datetime
import hashlib
import http.server
import json
import os
import queue
import random
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import deque

# ----------------------------------------------------------------------------------------------
# Errors as Kubernetes Status objects
# ----------------------------------------------------------------------------------------------


class APIError(Exception):
    """An error answered as a Kubernetes `Status` object (kind Status, status Failure)."""

    def __init__(self, code, reason, message, details=None, headers=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self):
        st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            st["details"] = self.details
        return st


REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
           405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict", 410: "Expired",
           413: "RequestEntityTooLarge", 415: "UnsupportedMediaType", 422: "Invalid",
           429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
           504: "Timeout"}


def bad_request(msg):
    return APIError(400, "BadRequest", msg)


def invalid(rt, name, field, msg):
    return APIError(422, "Invalid", f'{rt.kind} "{name}" is invalid: {field}: {msg}',
                    {"name": name, "group": rt.group, "kind": rt.kind,
                     "causes": [{"reason": "FieldValueInvalid", "message": msg, "field": field}]})


# apps/v1 StatefulSet validation: the only spec fields an update may change (Kubernetes 1.30).
STATEFULSET_MUTABLE_SPEC = ("replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit",
                            "persistentVolumeClaimRetentionPolicy", "minReadySeconds")
STATEFULSET_FORBIDDEN = ("Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                         "'template', 'updateStrategy', 'revisionHistoryLimit', "
                         "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")


def check_immutable(rt, old, new):
    """Rejects an update of an immutable field as a real API server does (422 Invalid with a
    FieldValueForbidden cause). Only the StatefulSet spec rule is modelled."""
    if rt.gk != ("apps", "statefulsets"):
        return

    def fixed(o):
        return {k: v for k, v in (o.get("spec") or {}).items() if k not in STATEFULSET_MUTABLE_SPEC}
    if fixed(new) != fixed(old):
        name = old["metadata"]["name"]
        raise APIError(422, "Invalid", f'{rt.kind}.{rt.group} "{name}" is invalid: spec: {STATEFULSET_FORBIDDEN}',
                       {"name": name, "group": rt.group, "kind": rt.kind,
                        "causes": [{"reason": "FieldValueForbidden", "message": STATEFULSET_FORBIDDEN,
                                    "field": "spec"}]})


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------------------------
# Resource types
# ----------------------------------------------------------------------------------------------


def parse_json_path(p):
    """'.spec.replicas' -> ('spec', 'replicas')."""
    if not p:
        return None
    return tuple(x for x in p.strip().split(".") if x)


class ResourceType:
    """One served resource (group, version, plural). Storage is keyed by (group, plural), so
    every served version of a CRD shares its objects (no conversion: objects are relabelled)."""

    def __init__(self, group, version, plural, kind, namespaced, *, singular=None,
                 short_names=(), status=False, scale=None, builtin=True, crd_name=None):
        self.group = group
        self.version = version
        self.plural = plural
        self.kind = kind
        self.namespaced = namespaced
        self.singular = singular or kind.lower()
        self.short_names = list(short_names)
        self.status = status          # has a status subresource
        self.scale = scale            # None, "apps", or (spec_path, status_path, selector_path)
        self.builtin = builtin
        self.crd_name = crd_name

    @property
    def api_version(self):
        return self.version if self.group == "" else f"{self.group}/{self.version}"

    @property
    def gk(self):
        return (self.group, self.plural)

    @property
    def ref(self):
        """How Kubernetes names the resource in messages: 'configmaps', 'statefulsets.apps'."""
        return self.plural if self.group == "" else f"{self.plural}.{self.group}"

    @property
    def tracks_generation(self):
        return self.status or not self.builtin

    # Custom resources reject unconditional PUT (no metadata.resourceVersion), built-ins allow it.
    @property
    def allow_unconditional_update(self):
        return self.builtin

    def not_found(self, name):
        return APIError(404, "NotFound", f'{self.ref} "{name}" not found',
                        {"name": name, "group": self.group, "kind": self.plural})


def _pb_field(number, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2); payloads here are under 128 bytes."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


# openapi_v2.Document{swagger: "2.0", info: {title: "floe-fake-apiserver", version: "v1"}, paths: {}}
_EMPTY_OPENAPI_V2 = (_pb_field(1, b"2.0")
                     + _pb_field(2, _pb_field(1, b"floe-fake-apiserver") + _pb_field(2, b"v1"))
                     + _pb_field(8, b""))


def builtin_types():
    T = ResourceType
    return [
        T("", "v1", "namespaces", "Namespace", False, short_names=["ns"], status=True),
        T("", "v1", "configmaps", "ConfigMap", True, short_names=["cm"]),
        T("", "v1", "services", "Service", True, short_names=["svc"], status=True),
        T("", "v1", "secrets", "Secret", True),
        T("", "v1", "pods", "Pod", True, short_names=["po"], status=True),
        T("", "v1", "events", "Event", True, short_names=["ev"]),
        T("", "v1", "serviceaccounts", "ServiceAccount", True, short_names=["sa"]),
        T("apps", "v1", "statefulsets", "StatefulSet", True, short_names=["sts"], status=True,
          scale="apps"),
        T("apps", "v1", "deployments", "Deployment", True, short_names=["deploy"], status=True,
          scale="apps"),
        T("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True,
          short_names=["pdb"], status=True),
        T("coordination.k8s.io", "v1", "leases", "Lease", True),
        T("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
        T("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
        T("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
        T("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
        T("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
          False, short_names=["crd", "crds"], status=True),
    ]


# ----------------------------------------------------------------------------------------------
# Selectors
# ----------------------------------------------------------------------------------------------

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"


def _split_top(s):
    out, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [x.strip() for x in out if x.strip()]


def parse_label_selector(s):
    """Equality- and set-based selector string -> list of (op, key, values)."""
    reqs = []
    for term in _split_top(s or ""):
        m = re.fullmatch(rf"({_KEY})\s+(in|notin)\s+\(([^)]*)\)", term)
        if m:
            vals = {v.strip() for v in m.group(3).split(",") if v.strip()}
            reqs.append((m.group(2), m.group(1), vals))
            continue
        m = re.fullmatch(rf"!\s*({_KEY})", term)
        if m:
            reqs.append(("!", m.group(1), None))
            continue
        m = re.fullmatch(rf"({_KEY})\s*(!=|==|=)\s*([-A-Za-z0-9_.]*)", term)
        if m:
            reqs.append(("!=" if m.group(2) == "!=" else "=", m.group(1), m.group(3)))
            continue
        if re.fullmatch(_KEY, term):
            reqs.append(("exists", term, None))
            continue
        raise bad_request(f"unable to parse requirement: {term!r} in labelSelector {s!r}")
    return reqs


def labels_match(reqs, labels):
    labels = labels or {}
    for op, key, val in reqs:
        if op == "=" and labels.get(key) != val:
            return False
        if op == "!=" and labels.get(key) == val:
            return False
        if op == "in" and labels.get(key) not in val:
            return False
        if op == "notin" and key in labels and labels[key] in val:
            return False
        if op == "exists" and key not in labels:
            return False
        if op == "!" and key in labels:
            return False
    return True


def selector_string(sel):
    """LabelSelector object (matchLabels/matchExpressions) -> selector string."""
    if not sel:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        op, key, vals = e.get("operator"), e.get("key"), e.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(vals))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(vals))})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


FIELD_SELECTABLE = ("metadata.name", "metadata.namespace")


def parse_field_selector(s):
    reqs = []
    for term in _split_top(s or ""):
        m = re.fullmatch(r"([A-Za-z.]+)\s*(!=|==|=)\s*(.*)", term)
        if not m:
            raise bad_request(f"invalid field selector term {term!r}")
        if m.group(1) not in FIELD_SELECTABLE:
            raise bad_request(f'field label not supported: {m.group(1)} (this fake supports '
                              f'{", ".join(FIELD_SELECTABLE)})')
        reqs.append((m.group(1), m.group(2) != "!=", m.group(3)))
    return reqs


def fields_match(reqs, obj):
    md = obj.get("metadata", {})
    for field, eq, val in reqs:
        actual = md.get(field.split(".", 1)[1], "")
        if (actual == val) != eq:
            return False
    return True


# ----------------------------------------------------------------------------------------------
# Patches
# ----------------------------------------------------------------------------------------------


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes, anything else replaces
    (lists included)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer {path!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc, ops):
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    doc = copy.deepcopy(doc)
    if not isinstance(ops, list):
        raise ValueError("a JSON patch must be a list of operations")

    def parent(tokens):
        cur = doc
        for t in tokens[:-1]:
            cur = cur[int(t)] if isinstance(cur, list) else cur[t]
        return cur

    def get(tokens):
        cur = doc
        for t in tokens:
            cur = cur[int(t)] if isinstance(cur, list) else cur[t]
        return cur

    def remove(tokens):
        p = parent(tokens)
        if isinstance(p, list):
            return p.pop(int(tokens[-1]))
        return p.pop(tokens[-1])

    def add(tokens, value):
        nonlocal doc
        if not tokens:
            doc = value
            return
        p = parent(tokens)
        if isinstance(p, list):
            if tokens[-1] == "-":
                p.append(value)
            else:
                i = int(tokens[-1])
                if i > len(p):
                    raise IndexError(i)
                p.insert(i, value)
        else:
            p[tokens[-1]] = value

    for op in ops:
        kind, path = op.get("op"), _pointer(op.get("path", ""))
        try:
            if kind == "add":
                add(path, copy.deepcopy(op["value"]))
            elif kind == "remove":
                remove(path)
            elif kind == "replace":
                get(path)
                if not path:
                    doc = copy.deepcopy(op["value"])
                else:
                    p = parent(path)
                    if isinstance(p, list):
                        p[int(path[-1])] = copy.deepcopy(op["value"])
                    else:
                        p[path[-1]] = copy.deepcopy(op["value"])
            elif kind == "move":
                add(path, remove(_pointer(op["from"])))
            elif kind == "copy":
                add(path, copy.deepcopy(get(_pointer(op["from"]))))
            elif kind == "test":
                if get(path) != op.get("value"):
                    raise ValueError(f"test operation failed at {op.get('path')}")
            else:
                raise ValueError(f"unknown JSON patch op {kind!r}")
        except (KeyError, IndexError, TypeError) as e:
            raise ValueError(f"JSON patch op {op} failed: {e!r}") from None
    return doc


# ----------------------------------------------------------------------------------------------
# Field ownership (a minimal server-side apply)
# ----------------------------------------------------------------------------------------------

META_SYSTEM = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
               "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink",
               "generateName"}
MISSING = object()


def _leaves(v, path, out):
    if isinstance(v, dict) and v:
        for k, sub in v.items():
            _leaves(sub, path + (k,), out)
    else:
        out[path] = v


def field_leaves(obj, scope):
    """Leaf paths -> values of the fields a manager can own. Maps are walked; lists and
    scalars (and empty maps) are leaves, i.e. lists are atomic. scope: 'all', 'nostatus'
    (main resource of a type with a status subresource), 'status'."""
    out = {}
    for k, v in (obj or {}).items():
        if k in ("apiVersion", "kind"):
            continue
        if scope == "status" and k != "status":
            continue
        if scope == "nostatus" and k == "status":
            continue
        if k == "metadata" and isinstance(v, dict):
            for mk, mv in v.items():
                if mk not in META_SYSTEM:
                    _leaves(mv, ("metadata", mk), out)
        else:
            _leaves(v, (k,), out)
    return out


def get_path(obj, path):
    cur = obj
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return MISSING
        cur = cur[p]
    return cur


def set_path(obj, path, value):
    cur = obj
    for p in path[:-1]:
        if not isinstance(cur.get(p), dict):
            cur[p] = {}
        cur = cur[p]
    cur[path[-1]] = copy.deepcopy(value)


def del_path(obj, path):
    cur = obj
    for p in path[:-1]:
        if not isinstance(cur, dict) or p not in cur:
            return
        cur = cur[p]
    if isinstance(cur, dict):
        cur.pop(path[-1], None)


def _prefixes(paths):
    out = set()
    for p in paths:
        for i in range(1, len(p) + 1):
            out.add(p[:i])
    return out


def related(q, paths, prefixes):
    """q equals, is an ancestor of, or is a descendant of one of `paths`."""
    if q in prefixes:
        return True
    return any(q[:i] in paths for i in range(1, len(q)))


def render_fields(paths):
    root = {}
    for p in sorted(paths):
        cur = root
        for k in p:
            cur = cur.setdefault("f:" + k, {})
    return root


def parse_fields(fv1, prefix=()):
    out = set()
    for k, v in (fv1 or {}).items():
        if not k.startswith("f:"):
            continue
        path = prefix + (k[2:],)
        if v:
            out |= parse_fields(v, path)
        else:
            out.add(path)
    return out


def read_managers(obj):
    out = []
    for e in obj.get("metadata", {}).get("managedFields") or []:
        out.append({"manager": e.get("manager", ""), "operation": e.get("operation", "Update"),
                    "subresource": e.get("subresource", ""), "apiVersion": e.get("apiVersion"),
                    "time": e.get("time"), "paths": parse_fields(e.get("fieldsV1"))})
    return out


def write_managers(obj, managers):
    entries = []
    for m in managers:
        if not m["paths"]:
            continue
        e = {"manager": m["manager"], "operation": m["operation"], "apiVersion": m["apiVersion"],
             "time": m["time"], "fieldsType": "FieldsV1", "fieldsV1": render_fields(m["paths"])}
        if m["subresource"]:
            e["subresource"] = m["subresource"]
        entries.append(e)
    md = obj.setdefault("metadata", {})
    if entries:
        md["managedFields"] = entries
    else:
        md.pop("managedFields", None)


def _find_manager(managers, name, operation, subresource, api_version):
    for m in managers:
        if m["manager"] == name and m["operation"] == operation and m["subresource"] == subresource:
            return m
    m = {"manager": name, "operation": operation, "subresource": subresource,
         "apiVersion": api_version, "time": now_rfc3339(), "paths": set()}
    managers.append(m)
    return m


def track_update(old, new, manager, subresource, scope, api_version):
    """Ownership after an Update operation (create, PUT, non-apply PATCH): the manager takes the
    fields whose values it changed; other managers lose them; removed fields lose all owners."""
    managers = read_managers(old) if old else []
    old_l = field_leaves(old, scope) if old else {}
    new_l = field_leaves(new, scope)
    changed = {p for p in set(old_l) | set(new_l) if old_l.get(p, MISSING) != new_l.get(p, MISSING)}
    if changed:
        pref = _prefixes(changed)
        for m in managers:
            m["paths"] = {q for q in m["paths"] if not related(q, changed, pref)}
        mine = _find_manager(managers, manager, "Update", subresource, api_version)
        mine["paths"] |= {p for p in changed if p in new_l}
        mine["time"] = now_rfc3339()
        mine["apiVersion"] = api_version
    write_managers(new, managers)


def apply_fields(current, applied, manager, force, subresource, scope, api_version):
    """Server-side apply of `applied` onto `current` (simplified; see docs). Returns the merged
    object with managedFields updated, or raises a 409 listing the conflicts."""
    managers = read_managers(current)
    A = field_leaves(applied, scope)
    changing = {p for p, v in A.items() if get_path(current, p) != v}
    pref = _prefixes(changing)
    conflicts = []
    for m in managers:
        if m["manager"] == manager and m["operation"] == "Apply" and m["subresource"] == subresource:
            continue
        for q in sorted(m["paths"]):
            if related(q, changing, pref):
                conflicts.append((m, q))
    if conflicts and not force:
        causes = [{"type": "FieldManagerConflict",
                   "message": f'conflict with "{m["manager"]}" using {m["apiVersion"]}',
                   "field": "." + ".".join(q)} for m, q in conflicts]
        n = len(conflicts)
        msg = f"Apply failed with {n} conflict{'s' if n != 1 else ''}: " + "; ".join(
            f'{c["message"]}: {c["field"]}' for c in causes)
        raise APIError(409, "Conflict", msg, {"causes": causes})
    for m, q in conflicts:
        m["paths"].discard(q)
    merged = copy.deepcopy(current)
    for p, v in A.items():
        set_path(merged, p, v)
    mine = _find_manager(managers, manager, "Apply", subresource, api_version)
    previous = set(mine["paths"])
    applied_paths = set(A)
    applied_pref = _prefixes(applied_paths)
    for q in previous - applied_paths:
        if q in applied_pref:      # now owned through a descendant
            continue
        others = [o for o in managers if o is not mine]
        if any(q in o["paths"] or any(r[:len(q)] == q for r in o["paths"]) for o in others):
            continue
        del_path(merged, q)
    if applied_paths != previous or changing:
        mine["time"] = now_rfc3339()
    mine["paths"] = applied_paths
    mine["apiVersion"] = api_version
    write_managers(merged, managers)
    return merged


# ----------------------------------------------------------------------------------------------
# Names
# ----------------------------------------------------------------------------------------------

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_NAME_TYPES = {"namespaces", "services"}


def validate_name(rt, name):
    if rt.plural in LABEL_NAME_TYPES:
        if len(name) > 63 or not DNS_LABEL.match(name):
            raise invalid(rt, name, "metadata.name",
                          f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of '
                          "lower case alphanumeric characters or '-', and must start and end "
                          "with an alphanumeric character")
    elif len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        raise invalid(rt, name, "metadata.name",
                      f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of '
                      "lower case alphanumeric characters, '-' or '.', and must start and end "
                      "with an alphanumeric character")


def random_suffix(n=5):
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


# ----------------------------------------------------------------------------------------------
# Watches
# ----------------------------------------------------------------------------------------------


class Watcher:
    """One open watch: a filter plus a queue the store feeds under its lock."""

    def __init__(self, rt, namespace, label_reqs, field_reqs):
        self.rt = rt
        self.namespace = namespace
        self.label_reqs = label_reqs
        self.field_reqs = field_reqs
        self.q = queue.Queue()

    def _matches(self, obj):
        if obj is None:
            return False
        md = obj.get("metadata", {})
        if self.namespace is not None and md.get("namespace") != self.namespace:
            return False
        return labels_match(self.label_reqs, md.get("labels")) and fields_match(self.field_reqs, obj)

    def offer(self, ev):
        if ev["gk"] != self.rt.gk:
            return
        now_m = self._matches(ev["obj"])
        if ev["type"] == "DELETED":
            if self._matches(ev["prev"]):
                self.q.put(("DELETED", ev["obj"]))
            return
        was_m = self._matches(ev["prev"]) if ev["type"] == "MODIFIED" else False
        if now_m and was_m:
            self.q.put(("MODIFIED", ev["obj"]))
        elif now_m:
            self.q.put(("ADDED", ev["obj"]))
        elif was_m:   # stopped matching the selector: the watcher sees it leave
            self.q.put(("DELETED", ev["obj"]))

    def close(self, abrupt=False):
        self.q.put(("CLOSE", abrupt))


# ----------------------------------------------------------------------------------------------
# The store and the API operations
# ----------------------------------------------------------------------------------------------


class Cluster:
    """All API state: types, objects, history, watches. Every method takes `self.lock`."""

    def __init__(self, history=1000, simulate_workloads=False):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.rv = 0
        self.floor = 0
        self.history = deque()
        self.history_limit = max(1, int(history))
        self.types = {}
        self.objects = {}
        self.watchers = set()
        self.simulate_workloads = simulate_workloads
        self.execute_pods = False
        self.controller_done_rv = -1
        self.service_ip = 10
        for rt in builtin_types():
            self._register(rt)
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create(self.type("", "v1", "namespaces"), None,
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                        manager="fake-apiserver")

    # -- types ------------------------------------------------------------------------------

    def _register(self, rt):
        self.types[(rt.group, rt.version, rt.plural)] = rt
        self.objects.setdefault(rt.gk, {})

    def type(self, group, version, plural):
        with self.lock:
            return self.types.get((group, version, plural))

    def groups(self):
        """group -> [versions] in registration order."""
        with self.lock:
            out = {}
            for (g, v, _p) in self.types:
                out.setdefault(g, [])
                if v not in out[g]:
                    out[g].append(v)
            return out

    def types_for(self, group, version):
        with self.lock:
            return [rt for (g, v, _), rt in self.types.items() if g == group and v == version]

    def _crd_types(self, crd):
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        out = []
        for ver in spec.get("versions") or []:
            if not ver.get("served", True):
                continue
            sub = ver.get("subresources") or {}
            scale = None
            if "scale" in sub:
                sc = sub["scale"] or {}
                scale = (parse_json_path(sc.get("specReplicasPath", ".spec.replicas")),
                         parse_json_path(sc.get("statusReplicasPath", ".status.replicas")),
                         parse_json_path(sc.get("labelSelectorPath")))
            out.append(ResourceType(spec["group"], ver["name"], names["plural"], names["kind"],
                                    spec.get("scope", "Namespaced") == "Namespaced",
                                    singular=names.get("singular"),
                                    short_names=names.get("shortNames") or [],
                                    status="status" in sub, scale=scale, builtin=False,
                                    crd_name=crd["metadata"]["name"]))
        return out

    def _validate_crd(self, rt, obj):
        name = obj["metadata"].get("name", "")
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        for f in ("group",):
            if not spec.get(f):
                raise invalid(rt, name, f"spec.{f}", "Required value")
        for f in ("plural", "kind"):
            if not names.get(f):
                raise invalid(rt, name, f"spec.names.{f}", "Required value")
        if name != f'{names["plural"]}.{spec["group"]}':
            raise invalid(rt, name, "metadata.name",
                          f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group')
        if spec.get("scope", "Namespaced") not in ("Namespaced", "Cluster"):
            raise invalid(rt, name, "spec.scope", "Unsupported value: must be Namespaced or Cluster")
        versions = spec.get("versions") or []
        if not versions:
            raise invalid(rt, name, "spec.versions", "Required value")
        if sum(1 for v in versions if v.get("storage")) != 1:
            raise invalid(rt, name, "spec.versions", "Invalid value: must have exactly one version "
                          "marked as storage version")
        for (g, v, p), other in self.types.items():
            if g == spec["group"] and p == names["plural"] and other.crd_name != name:
                raise invalid(rt, name, "spec.names.plural", "already served")

    def _sync_crd(self, crd, removed=False):
        name = crd["metadata"]["name"]
        for key in [k for k, rt in self.types.items() if rt.crd_name == name]:
            del self.types[key]
        if removed:
            spec = crd.get("spec", {})
            gk = (spec.get("group"), spec.get("names", {}).get("plural"))
            for key in list(self.objects.get(gk, {})):
                self._remove(gk, key)
            self.objects.pop(gk, None)
            return
        for rt in self._crd_types(crd):
            self._register(rt)

    # -- low-level commit -------------------------------------------------------------------

    def _record(self, etype, gk, key, obj, prev):
        ev = {"rv": self.rv, "type": etype, "gk": gk, "key": key, "obj": obj, "prev": prev}
        self.history.append(ev)
        while len(self.history) > self.history_limit:
            self.floor = self.history.popleft()["rv"]
        for w in list(self.watchers):
            w.offer(ev)
        self.changed.notify_all()

    def _put(self, rt, obj, prev):
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        key = (obj["metadata"].get("namespace"), obj["metadata"]["name"])
        stored = copy.deepcopy(obj)
        self.objects[rt.gk][key] = stored
        self._record("MODIFIED" if prev else "ADDED", rt.gk, key, stored, prev)
        if rt.crd_name is None and rt.plural == "customresourcedefinitions" and rt.builtin:
            self._sync_crd(stored)
        return copy.deepcopy(stored)

    def _remove(self, gk, key, final=None):
        """Deletes the stored object; the DELETED event carries `final` (default: the stored
        object) with the deletion's resourceVersion."""
        prev = self.objects[gk].pop(key)
        self.rv += 1
        gone = copy.deepcopy(final if final is not None else prev)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._record("DELETED", gk, key, gone, prev)
        if gk == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._sync_crd(prev, removed=True)
        return copy.deepcopy(gone)

    def _output(self, rt, obj):
        out = copy.deepcopy(obj)
        out["apiVersion"] = rt.api_version
        out["kind"] = rt.kind
        return out

    # -- helpers ----------------------------------------------------------------------------

    def _lookup(self, rt, ns, name):
        return self.objects[rt.gk].get((ns if rt.namespaced else None, name))

    def _check_namespace(self, rt, ns, name, creating):
        if not rt.namespaced:
            return
        nsobj = self.objects[("", "namespaces")].get((None, ns))
        if nsobj is None:
            raise APIError(404, "NotFound", f'namespaces "{ns}" not found',
                           {"name": ns, "kind": "namespaces"})
        if creating and nsobj["metadata"].get("deletionTimestamp"):
            raise APIError(403, "Forbidden",
                           f'{rt.ref} "{name}" is forbidden: unable to create new content in '
                           f"namespace {ns} because it is being terminated",
                           {"name": name, "group": rt.group, "kind": rt.plural,
                            "causes": [{"reason": "NamespaceTerminating",
                                        "message": f"namespace {ns} is being terminated",
                                        "field": "metadata.namespace"}]})

    def _check_body(self, rt, body, ns):
        if not isinstance(body, dict):
            raise bad_request(f"the body must be a JSON object describing a {rt.kind}")
        if body.get("apiVersion") not in (None, rt.api_version):
            raise bad_request(f"the API version in the data ({body.get('apiVersion')}) does not "
                              f"match the expected API version ({rt.api_version})")
        if body.get("kind") not in (None, rt.kind):
            raise bad_request(f"the kind in the data ({body.get('kind')}) does not match the "
                              f"expected kind ({rt.kind})")
        md = body.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise bad_request("metadata must be an object")
        if rt.namespaced:
            if md.get("namespace") not in (None, "", ns):
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        body["apiVersion"] = rt.api_version
        body["kind"] = rt.kind

    def _defaults(self, rt, obj, old):
        """Type-specific defaulting, run on create and on every update."""
        spec = obj.get("spec")
        p = rt.plural
        if p == "secrets":
            sd = obj.pop("stringData", None)
            if sd:
                data = obj.setdefault("data", {})
                for k, v in sd.items():
                    data[k] = base64.b64encode(str(v).encode()).decode()
            for k, v in (obj.get("data") or {}).items():
                try:
                    base64.b64decode(v, validate=True)
                except (ValueError, TypeError):
                    raise invalid(rt, obj["metadata"]["name"], f"data[{k}]",
                                  "Invalid value: not valid base64") from None
            obj.setdefault("type", "Opaque")
        elif p == "services":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            old_ip = (old or {}).get("spec", {}).get("clusterIP")
            if old_ip:
                spec["clusterIP"] = old_ip
            elif not spec.get("clusterIP"):
                self.service_ip += 1
                spec["clusterIP"] = f"10.96.{self.service_ip // 250}.{self.service_ip % 250 + 1}"
            if spec["clusterIP"] != "None":
                spec["clusterIPs"] = [spec["clusterIP"]]
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
            spec.setdefault("sessionAffinity", "None")
        elif p == "statefulsets" and isinstance(spec, dict):
            spec.setdefault("replicas", 1)
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("updateStrategy", {"type": "RollingUpdate",
                                               "rollingUpdate": {"partition": 0}})
            spec.setdefault("revisionHistoryLimit", 10)
        elif p == "deployments" and isinstance(spec, dict):
            spec.setdefault("replicas", 1)
            spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate":
                                         {"maxUnavailable": "25%", "maxSurge": "25%"}})
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
        elif p == "namespaces":
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = \
                obj["metadata"]["name"]
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj.setdefault("status", {}).setdefault("phase", "Active")
        elif p == "pods":
            obj.setdefault("status", {}).setdefault("phase", "Pending")
        elif p == "customresourcedefinitions" and rt.builtin:
            self._validate_crd(rt, obj)
            names = obj["spec"]["names"]
            names.setdefault("singular", names["kind"].lower())
            names.setdefault("listKind", names["kind"] + "List")
            obj["spec"].setdefault("scope", "Namespaced")
            st = obj.setdefault("status", {})
            ts = now_rfc3339()
            st["conditions"] = [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": ts},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": ts}]
            if old and old.get("status", {}).get("conditions"):
                st["conditions"] = old["status"]["conditions"]
            st["acceptedNames"] = copy.deepcopy(names)
            stored = [v["name"] for v in obj["spec"]["versions"] if v.get("storage")]
            prev = (old or {}).get("status", {}).get("storedVersions") or []
            st["storedVersions"] = sorted(set(prev) | set(stored))

    @staticmethod
    def _spec_view(obj):
        return {k: v for k, v in obj.items() if k not in ("metadata", "status")}

    # -- reads ------------------------------------------------------------------------------

    def get(self, rt, ns, name):
        with self.lock:
            obj = self._lookup(rt, ns, name)
            if obj is None:
                raise rt.not_found(name)
            return self._output(rt, obj)

    def _snapshot(self, gk, rv):
        """The objects of `gk` as they were at resourceVersion rv (needs rv >= floor)."""
        state = dict(self.objects.get(gk, {}))
        for ev in reversed(self.history):
            if ev["rv"] <= rv:
                break
            if ev["gk"] != gk:
                continue
            if ev["type"] == "ADDED":
                state.pop(ev["key"], None)
            else:
                state[ev["key"]] = ev["prev"]
        return state

    def _too_old(self, rv):
        return APIError(410, "Expired", f"too old resource version: {rv} ({self.floor + 1})")

    def list(self, rt, ns, params):
        with self.lock:
            label_reqs = parse_label_selector(params.get("labelSelector"))
            field_reqs = parse_field_selector(params.get("fieldSelector"))
            limit = int(params.get("limit") or 0)
            cont = params.get("continue")
            rv_param = params.get("resourceVersion", "")
            match = params.get("resourceVersionMatch", "")
            start_after = None
            if cont:
                try:
                    tok = json.loads(base64.urlsafe_b64decode(cont.encode()).decode())
                    at_rv, start_after = int(tok["rv"]), tuple(tok["start"])
                except (ValueError, KeyError, TypeError):
                    raise bad_request(f"continue key is not valid: {cont!r}") from None
                if at_rv < self.floor:
                    raise APIError(410, "Expired",
                                   "The provided continue parameter is too old to display a "
                                   "consistent list result. You can start a new list without "
                                   "the continue parameter.")
            elif rv_param not in ("", "0") and (match == "Exact" or (not match and limit > 0)):
                at_rv = self._parse_rv(rv_param)
                if at_rv > self.rv:
                    raise self._too_large(at_rv)
                if at_rv < self.floor:
                    raise self._too_old(at_rv)
            else:
                if rv_param not in ("", "0") and self._parse_rv(rv_param) > self.rv:
                    raise self._too_large(rv_param)
                at_rv = self.rv
            state = self._snapshot(rt.gk, at_rv) if at_rv != self.rv else self.objects[rt.gk]
            keys = sorted(k for k, o in state.items()
                          if (ns is None or k[0] == ns)
                          and labels_match(label_reqs, o["metadata"].get("labels"))
                          and fields_match(field_reqs, o))
            if start_after is not None:
                keys = [k for k in keys if (k[0] or "", k[1]) > (start_after[0] or "", start_after[1])]
            page = keys[:limit] if limit > 0 else keys
            items = []
            for k in page:
                item = copy.deepcopy(state[k])
                if rt.builtin:    # built-in list items carry no apiVersion/kind, CR items do
                    item.pop("apiVersion", None)
                    item.pop("kind", None)
                else:
                    item["apiVersion"], item["kind"] = rt.api_version, rt.kind
                items.append(item)
            meta = {"resourceVersion": str(at_rv)}
            if limit > 0 and len(keys) > limit:
                last = page[-1]
                meta["continue"] = base64.urlsafe_b64encode(json.dumps(
                    {"rv": at_rv, "start": [last[0], last[1]]}).encode()).decode()
                if not label_reqs and not field_reqs:
                    meta["remainingItemCount"] = len(keys) - limit
            return {"kind": rt.kind + "List", "apiVersion": rt.api_version, "metadata": meta,
                    "items": items}

    def _parse_rv(self, v):
        try:
            return int(v)
        except (TypeError, ValueError):
            raise bad_request(f"invalid resource version: {v!r}") from None

    def _too_large(self, rv):
        return APIError(504, "Timeout", f"Too large resource version: {rv}, current: {self.rv}",
                        {"causes": [{"reason": "ResourceVersionTooLarge",
                                     "message": "Too large resource version"}],
                         "retryAfterSeconds": 1})

    # -- writes -----------------------------------------------------------------------------

    def create(self, rt, ns, body, manager, dry_run=False, apply_manager=None):
        with self.lock:
            self._check_body(rt, body, ns)
            md = body["metadata"]
            if md.get("resourceVersion"):
                raise bad_request("resourceVersion should not be set on objects to be created")
            if not md.get("name"):
                if md.get("generateName"):
                    for _ in range(20):
                        md["name"] = md["generateName"] + random_suffix()
                        if self._lookup(rt, ns, md["name"]) is None:
                            break
                else:
                    raise invalid(rt, "", "metadata.name",
                                  "Required value: name or generateName is required")
            name = md["name"]
            validate_name(rt, name)
            self._check_namespace(rt, ns, name, creating=True)
            if self._lookup(rt, ns, name) is not None:
                raise APIError(409, "AlreadyExists", f'{rt.ref} "{name}" already exists',
                               {"name": name, "group": rt.group, "kind": rt.plural})
            if rt.status:
                body.pop("status", None)
            for k in ("uid", "creationTimestamp", "deletionTimestamp", "generation",
                      "managedFields", "selfLink"):
                md.pop(k, None)
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now_rfc3339()
            if rt.tracks_generation:
                md["generation"] = 1
            self._defaults(rt, body, None)
            scope = "nostatus" if rt.status else "all"
            if apply_manager is not None:
                apply_manager(body)
            else:
                track_update(None, body, manager, "", scope, rt.api_version)
            if dry_run:
                return self._output(rt, body)
            return self._output(rt, self._put(rt, body, None))

    def _precondition_rv(self, rt, old, body_rv, name):
        if body_rv in (None, ""):
            return
        if str(body_rv) != old["metadata"]["resourceVersion"]:
            raise APIError(409, "Conflict",
                           f'Operation cannot be fulfilled on {rt.ref} "{name}": the object has '
                           "been modified; please apply your changes to the latest version and "
                           "try again", {"name": name, "group": rt.group, "kind": rt.plural})

    def _commit_update(self, rt, old, new, manager, subresource, dry_run, ownership=True):
        """Finish an update: keep system metadata, honour the status subresource, track
        ownership, skip no-ops, bump generation on spec changes, apply deletion."""
        md, omd = new.setdefault("metadata", {}), old["metadata"]
        for k in ("uid", "creationTimestamp", "name", "namespace", "generation",
                  "deletionTimestamp", "deletionGracePeriodSeconds"):
            if k in omd:
                md[k] = omd[k]
            else:
                md.pop(k, None)
        md["resourceVersion"] = omd["resourceVersion"]
        new["apiVersion"], new["kind"] = old.get("apiVersion", rt.api_version), rt.kind
        if subresource == "status":
            status = new.get("status", MISSING)
            new = copy.deepcopy(old)
            if status is MISSING:
                new.pop("status", None)
            else:
                new["status"] = status
            if "managedFields" in md:
                new["metadata"]["managedFields"] = md["managedFields"]
            scope = "status"
        else:
            if rt.status and subresource is None:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            scope = "nostatus" if rt.status else "all"
            if omd.get("deletionTimestamp"):
                added = set(md.get("finalizers") or []) - set(omd.get("finalizers") or [])
                if added:
                    raise invalid(rt, omd["name"], "metadata.finalizers",
                                  "Forbidden: no new finalizers can be added if the object is "
                                  "being deleted")
            self._defaults(rt, new, old)
            check_immutable(rt, old, new)
        if ownership:
            if subresource == "status" or "managedFields" not in md:
                new["metadata"]["managedFields"] = copy.deepcopy(omd.get("managedFields", []))
                if not new["metadata"]["managedFields"]:
                    new["metadata"].pop("managedFields")
            track_update(old, new, manager, subresource or "", scope, rt.api_version)
        if new == old:
            return self._output(rt, old), False
        if rt.tracks_generation and self._spec_view(new) != self._spec_view(old):
            new["metadata"]["generation"] = omd.get("generation", 1) + 1
        if dry_run:
            return self._output(rt, new), True
        key = (omd.get("namespace"), omd["name"])
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers") \
                and rt.plural != "namespaces":
            gone = self._remove(rt.gk, key, final=new)
            return self._output(rt, gone), True
        return self._output(rt, self._put(rt, new, old)), True

    def update(self, rt, ns, name, body, manager, subresource=None, dry_run=False):
        with self.lock:
            self._check_body(rt, body, ns)
            if body["metadata"].get("name") not in (None, name):
                raise bad_request(f"the name of the object ({body['metadata'].get('name')}) does "
                                  f"not match the name on the URL ({name})")
            body["metadata"]["name"] = name
            old = self._lookup(rt, ns, name)
            if old is None:
                raise rt.not_found(name)
            body_rv = body["metadata"].get("resourceVersion")
            if not body_rv and not rt.allow_unconditional_update:
                raise invalid(rt, name, "metadata.resourceVersion",
                              "Invalid value: 0x0: must be specified for an update")
            self._precondition_rv(rt, old, body_rv, name)
            body["metadata"].pop("managedFields", None)
            return self._commit_update(rt, old, body, manager, subresource, dry_run)[0]

    def patch(self, rt, ns, name, content_type, raw, manager, force=False, subresource=None,
              dry_run=False):
        """Returns (object, created)."""
        ctype = (content_type or "").split(";")[0].strip().lower()
        try:
            body = json.loads(raw.decode() or "null")
        except (ValueError, UnicodeDecodeError) as e:
            if ctype == "application/apply-patch+yaml":
                raise bad_request(f"error decoding apply body: this fake accepts only the JSON "
                                  f"subset of YAML ({e})") from None
            raise bad_request(f"error decoding patch body: {e}") from None
        with self.lock:
            if ctype == "application/apply-patch+yaml":
                return self._apply(rt, ns, name, body, manager, force, subresource, dry_run)
            old = self._lookup(rt, ns, name)
            if old is None:
                raise rt.not_found(name)
            if ctype == "application/merge-patch+json" or (
                    ctype == "application/strategic-merge-patch+json" and rt.builtin):
                if not isinstance(body, dict):
                    raise bad_request("a merge patch must be a JSON object")
                new = merge_patch(copy.deepcopy(old), body)
            elif ctype == "application/strategic-merge-patch+json":
                raise APIError(415, "UnsupportedMediaType",
                               "strategic merge patch is not supported for custom resources; "
                               "use application/merge-patch+json or application/json-patch+json")
            elif ctype == "application/json-patch+json":
                try:
                    new = json_patch(old, body)
                except ValueError as e:
                    raise APIError(422, "Invalid", f"the server rejected our request due to an "
                                   f"error in our request: {e}") from None
            else:
                raise APIError(415, "UnsupportedMediaType",
                               f"the body of the request was in an unknown format "
                               f"({content_type!r}) - accepted media types include: "
                               "application/json-patch+json, application/merge-patch+json, "
                               "application/apply-patch+yaml")
            if not isinstance(new, dict):
                raise bad_request("the patched object is not a JSON object")
            self._check_body(rt, new, ns)
            if new["metadata"].get("name") != name:
                raise bad_request("the patch changes metadata.name, which is immutable")
            self._precondition_rv(rt, old, new["metadata"].get("resourceVersion"), name)
            new["metadata"].pop("managedFields", None)
            return self._commit_update(rt, old, new, manager, subresource, dry_run)[0], False

    def _apply(self, rt, ns, name, body, manager, force, subresource, dry_run):
        if not manager:
            raise APIError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: '
                           "fieldManager: Required value: is required for apply patch",
                           {"group": "meta.k8s.io", "kind": "PatchOptions",
                            "causes": [{"reason": "FieldValueRequired", "field": "fieldManager",
                                        "message": "Required value: is required for apply patch"}]})
        if not isinstance(body, dict) or not body.get("apiVersion") or not body.get("kind"):
            raise bad_request("an apply body must be an object with apiVersion and kind")
        self._check_body(rt, body, ns)
        md = body["metadata"]
        if md.get("name") != name:
            raise bad_request(f"the name of the object ({md.get('name')}) does not match the "
                              f"name on the URL ({name})")
        if "managedFields" in md:
            raise bad_request("metadata.managedFields must be nil in an apply request")
        old = self._lookup(rt, ns, name)
        scope = "status" if subresource == "status" else ("nostatus" if rt.status else "all")
        if old is None:
            if subresource:
                raise rt.not_found(name)
            body_rv = md.pop("resourceVersion", None)
            if body_rv:
                raise rt.not_found(name)
            leaves = field_leaves(body, scope)   # defaulted fields are not the applier's

            def own(obj):
                write_managers(obj, [{"manager": manager, "operation": "Apply",
                                      "subresource": "", "apiVersion": rt.api_version,
                                      "time": now_rfc3339(), "paths": set(leaves)}])
            applied = copy.deepcopy(body)
            return self.create(rt, ns, applied, manager, dry_run, apply_manager=own), True
        self._precondition_rv(rt, old, md.get("resourceVersion"), name)
        merged = apply_fields(old, body, manager, force, subresource or "", scope, rt.api_version)
        obj, _changed = self._commit_update(rt, old, merged, manager, subresource, dry_run,
                                            ownership=False)
        return obj, False

    # -- delete -----------------------------------------------------------------------------

    def _dependents(self, uid):
        out = []
        for gk, objs in self.objects.items():
            for key, o in objs.items():
                if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or []):
                    out.append((gk, key))
        return out

    def _rt_for_gk(self, gk):
        for rt in self.types.values():
            if rt.gk == gk:
                return rt
        return None

    def _internal_update(self, gk, key, mutate, manager="fake-controller", subresource=None):
        rt = self._rt_for_gk(gk)
        old = self.objects[gk].get(key)
        if old is None or rt is None:
            return None
        new = copy.deepcopy(old)
        mutate(new)
        return self._commit_update(rt, old, new, manager, subresource, False)[0]

    def delete(self, rt, ns, name, opts, dry_run=False):
        with self.lock:
            old = self._lookup(rt, ns, name)
            if old is None:
                raise rt.not_found(name)
            pre = opts.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
                raise APIError(409, "Conflict",
                               f"Precondition failed: UID in precondition: {pre['uid']}, UID in "
                               f"object meta: {old['metadata']['uid']}",
                               {"name": name, "group": rt.group, "kind": rt.plural})
            if pre.get("resourceVersion"):
                if pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
                    raise APIError(409, "Conflict",
                                   f"Precondition failed: ResourceVersion in precondition: "
                                   f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                   f"{old['metadata']['resourceVersion']}",
                                   {"name": name, "group": rt.group, "kind": rt.plural})
            if dry_run:
                return self._output(rt, old)
            return self._delete(rt, (old["metadata"].get("namespace"), name),
                                opts.get("propagationPolicy") or "Background")

    def _delete(self, rt, key, policy):
        old = self.objects[rt.gk][key]
        uid = old["metadata"]["uid"]
        finalizers = list(old["metadata"].get("finalizers") or [])
        if policy == "Orphan":
            # As the API server does: the `orphan` finalizer keeps the owner (with its
            # deletionTimestamp) until the garbage collector has taken its uid out of the
            # dependents' ownerReferences and removed the finalizer (Cluster._gc).
            if "orphan" not in finalizers and not old["metadata"].get("deletionTimestamp"):
                finalizers.append("orphan")
        elif policy == "Foreground":
            # Simplified: dependents are deleted (recursively, foreground) before the owner,
            # synchronously, instead of through the foregroundDeletion finalizer.
            for gk, dkey in self._dependents(uid):
                drt = self._rt_for_gk(gk)
                if drt and dkey in self.objects[gk]:
                    self._delete(drt, dkey, "Foreground")
        elif policy != "Background":
            raise bad_request(f"unknown propagationPolicy {policy!r}")
        if rt.plural == "namespaces" or finalizers:
            def mark(o):
                o["metadata"].setdefault("deletionTimestamp", now_rfc3339())
                o["metadata"].setdefault("deletionGracePeriodSeconds", 0)
                if rt.plural == "namespaces":
                    o.setdefault("status", {})["phase"] = "Terminating"
            if old["metadata"].get("deletionTimestamp"):
                return self._output(rt, old)
            new = copy.deepcopy(old)
            mark(new)
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            if finalizers:
                new["metadata"]["finalizers"] = finalizers
            out = self._output(rt, self._put(rt, self._bump_gen(rt, new), old))
            return out
        return self._output(rt, self._remove(rt.gk, key))

    @staticmethod
    def _drop_owner_refs(obj, uids):
        md = obj["metadata"]
        refs = [r for r in md.get("ownerReferences") or [] if r.get("uid") not in uids]
        if refs:
            md["ownerReferences"] = refs
        else:
            md.pop("ownerReferences", None)

    @staticmethod
    def _bump_gen(rt, obj):
        if rt.tracks_generation:
            obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
        return obj

    def delete_collection(self, rt, ns, params, opts):
        with self.lock:
            lst = self.list(rt, ns, {k: v for k, v in params.items()
                                      if k in ("labelSelector", "fieldSelector")})
            items = []
            for item in lst["items"]:
                md = item["metadata"]
                items.append(self._delete(rt, (md.get("namespace"), md["name"]),
                                          opts.get("propagationPolicy") or "Background"))
            return {"kind": rt.kind + "List", "apiVersion": rt.api_version,
                    "metadata": {"resourceVersion": str(self.rv)}, "items": items}

    # -- scale ------------------------------------------------------------------------------

    def _scale_paths(self, rt):
        if rt.scale == "apps":
            return ("spec", "replicas"), ("status", "replicas"), None
        return rt.scale

    def _to_scale(self, rt, obj):
        spec_p, status_p, sel_p = self._scale_paths(rt)
        md = obj["metadata"]
        replicas = get_path(obj, spec_p)
        cur = get_path(obj, status_p)
        status = {"replicas": cur if isinstance(cur, int) else 0}
        if rt.scale == "apps":
            sel = selector_string(obj.get("spec", {}).get("selector"))
        else:
            sel = get_path(obj, sel_p) if sel_p else MISSING
            sel = sel if isinstance(sel, str) else ""
        if sel:
            status["selector"] = sel
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": md["name"], "namespace": md.get("namespace"),
                             "uid": md["uid"], "resourceVersion": md["resourceVersion"],
                             "creationTimestamp": md["creationTimestamp"]},
                "spec": {"replicas": replicas if isinstance(replicas, int) else 0},
                "status": status}

    def get_scale(self, rt, ns, name):
        with self.lock:
            obj = self._lookup(rt, ns, name)
            if obj is None:
                raise rt.not_found(name)
            return self._to_scale(rt, obj)

    def write_scale(self, rt, ns, name, scale_body, manager, content_type=None, raw=None,
                    dry_run=False):
        with self.lock:
            old = self._lookup(rt, ns, name)
            if old is None:
                raise rt.not_found(name)
            if raw is not None:
                ctype = (content_type or "").split(";")[0].strip().lower()
                try:
                    patch = json.loads(raw.decode() or "null")
                except (ValueError, UnicodeDecodeError) as e:
                    raise bad_request(f"error decoding patch body: {e}") from None
                current = self._to_scale(rt, old)
                if ctype in ("application/merge-patch+json",
                             "application/strategic-merge-patch+json"):
                    scale_body = merge_patch(current, patch)
                elif ctype == "application/json-patch+json":
                    try:
                        scale_body = json_patch(current, patch)
                    except ValueError as e:
                        raise APIError(422, "Invalid", str(e)) from None
                else:
                    raise APIError(415, "UnsupportedMediaType",
                                   f"unsupported patch type {content_type!r} for the scale "
                                   "subresource (this fake: merge or JSON patch only)")
            if not isinstance(scale_body, dict):
                raise bad_request("the body must be an autoscaling/v1 Scale object")
            if scale_body.get("kind") not in (None, "Scale"):
                raise bad_request(f"expected kind Scale, got {scale_body.get('kind')!r}")
            replicas = (scale_body.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise APIError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: '
                               f"spec.replicas: Invalid value: {replicas!r}: must be greater "
                               "than or equal to 0",
                               {"name": name, "group": "autoscaling", "kind": "Scale"})
            self._precondition_rv(rt, old, (scale_body.get("metadata") or {}).get(
                "resourceVersion"), name)
            new = copy.deepcopy(old)
            set_path(new, self._scale_paths(rt)[0], replicas)
            obj, _ = self._commit_update(rt, old, new, manager, "scale", dry_run)
            stored = self._lookup(rt, ns, name) if not dry_run else obj
            return self._to_scale(rt, stored if stored is not None else obj)

    # -- watch ------------------------------------------------------------------------------

    def open_watch(self, rt, ns, params):
        """Registers a watcher and queues its initial events. Returns (watcher, error_status):
        when error_status is set, the caller sends it as an ERROR event and ends the stream."""
        label_reqs = parse_label_selector(params.get("labelSelector"))
        field_reqs = parse_field_selector(params.get("fieldSelector"))
        w = Watcher(rt, ns, label_reqs, field_reqs)
        rv_param = params.get("resourceVersion", "")
        send_initial = params.get("sendInitialEvents") == "true"
        with self.lock:
            if rv_param in ("", "0") or send_initial:
                # "Get state and start at most recent": synthetic ADDED for current objects.
                for k in sorted(self.objects[rt.gk]):
                    o = self.objects[rt.gk][k]
                    if w._matches(o):
                        w.q.put(("ADDED", o))
                if send_initial:
                    w.q.put(("BOOKMARK_INITIAL", str(self.rv)))
            else:
                rv = self._parse_rv(rv_param)
                if rv < self.floor:
                    return None, self._too_old(rv).status()
                for ev in self.history:
                    if ev["rv"] > rv:
                        w.offer(ev)
            self.watchers.add(w)
            self.changed.notify_all()
            return w, None

    def close_watch(self, w):
        with self.lock:
            self.watchers.discard(w)
            self.changed.notify_all()

    def wait_watches(self, count, timeout):
        """Waits until exactly `count` watches are open; False on timeout."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.watchers) != count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
            return True

    def close_all_watches(self, abrupt=False):
        with self.lock:
            ws = list(self.watchers)
            self.watchers.clear()
        for w in ws:
            w.close(abrupt)
        return len(ws)

    def compact(self):
        """Forget all history: every watch or exact list older than now gets 410."""
        with self.lock:
            self.floor = self.rv
            self.history.clear()
            return self.rv

    # -- controllers (garbage collector, namespace finalizer, workload simulation) ----------

    def controller_pass(self):
        """One level-triggered pass. Returns True when it wrote something."""
        with self.lock:
            start = self.rv
            self._gc()
            self._namespaces()
            if self.simulate_workloads:
                self._simulate()
            return self.rv != start

    def _gc(self):
        # Deletions with propagationPolicy Orphan: free the dependents, then let the owner go.
        for gk, objs in list(self.objects.items()):
            for key in [k for k, o in objs.items() if o["metadata"].get("deletionTimestamp")
                        and "orphan" in (o["metadata"].get("finalizers") or [])]:
                uid = objs[key]["metadata"]["uid"]
                for dgk, dkey in self._dependents(uid):
                    self._internal_update(dgk, dkey, lambda o, u=uid: self._drop_owner_refs(o, {u}),
                                          manager="fake-garbage-collector")
                self._internal_update(gk, key, lambda o: o["metadata"].__setitem__(
                    "finalizers", [f for f in o["metadata"]["finalizers"] if f != "orphan"]),
                                      manager="fake-garbage-collector")
        uids = {o["metadata"]["uid"] for objs in self.objects.values() for o in objs.values()}
        for gk, objs in list(self.objects.items()):
            for key in list(objs):
                o = objs.get(key)
                if o is None:
                    continue
                refs = o["metadata"].get("ownerReferences") or []
                if not refs:
                    continue
                missing = [r for r in refs if r.get("uid") not in uids]
                if not missing:
                    continue
                rt = self._rt_for_gk(gk)
                if len(missing) == len(refs):
                    if not o["metadata"].get("deletionTimestamp") and rt:
                        self._delete(rt, key, "Background")
                else:
                    gone = {r.get("uid") for r in missing}
                    self._internal_update(gk, key, lambda x: self._drop_owner_refs(x, gone),
                                          manager="fake-garbage-collector")

    def _namespaces(self):
        for key, nsobj in list(self.objects[("", "namespaces")].items()):
            if not nsobj["metadata"].get("deletionTimestamp"):
                continue
            ns = key[1]
            remaining = 0
            for gk, objs in list(self.objects.items()):
                rt = self._rt_for_gk(gk)
                if rt is None or not rt.namespaced:
                    continue
                for okey in [k for k in objs if k[0] == ns]:
                    if not objs[okey]["metadata"].get("deletionTimestamp"):
                        self._delete(rt, okey, "Background")
                    if okey in objs:
                        remaining += 1   # still there: waiting for its finalizers
            if remaining == 0:
                self._remove(("", "namespaces"), key)

    def _pods_of(self, owner_uid, ns):
        return {k: o for k, o in self.objects[("", "pods")].items() if k[0] == ns and any(
            r.get("uid") == owner_uid and r.get("controller")
            for r in o["metadata"].get("ownerReferences") or [])}

    @staticmethod
    def _pod_ready(o):
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (o.get("status") or {}).get("conditions") or [])

    def _simulate(self):
        pod_rt = self.type("", "v1", "pods")
        for key, sts in list(self.objects[("apps", "statefulsets")].items()):
            if sts["metadata"].get("deletionTimestamp"):
                continue
            ns, name = key
            spec = sts.get("spec") or {}
            replicas = spec.get("replicas", 1)
            template = spec.get("template") or {}
            revision = name + "-" + hashlib.sha256(json.dumps(
                template, sort_keys=True).encode()).hexdigest()[:10]
            uid = sts["metadata"]["uid"]
            self._adopt_pods(sts)
            pods = self._pods_of(uid, ns)
            for pkey in sorted(pods, reverse=True):
                p = pods[pkey]
                ordinal = p["metadata"].get("labels", {}).get("apps.kubernetes.io/pod-index")
                stale = p["metadata"].get("labels", {}).get("controller-revision-hash") != revision
                if ordinal is None or int(ordinal) >= replicas or stale:
                    self._delete(pod_rt, pkey, "Background")
            pods = self._pods_of(uid, ns)
            ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
            for i in range(replicas):
                pname = f"{name}-{i}"
                if (ns, pname) in pods:
                    continue
                if (ns, pname) in self.objects[("", "pods")]:
                    break  # a foreign pod holds the name; a real controller would report it
                # OrderedReady: pod i is created only once pods 0..i-1 exist and are Ready.
                if ordered and not all((ns, f"{name}-{j}") in pods and
                                       self._pod_ready(pods[(ns, f"{name}-{j}")])
                                       for j in range(i)):
                    break
                tmd = template.get("metadata") or {}
                labels = dict(tmd.get("labels") or {})
                labels.update({"statefulset.kubernetes.io/pod-name": pname,
                               "controller-revision-hash": revision,
                               "apps.kubernetes.io/pod-index": str(i)})
                pod = {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": pname, "namespace": ns, "labels": labels,
                                    "annotations": dict(tmd.get("annotations") or {}),
                                    "uid": str(uuid.uuid4()), "creationTimestamp": now_rfc3339(),
                                    "generation": 1,
                                    "ownerReferences": [{"apiVersion": "apps/v1",
                                                         "kind": "StatefulSet", "name": name,
                                                         "uid": uid, "controller": True,
                                                         "blockOwnerDeletion": True}]},
                       "spec": dict(copy.deepcopy(template.get("spec") or {}),
                                    hostname=pname, subdomain=spec.get("serviceName", "")),
                       # Executing pods: the kubelet simulation (kubelet.py) writes the status.
                       "status": {"phase": "Pending"} if self.execute_pods else self._running_status(i)}
                track_update(None, pod, "fake-statefulset-controller", "", "all", "v1")
                self._put(pod_rt, pod, None)
                pods[(ns, pname)] = pod
            pods = self._pods_of(uid, ns)
            ready = sum(1 for p in pods.values() if self._pod_ready(p))
            current = sum(1 for p in pods.values()
                          if p["metadata"]["labels"].get("controller-revision-hash") == revision)
            status = dict(sts.get("status") or {})
            status.update({"observedGeneration": sts["metadata"].get("generation", 1),
                           "replicas": len(pods), "readyReplicas": ready,
                           "currentReplicas": current, "updatedReplicas": current,
                           "availableReplicas": ready, "currentRevision": revision,
                           "updateRevision": revision, "collisionCount": 0})
            if status != sts.get("status"):
                self._internal_update(("apps", "statefulsets"), key,
                                      lambda o: o.__setitem__("status", status),
                                      manager="fake-statefulset-controller", subresource="status")
        for key, dep in list(self.objects[("apps", "deployments")].items()):
            replicas = (dep.get("spec") or {}).get("replicas", 1)
            gen = dep["metadata"].get("generation", 1)
            status = {"observedGeneration": gen, "replicas": replicas, "readyReplicas": replicas,
                      "updatedReplicas": replicas, "availableReplicas": replicas,
                      "conditions": [{"type": "Available", "status": "True",
                                      "reason": "MinimumReplicasAvailable"},
                                     {"type": "Progressing", "status": "True",
                                      "reason": "NewReplicaSetAvailable"}]}
            if replicas == 0:
                for k in ("readyReplicas", "updatedReplicas", "availableReplicas"):
                    status.pop(k)
            if status != dep.get("status"):
                self._internal_update(("apps", "deployments"), key,
                                      lambda o: o.__setitem__("status", status),
                                      manager="fake-deployment-controller", subresource="status")

    def _adopt_pods(self, sts):
        """The StatefulSet controller's adoption (ControllerRefManager.ClaimPods): a pod with no
        controller, named NAME-ORDINAL and matching the set's selector gets the set as its
        controller, for example the pods a StatefulSet deleted with propagationPolicy Orphan left
        behind. (Releasing owned pods that stopped matching is not modelled.)"""
        md = sts["metadata"]
        ns, name, uid = md.get("namespace"), md["name"], md["uid"]
        reqs = parse_label_selector(selector_string((sts.get("spec") or {}).get("selector")))
        if not reqs:
            return  # an empty selector selects nothing to adopt (the API requires one anyway)
        member = re.compile(re.escape(name) + r"-(0|[1-9][0-9]*)")
        for pkey, pod in list(self.objects[("", "pods")].items()):
            pmd = pod["metadata"]
            if pkey[0] != ns or pmd.get("deletionTimestamp") or not member.fullmatch(pmd["name"]):
                continue
            if any(r.get("controller") for r in pmd.get("ownerReferences") or []):
                continue
            if not labels_match(reqs, pmd.get("labels")):
                continue
            ref = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name, "uid": uid,
                   "controller": True, "blockOwnerDeletion": True}
            self._internal_update(("", "pods"), pkey,
                                  lambda o: o["metadata"].setdefault("ownerReferences", []).append(ref),
                                  manager="fake-statefulset-controller")

    @staticmethod
    def _running_status(i):
        ts = now_rfc3339()
        return {"phase": "Running", "podIP": f"10.244.0.{10 + i % 240}", "startTime": ts,
                "conditions": [{"type": t, "status": "True", "lastTransitionTime": ts}
                               for t in ("PodScheduled", "Initialized", "ContainersReady",
                                         "Ready")]}

    def set_pod_ready(self, ns, name, ready):
        with self.lock:
            if (ns, name) not in self.objects[("", "pods")]:
                raise self.type("", "v1", "pods").not_found(name)
            value = "True" if ready else "False"

            def mutate(o):
                st = o.setdefault("status", {})
                conds = [c for c in st.get("conditions") or []
                         if c.get("type") not in ("Ready", "ContainersReady")]
                for t in ("ContainersReady", "Ready"):
                    conds.append({"type": t, "status": value, "lastTransitionTime": now_rfc3339()})
                st["conditions"] = conds
            return self._internal_update(("", "pods"), (ns, name), mutate,
                                         manager="fake-kubelet", subresource="status")


# ----------------------------------------------------------------------------------------------
# Controller thread
# ----------------------------------------------------------------------------------------------


class ControllerLoop(threading.Thread):
    """Runs Cluster.controller_pass whenever the resourceVersion moves; `settle` waits until a
    pass has seen the current resourceVersion and written nothing."""

    def __init__(self, cluster):
        super().__init__(name="fake-controllers", daemon=True)
        self.cluster = cluster
        self.stopping = False

    def run(self):
        c = self.cluster
        seen = -1
        while True:
            with c.changed:
                while not self.stopping and c.rv == seen:
                    c.changed.wait()
                if self.stopping:
                    return
                seen = c.rv
            try:
                wrote = c.controller_pass()
            except Exception as e:  # keep the fake alive; tests see the missing effect
                print(f"fake-apiserver: controller pass failed: {e!r}", file=sys.stderr)
                wrote = False
            with c.changed:
                if wrote:
                    seen = -1       # our own writes may enable more work: pass again
                else:
                    c.controller_done_rv = seen
                    c.changed.notify_all()

    def stop(self):
        with self.cluster.changed:
            self.stopping = True
            self.cluster.changed.notify_all()

    def settle(self, timeout=10.0):
        c = self.cluster
        deadline = time.monotonic() + timeout
        with c.changed:
            while c.controller_done_rv != c.rv:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                c.changed.wait(left)
            return True


# ----------------------------------------------------------------------------------------------
# TLS material
# ----------------------------------------------------------------------------------------------


def ensure_tls_material(tls_dir):
    """Loads ca.crt/server.crt/server.key from tls_dir, or generates them with the openssl CLI
    (EC P-256 CA; server cert for IP 127.0.0.1 and DNS localhost, signed by the CA)."""
    os.makedirs(tls_dir, exist_ok=True)
    ca_crt, ca_key = os.path.join(tls_dir, "ca.crt"), os.path.join(tls_dir, "ca.key")
    crt, key = os.path.join(tls_dir, "server.crt"), os.path.join(tls_dir, "server.key")
    if all(os.path.exists(p) for p in (ca_crt, crt, key)):
        return ca_crt, crt, key

    def run(*args):
        r = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=tls_dir)
        if r.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)} failed in {tls_dir}: {r.stderr.strip()}")

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
        "-subj", "/CN=floe-fake-kube-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(tls_dir, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-set_serial", str(random.randrange(1, 2**62)), "-out", "server.crt", "-days", "3650",
        "-extfile", "server.ext")
    for p in (ca_key, key):
        os.chmod(p, 0o600)
    return ca_crt, crt, key


# ----------------------------------------------------------------------------------------------
# HTTP layer
# ----------------------------------------------------------------------------------------------


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, ConnectionError, OSError)):
            return   # a client that failed the TLS handshake or hung up: not our bug
        super().handle_error(request, client_address)

    def __init__(self, addr, handler, fake):
        self.fake = fake
        super().__init__(addr, handler)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Like a real API server: no Nagle delay between a response's writes on a kept-alive connection.
    disable_nagle_algorithm = True
    server_version = "FakeKubeAPI/1.0"

    # -- plumbing ---------------------------------------------------------------------------

    def setup(self):
        fake = self.server.fake
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError):
                self.request.close()
                raise
            self.request.settimeout(None)
        with fake.conn_lock:
            fake.connections.add(self.request)
        super().setup()

    def finish(self):
        with self.server.fake.conn_lock:
            self.server.fake.connections.discard(self.request)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, fmt, *args):
        if self.server.fake.verbose:
            sys.stderr.write("fake-apiserver: " + (fmt % args) + "\n")

    def _body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, code, obj, headers=None, raw=None, ctype="application/json"):
        data = raw if raw is not None else json.dumps(obj, separators=(",", ":")).encode()
        self._set_code(code)   # before any byte goes out: a client may read the log next
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(data)

    def _set_code(self, code):
        self._code = code
        entry = getattr(self, "_entry", None)
        if entry is not None:
            entry["code"] = code

    def _send_error(self, err):
        headers = dict(err.headers)
        if err.details and "retryAfterSeconds" in err.details:
            headers.setdefault("Retry-After", err.details["retryAfterSeconds"])
        self._send(err.code, err.status(), headers)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # -- dispatch ---------------------------------------------------------------------------

    def _dispatch(self, method):
        fake = self.server.fake
        self._code = 0
        self._entry = None
        path, _, qs = self.path.partition("?")
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(qs, keep_blank_values=True).items()}
        if path.startswith("/fake/"):
            try:
                self._control(method, path)
            except APIError as e:
                self._send_error(e)
            return
        verb = self._verb(method, path, query)
        entry = self._entry = fake.record(method, path, query, verb, self.headers)
        try:
            body = self._body()
            if fake.token is not None:
                auth = self.headers.get("Authorization") or ""
                scheme, _, tok = auth.partition(" ")
                if scheme.lower() != "bearer" or tok.strip() != fake.token:
                    raise APIError(401, "Unauthorized", "Unauthorized")
            fault = fake.take_fault(method, path, verb == "watch")
            if fault is not None:
                if fault.get("seconds"):
                    time.sleep(fault["seconds"])   # an injected stall, not synchronization
                if fault.get("code"):
                    code = int(fault["code"])
                    details = {}
                    if fault.get("retryAfterSeconds") is not None:
                        details["retryAfterSeconds"] = fault["retryAfterSeconds"]
                    raise APIError(code, fault.get("reason") or REASONS.get(code, "Unknown"),
                                   fault.get("message") or f"injected fault {code} on {path}",
                                   details or None)
            self._route(method, path, query, body)
        except APIError as e:
            self._send_error(e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # the fake must answer, not hang: a 500 naming the failure
            import traceback
            traceback.print_exc()
            self._send_error(APIError(500, "InternalError", f"fake apiserver bug: {e!r}"))
        finally:
            entry["code"] = self._code
            self._entry = None

    @staticmethod
    def _verb(method, path, query):
        if method == "GET":
            if query.get("watch") in ("1", "true") or "/watch/" in path:
                return "watch"
            return "get-or-list"
        return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]

    def _manager(self, query):
        m = query.get("fieldManager")
        if m:
            return m
        ua = self.headers.get("User-Agent") or "unknown"
        return ua.split("/")[0].strip() or "unknown"

    def _route(self, method, path, query, body):
        fake = self.server.fake
        c = fake.cluster
        if path in ("/healthz", "/readyz", "/livez"):
            return self._send(200, None, raw=b"ok", ctype="text/plain")
        if path == "/version":
            return self._send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-floe-fake",
                                    "platform": "linux/amd64"})
        if path == "/openapi/v2" and method == "GET":
            # kubectl's client-side validation downloads OpenAPI v2 as protobuf (gnostic's
            # Document). An empty document (swagger "2.0", an info, no paths, no definitions)
            # holds no schema, so kubectl validates nothing and this server decides.
            return self._send(200, None, raw=_EMPTY_OPENAPI_V2,
                              ctype="application/octet-stream")
        parts = [urllib.parse.unquote(p) for p in path.split("/") if p]
        if not parts or parts[0] not in ("api", "apis"):
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        if method == "GET":
            d = self._discovery(parts)
            if d is not None:
                return self._send(200, d)
        if parts[0] == "api":
            group, version, rest = "", (parts[1] if len(parts) > 1 else ""), parts[2:]
        else:
            if len(parts) < 3:
                raise APIError(404, "NotFound", "the server could not find the requested resource")
            group, version, rest = parts[1], parts[2], parts[3:]
        watch = False
        if rest and rest[0] == "watch":
            watch, rest = True, rest[1:]
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces" and c.type(group, version, rest[2]):
            ns, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        rt = c.type(group, version, rest[0])
        if rt is None:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if (rt.namespaced and name is not None and ns is None) or (not rt.namespaced and ns):
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        if sub is not None and not ((sub == "status" and rt.status) or (sub == "scale" and rt.scale)):
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        dry = query.get("dryRun") == "All"
        mgr = self._manager(query)
        if watch or (method == "GET" and name is None and query.get("watch") in ("1", "true")):
            if name is not None:
                query = dict(query, fieldSelector=f"metadata.name={name}")
            return self._watch(rt, ns, query)
        if sub == "scale":
            if method == "GET":
                return self._send(200, c.get_scale(rt, ns, name))
            if method == "PUT":
                return self._send(200, c.write_scale(rt, ns, name, self._json(body), mgr,
                                                     dry_run=dry))
            if method == "PATCH":
                return self._send(200, c.write_scale(rt, ns, name, None, mgr,
                                                     self.headers.get("Content-Type"), body, dry))
            raise APIError(405, "MethodNotAllowed", f"{method} is not supported on scale")
        if method == "GET":
            if name is None:
                return self._send(200, c.list(rt, ns, query))
            return self._send(200, c.get(rt, ns, name))
        if method == "POST":
            if name is not None or sub or (rt.namespaced and ns is None):
                raise APIError(405, "MethodNotAllowed", "POST must target a collection")
            return self._send(201, c.create(rt, ns, self._json(body), mgr, dry))
        if method == "PUT":
            if name is None:
                raise APIError(405, "MethodNotAllowed", "PUT must target an object")
            return self._send(200, c.update(rt, ns, name, self._json(body), mgr, sub, dry))
        if method == "PATCH":
            if name is None:
                raise APIError(405, "MethodNotAllowed", "PATCH must target an object")
            force = query.get("force") in ("true", "1")
            if (self.headers.get("Content-Type") or "").startswith("application/apply-patch"):
                mgr = query.get("fieldManager")   # apply never falls back to the User-Agent
            obj, created = c.patch(rt, ns, name, self.headers.get("Content-Type"), body, mgr,
                                   force, sub, dry)
            return self._send(201 if created else 200, obj)
        if method == "DELETE":
            if sub:
                raise APIError(405, "MethodNotAllowed", "DELETE is not supported on subresources")
            opts = self._json(body) if body.strip() else {}
            if not isinstance(opts, dict):
                raise bad_request("DeleteOptions must be a JSON object")
            if query.get("propagationPolicy"):
                opts["propagationPolicy"] = query["propagationPolicy"]
            if name is None:
                return self._send(200, c.delete_collection(rt, ns, query, opts))
            return self._send(200, c.delete(rt, ns, name, opts, dry))
        raise APIError(405, "MethodNotAllowed", f"method {method} not allowed")

    @staticmethod
    def _json(body):
        try:
            return json.loads(body.decode() or "null")
        except (ValueError, UnicodeDecodeError) as e:
            raise bad_request(f"error decoding request body as JSON: {e}") from None

    # -- discovery --------------------------------------------------------------------------

    def _resource_list(self, group, version):
        c = self.server.fake.cluster
        res = []
        for rt in c.types_for(group, version):
            res.append({"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                        "kind": rt.kind, "verbs": ["create", "delete", "deletecollection", "get",
                                                   "list", "patch", "update", "watch"],
                        **({"shortNames": rt.short_names} if rt.short_names else {})})
            if rt.status:
                res.append({"name": rt.plural + "/status", "singularName": "",
                            "namespaced": rt.namespaced, "kind": rt.kind,
                            "verbs": ["get", "patch", "update"]})
            if rt.scale:
                res.append({"name": rt.plural + "/scale", "singularName": "",
                            "namespaced": rt.namespaced, "group": "autoscaling", "version": "v1",
                            "kind": "Scale", "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": version if group == "" else f"{group}/{version}",
                "resources": res}

    def _group(self, g, versions):
        vs = [{"groupVersion": f"{g}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": vs,
                "preferredVersion": vs[0]}

    def _discovery(self, parts):
        groups = self.server.fake.cluster.groups()
        if parts == ["api"]:
            host, port = self.server.server_address[:2]
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs":
                    [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"{host}:{port}"}]}
        if parts == ["api", "v1"]:
            return self._resource_list("", "v1")
        if parts == ["apis"]:
            return {"kind": "APIGroupList", "apiVersion": "v1",
                    "groups": [self._group(g, vs) for g, vs in groups.items() if g]}
        if len(parts) == 2 and parts[0] == "apis":
            if parts[1] not in groups or not parts[1]:
                raise APIError(404, "NotFound", "the server could not find the requested resource")
            return self._group(parts[1], groups[parts[1]])
        if len(parts) == 3 and parts[0] == "apis":
            if parts[2] not in groups.get(parts[1], []):
                raise APIError(404, "NotFound", "the server could not find the requested resource")
            return self._resource_list(parts[1], parts[2])
        return None

    # -- watch ------------------------------------------------------------------------------

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _client_gone(self):
        """True when the peer has closed a plain-TCP watch connection (EOF is readable). TLS
        connections are not probed; they end at the watch timeout or on the next write."""
        sock = self.request
        if isinstance(sock, ssl.SSLSocket):
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _watch(self, rt, ns, query):
        fake = self.server.fake
        c = fake.cluster
        try:
            timeout = float(query.get("timeoutSeconds") or fake.watch_timeout)
        except ValueError:
            raise bad_request(f"invalid timeoutSeconds {query.get('timeoutSeconds')!r}") from None
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        w, err = c.open_watch(rt, ns, query)
        self._set_code(200)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

        def event(etype, obj):
            line = json.dumps({"type": etype, "object": obj}, separators=(",", ":")) + "\n"
            self._chunk(line.encode())

        def bookmark(rv, initial=False):
            md = {"resourceVersion": rv}
            if initial:
                md["annotations"] = {"k8s.io/initial-events-end": "true"}
            event("BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": md})

        try:
            if err is not None:
                event("ERROR", err)
                self.wfile.write(b"0\r\n\r\n")
                return
            deadline = time.monotonic() + timeout
            next_bm = time.monotonic() + fake.bookmark_interval
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                wake = min(deadline, next_bm) if bookmarks else deadline
                try:
                    item = w.q.get(timeout=max(0.0, min(wake - now, 0.25)))
                except queue.Empty:
                    if self._client_gone():
                        self.close_connection = True
                        return
                    if bookmarks and time.monotonic() >= next_bm:
                        # Events are queued under the store lock, so an empty queue read under
                        # that lock means no event older than c.rv is still undelivered: the
                        # bookmark never runs ahead of an event the client has yet to see.
                        with c.lock:
                            rv = str(c.rv) if w.q.empty() else None
                        if rv is not None:
                            bookmark(rv)
                            next_bm = time.monotonic() + fake.bookmark_interval
                    continue
                kind = item[0]
                if kind == "CLOSE":
                    if item[1]:   # abrupt: drop the TCP connection without the final chunk
                        self.close_connection = True
                        try:
                            self.request.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        return
                    break
                if kind == "BOOKMARK_INITIAL":
                    bookmark(item[1], initial=True)
                    continue
                obj = copy.deepcopy(item[1])
                obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
                event(kind, obj)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            if w is not None:
                c.close_watch(w)

    # -- control ----------------------------------------------------------------------------

    def _control(self, method, path):
        fake = self.server.fake
        if method == "GET" and path == "/fake/requests":
            return self._send(200, fake.request_report())
        if method == "GET" and path == "/fake/state":
            c = fake.cluster
            with c.lock:
                return self._send(200, {"resourceVersion": c.rv, "floor": c.floor,
                                        "historyLength": len(c.history),
                                        "openWatches": len(c.watchers)})
        if method == "POST" and path == "/fake/control":
            try:
                cmd = json.loads(self._body().decode() or "{}")
            except (ValueError, UnicodeDecodeError) as e:
                raise bad_request(f"control body is not JSON: {e}") from None
            return self._send(200, fake.control(cmd))
        raise APIError(404, "NotFound", f"unknown control endpoint {method} {path}")


class FakeAPIServer:
    """The fake API server: a Cluster served over HTTP(S) on 127.0.0.1, plus a controller
    thread (garbage collector, namespace finalizer, optional workload simulation)."""

    def __init__(self, port=0, tls_dir=None, token=None, history=1000, simulate_workloads=False,
                 bookmark_interval=5.0, watch_timeout=1800.0, verbose=False, execute_pods=None, kubelet_dir=None):
        """`execute_pods`: {container command path: local binary}; when given (with
        `simulate_workloads`), pods run as real processes (kubelet.py) under `kubelet_dir`."""
        self.cluster = Cluster(history=history, simulate_workloads=simulate_workloads)
        self.cluster.execute_pods = bool(execute_pods)
        self.kubelet = None
        if execute_pods:
            from kubelet import Kubelet
            self.kubelet = Kubelet(self.cluster, kubelet_dir or tempfile.mkdtemp(prefix="fake-kubelet."), execute_pods)
        self.port = port
        self.tls_dir = tls_dir
        self.token = token
        self.bookmark_interval = float(bookmark_interval)
        self.watch_timeout = float(watch_timeout)
        self.verbose = verbose
        self.ca_file = None
        self.faults = []
        self.fault_lock = threading.Lock()
        self.requests = []
        self.conn_lock = threading.Lock()
        self.connections = set()
        self.httpd = None
        self.thread = None
        self.controllers = ControllerLoop(self.cluster)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self):
        self.httpd = _HTTPServer(("127.0.0.1", self.port), Handler, self)
        if self.tls_dir:
            self.ca_file, crt, key = ensure_tls_material(self.tls_dir)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(crt, key)
            ctx.set_alpn_protocols(["http/1.1"])
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True,
                                                do_handshake_on_connect=False)
        self.port = self.httpd.server_address[1]
        self.controllers.start()
        if self.kubelet:
            self.kubelet.start()
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fake-apiserver",
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd is None:
            return
        self.httpd.shutdown()
        self.cluster.close_all_watches()
        with self.conn_lock:
            conns = list(self.connections)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.httpd.server_close()
        if self.kubelet:
            self.kubelet.stop()
        self.controllers.stop()
        self.controllers.join(5)
        self.thread.join(5)
        self.httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return f"{'https' if self.tls_dir else 'http'}://127.0.0.1:{self.port}"

    # -- faults and accounting --------------------------------------------------------------

    def take_fault(self, method, path, is_watch):
        with self.fault_lock:
            for f in self.faults:
                if f.get("method") and f["method"].upper() != method:
                    continue
                if f.get("watch") is not None and bool(f["watch"]) != is_watch:
                    continue
                if f.get("prefix"):
                    if not path.startswith(f["path"]):
                        continue
                elif path != f["path"]:
                    continue
                f["count"] -= 1
                if f["count"] <= 0:
                    self.faults.remove(f)
                return dict(f)
        return None

    def record(self, method, path, query, verb, headers):
        """Logs a request when it arrives (so an open watch is visible); the handler fills in
        `code` when it has answered (0 while a watch is still streaming)."""
        if verb == "get-or-list":
            verb = "get" if self._is_object_path(path) else "list"
        entry = {"method": method, "path": path, "verb": verb, "code": 0,
                 "userAgent": headers.get("User-Agent"),
                 "fieldManager": query.get("fieldManager"), "query": query}
        with self.fault_lock:
            self.requests.append(entry)
        return entry

    def _is_object_path(self, path):
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] not in ("api", "apis"):
            return True
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        if rest and rest[0] == "namespaces" and len(rest) >= 3 and rest[2] != "status":
            rest = rest[2:]
        return len(rest) >= 2

    def request_report(self):
        with self.fault_lock:
            counts, by_verb = {}, {}
            for r in self.requests:
                k = f"{r['method']} {r['path']}"
                counts[k] = counts.get(k, 0) + 1
                by_verb[r["verb"]] = by_verb.get(r["verb"], 0) + 1
            return {"counts": counts, "byVerb": by_verb,
                    "requests": [dict(r) for r in self.requests]}

    def control(self, cmd):
        """Fault injection and test hooks. See docs/fake-apiserver.md for the actions."""
        action = cmd.get("action")
        c = self.cluster
        if action == "close_watches":
            return {"closed": c.close_all_watches(bool(cmd.get("abrupt")))}
        if action == "compact":
            return {"compactedTo": c.compact()}
        if action in ("fail", "delay"):
            if not cmd.get("path"):
                raise bad_request("fault needs a path")
            f = {"path": cmd["path"], "method": cmd.get("method"), "prefix": bool(cmd.get("prefix")),
                 "count": int(cmd.get("count", 1)), "watch": cmd.get("watch")}
            if action == "fail":
                f.update(code=int(cmd.get("code", 500)), reason=cmd.get("reason"),
                         message=cmd.get("message"), retryAfterSeconds=cmd.get("retryAfterSeconds"))
                if cmd.get("seconds"):
                    f["seconds"] = float(cmd["seconds"])
            else:
                f.update(seconds=float(cmd.get("seconds", 1.0)))
            with self.fault_lock:
                self.faults.append(f)
            return {"ok": True}
        if action == "clear_faults":
            with self.fault_lock:
                self.faults.clear()
            return {"ok": True}
        if action == "reset_requests":
            with self.fault_lock:
                self.requests.clear()
            return {"ok": True}
        if action == "set_pod_ready":
            return c.set_pod_ready(cmd.get("namespace", "default"), cmd["name"],
                                   bool(cmd.get("ready", True)))
        if action == "settle":
            ok = self.controllers.settle(float(cmd.get("timeout", 10)))
            if not ok:
                raise APIError(504, "Timeout", "controllers did not settle")
            return {"resourceVersion": c.rv}
        if action == "wait_watches":
            n = int(cmd.get("count", 0))
            if not c.wait_watches(n, float(cmd.get("timeout", 10))):
                raise APIError(504, "Timeout", f"open watches did not reach {n} "
                               f"(now {len(c.watchers)})")
            return {"openWatches": n}
        if action == "bookmark_interval":
            self.bookmark_interval = float(cmd["seconds"])
            return {"ok": True}
        raise bad_request(f"unknown control action {action!r}")

    # Convenience wrappers for in-process tests.
    def close_watches(self, abrupt=False):
        return self.control({"action": "close_watches", "abrupt": abrupt})

    def compact(self):
        return self.control({"action": "compact"})

    def fail_next(self, path, code, count=1, method=None, prefix=False, **extra):
        return self.control(dict(extra, action="fail", path=path, code=code, count=count,
                                 method=method, prefix=prefix))

    def settle(self, timeout=10.0):
        return self.controllers.settle(timeout)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description="Fake Kubernetes API server for Floe's tests")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--tls-dir")
    ap.add_argument("--token")
    ap.add_argument("--history", type=int, default=1000,
                    help="events kept for watch resumption (older RVs get 410)")
    ap.add_argument("--simulate-workloads", action="store_true")
    ap.add_argument("--bookmark-interval", type=float, default=5.0)
    ap.add_argument("--watch-timeout", type=float, default=1800.0,
                    help="watch duration when the client gives no timeoutSeconds")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    fake = FakeAPIServer(port=args.port, tls_dir=args.tls_dir, token=args.token,
                         history=args.history, simulate_workloads=args.simulate_workloads,
                         bookmark_interval=args.bookmark_interval,
                         watch_timeout=args.watch_timeout, verbose=args.verbose)
    fake.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.port_file:
        d = os.path.dirname(os.path.abspath(args.port_file))
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".port.")
        with os.fdopen(fd, "w") as f:
            f.write(f"{fake.port}\n")
        os.replace(tmp, args.port_file)
    print(f"fake-apiserver: serving {fake.url}", file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        pass
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
