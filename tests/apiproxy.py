"""Proxies between the operator and the API server that inject faults (issue 12).

- `ConflictProxy`: an HTTPS reverse proxy (HTTP/1.1, the API server's own
  certificate, so the operator's kubeconfig keeps its CA) that answers a
  fraction of writes with the API server's 409 Conflict and delays every
  request by a random latency. Nothing it refuses reaches the API server.
- `TcpProxy`: a byte pipe; TLS and HTTP/2 pass through untouched. `cut()`
  closes its listener and every connection (the API server is down for the
  client: connections refused) until `restore()`; `stall()` makes every
  connection open now carry nothing more, without a reset, as when a
  middlebox drops a flow: only new connections work.

Both run on an event loop of their own, in a thread, so synchronous tests
drive them; both count what they did.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Hop-by-hop headers and those aiohttp recomputes for the body it sends.
DROPPED_HEADERS = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"})


class _Loop:
    """An event loop in a daemon thread; `run(coro)` waits for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def through(kubeconfig: Path, url: str, path: Path) -> Path:
    """A copy of `kubeconfig` whose clusters' server is `url`."""
    config = yaml.safe_load(kubeconfig.read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = url
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def conflict_status(method: str, path: str) -> dict:
    """The API server's body for a write that lost a race (`reason: Conflict`)."""
    return {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Conflict",
        "message": f"Operation cannot be fulfilled on {path}: the object has been modified; "
                   "please apply your changes to the latest version and try again",
        "details": {"causes": [{"message": f"conflict injected into {method} by the test proxy"}]},
        "code": 409,
    }


@dataclass
class ConflictCounts:
    requests: int = 0
    writes: int = 0
    conflicts: int = 0
    by_method: dict[str, int] = field(default_factory=dict)  # conflicts injected per method


class ConflictProxy:
    """`url` answers as the API server at `upstream` does, except that each write
    gets 409 with probability `conflict_rate` and every request waits a random
    0..`max_latency` seconds first."""

    def __init__(self, upstream: str, pki: Path, conflict_rate: float, max_latency: float, seed: int) -> None:
        self.upstream = upstream.rstrip("/")
        self.conflict_rate = conflict_rate
        self.max_latency = max_latency
        self.counts = ConflictCounts()
        self._rng = random.Random(seed)
        self._pki = pki
        self._loop = _Loop()
        self.url = self._loop.run(self._start())

    async def _start(self) -> str:
        serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        serving.load_cert_chain(self._pki / "apiserver.crt", self._pki / "apiserver.key")
        serving.set_alpn_protocols(["http/1.1"])
        upstream_tls = ssl.create_default_context(cafile=str(self._pki / "ca.crt"))
        self._session = ClientSession(connector=TCPConnector(ssl=upstream_tls, limit=0), auto_decompress=False,
                                      timeout=ClientTimeout(total=None, sock_connect=10))
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=serving)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        return f"https://127.0.0.1:{port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.counts.requests += 1
        await asyncio.sleep(self._rng.uniform(0, self.max_latency))
        if request.method in WRITES:
            self.counts.writes += 1
            if self._rng.random() < self.conflict_rate:
                self.counts.conflicts += 1
                self.counts.by_method[request.method] = self.counts.by_method.get(request.method, 0) + 1
                return web.json_response(conflict_status(request.method, request.path), status=409)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROPPED_HEADERS}
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=body or None) as upstream:
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in DROPPED_HEADERS})
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():  # a watch streams until either side ends it
                await response.write(chunk)
            await response.write_eof()
            return response

    def close(self) -> None:
        async def stop() -> None:
            await self._runner.cleanup()
            await self._session.close()
        with contextlib.suppress(Exception):
            self._loop.run(stop())
        self._loop.close()


@dataclass(eq=False)  # hashed by identity: a set of open flows
class _Flow:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    stalled: bool = False

    def abort(self) -> None:
        for writer in (self.client, self.server):
            writer.transport.abort()


@dataclass
class TcpCounts:
    connections: int = 0
    cut: int = 0  # connections closed by cut()
    stalled: int = 0  # connections stalled by stall()


class TcpProxy:
    """127.0.0.1:<port> piped to `upstream` (host, port), with an outage and a stall on demand."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.counts = TcpCounts()
        self._flows: set[_Flow] = set()
        self._server: asyncio.Server | None = None
        self._loop = _Loop()
        self.port = 0
        self._loop.run(self._listen())
        self.url = f"https://127.0.0.1:{self.port}"

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self.counts.connections += 1
        flow = _Flow(writer, up_writer)
        self._flows.add(flow)
        try:
            await asyncio.gather(self._pipe(reader, up_writer, flow, True), self._pipe(up_reader, writer, flow, False))
        finally:
            self._flows.discard(flow)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, flow: _Flow, from_client: bool) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await source.read(65536):
                if flow.stalled:
                    continue  # dropped on the floor: no byte, no reset
                sink.write(data)
                await sink.drain()
        if not flow.stalled:
            flow.abort()
        elif from_client:  # the client gave up on the stalled flow; the server's end never reaches it
            flow.server.transport.abort()

    def cut(self) -> None:
        """Refuse new connections and close every open one, until `restore()`."""
        async def cut() -> None:
            self._server.close()
            for flow in list(self._flows):
                if not flow.stalled:
                    self.counts.cut += 1
                    flow.abort()
            await self._server.wait_closed()
        self._loop.run(cut())

    def restore(self) -> None:
        self._loop.run(self._listen())

    def stall(self) -> int:
        """Stall every connection open now (for good); returns how many."""
        async def stall() -> int:
            flows = [f for f in self._flows if not f.stalled]
            for flow in flows:
                flow.stalled = True
            self.counts.stalled += len(flows)
            return len(flows)
        return self._loop.run(stall())

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for flow in list(self._flows):
                flow.abort()
        with contextlib.suppress(Exception):
            self._loop.run(stop())
        self._loop.close()
