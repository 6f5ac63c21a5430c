"""KubeRay's pods as real Ray processes in the sandbox's pod runner.

Opt-in: the pod runner runs pods with the Dask role label (`RUNNER_SELECTORS`),
so a RayCluster whose `headGroupSpec.template.metadata.labels` and worker
group templates carry `RAY_OPT_IN_LABELS` (`dask.charmtx.com/role: ray`) has
its head and workers run here instead of under kwok (KubeRay copies template
labels onto the pods). The Dask operator's pod watch selects the role label
*and* its cluster label, so these pods are nothing to it.

What KubeRay v1.6.2 generates, and how each part runs here:

* the container: `/bin/bash -c -- 'ulimit -n 65536; ray start [--head |
  --address=<head-svc FQDN>:6379] --block --dashboard-agent-listen-port=52365
  --metrics-export-port=8080 --memory=... --num-cpus=... ...'`, from the
  RayCluster's `rayStartParams`. The image (`rayproject/ray:<version>`) cannot
  be pulled; the runner runs that same command line with this Python's bin dir
  first on PATH, so `ray` is the installed Ray package (`ray_version()`); an
  image tag naming another version is logged, not refused. Keep `num-cpus`,
  `memory` and `object-store-memory` small in `rayStartParams` (KubeRay turns
  the container's limits into `--memory` otherwise).
* env: `value`, `fieldRef` to `metadata.name` (RAY_CLOUD_INSTANCE_ID: the
  backend maps Ray nodes to pods by it), `metadata.namespace` and
  `metadata.labels['ray.io/cluster']`/`['ray.io/group']` (RAY_NODE_TYPE_NAME):
  all served by the runner. Added here: `RAY_TMPDIR`, a short per-pod path
  (`temp_dir`: a symlink to the pod's work directory's `ray-tmp/`, removed when
  the pod stops; a container has its own /tmp, these processes share the
  host's, and Ray's Unix socket paths under it must stay below 108 characters,
  which the runner's state directory is too deep for), and
  `RAY_USAGE_STATS_ENABLED=0`. RAY_TMPDIR sets only the head's default: a Ray
  2.60 worker takes the head's temp dir from the GCS, where -- every pod
  sharing the host's /tmp -- two workers' raylets bind the same Unix socket
  (`sockets/raylet`: "bind: Address already in use", the raylet aborts). So the
  `ray start` of the command line gets `--temp-dir=$RAY_TMPDIR/ray` (`argv`;
  Ray: "can be specified per node") unless it has one: each pod keeps its own
  session files, as in its own container.
* the worker's init container `wait-gcs-ready` (a bash loop of `ray
  health-check --address <head-svc FQDN>:6379`): run by the runner as a kubelet
  runs init containers, in order, to completion, before the Ray container. The
  head Service's name resolves through the pod's hosts file once the head pod is
  Ready.
* readiness and liveness probes are `exec` (`bash -c 'wget ... localhost:52365/
  api/local_raylet_healthz | grep success'`, the head also asks the dashboard's
  `:8265/api/gcs_healthz`). The runner runs exec readiness probes in the pod's
  namespaces, but those two HTTP servers exist only in `ray[default]`; the
  installed Ray is the minimal `ray` (no `aiohttp_cors`, `opencensus`,
  `opentelemetry`: `dashboard_http_missing()`, Ray's own test, finds them
  missing, and Ray then logs "http server disabled"), so the probe could never
  pass. For such a Ray, KubeRay's probe is replaced by what it means
  (`RayReadiness`): the runner asks the GCS (`ray_gcs.RayGcsClient`, from the
  host to the pod's or the head Service's address, as it runs httpGet probes)
  whether the pod's Ray node -- the one whose instance id is the pod's name --
  is alive. So a head is Ready when its GCS answers and its raylet registered,
  a worker when its raylet joined the cluster. Liveness probes are not run.
* the Ray node's address: `ray start` finds it by routing towards a public
  address, which inside the pod's namespace is eth0's, the pod IP (the default
  route points at a dead end on the bridge). Nothing to pass.
* the `/dev/shm` emptyDir (medium Memory) is not mounted (mounts outside /run
  are not made): Ray's object store uses the host's /dev/shm, with file names
  of its own.
* stopping: `ray start` puts itself in a process group of its own, so the
  runner's SIGTERM/SIGKILL of the container's group does not reach it; the
  runner therefore kills whatever still runs in the pod's network namespace
  before removing it (`podrunner._stop`), which is every Ray process of the pod.
"""

from __future__ import annotations

import logging
import re
import shlex
from functools import cache
from importlib import metadata, util
from pathlib import Path

from ..constants import LABEL_ROLE
from ..ray_gcs import GCS_PORT, RayGcsClient, RayGcsUnreachable

log = logging.getLogger(__name__)

# The labels a RayCluster's pod templates carry to run as real Ray processes.
RAY_ROLE = "ray"
RAY_OPT_IN_LABELS = {LABEL_ROLE: RAY_ROLE}
LABEL_IS_RAY_NODE = "ray.io/is-ray-node"  # KubeRay's, "yes" on every head and worker pod
TEMP_ROOT = Path("/tmp")


def is_ray_pod(pod: dict) -> bool:
    """A KubeRay head or worker pod that opted in."""
    labels = pod["metadata"].get("labels") or {}
    return labels.get(LABEL_IS_RAY_NODE) == "yes" and labels.get(LABEL_ROLE) == RAY_ROLE


def ray_version() -> str:
    return metadata.version("ray")


def temp_dir(uid: str) -> Path:
    """The pod's RAY_TMPDIR: short, so `<it>/ray/session_<date>_<pid>/sockets/plasma_store` fits."""
    return TEMP_ROOT / f"dsb-ray-{uid[:13]}"


def pod_env(pod: dict, workdir: Path) -> dict[str, str]:
    """Environment added to a Ray pod's containers (making its temp dir); {} for other pods."""
    if not is_ray_pod(pod):
        return {}
    tmp, target = temp_dir(pod["metadata"]["uid"]), workdir / "ray-tmp"
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not tmp.is_symlink():
        tmp.symlink_to(target)
    return {"RAY_TMPDIR": str(tmp), "RAY_USAGE_STATS_ENABLED": "0"}


def image_note(pod: dict) -> str | None:
    """Why the installed Ray stands in for the pod's image, when the image names another version."""
    if not is_ray_pod(pod):
        return None
    image = (pod["spec"]["containers"][0].get("image") or "")
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
    version = re.match(r"\d+\.\d+\.\d+", tag)
    installed = ray_version()
    if version and version.group(0) != installed:
        return f"image {image} names Ray {version.group(0)}; the installed Ray {installed} runs instead"
    return None


def argv(pod: dict, argv: list[str], env: dict[str, str]) -> list[str]:
    """The container's command line with `--temp-dir` added to its `ray start` (see above)."""
    tmp = env.get("RAY_TMPDIR")
    if not is_ray_pod(pod) or not tmp:
        return argv
    flag = f"--temp-dir={shlex.quote(tmp + '/ray')}"
    return [a if "--temp-dir" in a else re.sub(r"(^|[\s;&|(])ray start\b", rf"\1ray start {flag}", a, count=1)
            for a in argv]


def cleanup(uid: str) -> None:
    """Remove the pod's temp dir link (its Ray files stay in its work directory)."""
    temp_dir(uid).unlink(missing_ok=True)


# The modules `ray.dashboard.optional_deps` imports: all present only with ray[default].
DASHBOARD_DEPENDENCIES = ("aiohttp", "aiohttp_cors", "grpc", "opencensus", "opentelemetry",
                          "prometheus_client", "pydantic")


@cache
def dashboard_http_missing() -> tuple[str, ...]:
    """The dashboard dependencies the installed Ray lacks (then its dashboard and agent serve no HTTP)."""
    return tuple(m for m in DASHBOARD_DEPENDENCIES if util.find_spec(m) is None)


def _kuberay_health_probe(probe: dict | None) -> bool:
    command = " ".join(((probe or {}).get("exec") or {}).get("command") or ())
    return "/api/local_raylet_healthz" in command


class RayReadiness:
    """Readiness of Ray pods whose KubeRay probe asks HTTP servers the installed Ray lacks."""

    def __init__(self) -> None:
        self.gcs = RayGcsClient()

    async def aclose(self) -> None:
        await self.gcs.aclose()

    def replaces(self, pod: dict) -> bool:
        return is_ray_pod(pod) and bool(dashboard_http_missing()) and \
            _kuberay_health_probe(pod["spec"]["containers"][0].get("readinessProbe"))

    async def ready(self, env: dict[str, str], address: str, hosts: dict[str, list[str]]) -> bool:
        """Whether the GCS (the container's RAY_ADDRESS, resolved as the pod would) lists this pod's
        Ray node (instance id RAY_CLOUD_INSTANCE_ID) alive."""
        host, _, port = (env.get("RAY_ADDRESS") or f"127.0.0.1:{GCS_PORT}").rpartition(":")
        if host in ("127.0.0.1", "localhost", ""):
            host = address
        elif host in hosts:
            if not hosts[host]:
                return False  # the head Service has no ready endpoint yet
            host = hosts[host][0]
        try:
            nodes = await self.gcs.nodes(f"{host}:{port}")
        except RayGcsUnreachable:
            return False
        name = env.get("RAY_CLOUD_INSTANCE_ID")
        return bool(name) and any(n.instance_id == name and n.alive for n in nodes)
