"""Kubernetes' cluster-autoscaler for the sandbox, with its externalgrpc cloud provider.

The Go module proxy refuses every version of
``k8s.io/autoscaler/cluster-autoscaler`` (it has no semver tags), so it is
built from its 1.35.2 source, trimmed to the externalgrpc provider, in
``shared/third_party/`` beside the checkout (``DASK_OPERATOR_THIRD_PARTY``
names another folder): unpacked into the cache's work directory and built
with ``go build -tags externalgrpc`` (its dependencies come from the proxy),
at ``nice -n 10``. thirdparty.py caches the binary like the other operators'.

In the sandbox it runs as admin with leader election off, ``/metrics`` and
``/health-check`` on one loopback port, and timings cut from minutes to
seconds (``ARGS``) so that a test sees a scale-up and a scale-down within a
minute. It dials the node-group provider named by its cloud config
(``CLOUD_CONFIG``), without TLS, on a loopback port the sandbox picks; the
provider may start later: the autoscaler retries every scan.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

MODULE = "k8s.io/autoscaler/cluster-autoscaler"
VERSION = "1.35.2"
TARBALL = f"cluster-autoscaler-{VERSION}-externalgrpc-src.tar.gz"
TOP = "cluster-autoscaler"  # the tarball's one top-level folder

# externalgrpc's cloud config; grpc_timeout per call (its default is 5 s).
CLOUD_CONFIG = "address: 127.0.0.1:{provider}\ngrpc_timeout: 20s\n"

# Sandbox timings, with their defaults: a node is unneeded after 5 s (10 min),
# scale-down resumes at once after a scale-up (10 min) or a failure (3 min),
# a node found unremovable is rechecked after 5 s (5 min), a node that does
# not register within 2 min is given up (15 min), a group whose scale-up
# failed waits 10 s (5 min).
ARGS = (
    "--kubeconfig={kubeconfig}", "--cloud-provider=externalgrpc", "--cloud-config={cloud_config}",
    "--leader-elect=false", "--address=127.0.0.1:{health}",
    "--scan-interval=2s",
    "--scale-down-unneeded-time=5s", "--scale-down-unready-time=30s",
    "--scale-down-delay-after-add=0s", "--scale-down-delay-after-delete=0s",
    "--scale-down-delay-after-failure=5s", "--unremovable-node-recheck-timeout=5s",
    "--node-delete-delay-after-taint=0s", "--max-graceful-termination-sec=10",
    "--max-node-provision-time=2m", "--max-node-startup-time=2m",
    "--initial-node-group-backoff-duration=10s", "--max-node-group-backoff-duration=30s",
    "--skip-nodes-with-local-storage=false", "--emit-per-nodegroup-metrics=true",
    "--v=2",
)


def third_party_dir() -> Path:
    """Where the third-party source tarballs are: ``$DASK_OPERATOR_THIRD_PARTY``,
    else ``shared/third_party`` beside this checkout (or beside the current directory)."""
    if given := os.environ.get("DASK_OPERATOR_THIRD_PARTY"):
        return Path(given)
    checkout = Path(__file__).resolve().parents[2]
    for root in (checkout, Path.cwd()):
        candidate = root.parent / "shared" / "third_party"
        if candidate.is_dir():
            return candidate
    return checkout.parent / "shared" / "third_party"


def source_tarball(name: str = TARBALL) -> Path:
    path = third_party_dir() / name
    if not path.is_file():
        raise RuntimeError(f"cluster-autoscaler's source is not at {path}: put {name} there "
                           "or set DASK_OPERATOR_THIRD_PARTY to the folder that has it")
    return path


def unpack(name: str, work: Path) -> None:
    """Unpack the tarball's ``cluster-autoscaler/`` folder as ``work`` (which must not exist)."""
    staging = work.parent / f".{work.name}.unpack"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    with tarfile.open(source_tarball(name)) as tar:
        tar.extractall(staging, filter="data")
    (staging / TOP).rename(work)
    shutil.rmtree(staging)
