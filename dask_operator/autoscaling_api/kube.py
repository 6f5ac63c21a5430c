"""The Kubernetes calls of the autoscaling API, through kr8s' `Api.call_api`.

Plain dicts in and out; every failure is `KubeApiError` (code 0: the API
server could not be reached). 404 is an answer, not an error, for `get` and
`delete`. kr8s' own retry on 401/403 (re-authentication) is not used: a 403
is RBAC's answer and comes back at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import httpx

from ..errors import KubeApiError

TIMEOUT_SECONDS = 30.0


class KubeClient:
    def __init__(self, api) -> None:
        """`api`: a `kr8s.asyncio.Api`."""
        self.api = api

    async def _call(self, method: str, version: str, namespace: str | None, url: str,
                    params: Mapping | None = None, body: Mapping | None = None) -> tuple[int, dict | None]:
        kwargs: dict = {"timeout": TIMEOUT_SECONDS, "params": dict(params or {})}
        if body is not None:
            kwargs.update(content=json.dumps(body), headers={"Content-Type": "application/json"})
        try:
            async with self.api.call_api(method, version=version, namespace=namespace, url=url,
                                         raise_for_status=False, **kwargs) as r:
                code, text = r.status_code, r.text
        except httpx.HTTPError as e:
            raise KubeApiError(0, f"{method} {url}: {type(e).__name__}: {e}") from e
        try:
            answer = json.loads(text) if text else None
        except ValueError:
            answer = None
        if code >= 400 and code != 404:
            message = answer.get("message", text) if isinstance(answer, dict) else text
            raise KubeApiError(code, f"{method} {url}: {message}")
        return code, answer

    async def get(self, version: str, plural: str, namespace: str, name: str) -> dict | None:
        """The object, None when it (or its kind) does not exist."""
        code, answer = await self._call("GET", version, namespace, f"{plural}/{name}")
        return None if code == 404 else answer

    async def list(self, version: str, plural: str, namespace: str | None, label_selector: str | None = None,
                   field_selector: str | None = None) -> list[dict]:
        """Objects in `namespace` (None: all namespaces); [] when the kind is not served."""
        params = {k: v for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v}
        code, answer = await self._call("GET", version, namespace, plural, params)
        return [] if code == 404 else list((answer or {}).get("items") or [])

    async def create(self, version: str, plural: str, namespace: str, body: Mapping) -> dict:
        """The created object; KubeApiError(409) when the name is taken."""
        code, answer = await self._call("POST", version, namespace, plural, body=body)
        if code == 404:
            raise KubeApiError(404, f"POST {plural}: namespace {namespace} or the kind is not served")
        return answer or {}

    async def delete(self, version: str, plural: str, namespace: str, name: str, uid: str | None = None) -> bool:
        """Delete (only that uid, when given); False when already gone."""
        options: dict = {"propagationPolicy": "Background"}
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            code, _ = await self._call("DELETE", version, namespace, f"{plural}/{name}", body=options)
        except KubeApiError as e:
            if e.code == 409:  # the uid precondition failed: that object is gone
                return False
            raise
        return code != 404
