"""A change to the worker template replaces running workers gracefully, on the sandbox.

Real Dask workers hold results; the template changes (as a hardware tier's
scale does through the API); new workers come first, and each old one goes
only once the scheduler has retired it, so every result survives and none is
recomputed.
"""

from __future__ import annotations

import json

import pytest
from test_operator import client_for, cluster, status, workers

from helpers import Kube, OperatorPod, wait_for

from dask_operator import constants as c

pytestmark = pytest.mark.e2e


def template_hashes(kube: Kube, ns: str, name: str) -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["labels"].get(c.LABEL_TEMPLATE_HASH)
            for p in workers(kube, ns, name)}


def test_template_change_replaces_workers_new_first_and_loses_no_result(
        kube: Kube, sandbox, operator: OperatorPod, namespace: str) -> None:
    kube.apply(cluster("roll", 3), namespace)
    with client_for(kube, namespace, "roll") as client:
        client.wait_for_workers(3, timeout=90)
        futures = client.map(lambda i: bytes(10_000) + i.to_bytes(4, "big"), range(150), pure=False)
        client.gather(futures)
        old = template_hashes(kube, namespace, "roll")
        assert len(set(old.values())) == 1 and None not in old.values(), "every pod names its template"

        env = [{"name": "ROLLOUT", "value": "2"}]
        patch = {"spec": {"workers": {"template": {"spec": {"containers": [
            {**cluster("roll", 3)["spec"]["workers"]["template"]["spec"]["containers"][0], "env": env}]}}}}}
        kube.kubectl("patch", "clusters.dask.charmtx.com", "roll", "-n", namespace, "--type=merge",
                     "-p", json.dumps(patch))

        def replaced() -> bool:
            now = template_hashes(kube, namespace, "roll")
            st = status(kube, namespace, "roll").get("workers", {})
            return (len(now) == 3 and not set(now.values()) & set(old.values())
                    and st.get("outdated") == 0 and st.get("ready") == 3)

        wait_for(replaced, 180, "three new workers and no old one")
        client.wait_for_workers(3, timeout=60)
        results = client.gather(futures)
        assert [int.from_bytes(r[-4:], "big") for r in results] == list(range(150)), "every result retrievable"

        events = [e for _, e in client.get_events("all")]
        retired = [a for e in events if e.get("action") == "retire-workers" for a in e["retired"]]
        assert len(retired) == 3, f"each old worker retired through the scheduler once: {retired}"
        lost = [e for e in events if e.get("action") == "remove-worker"
                and (e.get("lost-computed-tasks") or e.get("lost-scattered-tasks"))]
        assert not lost, f"workers left with data: {lost}"
    # The old pods may still be terminating when the last one is replaced: Running follows.
    wait_for(lambda: status(kube, namespace, "roll")["phase"] == "Running", 60, "phase Running once replaced")
