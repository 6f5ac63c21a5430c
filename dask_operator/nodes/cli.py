"""`dask-operator nodes serve`: the cluster-autoscaler externalgrpc provider for Verda GPU nodes.

The CLI adds the flags with `add_arguments` and calls `main(args)`. Bad
configuration (a ``--nodes`` spec, the cluster config, credentials, TLS files)
fails at start with exit code 2 and a message naming the field.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1:8086"
STOP_GRACE_SECONDS = 10.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["serve"], help="serve: run the provider until SIGTERM/Ctrl-C")
    p.add_argument("--nodes", action="append", default=[], required=True,
                   metavar="MIN:MAX:INSTANCE_TYPE:LOCATION:NAME",
                   help="a node group, e.g. 0:3:1A100.22V:FIN-01:gpu-nodes (repeatable); its settings are "
                        "node_configs.NAME of the cluster config ($DATACRUNCH_CLUSTER_CONFIG_JSON, "
                        "$DATACRUNCH_CLUSTER_CONFIG (base64) or $DATACRUNCH_CLUSTER_CONFIG_FILE; VERDA_* too)")
    p.add_argument("--address", default=DEFAULT_ADDRESS,
                   help=f"gRPC listen address host:port (default {DEFAULT_ADDRESS})")
    p.add_argument("--cert", type=Path, help="server certificate (PEM); with --key and --ca: mutual TLS")
    p.add_argument("--key", type=Path, help="server private key (PEM)")
    p.add_argument("--ca", type=Path, help="CA certificate that signed the autoscaler's client certificate")
    p.add_argument("--api-url", default=os.environ.get("VERDA_API_URL") or None,
                   help="Verda API base URL (default: $VERDA_API_URL, else https://api.verda.com/v1)")
    p.add_argument("--availability-ttl", type=float, default=None,
                   help="seconds an availability answer is reused (default 30)")


def build(args: argparse.Namespace, env=os.environ):
    """(Provider, TlsFiles | None) from the flags and the environment; raises NodeGroupConfigError."""
    from ..core.nodegroups import build_node_groups
    from ..errors import NodeGroupConfigError
    from . import cloud, config, script_source
    from .provider import Provider
    from .server import TlsFiles

    groups = build_node_groups(args.nodes, config.cluster_config(env))
    client_id, client_secret = config.credentials(env)
    tls_flags = {"--cert": args.cert, "--key": args.key, "--ca": args.ca}
    tls = None
    if any(tls_flags.values()):
        if missing := [flag for flag, path in tls_flags.items() if path is None]:
            raise NodeGroupConfigError(", ".join(missing), "mutual TLS needs --cert, --key and --ca together")
        if unreadable := [f"{flag}={path}" for flag, path in tls_flags.items() if not path.is_file()]:
            raise NodeGroupConfigError(", ".join(unreadable), "no such file")
        tls = TlsFiles(args.cert, args.key, args.ca)
    options = {"availability_ttl": args.availability_ttl} if args.availability_ttl is not None else {}
    verda = cloud.VerdaCloud(client_id, client_secret, args.api_url or cloud.DEFAULT_API_URL, **options)
    return Provider(groups, verda, scripts=script_source.from_env(env)), tls


def main(args: argparse.Namespace) -> int:
    from ..errors import NodeGroupConfigError
    from .server import start

    try:
        provider, tls = build(args)
    except NodeGroupConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:  # `pip install .` without the verda extra
        print(f"error: the Verda SDK is not installed ({e}): pip install 'dask-operator[verda]'", file=sys.stderr)
        return 2
    try:
        server, port = start(provider, args.address, tls)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, group in provider.groups.items():
        log.info("node group %s: %d..%d x %s in %s (%s)", name, group.min_size, group.max_size,
                 group.instance_type, group.location, group.config.instance_option)
    log.info("externalgrpc provider for Verda (%s) serving on %s (port %d), %s; startup scripts: %s",
             provider.cloud.api_url, args.address, port, "mutual TLS" if tls else "no TLS",
             provider.scripts.url if provider.scripts else "each group's own, if any")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("stopping: finishing calls in flight (up to %gs)", STOP_GRACE_SECONDS)
    server.stop(STOP_GRACE_SECONDS).wait()
    return 0


def standalone(argv: list[str] | None = None) -> int:
    """``python -m dask_operator.nodes.cli serve --nodes ...``, before the CLI wires it in."""
    parser = argparse.ArgumentParser(prog="dask-operator nodes", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return main(args)


if __name__ == "__main__":
    sys.exit(standalone())
