"""`dask-operator api`: serve the cluster-scaler HTTP API.

The CLI adds the flags with `add_arguments` and calls `run(args)`; `serve`
and `quiet` are shared with the autoscaling API. Credentials come from kr8s as for the operator (in a pod:
its ServiceAccount; on a host: KUBECONFIG). A ConfigMap or Secret given as a
bare NAME is read from the server's own namespace (`POD_NAMESPACE`, else
kr8s's namespace).
"""

from __future__ import annotations

import argparse
import logging
import os
import warnings

from ..backends.registry import DEFAULTS, KINDS
from .service import DEFAULT_NAMESPACE, DEFAULT_OWNER_LABEL

log = logging.getLogger(__name__)
ACCESS_LOG = "dask_operator.api.access"


def _backend_choice(text: str) -> tuple[str, str]:
    kind, sep, name = text.partition("=")
    if not sep or kind not in KINDS or not name:
        raise argparse.ArgumentTypeError(f"expected KIND=BACKEND with KIND one of {', '.join(KINDS)}")
    return kind, name


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default="0.0.0.0", help="bind address (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--namespace", default=os.environ.get("COMPUTE_NAMESPACE") or DEFAULT_NAMESPACE,
                   help="the compute namespace requests default to (default: $COMPUTE_NAMESPACE or "
                        f"{DEFAULT_NAMESPACE}); a request's ?namespace= overrides it")
    p.add_argument("--owner-label", default=DEFAULT_OWNER_LABEL,
                   help=f"the label holding a cluster's owner user id (default {DEFAULT_OWNER_LABEL})")
    p.add_argument("--admin-group", action="append", default=[],
                   help="members of this group are admins (repeatable); admins are also whoever may "
                        "update <resource>/scale cluster-wide (SubjectAccessReview)")
    p.add_argument("--audience", action="append", default=[],
                   help="TokenReview audiences a token must carry (repeatable; default: the API server's)")
    p.add_argument("--tiers-configmap", metavar="[NAMESPACE/]NAME",
                   help="the hardware tiers ConfigMap (see dask_operator/api/tiers.py); none: no tiers")
    p.add_argument("--keys-secret", metavar="[NAMESPACE/]NAME",
                   help="the API keys Secret (SHA-256 of each key -> user, groups); none: no API keys")
    p.add_argument("--backend", action="append", default=[], type=_backend_choice, metavar="KIND=BACKEND",
                   help="the backend of a kind (repeatable); defaults: "
                        + ", ".join(f"{k}={v}" for k, v in DEFAULTS.items()))
    p.add_argument("--max-replicas", type=_positive, default=None,
                   help="cap every scale at this many workers (default: only each backend's maximum)")
    p.add_argument("--auth-cache-ttl", type=float, default=10.0,
                   help="seconds a TokenReview or SubjectAccessReview answer is reused (default 10)")
    p.add_argument("--auth-cache-size", type=int, default=1024, help="answers kept at most (default 1024)")
    p.add_argument("--config-ttl", type=float, default=30.0,
                   help="seconds the tiers ConfigMap and keys Secret are reused (default 30)")


def _where(ref: str | None, own: str) -> tuple[str | None, str | None]:
    if not ref:
        return None, None
    namespace, _, name = ref.rpartition("/")
    return namespace or own, name


async def build(args: argparse.Namespace):
    """The aiohttp application, wired to the cluster kr8s finds."""
    from ..kube import Kube
    from .app import build_app
    from .auth import Authenticator, KeyStore
    from .reviews import KubeReviews
    from ..backends.registry import Registry
    from .service import ScalerService, Settings
    from .tiers import TierSource

    kube = await Kube.connect()
    own = os.environ.get("POD_NAMESPACE") or kube.api.namespace or "default"
    kinds = Registry.build(kube, dict(args.backend))
    for kind, name in sorted(kinds.missing.items()):
        log.warning("%s: backend %r is not available in this build; requests for %s answer 501", kind, name, kind)
    keys = KeyStore(kube, *_where(args.keys_secret, own), ttl=args.config_ttl)
    auth = Authenticator(KubeReviews(kube.api), keys, admin_groups=args.admin_group, audiences=args.audience,
                         ttl=args.auth_cache_ttl, size=args.auth_cache_size)
    tiers = TierSource(kube, *_where(args.tiers_configmap, own), ttl=args.config_ttl)
    settings = Settings(namespace=args.namespace, owner_label=args.owner_label, max_replicas=args.max_replicas)
    app = build_app(ScalerService(kinds, auth, tiers, settings), auth)

    async def close(_app) -> None:
        await kinds.aclose()
        await kube.aclose()

    app.on_cleanup.append(close)
    log.info("cluster-scaler API: compute namespace %s, kinds %s, owner label %s, admin groups %s",
             args.namespace, ", ".join(sorted(kinds.backends)) or "none", args.owner_label,
             ", ".join(args.admin_group) or "none")
    return app


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; `args` from a parser `add_arguments` filled."""
    return serve(build(args), args, ACCESS_LOG)


def serve(app, args: argparse.Namespace, access_log: str) -> int:
    """Run an aiohttp app (or the coroutine that builds it) on `args.address`:`args.port`,
    with the logging both HTTP APIs want (`quiet`)."""
    from aiohttp import web

    warnings.filterwarnings("ignore", message="Kubernetes version .* is not supported")
    quiet(getattr(args, "verbose", False), access_log)
    web.run_app(app, host=args.address, port=args.port, print=None, access_log=logging.getLogger(access_log))
    return 0


def quiet(verbose: bool, access_log: str = ACCESS_LOG) -> None:
    """Keep HTTP libraries' request lines out of the log; their debug output (hpack
    logs header blocks) would carry the server's own credentials."""
    for name in ("httpx", "httpcore", "hpack", "h2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if not verbose:
        logging.getLogger(access_log).setLevel(logging.WARNING)
