"""The `dask-operator` command: run, render, api, scaler, autoscaling-api, sandbox, autoscale, nodes,
startup-scripts."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path


def _sandbox_parser(sub) -> None:
    p = sub.add_parser("sandbox", help="a real Kubernetes control plane on 127.0.0.1 (see README)")
    p.add_argument("action", nargs="?", default="up", choices=["up", "build", "address"],
                   help="up: start and run until Ctrl-C (default); build: only build the binaries; "
                        "address CLUSTER: print a scheduler address reachable from this host")
    p.add_argument("cluster", nargs="?", help="with address: the Cluster's name")
    p.add_argument("-n", "--namespace", help="with address: the Cluster's namespace (default: the current one)")
    p.add_argument("--state-dir", type=Path, help="where certificates, data and logs go (default: a temp dir)")
    p.add_argument("--nodes", type=int, default=2, help="kwok nodes (default 2)")
    p.add_argument("--crd", type=Path, action="append", default=None,
                   help="CRD files to install before the controller-manager starts (default: deploy/crd.yaml)")
    p.add_argument("--adapter-rules", type=Path, action="append", default=None,
                   help="prometheus-adapter rule files (default: adapter-rules/scheduler.yaml)")
    p.add_argument("--hpa-sync-period", default="2s", help="the HPA controller's sync period (default 2s)")
    p.add_argument("--scrape-interval", default="2s", help="Prometheus scrape interval (default 2s)")
    p.add_argument("--kcm-api-rate", default="200/400", metavar="QPS/BURST",
                   help="kube-controller-manager's API rate limit (default 200/400; Kubernetes' own is 20/30)")
    p.add_argument("--example", action="store_true",
                   help="also install deploy/ and deploy/api, run the operator and the API, and apply example/")
    p.add_argument("--with", dest="operators", default="",
                   help="third-party operators to build and run too, comma-separated: kuberay, dco, "
                        "cluster-autoscaler")


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
    p.add_argument("--autoscale-interval", type=float, default=15.0,
                   help="seconds between syncs of the operator's own autoscaler for Clusters with "
                        "spec.autoscaling (default 15, the HPA's; 0: off; needs the desired-workers poll)")
    p.add_argument("--scheduler-access", choices=["auto", "service", "pod-ip"], default="auto",
                   help="how to reach scheduler APIs: Service DNS (in-cluster) or the ready pod's IP "
                        "(outside the cluster); auto picks by where the operator runs")


def _render_parser(sub) -> None:
    p = sub.add_parser("render", help="print the objects the operator would create for a Cluster file")
    p.add_argument("file", type=Path, help="a Cluster manifest (YAML), '-' for stdin")


def _api_parser(sub) -> None:
    from .api.main import add_arguments

    p = sub.add_parser("api", help="serve the cluster-scaler HTTP API (seeds 000 and 001)")
    add_arguments(p)


def _autoscale_parser(sub) -> None:
    from .autoscale_cli import add_arguments

    p = sub.add_parser("autoscale", help="replay a demand trace through the HPA policy engine (simulate)")
    add_arguments(p)


def autoscale_main(args: argparse.Namespace) -> int:
    from .autoscale_cli import main as autoscale

    return autoscale(args)


def _nodes_parser(sub) -> None:
    from .nodes.cli import add_arguments

    p = sub.add_parser("nodes", help="GPU nodes on Verda: the cluster-autoscaler externalgrpc provider")
    add_arguments(p)


def nodes_main(args: argparse.Namespace) -> int:
    from .nodes.cli import main as serve

    return serve(args)


def _startup_scripts_parser(sub) -> None:
    from .nodes.scripts_cli import add_arguments

    p = sub.add_parser("startup-scripts", help="serve each Verda instance its own startup script, deleted after use")
    add_arguments(p)


def startup_scripts_main(args: argparse.Namespace) -> int:
    from .nodes.scripts_cli import main as serve

    return serve(args)


def _autoscaling_api_parser(sub) -> None:
    from .autoscaling_api.main import add_arguments

    p = sub.add_parser("autoscaling-api", help="serve the autoscaling API (seed 004): autoscalers that are HPAs")
    add_arguments(p)


def autoscaling_api_main(args: argparse.Namespace) -> int:
    from .autoscaling_api.main import main as serve

    return serve(args)


def _scaler_parser(sub) -> None:
    from .client_cli import add_arguments

    p = sub.add_parser("scaler", help="the cluster-scaler API's client: list, get, scale, restart-head, status")
    add_arguments(p)


def scaler_main(args: argparse.Namespace) -> int:
    from .client_cli import main

    return main(args)


def api_main(args: argparse.Namespace) -> int:
    from .api.main import run

    return run(args)


def run_main(args: argparse.Namespace) -> int:
    import asyncio

    from .operator import run
    from .scheduler_access import SchedulerAccess

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
        access=SchedulerAccess.choose(args.scheduler_access),
        desired_workers_interval=args.desired_workers_interval,
        autoscale_interval=args.autoscale_interval,
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
    try:
        from .sandbox import run_sandbox
        from .sandbox.access import scheduler_address
        from .sandbox.build import ensure_binaries
    except ImportError as e:  # the operator image and `pip install .` carry no sandbox
        print(f"error: the sandbox is not installed ({e}): pip install -e '.[sandbox]' from a checkout",
              file=sys.stderr)
        return 2
    if args.action == "address":
        if not args.cluster:
            print("error: sandbox address needs a Cluster name", file=sys.stderr)
            return 2
        try:
            print(scheduler_address(args.cluster, args.namespace))
        except LookupError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    from .sandbox.thirdparty import OPERATORS, ensure_operator

    operators = tuple(o for o in args.operators.split(",") if o)
    if unknown := [o for o in operators if o not in OPERATORS]:
        print(f"error: unknown operators {unknown}; known: {', '.join(OPERATORS)}", file=sys.stderr)
        return 2
    if args.action == "build":
        from .sandbox.build import servicemonitor_crd

        b = ensure_binaries()
        servicemonitor_crd()
        print(f"sandbox binaries ready in {b.kube_apiserver.parent}")
        for name in operators:
            print(f"{name} ready: {ensure_operator(name)}")
        return 0
    qps, _, burst = args.kcm_api_rate.partition("/")
    if not (qps.isdigit() and burst.isdigit() and int(qps) > 0 and int(burst) > 0):
        print(f"error: --kcm-api-rate must be QPS/BURST, two positive integers, not {args.kcm_api_rate!r}",
              file=sys.stderr)
        return 2
    return run_sandbox(
        state_dir=args.state_dir,
        kcm_api_rate=(int(qps), int(burst)),
        nodes=args.nodes,
        crds=_defaults(args.crd, Path("deploy/crd.yaml")),
        adapter_rules=_defaults(args.adapter_rules, Path("adapter-rules/scheduler.yaml")),
        hpa_sync_period=args.hpa_sync_period,
        scrape_interval=args.scrape_interval,
        example=args.example,
        operators=operators,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dask-operator", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    _render_parser(sub)
    _api_parser(sub)
    _scaler_parser(sub)
    _autoscaling_api_parser(sub)
    _sandbox_parser(sub)
    _autoscale_parser(sub)
    _nodes_parser(sub)
    _startup_scripts_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # kr8s warns at every connection when the server is newer than the
    # versions it lists; it works with them, and the warning buries the logs.
    warnings.filterwarnings("ignore", message="Kubernetes version .* is not supported")
    # One line per HTTP request, or per handled pod event, drowns what matters
    # (and costs CPU during a large scale); the operator logs its own actions.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not args.verbose:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    commands = {"run": run_main, "render": render_main, "api": api_main, "scaler": scaler_main,
                "autoscaling-api": autoscaling_api_main,
                "sandbox": sandbox_main,
                "autoscale": autoscale_main, "nodes": nodes_main, "startup-scripts": startup_scripts_main}
    if args.command in commands:
        return commands[args.command](args)
    parser.error(f"unknown command {args.command}")
    return 2
