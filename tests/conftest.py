"""Test harness: a real Kubernetes control plane for the e2e tests.

By default one sandbox (`dask-operator sandbox up`) is started per test session
and stopped at its end. With `--kubeconfig PATH` (or `KUBECONFIG` set) the
suite runs against that cluster instead, kind for example; tests that need the
sandbox's own machinery (its pod network, Prometheus, process table) then say
so in their skip reason.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import (  # noqa: E402
    ROOT,
    Kube,
    OperatorProcess,
    SandboxProcess,
    install_deploy,
    start_operator,
    start_sandbox,
)

from dask_operator.sandbox import SandboxInfo  # noqa: E402
from dask_operator.sandbox.procs import alive  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--kubeconfig", default=os.environ.get("KUBECONFIG"),
                     help="run e2e tests against this cluster instead of a sandbox")


@pytest.fixture(scope="session")
def sandbox_process(request: pytest.FixtureRequest, tmp_path_factory) -> SandboxProcess | None:
    if request.config.getoption("--kubeconfig"):
        yield None
        return
    sb = start_sandbox(tmp_path_factory.mktemp("sandbox"))
    yield sb
    sb.stop()
    leftovers = [name for name, pid in sb.info.pids.items() if alive(pid)]
    assert not leftovers, f"sandbox processes survived teardown: {leftovers}"


@pytest.fixture(scope="session")
def kube(request: pytest.FixtureRequest, sandbox_process: SandboxProcess | None) -> Kube:
    if sandbox_process:
        return Kube(Path(sandbox_process.info.kubeconfig))
    kube = Kube(Path(request.config.getoption("--kubeconfig")))
    kube.kubectl("apply", "-f", str(ROOT / "deploy" / "crd.yaml"))  # the sandbox installs it at start
    return kube


@pytest.fixture(scope="session")
def sandbox(sandbox_process: SandboxProcess | None) -> SandboxInfo:
    """The sandbox itself, for tests that need its pod network or Prometheus."""
    if sandbox_process is None:
        pytest.skip("needs the sandbox (pod runner, Prometheus): running against --kubeconfig")
    return sandbox_process.info


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> str:
    """A fresh namespace per test, deleted afterwards."""
    name = "t-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:40].strip("-")
    name = f"{name}-{int(time.time() * 1000) % 100000}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def deployed(kube: Kube, sandbox: SandboxInfo, tmp_path_factory) -> Path:
    """deploy/ installed; the operator's ServiceAccount kubeconfig."""
    return install_deploy(kube, tmp_path_factory.mktemp("operator"))


@pytest.fixture(scope="session")
def operator(deployed: Path) -> OperatorProcess:
    op = start_operator(deployed)
    yield op
    op.stop()
