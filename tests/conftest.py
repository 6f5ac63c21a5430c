"""Test harness: a real Kubernetes control plane for the e2e tests.

By default one sandbox (`dask-operator sandbox up`) is started per test session
and stopped at its end. With `--kubeconfig PATH` (or `KUBECONFIG` set) the
suite runs against that cluster instead, kind for example: deploy/ is applied
there too, and the operator runs as its own pod from deploy/'s image; tests
that need the sandbox's own machinery (its pod network, Prometheus, process
table, the host-run operator) say so in their skip reason.

Every test's namespace is deleted after it, and the session ends only once all
of them are gone (`namespace_sweeper`); cluster-scoped objects a test makes are
removed by the test.
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
    OperatorPod,
    SandboxProcess,
    install_deploy,
    service_account_kubeconfig,
    start_sandbox,
    wait_for,
    wait_operator_ready,
)

import secrets_seen  # noqa: E402

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
def kube(request: pytest.FixtureRequest, sandbox_process: SandboxProcess | None, tmp_path_factory) -> Kube:
    """The cluster. At the session's end (the sandbox still up), everything captured meanwhile
    is grepped for every secret the tests used (`secrets_seen`)."""
    if sandbox_process:
        kube = Kube(Path(sandbox_process.info.kubeconfig))
    else:
        kube = Kube(Path(request.config.getoption("--kubeconfig")))
        kube.kubectl("apply", "-f", str(ROOT / "deploy" / "crd.yaml"))  # the sandbox installs it at start
    with secrets_seen.capture_http():
        yield kube
    secrets_seen.check(kube, tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def sandbox(sandbox_process: SandboxProcess | None) -> SandboxInfo:
    """The sandbox itself, for tests that need its pod network or Prometheus."""
    if sandbox_process is None:
        pytest.skip("needs the sandbox (pod runner, Prometheus): running against --kubeconfig")
    return sandbox_process.info


@pytest.fixture(scope="session")
def namespace_sweeper(kube: Kube) -> list[str]:
    """Test namespaces deleted so far; at the end of the session, each must be gone.

    Deletions overlap with the next tests (a namespace takes 5-15 s to finalize)
    instead of each test waiting for its own.
    """
    deleted: list[str] = []
    yield deleted

    def left() -> list[str]:
        existing = set(kube.kubectl("get", "namespaces", "-o", "name").stdout.split())
        return [n for n in deleted if f"namespace/{n}" in existing]

    try:
        wait_for(lambda: not left(), 300, "every test namespace removed", interval=1)
    except AssertionError as e:
        raise AssertionError(f"{e}: still there: {left()}") from None


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest, namespace_sweeper: list[str]) -> str:
    """A fresh namespace per test, deleted afterwards (and waited for at the session's end)."""
    name = "t-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:40].strip("-")
    name = f"{name}-{int(time.time() * 1000) % 100000}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false")
    namespace_sweeper.append(name)


@pytest.fixture(scope="session")
def deployed(kube: Kube, tmp_path_factory) -> Path:
    """`kubectl apply -k deploy/` done and the operator's pod Ready; returns a
    kubeconfig holding deploy/'s ServiceAccount token (for RBAC checks)."""
    install_deploy(kube)
    wait_operator_ready(kube, timeout=300)
    return service_account_kubeconfig(kube, tmp_path_factory.mktemp("operator") / "operator.kubeconfig")


@pytest.fixture
def operator(kube: Kube, deployed: Path, sandbox_process: SandboxProcess | None, request) -> OperatorPod:
    """The operator's own pod from deploy/, Ready. When the test fails in the
    sandbox, the tail of the operator's log is printed with the report."""
    op = OperatorPod(kube)
    op.pod()
    yield op
    report = getattr(request.node, "rep_call", None)
    if sandbox_process is not None and report is not None and report.failed:
        for log in sorted(Path(sandbox_process.info.state_dir, "pods").glob("default_dask-operator-*/container.log")):
            print(f"\n--- {log.parent.name}: last 40 lines ---\n" + "\n".join(
                log.read_text(errors="replace").splitlines()[-40:]))


def pytest_terminal_summary(terminalreporter) -> None:
    if secrets_seen.last_summary:
        terminalreporter.write_line(secrets_seen.last_summary)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
