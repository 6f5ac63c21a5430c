"""A small kubelet for the sandbox: runs selected pods as real processes.

Pods that carry the Dask role label, and the operator's own pods (labelled
`app.kubernetes.io/part-of=dask-operator`), unless they carry the simulate
label (`RUNNER_SELECTORS`), are left alone by kwok (its stages exclude them)
and run here instead, once kube-scheduler has bound them to a node:

* each pod gets a network namespace, a veth into the sandbox bridge and an
  address from the runner's half of the pod CIDR;
* Service names (`svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`)
  resolve through `/etc/netns/<netns>/hosts` to the ready endpoints of the
  Service (there is no kube-proxy, so ClusterIPs are not routable);
* the first container's command/args run with the pod's env (`value` and
  `fieldRef` sources, `$(VAR)` expansion) plus `KUBERNETES_SERVICE_HOST`/`PORT`,
  which point at the API server's own address on the bridge (there is no
  kube-proxy to carry the `kubernetes` Service's ClusterIP); volume mounts
  under `/run` are mounted, so the ServiceAccount token, the cluster CA and the
  namespace appear at `/var/run/secrets/kubernetes.io/serviceaccount` as a
  kubelet projects them (`volumes.py`); the image is ignored: commands come
  from the host, with this Python's bin dir first on PATH, and run as the
  sandbox's own user (`runAsUser` is not applied: the host's Python, often
  under root's home, is not readable by other users);
* status follows the process: Running at start, Ready when the readiness
  probe (httpGet or tcpSocket, from the host to the pod IP) passes, restarts
  with back-off per `restartPolicy`, Succeeded/Failed otherwise;
* on deletion it sends SIGTERM, waits out the grace period (at most 30 s),
  SIGKILLs, removes the namespace and deletes the pod object.

Init containers run first, in order, each to completion (a failed one is
retried with back-off per `restartPolicy`), with their own command, env and
log (`init-<name>.log`); readiness probes may also be `exec`, run in the pod's
namespaces (in the background, within `timeoutSeconds`); `fieldRef` env also
reads `metadata.labels['k']` and `metadata.annotations['k']`. Liveness probes
and extra containers are not run; preStop exec hooks are, within the grace
period, before SIGTERM. A stopped pod's leftovers -- processes that left the
container's process group (`ray start` does) -- are killed through its network
namespace. KubeRay's pods run as real Ray processes when they opt in
(`ray_pods.py`).

A partitioned node (its kwok annotation `kwok.PARTITIONED`) is one whose
kubelet lost the API server and whose network is cut: the runner takes the
bridge side of its pods' veths down and stops tending them -- no status, no
probes, no termination -- while their processes run on, unreachable. When the
node is healed, the links come up and tending resumes: a pod deleted meanwhile
is then stopped and its object removed, as a kubelet does when it returns.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import kr8s.asyncio

from ..constants import LABEL_PART_OF, LABEL_ROLE, PART_OF, SANDBOX_SIMULATE_LABEL
from . import netns, ray_pods
from .kwok import NODE_ANNOTATION, PARTITIONED
from .procs import pdeathsig_preexec
from .volumes import PodVolumes, VolumeNotReady, mount_wrapper

log = logging.getLogger(__name__)

# Either selects pods the runner runs; kwok.py's stages match exactly the rest.
RUNNER_SELECTORS = (
    f"{LABEL_ROLE},!{SANDBOX_SIMULATE_LABEL}",
    f"{LABEL_PART_OF}={PART_OF},!{SANDBOX_SIMULATE_LABEL}",
)
RESYNC_SECONDS = 1.0
MAX_GRACE_SECONDS = 30
MAX_BACKOFF_SECONDS = 10


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RunningPod:
    uid: str
    namespace: str
    name: str
    netns: str
    veth_slot: int
    address: str
    workdir: Path
    volumes: PodVolumes
    process: asyncio.subprocess.Process | None = None
    started_at: str = ""
    restarts: int = 0
    ready: bool = False
    next_start: float = 0.0
    last_probe: float = 0.0
    last_termination: dict | None = None
    terminal_phase: str | None = None
    stopping: bool = False
    hosts: dict = field(default_factory=dict)
    container: str = ""  # the first container's name, the one that runs
    init_done: int = 0  # init containers completed
    init_process: asyncio.subprocess.Process | None = None
    init_restarts: int = 0
    init_started_at: str = ""
    probe: asyncio.Task | None = None  # a running exec readiness probe
    node: str = ""
    partitioned: bool = False  # its veth is down: its node is partitioned


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion; `$$(VAR)` escapes."""
    def sub(m: re.Match) -> str:
        if m.group(0).startswith("$$"):
            return m.group(0)[1:]
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$?\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, value)


def _field_ref(pod: dict, path: str, address: str) -> str:
    meta = pod["metadata"]
    keyed = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if keyed:
        return str((meta.get(keyed.group(1)) or {}).get(keyed.group(2), ""))
    return {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        "status.podIP": address,
        "status.hostIP": address,
    }.get(path, "")


def container_env(pod: dict, address: str, container: dict | None = None) -> dict[str, str]:
    container = container or pod["spec"]["containers"][0]
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = _expand(str(item["value"]), env)
        elif "fieldRef" in item.get("valueFrom", {}):
            env[item["name"]] = _field_ref(pod, item["valueFrom"]["fieldRef"]["fieldPath"], address)
    return env


def container_argv(pod: dict, env: dict[str, str], container: dict | None = None) -> list[str]:
    container = container or pod["spec"]["containers"][0]
    argv = list(container.get("command", [])) + list(container.get("args", []))
    if not argv:
        raise ValueError("the pod runner needs a command or args: it cannot run an image's entrypoint")
    return [_expand(a, env) for a in argv]


def _port(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    return int(port)


class PodRunner:
    def __init__(self, kubeconfig: Path, network: netns.Network, state_dir: Path, apiserver_port: int):
        """`apiserver_port`: the API server's port on the bridge's gateway address."""
        self.kubeconfig = kubeconfig
        self.apiserver_port = apiserver_port
        self.network = network
        self.state_dir = state_dir
        self.pods: dict[str, RunningPod] = {}
        self._wake = asyncio.Event()
        self._slots = 0
        self._last_address = -1  # index in the runner range of the last address handed out
        self._http = httpx.AsyncClient(timeout=1.0)
        self._ray = ray_pods.RayReadiness()
        self._stopping = False
        self._cut: set[str] = set()  # partitioned nodes, kept by the node watch
        self.api = None

    def stop(self) -> None:
        """Ask `run` to finish: it stops every pod and returns.

        A flag rather than task cancellation: with watch events arriving all
        the time, Python 3.11's `wait_for` can swallow a cancellation.
        """
        self._stopping = True
        self._wake.set()

    # ---------------------------------------------------------------- loop
    async def run(self) -> None:
        self.api = await kr8s.asyncio.api(kubeconfig=str(self.kubeconfig))
        watches = [asyncio.create_task(self._watch("pods", s)) for s in RUNNER_SELECTORS]
        watches.append(asyncio.create_task(self._watch("endpointslices", None)))
        watches.append(asyncio.create_task(self._watch("nodes", None, self._node_event)))
        try:
            while not self._stopping:
                try:
                    await self.sync()
                except Exception:  # keep the kubelet alive through API hiccups
                    log.exception("pod runner sync failed")
                if self._stopping:
                    break
                try:
                    await asyncio.wait_for(self._wake.wait(), RESYNC_SECONDS)
                except asyncio.TimeoutError:
                    pass
                self._wake.clear()
        finally:
            for w in watches:
                w.cancel()
            await asyncio.wait(watches, timeout=2)
            await self.shutdown()

    async def _watch(self, kind: str, selector: str | None, seen=None) -> None:
        """Wake the sync loop at each event; `seen(event, obj)` first, if given."""
        while not self._stopping:
            try:
                async for event, obj in self.api.async_watch(kind, namespace=kr8s.ALL, label_selector=selector):
                    if seen is not None:
                        seen(event, obj.raw)
                    self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # reconnect; the resync loop covers the gap
                log.debug("watch %s ended: %s", kind, e)
                await asyncio.sleep(1)

    async def _get(self, url: str, params: dict | None = None) -> dict:
        version = "discovery.k8s.io/v1" if url == "endpointslices" else "v1"
        async with self.api.call_api("GET", version=version, url=url, params=params or {}) as r:
            return r.json()

    async def sync(self) -> None:
        pods = {p["metadata"]["uid"]: p for s in RUNNER_SELECTORS
                for p in (await self._get("pods", {"labelSelector": s}))["items"]}.values()
        hosts = await self._service_hosts()
        cut = set(self._cut)
        seen = set()
        for pod in pods:
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            if not pod["spec"].get("nodeName"):
                continue  # not scheduled yet
            try:
                if await self._partitioned(self.pods.get(uid), pod["spec"]["nodeName"] in cut):
                    continue
                await self._sync_pod(pod, hosts)
            except Exception:  # one bad pod must not stall the others
                log.exception("pod %s/%s", pod["metadata"]["namespace"], pod["metadata"]["name"])
        for uid in [u for u, rp in self.pods.items() if u not in seen and rp.node not in cut]:
            await self._stop(self.pods.pop(uid))

    def _node_event(self, event: str, node: dict) -> None:
        """Keep the set of partitioned nodes (a watch opened anew lists every node as ADDED)."""
        meta = node["metadata"]
        if event != "DELETED" and (meta.get("annotations") or {}).get(NODE_ANNOTATION) == PARTITIONED:
            self._cut.add(meta["name"])
        else:
            self._cut.discard(meta["name"])

    async def _partitioned(self, rp: RunningPod | None, cut: bool) -> bool:
        """Cut or restore a pod's link as its node is partitioned or healed; True: leave the pod be."""
        if rp is None or rp.partitioned == cut:
            return cut
        await asyncio.to_thread(netns.set_link, self.network.veth_name(rp.veth_slot), not cut)
        rp.partitioned = cut
        log.info("%s/%s: node %s %s", rp.namespace, rp.name, rp.node,
                 "partitioned: its link is down, its processes run on" if cut else "healed: its link is up")
        return cut

    async def _sync_pod(self, pod: dict, hosts: dict) -> None:
        rp = self.pods.get(pod["metadata"]["uid"])
        if pod["metadata"].get("deletionTimestamp"):
            await self._terminate(pod, rp)
            return
        if rp is None:
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                return
            rp = await self._admit(pod)
        self._write_hosts(rp, hosts)
        await self._tend(pod, rp)

    async def _service_hosts(self) -> dict[str, dict[str, list[str]]]:
        """namespace -> {hostname: [ready endpoint IPs]} from EndpointSlices."""
        slices = (await self._get("endpointslices"))["items"]
        by_ns: dict[str, dict[str, list[str]]] = {}
        for s in slices:
            svc = s["metadata"].get("labels", {}).get("kubernetes.io/service-name")
            if not svc:
                continue
            ns = s["metadata"]["namespace"]
            ips = [
                a
                for ep in s.get("endpoints") or []
                if (ep.get("conditions") or {}).get("ready", True)
                for a in ep.get("addresses", [])
            ]
            names = by_ns.setdefault(ns, {})
            for host in (f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.cluster.local"):
                names.setdefault(host, []).extend(ips)
        return by_ns

    def _write_hosts(self, rp: RunningPod, hosts: dict) -> None:
        entries: dict[str, list[str]] = {}
        for ns, names in hosts.items():
            for host, ips in names.items():
                entries[host] = sorted(set(ips))
                if ns == rp.namespace:  # search-path short names
                    short = host.split(".svc")[0]
                    entries[short] = entries[host]
                    entries[short.split(".")[0]] = entries[host]
        if entries != rp.hosts:
            netns.write_hosts(rp.netns, rp.name, rp.address, entries)
            rp.hosts = entries

    # ------------------------------------------------------------ lifecycle
    def _allocate_address(self) -> str:
        """The next free address after the last one handed out, round the range.

        Not the lowest free one: a pod that took a just-deleted pod's address
        would be unreachable until every neighbour (ARP) cache that still maps
        it to the old, destroyed veth expires -- tens of seconds of silently
        dropped packets for whoever talks to it.
        """
        used = {rp.address for rp in self.pods.values()}
        hosts = [str(h) for h in self.network.runner_range.hosts()
                 if h not in (self.network.gateway, self.network.void)]
        for step in range(1, len(hosts) + 1):
            candidate = hosts[(self._last_address + step) % len(hosts)]
            if candidate not in used:
                self._last_address = (self._last_address + step) % len(hosts)
                return candidate
        raise RuntimeError("runner pod addresses exhausted")

    async def _admit(self, pod: dict) -> RunningPod:
        meta = pod["metadata"]
        self._slots += 1
        workdir = self.state_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"
        rp = RunningPod(
            uid=meta["uid"],
            namespace=meta["namespace"],
            name=meta["name"],
            netns=self.network.netns_name(meta["uid"]),
            veth_slot=self._slots,
            address=self._allocate_address(),
            workdir=workdir,
            volumes=PodVolumes(self.api, pod, workdir / "volumes"),
            container=pod["spec"]["containers"][0]["name"],
            node=pod["spec"]["nodeName"],
        )
        rp.workdir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(
            netns.create_pod_namespace, self.network, rp.netns, self.network.veth_name(rp.veth_slot), rp.address
        )
        netns.write_hosts(rp.netns, rp.name, rp.address, {})
        self.pods[rp.uid] = rp
        log.info("admitted pod %s/%s at %s", rp.namespace, rp.name, rp.address)
        return rp

    async def _start(self, pod: dict, rp: RunningPod) -> None:
        env = {**ray_pods.pod_env(pod, rp.workdir), **container_env(pod, rp.address)}
        argv = ray_pods.argv(pod, container_argv(pod, env), env)
        await rp.volumes.write(asyncio.get_running_loop().time())
        note = ray_pods.image_note(pod)
        if note:
            log.info("%s/%s: %s", rp.namespace, rp.name, note)
        rp.process = await self._exec(rp, argv, env)
        rp.started_at = _now()
        rp.ready = False
        log.info("started %s/%s (pid %d): %s", rp.namespace, rp.name, rp.process.pid, " ".join(argv))

    async def _start_init(self, pod: dict, rp: RunningPod, container: dict) -> None:
        env = {**ray_pods.pod_env(pod, rp.workdir), **container_env(pod, rp.address, container)}
        argv = container_argv(pod, env, container)
        await rp.volumes.write(asyncio.get_running_loop().time())
        rp.init_process = await self._exec(rp, argv, env, f"init-{container['name']}.log")
        rp.init_started_at = _now()
        log.info("started init container %s of %s/%s (pid %d)", container["name"], rp.namespace, rp.name,
                 rp.init_process.pid)

    async def _tend_init(self, pod: dict, rp: RunningPod) -> bool:
        """Run the init containers in turn; True once all have completed."""
        inits = pod["spec"].get("initContainers") or []
        loop = asyncio.get_running_loop()
        while rp.init_done < len(inits):
            container = inits[rp.init_done]
            proc = rp.init_process
            if proc is None:
                if loop.time() < rp.next_start:
                    return False
                await self._start_init(pod, rp, container)
                return False
            if proc.returncode is None:
                return False
            rp.init_process = None
            if proc.returncode == 0:
                rp.init_done += 1
                log.info("%s/%s: init container %s completed", rp.namespace, rp.name, container["name"])
                continue
            rp.last_termination = {"exitCode": proc.returncode, "reason": "Error",
                                   "startedAt": rp.init_started_at, "finishedAt": _now()}
            if pod["spec"].get("restartPolicy", "Always") == "Never":
                rp.terminal_phase = "Failed"
                return False
            rp.init_restarts += 1
            rp.next_start = loop.time() + min(MAX_BACKOFF_SECONDS, 2 ** (rp.init_restarts - 1))
            log.info("%s/%s: init container %s exited %d; retrying (#%d)", rp.namespace, rp.name,
                     container["name"], proc.returncode, rp.init_restarts)
            return False
        return True

    async def _exec(self, rp: RunningPod, argv: list[str], env: dict[str, str],
                    log_name: str = "container.log") -> asyncio.subprocess.Process:
        """Run `argv` in the pod: its network and mount namespaces, env and log."""
        full_env = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(rp.workdir),
            "HOSTNAME": rp.name,
            "PYTHONUNBUFFERED": "1",
            "KUBERNETES_SERVICE_HOST": str(self.network.gateway),
            "KUBERNETES_SERVICE_PORT": str(self.apiserver_port),
            **env,
        }
        with (rp.workdir / log_name).open("ab") as logfile:
            return await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", rp.netns, *mount_wrapper(rp.volumes.mounts(), argv),
                cwd=rp.workdir, env=full_env, stdout=logfile, stderr=logfile,
                stdin=asyncio.subprocess.DEVNULL, preexec_fn=pdeathsig_preexec, start_new_session=True,
            )

    async def _pre_stop(self, pod: dict, rp: RunningPod, grace: float) -> None:
        """The container's preStop exec hook, within the grace period, as a kubelet runs it."""
        container = pod["spec"]["containers"][0]
        command = ((container.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command")
        if not command or rp.process is None or rp.process.returncode is not None:
            return
        hook = await self._exec(rp, list(command), container_env(pod, rp.address))
        try:
            code = await asyncio.wait_for(hook.wait(), grace)
            log.info("%s/%s: preStop hook exited %d", rp.namespace, rp.name, code)
        except asyncio.TimeoutError:
            _signal_group(hook.pid, signal.SIGKILL)
            await hook.wait()
            log.info("%s/%s: preStop hook ran out of the %.0f s grace period", rp.namespace, rp.name, grace)

    async def _tend(self, pod: dict, rp: RunningPod) -> None:
        loop = asyncio.get_running_loop()
        if rp.terminal_phase:
            await self._patch_status(pod, rp)
            return
        if rp.process is not None and rp.process.returncode is not None:
            code = rp.process.returncode
            rp.last_termination = {
                "exitCode": code, "reason": "Completed" if code == 0 else "Error",
                "startedAt": rp.started_at, "finishedAt": _now(),
            }
            rp.process = None
            rp.ready = False
            policy = pod["spec"].get("restartPolicy", "Always")
            if policy == "Always" or (policy == "OnFailure" and code != 0):
                rp.restarts += 1
                rp.next_start = loop.time() + min(MAX_BACKOFF_SECONDS, 2 ** (rp.restarts - 1))
                log.info("%s/%s exited %d; restarting (#%d)", rp.namespace, rp.name, code, rp.restarts)
            else:
                rp.terminal_phase = "Succeeded" if code == 0 else "Failed"
                log.info("%s/%s exited %d: %s", rp.namespace, rp.name, code, rp.terminal_phase)
        if rp.process is not None and rp.volumes.refresh_at and loop.time() >= rp.volumes.refresh_at:
            await rp.volumes.write(loop.time())  # a token near its end
        if rp.process is None and not rp.terminal_phase and loop.time() >= rp.next_start:
            try:
                if await self._tend_init(pod, rp) and loop.time() >= rp.next_start:
                    await self._start(pod, rp)
            except VolumeNotReady as e:
                log.info("%s/%s waits for its volumes: %s", rp.namespace, rp.name, e)
            except (OSError, ValueError) as e:
                rp.last_termination = {"exitCode": 128, "reason": "StartError", "message": str(e),
                                       "startedAt": _now(), "finishedAt": _now()}
                rp.terminal_phase = "Failed"
        if rp.process is not None and not rp.ready:
            await self._probe(pod, rp)
        await self._patch_status(pod, rp)

    async def _probe(self, pod: dict, rp: RunningPod) -> None:
        container = pod["spec"]["containers"][0]
        probe = container.get("readinessProbe")
        if not probe:
            rp.ready = True
            return
        loop = asyncio.get_running_loop()
        period = min(float(probe.get("periodSeconds", 10)), 2.0)
        if loop.time() - rp.last_probe < period:
            return
        rp.last_probe = loop.time()
        try:
            if "httpGet" in probe:
                get = probe["httpGet"]
                url = f"http://{rp.address}:{_port(container, get['port'])}{get.get('path', '/')}"
                rp.ready = (await self._http.get(url)).status_code < 400
            elif "tcpSocket" in probe:
                port = _port(container, probe["tcpSocket"]["port"])
                _, writer = await asyncio.wait_for(asyncio.open_connection(rp.address, port), 1)
                writer.close()
                rp.ready = True
            elif self._ray.replaces(pod):  # see ray_pods.py
                rp.ready = await self._ray.ready(container_env(pod, rp.address), rp.address, rp.hosts)
            elif "exec" in probe:
                rp.ready = self._exec_probe(pod, rp, probe)
            else:
                rp.ready = True  # grpc probes are not run
        except (httpx.HTTPError, OSError, asyncio.TimeoutError):
            rp.ready = False

    def _exec_probe(self, pod: dict, rp: RunningPod, probe: dict) -> bool:
        """The outcome of the last exec probe, starting the next one in the background."""
        task, rp.probe = rp.probe, None
        if task is not None and not task.done():
            rp.probe = task
            return False
        passed = task is not None and not task.cancelled() and task.exception() is None and task.result()
        if not passed:
            rp.probe = asyncio.create_task(self._run_exec_probe(pod, rp, probe))
        return passed

    async def _run_exec_probe(self, pod: dict, rp: RunningPod, probe: dict) -> bool:
        env = {**ray_pods.pod_env(pod, rp.workdir), **container_env(pod, rp.address)}
        proc = await self._exec(rp, list(probe["exec"]["command"]), env, "probe.log")
        try:
            return await asyncio.wait_for(proc.wait(), float(probe.get("timeoutSeconds", 1))) == 0
        except asyncio.TimeoutError:
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
            return False

    def _status(self, pod: dict, rp: RunningPod) -> dict:
        container = pod["spec"]["containers"][0]
        running = rp.process is not None
        ready = running and rp.ready
        inits = pod["spec"].get("initContainers") or []
        initialized = rp.init_done >= len(inits)
        if running:
            state = {"running": {"startedAt": rp.started_at}}
        elif rp.last_termination and rp.terminal_phase:
            state = {"terminated": rp.last_termination}
        elif not initialized:
            state = {"waiting": {"reason": "PodInitializing"}}
        else:
            state = {"waiting": {"reason": "CrashLoopBackOff" if rp.restarts else "ContainerCreating"}}
        cstatus = {
            "name": container["name"], "image": container.get("image", ""), "imageID": "",
            "ready": ready, "started": running, "restartCount": rp.restarts, "state": state,
        }
        if rp.last_termination and not rp.terminal_phase:
            cstatus["lastState"] = {"terminated": rp.last_termination}
        flag = "True" if ready else "False"
        status = {
            "phase": rp.terminal_phase or ("Running" if initialized else "Pending"),
            "hostIP": str(self.network.gateway),
            "hostIPs": [{"ip": str(self.network.gateway)}],
            "podIP": rp.address,
            "podIPs": [{"ip": rp.address}],
            "startTime": pod.get("status", {}).get("startTime") or rp.started_at or _now(),
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True" if initialized else "False"},
                {"type": "ContainersReady", "status": flag},
                {"type": "Ready", "status": flag},
            ],
            "containerStatuses": [cstatus],
        }
        if inits:
            status["initContainerStatuses"] = [self._init_status(rp, i, c) for i, c in enumerate(inits)]
        return status

    @staticmethod
    def _init_status(rp: RunningPod, index: int, container: dict) -> dict:
        if index < rp.init_done:
            state = {"terminated": {"exitCode": 0, "reason": "Completed"}}
        elif index == rp.init_done and rp.init_process is not None:
            state = {"running": {"startedAt": rp.init_started_at}}
        else:
            state = {"waiting": {"reason": "PodInitializing" if index > rp.init_done else
                                 "CrashLoopBackOff" if rp.init_restarts else "ContainerCreating"}}
        return {"name": container["name"], "image": container.get("image", ""), "imageID": "",
                "ready": index < rp.init_done, "started": index == rp.init_done and rp.init_process is not None,
                "restartCount": rp.init_restarts if index == rp.init_done else 0, "state": state}

    async def _patch_status(self, pod: dict, rp: RunningPod) -> None:
        new = self._status(pod, rp)
        old = pod.get("status", {})

        def strip(status: dict) -> dict:
            return {
                **{k: v for k, v in status.items() if k not in ("conditions", "startTime")},
                "conditions": {c["type"]: c["status"] for c in status.get("conditions", [])},
            }

        if strip(old) == strip(new):
            return
        now = _now()
        previous = {c["type"]: c for c in old.get("conditions", [])}
        for c in new["conditions"]:
            prev = previous.get(c["type"])
            c["lastTransitionTime"] = prev["lastTransitionTime"] if prev and prev["status"] == c["status"] and prev.get("lastTransitionTime") else now
            c["lastProbeTime"] = None
        url = f"pods/{rp.name}/status"
        try:
            async with self.api.call_api(
                "PATCH", url=url, namespace=rp.namespace,
                content=json.dumps({"status": new}),
                headers={"Content-Type": "application/merge-patch+json"},
            ):
                pass
        except Exception as e:
            log.debug("status patch for %s/%s failed: %s", rp.namespace, rp.name, e)

    async def _terminate(self, pod: dict, rp: RunningPod | None) -> None:
        meta = pod["metadata"]
        if rp is not None:
            if rp.stopping:
                return
            rp.stopping = True
            grace = pod["metadata"].get("deletionGracePeriodSeconds")
            grace = MAX_GRACE_SECONDS if grace is None else min(int(grace), MAX_GRACE_SECONDS)
            asyncio.create_task(self._terminate_then_delete(pod, rp, grace))
        else:
            await self._delete_object(meta)

    async def _terminate_then_delete(self, pod: dict, rp: RunningPod, grace: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        await self._pre_stop(pod, rp, grace)
        # As a kubelet: at least 2 s between the end of the hook and SIGKILL.
        await self._stop(rp, max(2.0, deadline - loop.time()))
        self.pods.pop(rp.uid, None)
        await self._delete_object(pod["metadata"])

    async def _delete_object(self, meta: dict) -> None:
        try:
            async with self.api.call_api(
                "DELETE", url=f"pods/{meta['name']}", namespace=meta["namespace"],
                content=json.dumps(
                    {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
                ),
                headers={"Content-Type": "application/json"},
            ):
                pass
        except Exception as e:
            log.debug("final delete of %s/%s: %s", meta["namespace"], meta["name"], e)

    async def _stop(self, rp: RunningPod, grace: float = 0) -> None:
        proc = rp.process
        if proc is not None and proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except asyncio.TimeoutError:
                pass
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
        rp.process = None
        for other in (rp.init_process, rp.probe):
            if isinstance(other, asyncio.Task):
                other.cancel()
            elif other is not None and other.returncode is None:
                _signal_group(other.pid, signal.SIGKILL)
                await other.wait()
        rp.init_process = rp.probe = None
        await asyncio.to_thread(_kill_namespace, rp.netns)
        await asyncio.to_thread(netns.delete_pod_namespace, rp.netns)
        ray_pods.cleanup(rp.uid)
        log.info("stopped %s/%s", rp.namespace, rp.name)

    async def shutdown(self) -> None:
        await asyncio.gather(*(self._stop(rp, 2) for rp in list(self.pods.values())), return_exceptions=True)
        self.pods.clear()
        await self._http.aclose()
        await self._ray.aclose()


def _kill_namespace(name: str) -> None:
    """SIGKILL what still runs in a pod's network namespace, until nothing does (at most ~5 s)."""
    for _ in range(50):
        pids = [int(p) for p in netns.ip("netns", "pids", name, check=False).stdout.split()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    log.warning("processes still running in %s", name)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
