"""The HTTP edge: routes parse the request, call `ScalerService`, map errors.

Every answer is JSON (but /metrics, Prometheus text) with
`Cache-Control: no-store`. Errors are `{"error", "message", "details"?}`:
`ERRORS` below is the one table from error class to status and code (the
first class of an error's MRO found there wins); anything else is the
route's own 500 (seed 000: `list_failed` "Failed to list clusters",
`get_failed` "Failed to fetch cluster <name>", `scale_failed` "Failed to
scale cluster <name>", ...) with the error in `details`. The caller's
credential is redacted from every message and detail, whatever produced it.

Credentials are checked before anything else on every route but /healthz,
/openapi.json and /metrics: 401 comes before 400, 403 and 404.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from ..errors import (BackendUnavailable, ClusterNotFound, DaskOperatorError, HeadNotFound, InvalidKind, InvalidScale,
                      NotScalable, NotSupported, OperatorNotInstalled, ScaleDownPartial, ScaleDownUnsafe)
from . import openapi, views
from .auth import API_KEY_HEADERS, Authenticator, Identity
from .errors import AuthUnavailable, BadRequest, Forbidden, InvalidTier, Unauthenticated
from .service import ScalerService

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024

ERRORS: dict[type[BaseException], tuple[int, str]] = {
    Unauthenticated: (401, "unauthenticated"),
    Forbidden: (403, "unauthorized"),
    InvalidKind: (400, "invalid_kind"),
    BadRequest: (400, "bad_request"),
    InvalidScale: (400, "bad_request"),
    InvalidTier: (400, "invalid_hw_tier"),
    ClusterNotFound: (404, "not_found"),
    OperatorNotInstalled: (404, "operator_not_installed"),
    NotScalable: (409, "not_scalable"),
    ScaleDownUnsafe: (409, "scale_down_unsafe"),
    ScaleDownPartial: (409, "scale_down_partial"),
    HeadNotFound: (409, "head_not_found"),
    BackendUnavailable: (501, "backend_unavailable"),
    NotSupported: (501, "not_supported"),
    AuthUnavailable: (503, "auth_unavailable"),
}
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}

SERVICE = web.AppKey("service", ScalerService)
AUTH = web.AppKey("auth", Authenticator)
NAMESPACE = web.AppKey("namespace", str)
DOCUMENT = web.AppKey("document", dict)
# aiohttp >= 3.12 types request keys; older ones take a string
IDENTITY = web.RequestKey("identity", Identity) if hasattr(web, "RequestKey") else "identity"

REQUESTS = Counter("dask_operator_api_requests_total", "HTTP API requests answered", ("route", "method", "code"))
LATENCY = Histogram("dask_operator_api_request_duration_seconds", "HTTP API request time", ("route",),
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


@dataclass(frozen=True)
class Operation:
    failure: str | None  # the route's 500 code; None: public route, no credentials
    message: str = ""  # its 500 message, formatted with the path's {name}

    @property
    def public(self) -> bool:
        return self.failure is None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def operation(failure: str | None, message: str = "") -> Callable[[Handler], Handler]:
    def mark(handler: Handler) -> Handler:
        handler.operation = Operation(failure, message)  # type: ignore[attr-defined]
        return handler
    return mark


def reply(body: object, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def _secrets(request: web.Request) -> list[str]:
    values = [request.headers.get(h, "") for h in ("Authorization", *API_KEY_HEADERS)]
    out = []
    for v in values:
        v = v.strip()
        out += [v, v.partition(" ")[2].strip()] if v.lower().startswith("bearer") else [v]
    return sorted((s for s in out if len(s) >= 4), key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for s in secrets:
        text = text.replace(s, "[redacted]")
    return text


def error_reply(request: web.Request, e: BaseException, op: Operation | None) -> web.Response:
    """The error body of `e` on this route (see `ERRORS`)."""
    secrets = _secrets(request)
    found = next((ERRORS[cls] for cls in type(e).__mro__ if cls in ERRORS), None)
    if found is not None:
        status, code = found
        body = {"error": code, "message": redact(str(e), secrets)}
        details = getattr(e, "details", None)
        log.info("%s %s: %d %s: %s", request.method, request.path, status, code, body["message"])
    else:
        status, code = 500, (op.failure if op and op.failure else "internal_error")
        name = request.match_info.get("name", "")
        message = op.message.format(name=name) if op and op.message else "Internal error"
        body = {"error": code, "message": message}
        text = str(e) or type(e).__name__
        details = f"{text}: {e.details}" if getattr(e, "details", None) else text
        trace = "" if isinstance(e, DaskOperatorError) else "\n" + "".join(traceback.format_exception(e))
        log.warning("%s %s: 500 %s: %s%s", request.method, request.path, code, redact(details, secrets),
                    redact(trace, secrets))
    if details:
        body["details"] = redact(str(details), secrets)
    response = reply(body, status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="ddl-cluster-scaler"'
    return response


@web.middleware
async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.monotonic()
    op: Operation | None = getattr(request.match_info.handler, "operation", None)
    try:
        if op is not None and not op.public:
            request[IDENTITY] = await request.app[AUTH].authenticate(request.headers)
        response = await handler(request)
    except web.HTTPException as e:  # aiohttp's own: no route, wrong method, body too large
        message = f"no route {request.method} {request.path}" if e.status in (404, 405) else e.reason
        response = reply({"error": HTTP_CODES.get(e.status, "http_error"), "message": message}, e.status)
        if e.status == 405:
            response.headers["Allow"] = e.headers.get("Allow", "")
    except Exception as e:  # noqa: BLE001 -- every error becomes a JSON body
        response = error_reply(request, e, op)
    response.headers["Cache-Control"] = "no-store"
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    REQUESTS.labels(route, request.method, str(response.status)).inc()
    LATENCY.labels(route).observe(time.monotonic() - started)
    return response


# ---------------------------------------------------------------------- request parts


def _who(request: web.Request) -> Identity:
    return request[IDENTITY]


def _namespace(request: web.Request) -> str:
    return request.query.get("namespace") or request.app[NAMESPACE]


def _raw(request: web.Request) -> bool:
    return views.parse_flag(request.query.get("raw"), "raw")


async def _body(request: web.Request) -> dict:
    try:
        text = (await request.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request body must be a JSON object (UTF-8)") from None
    if not text.strip():
        return {}
    try:
        body = json.loads(text)
    except ValueError:
        raise BadRequest("request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


# ---------------------------------------------------------------------- routes


@operation(None)
async def healthz(request: web.Request) -> web.Response:
    return reply({"status": "ok"})


@operation(None)
async def openapi_json(request: web.Request) -> web.Response:
    return reply(request.app[DOCUMENT])


@operation(None)
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@operation("list_failed", "Failed to list clusters")
async def list_clusters(request: web.Request) -> web.Response:
    s, kind = request.app[SERVICE], request.match_info["kind"]
    return reply(await s.list(_who(request), kind, _namespace(request), _raw(request)))


@operation("get_failed", "Failed to fetch cluster {name}")
async def get_cluster(request: web.Request) -> web.Response:
    s, m = request.app[SERVICE], request.match_info
    return reply(await s.get(_who(request), m["kind"], _namespace(request), m["name"], _raw(request)))


@operation("scale_failed", "Failed to scale cluster {name}")
async def scale_cluster(request: web.Request) -> web.Response:
    s, m = request.app[SERVICE], request.match_info
    body = await _body(request)
    return reply(await s.scale(_who(request), m["kind"], _namespace(request), m["name"], body, _raw(request)))


@operation("scale_failed", "Failed to scale cluster")
async def scale_without_name(request: web.Request) -> web.Response:
    request.app[SERVICE].kinds.backend(request.match_info["kind"])
    raise BadRequest("cluster_name is required")


@operation("restart_failed", "Failed to restart the head of cluster {name}")
async def restart_head(request: web.Request) -> web.Response:
    s, m = request.app[SERVICE], request.match_info
    started_at = request.query.get("started_at")
    return reply(await s.restart_head(_who(request), m["kind"], _namespace(request), m["name"], started_at))


@operation("status_failed", "Failed to read the head of cluster {name}")
async def restart_head_status(request: web.Request) -> web.Response:
    s, m = request.app[SERVICE], request.match_info
    started_at = request.query.get("started_at")
    return reply(await s.restart_head_status(_who(request), m["kind"], _namespace(request), m["name"],
                                             started_at))


@operation("head_hw_tier_failed", "Failed to change the head hardware tier of cluster {name}")
async def head_hw_tier(request: web.Request) -> web.Response:
    s, m = request.app[SERVICE], request.match_info
    body = await _body(request)
    return reply(await s.head_hw_tier(_who(request), m["kind"], _namespace(request), m["name"], body,
                                      _raw(request)))


ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/healthz", healthz),
    ("GET", "/openapi.json", openapi_json),
    ("GET", "/metrics", metrics),
    ("GET", "/ddl_cluster_scaler_api/list/{kind}", list_clusters),
    ("GET", "/ddl_cluster_scaler/list/{kind}", list_clusters),
    ("GET", "/cluster/{kind}/{name}", get_cluster),
    ("GET", "/ddl_cluster_scaler/cluster/{kind}/{name}", get_cluster),
    ("POST", "/cluster/scale/{kind}/{name}", scale_cluster),
    ("PATCH", "/ddl_cluster_scaler/scale/{kind}/{name}", scale_cluster),
    ("POST", "/cluster/scale/{kind}", scale_without_name),
    ("POST", "/cluster/scale/{kind}/", scale_without_name),
    ("PATCH", "/ddl_cluster_scaler/scale/{kind}", scale_without_name),
    ("PATCH", "/ddl_cluster_scaler/scale/{kind}/", scale_without_name),
    ("PATCH", "/ddl_cluster_scaler/restart_head/{kind}/{name}", restart_head),
    ("GET", "/ddl_cluster_scaler/restart_head_status/{kind}/{name}", restart_head_status),
    ("PATCH", "/ddl_cluster_scaler/head-hw-tier/{kind}/{name}", head_hw_tier),
)


def build_app(service: ScalerService, auth: Authenticator) -> web.Application:
    """The application; `service.settings.namespace` is the default namespace."""
    app = web.Application(middlewares=[edge], client_max_size=MAX_BODY_BYTES)
    app[SERVICE] = service
    app[AUTH] = auth
    app[NAMESPACE] = service.settings.namespace
    app[DOCUMENT] = openapi.document()
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    return app
