"""KubeRay's pods as real Ray processes: a scale-down through the backend loses no object.

A sandbox with the real KubeRay operator (v1.6.2). The RayCluster's pod
templates carry `ray_pods.RAY_OPT_IN_LABELS`, so the pod runner, not kwok,
runs its head and two workers: KubeRay's own command lines (`ray start ...
--block`, the installed Ray standing in for the `rayproject/ray` image, each
pod with its own Ray temp dir), the worker's `wait-gcs-ready` init container
(`ray health-check` against the head Service), and readiness: KubeRay's probes
ask the dashboard's HTTP servers, which the installed minimal Ray does not run,
so the runner asks the GCS whether the pod's Ray node is alive instead -- a pod
is Ready only when its Ray node is. Ray sizes are small: 0 CPUs on the head, 1
per worker, 80 MiB object stores, 256 MiB of Ray memory.

A Ray Client driver on the host (`ray.init("ray://<head pod IP>:10001")` over
the sandbox bridge, in a subprocess) makes a 20 MiB object on one worker (a
task pinned there by node affinity; the reference is kept, and the object is
not fetched, so that worker's store holds the only copy). Then:
- scaling the RayCluster to 1 worker through `KubeRayBackend.scale` drains the
  idle worker in Ray, names it in `workersToDelete`, and KubeRay deletes
  exactly that pod; its Ray processes are gone, the other worker and the head
  are the same pods, and its Ray node is still alive;
- the driver's `ray.get` returns the object intact (fetched from that worker);
- scaling to 0 is refused (`ScaleDownUnsafe`, the busy worker named), and the
  RayCluster and its pods are unchanged.
Every wait polls with a deadline; timings are printed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import kr8s.asyncio
import pytest

from helpers import Kube as Kubectl
from helpers import async_wait_for, start_sandbox, wait_for

from dask_operator.backends.kuberay import KubeRayBackend
from dask_operator.core.kuberay import MIN_IDLE_SECONDS
from dask_operator.core.pods import pod_ready
from dask_operator.errors import ScaleDownUnsafe
from dask_operator.kube import Kube
from dask_operator.ray_gcs import RayGcsClient, RayNode
from dask_operator.sandbox import ray_pods

pytestmark = pytest.mark.e2e

RAYCLUSTERS = "rayclusters.ray.io"
NAME, GROUP = "rc", "workers"
HEAD = f"ray.io/cluster={NAME},ray.io/node-type=head"
WORKERS = f"ray.io/cluster={NAME},ray.io/node-type=worker"
SIZE = 20 * 2**20
MARKER = "DASK_OPERATOR_TEST_RAY_DRIVER"
RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
SEEN_UIDS: list[str] = []  # the Ray pods' uids, checked for surviving processes at the end
RAY_SIZES = {"memory": str(256 * 2**20), "object-store-memory": str(80 * 2**20)}

DRIVER = r"""
import sys, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

address, node, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
# The head's Ray Client proxy forks a server per driver; on a loaded 2-core
# machine that server has died at start ("Starting Ray client server failed",
# an empty log). The driver is the test's tool, not what it tests: connect
# again, at most 3 times, saying so on stderr.
for attempt in range(1, 4):
    try:
        ray.init(address, logging_level="ERROR", log_to_driver=False)
        break
    except ConnectionAbortedError as e:
        print(f"ray.init attempt {attempt} failed: {str(e).splitlines()[-1]}", file=sys.stderr, flush=True)
        if attempt == 3:
            raise
expected = bytes(range(256)) * (size // 256)

@ray.remote(num_cpus=0)
def payload(size):
    return bytes(range(256)) * (size // 256)  # > 100 KiB: stored in the worker's object store

print("ready", flush=True)
for line in sys.stdin:
    command = line.strip()
    if command == "put":  # not waited for here: ray.wait would fetch a copy to the head
        ref = payload.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(size)
        print("put", flush=True)
    elif command == "get":
        value = ray.get(ref, timeout=60)
        print("intact" if value == expected else f"corrupt ({len(value)} bytes)", flush=True)
    elif command == "exit":
        break
ray.shutdown()
"""


def ray_cluster() -> dict:
    def template(container: str) -> dict:
        return {"metadata": {"labels": dict(ray_pods.RAY_OPT_IN_LABELS)},
                "spec": {"containers": [{"name": container, "image": f"rayproject/ray:{ray_pods.ray_version()}",
                                         "resources": RESOURCES}]}}
    return {
        "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": NAME},
        "spec": {
            "headGroupSpec": {"rayStartParams": {"num-cpus": "0", **RAY_SIZES}, "template": template("ray-head")},
            "workerGroupSpecs": [{
                "groupName": GROUP, "replicas": 2, "minReplicas": 0, "maxReplicas": 3,
                "rayStartParams": {"num-cpus": "1", **RAY_SIZES}, "template": template("ray-worker"),
            }],
        },
    }


def ray_processes(uid: str) -> list[int]:
    """PIDs of live processes running with the pod's RAY_TMPDIR: its Ray processes."""
    wanted = f"RAY_TMPDIR={ray_pods.temp_dir(uid)}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if wanted in (proc / "environ").read_bytes().split(b"\0") and \
                    (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def live(kubectl: Kubectl, ns: str, selector: str) -> list[dict]:
    pods = [p for p in kubectl.pods(ns, selector) if not p["metadata"].get("deletionTimestamp")]
    return sorted(pods, key=lambda p: p["metadata"]["name"])


def snapshot(kubectl: Kubectl, ns: str) -> tuple[int, dict, dict[str, str]]:
    obj = kubectl.get(RAYCLUSTERS, NAME, "-n", ns)
    pods = kubectl.pods(ns, f"ray.io/cluster={NAME}")
    return obj["metadata"]["generation"], obj["spec"], {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory) -> Kubectl:
    sb = start_sandbox(tmp_path_factory.mktemp("kuberay-real"), "--with", "kuberay")
    try:
        assert set(sb.info.operators) == {"kuberay"}
        yield Kubectl(Path(sb.info.kubeconfig))
    finally:
        sb.stop()
        left = {uid: ray_processes(uid) for uid in SEEN_UIDS}
        assert not any(left.values()), f"Ray processes survived the sandbox: {left}"


class Driver:
    """The Ray Client driver subprocess, driven line by line."""

    def __init__(self, address: str, node_id: str, tmp: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER, address, node_id, str(SIZE)],
            env={**os.environ, MARKER: uuid.uuid4().hex, "RAY_TMPDIR": str(tmp), "RAY_USAGE_STATS_ENABLED": "0"},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=(tmp / "driver.log").open("wb"), text=True)

    async def read(self, timeout: float) -> str:
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), timeout)
        assert line, f"the driver exited ({self.proc.wait()})"
        return line.strip()

    async def do(self, command: str, timeout: float = 60) -> str:
        self.proc.stdin.write(f"{command}\n")
        self.proc.stdin.flush()
        return await self.read(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("exit\n")
                self.proc.stdin.flush()
                self.proc.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


async def test_scale_down_removes_the_idle_ray_worker_and_loses_no_object(kubectl: Kubectl, tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="dask_operator.backends.kuberay")
    ns = f"kr-real-{int(time.time() * 1000) % 100000}"
    kubectl.kubectl("create", "namespace", ns)
    kube = Kube(await kr8s.asyncio.api(kubeconfig=str(kubectl.kubeconfig)))
    gcs = RayGcsClient()
    backend = KubeRayBackend(kube, gcs, via_service=False)  # the test runs on the host: the head pod's IP
    timings: dict[str, float] = {}
    driver: Driver | None = None
    try:
        # ---- a real Ray cluster: head and 2 workers Ready only when their raylets answer
        created = time.monotonic()
        kubectl.apply(ray_cluster(), ns)
        head = wait_for(lambda: [p for p in live(kubectl, ns, HEAD) if pod_ready(p)], 180, "the head pod Ready")[0]
        timings["head Ready after apply (s)"] = round(time.monotonic() - created, 1)
        workers = wait_for(lambda: (ws := live(kubectl, ns, WORKERS)) and len(ws) == 2 and
                           all(pod_ready(p) for p in ws) and ws, 180, "2 worker pods Ready")
        timings["both workers Ready after apply (s)"] = round(time.monotonic() - created, 1)
        print("container restarts:", {p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"]
                                      for p in [head, *workers]})
        SEEN_UIDS.extend(p["metadata"]["uid"] for p in [head, *workers])
        for pod in [head, *workers]:
            assert ray_processes(pod["metadata"]["uid"]), f"{pod['metadata']['name']} runs Ray processes"
            assert (ray_pods.temp_dir(pod["metadata"]["uid"]) / "ray" / "session_latest").is_dir(), \
                "each pod's Ray session in its own temp dir"
            assert pod["status"]["podIP"].startswith("10.244."), "an address on the sandbox bridge"
        worker_init = workers[0]["status"]["initContainerStatuses"]
        assert [(s["name"], s["state"]["terminated"]["exitCode"]) for s in worker_init] == [("wait-gcs-ready", 0)]

        address = f"{head['status']['podIP']}:6379"
        pod_ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in [head, *workers]}

        async def ray_nodes() -> dict[str, RayNode] | None:
            nodes = {n.instance_id: n for n in await gcs.nodes(address) if n.alive}
            return nodes if set(nodes) == set(pod_ips) else None

        nodes = await async_wait_for(ray_nodes, 60, "the head and both workers alive in the GCS, by pod name")
        assert {name: n.ip for name, n in nodes.items()} == pod_ips, "each Ray node at its pod's IP"
        assert {nodes[p["metadata"]["name"]].node_type for p in workers} == {GROUP}
        holder, idle = (p["metadata"]["name"] for p in workers)
        uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in [head, *workers]}

        # ---- a 20 MiB object on `holder`, held by a Ray Client driver on the host
        started = time.monotonic()
        driver = Driver(f"ray://{head['status']['podIP']}:10001", nodes[holder].node_id.hex(), tmp_path)
        assert await driver.read(120) == "ready"
        timings["Ray Client driver connected (s)"] = round(time.monotonic() - started, 1)
        assert await driver.do("put") == "put"

        async def holding() -> dict[str, RayNode] | None:
            now = await ray_nodes()
            if now and now[holder].status == "RUNNING" and now[holder].activity and \
                    all("object_store_memory" in a for a in now[holder].activity) and \
                    now[idle].status == "IDLE" and now[idle].idle_ms >= MIN_IDLE_SECONDS * 1000:
                return now
            return None

        now = await async_wait_for(holding, 60, f"{holder} holding the object, {idle} idle")
        print("holder:", now[holder], "\nidle:", now[idle])

        # ---- scale to 1: the idle worker goes by name, the holder stays
        started = time.monotonic()
        updated = await backend.scale(ns, NAME, 1)
        timings["backend.scale(1) (s)"] = round(time.monotonic() - started, 1)
        group = updated["spec"]["workerGroupSpecs"][0]
        assert (group["replicas"], group["scaleStrategy"]["workersToDelete"]) == (1, [idle])
        assert any(f"Ray released worker {idle}" in r.getMessage() for r in caplog.records), "drained in Ray first"
        wait_for(lambda: idle not in {p["metadata"]["name"] for p in kubectl.pods(ns, WORKERS)}, 90,
                 f"{idle}'s pod gone")
        timings["idle worker's pod gone after the scale (s)"] = round(time.monotonic() - started, 1)
        assert ray_processes(uids[idle]) == [], "its Ray processes ended"
        after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in kubectl.pods(ns, f"ray.io/cluster={NAME}")}
        assert after == {n: uids[n] for n in (head["metadata"]["name"], holder)}, "head and holder: same pods"
        assert all(pod_ready(p) for p in kubectl.pods(ns, f"ray.io/cluster={NAME}"))
        alive = {n.instance_id: n for n in await gcs.nodes(address) if n.alive}
        assert idle not in alive and alive[holder].node_id == nodes[holder].node_id, "the holder's Ray node lives"

        # ---- no object lost
        started = time.monotonic()
        assert await driver.do("get") == "intact"
        timings["ray.get of the 20 MiB object (s)"] = round(time.monotonic() - started, 1)

        # ---- scale to 0 while the object is held: refused, nothing changed
        before = snapshot(kubectl, ns)
        with pytest.raises(ScaleDownUnsafe) as refused:
            await backend.scale(ns, NAME, 0)
        print("refused:", refused.value)
        assert f"(busy: {holder})" in str(refused.value)
        assert snapshot(kubectl, ns) == before, "same spec, same pods"
        alive = {n.instance_id: n for n in await gcs.nodes(address) if n.alive}
        assert alive[holder].node_id == nodes[holder].node_id and alive[holder].status == "RUNNING"
    finally:
        print("timings:", timings)
        if driver is not None:
            driver.stop()
        await gcs.aclose()
        await kube.aclose()
        kubectl.kubectl("delete", RAYCLUSTERS, "--all", "-n", ns, "--wait=true", "--timeout=120s", check=False)
        kubectl.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", check=False)


def test_opt_in_labels_select_the_pod_runner() -> None:
    """The opt-in label is one of the pod runner's selectors, and kwok's stages leave such pods alone."""
    from dask_operator.sandbox import kwok, podrunner

    key, value = next(iter(ray_pods.RAY_OPT_IN_LABELS.items()))
    assert any(re.fullmatch(rf"{re.escape(key)},!.*", s) for s in podrunner.RUNNER_SELECTORS)
    plain = [s for s in kwok.render().split("---") if "-plain" in s]
    assert plain and all(f'.metadata.labels["{key}"]' in s and "DoesNotExist" in s for s in plain)
    assert value == ray_pods.RAY_ROLE
