"""`dask-operator scaler`: the cluster-scaler API from a shell, on `client.py`.

    dask-operator scaler list KIND
    dask-operator scaler get KIND [--name NAME]
    dask-operator scaler scale KIND REPLICAS [--name NAME] [--tier TIER] [--no-wait] [--timeout S] [--interval S]
    dask-operator scaler restart-head KIND [--name NAME] [--no-wait] [--timeout S] [--interval S]
    dask-operator scaler status KIND [--name NAME] [--since STARTED_AT] [--wait] [--timeout S] [--interval S]

Rules:
- Configuration is seed 001's environment (see `client.py`); `--url` and
  `--namespace` override `CLUSTER_SCALER_BASE_URL` and `COMPUTE_NAMESPACE`.
  Without `--name`, the cluster is the run's: `<kind without "clusters">-<DOMINO_RUN_ID>`.
- The server's answer is printed to stdout as JSON (sorted keys, indented);
  `scale` and `restart-head` print it at once, then wait (unless `--no-wait`)
  with a progress line on stderr, rewritten in place on a terminal, one line
  per change of state otherwise.
- `status` without `--since` reports the scale (`desired`, `workers`,
  `complete`, seed 001's rule); with `--since` the head restart's status.
- Exit codes: 0 done; 1 the server refused or failed, or no answer; 2
  configuration (no credentials, no cluster name); 124 a wait ran out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from .client import (DEFAULT_BASE_URL, REQUEST_TIMEOUT_SECONDS, WAIT_TIMEOUT_SECONDS, ClientError, ScalerClient,
                     cluster_name_from_run_id, scale_counts, scale_progress, scaling_complete)

EXIT_FAILED, EXIT_CONFIG, EXIT_TIMEOUT = 1, 2, 124
CONFIG_CODES = ("config", "no_credentials")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"the API's base URL (default: $CLUSTER_SCALER_BASE_URL, "
                                      f"else {DEFAULT_BASE_URL})")
    parser.add_argument("--namespace", help="the clusters' namespace (default: $COMPUTE_NAMESPACE, "
                                            "else the server's)")
    parser.add_argument("--request-timeout", type=float, default=REQUEST_TIMEOUT_SECONDS, metavar="S",
                        help=f"seconds one request may take (default {REQUEST_TIMEOUT_SECONDS:g})")
    sub = parser.add_subparsers(dest="scaler_command", required=True, metavar="COMMAND")

    def command(name: str, help: str, wait: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("kind", help="rayclusters, daskclusters or sparkclusters")
        if name != "list":
            p.add_argument("--name", help='the cluster (default: <kind without "clusters">-$DOMINO_RUN_ID)')
        if wait == "default":
            p.add_argument("--no-wait", dest="wait", action="store_false", help="answer without waiting")
        elif wait == "optional":
            p.add_argument("--wait", action="store_true", help="wait until complete")
        if wait:
            p.add_argument("--timeout", type=float, default=WAIT_TIMEOUT_SECONDS, metavar="S",
                           help=f"seconds to wait at most (default {WAIT_TIMEOUT_SECONDS:g})")
            p.add_argument("--interval", type=float, metavar="S",
                           help="seconds between polls (default: seed 001's, 2 for a scale, 3 for a restart)")
        return p

    command("list", "the clusters of a kind you may see")
    command("get", "one cluster, in the API's compatibility view")
    scale = command("scale", "set the number of workers, then wait until they are there", "default")
    scale.add_argument("replicas", type=int, help="the number of workers")
    scale.add_argument("--tier", help="the workers' hardware tier, by name or id")
    command("restart-head", "restart the head (Dask scheduler, Ray head, Spark master), then wait until it is "
                            "Ready again", "default")
    status = command("status", "whether a scale is complete, or with --since, a head restart", "optional")
    status.add_argument("--since", metavar="STARTED_AT", help="the restart's started_at (ISO-8601)")


class ProgressLine:
    """`<what>: <state> (<seconds>s)` on `stream`: in place on a terminal, else once per new state."""

    def __init__(self, what: str, stream: TextIO) -> None:
        self.what, self.stream, self.started, self.last = what, stream, time.monotonic(), None
        self.tty, self.open = stream.isatty(), False

    def __call__(self, state: str) -> None:
        line = f"{self.what}: {state} ({time.monotonic() - self.started:.0f}s)"
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
            self.open = True
        elif state != self.last:
            self.stream.write(line + "\n")
        self.last = state
        self.stream.flush()

    def end(self, text: str) -> None:
        self.stream.write(("\r\x1b[K" if self.tty else "") + f"{self.what}: {text}\n")
        self.stream.flush()
        self.open = False

    def interrupt(self) -> None:
        """End an in-place line before something else is written."""
        if self.open:
            self.stream.write("\n")
            self.open = False


def _print(body: Any) -> None:
    text = json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) if not isinstance(body, str) else body
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _scale_state(kind: str, name: str, obj: dict) -> dict:
    replicas, workers, _ = scale_counts(obj)
    return {"kind": kind, "name": name, "desired": replicas, "workers": workers, "complete": scaling_complete(obj)}


def _run(c: ScalerClient, args: argparse.Namespace, progress: ProgressLine) -> int:
    kind, cmd = args.kind, args.scaler_command
    if cmd == "list":
        _print(c.list(kind))
        return 0
    name = args.name or cluster_name_from_run_id(kind)
    wait = getattr(args, "wait", False)
    every = {"poll": args.interval} if getattr(args, "interval", None) else {}
    progress.what = f"{kind}/{name}"
    if cmd == "get":
        _print(c.get(kind, name))
    elif cmd == "scale":
        _print(c.scale(kind, name, args.replicas, args.tier))
        if wait:
            done = c.wait_scaled(kind, name, args.timeout, progress=progress, **every)
            progress.end("scaled: " + scale_progress(done))
    elif cmd == "restart-head":
        kick = c.restart_head(kind, name)
        _print(kick)
        if wait:
            done = c.wait_restarted(kind, name, kick["started_at"], args.timeout, progress=progress, **every)
            progress.end(f"head {done.get('pod')} restarted and Ready")
    elif args.since:  # status of a head restart
        _print(c.wait_restarted(kind, name, args.since, args.timeout, progress=progress, **every) if wait
               else c.restart_status(kind, name, args.since))
    else:  # status of a scale
        _print(_scale_state(kind, name, c.wait_scaled(kind, name, args.timeout, progress=progress, **every)
                            if wait else c.get(kind, name)))
    return 0


def main(args: argparse.Namespace) -> int:
    """Run one `scaler` command; returns the exit code (errors go to stderr, never a credential)."""
    client = ScalerClient.from_env()
    client.timeout = args.request_timeout
    if args.url:
        client.base_url = args.url.rstrip("/")
    if args.namespace:
        client.namespace = args.namespace
    progress = ProgressLine(args.kind, sys.stderr)
    try:
        with client:
            return _run(client, args, progress)
    except ClientError as e:
        progress.interrupt()
        sys.stderr.write(f"error: {e}\n")
        return EXIT_TIMEOUT if e.code == "timeout" else EXIT_CONFIG if e.code in CONFIG_CODES else EXIT_FAILED
