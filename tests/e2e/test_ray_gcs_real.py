"""The Ray GCS client and the KubeRay backend's scale-down against a real Ray head on this machine.

Two raylets of the installed ray (2.60) on loopback, in a pytest temp dir: the
head at 127.0.0.2 and a worker at 127.0.0.3, started the way KubeRay starts a
worker pod (RAY_CLOUD_INSTANCE_ID = the pod's name, RAY_NODE_TYPE_NAME = its
group). Not 127.0.0.1: `ray start` swaps 127.0.0.1 and localhost for the
machine's outward address, other loopback addresses it keeps; the head runs
with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 so that its helpers fall back to
loopback too. A driver (`ray.init` in a subprocess) puts a 20 MB object into
the worker's object store, and runs a task there that blocks on a FIFO.

What it shows, polling with deadlines:
- GetClusterResourceState lists both nodes; the worker, with its pod name as
  instance id, reads IDLE while nothing runs;
- holding the object, and running the task, it reads RUNNING with the reason in
  its node activity, and DrainNode (IDLE_TERMINATION) is refused with Ray's
  "no longer idle"; the backend refuses the scale-down (ScaleDownUnsafe,
  nothing written, nothing drained);
- once the object is released and the task done, the backend drains the worker
  (accepted), names its pod in `workersToDelete`, and the node goes DEAD.
The RayCluster and its pods are FakeKube objects (no API server is needed:
the head pod's IP and `gcs-server` port point at the real head).

Every process this module starts carries a marker in its environment; at the
end each is SIGKILLed by PID (not `ray stop`, which kills every Ray process on
the machine by name, other users' too), and none may remain.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from helpers import async_wait_for, wait_for
from unit.fakes import FakeKube

from dask_operator.backends.kuberay import KubeRayBackend
from dask_operator.core.kuberay import MIN_IDLE_SECONDS
from dask_operator.errors import ScaleDownUnsafe
from dask_operator.ray_gcs import Drain, RayGcsClient, RayNode

pytestmark = pytest.mark.e2e

HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
WORKER_POD, GROUP = "rc-workers-worker-abcde", "workers"
NS, NAME = "ray-real", "rc"
REFUSAL = "The node to be idle terminated is no longer idle."
MARKER = "DASK_OPERATOR_TEST_RAY"
RAY = str(Path(sys.executable).with_name("ray"))

DRIVER = r"""
import sys, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

address, ip, node, fifo = sys.argv[1:5]
ray.init(address=address, _node_ip_address=ip, logging_level="ERROR", log_to_driver=False)
on_worker = NodeAffinitySchedulingStrategy(node, soft=False)

@ray.remote(num_cpus=0)
def payload():
    return b"x" * (20 * 2**20)  # > 100 KiB: stored in the worker's object store, not inlined

@ray.remote(num_cpus=1)
def blocked(path):
    with open(path) as f:  # blocks until the test writes
        return f.read()

print("ready", flush=True)
for line in sys.stdin:
    command = line.strip()
    if command == "put":
        ref = payload.options(scheduling_strategy=on_worker).remote()
        ray.wait([ref], fetch_local=False)
    elif command == "release":
        del ref
    elif command == "block":
        task = blocked.options(scheduling_strategy=on_worker).remote(fifo)
    elif command == "finish":
        print(ray.get(task), flush=True)
        continue
    elif command == "exit":
        break
    print(command, flush=True)
ray.shutdown()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def marked(marker: str) -> list[int]:
    """PIDs of the live (not zombie) processes whose environment carries `marker`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if f"{MARKER}={marker}".encode() in (proc / "environ").read_bytes().split(b"\0") and \
                    (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


class RayProcesses:
    """`ray start` for the head and one worker, every process marked in its environment."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.marker = uuid.uuid4().hex
        self.port = free_port()
        self.address = f"{HEAD_IP}:{self.port}"
        self.env = {**os.environ, MARKER: self.marker, "RAY_TMPDIR": str(tmp), "RAY_USAGE_STATS_ENABLED": "0"}
        self.timings: dict[str, float] = {}

    def ray_start(self, what: str, env: dict, *args: str) -> None:
        started = time.monotonic()
        done = subprocess.run([RAY, "start", "--disable-usage-stats", "--num-cpus", "1",
                               "--object-store-memory", str(100 * 2**20), "--temp-dir", str(self.tmp),
                               "--dashboard-agent-listen-port", str(free_port()), *args],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"ray start ({what}) failed:\n{done.stdout}\n{done.stderr}"
        self.timings[f"ray start {what} (s)"] = round(time.monotonic() - started, 1)

    def start(self) -> None:
        self.ray_start("head", {**self.env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}, "--head",
                       "--port", str(self.port), "--node-ip-address", HEAD_IP, "--include-dashboard=false",
                       "--ray-client-server-port", str(free_port()))
        self.ray_start("worker", {**self.env, "RAY_CLOUD_INSTANCE_ID": WORKER_POD, "RAY_NODE_TYPE_NAME": GROUP},
                       "--address", self.address, "--node-ip-address", WORKER_IP)
        self.worker_started = time.monotonic()

    def stop(self) -> list[int]:
        """SIGKILL every marked process by PID until none is left; returns the PIDs killed."""
        killed: list[int] = []

        def none_left() -> bool:
            for pid in marked(self.marker):
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
            return not marked(self.marker)

        wait_for(none_left, 30, "every Ray process of this test to be gone")
        return killed


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory) -> RayProcesses:
    processes = RayProcesses(tmp_path_factory.mktemp("ray"))
    try:
        processes.start()
        yield processes
    finally:
        killed = processes.stop()
        assert killed, "the Ray processes were found by their marker"
        assert marked(processes.marker) == []
        print("timings:", processes.timings)


class Driver:
    """The Ray driver subprocess, driven line by line over stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, ray: RayProcesses, worker: RayNode, fifo: Path) -> Driver:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", DRIVER, ray.address, HEAD_IP, worker.node_id.hex(), str(fifo),
            env={**ray.env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        driver = cls(proc)
        assert await driver.read(60) == "ready"
        return driver

    async def read(self, timeout: float = 30) -> str:
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert line, f"the driver exited ({await self.proc.wait()})"
        return line.decode().strip()

    async def do(self, command: str) -> str:
        self.proc.stdin.write(f"{command}\n".encode())
        await self.proc.stdin.drain()
        return await self.read()


def ray_cluster_objects(kube: FakeKube, port: int) -> None:
    """The RayCluster and its pods as KubeRay makes them, at the real raylets' addresses."""
    def pod(name: str, ip: str, node_type: str, ports: list[dict]) -> dict:
        labels = {"ray.io/cluster": NAME, "ray.io/node-type": node_type}
        if node_type == "worker":
            labels["ray.io/group"] = GROUP
        return {"metadata": {"name": name, "namespace": NS, "labels": labels},
                "spec": {"containers": [{"name": f"ray-{node_type}", "ports": ports}]},
                "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}}

    kube.add("ray.io/v1", "rayclusters", {
        "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": NAME, "namespace": NS},
        "spec": {"headGroupSpec": {"template": {}}, "workerGroupSpecs": [
            {"groupName": GROUP, "replicas": 1, "minReplicas": 0, "maxReplicas": 2, "template": {}}]}})
    kube.add("v1", "pods", pod(f"{NAME}-head-x", HEAD_IP, "head", [{"name": "gcs-server", "containerPort": port}]))
    kube.add("v1", "pods", pod(WORKER_POD, WORKER_IP, "worker", []))


async def test_idle_signal_and_drain_handshake_on_a_real_head(ray_cluster: RayProcesses, tmp_path: Path, caplog):
    caplog.set_level(logging.INFO, logger="dask_operator.backends.kuberay")
    timings = ray_cluster.timings
    client = RayGcsClient()
    kube = FakeKube()
    ray_cluster_objects(kube, ray_cluster.port)
    backend = KubeRayBackend(kube, client, via_service=False)  # type: ignore[arg-type]
    driver = None

    async def worker(condition) -> RayNode | None:
        nodes = [n for n in await client.nodes(ray_cluster.address) if n.instance_id == WORKER_POD]
        return nodes[0] if len(nodes) == 1 and condition(nodes[0]) else None

    async def refused_scale_down() -> str:
        with pytest.raises(ScaleDownUnsafe) as raised:
            await backend.scale(NS, NAME, 0)
        assert kube.writes() == [], "nothing written"
        return str(raised.value)

    try:
        # Both nodes registered; the worker idle.
        nodes = await async_wait_for(lambda: _both(client, ray_cluster.address), 60, "head and worker in the GCS")
        idle = await async_wait_for(lambda: worker(lambda n: n.status == "IDLE"), 30, "the worker IDLE")
        timings["worker IDLE after its ray start returned (s)"] = round(
            time.monotonic() - ray_cluster.worker_started, 1)
        head = next(n for n in nodes if n.instance_id != WORKER_POD)
        assert (head.ip, head.instance_id, head.status) == (HEAD_IP, "", "IDLE")
        assert (idle.ip, idle.node_type, idle.activity) == (WORKER_IP, GROUP, ())

        # Holding a 20 MB object: not idle, the drain refused, the scale-down refused.
        fifo = tmp_path / "unblock"
        os.mkfifo(fifo)
        driver = await Driver.start(ray_cluster, idle, fifo)
        assert await driver.do("put") == "put"
        put = time.monotonic()
        holding = await async_wait_for(lambda: worker(lambda n: n.status == "RUNNING" and _only_object(n)), 15,
                                       "the worker busy with nothing but the object")
        timings["RUNNING after the object was stored (s)"] = round(time.monotonic() - put, 1)
        print("holding the object:", holding)
        assert await client.drain_idle(ray_cluster.address, idle.node_id, "test: holds an object", 0) == \
            Drain(False, REFUSAL)
        assert f"(busy: {WORKER_POD})" in await refused_scale_down()

        # Released: idle again.
        assert await driver.do("release") == "release"
        released = time.monotonic()
        idle_again = await async_wait_for(lambda: worker(lambda n: n.status == "IDLE"), 15,
                                          "the worker IDLE once released")
        timings["IDLE after the object was released (s)"] = round(time.monotonic() - released, 1)
        print("released:", idle_again)

        # Running a task: not idle, the drain refused, the scale-down refused.
        assert await driver.do("block") == "block"
        running = await async_wait_for(lambda: worker(lambda n: n.status == "RUNNING" and _cpu(n)), 30,
                                       "the task running")
        print("running the task:", running)
        assert await client.drain_idle(ray_cluster.address, idle.node_id, "test: runs a task", 0) == \
            Drain(False, REFUSAL)
        assert f"(busy: {WORKER_POD})" in await refused_scale_down()
        assert (await worker(lambda n: True)).status == "RUNNING", "a refused drain leaves the node as it was"
        assert not [r for r in caplog.records if "release worker" in r.getMessage() or "released" in
                    r.getMessage()], "the backend drained nothing while the worker was busy"

        # Task done: the backend drains the worker (accepted) and names its pod; the node leaves Ray.
        await asyncio.wait_for(asyncio.to_thread(fifo.write_text, "done"), 30)
        assert await driver.do("finish") == "done"
        finished = time.monotonic()

        async def scaled() -> dict | None:
            try:
                return await backend.scale(NS, NAME, 0)
            except ScaleDownUnsafe:  # idle for less than MIN_IDLE_SECONDS yet
                assert kube.writes() == []
                return None

        updated = await async_wait_for(scaled, 30, "the scale-down to 0 to go through")
        timings["scale-down named the worker after the task ended (s)"] = round(time.monotonic() - finished, 1)
        assert time.monotonic() - finished >= MIN_IDLE_SECONDS - 1.5, "not before the worker was idle long enough"
        group = updated["spec"]["workerGroupSpecs"][0]
        assert (group["replicas"], group["scaleStrategy"]["workersToDelete"]) == (0, [WORKER_POD])
        assert any(f"Ray released worker {WORKER_POD}" in r.getMessage() for r in caplog.records)
        drained = time.monotonic()
        await async_wait_for(lambda: worker(lambda n: n.status == "DEAD"), 15, "the drained worker DEAD")
        timings["DEAD after the accepted drain (s)"] = round(time.monotonic() - drained, 1)
        alive = [n for n in await client.nodes(ray_cluster.address) if n.alive]
        assert [n.ip for n in alive] == [HEAD_IP]
    finally:
        if driver is not None and driver.proc.returncode is None:
            driver.proc.kill()
            await driver.proc.wait()
        await client.aclose()


def _only_object(node: RayNode) -> bool:
    """Busy only because of objects in its store (no task, no leased worker)."""
    return bool(node.activity) and all("object_store_memory" in a for a in node.activity)


def _cpu(node: RayNode) -> bool:
    return any("CPU" in a for a in node.activity)


async def _both(client: RayGcsClient, address: str) -> list[RayNode] | None:
    nodes = [n for n in await client.nodes(address) if n.alive]
    return nodes if sorted(n.ip for n in nodes) == [HEAD_IP, WORKER_IP] else None
