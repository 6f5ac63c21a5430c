"""The worker pods' default ``preStop`` hook: retire this worker through the scheduler.

Whoever deletes a worker pod -- the operator, ``kubectl delete``, an eviction
or a node drain -- the kubelet runs this hook before it sends SIGTERM. The hook
asks the scheduler (``POST /api/v1/retire_workers``) to retire the worker of
this pod's name, which moves every key only it holds to the other workers;
SIGTERM then stops a worker that holds nothing. A worker the scheduler does
not know (never registered, or already retired by the operator) is left as
it is, and the hook ends at once. The pod's ``terminationGracePeriodSeconds``
(30 s by default) bounds the time the data may take to move: set it higher in
the worker template for workers that hold a lot.

Only the standard library is used: any image that runs Dask has it.
"""

from __future__ import annotations

from dask_operator import constants as c

# Reads DASK_SCHEDULER_ADDRESS (tcp://<host>:8786) and DASK_WORKER_NAME, which
# the operator sets on every worker container.
RETIRE_SELF = f"""\
import json, os, urllib.request as u
host = os.environ["DASK_SCHEDULER_ADDRESS"].split("://")[-1].rsplit(":", 1)[0]
api = "http://%s:{c.DASHBOARD_PORT}/api/v1" % host
name = os.environ["DASK_WORKER_NAME"]
workers = json.load(u.urlopen(api + "/get_workers", timeout=5))["workers"]
mine = [w["address"] for w in workers if str(w["name"]) == name]
if mine:
    body = json.dumps({{"workers": mine}}).encode()
    u.urlopen(u.Request(api + "/retire_workers", body, {{"Content-Type": "application/json"}}), timeout=600)
"""


def retire_self_lifecycle() -> dict:
    """A container ``lifecycle`` whose preStop hook runs `RETIRE_SELF` with python."""
    return {"preStop": {"exec": {"command": ["python", "-c", RETIRE_SELF]}}}
