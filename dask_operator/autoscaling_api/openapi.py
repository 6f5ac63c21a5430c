"""The OpenAPI 3.1 document of the autoscaling API, served at /openapi.json.

Kept true by the tests: every route the app serves is here, and every answer
the route tests and the e2e tests see is validated against its schema. Request
schemas carry the server's rules where JSON Schema can say them (ranges, enums,
no unknown fields); the rest (max_replicas >= min_replicas, at least one
target) is in the descriptions and answered 400 "Validation failed".
"""

from __future__ import annotations

import copy

from ..openapi_parts import METRICS, json_body, operation, ref

from ..core.autoscaler_spec import (FIELDS, GPU_METRIC, INT32_MAX, MAX_WINDOW_SECONDS, POLICY_FIELDS,
                                    POLICY_PERIOD_SECONDS, WORKLOADS)
from ..core.k8s_names import DNS_LABEL, DNS_SUBDOMAIN

VERSION = "0.1.0"


_ref, _json = ref, json_body


def _obj(required: list[str], props: dict) -> dict:
    return {"type": "object", "required": required, "properties": props, "additionalProperties": False}


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


STR, INT = {"type": "string"}, {"type": "integer", "minimum": 0}
TIME = _nullable({"type": "string", "format": "date-time"})
PERCENT = {"type": ["integer", "null"], "minimum": 0, "maximum": 100,
           "description": "0-100; 0 or null: no target on this resource"}
NUMBER = {"type": ["number", "null"]}
POLICY = _obj([], {
    "stabilization_window_seconds": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_WINDOW_SECONDS,
                                     "description": "absent or null: Kubernetes' default (0 up, 300 down)"},
    "max_scale_change": {"type": ["integer", "null"], "minimum": 0, "maximum": INT32_MAX,
                         "description": f"at most this many replicas added/removed per {POLICY_PERIOD_SECONDS} s "
                                        "(a Pods policy); 0 or null: Kubernetes' default policies"}})
REQUEST_PROPS = {
    "workload_name": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": DNS_SUBDOMAIN,
                      "description": "a Kubernetes object name (DNS-1123 subdomain)"},
    "workload_namespace": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": DNS_LABEL,
                           "description": "a Kubernetes namespace name (DNS-1123 label)"},
    "workload_type": {"enum": list(WORKLOADS)},
    "min_replicas": {"type": "integer", "minimum": 1, "maximum": INT32_MAX},
    "max_replicas": {"type": "integer", "minimum": 1, "maximum": INT32_MAX,
                     "description": "must be >= min_replicas"},
    "target_cpu_percent": PERCENT, "target_memory_percent": PERCENT,
    "target_gpu_percent": {**PERCENT, "description": f"the Pods metric {GPU_METRIC} (DCGM exporter, through "
                                                     "prometheus-adapter: adapter-rules/gpu.yaml)"},
    "follow_desired_workers": {"type": ["boolean", "null"],
                               "description": "Cluster only: one worker per the scheduler's desired worker "
                                              "(the Object metric desired_workers)"},
    "scale_up_policy": _nullable(_ref("ScalePolicy")), "scale_down_policy": _nullable(_ref("ScalePolicy")),
}
assert tuple(REQUEST_PROPS) == FIELDS and tuple(POLICY["properties"]) == POLICY_FIELDS
CONDITION = _obj(["type", "status", "reason", "message", "last_transition_time"],
                 {"type": STR, "status": STR, "reason": {"type": ["string", "null"]},
                  "message": {"type": ["string", "null"]}, "last_transition_time": TIME})
DETAILS = _obj(
    ["created_at", "updated_at", "current_replicas", "desired_replicas", "current_cpu_percent",
     "current_memory_percent", "current_gpu_percent", "last_scale_time", "scale_up_count", "scale_down_count",
     "hpa_name", "spec", "conditions", "unavailable_metrics"],
    {"created_at": TIME, "updated_at": TIME,
     "current_replicas": {"type": ["integer", "null"], "minimum": 0},
     "desired_replicas": {"type": ["integer", "null"], "minimum": 0},
     "current_cpu_percent": NUMBER, "current_memory_percent": NUMBER, "current_gpu_percent": NUMBER,
     "last_scale_time": TIME, "scale_up_count": INT, "scale_down_count": INT, "hpa_name": STR,
     "spec": {**_obj(list(FIELDS), REQUEST_PROPS), "description": "the request this autoscaler's HPA stands for"},
     "conditions": {"type": "array", "items": CONDITION},
     "unavailable_metrics": {"type": "object", "additionalProperties": STR,
                             "description": "each targeted metric (cpu, memory, gpu, desired_workers) the HPA "
                                            "has no current value of -> why; its current_* field is null"}})
SCHEMAS = {
    "Error": _obj(["error", "details"], {"error": STR, "details": STR}),
    "Health": _obj(["status"], {"status": {"const": "ok"}}),
    "ScalePolicy": POLICY,
    "CreateRequest": {**_obj(["workload_name", "workload_namespace", "workload_type", "min_replicas",
                              "max_replicas"], REQUEST_PROPS),
                      "description": "At least one target; unknown fields are refused (400)"},
    "Autoscaler": _obj(["autoscaling_id", "status", "message", "details"], {
        "autoscaling_id": {"type": "string", "description": "<namespace>.<HPA name>"},
        "status": {"enum": ["pending", "active", "inactive"]}, "message": STR, "details": DETAILS}),
    "AutoscalerList": _obj(["autoscalers", "count"], {"autoscalers": {"type": "array", "items": _ref("Autoscaler")},
                                                      "count": INT}),
    "Deleted": _obj(["message", "autoscaler_id"], {"message": {"const": "Autoscaler deleted successfully"},
                                                   "autoscaler_id": STR}),
    "Metrics": _obj(["total_autoscalers", "active_autoscalers", "total_scale_ups", "total_scale_downs",
                     "average_cpu_utilization"],
                    {"total_autoscalers": INT, "active_autoscalers": INT, "total_scale_ups": INT,
                     "total_scale_downs": INT, "average_cpu_utilization": NUMBER}),
}
ERROR_TEXT = {
    "400": "Validation failed (the problems in details)",
    "401": "Unauthenticated: no credentials, more than one, or credentials the cluster does not accept",
    "403": "Forbidden: the caller may not do this to horizontalpodautoscalers in that namespace",
    "404": "Autoscaler not found, or Workload not found",
    "409": "Autoscaler already exists: the workload has an HPA (ours or another)",
    "500": "the route's own failure (Failed to create autoscaler, ...), the cause in details",
    "503": "Authorization unavailable: a TokenReview or SubjectAccessReview could not be carried out",
}
ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
      "description": "An autoscaling_id: <namespace>.<HPA name>"}
NAMESPACE = {"name": "namespace", "in": "query", "required": False,
             "schema": {"type": "string", "pattern": "^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?$"},
             "description": "Only this namespace (absent: every namespace whose HPAs the caller may list)"}


def _op(summary: str, ok: tuple[str, str, str], errors: str, params: list[dict], body: str | None = None,
        public: bool = False) -> dict:
    """An operation answering `ok` = (status, schema name, description)."""
    return operation(summary, ok[0], _ref(ok[1]), ok[2], errors, params, body, public)


def document() -> dict:
    """The OpenAPI document (a fresh dict)."""
    metrics = METRICS
    return copy.deepcopy({
        "openapi": "3.1.0",
        "info": {"title": "Autoscaling API", "version": VERSION,
                 "description": "Seed 004's autoscalers, each one a real autoscaling/v2 "
                                "HorizontalPodAutoscaler. Every response is JSON with Cache-Control: no-store."},
        "security": [{"bearer": []}, {"dominoApiKey": []}, {"apiKey": []}],
        "paths": {
            "/healthz": {"get": _op("Liveness and readiness", ("200", "Health", "Up"), "", [], public=True)},
            "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {
                "200": _json({"type": "object"}, "OpenAPI 3.1")}}},
            "/metrics": {"get": metrics},
            "/api/v1/autoscaling": {
                "post": _op("Create an autoscaler (an HPA) for a workload", ("201", "Autoscaler", "Created"),
                            "400 401 403 404 409 500 503", [], "CreateRequest"),
                "get": _op("List the autoscalers the caller may see", ("200", "AutoscalerList", "The autoscalers"),
                           "400 401 403 500 503", [NAMESPACE])},
            "/api/v1/autoscaling/metrics": {
                "get": _op("Aggregate metrics over the autoscalers the caller may see", ("200", "Metrics", "Totals"),
                           "400 401 403 500 503", [NAMESPACE])},
            "/api/v1/autoscaling/{id}": {
                "get": _op("An autoscaler's status, read from its HPA", ("200", "Autoscaler", "The autoscaler"),
                           "401 403 404 500 503", [ID]),
                "delete": _op("Delete an autoscaler (its HPA)", ("200", "Deleted", "Deleted"),
                              "401 403 404 500 503", [ID])},
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
