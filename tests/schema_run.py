"""schemathesis against an OpenAPI document a server we run serves: what the
e2e schema tests share (tests/e2e/test_*_schema.py).

`run_schema` loads `<url>/openapi.json` and, for every operation, has
Hypothesis generate requests three ways (`RUNS`): a caller holding `token`
with positive data (requests the document allows), the same caller with
negative data (requests it forbids), and an anonymous caller with positive
data (no credentials, or the garbage ones schemathesis makes up for the
security schemes). Each response goes through the test's checks; every
operation is tried, and every failure is collected with its seed. Operations
without inputs (/healthz, /openapi.json, /metrics) give one case each; the
others share the target by weight, with a margin (Hypothesis stops early
where it runs out of distinct cases). There is no shrinking: against a real
server it costs minutes, and each failure's curl line is printed as found.

The caller's positive requests on operations with inputs can be aimed at
what exists (`aim`: a strategy of choices, `apply(case, choice)` applies
one); the others draw `no_aim`, so that an operation without inputs never
counts one request many times over.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup

# (caller, data, weight): the share of the cases each gets
RUNS = (("admin", GenerationMode.POSITIVE, 2), ("admin", GenerationMode.NEGATIVE, 2),
        ("anonymous", GenerationMode.POSITIVE, 1))

settings.register_profile(
    "api-schema", deadline=None, database=None, print_blob=False, suppress_health_check=list(HealthCheck),
    phases=(Phase.explicit, Phase.generate))


def no_server_error(ctx, response, case) -> None:
    assert response.status_code < 500, f"server error {response.status_code}: {response.text[:500]}"


def refused_without_credentials(ctx, response, case) -> None:
    """The anonymous caller's check: 401 on every operation that needs credentials."""
    if case.operation.definition.raw.get("security") != []:
        assert response.status_code == 401, f"expected 401 without valid credentials, got {response.status_code}"


def has_inputs(op) -> bool:
    return any(p.location != "header" for p in op.iter_parameters()) or bool(op.get_request_payload_content_types())


def can_succeed(case) -> bool:
    """The operation documents a 2xx answer."""
    return any(code.startswith("2") for code in case.operation.definition.raw["responses"])


@dataclass
class Outcome:
    seed: int
    took: float
    counts: collections.Counter = field(default_factory=collections.Counter)  # (caller, mode, op) -> cases
    statuses: collections.Counter = field(default_factory=collections.Counter)  # (caller, method, status) -> n
    failures: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def reached(self, caller: str = "admin") -> set[int]:
        return {status for (who, _, status) in self.statuses if who == caller}

    def report(self, cases: int) -> None:
        """Print the statuses; fail on any failure or on fewer than `cases` requests."""
        print(f"schemathesis: {self.total} cases in {self.took:.1f}s, seed {self.seed}")
        for key, n in sorted(self.statuses.items(), key=str):
            print(f"  {key}: {n}")
        assert not self.failures, (f"{len(self.failures)} operations failed (seed {self.seed}):\n\n"
                                   + "\n\n".join(self.failures))
        assert self.total >= cases, f"only {self.total} cases ran"


def run_schema(url: str, token: str, *, cases: int, seed_: int, checks: list[Callable],
               credentials: Iterable[str], aim: st.SearchStrategy = st.just(None),
               no_aim: st.SearchStrategy = st.just(None),
               apply: Callable[[object, object], None] = lambda case, choice: None, margin: float = 1.1,
               token_in_case: bool = False) -> Outcome:
    """At least `cases` requests to the server at `url` (see the module's docstring). The caller
    sends `Authorization: Bearer <token>` and none of the generated `credentials` headers. Each
    operation with inputs is asked for `margin` times its share of `cases`.

    `token_in_case`: the token replaces the generated Authorization header in the case itself
    (not only in the request sent), so that the checks read what was sent: a case whose only
    negated part was that header is then not expected to be refused (with a single bearer
    scheme, schemathesis negates it). Otherwise it is passed to the call alone."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    per_weight = math.ceil(cases * margin / sum(w * sum(map(has_inputs, operations)) for _, _, w in RUNS))
    hidden = {h.lower() for h in credentials}
    session, out = requests.Session(), Outcome(seed_, 0.0)
    started = time.monotonic()
    print(f"\nschemathesis: {len(operations)} operations, seed {seed_}, target {cases} cases")
    for index, (caller, mode, weight) in enumerate(RUNS):
        for number, op in enumerate(operations):
            if mode is GenerationMode.NEGATIVE and not has_inputs(op):
                continue  # nothing to negate
            op_checks = checks + ([refused_without_credentials] if caller == "anonymous" else [])
            aimed = aim if caller == "admin" and mode is GenerationMode.POSITIVE and has_inputs(op) else no_aim
            # where schemathesis generates (and may negate) Authorization as a header parameter
            in_case = token_in_case and any(p.location == "header" and p.name.lower() == "authorization"
                                            for p in op.iter_parameters())

            @seed(seed_ + 1000 * index + number)
            @settings(settings.get_profile("api-schema"), max_examples=per_weight * weight)
            @given(case=op.as_strategy(mode), choice=aimed)  # called at once: the loop variables are current
            def run(case, choice) -> None:
                headers = None
                if caller == "admin":
                    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in hidden}
                    if in_case:  # what was sent, as the checks read it: a negated token is not
                        case.headers["Authorization"] = f"Bearer {token}"
                    else:
                        headers = {"Authorization": f"Bearer {token}"}
                apply(case, choice)
                response = case.call(base_url=url, session=session, headers=headers, timeout=30)
                out.counts[caller, mode.value, op.label] += 1
                out.statuses[caller, op.label.split()[0], response.status_code] += 1
                case.validate_response(response, checks=op_checks)

            try:
                run()
            except (Exception, FailureGroup) as e:  # noqa: BLE001 -- every operation is tried, all failures reported
                out.failures.append(f"{caller}/{mode.value} {op.label}: {type(e).__name__}: {e}")
    out.took = time.monotonic() - started
    return out
