"""The sandbox's partitioned node: the admission policy that refuses its heartbeat,
and the pod runner's cut and restore of its pods' links (test_lost_node.py runs
both on the sandbox)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dask_operator.sandbox import SandboxConfig, kwok, netns, podrunner
from dask_operator.sandbox.podrunner import PodRunner, RunningPod


def test_the_policy_refuses_only_that_nodes_lease() -> None:
    policy, binding = kwok.partition_objects("kwok-node-1")
    assert policy["kind"] == "ValidatingAdmissionPolicy" and binding["kind"] == "ValidatingAdmissionPolicyBinding"
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    rule, = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["apiGroups"], rule["resources"], rule["operations"]) == (
        ["coordination.k8s.io"], ["leases"], ["CREATE", "UPDATE"])
    condition, = policy["spec"]["matchConditions"]
    assert condition["expression"] == (
        "request.namespace == 'kube-node-lease' && object.metadata.name == 'kwok-node-1'")
    assert "kwok-node-1 is partitioned" in policy["spec"]["validations"][0]["message"]


def test_kwok_manages_the_nodes_it_creates_and_not_partitioned_ones() -> None:
    assert kwok.MANAGED != kwok.PARTITIONED
    nodes = kwok.nodes(SandboxConfig(nodes=3))
    assert [n["metadata"]["annotations"][kwok.NODE_ANNOTATION] for n in nodes] == [kwok.MANAGED] * 3


def _pod(tmp_path: Path) -> RunningPod:
    return RunningPod(uid="u", namespace="ns", name="p", netns="n", veth_slot=3, address="10.0.0.2",
                      workdir=tmp_path, volumes=None, node="kwok-node-1")


@pytest.mark.parametrize(("was", "cut", "links", "leave_be"), [
    pytest.param(False, False, [], False, id="healthy-node-tended"),
    pytest.param(False, True, [False], True, id="partitioned-link-down-and-left-be"),
    pytest.param(True, True, [], True, id="still-partitioned-nothing-done"),
    pytest.param(True, False, [True], False, id="healed-link-up-and-tended"),
])
def test_the_runner_cuts_and_restores_a_pods_link(
        monkeypatch, tmp_path: Path, was: bool, cut: bool, links: list[bool], leave_be: bool) -> None:
    calls: list[tuple[str, bool]] = []
    monkeypatch.setattr(netns, "set_link", lambda veth, up: calls.append((veth, up)))
    runner = PodRunner.__new__(PodRunner)
    runner.network = netns.Network(0)
    rp = _pod(tmp_path)
    rp.partitioned = was
    assert asyncio.run(runner._partitioned(rp, cut)) is leave_be
    assert calls == [(runner.network.veth_name(3), up) for up in links]
    assert rp.partitioned is cut


def test_a_pod_never_admitted_on_a_partitioned_node_is_left_be(monkeypatch) -> None:
    monkeypatch.setattr(netns, "set_link", lambda *a: pytest.fail("no link to set"))
    runner = PodRunner.__new__(PodRunner)
    assert asyncio.run(runner._partitioned(None, True)) is True
    assert asyncio.run(runner._partitioned(None, False)) is False


def test_the_runner_reads_partitioned_nodes_from_their_annotation() -> None:
    runner = PodRunner.__new__(PodRunner)
    runner._cut = set()

    def node(name: str, value: str | None) -> dict:
        return {"metadata": {"name": name, **({"annotations": {kwok.NODE_ANNOTATION: value}} if value else {})}}

    for event, name, value in [("ADDED", "a", kwok.PARTITIONED), ("ADDED", "b", kwok.MANAGED), ("ADDED", "c", None),
                               ("MODIFIED", "b", kwok.PARTITIONED), ("MODIFIED", "a", kwok.MANAGED),
                               ("DELETED", "b", kwok.PARTITIONED)]:
        runner._node_event(event, node(name, value))
        if (event, name) == ("ADDED", "c"):
            assert runner._cut == {"a"}
    assert runner._cut == set(), "healed, then deleted"
    assert podrunner.NODE_ANNOTATION == kwok.NODE_ANNOTATION
