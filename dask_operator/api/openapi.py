"""The OpenAPI 3.1 document of every route, served at /openapi.json.

Kept true by the tests: every route the app serves is documented here,
every response the unit tests see is validated against its schema, and
schemathesis (tests/e2e/test_api_schema.py) sends generated requests to a
real server and checks both ways: what the document allows is accepted (or
refused only for who is asking or what exists), what it forbids is refused.
So parameters carry the server's own rules (`views`: DNS-1123 names, flags)
and request bodies say what is required.
"""

from __future__ import annotations

import copy

from ..backends.registry import KINDS
from ..openapi_parts import METRICS, json_body, operation, ref
from ..core.k8s_names import DNS_LABEL, DNS_SUBDOMAIN
from .views import FLAG

VERSION = "0.1.0"


_ref, _json = ref, json_body


def _obj(required: list[str], optional: dict | None = None, **props: dict) -> dict:
    return {"type": "object", "required": required, "properties": {**props, **(optional or {})},
            "additionalProperties": False}


STR, BOOL, INT = {"type": "string"}, {"type": "boolean"}, {"type": "integer", "minimum": 0}
NULLABLE_STR = {"type": ["string", "null"]}
TIER_REF = _obj(["id", "name"], id=STR, name=STR)

SCHEMAS = {
    "Error": _obj(["error", "message"], {"details": STR}, error=STR, message=STR),
    "Health": _obj(["status"], status={"const": "ok"}),
    "KubeObject": {"type": "object", "required": ["apiVersion", "kind", "metadata"],
                   "properties": {"apiVersion": STR, "kind": STR, "metadata": {"type": "object"},
                                  "spec": {"type": "object"}, "status": {"type": "object"}},
                   "description": "The cluster's resource; without ?raw=true, in the compatibility view "
                                  "(spec.worker.replicas and status.nodes filled in where missing, "
                                  "status.scaler the uniform status)."},
    "ClusterList": _obj(["kind", "count", "clusters"], kind={"enum": list(KINDS)}, count=INT,
                        clusters={"type": "array", "items": _ref("KubeObject")}),
    "ScaleRequest": {"type": "object", "required": ["replicas"], "properties": {
        "replicas": INT, "worker_hw_tier_name": NULLABLE_STR, "worker_hw_tier": NULLABLE_STR,
        "worker_hw_tier_id": NULLABLE_STR,
        "worker_group": {"type": ["string", "null"], "minLength": 1,
                         "description": "the worker group, for a RayCluster with several"}}},
    "Scaled": _obj(["kind", "name", "replicas", "requested", "capped", "object"],
                   {"max_replicas": INT, "worker_hw_tier": TIER_REF},
                   kind={"enum": list(KINDS)}, name=STR, replicas=INT, requested=INT, capped=BOOL,
                   object=_ref("KubeObject")),
    "HeadTierRequest": {"type": "object", "properties": {
        "head_hw_tier_name": NULLABLE_STR, "head_hw_tier": NULLABLE_STR, "head_hw_tier_id": NULLABLE_STR},
        "description": "At least one of the three names a tier (empty or null: absent)",
        "anyOf": [{"required": [f], "properties": {f: {"type": "string", "minLength": 1}}}
                  for f in ("head_hw_tier_name", "head_hw_tier", "head_hw_tier_id")]},
    "HeadTierChanged": _obj(["kind", "name", "head_hw_tier", "restarts", "started_at", "object"],
                            kind={"enum": list(KINDS)}, name=STR, head_hw_tier=TIER_REF, restarts=BOOL,
                            started_at=STR, object=_ref("KubeObject")),
    "Restarted": _obj(["ok", "kind", "name", "namespace", "started_at", "pod"], ok={"const": True},
                      kind={"enum": list(KINDS)}, name=STR, namespace=STR,
                      started_at={"type": "string", "format": "date-time"}, pod=STR),
    "RestartStatus": _obj(
        ["ok", "kind", "name", "namespace", "started_at", "pod", "created_at", "restarted", "ready", "status"],
        ok={"const": True}, kind={"enum": list(KINDS)}, name=STR, namespace=STR,
        started_at={"type": "string", "format": "date-time"}, pod=NULLABLE_STR, created_at=NULLABLE_STR,
        restarted=BOOL, ready=BOOL,
        status={"enum": ["restarted_and_ready", "restarted_not_ready", "not_restarted", "no_head"]}),
}

ERROR_TEXT = {
    "400": "invalid_kind, bad_request or invalid_hw_tier",
    "401": "unauthenticated: no credentials, more than one, or credentials the cluster does not accept",
    "403": "unauthorized: not the owner of the cluster, nor an admin",
    "404": "not_found (no such cluster) or operator_not_installed (the kind's CRD is not served)",
    "409": "not_scalable, scale_down_unsafe, scale_down_partial or head_not_found",
    "500": "the route's own failure (list_failed, get_failed, scale_failed, ...), the cause in details",
    "501": "backend_unavailable (the kind's backend is not in this server) or not_supported",
    "503": "auth_unavailable: a TokenReview or SubjectAccessReview could not be carried out",
}

KIND = {"name": "kind", "in": "path", "required": True, "schema": {"type": "string", "enum": list(KINDS)},
        "description": "rayclusters, daskclusters or sparkclusters (another: 400 invalid_kind)"}
NAME = {"name": "name", "in": "path", "required": True,
        "schema": {"type": "string", "pattern": DNS_SUBDOMAIN, "maxLength": 253},
        "description": "The cluster's Kubernetes object name (DNS-1123 subdomain; another: 400)"}
NAMESPACE = {"name": "namespace", "in": "query", "required": False,
             "schema": {"type": "string", "pattern": f"^({DNS_LABEL[1:-1]})?$",
                        "maxLength": 63},
             "description": "A DNS-1123 label (another: 400). Absent or empty: the server's compute "
                            "namespace (COMPUTE_NAMESPACE, domino-compute)"}
RAW = {"name": "raw", "in": "query", "required": False, "schema": {"type": "string", "pattern": FLAG},
       "description": "true, yes or 1 (any case): the object untouched, without the compatibility view; "
                      "false, no, 0 or empty (the default): the view"}


def _started_at(required: bool) -> dict:
    return {"name": "started_at", "in": "query", "required": required,
            "schema": {"type": "string", "format": "date-time"},
            "description": "ISO-8601 UTC, e.g. 2025-09-02T15:40:00Z"}


def _op(summary: str, ok: tuple[str, dict], errors: str, params: list[dict], body: str | None = None,
        public: bool = False) -> dict:
    """An operation answering 200 with `ok` = (description, schema)."""
    return operation(summary, "200", ok[1], ok[0], errors, params, body, public)


def document() -> dict:
    """The OpenAPI document (a fresh dict)."""
    listing = _op("List the clusters of a kind the caller may see", ("The clusters", _ref("ClusterList")),
                  "400 401 404 500 501 503", [KIND, NAMESPACE, RAW])
    get = _op("Fetch one cluster", ("The cluster", _ref("KubeObject")), "400 401 403 404 500 501 503",
              [KIND, NAME, NAMESPACE, RAW])
    scale = _op("Set a cluster's worker replicas (capped at the maximum) and optionally its worker tier",
                ("Scaled", _ref("Scaled")), "400 401 403 404 409 500 501 503", [KIND, NAME, NAMESPACE, RAW],
                "ScaleRequest")
    no_name = _op("A scale without a cluster name: 400 cluster_name is required",
                  ("Never", _ref("Error")), "400 401 501", [KIND])
    no_name["responses"].pop("200")
    restart = _op("Delete the head pod for its controller to replace; answers started_at",
                  ("Restart started", _ref("Restarted")), "400 401 403 404 409 500 501 503",
                  [KIND, NAME, NAMESPACE, _started_at(False)])
    status = _op("Whether a head created at or after started_at is Ready",
                 ("The head's state", _ref("RestartStatus")), "400 401 403 404 500 501 503",
                 [KIND, NAME, NAMESPACE, _started_at(True)])
    head_tier = _op("Set the head's hardware tier (restarts the head)", ("Changed", _ref("HeadTierChanged")),
                    "400 401 403 404 409 500 501 503", [KIND, NAME, NAMESPACE, RAW], "HeadTierRequest")
    health = _op("Liveness and readiness", ("Up", _ref("Health")), "", [], public=True)
    spec = _op("This document", ("OpenAPI 3.1", {"type": "object"}), "", [], public=True)
    metrics = METRICS
    return copy.deepcopy({
        "openapi": "3.1.0",
        "info": {"title": "DDL Cluster Scaler", "version": VERSION,
                 "description": "List, inspect, scale and restart Ray, Dask and Spark clusters "
                                "(seeds 000 and 001). Every response is JSON with Cache-Control: no-store."},
        "security": [{"bearer": []}, {"dominoApiKey": []}, {"apiKey": []}],
        "paths": {
            "/healthz": {"get": health},
            "/openapi.json": {"get": spec},
            "/metrics": {"get": metrics},
            "/ddl_cluster_scaler_api/list/{kind}": {"get": listing},
            "/ddl_cluster_scaler/list/{kind}": {"get": listing},
            "/cluster/{kind}/{name}": {"get": get},
            "/ddl_cluster_scaler/cluster/{kind}/{name}": {"get": get},
            "/cluster/scale/{kind}/{name}": {"post": scale},
            "/ddl_cluster_scaler/scale/{kind}/{name}": {"patch": scale},
            "/cluster/scale/{kind}": {"post": no_name},
            "/cluster/scale/{kind}/": {"post": no_name},
            "/ddl_cluster_scaler/scale/{kind}": {"patch": no_name},
            "/ddl_cluster_scaler/scale/{kind}/": {"patch": no_name},
            "/ddl_cluster_scaler/restart_head/{kind}/{name}": {"patch": restart},
            "/ddl_cluster_scaler/restart_head_status/{kind}/{name}": {"get": status},
            "/ddl_cluster_scaler/head-hw-tier/{kind}/{name}": {"patch": head_tier},
        },
        "components": {
            "schemas": SCHEMAS,
            "responses": {f"E{code}": _json(_ref("Error"), text) for code, text in ERROR_TEXT.items()},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "Any token the cluster accepts (TokenReview)"},
                "dominoApiKey": {"type": "apiKey", "in": "header", "name": "X-Domino-Api-Key"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            },
        },
    })
