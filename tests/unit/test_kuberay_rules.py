"""core.kuberay: the KubeRay backend's pure rules, table-driven, plus seeded invariants.

One row per rule of the module docstring: which group, which replicas, which
pods a scale-down removes (and when it refuses), the patch, the head's URL.
"""

from __future__ import annotations

import copy
import random

import pytest

from dask_operator.core.kuberay import (
    RayWorker,
    choose_removals,
    find_group,
    group_replicas,
    head_selector,
    head_url,
    needs_head,
    refuse_autoscaled,
    scaled_groups,
    worker_selector,
)
from dask_operator.core.scaling import WorkerShape
from dask_operator.errors import InvalidScale, NotScalable, ScaleDownUnsafe

T0, T1, T2, T3 = (f"2024-01-01T00:00:0{i}Z" for i in range(4))


def group(name="workers", replicas=1, minimum=0, maximum=5, **extra) -> dict:
    g = {"groupName": name, "replicas": replicas, "rayStartParams": {},
         "template": {"spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.41.0"}]}}}
    if minimum is not None:
        g["minReplicas"] = minimum
    if maximum is not None:
        g["maxReplicas"] = maximum
    return {**g, **extra}


def spec(*groups: dict, **extra) -> dict:
    return {"headGroupSpec": {"template": {}}, "workerGroupSpecs": list(groups), **extra}


def w(name: str, phase="Running", ready=True, deleting=False, created=T0, ip=None) -> RayWorker:
    return RayWorker(name, ip, phase, ready, deleting, created)


def pending(name: str, created=T0) -> RayWorker:
    return w(name, phase="Pending", ready=False, created=created)


# ---------------------------------------------------------------- the group


@pytest.mark.parametrize(
    "groups, name, expected_index",
    [
        pytest.param([group("a")], None, 0, id="only-group-by-default"),
        pytest.param([group("a")], "a", 0, id="only-group-by-name"),
        pytest.param([group("a"), group("b")], "b", 1, id="named-among-several"),
    ],
)
def test_find_group(groups, name, expected_index):
    index, found = find_group(spec(*groups), name)
    assert (index, found) == (expected_index, groups[expected_index])


@pytest.mark.parametrize(
    "groups, name, message",
    [
        pytest.param([group("a"), group("b")], None,
                     "this RayCluster has 2 worker groups (a, b): name the one to scale", id="several-need-a-name"),
        pytest.param([group("a")], "gpu", "unknown worker group 'gpu': this RayCluster's groups are a",
                     id="unknown-group"),
        pytest.param([group("a"), group("b")], "c", "unknown worker group 'c': this RayCluster's groups are a, b",
                     id="unknown-among-several"),
        pytest.param([], None, "this RayCluster has no worker group to scale", id="no-groups"),
        pytest.param([], "a", "unknown worker group 'a': this RayCluster's groups are none", id="no-groups-named"),
    ],
)
def test_find_group_refuses_with_the_reason(groups, name, message):
    with pytest.raises(InvalidScale) as raised:
        find_group(spec(*groups), name)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    "value, g, message",
    [
        pytest.param(-1, group(), "replicas must be a non-negative integer", id="negative"),
        pytest.param(1.5, group(), "replicas must be a non-negative integer, got 1.5", id="float"),
        pytest.param("2", group(), "replicas must be a non-negative integer, got '2'", id="string"),
        pytest.param(True, group(), "replicas must be a non-negative integer, got True", id="bool"),
        pytest.param(None, group(), "replicas must be a non-negative integer, got None", id="null"),
        pytest.param(6, group(maximum=5), "replicas must be at most 5 for this cluster, got 6", id="above-max"),
        pytest.param(0, group(minimum=1), "replicas must be at least 1 for this cluster, got 0", id="below-min"),
        pytest.param(-1, group(minimum=2), "replicas must be a non-negative integer", id="negative-before-min"),
    ],
)
def test_group_replicas_refused(value, g, message):
    with pytest.raises(InvalidScale) as raised:
        group_replicas(value, g)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    "value, g",
    [
        pytest.param(0, group(), id="zero"),
        pytest.param(5, group(maximum=5), id="at-max"),
        pytest.param(2, group(minimum=2), id="at-min"),
        pytest.param(1000, group(minimum=None, maximum=None), id="no-bounds-no-ceiling"),
    ],
)
def test_group_replicas_accepted(value, g):
    assert group_replicas(value, g) == value


@pytest.mark.parametrize(
    "extra, refused",
    [
        pytest.param({"enableInTreeAutoscaling": True}, True, id="autoscaled-refused"),
        pytest.param({"enableInTreeAutoscaling": False}, False, id="autoscaling-off"),
        pytest.param({}, False, id="autoscaling-unset"),
    ],
)
def test_autoscaled_clusters_are_not_scalable(extra, refused):
    if refused:
        with pytest.raises(NotScalable, match="enableInTreeAutoscaling: true: the Ray autoscaler sizes"):
            refuse_autoscaled(spec(group(), **extra), "RayCluster ns/rc")
    else:
        refuse_autoscaled(spec(group(), **extra), "RayCluster ns/rc")


# ---------------------------------------------------------------- which pods go


@pytest.mark.parametrize(
    "replicas, workers, idle, expected",
    [
        pytest.param(3, [w("a")], None, (), id="scale-up-removes-nothing"),
        pytest.param(1, [w("a")], None, (), id="at-desired-removes-nothing"),
        pytest.param(1, [w("a"), pending("b")], None, ("b",), id="pending-goes-without-the-head"),
        pytest.param(1, [w("a"), w("b", ready=False)], None, ("b",), id="running-unready-goes-without-the-head"),
        pytest.param(2, [w("a"), w("b", ready=False, created=T3), pending("c", created=T1)], None, ("c",),
                     id="not-running-before-running-unready"),
        pytest.param(2, [w("a"), pending("b", created=T1), pending("c", created=T2)], None, ("c",),
                     id="newest-first"),
        pytest.param(2, [w("a"), pending("c"), pending("b")], None, ("b",), id="same-age-by-name"),
        pytest.param(1, [w("a"), w("b"), pending("c")], {"a"}, ("c", "a"), id="unready-before-idle"),
        pytest.param(1, [w("a", created=T1), w("b", created=T2), w("c")], {"a", "b", "c"}, ("b", "a"),
                     id="idle-newest-first"),
        pytest.param(1, [w("a", ip="10.0.0.1"), w("b", ip="10.0.0.2")], {"10.0.0.2"}, ("b",), id="idle-by-ip"),
        pytest.param(0, [w("a"), w("b")], {"a", "b"}, ("a", "b"), id="scale-to-zero-all-idle"),
        pytest.param(2, [w("a"), w("b", deleting=True), pending("c", created=T1)], None, (),
                     id="deleting-not-counted"),
        pytest.param(0, [w("a", deleting=True), pending("b")], None, ("b",), id="deleting-never-chosen"),
        pytest.param(1, [w("a"), w("b", phase="Failed", ready=False)], None, (), id="terminal-not-counted"),
        pytest.param(1, [w("a"), w("b", phase="Succeeded", ready=False), pending("c")], None, ("c",),
                     id="terminal-never-chosen"),
        pytest.param(2, [w("a"), w("b"), pending("c")], set(), ("c",), id="unready-covers-surplus-none-idle"),
        pytest.param(1, [w("a"), w("b")], {"someone-else", "10.9.9.9"}, None, id="other-idle-names-ignored"),
        pytest.param(1, [w("a"), w("b")], set(), None, id="busy-ready-never-chosen"),
        pytest.param(1, [w("a"), w("b")], None, None, id="head-unreachable-ready-never-chosen"),
        pytest.param(0, [w("a"), w("b"), pending("c")], {"a"}, None, id="partial-cover-chooses-nothing"),
    ],
)
def test_choose_removals(replicas, workers, idle, expected):
    if expected is None:
        with pytest.raises(ScaleDownUnsafe):
            choose_removals(workers, replicas, idle)
    else:
        assert choose_removals(workers, replicas, idle) == expected


@pytest.mark.parametrize(
    "replicas, workers, idle, message",
    [
        pytest.param(1, [w("a"), w("b"), w("c")], None,
                     "cannot choose 2 of the 2 workers to remove: the Ray head could not be asked which workers "
                     "are idle, and without it only workers that are not Ready may go; nothing was changed",
                     id="head-unreachable"),
        pytest.param(0, [w("a"), w("b"), pending("c")], {"a"},
                     "cannot choose 1 of the 3 workers to remove: the Ray head reports 1 of 2 Ready workers idle "
                     "(busy: b); nothing was changed", id="busy-workers"),
        pytest.param(0, [w(f"w{i}") for i in range(7)], set(),
                     "cannot choose 7 of the 7 workers to remove: the Ray head reports 0 of 7 Ready workers idle "
                     "(busy: w0, w1, w2, w3, w4 and 2 more); nothing was changed", id="busy-list-shortened"),
    ],
)
def test_scale_down_unsafe_says_how_many_and_why(replicas, workers, idle, message):
    with pytest.raises(ScaleDownUnsafe) as raised:
        choose_removals(workers, replicas, idle)
    assert str(raised.value) == message
    assert raised.value.http_status == 409 and raised.value.code == "scale_down_unsafe"


@pytest.mark.parametrize(
    "replicas, workers, expected",
    [
        pytest.param(3, [w("a")], False, id="scale-up"),
        pytest.param(1, [w("a"), pending("b")], False, id="unready-cover-the-surplus"),
        pytest.param(0, [w("a"), pending("b")], True, id="surplus-reaches-ready"),
        pytest.param(1, [w("a"), w("b", deleting=True)], False, id="deleting-not-surplus"),
    ],
)
def test_needs_head(replicas, workers, expected):
    assert needs_head(workers, replicas) is expected


# ---------------------------------------------------------------- RayWorker.from_pod


def k8s_pod(name="rc-workers-worker-abcde", phase=None, ready=None, ip=None, **metadata) -> dict:
    status: dict = {}
    if phase:
        status["phase"] = phase
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    if ip:
        status["podIP"] = ip
    return {"metadata": {"name": name, "creationTimestamp": T0, **metadata}, "status": status}


@pytest.mark.parametrize(
    "raw, expected",
    [
        pytest.param(k8s_pod(phase="Running", ready=True, ip="10.0.0.1"),
                     RayWorker("rc-workers-worker-abcde", "10.0.0.1", "Running", True, False, T0), id="running-ready"),
        pytest.param(k8s_pod(phase="Running", ready=False),
                     RayWorker("rc-workers-worker-abcde", None, "Running", False, False, T0), id="running-unready"),
        pytest.param({"metadata": {"name": "p"}}, RayWorker("p", None, "Pending", False, False, ""),
                     id="no-status-yet"),
        pytest.param(k8s_pod(phase="Running", ready=True, deletionTimestamp=T1),
                     RayWorker("rc-workers-worker-abcde", None, "Running", False, True, T0), id="deleting"),
    ],
)
def test_ray_worker_from_pod(raw, expected):
    assert RayWorker.from_pod(raw) == expected


@pytest.mark.parametrize(
    "worker, live, serving",
    [
        pytest.param(w("a"), True, True, id="running-ready"),
        pytest.param(w("a", ready=False), True, False, id="running-unready"),
        pytest.param(pending("a"), True, False, id="pending"),
        pytest.param(w("a", deleting=True), False, True, id="deleting"),
        pytest.param(w("a", phase="Failed", ready=False), False, False, id="failed"),
    ],
)
def test_ray_worker_predicates(worker, live, serving):
    assert (worker.live, worker.serving) == (live, serving)


@pytest.mark.parametrize(
    "selector, expected",
    [
        pytest.param(head_selector("rc"), "ray.io/cluster=rc,ray.io/node-type=head", id="head"),
        pytest.param(worker_selector("rc"), "ray.io/cluster=rc,ray.io/node-type=worker", id="all-workers"),
        pytest.param(worker_selector("rc", "gpu"), "ray.io/cluster=rc,ray.io/node-type=worker,ray.io/group=gpu",
                     id="one-group"),
    ],
)
def test_selectors(selector, expected):
    assert selector == expected


# ---------------------------------------------------------------- the patch


def test_scaled_groups_sets_replicas_and_exactly_the_chosen_pods():
    before = spec(group("a", replicas=3, scaleStrategy={"workersToDelete": ["stale-1", "stale-2"]}), group("b"))
    frozen = copy.deepcopy(before)
    groups = scaled_groups(before, 0, 1, ["p1", "p2"])
    assert groups[0]["replicas"] == 1
    assert groups[0]["scaleStrategy"] == {"workersToDelete": ["p1", "p2"]}, "stale names dropped"
    assert groups[1] == before["workerGroupSpecs"][1], "other groups untouched"
    assert before == frozen, "the spec given is not modified"


@pytest.mark.parametrize(
    "strategy, expected",
    [
        pytest.param(None, {"workersToDelete": []}, id="no-strategy-yet"),
        pytest.param({"workersToDelete": ["old"]}, {"workersToDelete": []}, id="stale-names-cleared"),
        pytest.param({"workersToDelete": None}, {"workersToDelete": []}, id="null-list"),
    ],
)
def test_scaled_groups_without_removals_clears_the_list(strategy, expected):
    g = group("a", replicas=1) | ({"scaleStrategy": strategy} if strategy is not None else {})
    assert scaled_groups(spec(g), 0, 3, [])[0]["scaleStrategy"] == expected


@pytest.mark.parametrize(
    "shape, expected_pod_spec",
    [
        pytest.param(None, group()["template"]["spec"], id="no-shape"),
        pytest.param(WorkerShape(), group()["template"]["spec"], id="empty-shape"),
        pytest.param(WorkerShape(node_selector={"tier": "gpu"}, resources={"limits": {"cpu": "2"}}),
                     {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.41.0",
                                      "resources": {"limits": {"cpu": "2"}}}], "nodeSelector": {"tier": "gpu"}},
                     id="shape-applied"),
    ],
)
def test_scaled_groups_applies_the_shape_to_the_group_only(shape, expected_pod_spec):
    groups = scaled_groups(spec(group("a"), group("b")), 1, 2, [], shape)
    assert groups[1]["template"]["spec"] == expected_pod_spec
    assert groups[0] == group("a"), "the other group keeps its template"


@pytest.mark.parametrize(
    "obj, ip, via_service, expected",
    [
        pytest.param({"metadata": {"name": "rc", "namespace": "ns"}}, "10.0.0.5", False, "http://10.0.0.5:8265",
                     id="pod-ip-default-port"),
        pytest.param({"metadata": {"name": "rc", "namespace": "ns"}}, None, False, None, id="no-pod-ip"),
        pytest.param({"metadata": {"name": "rc", "namespace": "ns"}, "status": {"endpoints": {"dashboard": "9000"}}},
                     "10.0.0.5", False, "http://10.0.0.5:9000", id="dashboard-port-from-status"),
        pytest.param({"metadata": {"name": "rc", "namespace": "ns"}, "status": {"head": {"serviceName": "x-svc"}}},
                     "10.0.0.5", True, "http://x-svc.ns.svc:8265", id="service-from-status"),
        pytest.param({"metadata": {"name": "rc", "namespace": "ns"}}, None, True, "http://rc-head-svc.ns.svc:8265",
                     id="service-default-name"),
    ],
)
def test_head_url(obj, ip, via_service, expected):
    assert head_url(obj, ip, via_service) == expected


# ---------------------------------------------------------------- invariants


def random_workers(rng: random.Random) -> list[RayWorker]:
    names = rng.sample([f"rc-w-{i:02d}" for i in range(30)], rng.randint(0, 12))
    return [
        RayWorker(
            name, f"10.0.0.{i}" if rng.random() < 0.8 else None,
            rng.choice(["Pending", "Running", "Running", "Running", "Failed"]),
            rng.random() < 0.7, rng.random() < 0.1, rng.choice([T0, T1, T2, T3]),
        )
        for i, name in enumerate(names)
    ]


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed-{s}") for s in range(60)])
def test_choose_removals_invariants(seed):
    rng = random.Random(seed)
    workers = random_workers(rng)
    minimum, maximum = rng.randint(0, 2), rng.randint(2, 8)
    g = group(minimum=minimum, maximum=maximum)
    value = rng.randint(-1, 10)
    try:
        replicas = group_replicas(value, g)
    except InvalidScale:
        assert value < minimum or value > maximum, "replicas inside min/max are accepted"
        return
    assert minimum <= replicas <= maximum, "replicas never outside min/max"
    idle = None if rng.random() < 0.3 else {
        (x.ip if x.ip and rng.random() < 0.5 else x.name) for x in workers if rng.random() < 0.5}
    by_name = {x.name: x for x in workers}
    live = [x for x in workers if x.live]
    needed = max(0, len(live) - replicas)
    try:
        chosen = choose_removals(workers, replicas, idle)
    except ScaleDownUnsafe:
        reported = idle or set()
        can_go = [x for x in live if not x.serving or x.name in reported or x.ip in reported]
        assert len(can_go) < needed, "refused only when the surplus cannot be covered"
        return
    assert len(chosen) == needed, "exactly the surplus, never more"
    assert len(set(chosen)) == len(chosen)
    assert all(by_name[n].live for n in chosen), "only live pods are named"
    for n in chosen:
        x = by_name[n]
        if x.serving:
            assert idle is not None and (x.name in idle or x.ip in idle), "never a Ready pod not reported idle"
    assert len(live) - len(chosen) == min(len(live), replicas), "down to replicas, never below"
    assert choose_removals(list(reversed(workers)), replicas, idle) == chosen, "order does not depend on input order"
