"""Kubernetes I/O for the operator: plain dicts over HTTP/2, credentials from kr8s.

Objects go over the wire as the dicts the core builds; no object wrappers are
created on the hot path of a 100-pod scale-up.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

import httpx
import kr8s.asyncio

from . import metrics
from .errors import KubeApiError

log = logging.getLogger(__name__)

FIELD_MANAGER = "dask-operator"
REQUEST_TIMEOUT_SECONDS = 60.0
# A watch that delivers nothing for this long is taken for dead (a stalled
# connection sends no reset) and resumed from the last resourceVersion, as
# kopf does with its own watches (the same inactivity timeout): an idle watch
# costs one request per 70 s instead of one per 300 s.
WATCH_INACTIVITY_SECONDS = 70.0
# A write answered 409 Conflict (the server lost an optimistic-concurrency race
# of its own, as on a ResourceQuota) is sent again this many times, after
# 0.05, 0.1 and 0.2 s: our creates and patches carry no resourceVersion, so
# repeating one is what a fresh read would lead to. A uid precondition that
# failed is also a 409 Conflict, and final.
CONFLICT_RETRIES = 3
CONFLICT_BACKOFF_SECONDS = 0.05


def _path(version: str, namespace: str | None, url: str) -> str:
    base = "/api/v1" if version == "v1" else f"/apis/{version}"
    if not url:  # the group version's discovery document
        return base
    return f"{base}/namespaces/{namespace}/{url}" if namespace else f"{base}/{url}"


def _error(method: str, url: str, code: int, text: str) -> KubeApiError:
    """The API's error as a KubeApiError with its message and reason, counted."""
    metrics.API_ERRORS.labels(method=method, code=str(code)).inc()
    try:
        body = json.loads(text)
        message, reason = body.get("message", text), str(body.get("reason") or "")
    except (ValueError, AttributeError):
        message, reason = text, ""
    return KubeApiError(code, f"{method} {url}: {message}", reason)


def _retried_conflict(method: str, error: KubeApiError) -> bool:
    """A write the server refused for a race of its own: worth sending again."""
    return (method != "GET" and error.code == 409 and error.status_reason == "Conflict"
            and "Precondition failed" not in str(error))


class Kube:
    """The few verbs the operator needs, each one API call.

    kr8s resolves credentials (kubeconfig, in-cluster token, exec plugins) and
    re-authenticates on 401; requests go over one HTTP/2 connection, which
    halves the client's CPU per request against HTTP/1.1 connection pooling
    when a scale creates a hundred pods at once.
    """

    def __init__(self, api: kr8s.asyncio.Api, transport: httpx.AsyncBaseTransport | None = None) -> None:
        """`api` resolves credentials; `transport` (tests) replaces the network."""
        self.api = api
        self.transport = transport
        self._http: httpx.AsyncClient | None = None
        self._reauth = asyncio.Lock()

    @classmethod
    async def connect(cls) -> "Kube":
        return cls(await kr8s.asyncio.api())

    async def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            auth = self.api.auth
            headers = {"Authorization": f"Bearer {auth.token}"} if auth.token else {}
            self._http = httpx.AsyncClient(
                base_url=auth.server, headers=headers, verify=await auth.ssl_context(),
                http2=True, timeout=REQUEST_TIMEOUT_SECONDS, transport=self.transport,
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _call(self, method: str, version: str, namespace: str | None, url: str, **kwargs) -> Any:
        """One request; a 401 re-authenticates once, a retryable 409 is sent again."""
        reauthenticated, conflicts = False, 0
        while True:
            client = await self._client()
            try:
                response = await client.request(method, _path(version, namespace, url), **kwargs)
            except httpx.HTTPError as e:  # connection refused, reset, timed out
                metrics.API_ERRORS.labels(method=method, code="transport").inc()
                raise KubeApiError(0, f"{method} {url}: {type(e).__name__}: {e}") from e
            if response.status_code == 401 and not reauthenticated:
                reauthenticated = True
                await self._reauthenticate(client)
                continue
            if not response.is_error:
                return response.json() if response.content else None
            error = _error(method, url, response.status_code, response.text)
            if conflicts < CONFLICT_RETRIES and _retried_conflict(method, error):
                await asyncio.sleep(CONFLICT_BACKOFF_SECONDS * 2 ** conflicts)
                conflicts += 1
                continue
            raise error

    async def _reauthenticate(self, failed: httpx.AsyncClient) -> None:
        """New credentials (e.g. a rotated ServiceAccount token), once for a burst of 401s:
        only the first caller whose client was refused replaces it."""
        async with self._reauth:
            if self._http is failed:
                await self.api.auth.reauthenticate()
                await self.aclose()

    async def watch(self, version: str, plural: str, namespace: str | None, selector: str):
        """Yield (type, object) for every change, forever: list, then watch from
        the list's resourceVersion. A watch the server ends (its timeout) or a
        dropped connection resumes from the last version seen, as client-go's
        reflector does; only the server's 410 Gone (or another ERROR event) makes
        it list again, so an idle watcher costs one request per timeout. A stream
        silent for `WATCH_INACTIVITY_SECONDS` (bookmarks included) counts as
        dropped."""
        since: str | None = None
        while True:
            if since is None:
                body = await self._call("GET", version, namespace, plural, params={"labelSelector": selector})
                for item in body["items"]:
                    yield "ADDED", item
                since = body["metadata"]["resourceVersion"]
            client = await self._client()
            params = {"labelSelector": selector, "watch": "true", "resourceVersion": since,
                      "allowWatchBookmarks": "true", "timeoutSeconds": "300"}
            try:
                async with client.stream("GET", _path(version, namespace, plural), params=params,
                                         timeout=httpx.Timeout(REQUEST_TIMEOUT_SECONDS, read=WATCH_INACTIVITY_SECONDS)) as r:
                    if r.is_error:
                        raise _error("WATCH", plural, r.status_code, (await r.aread()).decode(errors="replace"))
                    async for line in r.aiter_lines():
                        if not line:
                            continue
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            since = None  # 410 Gone or similar: list again
                            break
                        since = event["object"]["metadata"].get("resourceVersion", since)
                        if event["type"] != "BOOKMARK":
                            yield event["type"], event["object"]
            except httpx.HTTPError as e:
                log.debug("watch %s ended: %s", plural, e)

    async def list(self, version: str, plural: str, namespace: str | None, selector: str | None) -> list[dict]:
        """Objects in `namespace` (None: every namespace) matching `selector` (None: all)."""
        params = {"labelSelector": selector} if selector else {}
        body = await self._call("GET", version, namespace, plural, params=params)
        return body["items"]

    async def served(self, version: str, plural: str) -> bool:
        """Whether the API server serves this resource (its CRD is installed)."""
        try:
            body = await self._call("GET", version, None, "")
        except KubeApiError as e:
            if e.code == 404:
                return False
            raise
        return any(r.get("name") == plural for r in (body or {}).get("resources", ()))

    async def get(self, version: str, plural: str, namespace: str, name: str) -> dict | None:
        try:
            return await self._call("GET", version, namespace, f"{plural}/{name}")
        except KubeApiError as e:
            if e.code == 404:
                return None
            raise

    async def create(self, version: str, plural: str, namespace: str, body: Mapping) -> bool:
        """Create; False when an object of that name exists already (409 AlreadyExists)."""
        try:
            await self._call("POST", version, namespace, plural, content=json.dumps(body),
                             headers={"Content-Type": "application/json"})
            return True
        except KubeApiError as e:
            if e.code == 409 and e.status_reason == "AlreadyExists":
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
        except KubeApiError as e:
            if e.code == 404:
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
        except KubeApiError as e:
            if e.code in (404, 409):
                return False
            raise
