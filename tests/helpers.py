"""Small helpers shared by the e2e tests: kubectl and polling with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import yaml

import secrets_seen

from dask_operator.core.pods import pod_ready
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


async def async_wait_for(predicate: Callable[[], Awaitable[Any]], timeout: float, what: str,
                         interval: float = 0.2) -> Any:
    """`wait_for` for async predicates: await until truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = await predicate()
            if value:
                return value
        except Exception as e:  # the condition may not be checkable yet
            last_error = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error: {last_error})" if last_error else ""))
        await asyncio.sleep(interval)


@dataclass(frozen=True)
class Kube:
    kubeconfig: Path

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        secrets_seen.before_kubectl(self, args)  # a namespace's Events kept before its deletion
        result = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            input=input, capture_output=True, text=True,
        )
        secrets_seen.after_kubectl(args, result)  # a token minted remembered
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
    try:
        return SandboxProcess(SandboxInfo.load(state_dir), proc)
    except Exception:  # an unreadable sandbox.json must not leave the sandbox running
        SandboxProcess(None, proc).stop()
        raise


def wait_namespace_usable(kube: Kube, name: str, timeout: float = 120) -> None:
    """Wait until namespace `name` is not Terminating (an earlier test's deletion may still be
    finalizing; nothing can be created in it meanwhile). It may exist or not."""
    wait_for(lambda: kube.kubectl("get", "namespace", name, "-o", "jsonpath={.status.phase}",
                                  check=False).stdout.strip() != "Terminating", timeout, f"namespace {name} usable")


# ------------------------------------------------------------------ operator
OPERATOR_NAMESPACE = "default"
OPERATOR_SELECTOR = "app.kubernetes.io/name=dask-operator"


def install_deploy(kube: Kube) -> None:
    """`kubectl apply -k deploy/`, as the seed says, into the default namespace."""
    kube.kubectl("apply", "-k", str(ROOT / "deploy"), "-n", OPERATOR_NAMESPACE)


def operator_pods(kube: Kube) -> list[dict]:
    return kube.pods(OPERATOR_NAMESPACE, OPERATOR_SELECTOR)


def wait_operator_ready(kube: Kube, timeout: float = 120) -> dict:
    """Wait until deploy/'s Deployment has rolled out one Ready operator pod; return that pod."""
    def ready() -> dict | None:
        d = kube.get("deployment", "dask-operator", "-n", OPERATOR_NAMESPACE)
        st = d.get("status", {})
        if st.get("observedGeneration") != d["metadata"]["generation"] or st.get("updatedReplicas") != 1 \
                or st.get("availableReplicas") != 1 or st.get("replicas") != 1:
            return None
        pods = [p for p in operator_pods(kube) if pod_ready(p)]
        return pods[0] if len(pods) == 1 else None
    return wait_for(ready, timeout, "the operator's own pod Ready (deploy/'s Deployment rolled out)")


@dataclass(frozen=True)
class OperatorPod:
    """The operator as users run it: deploy/'s Deployment, one pod."""

    kube: Kube

    def pod(self) -> dict:
        return wait_operator_ready(self.kube)

    @property
    def metrics_url(self) -> str:
        """/metrics on the pod's IP (reachable from the host on the sandbox's bridge)."""
        return f"http://{self.pod()['status']['podIP']}:8000/metrics"


class HostOperator:
    """The operator as a host process, authenticated as deploy/'s ServiceAccount.

    Only for tests that SIGKILL the operator at a chosen moment or profile it;
    `host_operator()` scales deploy/'s Deployment to 0 meanwhile, so that one
    operator runs at a time.
    """

    def __init__(self, kubeconfig: Path, log: Path, metrics_port: int, env: dict[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.log = secrets_seen.keep_log(log)
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

    def answers(self) -> bool:
        """Its /metrics answers (served from the start of `operator.run`)."""
        import httpx
        try:
            return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

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


def service_account_kubeconfig(kube: Kube, path: Path, namespace: str = OPERATOR_NAMESPACE,
                               account: str = "dask-operator") -> Path:
    """A kubeconfig holding a TokenRequest token for the ServiceAccount."""
    token = kube.kubectl("create", "token", account, "-n", namespace, "--duration=24h").stdout.strip()
    return write_token_kubeconfig(kube.kubeconfig, token, account, path)


@contextlib.contextmanager
def host_operator(kube: Kube, state_dir: Path, restore: bool = True):
    """deploy/'s operator pod scaled away, the operator run on the host in its place.

    With `restore`, the Deployment is scaled back to 1 and waited for on exit.
    """
    from dask_operator.sandbox.cluster import free_ports

    kube.kubectl("scale", "deployment/dask-operator", "--replicas=0", "-n", OPERATOR_NAMESPACE)
    wait_for(lambda: not operator_pods(kube), 60, "the operator pod gone")
    state_dir.mkdir(parents=True, exist_ok=True)
    kubeconfig = service_account_kubeconfig(kube, state_dir / "operator.kubeconfig")
    op = HostOperator(kubeconfig, state_dir / "operator.log", free_ports(1)[0])
    op.start()
    try:
        yield op
    finally:
        op.stop()
        if restore:
            kube.kubectl("scale", "deployment/dask-operator", "--replicas=1", "-n", OPERATOR_NAMESPACE)
            wait_operator_ready(kube)


@contextlib.contextmanager
def operator_on_sandbox(state_dir: Path, *sandbox_args: str):
    """A sandbox with deploy/ installed and the operator run on the host (benchmarks
    profile it); both stopped on exit."""
    sb = start_sandbox(state_dir, *sandbox_args)
    try:
        kube = Kube(Path(sb.info.kubeconfig))
        install_deploy(kube)
        with host_operator(kube, state_dir, restore=False) as op:
            yield kube, sb.info, op
    finally:
        sb.stop()


# ------------------------------------------------------------------ the cluster-scaler API
API_NAMESPACE = "domino-field"  # deploy/api's namespace


@contextlib.contextmanager
def host_server(kube: Kube, state_dir: Path, command: list[str], namespace: str, account: str):
    """`dask-operator <command> --address 127.0.0.1 --port <free>` as a host process
    authenticated as that ServiceAccount (so every review and change goes through its
    RBAC; the caller has applied it). Yields (url, log) once /healthz answers; stopped
    on exit, with the tail of its log printed."""
    import httpx

    from dask_operator.sandbox.cluster import free_ports

    state_dir.mkdir(parents=True, exist_ok=True)
    kubeconfig = service_account_kubeconfig(kube, state_dir / f"{command[0]}.kubeconfig", namespace, account)
    port, log = free_ports(1)[0], secrets_seen.keep_log(state_dir / f"{command[0]}.log")
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dask_operator", command[0], "--address", "127.0.0.1", "--port", str(port),
             *command[1:]],
            env={**os.environ, "KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": namespace},
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is None and httpx.get(f"{url}/healthz", timeout=2).status_code == 200,
                 60, f"{command[0]}'s /healthz")
        yield url, log
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        print(f"\n--- {command[0]} log (last 30 lines) ---\n"
              + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))


def host_api(kube: Kube, state_dir: Path, *args: str):
    """`dask-operator api` on the host as deploy/api's ServiceAccount (`host_server`)."""
    return host_server(kube, state_dir, ["api", *args], API_NAMESPACE, "ddl-cluster-scaler")
