"""`dask-operator autoscaling-api`: serve the autoscaling API (seed 004).

`add_arguments(parser)` adds the flags, `main(args)` serves until stopped.
Credentials come from kr8s as for the operator (in a pod: its
ServiceAccount; on a host: KUBECONFIG). The keys Secret given as a bare NAME is
read from the server's own namespace (`POD_NAMESPACE`, else kr8s's).
"""

from __future__ import annotations

import argparse
import logging
import os

from ..api.main import serve

log = logging.getLogger(__name__)
ACCESS_LOG = "dask_operator.autoscaling_api.access"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default="0.0.0.0", help="bind address (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080, seed 004's)")
    p.add_argument("--admin-group", action="append", default=[],
                   help="members of this group may do anything (repeatable); everyone else may do to "
                        "autoscalers what RBAC lets them do to horizontalpodautoscalers (SubjectAccessReview)")
    p.add_argument("--audience", action="append", default=[],
                   help="TokenReview audiences a token must carry (repeatable; default: the API server's)")
    p.add_argument("--keys-secret", metavar="[NAMESPACE/]NAME",
                   help="the API keys Secret (SHA-256 of each key -> user, groups; see "
                        "dask_operator/api/auth.py); none: bearer tokens only")
    p.add_argument("--auth-cache-ttl", type=float, default=10.0,
                   help="seconds a TokenReview or SubjectAccessReview answer is reused (default 10)")
    p.add_argument("--auth-cache-size", type=int, default=1024, help="answers kept at most (default 1024)")
    p.add_argument("--config-ttl", type=float, default=30.0, help="seconds the keys Secret is reused (default 30)")


async def build(args: argparse.Namespace):
    """The aiohttp application, wired to the cluster kr8s finds."""
    import kr8s.asyncio

    from ..api.auth import Authenticator, KeyStore
    from ..api.reviews import KubeReviews
    from .access import HpaAccess
    from .app import build_app
    from .kube import KubeClient
    from .service import AutoscalingService

    api = await kr8s.asyncio.api()
    own = os.environ.get("POD_NAMESPACE") or api.namespace or "default"
    secret_ns, _, secret = (args.keys_secret or "").rpartition("/")
    kube = KubeClient(api)
    keys = KeyStore(kube, secret_ns or own, secret or None, ttl=args.config_ttl)
    auth = Authenticator(KubeReviews(api), keys, admin_groups=args.admin_group, audiences=args.audience,
                         ttl=args.auth_cache_ttl, size=args.auth_cache_size)
    access = HpaAccess(auth, ttl=args.auth_cache_ttl, size=args.auth_cache_size)
    app = build_app(AutoscalingService(kube, access), auth)
    log.info("autoscaling API on %s:%d: admin groups %s, API keys %s", args.address, args.port,
             ", ".join(args.admin_group) or "none", f"{secret_ns or own}/{secret}" if secret else "none")
    return app


def main(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; `args` from a parser `add_arguments` filled."""
    return serve(build(args), args, ACCESS_LOG)
