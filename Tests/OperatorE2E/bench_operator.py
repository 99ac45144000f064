"""Operator measurements (not a test): RSS with 10 FloeClusters reconciled, and reconcile
latency from a spec change to the updated StatefulSet.

Usage: swift build -c release --product floe-operator
       FLOE_OPERATOR_BIN=.build/release/floe-operator python3 Tests/OperatorE2E/bench_operator.py [--changes N]
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import FakeAPIServer, Api, Operator, operator_binary, wait_for  # noqa: E402
import yaml  # noqa: E402

NS = "apps"
FCS = f"/apis/floe.dev/v1alpha1/namespaces/{NS}/floeclusters"
STSS = f"/apis/apps/v1/namespaces/{NS}/statefulsets"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--changes", type=int, default=50)
    p.add_argument("--clusters", type=int, default=10)
    p.add_argument("--rest-seconds", type=float, default=60,
                   help="then measure the operator's API requests at rest (no change) over this long")
    p.add_argument("--leader-elect", action="store_true", help="run the operator with --leader-elect, as deploy/ does")
    p.add_argument("--qps", type=float, default=None, help="--kube-api-qps for the operator (default: its own, 20)")
    p.add_argument("--nodelay", action="store_true",
                   help="set TCP_NODELAY on the fake's connections (its http.server otherwise stalls each "
                        "reused keep-alive request ~40 ms on Nagle + delayed ACK)")
    args = p.parse_args()
    if args.nodelay:
        import fake_apiserver
        fake_apiserver.Handler.disable_nagle_algorithm = True
    binary = operator_binary()
    tmp = tempfile.mkdtemp(prefix="floe-bench-op-")
    token = "bench"
    server = FakeAPIServer(port=0, tls_dir=os.path.join(tmp, "tls"), token=token, simulate_workloads=True).start()
    api = Api(server, token)
    crd = yaml.safe_load(subprocess.run([binary, "crd"], check=True, capture_output=True, text=True).stdout)
    api.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    api.ok("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    kubeconfig = os.path.join(tmp, "kubeconfig")
    with open(kubeconfig, "w") as f:
        yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "fake",
                        "clusters": [{"name": "fake", "cluster": {"server": server.url, "certificate-authority": server.ca_file}}],
                        "users": [{"name": "op", "user": {"token": token}}],
                        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "op"}}]}, f)
    extra = ["--log-level=warning"] + (["--leader-elect", "--leader-election-namespace=" + NS] if args.leader_elect else [])
    if args.qps:
        extra += [f"--kube-api-qps={args.qps}", f"--kube-api-burst={int(args.qps * 2)}"]
    op = Operator(binary, kubeconfig, "bench", extra, log_dir=tmp)
    try:
        wait_for(lambda: op.probe("/readyz")[0] == 200, what="operator ready")
        rss_idle = rss_kib(op.proc.pid)
        for i in range(args.clusters):
            api.ok("POST", FCS, {"apiVersion": "floe.dev/v1alpha1", "kind": "FloeCluster", "metadata": {"name": f"c{i}"},
                                 "spec": {"replicas": 3, "storage": {"bucket": "file:///tmp/d"}}})

        def all_ready():
            for i in range(args.clusters):
                fc = api.get(f"{FCS}/c{i}")
                conds = {c["type"]: c for c in (fc.get("status") or {}).get("conditions") or []}
                if conds.get("Ready", {}).get("status") != "True":
                    return False
            return True
        t = time.monotonic()
        wait_for(all_ready, timeout=120, what="all clusters Ready", interval=0.1)
        converge = time.monotonic() - t
        server_settle = api.control(action="settle")
        rss_loaded = rss_kib(op.proc.pid)

        latencies = []
        for n in range(args.changes):
            replicas = 4 + (n % 2)
            start = time.monotonic()
            api.ok("PATCH", f"{FCS}/c0", {"spec": {"replicas": replicas}}, "application/merge-patch+json")
            wait_for(lambda: api.get(f"{STSS}/c0-broker")["spec"]["replicas"] == replicas, timeout=30,
                     what="sts follows", interval=0.002)
            latencies.append((time.monotonic() - start) * 1000)
        rss_after = rss_kib(op.proc.pid)
        lat = sorted(latencies)
        p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
        reqs = api.requests()
        print("method: real floe-operator (release) against the Python fake API server (HTTPS, token, simulated workloads)"
              + (", fake with TCP_NODELAY" if args.nodelay else ", fake as shipped")
              + f", client rate limit {args.qps or 20} QPS")
        print(f"API requests by the operator during the run: {sum(1 for r in reqs if 'floe-operator' in r['userAgent'])}")
        print(f"clusters: {args.clusters}, objects reconciled: {args.clusters * 5}, converge to all Ready: {converge:.2f} s")
        print(f"RSS idle (no clusters, caches synced): {rss_idle / 1024:.1f} MiB")
        print(f"RSS with {args.clusters} FloeClusters reconciled: {rss_loaded / 1024:.1f} MiB; after {args.changes} changes: {rss_after / 1024:.1f} MiB")
        print(f"spec change -> StatefulSet updated, over {len(lat)} changes: median {statistics.median(lat):.1f} ms, "
              f"p99 {p99:.1f} ms, min {lat[0]:.1f} ms, max {lat[-1]:.1f} ms")
        print(f"ratio that matters: RSS {rss_loaded / 1024:.1f} MiB vs the brief's 'tens of MiB'; "
              f"latency includes the fake's Python handling of PATCH, watch fan-out and the poll (2 ms)")

        # At rest: nothing changes; count what the operator still asks (watches stay open and
        # are not new requests; the lease renewal and the fake's watch bookmarks are).
        if args.rest_seconds > 0:
            time.sleep(5)
            api.control(action="reset_requests")
            time.sleep(args.rest_seconds)
            rest = [r for r in api.requests() if "floe-operator" in (r["userAgent"] or "")]
            by_kind = {}
            for r in rest:
                key = f"{r['method']} {r['verb']} {'/'.join(r['path'].split('/')[:6])}"
                by_kind[key] = by_kind.get(key, 0) + 1
            per_minute = len(rest) * 60 / args.rest_seconds
            print(f"at rest over {args.rest_seconds:.0f} s with {args.clusters} FloeClusters: {len(rest)} requests "
                  f"({per_minute:.1f}/min, {per_minute / args.clusters:.2f}/min per FloeCluster); by kind: {by_kind}")
    finally:
        op.stop(signal.SIGTERM)
        server.stop()


if __name__ == "__main__":
    main()
