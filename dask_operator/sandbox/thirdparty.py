"""Build and run third-party operators against the sandbox.

Three are described here, each built once and cached like the sandbox's own
binaries (see build.py):

* ``kuberay``: KubeRay's ray-operator, ``github.com/ray-project/kuberay/ray-operator``
  v1.6.2 (RayCluster, RayJob and RayService, ``ray.io/v1``);
* ``dco``: Domino's distributed-compute-operator,
  ``github.com/dominodatalab/distributed-compute-operator`` v0.8.2 (DaskCluster,
  RayCluster, SparkCluster and MPICluster,
  ``distributed-compute.dominodatalab.com/v1alpha1``);
* ``cluster-autoscaler``: Kubernetes' cluster-autoscaler 1.35.2 with only its
  ``externalgrpc`` cloud provider, from the source tarball in
  ``shared/third_party`` (the module proxy serves no version of it; see
  autoscaler.py), dialling a node-group provider on a loopback port the
  sandbox picks (``sandbox.json``: ``operators["cluster-autoscaler"]["provider"]``),
  e.g. ``dask-operator nodes serve --address 127.0.0.1:<that port>``.

Their main packages cannot be ``go install``ed (the module proxy refuses the
version lists that needs), so the module is fetched with ``go mod download``,
copied out of the read-only module cache into a work directory and built there
against its own go.mod and go.sum (both complete for Go 1.26). A cold build
takes about 3.7 min (KubeRay) and 3 min (DCO) on 2 cores. The binary and the
CRDs the operator needs land in
``cache_root()/sandbox/<recipe>_<name>-<version>/{bin,crds}``.

Run against a sandbox, each listens only on loopback ports, with leader
election and admission webhooks off. Every CRD listed must be installed before
the operator starts (without one it exits after 2 minutes of "timed out
waiting for cache to be synced"), with ``kubectl apply --server-side``:
KubeRay's exceed the 256 KiB annotation limit of client-side apply (RayCluster
278 kB, RayJob 407 kB as JSON); DCO's (96-181 kB) fit either way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import autoscaler
from .build import _go_env, _require_go, _run, cache_root

RECIPE = "tp1"  # bump when the way these binaries are built changes


@dataclass(frozen=True)
class Operator:
    """A third-party operator: where its source is and how to run it."""

    name: str
    module: str
    version: str
    binary: str
    crds: tuple[str, ...]  # paths inside the module, each needed for the operator to start
    args: tuple[str, ...]  # "{kubeconfig}" and "{<port name>}" are filled in
    ports: tuple[str, ...]  # names of the loopback ports it binds (or, like "provider", dials)
    env: dict[str, str] = field(default_factory=dict)  # values formatted like args
    package: str = "."  # the main package, relative to the module root
    # Files written beside the kubeconfig, "{<name>}" in args: name -> contents (formatted like args).
    files: dict[str, str] = field(default_factory=dict)
    health_path: str = "/readyz"  # on the "health" port: answers 200 once the operator runs
    tarball: str = ""  # a source tarball (autoscaler.source_tarball) instead of the Go module
    build_flags: tuple[str, ...] = ()
    nice: int = 0  # the build's niceness: a long build shares 2 cores with tests

    @property
    def key(self) -> str:
        return f"{RECIPE}_{self.name}-{self.version}"


KUBERAY_CRDS = "config/crd/bases/ray.io_{}.yaml"
DCO_CRDS = "config/crd/bases/distributed-compute.dominodatalab.com_{}.yaml"

OPERATORS: dict[str, Operator] = {
    op.name: op
    for op in (
        Operator(
            "kuberay", "github.com/ray-project/kuberay/ray-operator", "v1.6.2", "kuberay-operator",
            # RayJob and RayService controllers always start: their CRDs are needed too.
            tuple(KUBERAY_CRDS.format(k) for k in ("rayclusters", "rayjobs", "rayservices")),
            ("--kubeconfig={kubeconfig}", "--enable-leader-election=false",
             "--metrics-addr=127.0.0.1:{metrics}", "--health-probe-bind-address=127.0.0.1:{health}"),
            ("metrics", "health"),
            {"ENABLE_WEBHOOKS": "false"},  # the default; webhooks are on only with "true"
        ),
        Operator(
            "dco", "github.com/dominodatalab/distributed-compute-operator", "v0.8.2", "dco",
            # The MPICluster controller always starts: its CRD is needed too.
            tuple(DCO_CRDS.format(k) for k in ("daskclusters", "rayclusters", "sparkclusters", "mpiclusters")),
            ("start", "--leader-elect=false", "--metrics-bind-address=127.0.0.1:{metrics}",
             "--health-probe-bind-address=127.0.0.1:{health}", "--webhook-server-port={webhook}"),
            ("metrics", "health", "webhook"),
            # No --kubeconfig flag; webhooks are on unless this says "false".
            {"ENABLE_WEBHOOKS": "false", "KUBECONFIG": "{kubeconfig}"},
        ),
        Operator(
            "cluster-autoscaler", autoscaler.MODULE, autoscaler.VERSION, "cluster-autoscaler", (),
            autoscaler.ARGS, ("health", "provider"), files={"cloud_config": autoscaler.CLOUD_CONFIG},
            health_path="/health-check", tarball=autoscaler.TARBALL, build_flags=("-tags", "externalgrpc"),
            nice=10,
        ),
    )
}


def _dir(op: Operator) -> Path:
    return cache_root() / "sandbox" / op.key


def _module_dir(op: Operator) -> Path:
    """The module's (read-only) directory in the Go module cache, downloading it if needed."""
    info = subprocess.run(
        [_require_go(), "mod", "download", "-json", f"{op.module}@{op.version}"],
        capture_output=True, text=True, env=_go_env(),
    )
    if info.returncode != 0:
        raise RuntimeError(f"go mod download {op.module}@{op.version} failed: {info.stdout}{info.stderr}")
    return Path(json.loads(info.stdout)["Dir"])


def _make_writable(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)


def crd_files(name: str) -> list[Path]:
    """The operator's CRD files, copied into the cache (install them server-side)."""
    op = OPERATORS[name]
    out = _dir(op) / "crds"
    files = [out / Path(c).name for c in op.crds]
    if not all(f.exists() for f in files):
        source = _module_dir(op)
        out.mkdir(parents=True, exist_ok=True)
        for crd, dest in zip(op.crds, files):
            shutil.copyfile(source / crd, dest)
    return files


def ensure_operator(name: str) -> Path:
    """Return the operator's binary, building it first if it is not cached."""
    op = OPERATORS[name]
    binary = _dir(op) / "bin" / op.binary
    if binary.exists():
        return binary
    go = _require_go()
    binary.parent.mkdir(parents=True, exist_ok=True)
    work = _dir(op) / "src"
    if work.exists():
        _make_writable(work)
        shutil.rmtree(work)
    if op.tarball:
        autoscaler.unpack(op.tarball, work)
    else:
        shutil.copytree(_module_dir(op), work, copy_function=shutil.copyfile)
    _make_writable(work)
    partial = binary.parent / f".{op.binary}.partial"
    nice = ["nice", "-n", str(op.nice)] if op.nice else []
    _run([*nice, go, "build", *op.build_flags, "-o", str(partial), op.package], work,
         f"{op.name} ({op.module} {op.version})", _dir(op) / "build.log")
    crd_files(name)
    partial.rename(binary)
    shutil.rmtree(work)  # the module's source, tests and CRDs: tens of MB
    return binary


def ports_needed(name: str) -> int:
    return len(OPERATORS[name].ports)


def operator_argv(name: str, binary: Path, kubeconfig: Path, ports: list[int]) -> tuple[list[str], dict[str, str]]:
    """argv and the extra environment to run the operator against a sandbox.

    `ports` are free loopback ports, `ports_needed(name)` of them.
    """
    op = OPERATORS[name]
    if len(ports) != len(op.ports):
        raise ValueError(f"{name} needs {len(op.ports)} ports ({', '.join(op.ports)}), got {len(ports)}")
    values = {"kubeconfig": str(kubeconfig), **dict(zip(op.ports, map(str, ports)))}
    for key, contents in op.files.items():
        path = kubeconfig.parent / f"{op.name}.{key.replace('_', '-')}"
        path.write_text(contents.format(**values))
        values[key] = str(path)
    argv = [str(binary), *(a.format(**values) for a in op.args)]
    return argv, {k: v.format(**values) for k, v in op.env.items()}
