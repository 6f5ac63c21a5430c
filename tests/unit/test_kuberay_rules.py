"""core.kuberay: the KubeRay backend's pure rules, table-driven, plus seeded invariants.

One row per rule of the module docstring: which group, which replicas, which
Ray node is a pod's, which pods are idle, which pods a scale-down removes (and
when it refuses), the patch, the GCS address.
"""

from __future__ import annotations

import copy
import random

import pytest

from dask_operator.core.kuberay import (
    MIN_IDLE_SECONDS,
    RayWorker,
    choose_removals,
    find_group,
    gcs_address,
    group_replicas,
    head_selector,
    idle_workers,
    needs_head,
    ray_nodes_by_pod,
    refuse_autoscaled,
    removal_order,
    scaled_groups,
    worker_selector,
)
from dask_operator.core.scaling import WorkerShape
from dask_operator.errors import InvalidScale, NotScalable, ScaleDownUnsafe
from dask_operator.ray_gcs import RayNode

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
        pytest.param(1, [w("a", ip="10.0.0.1"), w("b", ip="10.0.0.2")], {"10.0.0.2"}, None,
                     id="idle-names-pods-not-ips"),
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
    "replicas, workers, idle, released, partial, expected",
    [
        pytest.param(1, [w("a"), w("b", created=T1), w("c", created=T2)], {"b", "c"}, {"a"}, False, ("a", "c"),
                     id="released-before-idle"),
        pytest.param(1, [w("a"), w("b", created=T1), pending("c")], set(), {"a"}, False, ("c", "a"),
                     id="unready-before-released"),
        pytest.param(1, [w("a"), w("b")], None, {"a"}, False, ("a",), id="released-go-when-the-gcs-is-down"),
        pytest.param(2, [w("a", deleting=True), w("b")], set(), {"a"}, False, (), id="released-not-live-ignored"),
        pytest.param(0, [w("a"), w("b"), pending("c")], set(), {"a"}, True, ("c", "a"),
                     id="partial-takes-what-can-go"),
        pytest.param(0, [w("a"), w("b")], set(), set(), True, (), id="partial-nothing-can-go"),
        pytest.param(1, [w("a"), w("b"), w("c")], set(), {"a", "b", "c"}, True, ("a", "b"),
                     id="partial-never-more-than-the-surplus"),
    ],
)
def test_choose_removals_with_released(replicas, workers, idle, released, partial, expected):
    assert choose_removals(workers, replicas, idle, released, partial=partial) == expected


def test_removal_order_lists_every_worker_that_may_go_in_order():
    workers = [w("busy"), w("idle-old"), w("idle-new", created=T2), w("gone", created=T1), pending("p"),
               w("unready", ready=False, created=T3), w("dying", deleting=True)]
    order = removal_order(workers, {"idle-old", "idle-new", "dying"}, {"gone"})
    assert [x.name for x in order] == ["p", "unready", "gone", "idle-new", "idle-old"]


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


def head(ip: str | None = "10.0.0.5", *ports: tuple[str, int]) -> dict:
    status = {"podIP": ip} if ip else {}
    return {"metadata": {"name": "rc-head-x"}, "status": status, "spec": {"containers": [
        {"name": "ray-head", "ports": [{"name": n, "containerPort": p} for n, p in ports]}]}}


RC = {"metadata": {"name": "rc", "namespace": "ns"}}


@pytest.mark.parametrize(
    "obj, head_pod, via_service, expected",
    [
        pytest.param(RC, head("10.0.0.5"), False, "10.0.0.5:6379", id="pod-ip-default-port"),
        pytest.param(RC, head("10.0.0.5", ("dashboard", 8265), ("gcs-server", 6380)), False, "10.0.0.5:6380",
                     id="gcs-server-container-port"),
        pytest.param({**RC, "status": {"endpoints": {"gcs-server": "31234"}}}, head("10.0.0.5"), False,
                     "10.0.0.5:6379", id="endpoints-may-be-a-node-port-not-used"),
        pytest.param(RC, head(None), False, None, id="no-pod-ip"),
        pytest.param(RC, None, False, None, id="no-head-pod"),
        pytest.param({**RC, "status": {"head": {"serviceName": "x-svc"}}}, head(None, ("gcs-server", 6380)), True,
                     "x-svc.ns.svc:6380", id="service-from-status"),
        pytest.param(RC, head("10.0.0.5"), True, "rc-head-svc.ns.svc:6379", id="service-default-name"),
    ],
)
def test_gcs_address(obj, head_pod, via_service, expected):
    assert gcs_address(obj, head_pod, via_service) == expected


# ---------------------------------------------------------------- pods and Ray nodes


def node(instance="", ip="", status="IDLE", idle_ms=60_000, activity=(), nid=None) -> RayNode:
    return RayNode(nid or f"{instance or ip}-{status}".encode(), instance, "workers", ip, status, idle_ms,
                   tuple(activity))


@pytest.mark.parametrize(
    "workers, nodes, expected",
    [
        pytest.param([w("a", ip="10.0.0.1")], [node("a", "10.0.0.1")], {"a": "a"}, id="by-instance-id"),
        pytest.param([w("a", ip="10.0.0.1")], [node("a", "10.0.0.9")], {"a": "a"}, id="instance-id-over-ip"),
        pytest.param([w("a", ip="10.0.0.1")], [node("", "10.0.0.1")], {"a": "10.0.0.1"}, id="by-ip-without-id"),
        pytest.param([w("a", ip="10.0.0.1")], [node("b", "10.0.0.1")], {}, id="another-pods-node-at-that-ip"),
        pytest.param([w("a", ip="10.0.0.1")], [node("a", "10.0.0.1", "DEAD")], {}, id="dead-node-never"),
        pytest.param([w("a", ip="10.0.0.1")], [node("", "10.0.0.1", "DEAD"), node("", "10.0.0.1")],
                     {"a": "10.0.0.1"}, id="ip-reused-after-a-dead-node"),
        pytest.param([w("a", ip="10.0.0.1")], [node("a", "10.0.0.1", nid=b"1"), node("a", "10.0.0.1", nid=b"2")],
                     {}, id="two-alive-nodes-claim-the-pod"),
        pytest.param([w("a", ip="10.0.0.1")], [node("", "10.0.0.1", nid=b"1"), node("", "10.0.0.1", nid=b"2")],
                     {}, id="two-alive-nodes-at-the-ip"),
        pytest.param([w("a")], [node("", "")], {}, id="no-ip-no-id"),
        pytest.param([w("a", deleting=True, ip="10.0.0.1")], [node("a", "10.0.0.1")], {}, id="not-live"),
    ],
)
def test_ray_nodes_by_pod(workers, nodes, expected):
    found = ray_nodes_by_pod(workers, nodes)
    assert {pod: n.instance_id or n.ip for pod, n in found.items()} == expected


@pytest.mark.parametrize(
    "worker, state, idle",
    [
        pytest.param(w("a"), node("a"), True, id="idle-long-enough"),
        pytest.param(w("a"), node("a", idle_ms=int(MIN_IDLE_SECONDS * 1000)), True, id="idle-exactly-the-minimum"),
        pytest.param(w("a"), node("a", idle_ms=int(MIN_IDLE_SECONDS * 1000) - 1), False, id="idle-too-briefly"),
        pytest.param(w("a"), node("a", activity=["Resource: CPU currently in use."]), True,
                     id="activity-left-over-from-busy-is-ignored"),
        pytest.param(w("a"), node("a", status="RUNNING"), False, id="running"),
        pytest.param(w("a"), node("a", status="DRAINING"), False, id="draining"),
        pytest.param(w("a"), node("a", status="UNKNOWN(7)"), False, id="unknown-status"),
        pytest.param(w("a", ready=False), node("a"), False, id="pod-not-ready"),
        pytest.param(w("a"), None, False, id="no-node"),
    ],
)
def test_idle_workers(worker, state, idle):
    by_pod = {worker.name: state} if state else {}
    assert idle_workers([worker], by_pod) == (frozenset({worker.name}) if idle else frozenset())


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
    idle = None if rng.random() < 0.3 else {x.name for x in workers if rng.random() < 0.5}
    released = {x.name for x in workers if rng.random() < 0.2}
    by_name = {x.name: x for x in workers}
    live = [x for x in workers if x.live]
    needed = max(0, len(live) - replicas)
    may_go = {x.name for x in live if not x.serving or x.name in (idle or set()) or x.name in released}
    partial = choose_removals(workers, replicas, idle, released, partial=True)
    assert len(partial) == min(needed, len(may_go)), "partial: as many as may go, never past the surplus"
    try:
        chosen = choose_removals(workers, replicas, idle, released)
    except ScaleDownUnsafe:
        assert len(may_go) < needed, "refused only when the surplus cannot be covered"
        return
    assert chosen == partial, "when the surplus is covered, partial changes nothing"
    assert len(chosen) == needed, "exactly the surplus, never more"
    assert len(set(chosen)) == len(chosen)
    assert all(by_name[n].live for n in chosen), "only live pods are named"
    for n in chosen:
        x = by_name[n]
        if x.serving:
            assert n in released or (idle is not None and n in idle), "never a Ready pod neither released nor idle"
    tiers = [0 if not by_name[n].serving else 1 if n in released else 2 for n in chosen]
    assert tiers == sorted(tiers), "unready, then released, then idle"
    assert len(live) - len(chosen) == min(len(live), replicas), "down to replicas, never below"
    assert choose_removals(list(reversed(workers)), replicas, idle, released) == chosen, \
        "order does not depend on input order"
