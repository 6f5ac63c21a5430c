"""Build the sandbox's Go binaries once and cache them by version.

etcd is Debian's `etcd-server`. kube-apiserver, kube-controller-manager and
kube-scheduler come from
`k8s.io/kubernetes`, which cannot be `go install`ed directly because its go.mod
has `replace` directives for the staging modules; a small wrapper module that
requires it and replaces each staging module with the published version builds
it. kwok, prometheus-adapter and Prometheus are built the same way (see GoTool).

Binaries land in `~/.cache/dask-operator/sandbox/<versions>/bin/`
(`DASK_OPERATOR_CACHE` overrides the root). A cold build on 2 cores takes about
6 minutes and 3 GB of Go build cache; a warm one is a few stat calls.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.36.2"
STAGING_VERSION = "v0.36.2"
KWOK_VERSION = "v0.8.0"
ADAPTER_VERSION = "v0.12.0"
# Prometheus 3.16. Debian's `prometheus` package is built without Kubernetes
# service discovery ("field kubernetes_sd_configs not found"), so it is built
# from its Go module like the rest.
PROMETHEUS_VERSION = "v0.316.0"

# Staging modules that k8s.io/kubernetes replaces with ./staging/src/... paths.
STAGING_MODULES = (
    "api", "apiextensions-apiserver", "apimachinery", "apiserver", "cli-runtime",
    "client-go", "cloud-provider", "cluster-bootstrap", "code-generator",
    "component-base", "component-helpers", "controller-manager", "cri-api",
    "cri-client", "cri-streaming", "csi-translation-lib", "dynamic-resource-allocation",
    "endpointslice", "externaljwt", "kms", "kube-aggregator", "kube-controller-manager",
    "kube-proxy", "kube-scheduler", "kubectl", "kubelet", "metrics", "mount-utils",
    "pod-security-admission", "sample-apiserver", "streaming",
)

KUBE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    prometheus_adapter: Path
    etcd: Path
    prometheus: Path


def cache_root() -> Path:
    root = os.environ.get("DASK_OPERATOR_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "dask-operator"


RECIPE = "r2"  # bump when the way binaries are built changes


def versions_key() -> str:
    return (
        f"{RECIPE}_"
        f"k8s-{KUBERNETES_VERSION}_kwok-{KWOK_VERSION}_adapter-{ADAPTER_VERSION}"
        f"_prometheus-{PROMETHEUS_VERSION}"
    )


def bin_dir() -> Path:
    return cache_root() / "sandbox" / versions_key() / "bin"


@dataclass(frozen=True)
class GoTool:
    """A wrapper module that requires `module` and builds `packages` from it.

    A wrapper is used for every tool: `go install pkg@version` reads the
    module's version list for deprecation notices, and the proxy refuses that
    list for some modules (prometheus-adapter), while a pinned require works.
    """

    key: str
    module: str
    version: str
    packages: tuple[tuple[str, str], ...]  # (package path, binary name)
    replaces: tuple[tuple[str, str], ...] = ()
    # Build tags; with tags the module graph is resolved by `go build -mod=mod`
    # for just the packages those tags select, since `go mod tidy` considers
    # every tag and would fetch modules the proxy does not serve.
    tags: tuple[str, ...] = ()
    ldflags: str = ""

    def go_mod(self) -> str:
        lines = [f"module daskoperator.sandbox/{self.key}", "", "go 1.26", "",
                 f"require {self.module} {self.version}", ""]
        lines += [f"replace {m} => {m} {v}" for m, v in self.replaces]
        return "\n".join(lines) + "\n"

    def tools_go(self) -> str:
        imports = "".join(f'\t_ "{pkg}"\n' for pkg, _ in self.packages)
        return f"//go:build tools\n\npackage tools\n\nimport (\n{imports})\n"


TOOLS = (
    GoTool(
        "kubernetes", "k8s.io/kubernetes", KUBERNETES_VERSION,
        tuple((f"k8s.io/kubernetes/cmd/{b}", b) for b in KUBE_BINARIES),
        tuple((f"k8s.io/{m}", STAGING_VERSION) for m in STAGING_MODULES),
        # What the release build stamps in, so /version and kubectl see 1.36.
        ldflags=" ".join(
            f"-X k8s.io/{pkg}.{var}={value}"
            for pkg in ("component-base/version", "client-go/pkg/version")
            for var, value in (
                ("gitVersion", KUBERNETES_VERSION), ("gitMajor", "1"),
                ("gitMinor", KUBERNETES_VERSION.split(".")[1]), ("gitTreeState", "clean"),
            )
        ),
    ),
    GoTool("kwok", "sigs.k8s.io/kwok", KWOK_VERSION, (("sigs.k8s.io/kwok/cmd/kwok", "kwok"),)),
    GoTool(
        "prometheus-adapter", "sigs.k8s.io/prometheus-adapter", ADAPTER_VERSION,
        (("sigs.k8s.io/prometheus-adapter/cmd/adapter", "prometheus-adapter"),),
    ),
    GoTool(
        "prometheus", "github.com/prometheus/prometheus", PROMETHEUS_VERSION,
        (("github.com/prometheus/prometheus/cmd/prometheus", "prometheus"),),
        # Only Kubernetes service discovery (file and http SD are built in).
        tags=("remove_all_sd", "enable_kubernetes_sd"),
    ),
)


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # Go 1.27 turns on jsonv2 by default, which makes kube-apiserver serve broken
    # OpenAPI ("failed to download openapi" in kubectl apply). Keep it off.
    env["GOEXPERIMENT"] = "nojsonv2"
    env.setdefault("CGO_ENABLED", "0")
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -buildvcs=false").strip()
    return env


def _run(cmd: list[str], cwd: Path, what: str, log: Path) -> None:
    """Run a build step, printing a heartbeat so a cold build shows progress."""
    start = time.monotonic()
    print(f"sandbox: building {what} ...", file=sys.stderr, flush=True)
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(30):
            print(f"sandbox:   {what}: {time.monotonic() - start:.0f}s", file=sys.stderr, flush=True)

    thread = threading.Thread(target=heartbeat, daemon=True)
    thread.start()
    try:
        with log.open("ab") as out:
            rc = subprocess.run(cmd, cwd=cwd, env=_go_env(), stdout=out, stderr=subprocess.STDOUT).returncode
    finally:
        done.set()
    if rc != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"building {what} failed (exit {rc}); log {log}:\n{tail}")
    print(f"sandbox: built {what} in {time.monotonic() - start:.0f}s", file=sys.stderr, flush=True)


def _require_go() -> str:
    go = shutil.which("go")
    if not go:
        raise RuntimeError("the sandbox needs Go 1.26 on PATH to build Kubernetes")
    return go


def _system_binary(name: str, package: str) -> Path:
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"the sandbox needs `{name}`: apt-get install {package}")
    return Path(path)


PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
SERVICEMONITOR_CRD = "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"


def servicemonitor_crd() -> Path:
    """The real ServiceMonitor CRD, from the prometheus-operator Go module."""
    out = bin_dir().parent / "crds" / f"servicemonitors-{PROMETHEUS_OPERATOR_VERSION}.yaml"
    if not out.exists():
        go = _require_go()
        info = subprocess.run(
            [go, "mod", "download", "-json", f"github.com/prometheus-operator/prometheus-operator@"
             f"{PROMETHEUS_OPERATOR_VERSION}"], capture_output=True, text=True, env=_go_env(), check=True,
        )
        source = Path(json.loads(info.stdout)["Dir"]) / SERVICEMONITOR_CRD
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, out)
    return out


def ensure_binaries() -> Binaries:
    """Return the sandbox binaries, building whatever is missing from the cache."""
    out = bin_dir()
    out.mkdir(parents=True, exist_ok=True)
    log = out.parent / "build.log"

    for tool in TOOLS:
        missing = [(pkg, name) for pkg, name in tool.packages if not (out / name).exists()]
        if not missing:
            continue
        go = _require_go()
        work = out.parent / "src" / tool.key
        work.mkdir(parents=True, exist_ok=True)
        (work / "go.mod").write_text(tool.go_mod())
        if tool.tags:
            flags = ["-mod=mod", "-tags", ",".join(tool.tags)]
        else:
            (work / "tools.go").write_text(tool.tools_go())
            _run([go, "mod", "tidy"], work, f"{tool.module} {tool.version} module graph", log)
            flags = []
        if tool.ldflags:
            flags += ["-ldflags", tool.ldflags]
        for pkg, name in missing:
            partial = out / f".{name}.partial"
            _run([go, "build", *flags, "-o", str(partial), pkg], work, name, log)
            partial.rename(out / name)

    return Binaries(
        kube_apiserver=out / "kube-apiserver",
        kube_controller_manager=out / "kube-controller-manager",
        kube_scheduler=out / "kube-scheduler",
        kwok=out / "kwok",
        prometheus_adapter=out / "prometheus-adapter",
        etcd=_system_binary("etcd", "etcd-server"),
        prometheus=out / "prometheus",
    )
