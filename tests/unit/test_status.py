"""compute_status, status_changed and the SchedulerLost Event (scheduler_lost, cluster_event), table-driven."""

from __future__ import annotations

import pytest

from dask_operator.core.plan import WorkerPod
from dask_operator.core.spec import ClusterSpec
from dask_operator.core.status import cluster_event, compute_status, scheduler_lost, status_changed

BEFORE, NOW = "2024-01-01T00:00:00Z", "2024-01-01T00:05:00Z"
ADDRESS = "tcp://dask-scheduler.ns.svc:8786"
SELECTOR = "dask.charmtx.com/cluster=dask,dask.charmtx.com/role=worker"


def spec(replicas: int, generation: int = 4) -> ClusterSpec:
    return ClusterSpec("dask", "ns", "u-1", generation, replicas, {}, {}, {})


CURRENT = spec(1).worker_template_hash


def pod(i: int, phase="Running", ready=True, deleting=False, retiring=None, tpl=None) -> WorkerPod:
    return WorkerPod(f"dask-worker-{i}", phase, ready, deleting, retiring, BEFORE, tpl)


def status(replicas, pods, ready=True, blocked=None, previous=None, **kw) -> dict:
    return compute_status(spec(replicas), pods, ADDRESS if ready else None, ready, blocked, previous, NOW, **kw)


def conditions(st: dict) -> dict[str, dict]:
    return {c["type"]: c for c in st["conditions"]}


@pytest.mark.parametrize(
    "replicas, pods, scheduler_ready, phase, progressing_reason",
    [
        pytest.param(1, [], False, "Pending", "WaitingForScheduler", id="scheduler-not-ready"),
        pytest.param(0, [], True, "Running", "Complete", id="zero-workers"),
        pytest.param(2, [pod(0), pod(1)], True, "Running", "Complete", id="all-ready"),
        pytest.param(3, [pod(0)], True, "Scaling", "ScalingUp", id="scaling-up"),
        pytest.param(1, [pod(0), pod(1)], True, "Scaling", "ScalingDown", id="scaling-down"),
        pytest.param(2, [pod(0), pod(1, "Pending", False)], True, "Scaling", "WaitingForWorkers", id="worker-not-ready"),
        pytest.param(1, [pod(0), pod(1, retiring=BEFORE, deleting=True)], True, "Scaling", "RemovingRetired", id="retired-pod-terminating"),
        pytest.param(1, [pod(0), pod(1, deleting=True)], True, "Running", "Complete", id="plain-deleting-ignored"),
        pytest.param(1, [pod(0, tpl="old"), pod(1, tpl=CURRENT)], True, "Scaling", "ReplacingWorkers",
                     id="outdated-worker-being-replaced"),
        pytest.param(1, [pod(0, tpl=CURRENT), pod(1, tpl="old", retiring=BEFORE)], True, "Scaling",
                     "RemovingRetired", id="retired-outdated-is-not-outdated"),
    ],
)
def test_phase_and_progress(replicas, pods, scheduler_ready, phase, progressing_reason):
    st = status(replicas, pods, ready=scheduler_ready)
    assert st["phase"] == phase
    progressing = conditions(st)["Progressing"]
    assert progressing["reason"] == progressing_reason
    assert progressing["status"] == ("False" if phase == "Running" else "True")


@pytest.mark.parametrize(
    "pods, count, ready, retiring, outdated",
    [
        pytest.param([], 0, 0, [], 0, id="none"),
        pytest.param([pod(0), pod(1, ready=False)], 2, 1, [], 0, id="counts-unready"),
        pytest.param([pod(0), pod(1, deleting=True)], 1, 1, [], 0, id="deleting-not-counted"),
        pytest.param(
            [pod(0), pod(2, retiring=NOW), pod(1, retiring=BEFORE, deleting=True)],
            1,
            1,
            [{"name": "dask-worker-1", "since": BEFORE}, {"name": "dask-worker-2", "since": NOW}],
            0,
            id="retiring-listed-sorted",
        ),
        pytest.param([pod(0, retiring="")], 0, 0, [{"name": "dask-worker-0"}], 0, id="retiring-without-time"),
        pytest.param([pod(0, phase="Failed", ready=False)], 0, 0, [], 0, id="failed-not-counted"),
        pytest.param([pod(0, tpl="old"), pod(1, tpl=CURRENT), pod(2)], 3, 3, [], 1, id="outdated-counted"),
    ],
)
def test_workers(pods, count, ready, retiring, outdated):
    assert status(1, pods)["workers"] == {"count": count, "ready": ready, "outdated": outdated,
                                          "selector": SELECTOR, "retiring": retiring}


def test_whole_status_shape():
    st = status(1, [pod(0)])
    assert st["observedGeneration"] == 4
    assert st["scheduler"] == {"address": ADDRESS}
    assert [c["type"] for c in st["conditions"]] == ["Available", "Progressing", "ScaleDownBlocked"]
    for cond in st["conditions"]:
        assert set(cond) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
        assert cond["observedGeneration"] == 4
        assert cond["lastTransitionTime"] == NOW
    assert status(1, [pod(0)], ready=False)["scheduler"] == {"address": None}


@pytest.mark.parametrize(
    "blocked, message, expected",
    [
        pytest.param(None, None, ("False", "NotBlocked", ""), id="not-blocked"),
        pytest.param(
            "SchedulerUnreachable", "connection refused",
            ("True", "SchedulerUnreachable", "connection refused"),
            id="unreachable",
        ),
        pytest.param(
            "RetireIncomplete", None, ("True", "RetireIncomplete", "scale-down blocked: RetireIncomplete"),
            id="default-message",
        ),
    ],
)
def test_scale_down_blocked(blocked, message, expected):
    cond = conditions(status(1, [pod(0), pod(1)], blocked=blocked, blocked_message=message))["ScaleDownBlocked"]
    assert (cond["status"], cond["reason"], cond["message"]) == expected


@pytest.mark.parametrize(
    "previous_available, scheduler_ready, expected_time",
    [
        pytest.param("True", True, BEFORE, id="unchanged-keeps-time"),
        pytest.param("False", True, NOW, id="changed-gets-now"),
        pytest.param("True", False, NOW, id="became-unavailable"),
        pytest.param(None, True, NOW, id="no-previous-condition"),
    ],
)
def test_last_transition_time(previous_available, scheduler_ready, expected_time):
    previous = {"conditions": []}
    if previous_available:
        previous["conditions"].append(
            {"type": "Available", "status": previous_available, "lastTransitionTime": BEFORE}
        )
    cond = conditions(status(0, [], ready=scheduler_ready, previous=previous))["Available"]
    assert cond["lastTransitionTime"] == expected_time


def test_recomputing_is_stable():
    first = status(2, [pod(0), pod(1)])
    again = compute_status(spec(2), [pod(0), pod(1)], ADDRESS, True, None, first, "2030-01-01T00:00:00Z")
    assert again == first
    assert not status_changed(first, again)


@pytest.mark.parametrize(
    "old, new, changed",
    [
        pytest.param(None, {"phase": "Running"}, True, id="no-old"),
        pytest.param({"phase": "Running"}, {"phase": "Running"}, False, id="same"),
        pytest.param({"phase": "Scaling"}, {"phase": "Running"}, True, id="different"),
        pytest.param({"phase": "Running", "kopf": {"x": 1}}, {"phase": "Running"}, False, id="foreign-keys-ignored"),
        pytest.param({"scheduler": {}}, {"scheduler": {"address": None}}, False, id="none-equals-empty"),
        pytest.param({}, {"scheduler": {"address": None}}, False, id="none-equals-absent"),
        pytest.param({"scheduler": {"address": "a"}}, {"scheduler": {"address": None}}, True, id="address-removed"),
        pytest.param({"workers": {"retiring": []}}, {"workers": {"retiring": [{"name": "w"}]}}, True, id="list-changed"),
        pytest.param({"workers": {"count": 1, "ready": 1}}, {"workers": {"count": 1, "ready": 0}}, True, id="nested"),
    ],
)
def test_status_changed(old, new, changed):
    assert status_changed(old, new) is changed


# ---------------------------------------------------------------- the SchedulerLost Event


@pytest.mark.parametrize(
    "before, ready_now, lost",
    [
        pytest.param(True, False, True, id="ready-then-not-is-lost"),
        pytest.param(True, True, False, id="still-ready"),
        pytest.param(False, False, False, id="still-not-ready"),
        pytest.param(False, True, False, id="becomes-ready"),
        pytest.param(None, False, False, id="first-status-not-ready"),
    ],
)
def test_scheduler_lost_only_when_available_turns_false(before, ready_now, lost):
    previous = None if before is None else status(2, [pod(0), pod(1)], ready=before)
    now = status(2, [pod(0), pod(1)], ready=ready_now, previous=previous)
    message = scheduler_lost(previous, now)
    assert (message is not None) == lost
    if lost:
        assert "2 workers keep their pods" in message


def test_recomputing_after_a_loss_reports_it_once():
    lost = status(2, [pod(0), pod(1)], ready=False, previous=status(2, [pod(0), pod(1)]))
    again = status(2, [pod(0), pod(1)], ready=False, previous=lost)
    assert scheduler_lost(lost, again) is None


def test_cluster_event_is_about_the_cluster():
    event = cluster_event(spec(1), "SchedulerLost", "gone", NOW)
    assert event["involvedObject"] == {"apiVersion": "dask.charmtx.com/v1alpha1", "kind": "Cluster",
                                       "name": "dask", "namespace": "ns", "uid": "u-1"}
    assert (event["type"], event["reason"], event["message"]) == ("Warning", "SchedulerLost", "gone")
    assert event["metadata"] == {"generateName": "dask.", "namespace": "ns"}
    assert event["firstTimestamp"] == event["lastTimestamp"] == NOW
