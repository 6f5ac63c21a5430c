"""`api.views` (pure rules) and `api.tiers`, table-driven."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from api_fakes import pod

from dask_operator.api import views
from dask_operator.api.errors import BadRequest, InvalidTier, TiersUnavailable
from dask_operator.api.tiers import TierSource, parse_tiers, resolve
from dask_operator.backends.base import ClusterStatus

UTC = dt.timezone.utc

# ---------------------------------------------------------------- request fields


@pytest.mark.parametrize("body, expected", [
    pytest.param({"replicas": 0}, 0, id="zero"), pytest.param({"replicas": 7}, 7, id="seven"),
    pytest.param({}, None, id="missing"), pytest.param({"replicas": -1}, None, id="negative"),
    pytest.param({"replicas": "2"}, None, id="string"), pytest.param({"replicas": 2.5}, None, id="fraction"),
    pytest.param({"replicas": 2.0}, 2, id="integral-float"),
    pytest.param({"replicas": False}, None, id="bool"),
])
def test_parse_replicas(body: dict, expected: int | None) -> None:
    if expected is None:
        with pytest.raises(BadRequest, match="^replicas must be a non-negative integer$"):
            views.parse_replicas(body)
    else:
        assert views.parse_replicas(body) == expected


@pytest.mark.parametrize("body, role, expected", [
    ({"worker_hw_tier_name": "A", "worker_hw_tier": "", "worker_hw_tier_id": None}, "worker", ["A"]),
    ({"worker_hw_tier": "A", "worker_hw_tier_id": "a-id"}, "worker", ["A", "a-id"]),
    ({"head_hw_tier": "A", "worker_hw_tier": "B"}, "head", ["A"]),
    ({}, "worker", []),
], ids=["empties-dropped", "order-kept", "head-role", "none"])
def test_tier_fields(body: dict, role: str, expected: list) -> None:
    assert views.tier_fields(body, role) == expected


def test_tier_field_must_be_a_string() -> None:
    with pytest.raises(BadRequest):
        views.tier_fields({"worker_hw_tier_id": 3})


@pytest.mark.parametrize("value, expected", [(None, False), ("", False), ("TRUE", True), ("1", True),
                                             ("no", False), ("maybe", None)])
def test_parse_flag(value, expected) -> None:
    if expected is None:
        with pytest.raises(BadRequest):
            views.parse_flag(value, "raw")
    else:
        assert views.parse_flag(value, "raw") is expected


@pytest.mark.parametrize("user_id, selector", [
    ("u-1", "l=u-1"), ("64f0c0ffee", "l=64f0c0ffee"), ("system:serviceaccount:a:b", None), ("", None),
    ("x" * 64, None)])
def test_owner_selector_only_for_label_values(user_id: str, selector: str | None) -> None:
    assert views.owner_selector("l", user_id) == selector
    obj = {"metadata": {"labels": {"l": user_id}}}
    assert views.owns(obj, "l", user_id) is (selector is not None)


# ---------------------------------------------------------------- cap


@pytest.mark.parametrize("requested, backend, backend_max, server_max, expected", [
    pytest.param(5, "kuberay", None, None, views.Cap(5), id="no-limits"),
    pytest.param(5, "kuberay", 3, None, views.Cap(3, 3), id="backend-max"),
    pytest.param(5, "kuberay", None, 4, views.Cap(4, 4), id="server-max"),
    pytest.param(5, "kuberay", 3, 4, views.Cap(3, 3), id="lowest-wins"),
    pytest.param(3, "kuberay", 3, 4, views.Cap(3), id="at-limit"),
    pytest.param(9, "dco-ray", 3, None, views.Cap(9), id="dco-max-is-no-ceiling"),
    pytest.param(9, "dco-dask", 3, 5, views.Cap(5, 5), id="dco-server-max-still-applies"),
])
def test_cap_replicas(requested, backend, backend_max, server_max, expected) -> None:
    assert views.cap_replicas(requested, backend, backend_max, server_max) == expected


# ---------------------------------------------------------------- compatibility view

STATUS = ClusterStatus(desired=3, ready_workers=2, head_ready=True, max_replicas=5)


def test_compat_view_adds_what_the_seed_client_reads() -> None:
    obj = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "r"},
           "spec": {"workerGroupSpecs": [{"replicas": 3}]}}
    before = copy.deepcopy(obj)
    view = views.compat_view(obj, STATUS)
    assert obj == before, "the object given is not modified"
    assert view["spec"]["worker"] == {"replicas": 3}
    assert view["status"]["nodes"] == ["r-head", "r-worker-0", "r-worker-1"]
    assert view["status"]["scaler"] == {"desired": 3, "readyWorkers": 2, "headReady": True, "minReplicas": None,
                                        "maxReplicas": 5, "scaleDown": "Framework", "complete": False,
                                        "compat": ["spec.worker.replicas", "status.nodes"]}
    assert view["spec"]["workerGroupSpecs"] == obj["spec"]["workerGroupSpecs"]


def test_compat_view_leaves_dominos_fields_alone() -> None:
    obj = {"metadata": {"name": "d"}, "spec": {"worker": {"replicas": 4, "resources": {}}},
           "status": {"nodes": ["d-head-0", "d-worker-0"]}}
    view = views.compat_view(obj, STATUS)
    assert view["spec"]["worker"] == {"replicas": 4, "resources": {}}
    assert view["status"]["nodes"] == ["d-head-0", "d-worker-0"]
    assert view["status"]["scaler"]["compat"] == []


# ---------------------------------------------------------------- timestamps and head restart

T = dt.datetime(2025, 9, 2, 15, 40, 0, tzinfo=UTC)


@pytest.mark.parametrize("text, expected", [
    ("2025-09-02T15:40:00Z", T), ("2025-09-02T17:40:00+02:00", T), ("2025-09-02T15:40:00", T),
    ("2025-09-02T15:40:00.250Z", T.replace(microsecond=250000)),
    # schemathesis (tests/e2e/test_api_schema.py): valid RFC 3339 times whose UTC form Python
    # cannot hold were a 500 ("date value out of range") on restart_head_status
    ("0001-01-01T01:00:00+14:10", dt.datetime.min.replace(tzinfo=UTC)),
    ("9999-12-31T23:00:00-02:00", dt.datetime.max.replace(tzinfo=UTC))])
def test_parse_timestamp(text: str, expected: dt.datetime) -> None:
    assert views.parse_timestamp(text) == expected


@pytest.mark.parametrize("text", ["0001-01-01T01:00:00+14:10", "9999-12-31T23:00:00-02:00"])
def test_times_past_pythons_range_still_compare_and_format(text: str) -> None:
    """restart_head_status with such a started_at: a 200 saying whether the head is newer."""
    since = views.parse_timestamp(text)
    body = views.head_restart_status(None, since)
    assert body["started_at"] == views.format_timestamp(since) and body["restarted"] is False
    assert views.restart_started_at(since, T) == (since.replace(microsecond=0) if since < T else T)


@pytest.mark.parametrize("text", ["", None, "yesterday", "2025-13-01T00:00:00Z"])
def test_parse_timestamp_refuses(text) -> None:
    with pytest.raises(BadRequest):
        views.parse_timestamp(text)


@pytest.mark.parametrize("given, now, expected", [
    pytest.param(T, T.replace(minute=41), T, id="client-time"),
    pytest.param(T.replace(hour=16), T.replace(microsecond=900000), T, id="client-ahead-floored-server-now"),
    pytest.param(None, T.replace(microsecond=10), T, id="none"),
])
def test_restart_started_at(given, now, expected) -> None:
    assert views.restart_started_at(given, now) == expected


@pytest.mark.parametrize("head, status, restarted, ready", [
    pytest.param(None, "no_head", False, False, id="no-head"),
    pytest.param(pod("h", "2025-09-02T15:39:59Z"), "not_restarted", False, True, id="older"),
    pytest.param(pod("h", "2025-09-02T15:40:00Z", ready=False), "restarted_not_ready", True, False, id="same-second"),
    pytest.param(pod("h", "2025-09-02T15:41:00Z"), "restarted_and_ready", True, True, id="newer-ready"),
])
def test_head_restart_status(head, status: str, restarted: bool, ready: bool) -> None:
    body = views.head_restart_status(head, T.replace(microsecond=700000))
    assert (body["ok"], body["status"], body["restarted"], body["ready"]) == (True, status, restarted, ready)
    assert body["started_at"] == "2025-09-02T15:40:00Z"


# ---------------------------------------------------------------- tiers

GOOD = """
tiers:
  - {id: s, name: Small, resources: {requests: {cpu: 1}}}
  - {id: g, name: GPU, gpus: 2, gpuResource: amd.com/gpu, nodeSelector: {pool: gpu},
     tolerations: [{key: gpu, operator: Exists}], kinds: [rayclusters]}
"""


def test_parse_tiers() -> None:
    small, gpu = parse_tiers({"tiers.yaml": GOOD})
    assert small.shape.resources == {"requests": {"cpu": "1"}}
    assert small.shape.node_selector == {} and small.shape.tolerations == () and small.kinds is None
    assert gpu.shape.resources == {"requests": {"amd.com/gpu": "2"}, "limits": {"amd.com/gpu": "2"}}
    assert gpu.shape.node_selector == {"pool": "gpu"} and gpu.kinds == {"rayclusters"}


@pytest.mark.parametrize("text, error", [
    pytest.param(None, "no 'tiers.yaml'", id="no-key"),
    pytest.param("tiers: {}", "'tiers' list", id="not-a-list"),
    pytest.param("tiers: [{id: a}]", "id and name", id="no-name"),
    pytest.param("tiers: [{id: a, name: A}, {id: a, name: B}]", "unique", id="duplicate-id"),
    pytest.param("tiers: [{id: a, name: A}, {id: b, name: a}]", "unique", id="duplicate-name-any-case"),
    pytest.param("tiers: [{id: a, name: A, kinds: [pods]}]", "kinds", id="bad-kind"),
    pytest.param("tiers: [{id: a, name: A, gpus: -1}]", "gpus", id="bad-gpus"),
    pytest.param("tiers: [{id: a, name: A, resources: {cpu: 1}}]", "requests and limits", id="bad-resources"),
])
def test_parse_tiers_refuses(text, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_tiers({} if text is None else {"tiers.yaml": text})


TIERS = parse_tiers({"tiers.yaml": GOOD})


@pytest.mark.parametrize("values, kind, expected", [
    pytest.param([], "daskclusters", None, id="none-given"),
    pytest.param(["s"], "daskclusters", "s", id="by-id"),
    pytest.param(["sMaLL"], "daskclusters", "s", id="by-name-any-case"),
    pytest.param(["Small", "s"], "daskclusters", "s", id="name-and-id-agree"),
    pytest.param(["GPU"], "rayclusters", "g", id="allowed-kind"),
    pytest.param(["Huge"], "daskclusters", "unknown hardware tier", id="unknown"),
    pytest.param(["GPU"], "daskclusters", "not allowed", id="kind-not-allowed"),
    pytest.param(["Small", "GPU"], "rayclusters", "different tiers", id="conflict"),
])
def test_resolve(values, kind, expected) -> None:
    if expected in (None, "s", "g"):
        tier = resolve(TIERS, values, kind)
        assert (tier.id if tier else None) == expected
    else:
        with pytest.raises(InvalidTier, match=expected):
            resolve(TIERS, values, kind)


def test_resolve_without_tiers_configured() -> None:
    with pytest.raises(InvalidTier, match="no hardware tiers"):
        resolve((), ["Small"], "daskclusters")


class ConfigMapKube:
    def __init__(self, cm) -> None:
        self.cm, self.reads = cm, 0

    async def get(self, version, plural, namespace, name):
        self.reads += 1
        return self.cm


async def test_tier_source_caches_and_reports_bad_config_maps() -> None:
    now = [0.0]
    kube = ConfigMapKube({"data": {"tiers.yaml": GOOD}})
    source = TierSource(kube, "ops", "tiers", ttl=30, clock=lambda: now[0])
    assert [t.id for t in await source.tiers()] == ["s", "g"]
    await source.tiers()
    assert kube.reads == 1
    now[0] = 30
    kube.cm = {"data": {"tiers.yaml": "tiers: [{id: a}]"}}
    with pytest.raises(TiersUnavailable, match="malformed"):
        await source.tiers()
    kube.cm = None
    with pytest.raises(TiersUnavailable, match="does not exist"):
        await source.tiers()
    assert await TierSource(kube, None, None).tiers() == ()
