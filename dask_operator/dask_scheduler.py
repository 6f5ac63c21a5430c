"""The Dask scheduler's HTTP API, as the operator uses it (not kube-scheduler, not a Ray or Spark head).

Routes come from `distributed.http.scheduler.api`, which the operator enables
through `DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES`:
`GET /api/v1/get_workers`, `POST /api/v1/retire_workers`,
`GET /api/v1/adaptive_target`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import httpx

from .errors import SchedulerUnreachable

log = logging.getLogger(__name__)

# Retiring moves every key held by the retiring workers to the remaining ones;
# give large clusters the time that takes.
RETIRE_TIMEOUT_SECONDS = 300.0
QUERY_TIMEOUT_SECONDS = 3.0


class DaskSchedulerClient:
    """Thin async client; every failure surfaces as `SchedulerUnreachable`."""

    def __init__(self, http: httpx.AsyncClient | None = None) -> None:
        self._http = http or httpx.AsyncClient()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, url: str, timeout: float, **kwargs) -> object:
        try:
            response = await self._http.request(method, url, timeout=timeout, **kwargs)
        except httpx.HTTPError as e:
            raise SchedulerUnreachable(f"{method} {url}: {type(e).__name__}: {e}") from e
        if response.status_code != 200:
            raise SchedulerUnreachable(f"{method} {url}: HTTP {response.status_code}: {response.text[:200]}")
        try:
            return response.json()
        except ValueError as e:
            raise SchedulerUnreachable(f"{method} {url}: not JSON: {response.text[:200]}") from e

    async def workers(self, base_url: str) -> dict[str, str]:
        """Registered workers as {name: address}."""
        url = f"{base_url}/api/v1/get_workers"
        body = await self._call("GET", url, QUERY_TIMEOUT_SECONDS)
        try:
            return {str(w["name"]): str(w["address"]) for w in body["workers"]}
        except (KeyError, TypeError, AttributeError) as e:
            raise SchedulerUnreachable(f"GET {url}: unexpected answer: {str(body)[:200]}") from e

    async def retire(self, base_url: str, n: int | None = None,
                     addresses: Sequence[str] | None = None) -> Mapping[str, Mapping]:
        """Ask the scheduler to retire `n` workers of its choosing, or the workers at `addresses`.

        Given `n`, the scheduler picks the workers cheapest to retire (least
        data, via `workers_to_close`). Either way it moves their keys to the
        remaining workers before it answers. Returns its report, {address:
        worker info incl. name}, for every worker it actually retired.
        """
        if (n is None) == (addresses is None):
            raise ValueError("give either n or addresses")
        url = f"{base_url}/api/v1/retire_workers"
        payload = {"n": n} if n is not None else {"workers": list(addresses or ())}
        body = await self._call("POST", url, RETIRE_TIMEOUT_SECONDS, json=payload)
        if not isinstance(body, Mapping):
            raise SchedulerUnreachable(f"POST {url}: unexpected answer: {str(body)[:200]}")
        return body

    async def adaptive_target(self, base_url: str) -> int:
        url = f"{base_url}/api/v1/adaptive_target"
        body = await self._call("GET", url, QUERY_TIMEOUT_SECONDS)
        try:
            target = body["workers"]
            if isinstance(target, bool) or not isinstance(target, int) or target < 0:
                raise TypeError(target)
            return target
        except (KeyError, TypeError) as e:
            raise SchedulerUnreachable(f"GET {url}: unexpected answer: {str(body)[:200]}") from e
