"""Test harness: a real Kubernetes control plane for the e2e tests.

By default one sandbox (`dask-operator sandbox up`) is started per test session
and stopped at its end. With `--kubeconfig PATH` (or `KUBECONFIG` set) the
suite runs against that cluster instead, kind for example; tests that need the
sandbox's own machinery (its pod network, Prometheus, process table) then say
so in their skip reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers import Kube, wait_for  # noqa: E402

from dask_operator.sandbox import SandboxInfo  # noqa: E402
from dask_operator.sandbox.procs import alive  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--kubeconfig", default=os.environ.get("KUBECONFIG"),
                     help="run e2e tests against this cluster instead of a sandbox")
    parser.addoption("--keep-sandbox", action="store_true", help="leave the sandbox state dir behind")


@dataclass
class SandboxProcess:
    info: SandboxInfo
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)


def start_sandbox(state_dir: Path, *extra: str, timeout: float = 1800) -> SandboxProcess:
    """Start `dask-operator sandbox up` and wait for its sandbox.json."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log = (state_dir / "supervisor.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dask_operator", "sandbox", "up", "--state-dir", str(state_dir),
         "--crd", str(ROOT / "deploy" / "crd.yaml"),
         "--adapter-rules", str(ROOT / "adapter-rules" / "scheduler.yaml"), *extra],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    ready = state_dir / "sandbox.json"
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            tail = (state_dir / "supervisor.log").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"sandbox exited with {proc.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError("sandbox did not become ready")
        time.sleep(0.2)
    return SandboxProcess(SandboxInfo.load(state_dir), proc)


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
    kubeconfig = sandbox_process.info.kubeconfig if sandbox_process else request.config.getoption("--kubeconfig")
    return Kube(Path(kubeconfig))


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


__all__ = ["wait_for", "json"]
