"""schemathesis against the OpenAPI document the Verda startup-script server serves, on the sandbox.

The server runs as `tests/e2e/test_verda_autoscaler.py` runs it: a host
process with deploy/verda's ServiceAccount, RBAC, flags and template, real
TokenReviews (audience startup-scripts) and SubjectAccessReviews, its Secrets
read from the sandbox at each request, and scripts uploaded through the real
`verda` SDK to the stand-in Verda API (tests/verda_standin.py). The caller is
deploy/verda's provider (a token of its ServiceAccount for that audience).
schemathesis loads `/openapi.json` and sends the provider's positive and
negative data and an anonymous caller's requests (tests/schema_run.py).

Every response is checked: no 5xx, status code, content type and body valid
for the operation, positive data accepted (each such request uploads a
script), negative data refused with a 4xx, and the anonymous caller refused
with 401. Neither the token nor the join token in the Secret reaches the
server's log.

At least `DASK_OPERATOR_SCRIPT_SERVER_SCHEMA_CASES` (default 1000) requests
are sent; `DASK_OPERATOR_SCRIPT_SERVER_SCHEMA_SEED` replays a run (each run
prints its seed):

    DASK_OPERATOR_SCRIPT_SERVER_SCHEMA_CASES=10000 pytest tests/e2e/test_verda_script_server_schema.py -s --timeout=3600
"""

from __future__ import annotations

import os
import random
import secrets

import pytest
from schema_run import no_server_error, run_schema
from secrets_seen import remember
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               positive_data_acceptance, response_schema_conformance,
                                               status_code_conformance)
from verda_scripts import script_server, token
from verda_standin import VerdaStandIn

from helpers import Kube

pytestmark = pytest.mark.e2e

CASES = int(os.environ.get("DASK_OPERATOR_SCRIPT_SERVER_SCHEMA_CASES") or 1000)
SEED = int(os.environ.get("DASK_OPERATOR_SCRIPT_SERVER_SCHEMA_SEED") or random.randrange(2 ** 32))
JOIN_TOKEN = remember(f"join-{secrets.token_hex(12)}", "deploy/verda's join token")  # the Secret's value: in each script, in no log
CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          positive_data_acceptance, negative_data_rejection]


@pytest.fixture(scope="module")
def target(kube: Kube, tmp_path_factory) -> dict:
    """The stand-in Verda, deploy/verda's startup-script server on the host, and the provider's token."""
    api = VerdaStandIn()
    api_url = api.start()
    try:
        with script_server(kube, tmp_path_factory.mktemp("script-server-schema"), api, api_url, JOIN_TOKEN) \
                as (url, log):
            yield {"url": url, "log": log, "token": token(kube, "verda-provider"), "verda": api}
    finally:
        api.stop()


def test_generated_requests_conform_to_the_served_document(target: dict) -> None:
    outcome = run_schema(target["url"], target["token"], cases=CASES, seed_=SEED, checks=CHECKS,
                         credentials={"authorization"}, margin=1.05,
                         token_in_case=True)
    outcome.report(CASES)
    reached = outcome.reached()
    assert {200, 400} <= reached, f"the provider's requests did not reach Verda: {sorted(reached)}"
    with target["verda"].lock:
        uploaded = list(target["verda"].uploaded)
    assert len(uploaded) == outcome.statuses["admin", "POST", 200], "one upload per script answered"
    log = target["log"].read_text(errors="replace")
    assert target["token"] not in log and JOIN_TOKEN not in log, "a secret reached the server's log"
