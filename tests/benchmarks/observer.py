"""The benchmarks' one observer: watches opened before the action, a monotonic clock.

Every time in the benchmarks is `time.monotonic()` in this process, taken when
an event line arrives on a watch or when the API server's answer to a write
arrives -- never an object's `creationTimestamp` (1 s resolution). A watch is
"open" once the API server has answered its request (it then streams every
change after the list's resourceVersion), so `watch()` returns only then, and
the action comes after.

Requests share one HTTP/2 connection with the admin's credentials; each
watch has an HTTP/1.1 connection of its own, closed when it stops (a
cancelled HTTP/2 stream's unread data stays charged to the connection's
flow-control window, and enough of them stall every other stream on it).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx
import kr8s.asyncio

from dask_operator.core.pods import pod_ready


@dataclass
class PodTimes:
    """When this observer first saw each pod, and saw it Running, Ready, gone."""

    added: dict[str, float] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)
    ready: dict[str, float] = field(default_factory=dict)
    deleted: dict[str, float] = field(default_factory=dict)

    def record(self, t: float, kind: str, pod: dict) -> None:
        name = pod["metadata"]["name"]
        if kind == "DELETED":
            self.deleted.setdefault(name, t)
            return
        self.added.setdefault(name, t)
        if pod.get("status", {}).get("phase") == "Running":
            self.running.setdefault(name, t)
        if pod_ready(pod):
            self.ready.setdefault(name, t)

    def nth(self, which: str, n: int) -> float | None:
        """The time the n-th pod reached `which` (added, running, ready, deleted)."""
        times = sorted(getattr(self, which).values())
        return times[n - 1] if len(times) >= n else None


class Watch:
    def __init__(self) -> None:
        self.pods = PodTimes()
        self.events: list[tuple[float, str, dict]] = []
        self.changed = asyncio.Condition()
        self.task: asyncio.Task | None = None

    async def until(self, predicate, timeout: float, what: str):
        """Wait until predicate(self) is truthy (checked after each event); its value."""
        async def wait():
            async with self.changed:
                while not (value := predicate(self)):
                    await self.changed.wait()
                return value
        try:
            return await asyncio.wait_for(wait(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None

    def stop(self) -> None:
        if self.task:
            self.task.cancel()


def check(r: httpx.Response) -> httpx.Response:
    """`r`, or an error carrying the API server's message."""
    if r.is_error:
        raise RuntimeError(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:500]}")
    return r


class Observer:
    def __init__(self, connect) -> None:
        self.connect_client = connect  # connect_client(http2, read_timeout) -> httpx.AsyncClient
        self.http = connect(True, 60)

    @classmethod
    async def connect(cls, kubeconfig: str) -> "Observer":
        auth = (await kr8s.asyncio.api(kubeconfig=kubeconfig)).auth
        headers = {"Authorization": f"Bearer {auth.token}"} if auth.token else {}
        tls = await auth.ssl_context()
        return cls(lambda http2, read: httpx.AsyncClient(
            base_url=auth.server, headers=headers, verify=tls, http2=http2, timeout=httpx.Timeout(60, read=read)))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def get(self, path: str, **params) -> dict:
        return check(await self.http.get(path, params=params)).json()

    async def scale(self, path: str, replicas: int) -> float:
        """Write spec.replicas through `/scale`; the monotonic time its acknowledgement arrived."""
        return (await self.scale_answer(path, replicas))[0]

    async def scale_answer(self, path: str, replicas: int) -> tuple[float, dict]:
        """`scale`, and the Scale the API server answered (its resourceVersion is the object's)."""
        r = await self.http.patch(path, content=json.dumps({"spec": {"replicas": replicas}}),
                                  headers={"Content-Type": "application/merge-patch+json"})
        t = time.monotonic()
        return t, check(r).json()

    async def watch(self, path: str, selector: str | None = None, pods: bool = True) -> Watch:
        """Start watching `path` (a collection) from now; return once the server streams."""
        w = Watch()
        params = {"labelSelector": selector} if selector else {}
        since = (await self.get(path, **params))["metadata"]["resourceVersion"]
        opened = asyncio.get_running_loop().create_future()

        async def run() -> None:
            async with self.connect_client(False, None) as http:
                await follow(http)

        async def follow(http: httpx.AsyncClient) -> None:
            nonlocal since
            while True:
                q = {**params, "watch": "true", "resourceVersion": since, "allowWatchBookmarks": "true"}
                async with http.stream("GET", path, params=q) as r:
                    check(r)
                    if not opened.done():
                        opened.set_result(None)
                    async for line in r.aiter_lines():
                        t = time.monotonic()
                        if not line:
                            continue
                        event = json.loads(line)
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            raise RuntimeError(f"watch {path}: {obj.get('message')}")
                        since = obj["metadata"]["resourceVersion"]
                        if event["type"] == "BOOKMARK":
                            continue
                        w.events.append((t, event["type"], obj))
                        if pods:
                            w.pods.record(t, event["type"], obj)
                        async with w.changed:
                            w.changed.notify_all()

        w.task = asyncio.create_task(run())
        done, _ = await asyncio.wait([opened, w.task], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if w.task in done:
            w.task.result()  # raises the watch's error
        if not opened.done():
            w.task.cancel()
            raise RuntimeError(f"watch {path} did not open within 30 s")
        return w
