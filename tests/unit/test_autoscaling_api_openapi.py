"""The autoscaling API's OpenAPI document says what the server does, request side:
one row per disagreement schemathesis found (tests/e2e/test_autoscaling_api_schema.py),
each checked both ways, against the document and against the server's parser.

- workload_name and workload_namespace were any non-empty string in the
  document, while the server refuses what is not a DNS-1123 subdomain / label
  (400 "Validation failed"): the document now carries the server's patterns.
"""

from __future__ import annotations

import jsonschema_rs
import pytest

from dask_operator.autoscaling_api import openapi
from dask_operator.core.autoscaler_spec import parse_request
from dask_operator.errors import InvalidAutoscalerRequest

DOC = openapi.document()
BODY = {"workload_name": "web", "workload_namespace": "shop", "workload_type": "Deployment", "min_replicas": 1,
        "max_replicas": 3, "target_cpu_percent": 50}


def _documented(body: dict) -> bool:
    """Valid for the document, as schemathesis reads it (ECMA-262 patterns: `$` is the end of the text)."""
    schema = {**DOC["components"]["schemas"]["CreateRequest"], "components": DOC["components"]}
    return jsonschema_rs.validator_for(schema).is_valid(body)


def _served(body: dict) -> bool:
    try:
        parse_request(body)
    except InvalidAutoscalerRequest:
        return False
    return True


@pytest.mark.parametrize("change", [
    {}, {"workload_name": "¯"}, {"workload_name": "|çq"}, {"workload_name": "Web"}, {"workload_name": "web."},
    {"workload_name": "web\n"}, {"workload_name": "a.b-c"}, {"workload_name": "a" * 253},
    {"workload_name": "a" * 254}, {"workload_namespace": "lorem ipsum"}, {"workload_namespace": "a.b"},
    {"workload_namespace": "-shop"}, {"workload_namespace": "a" * 63}, {"workload_namespace": "a" * 64},
    {"workload_namespace": "shop\n"},
], ids=lambda change: repr(change)[:40])
def test_names_are_documented_as_the_server_checks_them(change: dict) -> None:
    body = {**BODY, **change}
    assert _documented(body) is _served(body)
