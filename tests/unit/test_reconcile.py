"""Reconciler and WorkerScaler against FakeKube and FakeDask: each decision of one pass.

Rules the rows check:
- missing workers are created under the lowest free names `<cluster>-worker-<n>`;
- at the desired count no pod is written and the scheduler is not asked;
- surplus pods that are not Running and Ready are deleted first;
- serving surplus pods whose workers the scheduler never registered are
  deleted next, without asking the scheduler to retire them;
- the rest of the surplus is retired through the scheduler, and exactly the
  pods it reports retired are annotated (`retiring-since`), then deleted;
- without a Ready scheduler pod, with an unreachable scheduler or with fewer
  workers retired than asked, no serving pod the scheduler did not retire is
  deleted and the pass comes back blocked;
- pods of another owner with the same labels are never touched, nor their names reused;
- every delete carries the pod's uid as a precondition;
- status is patched only when it changed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY
from fakes import Call, FakeDask, FakeKube, prefer

from dask_operator import constants as c
from dask_operator.core import ClusterSpec
from dask_operator.core.plan import ScalePlan
from dask_operator.errors import KubeApiError, RetireIncomplete, SchedulerUnreachable
from dask_operator.reconcile import DELETED_REMEMBERED, Reconciler
from dask_operator.scheduler_access import SchedulerAccess, SchedulerEndpoints
from dask_operator.workers import Outcome, Scaled

NS, NAME, CLUSTER_UID = "ns", "dask", "cluster-uid"
SCHEDULER_IP = "10.0.0.10"
URL = f"http://{SCHEDULER_IP}:{c.DASHBOARD_PORT}"
KEY = (NS, NAME)
T0, T1, T2, T3 = (f"2024-01-01T00:00:0{i}Z" for i in range(4))


# ---------------------------------------------------------------- builders


def cluster(replicas: int, name: str = NAME, uid: str = CLUSTER_UID, **metadata) -> dict:
    return {
        "apiVersion": c.API_VERSION, "kind": c.KIND,
        "metadata": {"name": name, "namespace": NS, "uid": uid, "generation": 1, **metadata},
        "spec": {"workers": {"replicas": replicas}},
    }


def scheduler_pod(cluster_name: str = NAME, ready: bool = True, ip: str | None = SCHEDULER_IP) -> dict:
    status: dict = {"phase": "Running" if ready else "Pending",
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{cluster_name}-scheduler-abc12", "namespace": NS,
                     "labels": {c.LABEL_ROLE: c.ROLE_SCHEDULER, c.LABEL_CLUSTER: cluster_name}},
        "status": status,
    }


def worker(index: int, phase: str = "Running", ready: bool = True, created: str | None = None,
           owner: str = CLUSTER_UID, retiring: str | None = None, cluster_name: str = NAME) -> dict:
    metadata: dict = {
        "name": f"{cluster_name}-worker-{index}", "namespace": NS,
        "labels": {c.LABEL_ROLE: c.ROLE_WORKER, c.LABEL_CLUSTER: cluster_name},
        "ownerReferences": [{"apiVersion": c.API_VERSION, "kind": c.KIND, "name": cluster_name, "uid": owner,
                             "controller": True}],
    }
    if created:
        metadata["creationTimestamp"] = created
    if retiring:
        metadata["annotations"] = {c.ANNOTATION_RETIRING: retiring}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pending(index: int, **kw) -> dict:
    return worker(index, phase="Pending", ready=False, **kw)


def unready(index: int, **kw) -> dict:
    return worker(index, ready=False, **kw)


def foreign(index: int, **kw) -> dict:
    """A same-labelled worker pod of a deleted Cluster of the same name (awaiting GC)."""
    return worker(index, owner="old-cluster-uid", **kw)


def pod_name(index: int) -> str:
    return f"{NAME}-worker-{index}"


def names(*indices: int) -> tuple[str, ...]:
    return tuple(pod_name(i) for i in indices)


def creates(*indices: int) -> list[str]:
    return [f"create pods/{n}" for n in names(*indices)]


def deletes(*indices: int) -> list[str]:
    return [f"delete pods/{n}" for n in names(*indices)]


def retires(*indices: int) -> list[str]:
    """Annotate every retired pod, then delete them."""
    return [f"patch pods/{n}" for n in names(*indices)] + deletes(*indices)


@dataclass
class Env:
    kube: FakeKube
    dask: FakeDask
    endpoints: SchedulerEndpoints
    reconciler: Reconciler

    def body(self, name: str = NAME) -> dict:
        return self.kube.object(c.API_VERSION, c.PLURAL, NS, name)

    async def reconcile(self, name: str = NAME, apply_children: bool = False) -> Outcome:
        return await self.reconciler.reconcile(self.body(name), apply_children=apply_children)

    def worker_names(self) -> list[str]:
        return [n for n in self.kube.names("v1", "pods", NS) if "-worker-" in n]

    def pod(self, name: str) -> dict | None:
        return self.kube.object("v1", "pods", NS, name)


def make_env(replicas: int, pods: list[dict], registered=None, *, scheduler: dict | str | None = "ready",
             access: SchedulerAccess = SchedulerAccess.POD_IP, **dask_kw) -> Env:
    kube = FakeKube()
    kube.add(c.API_VERSION, c.PLURAL, cluster(replicas))
    if scheduler == "ready":
        scheduler = scheduler_pod()
    if scheduler is not None:
        kube.add("v1", "pods", scheduler)
    for p in pods:
        kube.add("v1", "pods", p)
    if registered is None:  # every Running pod of ours has registered its worker
        registered = [p["metadata"]["name"] for p in pods if p["status"]["phase"] == "Running"
                      and p["metadata"]["ownerReferences"][0]["uid"] == CLUSTER_UID]
    dask = FakeDask(registered, **dask_kw)
    endpoints = SchedulerEndpoints()
    reconciler = Reconciler(kube, dask, access, endpoints)
    RECONCILERS.append(reconciler)
    return Env(kube, dask, endpoints, reconciler)


RECONCILERS: list[Reconciler] = []


@pytest.fixture(autouse=True)
def no_requeue_outlives_its_test():
    yield
    while RECONCILERS:
        reconciler = RECONCILERS.pop()
        for namespace, name in reconciler.requeue.pending():
            reconciler.forget(namespace, name)


def serving(*indices: int) -> list[dict]:
    return [worker(i) for i in indices]


# ---------------------------------------------------------------- one pass, decision by decision


@pytest.mark.parametrize(
    "desired, pods, registered, choose, pod_writes, scheduler_calls",
    [
        pytest.param(3, [], None, None, creates(0, 1, 2), [], id="creates-missing-from-zero"),
        pytest.param(4, serving(1, 3), None, None, creates(0, 2), [], id="creates-under-lowest-free-names"),
        pytest.param(3, [worker(0), pending(1)], None, None, creates(2), [],
                     id="pending-pod-counts-as-a-worker"),
        pytest.param(2, [worker(0, retiring=T1), worker(1)], None, None, creates(2) + deletes(0), [],
                     id="retiring-pod-deleted-and-replaced-under-a-new-name"),
        pytest.param(2, serving(0, 1), None, None, [], [], id="at-desired-no-op"),
        pytest.param(0, [], None, None, [], [], id="zero-at-zero-no-op"),
        pytest.param(1, [worker(0), pending(1), unready(2)], None, None, deletes(1, 2), [],
                     id="deletes-not-ready-pods-first"),
        pytest.param(2, [worker(0), unready(1, created=T2), pending(2, created=T1), worker(3)], None, None,
                     deletes(2, 1), [], id="not-running-before-running-unready"),
        pytest.param(2, serving(0, 1, 2), names(0, 1), None, deletes(2), ["workers", "workers"],
                     id="deletes-unregistered-without-retiring"),
        pytest.param(1, serving(0, 1, 2), names(0, 1), None, deletes(2) + retires(0),
                     ["workers", "workers", "retire(1)"], id="unregistered-first-then-retires-the-rest"),
        pytest.param(2, [worker(0, created=T0), worker(1, created=T3), worker(2, created=T1)], (), None,
                     deletes(1), ["workers", "workers"], id="unregistered-newest-first"),
        pytest.param(1, serving(0, 1, 2), None, None, retires(0, 1), ["workers", "retire(2)"],
                     id="retires-through-the-scheduler"),
        pytest.param(1, serving(0, 1, 2), None, prefer(pod_name(2), pod_name(0)), retires(0, 2),
                     ["workers", "retire(2)"], id="deletes-exactly-what-the-scheduler-picked"),
        pytest.param(0, serving(0), None, None, retires(0), ["workers", "retire(1)"], id="retires-to-zero"),
        pytest.param(1, [worker(0), worker(1), pending(2), worker(3)], names(0, 1), None,
                     deletes(2) + deletes(3) + retires(0), ["workers", "workers", "retire(1)"],
                     id="not-ready-then-unregistered-then-retired"),
    ],
)
async def test_one_pass_makes_exactly_these_pod_writes_and_scheduler_calls(
        desired, pods, registered, choose, pod_writes, scheduler_calls):
    env = make_env(desired, pods, registered, **({"choose": choose} if choose else {}))
    outcome = await env.reconcile()
    assert env.kube.writes("pods") == pod_writes
    assert env.dask.methods() == scheduler_calls
    assert outcome.blocked is None
    assert outcome.status["workers"]["count"] == desired
    assert len(env.worker_names()) == desired


async def test_created_pods_are_the_clusters_worker_pods():
    env = make_env(2, [])
    await env.reconcile()
    for name in names(0, 1):
        pod = env.pod(name)
        labels = pod["metadata"]["labels"]
        assert {k: v for k, v in labels.items() if k != c.LABEL_TEMPLATE_HASH} == {
            c.LABEL_ROLE: c.ROLE_WORKER, c.LABEL_CLUSTER: NAME}
        assert labels[c.LABEL_TEMPLATE_HASH] == ClusterSpec.from_resource(cluster(2)).worker_template_hash
        assert pod["metadata"]["ownerReferences"][0]["uid"] == CLUSTER_UID
        env_vars = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
        assert env_vars["DASK_WORKER_NAME"] == name


async def test_second_pass_after_scale_up_creates_nothing():
    env = make_env(3, [])
    await env.reconcile()
    env.kube.calls.clear()
    await env.reconcile()
    assert env.kube.writes("pods") == []


async def test_every_delete_carries_the_pods_uid_as_precondition():
    env = make_env(1, [worker(0), pending(1), worker(2), worker(3)], names(0, 2))
    uids = {n: env.pod(n)["metadata"]["uid"] for n in names(0, 1, 2, 3)}
    await env.reconcile()
    deleted = env.kube.calls_of("delete", "pods")
    assert [d.name for d in deleted] == list(names(1, 3, 0))
    assert all(d.uid == uids[d.name] for d in deleted)


async def test_retired_pods_are_annotated_before_they_are_deleted():
    env = make_env(1, serving(0, 1, 2))
    outcome = await env.reconcile()
    assert outcome.scaled.retired == names(0, 1)
    log = env.kube.writes("pods")
    for name in outcome.scaled.retired:
        assert log.index(f"patch pods/{name}") < log.index(f"delete pods/{name}")
    patches = env.kube.calls_of("patch", "pods")
    assert [p.subresource for p in patches] == [None, None]
    assert [list(p.body["metadata"]["annotations"]) for p in patches] == [[c.ANNOTATION_RETIRING]] * 2
    since = {p.body["metadata"]["annotations"][c.ANNOTATION_RETIRING] for p in patches}
    assert len(since) == 1 and since.pop().endswith("Z")


async def test_unregistered_pods_are_deleted_without_asking_the_scheduler_to_retire():
    env = make_env(1, serving(0, 1), names(0))
    outcome = await env.reconcile()
    assert outcome.scaled.unregistered == names(1)
    assert outcome.scaled.retired == ()
    assert "retire" not in {m for m, *_ in env.dask.calls}
    assert env.kube.writes("pods") == deletes(1)  # not annotated: never retired
    assert [u for m, u, *_ in env.dask.calls] == [URL, URL]


async def test_worker_registering_while_its_pod_is_deleted_is_reported(caplog):
    env = make_env(1, serving(0, 1), names(0))
    env.dask.after("workers", lambda: env.dask.register(pod_name(1)))  # between the two questions
    with caplog.at_level(logging.WARNING, logger="dask_operator.workers"):
        outcome = await env.reconcile()
    assert outcome.scaled.unregistered == names(1)
    assert env.kube.writes("pods") == deletes(1)
    assert env.dask.methods() == ["workers", "workers"]
    assert [r.getMessage() for r in caplog.records if r.name == "dask_operator.workers"] == [
        f"{NS}/{NAME}: workers {pod_name(1)} registered as their pods were deleted; their preStop hooks have the scheduler retire them"
    ]


# ---------------------------------------------------------------- blocked scale-down


def unreachable(env: Env) -> None:
    env.dask.unreachable = True


def retire_fails(env: Env) -> None:
    env.dask.fail_next("retire", SchedulerUnreachable("POST retire_workers: timed out"))


def retires_one(env: Env) -> None:
    env.dask.retire_limit = 1


def retires_someone_else(env: Env) -> None:
    env.dask.register("external-worker")
    env.dask.choose = prefer("external-worker")


@pytest.mark.parametrize(
    "scheduler, registered, setup, reason, pod_writes, scheduler_calls, retired",
    [
        pytest.param(None, None, None, "SchedulerUnreachable", [], [], (), id="no-scheduler-pod"),
        pytest.param(scheduler_pod(ready=False), None, None, "SchedulerUnreachable", [], [], (),
                     id="scheduler-pod-not-ready"),
        pytest.param(scheduler_pod(ip=None), None, None, "SchedulerUnreachable", [], [], (),
                     id="scheduler-pod-without-ip"),
        pytest.param("ready", None, unreachable, "SchedulerUnreachable", [], ["workers"], (),
                     id="scheduler-unreachable"),
        pytest.param("ready", None, retire_fails, "SchedulerUnreachable", [], ["workers", "retire(2)"], (),
                     id="retire-call-fails"),
        pytest.param("ready", names(0, 1), retire_fails, "SchedulerUnreachable", deletes(2),
                     ["workers", "workers", "retire(1)"], (), id="retire-fails-after-unregistered-deleted"),
        pytest.param("ready", None, retires_one, "RetireIncomplete", retires(0), ["workers", "retire(2)"],
                     names(0), id="retires-fewer-than-asked"),
        pytest.param("ready", None, retires_someone_else, "RetireIncomplete", retires(0),
                     ["workers", "retire(2)"], names(0), id="retires-a-worker-that-is-not-ours"),
    ],
)
async def test_blocked_scale_down_deletes_only_what_holds_no_data_or_was_retired(
        scheduler, registered, setup, reason, pod_writes, scheduler_calls, retired):
    env = make_env(1, serving(0, 1, 2), registered, scheduler=scheduler)
    if setup:
        setup(env)
    outcome = await env.reconcile()
    assert outcome.blocked is not None and outcome.blocked.reason == reason
    assert env.kube.writes("pods") == pod_writes
    assert env.dask.methods() == scheduler_calls
    assert outcome.scaled.retired == retired
    if reason == "RetireIncomplete":
        assert isinstance(outcome.blocked, RetireIncomplete)
        assert (outcome.blocked.requested, outcome.blocked.retired) == (2, list(retired))
    blocked = {cond["type"]: cond for cond in outcome.status["conditions"]}[c.COND_SCALE_DOWN_BLOCKED]
    assert (blocked["status"], blocked["reason"]) == ("True", reason)
    assert env.body()["status"]["conditions"] == outcome.status["conditions"]


async def test_no_ready_scheduler_still_deletes_pods_that_hold_no_data():
    env = make_env(1, [worker(0), worker(1), pending(2)], scheduler=scheduler_pod(ready=False))
    outcome = await env.reconcile()
    assert env.kube.writes("pods") == deletes(2)
    assert isinstance(outcome.blocked, SchedulerUnreachable)
    assert env.dask.calls == []


async def test_blocked_scale_down_clears_once_the_scheduler_answers():
    env = make_env(1, serving(0, 1))
    env.dask.unreachable = True
    assert (await env.reconcile()).blocked is not None
    env.dask.unreachable = False
    outcome = await env.reconcile()
    assert outcome.blocked is None and outcome.scaled.retired == names(0)
    blocked = {cond["type"]: cond for cond in env.body()["status"]["conditions"]}[c.COND_SCALE_DOWN_BLOCKED]
    assert (blocked["status"], blocked["reason"]) == ("False", "NotBlocked")


async def test_api_error_annotating_a_retired_pod_blocks_and_deletes_nothing():
    env = make_env(1, serving(0, 1))
    env.kube.fail_next("patch", KubeApiError(500, "PATCH pods/dask-worker-0: etcd timeout"))
    outcome = await env.reconcile()
    assert isinstance(outcome.blocked, KubeApiError) and outcome.blocked.code == 500
    assert env.kube.writes("pods") == [f"patch pods/{pod_name(0)}"]
    assert env.worker_names() == list(names(0, 1))


async def test_api_error_creating_a_pod_propagates_out_of_the_pass():
    env = make_env(2, [])
    env.kube.fail_next("create", KubeApiError(500, "POST pods: internal error"))
    with pytest.raises(KubeApiError) as raised:
        await env.reconcile()
    assert raised.value.code == 500
    assert env.kube.writes("pods") == creates(0, 1)
    assert env.worker_names() == list(names(1))


# ---------------------------------------------------------------- races with the API


async def test_create_conflict_leaves_the_count_right():
    env = make_env(2, serving(0))
    # Another writer (or this operator's previous pass) created dask-worker-1 after our list.
    env.kube.before("create", lambda call: env.kube.add("v1", "pods", pending(1)), name=pod_name(1))
    outcome = await env.reconcile()
    assert env.kube.writes("pods") == creates(1)
    assert outcome.scaled.plan == ScalePlan(create=names(1))
    assert env.worker_names() == list(names(0, 1))
    assert outcome.status["workers"]["count"] == 2
    env.kube.calls.clear()
    await env.reconcile()
    assert env.kube.writes("pods") == []


async def test_deleting_a_pod_that_is_already_gone_is_fine():
    env = make_env(1, [worker(0), pending(1)])
    env.kube.before("delete", lambda call: env.kube.remove("v1", "pods", NS, call.name))
    outcome = await env.reconcile()
    assert outcome.blocked is None
    assert env.kube.writes("pods") == deletes(1)
    assert env.worker_names() == list(names(0))
    assert outcome.status["workers"]["count"] == 1


async def test_retired_pod_already_gone_is_fine():
    env = make_env(1, serving(0, 1))
    env.kube.before("delete", lambda call: env.kube.remove("v1", "pods", NS, call.name))
    outcome = await env.reconcile()
    assert outcome.blocked is None and outcome.scaled.retired == names(0)
    assert env.worker_names() == list(names(1))


async def test_pod_replaced_under_the_same_name_is_not_deleted():
    env = make_env(1, [worker(0), pending(1)])

    def replace(call: Call) -> None:
        env.kube.remove("v1", "pods", NS, call.name)
        env.kube.add("v1", "pods", pending(1))  # a new uid

    env.kube.before("delete", replace)
    await env.reconcile()
    assert env.kube.writes("pods") == deletes(1)
    assert env.worker_names() == list(names(0, 1))


async def test_pods_being_deleted_keep_their_names():
    env = make_env(2, serving(0, 1))
    env.kube.graceful_delete = True  # the pod stays, with a deletionTimestamp, until its kubelet stops it
    await env.kube.delete("v1", "pods", NS, pod_name(1))
    env.kube.calls.clear()
    outcome = await env.reconcile()
    assert env.kube.writes("pods") == creates(2)
    assert outcome.status["workers"]["count"] == 2


# ---------------------------------------------------------------- pods of another owner


@pytest.mark.parametrize(
    "desired, pods, pod_writes, left",
    [
        pytest.param(2, [foreign(0)], creates(1, 2), names(0, 1, 2), id="foreign-name-not-reused"),
        pytest.param(1, [foreign(0), foreign(1, phase="Pending", ready=False)], creates(2), names(0, 1, 2),
                     id="foreign-not-counted"),
        pytest.param(0, [foreign(0, phase="Pending", ready=False), foreign(1, phase="Failed", ready=False)],
                     [], names(0, 1), id="foreign-not-deleted"),
        pytest.param(1, [foreign(0), worker(1), worker(2)], retires(1), names(0, 2),
                     id="foreign-not-retired"),
    ],
)
async def test_pods_of_another_owner_are_never_touched(desired, pods, pod_writes, left):
    env = make_env(desired, pods)
    outcome = await env.reconcile()
    assert env.kube.writes("pods") == pod_writes
    assert env.worker_names() == list(left)
    assert outcome.status["workers"]["count"] == desired


async def test_foreign_worker_retired_by_the_scheduler_keeps_its_pod():
    env = make_env(1, [foreign(0), worker(1), worker(2)], names(0, 1, 2), choose=prefer(pod_name(0)))
    outcome = await env.reconcile()
    assert isinstance(outcome.blocked, RetireIncomplete)
    assert env.kube.writes("pods") == []
    assert env.worker_names() == list(names(0, 1, 2))


# ---------------------------------------------------------------- scheduler and status


async def test_children_are_applied_first_when_asked():
    env = make_env(1, serving(0))
    await env.reconcile(apply_children=True)
    assert env.kube.log()[:4] == ["apply services/dask-scheduler", "apply deployments/dask-scheduler",
                                  "list pods", "list pods"]
    assert [call.selector for call in env.kube.calls_of("list")] == [
        f"{c.LABEL_CLUSTER}={NAME},{c.LABEL_ROLE}={c.ROLE_SCHEDULER}",
        f"{c.LABEL_CLUSTER}={NAME},{c.LABEL_ROLE}={c.ROLE_WORKER}",
    ]


async def test_children_are_not_applied_on_a_refresh():
    env = make_env(1, serving(0))
    await env.reconcile(apply_children=False)
    assert not env.kube.calls_of("apply")


@pytest.mark.parametrize(
    "scheduler, access, url",
    [
        pytest.param("ready", SchedulerAccess.POD_IP, URL, id="pod-ip"),
        pytest.param("ready", SchedulerAccess.SERVICE, f"http://{NAME}-scheduler.{NS}.svc:{c.DASHBOARD_PORT}",
                     id="service-dns"),
        pytest.param(None, SchedulerAccess.POD_IP, None, id="no-scheduler-pod"),
        pytest.param(scheduler_pod(ready=False), SchedulerAccess.POD_IP, None, id="scheduler-not-ready"),
        pytest.param(scheduler_pod(ready=False), SchedulerAccess.SERVICE, None, id="service-needs-ready-pod"),
    ],
)
async def test_scheduler_endpoints_get_the_url(scheduler, access, url):
    env = make_env(1, serving(0), scheduler=scheduler, access=access)
    await env.reconcile()
    assert env.endpoints.snapshot() == [(KEY, url)]


async def test_scheduler_url_is_what_the_scheduler_is_asked_at():
    env = make_env(0, serving(0))
    await env.reconcile()
    assert {url for _, url, *_ in env.dask.calls} == {URL}


async def test_status_is_patched_only_when_it_changed():
    env = make_env(2, serving(0, 1))
    await env.reconciler.reconcile_by_name(NS, NAME)
    status_patches = [call for call in env.kube.calls if call.subresource == "status"]
    assert [str(p) for p in status_patches] == ["patch clusters/dask/status"]
    assert env.body()["status"]["phase"] == "Running"

    env.kube.calls.clear()
    await env.reconciler.reconcile_by_name(NS, NAME)
    assert env.kube.writes() == []

    env.kube.store[("v1", "pods", NS, pod_name(1))]["status"]["conditions"][0]["status"] = "False"
    env.kube.calls.clear()
    await env.reconciler.reconcile_by_name(NS, NAME)
    assert env.kube.writes() == ["patch clusters/dask/status"]
    assert env.body()["status"]["workers"]["ready"] == 1


async def test_status_reflects_the_pods_after_the_step():
    env = make_env(1, serving(0, 1, 2))
    outcome = await env.reconcile()
    workers = outcome.status["workers"]
    assert (workers["count"], workers["ready"], workers["retiring"]) == (1, 1, [])
    assert workers["selector"] == f"{c.LABEL_CLUSTER}={NAME},{c.LABEL_ROLE}={c.ROLE_WORKER}"
    assert outcome.status["scheduler"]["address"] == f"tcp://{NAME}-scheduler.{NS}.svc:{c.SCHEDULER_PORT}"


async def test_status_lists_retired_pods_still_being_deleted():
    env = make_env(1, serving(0, 1))
    env.kube.graceful_delete = True
    outcome = await env.reconcile()
    retiring = outcome.status["workers"]["retiring"]
    assert [r["name"] for r in retiring] == list(names(0))
    assert outcome.status["workers"]["count"] == 1


# ---------------------------------------------------------------- reconcile_by_name


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param(None, id="missing"),
        pytest.param(cluster(2, deletionTimestamp=T1), id="deleting"),
    ],
)
async def test_reconcile_by_name_of_a_missing_or_deleting_cluster_does_nothing(stored):
    env = make_env(2, [])
    env.kube.remove(c.API_VERSION, c.PLURAL, NS, NAME)
    if stored:
        env.kube.add(c.API_VERSION, c.PLURAL, stored)
    await env.reconciler.reconcile_by_name(NS, NAME)
    assert env.kube.log() == ["get clusters/dask"]
    assert env.dask.calls == []
    assert env.endpoints.snapshot() == []


async def test_reconcile_by_name_refreshes_without_applying_children():
    env = make_env(2, serving(0))
    await env.reconciler.reconcile_by_name(NS, NAME)
    assert env.kube.writes() == creates(1) + ["patch clusters/dask/status"]


async def test_forget_drops_the_clusters_endpoint():
    env = make_env(1, serving(0))
    await env.reconcile()
    env.reconciler.forget(NS, NAME)
    assert env.endpoints.snapshot() == []


def series_left(name: str = NAME) -> list:
    return [s for m in REGISTRY.collect() for s in m.samples
            if s.labels.get("namespace") == NS and s.labels.get("cluster") == name]


async def test_a_pass_that_ends_after_the_delete_leaves_nothing_behind():
    """The pass read the Cluster before its deletion; the delete handler ran while it scaled."""
    env = make_env(0, serving(0))
    env.dask.after("retire", lambda: env.reconciler.forget(NS, NAME, CLUSTER_UID))
    await env.reconcile()
    assert env.endpoints.snapshot() == []
    assert env.reconciler._locks == {}
    assert series_left() == []


async def test_a_pass_that_starts_after_the_delete_leaves_nothing_behind():
    """A pod event's GET saw the Cluster just before the delete handler forgot it."""
    env = make_env(1, serving(0))
    body = env.body()
    env.reconciler.forget(NS, NAME, CLUSTER_UID)
    await env.reconciler.reconcile(body, apply_children=False)
    assert env.endpoints.snapshot() == []
    assert env.reconciler._locks == {}
    assert series_left() == []


async def test_a_new_cluster_of_a_deleted_ones_name_is_remembered():
    env = make_env(1, serving(0))
    env.reconciler.forget(NS, NAME, "the-old-uid")
    await env.reconcile()
    assert env.endpoints.snapshot() == [((NS, NAME), URL)]


def test_deleted_uids_remembered_are_bounded():
    env = make_env(1, [])
    for i in range(DELETED_REMEMBERED + 5):
        env.reconciler.forget(NS, f"c{i}", f"uid-{i}")
    assert len(env.reconciler._deleted) == DELETED_REMEMBERED
    assert "uid-0" not in env.reconciler._deleted and f"uid-{DELETED_REMEMBERED + 4}" in env.reconciler._deleted


# ---------------------------------------------------------------- Outcome.summary


@pytest.mark.parametrize(
    "plan, retired, unregistered, expected",
    [
        pytest.param(ScalePlan(), (), (), None, id="nothing-changed"),
        pytest.param(ScalePlan(create=names(0, 1)), (), (), "created 2 worker pods (desired 3)", id="created"),
        pytest.param(ScalePlan(delete=names(2)), (), (), "deleted 1 worker pods holding no data or already "
                     "retired (desired 3)", id="deleted"),
        pytest.param(ScalePlan(retire=2), (), names(4), "deleted 1 worker pods the scheduler had not "
                     "registered (desired 3)", id="unregistered"),
        pytest.param(ScalePlan(retire=2), names(3, 4), (), "retired 2 workers through the scheduler and "
                     "deleted their pods (desired 3)", id="retired"),
        pytest.param(ScalePlan(retire=2), (), (), None, id="retire-asked-nothing-done"),
        pytest.param(
            ScalePlan(create=names(0), delete=names(2)), names(3), names(4),
            "created 1 worker pods; deleted 1 worker pods holding no data or already retired; "
            "deleted 1 worker pods the scheduler had not registered; "
            "retired 1 workers through the scheduler and deleted their pods (desired 3)",
            id="everything-in-order",
        ),
    ],
)
def test_outcome_summary_wording(plan, retired, unregistered, expected):
    scaled = Scaled(plan, [], plan.create, plan.delete, unregistered, retired)
    assert Outcome(3, {}, scaled).summary() == expected


async def test_outcome_summary_of_a_real_pass():
    env = make_env(1, [worker(0), worker(1), pending(2), worker(3)], names(0, 1))
    outcome = await env.reconcile()
    assert outcome.summary() == (
        "deleted 1 worker pods holding no data or already retired; "
        "deleted 1 worker pods the scheduler had not registered; "
        "retired 1 workers through the scheduler and deleted their pods (desired 1)"
    )


async def test_blocked_pass_summary_says_only_what_was_done():
    env = make_env(1, serving(0, 1), scheduler=None)
    outcome = await env.reconcile()
    assert outcome.summary() is None
    assert str(outcome.blocked) == "no Ready scheduler pod"


# ---------------------------------------------------------------- fixed bugs (found by these tests)


async def test_summary_counts_only_pods_actually_created():
    env = make_env(2, serving(0))
    env.kube.before("create", lambda call: env.kube.add("v1", "pods", pending(1)), name=pod_name(1))
    outcome = await env.reconcile()
    assert outcome.summary() is None


async def test_failed_race_check_still_reports_the_unregistered_pods_it_deleted():
    env = make_env(1, serving(0, 1), names(0))
    env.dask.after("workers", lambda: env.dask.fail_next("workers", SchedulerUnreachable("GET get_workers")))
    outcome = await env.reconcile()
    assert env.kube.writes("pods") == deletes(1)
    assert outcome.scaled.unregistered == names(1)


# ---------------------------------------------------------------- replacement of outdated workers

CURRENT = ClusterSpec.from_resource(cluster(1)).worker_template_hash


def outdated(index: int, **kw) -> dict:
    """A worker pod made from an earlier worker template."""
    pod = worker(index, **kw)
    pod["metadata"]["labels"][c.LABEL_TEMPLATE_HASH] = "0123456789ab"
    return pod


def current(index: int, **kw) -> dict:
    pod = worker(index, **kw)
    pod["metadata"]["labels"][c.LABEL_TEMPLATE_HASH] = CURRENT
    return pod


def address(env: Env, index: int) -> str:
    return env.dask.registered[pod_name(index)]


async def test_replacement_creates_new_workers_first_and_retires_nothing_yet():
    env = make_env(2, [outdated(0), outdated(1)])
    outcome = await env.reconcile()
    assert env.kube.writes("pods") == creates(2), "one new worker (surge 1), no old one touched"
    assert env.dask.methods() == ["workers"]
    assert outcome.status["workers"]["outdated"] == 2
    progressing = {x["type"]: x for x in outcome.status["conditions"]}["Progressing"]
    assert progressing["reason"] == "ReplacingWorkers"
    assert env.pod(pod_name(2))["metadata"]["labels"][c.LABEL_TEMPLATE_HASH] == CURRENT


async def test_an_old_worker_waits_until_its_replacement_is_registered():
    env = make_env(2, [outdated(0), outdated(1), current(2)], registered=names(0, 1))
    outcome = await env.reconcile()
    assert env.kube.writes("pods") == [], "the new pod is Ready but its worker has not registered"
    assert env.dask.methods() == ["workers"]
    assert outcome.blocked is None


async def test_an_old_worker_is_retired_by_address_once_its_replacement_serves():
    env = make_env(2, [outdated(0), outdated(1), current(2)])
    old = address(env, 1)
    outcome = await env.reconcile()
    assert env.dask.methods() == ["workers", f"retire({old})"]
    assert env.kube.writes("pods") == retires(1)
    assert outcome.scaled.replaced == names(1) and outcome.blocked is None
    assert "replaced 1 outdated workers" in outcome.summary()


async def test_an_old_worker_the_scheduler_never_registered_is_deleted_without_retiring():
    env = make_env(1, [outdated(0), current(1)], registered=names(1))
    await env.reconcile()
    assert env.kube.writes("pods") == deletes(0)
    assert env.dask.methods() == ["workers"]


@pytest.mark.parametrize("fault", ["unreachable", "refuses"])
async def test_no_old_worker_is_deleted_when_the_scheduler_does_not_retire_it(fault):
    env = make_env(1, [outdated(0), outdated(1), current(2)])
    if fault == "unreachable":
        env.dask.unreachable = True
    else:
        env.dask.retire_limit = 0
    outcome = await env.reconcile()
    assert env.kube.writes("pods") == []
    assert outcome.blocked is not None
    assert outcome.blocked.reason == ("SchedulerUnreachable" if fault == "unreachable" else "RetireIncomplete")
    assert sorted(env.worker_names()) == list(names(0, 1, 2))


async def test_replacement_converges_without_dropping_below_desired():
    """Pass after pass, with new pods becoming Ready and registering between passes: every
    old worker goes through the scheduler, serving workers never drop below desired, and
    live pods never exceed desired + surge."""
    desired = 5
    env = make_env(desired, [outdated(i) for i in range(desired)])
    for _ in range(20):
        await env.reconcile()
        pods = [env.pod(n) for n in env.worker_names()]
        assert len(pods) <= desired + 2, "surge of 25 % (2 pods for 5)"
        registered = [n for n in env.worker_names() if n in env.dask.registered]
        assert len(registered) >= desired, "never fewer serving workers than desired"
        for pod in pods:  # the new pods start, and their workers register
            if (pod.get("status") or {}).get("phase") != "Running":
                pod["status"] = worker(0)["status"]
                env.kube.add("v1", "pods", pod)
                env.dask.register(pod["metadata"]["name"])
        if all(env.pod(n)["metadata"]["labels"][c.LABEL_TEMPLATE_HASH] == CURRENT for n in env.worker_names()):
            break
    else:
        raise AssertionError("the replacement did not finish in 20 passes")
    retired = [call for call in env.dask.calls if call[0] == "retire"]
    assert sum(len(call) - 2 for call in retired) == desired, "each old worker retired once, by address"
    assert len(env.worker_names()) == desired
    assert (await env.reconcile()).status["workers"]["outdated"] == 0


async def test_a_cluster_waiting_for_a_replacement_to_register_is_reconciled_again(monkeypatch):
    """No pod event announces a registration: the reconciler comes back by itself."""
    from helpers import async_wait_for

    from dask_operator import reconcile

    monkeypatch.setattr(reconcile, "REQUEUE_SECONDS", 0.01)
    env = make_env(2, [outdated(0), outdated(1), current(2)], registered=names(0, 1))
    outcome = await env.reconcile()
    assert outcome.scaled.waiting and env.kube.writes("pods") == []
    env.dask.register(pod_name(2))

    async def old_one_gone() -> bool:
        return pod_name(1) not in env.worker_names()

    await async_wait_for(old_one_gone, 5, "the requeued reconcile to retire an old worker", interval=0.01)
    assert env.kube.writes("pods") == retires(1)


# ---------------------------------------------------------------- a lost scheduler


async def test_a_lost_scheduler_posts_one_warning_and_deletes_no_worker():
    env = make_env(2, serving(0, 1))
    await env.reconcile()  # Available=True
    env.kube.add("v1", "pods", scheduler_pod(ready=False))  # its pod deleted, restarting, or its node lost
    before = env.worker_names()
    await env.reconcile()
    await env.reconcile()
    events = [call.body for call in env.kube.calls_of("create", "events")]
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "SchedulerLost")]
    assert events[0]["involvedObject"]["name"] == NAME and "2 workers keep their pods" in events[0]["message"]
    assert env.worker_names() == before
    assert not env.kube.writes("pods"), "no pod created, annotated or deleted for it"


# ---------------------------------------------------------------- a failed pass is retried by the reconciler


@pytest.mark.parametrize("verb, apply_children, error", [
    pytest.param("create", False, KubeApiError(409, "POST pods: conflict", "Conflict"), id="create-conflict"),
    pytest.param("patch", False, KubeApiError(0, "PATCH clusters/status: ReadTimeout"), id="status-timeout"),
    pytest.param("apply", True, KubeApiError(409, "PATCH deployments: conflict", "Conflict"),
                 id="children-conflict-retried-with-the-children"),
])
async def test_a_failed_pass_is_retried_until_it_converges(verb, apply_children, error, monkeypatch):
    """No event follows a write that failed: the reconciler comes back by itself,
    and applies the children if the failed pass was to."""
    from helpers import async_wait_for

    from dask_operator import requeue

    monkeypatch.setattr(requeue, "RETRY_FIRST_SECONDS", 0.01)
    env = make_env(2, [])
    env.kube.fail_next(verb, error)
    with pytest.raises(KubeApiError):
        await env.reconcile(apply_children=apply_children)
    assert env.reconciler.requeue.pending() == [(NS, NAME)]

    async def converged() -> bool:
        return len(env.worker_names()) == 2 and not env.reconciler.requeue.pending()

    await async_wait_for(converged, 5, "the retried pass to create both workers", interval=0.01)
    applied = [call.plural for call in env.kube.calls_of("apply")]
    assert applied == (["services", "services", "deployments"] if apply_children else []), \
        "the failed apply (logged), then the retry applies both children"
    assert env.body()["status"]["workers"]["count"] == 2


async def test_a_failed_read_by_name_is_retried_too(monkeypatch):
    from helpers import async_wait_for

    from dask_operator import requeue

    monkeypatch.setattr(requeue, "RETRY_FIRST_SECONDS", 0.01)
    env = make_env(1, [])
    env.kube.fail_next("get", KubeApiError(0, "GET clusters: ConnectError"))
    with pytest.raises(KubeApiError):
        await env.reconciler.reconcile_by_name(NS, NAME)

    async def created() -> bool:
        return env.worker_names() == [pod_name(0)]

    await async_wait_for(created, 5, "the retried pass", interval=0.01)


async def test_a_blocked_scale_down_is_retried_with_back_off_until_it_completes(monkeypatch):
    """The reconciler retries a blocked pass itself (the kopf edge only warns)."""
    from helpers import async_wait_for

    from dask_operator import requeue

    monkeypatch.setattr(requeue, "RETRY_FIRST_SECONDS", 0.01)
    env = make_env(1, serving(0, 1))
    env.dask.unreachable = True
    assert (await env.reconcile()).blocked is not None
    assert env.reconciler.requeue.pending() == [(NS, NAME)]
    env.dask.unreachable = False

    async def retired() -> bool:
        return env.worker_names() == [pod_name(1)] and not env.reconciler.requeue.pending()

    await async_wait_for(retired, 5, "the retried pass to retire the surplus worker", interval=0.01)
    assert env.kube.writes("pods") == retires(0)


async def test_a_deleted_cluster_is_not_retried():
    env = make_env(2, [])
    env.kube.fail_next("create", KubeApiError(500, "POST pods: boom"))
    with pytest.raises(KubeApiError):
        await env.reconcile()
    env.reconciler.forget(NS, NAME, CLUSTER_UID)
    assert env.reconciler.requeue.pending() == []
