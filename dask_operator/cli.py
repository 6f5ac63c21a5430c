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


def _defaults(given: list[Path] | None, default: Path) -> list[Path]:
    if given is not None:
        return given
    return [default] if default.exists() else []


def sandbox_main(args: argparse.Namespace) -> int:
    from .sandbox import run_sandbox
    from .sandbox.build import ensure_binaries

    if args.action == "build":
        b = ensure_binaries()
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
    _sandbox_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # One line per HTTP request drowns what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.command == "sandbox":
        return sandbox_main(args)
    parser.error(f"unknown command {args.command}")
    return 2
