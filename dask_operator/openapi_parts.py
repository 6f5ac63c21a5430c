"""Pieces of an OpenAPI 3.1 document that both HTTP APIs (`api/`, `autoscaling_api/`) build theirs from."""

from __future__ import annotations


# `GET /metrics`: public, Prometheus's text format.
METRICS = {"summary": "Prometheus metrics", "security": [], "responses": {"200": {
    "description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}


def ref(name: str) -> dict:
    """A reference to a schema in `components.schemas`."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: dict, description: str) -> dict:
    """A response (or request) of JSON with this schema."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def operation(summary: str, status: str, schema: dict, description: str, errors: str, params: list[dict],
              body: str | None = None, public: bool = False) -> dict:
    """One operation: its success response, the error responses named in `errors` (space-separated
    codes, each `#/components/responses/E<code>`), a JSON request body schema by name, and
    `security: []` when `public`."""
    responses = {status: json_body(schema, description)}
    for code in errors.split():
        responses[code] = {"$ref": f"#/components/responses/E{code}"}
    op: dict = {"summary": summary, "parameters": params, "responses": responses}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(body)}}}
    if public:
        op["security"] = []
    return op
