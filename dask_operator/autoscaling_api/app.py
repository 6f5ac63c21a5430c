"""The HTTP edge of the autoscaling API: parse, call `AutoscalingService`, map errors.

Every answer is JSON (but /metrics, Prometheus text) with
`Cache-Control: no-store`. Errors are seed 004's `{"error": <title>,
"details": <what>}`: `ERRORS` is the one table from error class to status and
title (the first class of an error's MRO found there wins); anything else is
the route's own 500 ("Failed to create autoscaler", ...) with the error in
`details`. The caller's credential is redacted from every detail and log line.

Credentials are checked first on every route but /healthz, /openapi.json and
/metrics: 401 comes before 400, 403 and 404.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from ..api.auth import API_KEY_HEADERS, Authenticator, Identity
from ..api.errors import AuthUnavailable, Forbidden, Unauthenticated
from ..errors import DaskOperatorError
from . import openapi
from .errors import AutoscalerExists, AutoscalerNotFound, ValidationFailed, WorkloadNotFound
from .service import AutoscalingService

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
BASE = "/api/v1/autoscaling"

ERRORS: dict[type[BaseException], tuple[int, str]] = {
    Unauthenticated: (401, "Unauthenticated"),
    Forbidden: (403, "Forbidden"),
    ValidationFailed: (400, "Validation failed"),
    AutoscalerNotFound: (404, "Autoscaler not found"),
    WorkloadNotFound: (404, "Workload not found"),
    AutoscalerExists: (409, "Autoscaler already exists"),
    AuthUnavailable: (503, "Authorization unavailable"),
}
HTTP_TITLES = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}

SERVICE = web.AppKey("autoscaling_service", AutoscalingService)
AUTH = web.AppKey("autoscaling_auth", Authenticator)
DOCUMENT = web.AppKey("autoscaling_document", dict)
REGISTRY = web.AppKey("autoscaling_registry", CollectorRegistry)
INSTRUMENTS = web.AppKey("autoscaling_instruments", tuple)
IDENTITY = web.RequestKey("identity", Identity) if hasattr(web, "RequestKey") else "identity"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def failure(title: str | None) -> Callable[[Handler], Handler]:
    """The route's 500 title; None: a public route, no credentials."""
    def mark(handler: Handler) -> Handler:
        handler.failure = title  # type: ignore[attr-defined]
        handler.public = title is None  # type: ignore[attr-defined]
        return handler
    return mark


def reply(body: object, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def secrets(headers) -> list[str]:
    out = []
    for h in ("Authorization", *API_KEY_HEADERS):
        v = headers.get(h, "").strip()
        out += [v, v.partition(" ")[2].strip()] if v.lower().startswith("bearer") else [v]
    return sorted((s for s in out if len(s) >= 4), key=len, reverse=True)


def redact(text: str, hidden: list[str]) -> str:
    for s in hidden:
        text = text.replace(s, "[redacted]")
    return text


def error_reply(request: web.Request, e: BaseException, title: str | None) -> web.Response:
    hidden = secrets(request.headers)
    found = next((ERRORS[cls] for cls in type(e).__mro__ if cls in ERRORS), None)
    details = redact(str(e) or type(e).__name__, hidden)
    if found is not None:
        status, title = found
        log.info("%s %s: %d %s: %s", request.method, request.path, status, title, details)
    else:
        status, title = 500, title or "Internal error"
        trace = "" if isinstance(e, DaskOperatorError) else "\n" + "".join(traceback.format_exception(e))
        log.warning("%s %s: 500 %s: %s%s", request.method, request.path, title, details, redact(trace, hidden))
    response = reply({"error": title, "details": details}, status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="dask-autoscaling-api"'
    return response


def _metrics(registry: CollectorRegistry) -> tuple[Counter, Histogram]:
    return (Counter("dask_operator_autoscaling_api_requests_total", "Autoscaling API requests answered",
                    ("route", "method", "code"), registry=registry),
            Histogram("dask_operator_autoscaling_api_request_duration_seconds", "Autoscaling API request time",
                      ("route",), registry=registry,
                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)))


@web.middleware
async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.monotonic()
    route_handler = request.match_info.handler
    title = getattr(route_handler, "failure", None)
    try:
        if getattr(route_handler, "public", True) is False:
            request[IDENTITY] = await request.app[AUTH].authenticate(request.headers)
        response = await handler(request)
    except web.HTTPException as e:  # aiohttp's own: no route, wrong method, body too large
        what = f"no route {request.method} {request.path}" if e.status in (404, 405) else e.reason
        response = reply({"error": HTTP_TITLES.get(e.status, "HTTP error"), "details": what}, e.status)
        if e.status == 405:
            response.headers["Allow"] = e.headers.get("Allow", "")
    except Exception as e:  # noqa: BLE001 -- every error becomes a JSON body
        response = error_reply(request, e, title)
    response.headers["Cache-Control"] = "no-store"
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    requests, latency = request.app[INSTRUMENTS]
    requests.labels(route, request.method, str(response.status)).inc()
    latency.labels(route).observe(time.monotonic() - started)
    return response


# ---------------------------------------------------------------------- request parts


def _who(request: web.Request) -> Identity:
    return request[IDENTITY]


def _namespace(request: web.Request) -> str | None:
    return request.query.get("namespace") or None


async def _body(request: web.Request) -> object:
    try:
        return json.loads((await request.read()).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValidationFailed("request body must be a JSON object") from None


# ---------------------------------------------------------------------- routes


@failure(None)
async def healthz(request: web.Request) -> web.Response:
    return reply({"status": "ok"})


@failure(None)
async def openapi_json(request: web.Request) -> web.Response:
    return reply(request.app[DOCUMENT])


@failure(None)
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(request.app[REGISTRY]), headers={"Content-Type": CONTENT_TYPE_LATEST})


@failure("Failed to create autoscaler")
async def create(request: web.Request) -> web.Response:
    body = await _body(request)
    return reply(await request.app[SERVICE].create(_who(request), body), 201)


@failure("Failed to list autoscalers")
async def list_autoscalers(request: web.Request) -> web.Response:
    return reply(await request.app[SERVICE].list(_who(request), _namespace(request)))


@failure("Failed to get autoscaling metrics")
async def autoscaling_metrics(request: web.Request) -> web.Response:
    return reply(await request.app[SERVICE].metrics(_who(request), _namespace(request)))


@failure("Failed to get autoscaler")
async def get(request: web.Request) -> web.Response:
    return reply(await request.app[SERVICE].get(_who(request), request.match_info["id"]))


@failure("Failed to delete autoscaler")
async def delete(request: web.Request) -> web.Response:
    return reply(await request.app[SERVICE].delete(_who(request), request.match_info["id"]))


ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/healthz", healthz),
    ("GET", "/openapi.json", openapi_json),
    ("GET", "/metrics", metrics),
    ("POST", BASE, create),
    ("GET", BASE, list_autoscalers),
    ("GET", f"{BASE}/metrics", autoscaling_metrics),  # before {id}: "metrics" is never an id (no dot)
    ("GET", BASE + "/{id}", get),
    ("DELETE", BASE + "/{id}", delete),
)


def build_app(service: AutoscalingService, auth: Authenticator) -> web.Application:
    app = web.Application(middlewares=[edge], client_max_size=MAX_BODY_BYTES)
    app[SERVICE], app[AUTH], app[DOCUMENT] = service, auth, openapi.document()
    app[REGISTRY] = registry = CollectorRegistry()
    app[INSTRUMENTS] = _metrics(registry)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    return app
