"""The `dask-operator` command: run, render, sandbox."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _sandbox_parser(sub) -> None:
    p = sub.add_parser("sandbox", help="a real Kubernetes control plane on 127.0.0.1 (see README)")
    p.add_argument("action", nargs="?", default="up", choices=["up", "build"],
                   help="up: start and run until Ctrl-C (default); build: only build the binaries")
    p.add_argument("--state-dir", type=Path, help="where certificates, data and logs go (default: a temp dir)")
    p.add_argument("--nodes", type=int, default=2, help="kwok nodes (default 2)")
    p.add_argument("--crd", type=Path, action="append", default=None,
                   help="CRD files to install before the controller-manager starts (default: deploy/crd.yaml)")
    p.add_argument("--adapter-rules", type=Path, action="append", default=None,
                   help="prometheus-adapter rule files (default: adapter-rules/scheduler.yaml)")
    p.add_argument("--hpa-sync-period", default="2s", help="the HPA controller's sync period (default 2s)")
    p.add_argument("--scrape-interval", default="2s", help="Prometheus scrape interval (default 2s)")
    p.add_argument("--example", action="store_true",
                   help="also install deploy/, run the operator and apply example/")


def _run_parser(sub) -> None:
    p = sub.add_parser("run", help="run the operator")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch Clusters in every namespace")
    scope.add_argument("-n", "--namespace", action="append", default=[],
                       help="watch this namespace (repeatable; default: the current one, as kubectl)")
    p.add_argument("--liveness", help="kopf liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    p.add_argument("--metrics-port", type=int, default=8000, help="/metrics port (default 8000; -1: off)")
    p.add_argument("--metrics-address", default="0.0.0.0", help="/metrics bind address (default 0.0.0.0)")
    p.add_argument("--desired-workers-interval", type=float, default=5.0,
                   help="seconds between polls of each scheduler's adaptive target, exported as "
                        "dask_operator_cluster_desired_workers (default 5; 0: off)")
    p.add_argument("--scheduler-access", choices=["auto", "service", "pod-ip"], default="auto",
                   help="how to reach scheduler APIs: Service DNS (in-cluster) or the ready pod's IP "
                        "(outside the cluster); auto picks by where the operator runs")


def _render_parser(sub) -> None:
    p = sub.add_parser("render", help="print the objects the operator would create for a Cluster file")
    p.add_argument("file", type=Path, help="a Cluster manifest (YAML), '-' for stdin")


def run_main(args: argparse.Namespace) -> int:
    import asyncio

    from .operator import run, scheduler_access

    namespaces = args.namespace
    if not args.all_namespaces and not namespaces:
        import kr8s

        namespaces = [kr8s.api().namespace or "default"]
    asyncio.run(run(
        namespaces=namespaces,
        clusterwide=args.all_namespaces,
        liveness=args.liveness,
        metrics_port=None if args.metrics_port < 0 else args.metrics_port,
        metrics_address=args.metrics_address,
        access=scheduler_access(args.scheduler_access),
        desired_workers_interval=args.desired_workers_interval,
    ))
    return 0


def render_main(args: argparse.Namespace) -> int:
    import yaml

    from .core import ClusterSpec, scheduler_deployment, scheduler_service, worker_pod, worker_pod_name
    from .errors import InvalidSpec

    text = sys.stdin.read() if str(args.file) == "-" else args.file.read_text()
    docs = [d for d in yaml.safe_load_all(text) if d and d.get("kind") == "Cluster"]
    if not docs:
        print(f"error: no Cluster in {args.file}", file=sys.stderr)
        return 2
    out = []
    for doc in docs:
        try:
            spec = ClusterSpec.from_resource(doc)
        except InvalidSpec as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        out += [scheduler_service(spec), scheduler_deployment(spec)]
        out += [worker_pod(spec, worker_pod_name(spec.name, i)) for i in range(spec.replicas)]
    sys.stdout.write(yaml.safe_dump_all(out, sort_keys=False))
    return 0


def _defaults(given: list[Path] | None, default: Path) -> list[Path]:
    if given is not None:
        return given
    return [default] if default.exists() else []


def sandbox_main(args: argparse.Namespace) -> int:
    from .sandbox import run_sandbox
    from .sandbox.build import ensure_binaries

    if args.action == "build":
        from .sandbox.build import servicemonitor_crd

        b = ensure_binaries()
        servicemonitor_crd()
        print(f"sandbox binaries ready in {b.kube_apiserver.parent}")
        return 0
    return run_sandbox(
        state_dir=args.state_dir,
        nodes=args.nodes,
        crds=_defaults(args.crd, Path("deploy/crd.yaml")),
        adapter_rules=_defaults(args.adapter_rules, Path("adapter-rules/scheduler.yaml")),
        hpa_sync_period=args.hpa_sync_period,
        scrape_interval=args.scrape_interval,
        example=args.example,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dask-operator", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    _render_parser(sub)
    _sandbox_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # One line per HTTP request, or per handled pod event, drowns what matters
    # (and costs CPU during a large scale); the operator logs its own actions.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not args.verbose:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    commands = {"run": run_main, "render": render_main, "sandbox": sandbox_main}
    if args.command in commands:
        return commands[args.command](args)
    parser.error(f"unknown command {args.command}")
    return 2
