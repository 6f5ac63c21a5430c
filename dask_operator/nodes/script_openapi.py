"""The OpenAPI 3.1 document of the startup-script server, served at /openapi.json.

Kept true by the tests: every route the app serves is here and nothing else
(tests/unit/test_script_server.py), and schemathesis checks every answer
against it (tests/e2e/test_verda_script_server_schema.py). The request schema
carries the server's own rules (`core.startup_scripts`): every field
required, no other, each matched whole by the server's pattern.
"""

from __future__ import annotations

import copy

from ..core.k8s_names import DNS_LABEL
from ..core.startup_scripts import REQUEST_FIELDS, SCRIPT_NAME_PATTERN, VERDA_NAME_PATTERN
from ..openapi_parts import json_body, operation, ref

VERSION = "0.1.0"
STR = {"type": "string"}

DNS_NAME = {"type": "string", "pattern": DNS_LABEL, "description": "a DNS-1123 label"}
VERDA_NAME = {"type": "string", "pattern": VERDA_NAME_PATTERN, "description": "a Verda name"}
REQUEST_PROPS = {
    "script_name": {"type": "string", "pattern": SCRIPT_NAME_PATTERN,
                    "description": "the name the script gets on Verda: seed 002's prefix, then a DNS label"},
    "hostname": {**DNS_NAME, "description": "the instance's hostname (a DNS-1123 label)"},
    "node_group": {**DNS_NAME, "description": "the instance's node group (a DNS-1123 label)"},
    "instance_type": {**VERDA_NAME, "description": "Verda's instance type, e.g. 8H100.80S.176V"},
    "location": {**VERDA_NAME, "description": "Verda's location code, e.g. FIN-01"},
}
assert tuple(REQUEST_PROPS) == REQUEST_FIELDS
SCHEMAS = {
    "Error": {"type": "object", "required": ["error", "details"], "additionalProperties": False,
              "properties": {"error": STR, "details": STR}},
    "Health": {"type": "object", "required": ["status"], "additionalProperties": False,
               "properties": {"status": {"const": "ok"}}},
    "ScriptRequest": {"type": "object", "required": list(REQUEST_FIELDS), "additionalProperties": False,
                      "properties": REQUEST_PROPS,
                      "description": "One instance's names: its script is rendered from them (at most 16 KiB)"},
}
ERROR_TEXT = {  # the titles are script_server.ERRORS'
    "400": "Invalid request: a body that is not such a JSON object (the field in details)",
    "401": "Unauthenticated: no bearer token, or one the cluster does not accept (for this audience)",
    "403": "Forbidden: the caller may not create startupscripts.verda.dask.charmtx.com in the server's namespace",
    "502": "Verda refused the script: Verda's API refused the upload or could not be reached",
    "503": "Authorization unavailable (a TokenReview or SubjectAccessReview could not be carried out), "
           "or Secret unavailable (a Secret a variable comes from cannot be read)",
}


def document() -> dict:
    """The OpenAPI document (a fresh dict)."""
    script = operation("Render, upload and name one instance's startup script", "200", STR, "", "400 401 403 502 503",
                       [], "ScriptRequest")
    script["responses"]["200"] = {"description": "The uploaded script's id on Verda, for the instance's create",
                                  "content": {"text/plain": {"schema": STR}}}
    return copy.deepcopy({
        "openapi": "3.1.0",
        "info": {"title": "Startup-script server", "version": VERSION,
                 "description": "Seed 002's server: each Verda instance gets its own startup script, deleted "
                                "after use. POST /script's answers carry Cache-Control: no-store."},
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": operation("Liveness and readiness", "200", ref("Health"), "Up", "", [],
                                          public=True)},
            "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {
                "200": json_body({"type": "object"}, "OpenAPI 3.1")}}},
            "/script": {"post": script},
        },
        "components": {
            "schemas": SCHEMAS,
            "responses": {f"E{code}": json_body(ref("Error"), text) for code, text in ERROR_TEXT.items()},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "A token the cluster accepts (TokenReview; deploy/verda: audience "
                                          "startup-scripts) of someone RBAC lets create startupscripts"},
            },
        },
    })
