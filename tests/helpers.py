"""Small helpers shared by the e2e tests: kubectl and polling with a deadline."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from dask_operator.sandbox import SandboxInfo
from dask_operator.sandbox.cluster import write_token_kubeconfig

ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the condition may not be checkable yet
            last_error = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error: {last_error})" if last_error else ""))
        time.sleep(interval)


@dataclass(frozen=True)
class Kube:
    kubeconfig: Path

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            input=input, capture_output=True, text=True,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, objects: list[dict] | dict, namespace: str | None = None) -> None:
        docs = objects if isinstance(objects, list) else [objects]
        ns = ["-n", namespace] if namespace else []
        self.kubectl("apply", *ns, "-f", "-", input=yaml.safe_dump_all(docs))

    def pods(self, namespace: str, selector: str) -> list[dict]:
        return self.get("pods", "-n", namespace, "-l", selector)["items"]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}


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


# ------------------------------------------------------------------ operator
class OperatorProcess:
    """The operator on the host, authenticated as deploy/'s ServiceAccount."""

    def __init__(self, kubeconfig: Path, log: Path, metrics_port: int, env: dict[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.log = log
        self.metrics_port = metrics_port
        self.env = env or {}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dask_operator", "run", "--all-namespaces",
             "--metrics-port", str(self.metrics_port), "--metrics-address", "127.0.0.1",
             # as often as Prometheus scrapes in the sandbox
             "--desired-workers-interval", "2"],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.env},
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
        )
        out.close()

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crash."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def restart(self, env: dict[str, str] | None = None) -> None:
        self.stop()
        if env is not None:
            self.env = env
        self.start()


def service_account_kubeconfig(kube: Kube, path: Path, namespace: str = "default",
                               account: str = "dask-operator") -> Path:
    """A kubeconfig holding a TokenRequest token for the ServiceAccount."""
    token = kube.kubectl("create", "token", account, "-n", namespace, "--duration=24h").stdout.strip()
    return write_token_kubeconfig(kube.kubeconfig, token, account, path)


def install_deploy(kube: Kube, state_dir: Path) -> Path:
    """`kubectl apply -k deploy/` as the seed says; returns a kubeconfig for the
    operator holding deploy/'s ServiceAccount token.

    In the sandbox the operator runs on the host (the apiserver listens on
    127.0.0.1 only, which pods cannot reach), so deploy/'s Deployment is
    scaled to 0 and the host process authenticates as its ServiceAccount.
    """
    kube.kubectl("apply", "-k", str(ROOT / "deploy"), "-n", "default")
    kube.kubectl("scale", "deployment/dask-operator", "--replicas=0", "-n", "default")
    return service_account_kubeconfig(kube, state_dir / "operator.kubeconfig")


def start_operator(kubeconfig: Path) -> OperatorProcess:
    from dask_operator.sandbox.cluster import free_ports

    op = OperatorProcess(kubeconfig, kubeconfig.parent / "operator.log", free_ports(1)[0])
    op.start()
    return op


@contextlib.contextmanager
def operator_on_sandbox(state_dir: Path, *sandbox_args: str):
    """A sandbox with deploy/ installed and the operator running; both stopped on exit."""
    sb = start_sandbox(state_dir, *sandbox_args)
    op = None
    try:
        kube = Kube(Path(sb.info.kubeconfig))
        op = start_operator(install_deploy(kube, state_dir))
        yield kube, sb.info, op
    finally:
        if op:
            op.stop()
        sb.stop()
