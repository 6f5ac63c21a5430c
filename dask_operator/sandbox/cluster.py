"""Start and stop a real Kubernetes control plane on this machine.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok,
Prometheus and prometheus-adapter run as child processes of one supervisor
(`dask-operator sandbox up`), each on a free loopback port, with state under
one directory; the pod runner (a small kubelet) runs inside the supervisor.
The API server alone listens on the sandbox bridge's gateway address instead,
so that pods reach it too (the `kubernetes` Service's endpoint).
The supervisor writes `sandbox.json` (kubeconfig path, URLs, PIDs) when the
whole sandbox is ready and stops every process it started, by PID, on
SIGTERM/SIGINT or when its own parent dies.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import yaml

from . import kwok as kwok_config
from . import netns, procs, thirdparty
from .build import Binaries, ensure_binaries
from .pki import KeyPair, Pki, make_pki
from .podrunner import PodRunner
from .resource_metrics import ADAPTER as RESOURCE_ADAPTER, ResourceMetrics

log = logging.getLogger(__name__)

SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
APISERVER_PORT = 443
ADAPTER_NAMESPACE = "sandbox-system"
ADAPTER_SERVICE = "prometheus-adapter"
READY_FILE = "sandbox.json"
ETCD_TMPFS = "/dev/shm" if Path("/dev/shm").is_dir() else None
# What `sandbox --example` applies, in order: (kustomize directory, namespace
# for those that deploy into the current one). deploy/api has its own.
EXAMPLE = (("deploy", "default"), ("example", None), ("deploy/api", None))


@dataclass
class SandboxConfig:
    state_dir: Path | None = None
    nodes: int = 2
    node_cpu: str = "64"
    node_memory: str = "256Gi"
    node_pods: str = "250"
    node_gpus: str = "8"
    hpa_sync_period: str = "2s"
    scrape_interval: str = "2s"
    adapter_rules: list[Path] = field(default_factory=list)
    crds: list[Path] = field(default_factory=list)
    feature_gates: dict[str, bool] = field(default_factory=lambda: {"HPAScaleToZero": True})
    start_timeout: float = 120.0
    operators: tuple[str, ...] = ()  # third-party operators to run (`thirdparty.OPERATORS`)
    # kube-controller-manager's client rate limit (QPS, burst). Kubernetes'
    # default is 20/30; the sandbox's is raised so tests are not paced by it.
    kcm_api_rate: tuple[int, int] = (200, 400)


@dataclass
class SandboxInfo:
    """What a client of a running sandbox needs; written to `sandbox.json`."""

    state_dir: str
    kubeconfig: str
    apiserver: str
    prometheus: str
    pod_cidr: str
    supervisor_pid: int
    pids: dict[str, int]
    file_sd_dir: str
    adapter_rules: str
    operators: dict[str, dict[str, int]] = field(default_factory=dict)  # name -> {pid, <port name>: port}

    @classmethod
    def load(cls, state_dir: Path) -> "SandboxInfo":
        return cls(**json.loads((state_dir / READY_FILE).read_text()))

    @property
    def network(self) -> netns.Network:
        """The sandbox's bridge and pod address layout."""
        return netns.Network.from_cidr(self.pod_cidr)


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, server: str, ca: KeyPair, client: KeyPair, user: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": {"server": server, "certificate-authority-data": _b64(ca.cert)}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": _b64(client.cert), "client-key-data": _b64(client.key)}}],
        "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": user}}],
        "current-context": "sandbox",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def write_token_kubeconfig(base: Path, token: str, user: str, path: Path) -> Path:
    """A copy of kubeconfig `base` that authenticates with a bearer token."""
    config = yaml.safe_load(base.read_text())
    config["users"] = [{"name": user, "user": {"token": token}}]
    for ctx in config["contexts"]:
        ctx["context"]["user"] = user
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _wait(what: str, check, deadline: float, procs_to_watch: dict[str, subprocess.Popen]) -> None:
    while True:
        for name, p in procs_to_watch.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode} while waiting for {what}")
        try:
            if check():
                return
        except (httpx.HTTPError, OSError, subprocess.SubprocessError, KeyError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"sandbox: timed out waiting for {what}")
        time.sleep(0.2)


class Sandbox:
    def __init__(self, config: SandboxConfig, binaries: Binaries | None = None):
        self.config = config
        self.binaries = binaries
        self.dir = Path(config.state_dir or tempfile.mkdtemp(prefix="dask-operator-sandbox-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logs = self.dir / "logs"
        self.procs: dict[str, subprocess.Popen] = {}
        self.network: netns.Network | None = None
        self.pki: Pki | None = None
        self.info: SandboxInfo | None = None
        self.etcd_dir: Path | None = None

    # --------------------------------------------------------------- start
    def start(self) -> SandboxInfo:
        # Builds first: a cold one takes minutes, which the start deadline excludes.
        self.binaries = self.binaries or ensure_binaries()
        operators = {name: thirdparty.ensure_operator(name) for name in self.config.operators}
        crds = list(self.config.crds) + [f for name in operators for f in thirdparty.crd_files(name)]
        t0 = time.monotonic()
        deadline = t0 + self.config.start_timeout
        b = self.binaries
        self.network = net = netns.create_network()
        # The API server listens on the bridge's gateway address, which both
        # the host and the pods reach; its certificate also names the
        # `kubernetes` Service's ClusterIP.
        self.pki = pki = make_pki(self.dir / "pki", (str(net.gateway), KUBERNETES_SERVICE_IP))
        # On 443, like a real cluster's `kubernetes` Service: in-cluster clients
        # that dial https://kubernetes.default.svc (kopf does) reach it. Each
        # sandbox has its own gateway address, so sandboxes do not collide.
        api_port = self.api_port = APISERVER_PORT
        (etcd_client, etcd_peer, kcm_port, sched_port, kwok_port, prom_port, adapter_port, *usage_ports) = free_ports(9)
        self.resource_metrics = ResourceMetrics(self.dir, *usage_ports)
        server = f"https://{net.gateway}:{api_port}"
        admin = write_kubeconfig(self.dir / "admin.kubeconfig", server, pki.ca, pki.admin, "admin")
        kcm_kc = write_kubeconfig(self.dir / "kcm.kubeconfig", server, pki.ca, pki.controller_manager,
                                  "system:kube-controller-manager")
        sched_kc = write_kubeconfig(self.dir / "scheduler.kubeconfig", server, pki.ca, pki.scheduler,
                                    "system:kube-scheduler")
        gates = ",".join(f"{k}={str(v).lower()}" for k, v in self.config.feature_gates.items())
        tls = ssl.create_default_context(cafile=str(pki.ca.cert))
        tls.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
        client = httpx.Client(verify=tls, timeout=2)

        # etcd's data lives in memory: Debian's etcd 3.4 cannot skip fsync, and
        # an fsync per write, not the apiserver, would set the pace of a
        # 100-pod scale. It is a throwaway test cluster.
        self.etcd_dir = Path(tempfile.mkdtemp(prefix="dask-operator-etcd-", dir=ETCD_TMPFS))
        self._spawn("etcd", [
            str(b.etcd), "--name", "sandbox", "--data-dir", str(self.etcd_dir / "data"),
            "--listen-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-cluster", f"sandbox=http://127.0.0.1:{etcd_peer}",
            "--log-level", "warn",
        ])
        self._spawn("kube-apiserver", [
            str(b.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            f"--bind-address={net.gateway}", f"--advertise-address={net.gateway}", f"--secure-port={api_port}",
            f"--tls-cert-file={pki.apiserver.cert}", f"--tls-private-key-file={pki.apiserver.key}",
            f"--client-ca-file={pki.ca.cert}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",  # PodSecurity is on by default
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.service_account.cert}",
            f"--service-account-signing-key-file={pki.service_account.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--requestheader-client-ca-file={pki.front_proxy_ca.cert}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki.front_proxy_client.cert}",
            f"--proxy-client-key-file={pki.front_proxy_client.key}",
            # Debian's etcd 3.4 lacks RequestWatchProgress, which WatchList needs.
            f"--feature-gates=WatchList=false{',' + gates if gates else ''}",
            "--allow-privileged=true", "--profiling=false", "--event-ttl=1h",
            "--max-requests-inflight=800", "--max-mutating-requests-inflight=400",
        ])
        _wait("kube-apiserver", lambda: client.get(f"{server}/readyz").status_code == 200, deadline, self.procs)

        # CRDs before the controller-manager: its RESTMapper would otherwise
        # see them only after its ~30 s reset (the HPA needs their /scale).
        # Server-side: some third-party CRDs exceed client-side apply's
        # 256 KiB last-applied annotation (KubeRay's RayJob is 1.3 MB).
        if crds:
            files = sum((["-f", str(c)] for c in crds), [])
            self.kubectl("apply", "--server-side", "--force-conflicts", *files)
            self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *files)
        self.kubectl_apply(self._bootstrap_objects(adapter_port) + self.resource_metrics.objects(ADAPTER_NAMESPACE))

        flex = self.dir / "flexvolume"
        flex.mkdir(exist_ok=True)
        self._spawn("kube-controller-manager", [
            str(b.kube_controller_manager),
            f"--kubeconfig={kcm_kc}", f"--authentication-kubeconfig={kcm_kc}",
            f"--authorization-kubeconfig={kcm_kc}",
            "--bind-address=127.0.0.1", f"--secure-port={kcm_port}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.service_account.key}",
            f"--root-ca-file={pki.ca.cert}",
            f"--cluster-signing-cert-file={pki.ca.cert}", f"--cluster-signing-key-file={pki.ca.key}",
            f"--flex-volume-plugin-dir={flex}",
            "--leader-elect=false", f"--kube-api-qps={self.config.kcm_api_rate[0]}",
            f"--kube-api-burst={self.config.kcm_api_rate[1]}",
            f"--horizontal-pod-autoscaler-sync-period={self.config.hpa_sync_period}",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
            f"--feature-gates={gates}" if gates else "--profiling=false",
        ])
        sched_config = self.dir / "scheduler.yaml"
        sched_config.write_text(yaml.safe_dump({
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "clientConnection": {"kubeconfig": str(sched_kc), "qps": 500, "burst": 1000},
            "leaderElection": {"leaderElect": False},
        }))
        self._spawn("kube-scheduler", [
            str(b.kube_scheduler), f"--config={sched_config}",
            f"--authentication-kubeconfig={sched_kc}", f"--authorization-kubeconfig={sched_kc}",
            "--bind-address=127.0.0.1", f"--secure-port={sched_port}",
        ])
        kwok_file = self.dir / "kwok.yaml"
        kwok_file.write_text(kwok_config.render())
        self._spawn("kwok", [
            str(b.kwok), f"--kubeconfig={admin}", f"--config={kwok_file}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={kwok_config.NODE_ANNOTATION}={kwok_config.MANAGED}",
            f"--cidr={net.kwok_range}", f"--node-ip={net.gateway}",
            f"--server-address=127.0.0.1:{kwok_port}",
        ])
        file_sd = self.dir / "prometheus" / "targets"
        file_sd.mkdir(parents=True, exist_ok=True)
        prom_config = self.dir / "prometheus" / "prometheus.yml"
        prom_config.write_text(yaml.safe_dump(self._prometheus_config(server, file_sd)))
        self._spawn("prometheus", [
            str(b.prometheus), f"--config.file={prom_config}",
            f"--storage.tsdb.path={self.dir / 'prometheus' / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=2h", "--log.level=warn",
        ])
        rules = self.dir / "adapter-rules.yaml"
        rules.write_text(yaml.safe_dump(merge_rules(self.config.adapter_rules)))
        self._spawn("prometheus-adapter", self._adapter_argv(admin, adapter_port, prom_port, rules))
        usage_config = self.resource_metrics.prepare(self.config.scrape_interval, file_sd)
        self._spawn(RESOURCE_ADAPTER, self._adapter_argv(admin, usage_ports[1], prom_port, usage_config))

        self.kubectl_apply(kwok_config.nodes(self.config))

        def nodes_ready() -> bool:
            items = client.get(f"{server}/api/v1/nodes").json()["items"]
            return len(items) >= self.config.nodes and all(
                any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
                for n in items
            )

        def api_service_available() -> bool:
            obj = client.get(f"{server}/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.custom.metrics.k8s.io").json()
            return any(c["type"] == "Available" and c["status"] == "True" for c in obj["status"]["conditions"])

        _wait("kube-controller-manager", lambda: httpx.get(
            f"https://127.0.0.1:{kcm_port}/healthz", verify=False).status_code == 200, deadline, self.procs)
        _wait("kube-scheduler", lambda: httpx.get(
            f"https://127.0.0.1:{sched_port}/healthz", verify=False).status_code == 200, deadline, self.procs)
        _wait("kwok nodes Ready", nodes_ready, deadline, self.procs)
        _wait("default ServiceAccount", lambda: client.get(
            f"{server}/api/v1/namespaces/default/serviceaccounts/default").status_code == 200, deadline, self.procs)
        _wait("Prometheus", lambda: httpx.get(f"http://127.0.0.1:{prom_port}/-/ready").status_code == 200,
              deadline, self.procs)
        if self.config.adapter_rules:
            _wait("custom metrics APIService", api_service_available, deadline, self.procs)
        else:  # prometheus-adapter serves no group version without rules: its APIService stays unavailable
            log.warning("no prometheus-adapter rules (the defaults are relative to the repository; or pass "
                        "--adapter-rules): custom.metrics.k8s.io is unavailable until a restart with some")
        _wait("resource metrics APIService", lambda: self.resource_metrics.available(client, server), deadline,
              self.procs)
        client.close()
        started = {name: self._start_operator(name, binary, admin, deadline) for name, binary in operators.items()}

        self.info = SandboxInfo(
            state_dir=str(self.dir), kubeconfig=str(admin), apiserver=server,
            prometheus=f"http://127.0.0.1:{prom_port}", pod_cidr=str(net.cidr),
            supervisor_pid=os.getpid(), pids={n: p.pid for n, p in self.procs.items()},
            file_sd_dir=str(file_sd), adapter_rules=str(rules), operators=started,
        )
        log.info("sandbox ready in %.1fs: %s", time.monotonic() - t0, server)
        return self.info

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.procs[name] = procs.spawn(name, argv, self.logs, env=env)

    def _start_operator(self, name: str, binary: Path, kubeconfig: Path, deadline: float) -> dict[str, int]:
        """Run a third-party operator (admin credentials, loopback ports) until its /readyz answers."""
        ports = free_ports(thirdparty.ports_needed(name))
        argv, env = thirdparty.operator_argv(name, binary, kubeconfig, ports)
        self._spawn(name, argv, {**os.environ, **env})
        named = dict(zip(thirdparty.OPERATORS[name].ports, ports))
        health = thirdparty.OPERATORS[name].health_path
        _wait(f"{name} {health}", lambda: httpx.get(
            f"http://127.0.0.1:{named['health']}{health}").status_code == 200, deadline, self.procs)
        return {"pid": self.procs[name].pid, **named}

    def _adapter_argv(self, admin: Path, port: int, prom_port: int, rules: Path) -> list[str]:
        assert self.binaries and self.pki
        return [
            str(self.binaries.prometheus_adapter),
            f"--lister-kubeconfig={admin}", f"--authentication-kubeconfig={admin}",
            f"--authorization-kubeconfig={admin}",
            f"--secure-port={port}", "--bind-address=127.0.0.1",
            f"--tls-cert-file={self.pki.serving.cert}", f"--tls-private-key-file={self.pki.serving.key}",
            f"--prometheus-url=http://127.0.0.1:{prom_port}/",
            "--metrics-relist-interval=2s", f"--config={rules}", "--v=1",
        ]

    def reload_adapter(self) -> None:
        """Restart prometheus-adapter, which reads its rules file only at start.

        `sandbox.json`'s `adapter_rules` names the file; rewrite it, then send
        the supervisor SIGHUP (tests switch metric sources this way).
        """
        assert self.info
        old = self.procs["prometheus-adapter"]
        argv = list(old.args)
        procs.stop([old])
        self._spawn("prometheus-adapter", argv)
        log.info("prometheus-adapter restarted with %s", self.info.adapter_rules)
        self.info.pids["prometheus-adapter"] = self.procs["prometheus-adapter"].pid
        self.write_info()

    def write_info(self) -> None:
        assert self.info
        tmp = self.dir / f"{READY_FILE}.tmp"
        tmp.write_text(json.dumps(asdict(self.info), indent=2))
        os.replace(tmp, self.dir / READY_FILE)

    def _bootstrap_objects(self, adapter_port: int) -> list[dict]:
        """The aggregation wiring for prometheus-adapter: there is no kube-proxy,
        so the APIService points at an ExternalName Service for localhost."""
        return [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ADAPTER_NAMESPACE}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": ADAPTER_SERVICE, "namespace": ADAPTER_NAMESPACE},
             "spec": {"type": "ExternalName", "externalName": "localhost",
                      "ports": [{"name": "https", "port": adapter_port}]}},
        ] + [
            {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
             "metadata": {"name": f"{version}.custom.metrics.k8s.io"},
             "spec": {"group": "custom.metrics.k8s.io", "version": version,
                      "service": {"namespace": ADAPTER_NAMESPACE, "name": ADAPTER_SERVICE, "port": adapter_port},
                      "insecureSkipTLSVerify": True, "groupPriorityMinimum": 100, "versionPriority": priority}}
            for version, priority in (("v1beta1", 100), ("v1beta2", 200))
        ]

    def _prometheus_config(self, server: str, file_sd: Path) -> dict:
        assert self.pki
        sd = {"role": "endpoints", "api_server": server, "tls_config": {
            "ca_file": str(self.pki.ca.cert), "cert_file": str(self.pki.admin.cert),
            "key_file": str(self.pki.admin.key)}}
        return {
            "global": {"scrape_interval": self.config.scrape_interval,
                       "evaluation_interval": self.config.scrape_interval},
            "scrape_configs": [
                {
                    # What the seed's ServiceMonitor makes the Prometheus Operator
                    # generate: Services labelled role=scheduler, port
                    # http-dashboard, job from the dask.charmtx.com/cluster label.
                    "job_name": "dask-scheduler",
                    "kubernetes_sd_configs": [sd],
                    "relabel_configs": [
                        {"source_labels": ["__meta_kubernetes_service_label_dask_charmtx_com_role"],
                         "regex": "scheduler", "action": "keep"},
                        {"source_labels": ["__meta_kubernetes_endpoint_port_name"],
                         "regex": "http-dashboard", "action": "keep"},
                        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
                        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                        {"source_labels": ["__meta_kubernetes_service_label_dask_charmtx_com_cluster"],
                         "target_label": "job"},
                    ],
                },
                {
                    # What deploy/monitoring's operator ServiceMonitor generates:
                    # the operator's metrics Service, its series' own labels kept.
                    "job_name": "dask-operator",
                    "honor_labels": True,
                    "kubernetes_sd_configs": [sd],
                    "relabel_configs": [
                        {"source_labels": ["__meta_kubernetes_service_label_app_kubernetes_io_name"],
                         "regex": "dask-operator", "action": "keep"},
                        {"source_labels": ["__meta_kubernetes_endpoint_port_name"],
                         "regex": "metrics", "action": "keep"},
                    ],
                },
                {
                    # Processes on the host (the operator in tests) add themselves
                    # as JSON files here; Prometheus picks them up on its own.
                    "job_name": "file-sd",
                    "file_sd_configs": [{"files": [str(file_sd / "*.json")], "refresh_interval": "1s"}],
                },
            ],
        }

    # ------------------------------------------------------------- helpers
    def kubectl(self, *args: str, input: str | None = None) -> str:
        return subprocess.run(
            ["kubectl", f"--kubeconfig={self.dir / 'admin.kubeconfig'}", *args],
            input=input, capture_output=True, text=True, check=True,
        ).stdout

    def kubectl_apply(self, objects: list[dict]) -> None:
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))

    def run_example(self, root: Path) -> None:
        """Seed 003's commands, `kubectl apply -k deploy/` then `kubectl apply -k example/`,
        and the cluster-scaler API, `kubectl apply -k deploy/api` (see `EXAMPLE`).

        The operator and the API run as their own pods (both carry
        `app.kubernetes.io/part-of=dask-operator`), started by the pod runner
        once `serve()` runs.
        """
        for directory, namespace in EXAMPLE:
            self.kubectl("apply", "-k", str(root / directory), *(["-n", namespace] if namespace else []))

    # ---------------------------------------------------------------- stop
    def stop(self) -> None:
        """Stop every process this sandbox started, pods included, by PID."""
        procs.stop(list(self.procs.values()))
        if self.etcd_dir is not None:
            shutil.rmtree(self.etcd_dir, ignore_errors=True)
            self.etcd_dir = None
        if self.network is not None:
            netns.delete_network(self.network)
            self.network = None

    # ---------------------------------------------------------- supervisor
    async def serve(self) -> None:
        """Run the pod runner until SIGTERM/SIGINT, then stop everything."""
        assert self.network
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(
            signal.SIGHUP, lambda: asyncio.ensure_future(asyncio.to_thread(self.reload_adapter)))
        runner = PodRunner(Path(self.info.kubeconfig), self.network, self.dir, self.api_port)
        task = asyncio.create_task(runner.run())
        usage = await self.resource_metrics.serve(runner)
        self.write_info()
        await asyncio.wait([task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        runner.stop()
        try:
            await asyncio.wait_for(task, 60)
        except Exception:
            log.exception("pod runner failed")
        await usage.cleanup()


def merge_rules(files: list[Path]) -> dict:
    """Concatenate the `rules` (and external/resource rules) of adapter config files."""
    merged: dict[str, list] = {"rules": []}
    for f in files:
        doc = yaml.safe_load(Path(f).read_text()) or {}
        if doc.get("kind") == "ConfigMap":
            doc = yaml.safe_load(next(iter(doc["data"].values())))
        for key, value in doc.items():
            if isinstance(value, list):
                merged.setdefault(key, []).extend(value)
    return merged
