"""`dask-operator startup-scripts`: serve each Verda instance its own startup script (seed 002's server).

The template is ``--template-file`` or ``$STARTUP_SCRIPT_TEMPLATE`` (seed
002's variable). Verda credentials as for the provider
(``DATACRUNCH_CLIENT_ID`` / ``DATACRUNCH_CLIENT_SECRET``, or ``VERDA_*``).
Kubernetes credentials from kr8s (in a pod: its ServiceAccount); Secrets are
read from the server's own namespace (``POD_NAMESPACE``, else kr8s's). Bad
configuration -- the template, a variable, a Secret or key that cannot be read
-- fails at start with exit code 2 and a message naming it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .script_server import DEFAULT_REAP_INTERVAL_SECONDS

log = logging.getLogger(__name__)
ACCESS_LOG = "dask_operator.nodes.script_server.access"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..core.startup_scripts import DEFAULT_GRACE_SECONDS, PER_INSTANCE

    p.add_argument("--address", default="0.0.0.0", help="bind address (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080, seed 002's)")
    p.add_argument("--template-file", type=Path,
                   help="the script template (default: $STARTUP_SCRIPT_TEMPLATE); {{ .NAME }} substitutions, "
                        f"per instance: {', '.join(PER_INSTANCE)}")
    p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="a fixed variable (repeatable)")
    p.add_argument("--secret", action="append", default=[], metavar="NAME=SECRET/KEY",
                   help="a variable read from key KEY of Secret SECRET at each request (repeatable)")
    p.add_argument("--audience", action="append", default=[],
                   help="TokenReview audiences a token must carry (repeatable; default: the API server's)")
    p.add_argument("--api-url", default=os.environ.get("VERDA_API_URL") or None,
                   help="Verda API base URL (default: $VERDA_API_URL, else https://api.verda.com/v1)")
    p.add_argument("--reap-interval", type=float, default=DEFAULT_REAP_INTERVAL_SECONDS,
                   help=f"seconds between deletions of used scripts (default {DEFAULT_REAP_INTERVAL_SECONDS:g})")
    p.add_argument("--grace", type=float, default=DEFAULT_GRACE_SECONDS,
                   help="seconds a script no instance refers to is kept before it is deleted "
                        f"(default {DEFAULT_GRACE_SECONDS:g})")


def _template(args: argparse.Namespace, env) -> str:
    from ..errors import StartupScriptError

    if args.template_file is not None:
        try:
            return args.template_file.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise StartupScriptError("--template-file", f"cannot read {args.template_file}: {e}") from None
    if not env.get("STARTUP_SCRIPT_TEMPLATE"):
        raise StartupScriptError("--template-file", "not given, and STARTUP_SCRIPT_TEMPLATE is not set")
    return env["STARTUP_SCRIPT_TEMPLATE"]


async def build(args: argparse.Namespace, env=os.environ):
    """The aiohttp application; raises StartupScriptError, NodeGroupConfigError or ScriptSecretUnavailable."""
    import kr8s.asyncio

    from ..api.auth import Authenticator
    from ..api.reviews import KubeReviews
    from ..autoscaling_api.kube import KubeClient
    from ..core import startup_scripts as ss
    from . import cloud, config
    from .script_server import ScriptIssuer, build_app

    template = ss.parse_template(_template(args, env))
    fixed, refs = ss.parse_assignments(args.var, "--var"), ss.parse_secret_refs(args.secret)
    ss.check_variables(template, fixed, refs)
    client_id, client_secret = config.credentials(env)
    api = await kr8s.asyncio.api()
    namespace = env.get("POD_NAMESPACE") or api.namespace or "default"
    verda = cloud.VerdaCloud(client_id, client_secret, args.api_url or cloud.DEFAULT_API_URL)
    issuer = ScriptIssuer(template, fixed, refs, namespace, KubeClient(api), verda, grace=args.grace)
    await issuer.secret_values()  # every Secret and key readable now, or no start
    auth = Authenticator(KubeReviews(api), audiences=args.audience)
    log.info("startup-script server for Verda (%s) in namespace %s: variables %s; %d fixed, from Secrets %s; "
             "used scripts deleted every %gs", verda.api_url, namespace, ", ".join(sorted(template.names)) or "none",
             len(fixed), ", ".join(f"{v}={n}/{k}" for v, (n, k) in sorted(refs.items())) or "none",
             args.reap_interval)
    return build_app(issuer, auth, args.reap_interval)


def main(args: argparse.Namespace) -> int:
    from ..api.main import serve
    from ..errors import NodeGroupConfigError, ScriptSecretUnavailable, StartupScriptError

    try:
        return serve(build(args), args, ACCESS_LOG)
    except (StartupScriptError, NodeGroupConfigError, ScriptSecretUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:  # `pip install .` without the verda extra
        print(f"error: the Verda SDK is not installed ({e}): pip install 'dask-operator[verda]'", file=sys.stderr)
        return 2
