"""The startup-script server: each Verda instance gets its own script, deleted after use.

``POST /script`` with a `core.startup_scripts.ScriptRequest` (JSON) renders the
template for that instance, with fixed variables and with secret ones read
from Kubernetes Secrets in the server's namespace at that moment (a rotated
Secret is used at once), uploads the script to Verda under the request's
``script_name`` and answers its id as plain text, as seed 002's server does.
The provider passes the id to the instance it creates. ``GET /healthz`` is
liveness, ``GET /openapi.json`` the OpenAPI document (`script_openapi`).

Who may ask: a bearer token that a TokenReview accepts, of someone RBAC lets
``create`` ``startupscripts.verda.dask.charmtx.com`` in the server's namespace
(a SubjectAccessReview; deploy/verda grants it to the provider alone). Errors
are JSON ``{"error": <title>, "details": <what>}``, from the one table
`ERRORS`. No secret value is ever logged or answered: messages name
variables, Secrets and keys only.

After use: every ``reap_interval`` seconds the server lists Verda's scripts
and instances and deletes its scripts that instances have been handed, or
that no instance will use (`core.startup_scripts.scripts_to_delete`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from aiohttp import web

from .. import constants as c
from ..api.auth import Authenticator
from ..api.errors import AuthUnavailable, Forbidden, Unauthenticated
from ..core import startup_scripts as ss
from ..errors import KubeApiError, ScriptSecretUnavailable, StartupScriptError, VerdaError
from . import script_openapi

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
DEFAULT_REAP_INTERVAL_SECONDS = 30.0
ERRORS: dict[type[BaseException], tuple[int, str]] = {
    Unauthenticated: (401, "Unauthenticated"),
    Forbidden: (403, "Forbidden"),
    StartupScriptError: (400, "Invalid request"),
    AuthUnavailable: (503, "Authorization unavailable"),
    ScriptSecretUnavailable: (503, "Secret unavailable"),
    VerdaError: (502, "Verda refused the script"),
}


class ScriptIssuer:
    """Renders, uploads and later deletes the scripts; `cloud` is a `nodes.cloud.VerdaCloud` (blocking).

    The variables must have passed `core.startup_scripts.check_variables`."""

    def __init__(self, template: ss.Template, fixed: Mapping[str, str], secret_refs: Mapping[str, tuple[str, str]],
                 namespace: str, kube, cloud, *, grace: float = ss.DEFAULT_GRACE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.template, self.fixed, self.secret_refs = template, dict(fixed), dict(secret_refs)
        self.namespace, self.kube, self.cloud = namespace, kube, cloud
        self.grace, self._clock = grace, clock
        self._first_seen: dict[str, float] = {}

    async def secret_values(self) -> dict[str, str]:
        """The secret variables' values now, each Secret read once."""
        secrets: dict[str, Mapping[str, str]] = {}
        values = {}
        for variable, (name, key) in sorted(self.secret_refs.items()):
            if name not in secrets:
                try:
                    found = await self.kube.get("v1", "secrets", self.namespace, name)
                except KubeApiError as e:
                    raise ScriptSecretUnavailable(f"Secret {self.namespace}/{name}: {e}") from None
                if found is None:
                    raise ScriptSecretUnavailable(f"Secret {self.namespace}/{name} does not exist")
                secrets[name] = found.get("data") or {}
            if key not in secrets[name]:
                raise ScriptSecretUnavailable(f"Secret {self.namespace}/{name} has no key {key} (for {variable})")
            try:
                values[variable] = base64.b64decode(secrets[name][key], validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise ScriptSecretUnavailable(f"Secret {self.namespace}/{name} key {key} (for {variable}) "
                                              f"is not UTF-8 text") from None
        return values

    async def issue(self, request: ss.ScriptRequest) -> str:
        variables = {**self.fixed, **await self.secret_values(), **request.variables()}
        script = self.template.render(variables)
        script_id = await asyncio.to_thread(self.cloud.create_script, request.script_name, script)
        self._first_seen[script_id] = self._clock()
        log.info("uploaded startup script %s (%s) for %s in node group %s (%s, %s): the provider asked; "
                 "variables %s, from Secrets %s", request.script_name, script_id, request.hostname,
                 request.node_group, request.instance_type, request.location,
                 ", ".join(sorted(self.template.names)) or "none",
                 ", ".join(f"{v}={n}/{k}" for v, (n, k) in sorted(self.secret_refs.items())) or "none")
        return script_id

    async def reap(self) -> list[str]:
        """Delete the scripts that have been used or never will be; their ids."""
        scripts = await asyncio.to_thread(self.cloud.scripts)
        instances = await asyncio.to_thread(self.cloud.instances)
        now = self._clock()
        listed = {sid for sid, _ in scripts}
        self._first_seen = {sid: t for sid, t in self._first_seen.items() if sid in listed}
        uses = [ss.ScriptUse(sid, name, self._first_seen.setdefault(sid, now)) for sid, name in scripts]
        doomed = ss.scripts_to_delete(uses, [(i.startup_script_id, i.status) for i in instances], now, self.grace)
        if doomed:
            await asyncio.to_thread(self.cloud.delete_scripts, [sid for sid, _ in doomed])
            names = dict(scripts)
            for sid, reason in doomed:
                log.info("deleted startup script %s (%s): %s", names[sid], sid, reason)
                self._first_seen.pop(sid, None)
        return [sid for sid, _ in doomed]


def _reply(status: int, title: str, details: str) -> web.Response:
    return web.json_response({"error": title, "details": details}, status=status,
                             headers={"Cache-Control": "no-store"})


def build_app(issuer: ScriptIssuer, auth: Authenticator,
              reap_interval: float = DEFAULT_REAP_INTERVAL_SECONDS) -> web.Application:
    async def script(request: web.Request) -> web.StreamResponse:
        try:
            who = await auth.authenticate(request.headers)
            attributes = {"group": c.STARTUP_SCRIPTS_GROUP, "resource": c.STARTUP_SCRIPTS_RESOURCE,
                          "verb": "create", "namespace": issuer.namespace}
            if not await auth.reviews.access_review(who.username, who.groups, who.uid, who.extra, attributes):
                raise Forbidden(f"{who.username} may not create {c.STARTUP_SCRIPTS_RESOURCE}."
                                f"{c.STARTUP_SCRIPTS_GROUP} in namespace {issuer.namespace}")
            body = await request.content.read(MAX_BODY_BYTES + 1)
            if len(body) > MAX_BODY_BYTES:
                raise StartupScriptError("body", f"over {MAX_BODY_BYTES} bytes")
            script_id = await issuer.issue(ss.parse_request(body))
        except tuple(ERRORS) as e:
            status, title = next(ERRORS[k] for k in type(e).__mro__ if k in ERRORS)
            log.info("POST /script: %d %s: %s", status, title, e)
            response = _reply(status, title, str(e))
            if status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="startup-scripts"'
            return response
        return web.Response(text=script_id, content_type="text/plain", headers={"Cache-Control": "no-store"})

    async def healthz(_: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def openapi_json(_: web.Request) -> web.StreamResponse:
        return web.json_response(document)

    async def reaper(app: web.Application):
        async def loop() -> None:
            while True:
                try:
                    await issuer.reap()
                except VerdaError as e:
                    log.warning("could not delete used startup scripts (retrying in %gs): %s", reap_interval, e)
                await asyncio.sleep(reap_interval)

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    document = script_openapi.document()
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/script", script)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/openapi.json", openapi_json)
    app.cleanup_ctx.append(reaper)
    return app
