"""Kubernetes I/O for the operator: plain dicts over kr8s' authenticated client.

kr8s finds credentials as kubectl does (KUBECONFIG, in-cluster service
account). Objects go over the wire as the dicts the core builds; no object
wrappers are created on the hot path of a 100-pod scale-up.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import kr8s
import kr8s.asyncio

from . import metrics

log = logging.getLogger(__name__)

FIELD_MANAGER = "dask-operator"


def _status_code(error: kr8s.ServerError) -> int | None:
    return error.response.status_code if error.response is not None else None


class Kube:
    """The few verbs the operator needs, each one API call."""

    def __init__(self, api: kr8s.asyncio.Api) -> None:
        self.api = api

    @classmethod
    async def connect(cls) -> "Kube":
        return cls(await kr8s.asyncio.api())

    async def _call(self, method: str, version: str, namespace: str | None, url: str, **kwargs) -> Any:
        try:
            async with self.api.call_api(method, version=version, namespace=namespace, url=url, **kwargs) as r:
                return r.json() if r.content else None
        except kr8s.ServerError as e:
            metrics.API_ERRORS.labels(method=method, code=str(_status_code(e))).inc()
            raise

    async def list(self, version: str, plural: str, namespace: str, selector: str) -> list[dict]:
        body = await self._call("GET", version, namespace, plural, params={"labelSelector": selector})
        return body["items"]

    async def get(self, version: str, plural: str, namespace: str, name: str) -> dict | None:
        try:
            return await self._call("GET", version, namespace, f"{plural}/{name}")
        except kr8s.ServerError as e:
            if _status_code(e) == 404:
                return None
            raise

    async def create(self, version: str, plural: str, namespace: str, body: Mapping) -> bool:
        """Create; False when an object of that name exists already (409)."""
        try:
            await self._call("POST", version, namespace, plural, content=json.dumps(body),
                             headers={"Content-Type": "application/json"})
            return True
        except kr8s.ServerError as e:
            if _status_code(e) == 409:
                return False
            raise

    async def apply(self, version: str, plural: str, namespace: str, body: Mapping) -> dict:
        """Server-side apply as the operator's field manager (idempotent)."""
        return await self._call(
            "PATCH", version, namespace, f"{plural}/{body['metadata']['name']}",
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            content=json.dumps(body), headers={"Content-Type": "application/apply-patch+yaml"},
        )

    async def patch(self, version: str, plural: str, namespace: str, name: str, patch: Mapping,
                    subresource: str | None = None) -> dict | None:
        url = f"{plural}/{name}" + (f"/{subresource}" if subresource else "")
        try:
            return await self._call("PATCH", version, namespace, url, content=json.dumps(patch),
                                    headers={"Content-Type": "application/merge-patch+json"})
        except kr8s.ServerError as e:
            if _status_code(e) == 404:
                return None
            raise

    async def delete(self, version: str, plural: str, namespace: str, name: str, uid: str | None = None) -> bool:
        """Delete (with a uid precondition when given); False when already gone."""
        options: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            await self._call("DELETE", version, namespace, f"{plural}/{name}", content=json.dumps(options),
                             headers={"Content-Type": "application/json"})
            return True
        except kr8s.ServerError as e:
            if _status_code(e) in (404, 409):
                return False
            raise
