"""The Ray head's dashboard HTTP API, as the KubeRay backend uses it: which worker nodes are idle.

`GET /nodes?view=summary` (the dashboard's node module, port 8265) answers
`{"result": true, "msg": ..., "data": {"summary": [node, ...], ...}}`; each
node's `raylet` is the GCS's `GcsNodeInfo` (src/ray/protobuf/gcs.proto) as
camelCase JSON: `nodeManagerAddress` (the pod IP under KubeRay),
`nodeManagerHostname` (the pod's hostname, its name), `state` (ALIVE/DEAD),
`isHeadNode` and `stateSnapshot` (`NodeSnapshot`: `state` IDLE / ACTIVE /
DRAINING, `idleDurationMs`, `nodeActivity`: why a node is not idle). The raylet
reports a node IDLE only when no resource is in use on it -- no task or actor
holds CPU/GPU/memory and no object occupies its object store -- which is the
same signal Ray's own autoscaler (v2) scales down by.

The state API's `GET /api/v0/nodes` lists nodes too, but its `NodeState`
carries no idle state, so it is not used.

Checked against a real Ray 2.60.0 head (two raylets, with and without
`RAY_enable_autoscaler_v2=1`): the answer has exactly this shape, but the
dashboard serves each node's snapshot as it was when the node registered
(`ACTIVE`, `idleDurationMs: 0`) and never refreshes it, so today the head
reports no worker idle and a scale-down that reaches Ready workers is refused.
That fails safe; it is not yet useful.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import httpx

from .errors import DaskOperatorError

log = logging.getLogger(__name__)

# The head answers from memory; a head that cannot answer in this time is
# treated as unreachable (the scale-down then removes only unready workers).
CONNECT_TIMEOUT_SECONDS = 2.0
QUERY_TIMEOUT_SECONDS = 5.0
IDLE = "IDLE"


class RayHeadUnreachable(DaskOperatorError):
    """The Ray head's dashboard could not be reached or gave no usable answer."""


class RayHeadClient:
    """Thin async client; every failure surfaces as `RayHeadUnreachable`."""

    def __init__(self, http: httpx.AsyncClient | None = None) -> None:
        self._http = http or httpx.AsyncClient()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def idle_workers(self, base_url: str) -> frozenset[str]:
        """Names and IPs of the ALIVE worker nodes the head reports IDLE.

        Each idle node contributes every identifier it has (IP, hostname,
        instance id, node name), so a pod matches by its name or its IP.
        """
        url = f"{base_url}/nodes"
        timeout = httpx.Timeout(QUERY_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS)
        try:
            response = await self._http.get(url, params={"view": "summary"}, timeout=timeout)
        except httpx.HTTPError as e:
            raise RayHeadUnreachable(f"GET {url}: {type(e).__name__}" + (f": {e}" if str(e) else "")) from e
        if response.status_code != 200:
            raise RayHeadUnreachable(f"GET {url}: HTTP {response.status_code}: {response.text[:200]}")
        try:
            body = response.json()
        except ValueError as e:
            raise RayHeadUnreachable(f"GET {url}: not JSON: {response.text[:200]}") from e
        try:
            if body.get("result") is not True:
                raise ValueError(body.get("msg"))
            nodes = body["data"]["summary"]
            return frozenset(name for node in nodes if _idle_worker(node) for name in _identifiers(node))
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise RayHeadUnreachable(f"GET {url}: unexpected answer: {str(body)[:200]}") from e


def _idle_worker(node: Mapping) -> bool:
    raylet = node["raylet"]
    snapshot = raylet.get("stateSnapshot") or {}
    return raylet.get("state") == "ALIVE" and not raylet.get("isHeadNode") and snapshot.get("state") == IDLE


def _identifiers(node: Mapping) -> set[str]:
    raylet = node["raylet"]
    values = (raylet.get("nodeManagerAddress"), raylet.get("nodeManagerHostname"), raylet.get("instanceId"),
              raylet.get("nodeName"), node.get("hostname"), node.get("ip"))
    return {str(v) for v in values if v}
