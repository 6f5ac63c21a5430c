"""plan_workers, WorkerPod.from_pod and select_retired, table-driven.

Modelled on the HPA's convertDesiredReplicasWithRules tests: one row per case.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from dask_operator import constants as c
from dask_operator.core.plan import (ScalePlan, WorkerPod, plan_workers, select_retired, surge_limit,
                                     worker_index)

T0, T1, T2, T3 = (f"2024-01-01T00:00:0{i}Z" for i in range(4))


def pod(index: int, phase="Running", ready=True, deleting=False, retiring=None, created=T0,
        tpl=None) -> WorkerPod:
    return WorkerPod(f"dask-worker-{index}", phase, ready, deleting, retiring, created, tpl)


def old(index: int, **kw) -> WorkerPod:
    """A pod made from the previous worker template."""
    return pod(index, tpl="old", **kw)


def new(index: int, **kw) -> WorkerPod:
    """A pod made from the current worker template ("new")."""
    return pod(index, tpl="new", **kw)


def pending(index: int, created=T0) -> WorkerPod:
    return pod(index, phase="Pending", ready=False, created=created)


def names(*indices: int) -> tuple[str, ...]:
    return tuple(f"dask-worker-{i}" for i in indices)


# ---------------------------------------------------------------- plan_workers


@pytest.mark.parametrize(
    "desired, pods, expected",
    [
        pytest.param(0, [], ScalePlan(), id="nothing-to-do-empty"),
        pytest.param(2, [pod(0), pod(1)], ScalePlan(), id="at-desired"),
        pytest.param(3, [], ScalePlan(create=names(0, 1, 2)), id="scale-up-from-zero"),
        pytest.param(3, [pod(0), pod(2)], ScalePlan(create=names(1)), id="fills-lowest-gap"),
        pytest.param(4, [pod(1), pod(3)], ScalePlan(create=names(0, 2)), id="fills-several-gaps"),
        pytest.param(
            1, [pod(0, deleting=True)], ScalePlan(create=names(1)), id="deleting-pod-holds-its-name"
        ),
        pytest.param(
            1,
            [pod(0, retiring=T1)],
            ScalePlan(create=names(1), delete=names(0)),
            id="retiring-deleted-and-replaced",
        ),
        pytest.param(
            1,
            [pod(0, retiring=T1, deleting=True), pod(1)],
            ScalePlan(),
            id="retiring-already-deleting-left-alone",
        ),
        pytest.param(
            1,
            [pod(0, phase="Failed", ready=False)],
            ScalePlan(create=names(1), delete=names(0)),
            id="failed-pod-deleted-and-replaced",
        ),
        pytest.param(
            1,
            [pod(0, phase="Succeeded", ready=False), pod(1)],
            ScalePlan(delete=names(0)),
            id="succeeded-pod-deleted-not-counted",
        ),
        pytest.param(
            20,
            [pending(i) for i in range(7)],
            ScalePlan(create=names(*range(7, 20))),
            id="crash-mid-scale-up-creates-only-the-rest",
        ),
        pytest.param(1, [pod(0), pod(1), pod(2), pod(3)], ScalePlan(retire=3), id="scale-down-ready-retires"),
        pytest.param(0, [pod(0)], ScalePlan(retire=1), id="scale-to-zero-retires"),
        pytest.param(
            1,
            [pod(0), pod(1), pending(2), pod(3, ready=False)],
            ScalePlan(delete=names(2, 3), retire=1),
            id="unready-deleted-before-retiring",
        ),
        pytest.param(
            2,
            [pod(0), pod(1, ready=False, created=T3), pending(2, created=T1)],
            ScalePlan(delete=names(2)),
            id="not-running-before-running-unready",
        ),
        pytest.param(
            2,
            [pending(0, created=T1), pending(1, created=T2), pending(2, created=T1)],
            ScalePlan(delete=names(1)),
            id="newest-first",
        ),
        pytest.param(
            1,
            [pending(i) for i in (2, 10, 9)],
            ScalePlan(delete=names(10, 9)),
            id="same-age-highest-index-first",
        ),
        pytest.param(
            0,
            [pending(0), pending(1)],
            ScalePlan(delete=names(1, 0)),
            id="scale-to-zero-pending-deleted",
        ),
        pytest.param(
            1,
            [pod(0), pod(1, retiring=T1), pending(2)],
            ScalePlan(delete=names(1, 2)),
            id="retiring-plus-surplus",
        ),
        pytest.param(
            2,
            [pod(0), pod(1), pod(2, deleting=True), pending(3, created=T1)],
            ScalePlan(delete=names(3)),
            id="deleting-not-counted-on-scale-down",
        ),
    ],
)
def test_plan_workers(desired, pods, expected):
    assert plan_workers("dask", desired, pods) == expected


@pytest.mark.parametrize(
    "desired, pods, reserved, expected",
    [
        pytest.param(2, [], ["dask-worker-0"], ScalePlan(create=names(1, 2)), id="skips-foreign-name"),
        pytest.param(1, [pod(0)], ["dask-worker-1"], ScalePlan(), id="foreign-not-counted-or-touched"),
        pytest.param(2, [pod(0)], ["dask-worker-1", "dask-worker-2"], ScalePlan(create=names(3)),
                     id="skips-several-foreign"),
    ],
)
def test_plan_workers_leaves_foreign_pods_alone(desired, pods, reserved, expected):
    """Pods of a deleted Cluster of the same name (awaiting GC) keep their names."""
    assert plan_workers("dask", desired, pods, reserved=reserved) == expected


def random_pods(rng: random.Random) -> list[WorkerPod]:
    indices = rng.sample(range(30), rng.randint(0, 12))
    return [
        pod(
            i,
            phase=rng.choice(["Pending", "Running", "Running", "Failed"]),
            ready=rng.random() < 0.6,
            deleting=rng.random() < 0.15,
            retiring=T1 if rng.random() < 0.15 else None,
            created=rng.choice([T0, T1, T2]),
        )
        for i in indices
    ]


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed-{s}") for s in range(40)])
def test_plan_invariants(seed):
    rng = random.Random(seed)
    pods, desired = random_pods(rng), rng.randint(0, 10)
    plan = plan_workers("dask", desired, pods)
    live = [p for p in pods if p.live]
    by_name = {p.name: p for p in pods}
    doomed = {p.name for p in pods if not p.deleting and not p.live}
    assert not set(plan.create) & set(by_name), "never reuse a name"
    assert set(plan.delete) <= set(by_name) and not any(by_name[n].deleting for n in plan.delete)
    assert doomed <= set(plan.delete)
    dropped = [n for n in plan.delete if n not in doomed]
    assert all(not by_name[n].serving for n in dropped), "serving workers only go through the scheduler"
    assert len(dropped) + plan.retire <= max(0, len(live) - desired), "never more than the surplus"
    assert len(live) + len(plan.create) - len(dropped) - plan.retire == desired


# ---------------------------------------------------------------- replacement of outdated workers


@pytest.mark.parametrize(
    "desired, pods, expected",
    [
        pytest.param(2, [old(0), old(1)], ScalePlan(create=names(2)), id="new-first-within-surge"),
        pytest.param(8, [old(i) for i in range(8)], ScalePlan(create=names(8, 9)), id="surge-is-25-percent"),
        pytest.param(2, [old(0), old(1), new(2, phase="Pending", ready=False)], ScalePlan(),
                     id="waits-for-the-new-worker-to-serve"),
        pytest.param(2, [old(0), old(1), new(2)], ScalePlan(replace=names(1)),
                     id="one-old-goes-per-new-serving"),
        pytest.param(2, [old(0), new(1), new(2)], ScalePlan(replace=names(0)), id="last-old-goes"),
        pytest.param(2, [old(0), old(1, phase="Pending", ready=False)], ScalePlan(create=names(2, 3), delete=names(1)),
                     id="unready-old-deleted-at-once"),
        pytest.param(0, [old(0), old(1)], ScalePlan(replace=names(1, 0)), id="to-zero-retires-old-by-name"),
        pytest.param(1, [old(0), new(1), new(2, phase="Pending", ready=False)],
                     ScalePlan(delete=names(2), replace=names(0)), id="current-surplus-unready-deleted"),
        pytest.param(2, [new(0), old(1, phase="Pending", ready=False)], ScalePlan(create=names(2), delete=names(1)),
                     id="only-unready-old-is-plain-scaling"),
        pytest.param(1, [pod(0)], ScalePlan(), id="unlabelled-pods-count-as-current"),
        pytest.param(1, [old(0, retiring=T1)], ScalePlan(create=names(1), delete=names(0)),
                     id="retiring-old-is-not-replaced-twice"),
    ],
)
def test_plan_replaces_outdated_workers(desired, pods, expected):
    assert plan_workers("dask", desired, pods, template_hash="new") == expected


@pytest.mark.parametrize(
    "desired, pods, registered, expected",
    [
        pytest.param(2, [old(0), old(1)], names(1), ScalePlan(create=names(2, 3), delete=names(0)),
                     id="unregistered-old-holds-no-data-deleted-at-once"),
        pytest.param(2, [old(0), new(1), new(2)], (), ScalePlan(delete=names(0)),
                     id="nothing-registered-old-deleted-new-kept"),
        pytest.param(2, [old(0), old(1), new(2)], names(0, 1), ScalePlan(),
                     id="new-not-registered-does-not-replace-yet"),
        pytest.param(2, [old(0), old(1), new(2)], names(0, 1, 2), ScalePlan(replace=names(1)),
                     id="new-registered-replaces-one"),
    ],
)
def test_plan_replacement_by_registration(desired, pods, registered, expected):
    assert plan_workers("dask", desired, pods, template_hash="new", registered=registered) == expected


@pytest.mark.parametrize("desired, surge", [(0, 1), (1, 1), (4, 1), (5, 2), (8, 2), (100, 25), (101, 26)])
def test_surge_limit(desired, surge):
    assert surge_limit(desired) == surge


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed-{s}") for s in range(60)])
def test_replacement_invariants(seed):
    rng = random.Random(seed)
    pods = [dataclasses.replace(p, template_hash=rng.choice([None, "old", "new"])) for p in random_pods(rng)]
    desired = rng.randint(0, 10)
    plan = plan_workers("dask", desired, pods, template_hash="new")
    by_name = {p.name: p for p in pods}
    live = [p for p in pods if p.live]
    serving = [p for p in live if p.serving]
    assert not set(plan.create) & set(by_name), "never reuse a name"
    assert set(plan.delete) <= set(by_name) and not any(by_name[n].deleting for n in plan.delete)
    assert all(by_name[n].live and by_name[n].serving and by_name[n].template_hash == "old" for n in plan.replace)
    assert not any(by_name[n].live and by_name[n].serving for n in plan.delete), \
        "live serving workers, outdated or not, only go through the scheduler"
    gone = len(plan.replace) + plan.retire
    assert len(serving) - gone >= min(desired, len(serving)), "serving never drops below desired"
    kept = [p for p in live if p.name not in plan.delete]
    if plan.create and any(p.template_hash == "old" and p.serving for p in live):
        assert len(kept) + len(plan.create) <= desired + surge_limit(desired), "surge bounded"
    if not any(p.template_hash == "old" for p in pods):
        assert plan == plan_workers("dask", desired, pods), "no outdated pod: plain scaling"


# ---------------------------------------------------------------- WorkerPod.from_pod


def k8s_pod(name="dask-worker-0", phase=None, conditions=None, **metadata) -> dict:
    status = {}
    if phase:
        status["phase"] = phase
    if conditions is not None:
        status["conditions"] = conditions
    return {"metadata": {"name": name, "creationTimestamp": T0, **metadata}, "status": status}


@pytest.mark.parametrize(
    "raw, expected",
    [
        pytest.param(
            k8s_pod(phase="Running", conditions=[{"type": "Ready", "status": "True"}]),
            WorkerPod("dask-worker-0", "Running", True, False, None, T0),
            id="running-ready",
        ),
        pytest.param(
            k8s_pod(phase="Running", conditions=[{"type": "ContainersReady", "status": "True"}, {"type": "Ready", "status": "False"}]),
            WorkerPod("dask-worker-0", "Running", False, False, None, T0),
            id="running-unready",
        ),
        pytest.param(
            {"metadata": {"name": "dask-worker-0"}},
            WorkerPod("dask-worker-0", "Pending", False, False, None, ""),
            id="no-status-yet",
        ),
        pytest.param(
            k8s_pod(phase="Running", deletionTimestamp=T2),
            WorkerPod("dask-worker-0", "Running", False, True, None, T0),
            id="deleting",
        ),
        pytest.param(
            k8s_pod(phase="Running", annotations={c.ANNOTATION_RETIRING: T1, "other": "x"}),
            WorkerPod("dask-worker-0", "Running", False, False, T1, T0),
            id="retiring",
        ),
    ],
)
def test_worker_pod_from_pod(raw, expected):
    assert WorkerPod.from_pod(raw) == expected


@pytest.mark.parametrize(
    "worker, live, serving",
    [
        pytest.param(pod(0), True, True, id="running-ready"),
        pytest.param(pod(0, ready=False), True, False, id="running-unready"),
        pytest.param(pending(0), True, False, id="pending"),
        pytest.param(pod(0, deleting=True), False, True, id="deleting"),
        pytest.param(pod(0, retiring=T1), False, True, id="retiring"),
        pytest.param(pod(0, phase="Failed", ready=False), False, False, id="failed"),
    ],
)
def test_worker_pod_predicates(worker, live, serving):
    assert (worker.live, worker.serving) == (live, serving)


@pytest.mark.parametrize(
    "name, expected",
    [
        pytest.param("dask-worker-12", 12, id="index"),
        pytest.param("dask-worker-", None, id="no-index"),
        pytest.param("dask-worker-x", None, id="not-a-number"),
        pytest.param("other-worker-1", None, id="other-cluster"),
        pytest.param("dask-worker-1-worker-2", None, id="nested"),
    ],
)
def test_worker_index(name, expected):
    assert worker_index("dask", name) == expected


# ---------------------------------------------------------------- select_retired


REPORT = {
    "tcp://10.0.0.1:4000": {"name": "dask-worker-1", "type": "Worker"},
    "tcp://10.0.0.2:4000": {"name": "dask-worker-2", "type": "Worker"},
    "tcp://10.0.0.9:4000": {"name": "someone-else", "type": "Worker"},
}


@pytest.mark.parametrize(
    "requested, report, pods, expected",
    [
        pytest.param(None, REPORT, [pod(1), pod(2), pod(3)], names(1, 2), id="all-reported-of-ours"),
        pytest.param(None, {}, [pod(1)], (), id="nothing-retired"),
        pytest.param(names(2), REPORT, [pod(1), pod(2)], names(2), id="only-requested"),
        pytest.param(None, REPORT, [pod(3)], (), id="unknown-names-ignored"),
        pytest.param(
            None,
            {"tcp://a:1": {"name": 5}, "tcp://b:1": "garbage", "tcp://c:1": {"host": "c"}},
            [WorkerPod("5", "Running", True, False, None, T0)],
            ("5",),
            id="odd-values-tolerated",
        ),
    ],
)
def test_select_retired(requested, report, pods, expected):
    assert select_retired(requested, report, pods) == expected


# ---------------------------------------------------------------- unregistered_surplus

from dask_operator.core.plan import unregistered_surplus  # noqa: E402


@pytest.mark.parametrize(
    "retire, pods, registered, expected",
    [
        pytest.param(0, [pod(0), pod(1)], [], (), id="nothing-to-retire"),
        pytest.param(2, [pod(0), pod(1), pod(2)], names(0, 1, 2), (), id="all-registered"),
        pytest.param(2, [pod(0), pod(1), pod(2)], names(0, 1), names(2), id="fewer-unknown-than-retire"),
        pytest.param(1, [pod(0), pod(1), pod(2)], [], names(2), id="capped-at-retire"),
        pytest.param(3, [pod(0), pod(1)], [], names(1, 0), id="all-unknown-fewer-than-retire"),
        pytest.param(
            2, [pod(0, created=T2), pod(1, created=T0), pod(2, created=T1)], [], names(0, 2), id="newest-first"
        ),
        pytest.param(2, [pod(i) for i in (2, 10, 9)], [], names(10, 9), id="same-age-highest-index-first"),
        pytest.param(
            2, [pending(0), pod(1, ready=False), pod(2, phase="Failed", ready=False)], [], (),
            id="only-serving-pods",
        ),
        pytest.param(
            2, [pod(0, deleting=True), pod(1, retiring=T1), pod(2)], [], names(2), id="only-live-pods",
        ),
        pytest.param(1, [pod(0), pod(1)], {"dask-worker-1", "someone-else"}, names(0), id="registered-by-name"),
    ],
)
def test_unregistered_surplus(retire, pods, registered, expected):
    assert unregistered_surplus("dask", retire, pods, registered) == expected


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed-{s}") for s in range(40)])
def test_unregistered_surplus_invariants(seed):
    rng = random.Random(seed)
    pods = random_pods(rng)
    registered = {p.name for p in pods if rng.random() < 0.5} | {"someone-else"}
    retire = rng.randint(0, 6)
    chosen = unregistered_surplus("dask", retire, pods, registered)
    by_name = {p.name: p for p in pods}
    unknown = {p.name for p in pods if p.live and p.serving and p.name not in registered}
    assert len(chosen) <= retire, "never more than asked to retire"
    assert len(set(chosen)) == len(chosen)
    assert set(chosen) <= unknown, "only serving live pods the scheduler does not know"
    assert len(chosen) == min(retire, len(unknown)), "as many as there are, up to retire"
    created = [by_name[n].created for n in chosen]
    assert created == sorted(created, reverse=True), "newest first"
    if chosen:
        left = unknown - set(chosen)
        assert all(by_name[n].created <= min(created) for n in left), "the newest go"
