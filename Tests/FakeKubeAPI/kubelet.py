"""A kubelet simulation for the fake API server: every pod's first container runs as a real
process on this machine (docs/fake-apiserver.md, "Executing pods").

What it does, per pod the workload simulation created:
- command: the container's `command[0]` is looked up in `commands` (image path -> local binary,
  e.g. `/usr/local/bin/floe-broker` -> `.build/release/floe-broker`); args get `$(VAR)` expanded
  from the container's env, as the kubelet does;
- env: `value`, `fieldRef` (metadata.name, metadata.namespace, metadata.uid, metadata.labels[...],
  metadata.annotations[...], status.podIP), `secretKeyRef` and `configMapKeyRef` resolved from the
  API server's objects (a missing Secret key leaves the pod waiting with CreateContainerConfigError);
- volumes: ConfigMap and Secret volumes are written to a temporary directory (and rewritten while
  the pod runs when their objects change, as the kubelet does), emptyDir and volume
  claims are directories (claims survive pod restarts and deletion); each mount path is mapped to
  its directory through `FLOE_TEST_PATH_MAP` (`/etc/floe=/tmp/.../etc/floe,...`), which the broker
  applies to its config file, `wal.dir` and `file://` storage paths (tests only);
- network: each pod gets its own IP in 127.0.0.0/8 (127.0.0.2, .3, ...); in args, `0.0.0.0:` and a
  bare `:PORT` listen address become that IP, and the pod's own DNS name
  (`POD.SERVICE.NAMESPACE.svc[.cluster.local]`) becomes the IP too: a stand-in for cluster DNS, so
  advertised addresses resolve for test clients while production renders the names;
- readiness: the readiness probe's `httpGet` is polled on the pod IP; the pod's Ready condition
  follows it;
- deletion: the preStop `httpGet` (the broker's `/drain`), then SIGTERM, then SIGKILL after
  `terminationGracePeriodSeconds` (the pod object itself is removed at once by the fake; the
  process is stopped in the background);
- crashes: an exited container is restarted with back-off (1, 2, 4, ... 10 s); the status shows
  `restartCount`, `lastState.terminated` and `waiting: CrashLoopBackOff` until it runs again.
"""
from __future__ import annotations

import base64
import copy
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

from fake_apiserver import now_rfc3339, track_update  # noqa: F401  (same directory)


class PodProcess:
    def __init__(self, key, uid, ip, workdir):
        self.key = key
        self.uid = uid
        self.ip = ip
        self.workdir = workdir
        self.proc = None
        self.restarts = 0
        self.next_start = 0.0
        self.ready = False
        self.waiting = None      # (reason, message) while not running
        self.projected = []      # (directory, plural, namespace, name) of ConfigMap and Secret volumes
        self.next_refresh = 0.0
        self.last_exit = None
        self.log_path = os.path.join(workdir, "container.log")


class Kubelet(threading.Thread):
    def __init__(self, cluster, workdir, commands, period=0.2):
        super().__init__(name="fake-kubelet", daemon=True)
        self.cluster = cluster
        self.workdir = workdir
        self.commands = dict(commands)
        self.period = period
        self.refresh_period = 1.0   # the real kubelet: about a minute (sync period + cache TTL)
        self.pods: dict[tuple[str, str], PodProcess] = {}
        self.ips: dict[tuple[str, str], str] = {}
        self.stopping = threading.Event()
        self.stoppers: list[threading.Thread] = []
        self.lock = threading.Lock()
        self._last_spec: dict = {}
        self.terminating: list[PodProcess] = []   # deleted pods whose process is being stopped

    # -- public ------------------------------------------------------------------------------

    def log(self, namespace, name) -> str:
        """The container output of a pod (all its runs)."""
        p = os.path.join(self.workdir, "pods", namespace, name, "container.log")
        if not os.path.exists(p):
            return ""
        with open(p, "rb") as f:
            return f.read().decode(errors="replace")

    def pod_ip(self, namespace, name):
        return self.ips.get((namespace, name))

    def running(self):
        """Keys of pods whose process is alive (including deleted pods still stopping)."""
        with self.lock:
            procs = list(self.pods.values()) + self.terminating
            return sorted({p.key for p in procs if p.proc and p.proc.poll() is None})

    def stop(self):
        self.stopping.set()
        self.join(10)
        with self.lock:
            pods = list(self.pods.values())
            self.pods.clear()
        for p in pods:
            self._terminate(p, None, grace=5)
        for t in list(self.stoppers):
            t.join(30)

    # -- loop --------------------------------------------------------------------------------

    def run(self):
        while not self.stopping.is_set():
            try:
                self.sync()
            except Exception as e:  # keep running; tests see the missing effect
                print(f"fake-kubelet: sync failed: {e!r}", flush=True)
            self.stopping.wait(self.period)

    def _snapshot(self):
        c = self.cluster
        with c.lock:
            pods = {k: copy.deepcopy(o) for k, o in c.objects[("", "pods")].items()
                    if not o["metadata"].get("deletionTimestamp")}
        return pods

    def _object(self, plural, ns, name):
        c = self.cluster
        with c.lock:
            o = c.objects[("", plural)].get((ns, name))
            return copy.deepcopy(o) if o else None

    def sync(self):
        pods = self._snapshot()
        with self.lock:
            # Deleted (or replaced) pods: stop their processes.
            for key, p in list(self.pods.items()):
                pod = pods.get(key)
                if pod is None or pod["metadata"]["uid"] != p.uid:
                    del self.pods[key]
                    self.terminating = [q for q in self.terminating if q.proc and q.proc.poll() is None] + [p]
                    t = threading.Thread(target=self._terminate, args=(p, self._last_spec.get(key)), daemon=True)
                    t.start()
                    self.stoppers.append(t)
            for key, pod in pods.items():
                self._last_spec[key] = pod["spec"]
                p = self.pods.get(key)
                if p is None:
                    # A pod with the same name starts only once the old one's process has
                    # exited (the StatefulSet guarantee: at most one pod per identity).
                    if any(q.key == key and q.proc and q.proc.poll() is None for q in self.terminating):
                        continue
                    ip = self.ips.setdefault(key, f"127.0.0.{2 + len(self.ips) % 250}")
                    wd = os.path.join(self.workdir, "pods", key[0], key[1])
                    os.makedirs(wd, exist_ok=True)
                    p = PodProcess(key, pod["metadata"]["uid"], ip, wd)
                    self.pods[key] = p
                self._drive(p, pod)

    def _drive(self, p: PodProcess, pod):
        now = time.monotonic()
        if p.proc is not None and p.proc.poll() is not None:
            code = p.proc.returncode
            p.last_exit = {"exitCode": code, "reason": "Error" if code else "Completed", "finishedAt": now_rfc3339()}
            p.proc = None
            p.restarts += 1
            p.ready = False
            p.next_start = now + min(10.0, 2.0 ** (p.restarts - 1))
            p.waiting = ("CrashLoopBackOff", f"back-off restarting failed container (exit code {code})")
            self._write_status(p, pod)
        if p.proc is None and now >= p.next_start:
            try:
                self._start(p, pod)
                p.waiting = None
            except ContainerConfigError as e:
                p.waiting = ("CreateContainerConfigError", str(e))
                p.next_start = now + 1.0
            self._write_status(p, pod)
            return
        if p.proc is not None and now >= p.next_refresh:
            self._refresh(p)
            p.next_refresh = now + self.refresh_period
        if p.proc is not None:
            ready = self._probe(p, pod)
            if ready != p.ready:
                p.ready = ready
                self._write_status(p, pod)

    # -- containers ---------------------------------------------------------------------------

    def _start(self, p: PodProcess, pod):
        spec = pod["spec"]
        container = spec["containers"][0]
        meta = pod["metadata"]
        ns, name = p.key
        fields = {"metadata.name": name, "metadata.namespace": ns, "metadata.uid": meta["uid"],
                  "status.podIP": p.ip, "status.hostIP": "127.0.0.1", "spec.nodeName": "fake-node"}
        for k, v in (meta.get("labels") or {}).items():
            fields[f"metadata.labels['{k}']"] = v
        for k, v in (meta.get("annotations") or {}).items():
            fields[f"metadata.annotations['{k}']"] = v
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": p.workdir}
        for e in container.get("env") or []:
            if "value" in e:
                env[e["name"]] = expand(e["value"], env)
                continue
            src = e.get("valueFrom") or {}
            if "fieldRef" in src:
                path = src["fieldRef"]["fieldPath"]
                if path not in fields:
                    raise ContainerConfigError(f"env {e['name']}: field {path} is not available")
                env[e["name"]] = fields[path]
            elif "secretKeyRef" in src or "configMapKeyRef" in src:
                ref = src.get("secretKeyRef") or src.get("configMapKeyRef")
                plural = "secrets" if "secretKeyRef" in src else "configmaps"
                data = self._data(plural, ns, ref["name"])
                if data is None or ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    raise ContainerConfigError(f"env {e['name']}: {plural[:-1]} {ns}/{ref['name']} has no key {ref['key']}")
                env[e["name"]] = data[ref["key"]]
            else:
                raise ContainerConfigError(f"env {e['name']}: unsupported source {sorted(src)}")

        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        mapping = []
        projected = []
        for m in container.get("volumeMounts") or []:
            v = volumes.get(m["name"])
            if v is None or "persistentVolumeClaim" in v:
                claim = (v or {}).get("persistentVolumeClaim", {}).get("claimName") or f"{m['name']}-{name}"
                d = os.path.join(self.workdir, "volumes", ns, claim)
                os.makedirs(d, exist_ok=True)
            elif "configMap" in v or "secret" in v:
                plural = "configmaps" if "configMap" in v else "secrets"
                ref = v.get("configMap", {}).get("name") or v.get("secret", {}).get("secretName")
                data = self._data(plural, ns, ref)
                if data is None:
                    raise ContainerConfigError(f"volume {m['name']}: {plural[:-1]} {ns}/{ref} not found")
                d = os.path.join(p.workdir, "volumes", m["name"])
                os.makedirs(d, exist_ok=True)
                write_volume(d, data)
                projected.append((d, plural, ns, ref))
            else:  # emptyDir and anything else: a fresh directory per pod (per uid: a new pod starts empty)
                d = os.path.join(p.workdir, "volumes", m["name"])
                if os.path.isdir(d) and open_marker(d) != p.uid:
                    shutil.rmtree(d)
                os.makedirs(d, exist_ok=True)
                with open(os.path.join(os.path.dirname(d), f".{m['name']}.uid"), "w") as f:
                    f.write(p.uid)
            mapping.append(f"{m['mountPath']}={d}")
        env["FLOE_TEST_PATH_MAP"] = ",".join(mapping)
        p.projected = projected

        command = list(container.get("command") or [])
        if not command or command[0] not in self.commands:
            raise ContainerConfigError(f"no local binary for command {command[:1]} (kubelet commands: {sorted(self.commands)})")
        command[0] = self.commands[command[0]]
        args = [self._network(expand(a, env), name, p.ip) for a in container.get("args") or []]
        with open(p.log_path, "ab") as log:
            log.write(f"--- start {now_rfc3339()} ip {p.ip}: {' '.join(command[:1] + args)}\n".encode())
            log.flush()
            p.proc = subprocess.Popen(command + args, env=env, cwd=p.workdir, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def _refresh(self, p: PodProcess):
        """Rewrites a running pod's ConfigMap and Secret volumes whose objects changed, as the
        kubelet does (atomically per file; keys that went away are removed)."""
        for d, plural, ns, ref in p.projected:
            data = self._data(plural, ns, ref)
            if data is not None:
                write_volume(d, data)

    @staticmethod
    def _network(arg, pod_name, ip):
        arg = arg.replace("=0.0.0.0:", f"={ip}:")
        arg = re.sub(r"^(--[a-z.-]+)=:(\d+)$", lambda m: f"{m.group(1)}={ip}:{m.group(2)}", arg)
        return re.sub(rf"\b{re.escape(pod_name)}\.[a-z0-9-]+\.[a-z0-9-]+\.svc(\.cluster\.local)?", ip, arg)

    def _data(self, plural, ns, name):
        o = self._object(plural, ns, name)
        if o is None:
            return None
        out = {}
        for k, v in (o.get("data") or {}).items():
            out[k] = base64.b64decode(v).decode() if plural == "secrets" else v
        out.update(o.get("stringData") or {})
        return out

    @staticmethod
    def _port(container, port):
        if isinstance(port, int):
            return port
        for cp in container.get("ports") or []:
            if cp.get("name") == port:
                return cp["containerPort"]
        return int(port)

    def _http(self, p, container, action, timeout):
        port = self._port(container, action["port"])
        url = f"http://{p.ip}:{port}{action.get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def _probe(self, p, pod):
        container = pod["spec"]["containers"][0]
        probe = (container.get("readinessProbe") or {}).get("httpGet")
        if probe is None:
            return True
        status = self._http(p, container, probe, timeout=1)
        return status is not None and 200 <= status < 400

    def _terminate(self, p: PodProcess, spec, grace=None):
        if p.proc is None or p.proc.poll() is not None:
            return
        container = (spec or {}).get("containers", [{}])[0]
        pre = ((container.get("lifecycle") or {}).get("preStop") or {}).get("httpGet")
        if grace is None:
            grace = (spec or {}).get("terminationGracePeriodSeconds", 30)
        deadline = time.monotonic() + grace
        if pre:
            self._http(p, container, pre, timeout=max(1, grace))
        p.proc.send_signal(signal.SIGTERM)
        try:
            p.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait()

    # -- status --------------------------------------------------------------------------------

    def _write_status(self, p: PodProcess, pod):
        c = self.cluster
        container = pod["spec"]["containers"][0]
        running = p.proc is not None and p.proc.poll() is None
        state = {"running": {"startedAt": now_rfc3339()}} if running else \
            {"waiting": {"reason": p.waiting[0], "message": p.waiting[1]}} if p.waiting else {"waiting": {"reason": "ContainerCreating"}}
        cs = {"name": container["name"], "image": container.get("image", ""), "ready": p.ready and running,
              "restartCount": p.restarts, "started": running, "state": state}
        if p.last_exit:
            cs["lastState"] = {"terminated": p.last_exit}
        ready = "True" if p.ready and running else "False"
        ts = now_rfc3339()
        status = {"phase": "Running" if running or p.restarts else "Pending", "podIP": p.ip,
                  "podIPs": [{"ip": p.ip}], "hostIP": "127.0.0.1",
                  "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": ts},
                                 {"type": "Initialized", "status": "True", "lastTransitionTime": ts},
                                 {"type": "ContainersReady", "status": ready, "lastTransitionTime": ts},
                                 {"type": "Ready", "status": ready, "lastTransitionTime": ts}],
                  "containerStatuses": [cs]}
        with c.lock:
            key = p.key
            o = c.objects[("", "pods")].get(key)
            if o is None or o["metadata"]["uid"] != p.uid:
                return
            c._internal_update(("", "pods"), key, lambda x: x.__setitem__("status", status),
                               manager="fake-kubelet", subresource="status")


def open_marker(d):
    """The uid of the pod an emptyDir was made for ('' when unknown)."""
    marker = os.path.join(os.path.dirname(d), f".{os.path.basename(d)}.uid")
    if not os.path.exists(marker):
        return ""
    with open(marker) as f:
        return f.read()


class ContainerConfigError(Exception):
    pass


def expand(text, env):
    """The kubelet's `$(VAR)` expansion (`$$` escapes; unknown variables are left as written)."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, text)


def write_volume(d, data):
    """Makes directory `d` hold exactly `data` (key -> text); each changed file is replaced
    atomically (write, rename), as the kubelet's atomic writer does."""
    for k, val in data.items():
        path = os.path.join(d, k)
        try:
            with open(path) as f:
                if f.read() == val:
                    continue
        except OSError:
            pass
        tmp = os.path.join(d, f".{k}.tmp")
        with open(tmp, "w") as f:
            f.write(val)
        os.replace(tmp, path)
    for k in os.listdir(d):
        if not k.startswith(".") and k not in data:
            os.remove(os.path.join(d, k))
