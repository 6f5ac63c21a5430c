"""In-memory stand-ins for `kube.Kube` and `dask_scheduler.DaskSchedulerClient`.

Only for unit tests of the I/O layer (reconcile, workers, pod watch, poller).

FakeKube, rules:
- objects are stored by (version, plural, namespace, name); `list` returns
  deep copies sorted by (namespace, name), as the API server (etcd) does;
  a `namespace` of None lists across namespaces;
- label selectors: comma-separated `k=v` (or `k==v`) and bare `k` terms;
  anything else raises ValueError so a test never passes by a silent mismatch;
- every stored object gets a `uid`, a `creationTimestamp` from a fake clock
  that ticks one second per creation (so later objects are newer) and a
  `resourceVersion` bumped on every write;
- `create` answers False when the name exists (409, like `Kube.create`);
  `delete` answers False when the object is missing or its uid differs from
  the precondition (404/409, like `Kube.delete`); `patch` answers None when
  missing (404) and is a JSON merge patch of `status` (subresource "status")
  or of everything else (no subresource: e.g. metadata annotations);
- `delete` removes at once, or (with `graceful_delete = True`) only sets
  `deletionTimestamp`, as the API server does for a pod with a kubelet;
- every call is logged (`calls`, `log()`, `writes()`) before it takes effect,
  including calls that fail; `fail_next(verb, error)` makes the next call of
  that verb (optionally for one name) raise; `before(verb, fn)` runs `fn(call)`
  once, right before the next such call takes effect (e.g. to make a pod
  appear or vanish between the operator's list and its create or delete);
- each call yields to the event loop once, so concurrent calls interleave as
  over a real connection; log order is call order;
- `watch` yields the matching objects as ADDED, then every later write as
  ADDED/MODIFIED/DELETED; `break_watches(error)` makes open watches raise.

FakeDask, rules:
- `registered` is the scheduler's view: {worker name: address};
- `retire(url, n)` asks `choose(names, n)` (default: lowest names first) for
  the workers to retire; `retire(url, addresses=[...])` takes the registered
  workers at those addresses; either keeps at most `retire_limit` of them,
  unregisters them and answers like `POST /api/v1/retire_workers`:
  {address: {"name": ..., "type": "Worker", ...}};
- `unreachable = True` (or a URL in `unreachable_urls`) makes every call
  raise SchedulerUnreachable; `fail_next(method, error)` makes one call raise;
- `after(method, fn)` runs `fn()` once, right after the next such call has
  computed its answer (e.g. a worker registering between two `workers` calls);
- every call is logged in `calls` as (method, url, *args).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import inspect
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from dask_operator.errors import SchedulerUnreachable

Key = tuple[str, str, "str | None", str]  # (version, plural, namespace, name)

CLOCK_START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def timestamp(seconds: int) -> str:
    """The fake clock's time `seconds` after its start, RFC 3339."""
    return (CLOCK_START + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def selector_matches(selector: str | None, labels: Mapping[str, str] | None) -> bool:
    """Equality (`k=v`, `k==v`) and existence (`k`) terms, comma-separated, all must hold."""
    labels = labels or {}
    for term in (t.strip() for t in (selector or "").split(",")):
        if not term:
            continue
        if "!" in term or " " in term or "(" in term:
            raise ValueError(f"FakeKube supports only k=v and k selector terms, got {term!r}")
        if "=" in term:
            key, _, value = term.partition("==") if "==" in term else term.partition("=")
            if labels.get(key) != value:
                return False
        elif term not in labels:
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge, None removes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass(frozen=True)
class Call:
    """One call made to FakeKube, as the operator made it."""

    verb: str
    version: str
    plural: str
    namespace: str | None
    name: str | None = None
    selector: str | None = None
    body: Any = None  # create/apply body, patch document
    subresource: str | None = None
    uid: str | None = None  # delete precondition

    def __str__(self) -> str:
        """`verb plural[/name][/subresource]`, e.g. `patch clusters/dask/status`."""
        path = "/".join(p for p in (self.plural, self.name, self.subresource) if p)
        return f"{self.verb} {path}"


# The scale subresource's specReplicasPath, per plural (our CRD's).
SCALE_REPLICAS_PATHS = {"clusters": ("spec", "workers", "replicas")}


class FakeKube:
    """Same async verbs as `Kube`, over an in-memory store."""

    WRITES = ("create", "apply", "patch", "delete")

    def __init__(self) -> None:
        self.store: dict[Key, dict] = {}
        self.calls: list[Call] = []
        self.graceful_delete = False
        self._clock = itertools.count(0)
        self._uids = itertools.count(1)
        self._generated = itertools.count(1)  # suffixes of generateName
        self._rv = itertools.count(1)
        self._failures: list[tuple[str, str | None, BaseException]] = []
        self._hooks: list[tuple[str, str | None, Callable[[Call], Any]]] = []
        self._watchers: list[tuple[tuple[str, str, str | None, str], asyncio.Queue]] = []

    # ------------------------------------------------------------ test controls

    def add(self, version: str, plural: str, obj: Mapping) -> dict:
        """Store an object directly (test setup: no call logged, no event)."""
        obj = copy.deepcopy(dict(obj))
        meta = obj.setdefault("metadata", {})
        self._stamp(meta)
        self.store[(version, plural, meta.get("namespace"), meta["name"])] = obj
        return copy.deepcopy(obj)

    def remove(self, version: str, plural: str, namespace: str | None, name: str) -> None:
        """Drop an object directly (test setup: no call logged, no event)."""
        del self.store[(version, plural, namespace, name)]

    def object(self, version: str, plural: str, namespace: str | None, name: str) -> dict | None:
        """A copy of a stored object, or None (no call logged)."""
        obj = self.store.get((version, plural, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def names(self, version: str, plural: str, namespace: str | None = None) -> list[str]:
        """Names of the stored objects of a kind (no call logged), sorted."""
        return sorted(k[3] for k in self.store if k[:2] == (version, plural)
                      and (namespace is None or k[2] == namespace))

    def fail_next(self, verb: str, error: BaseException, *, name: str | None = None) -> None:
        """Make the next `verb` call (for `name`, when given) raise `error`, after it is logged."""
        self._failures.append((verb, name, error))

    def before(self, verb: str, fn: Callable[[Call], Any], *, name: str | None = None) -> None:
        """Run `fn(call)` once, right before the next `verb` call (for `name`) takes effect."""
        self._hooks.append((verb, name, fn))

    def break_watches(self, error: BaseException) -> None:
        """Make every open watch raise `error`."""
        for _, queue in self._watchers:
            queue.put_nowait(error)

    def log(self, *plurals: str) -> list[str]:
        """Every call as `verb plural/name`, in order; only these plurals when given."""
        return [str(call) for call in self.calls if not plurals or call.plural in plurals]

    def writes(self, *plurals: str) -> list[str]:
        """The writing calls as `verb plural/name`, in order; only these plurals when given."""
        return [str(call) for call in self.calls
                if call.verb in self.WRITES and (not plurals or call.plural in plurals)]

    def calls_of(self, verb: str, plural: str | None = None) -> list[Call]:
        return [call for call in self.calls if call.verb == verb and plural in (None, call.plural)]

    # ------------------------------------------------------------ the Kube verbs

    async def list(self, version: str, plural: str, namespace: str | None, selector: str) -> list[dict]:
        await self._enter(Call("list", version, plural, namespace, selector=selector))
        return self._select(version, plural, namespace, selector)

    async def get(self, version: str, plural: str, namespace: str | None, name: str) -> dict | None:
        await self._enter(Call("get", version, plural, namespace, name))
        return self.object(version, plural, namespace, name)

    async def create(self, version: str, plural: str, namespace: str | None, body: Mapping) -> bool:
        name = body["metadata"].get("name") or f"{body['metadata']['generateName']}{next(self._generated):05x}"
        await self._enter(Call("create", version, plural, namespace, name, body=copy.deepcopy(dict(body))))
        key = (version, plural, namespace, name)
        if key in self.store:
            return False
        obj = copy.deepcopy(dict(body))
        meta = obj["metadata"]
        meta["name"] = name
        if namespace is not None:
            meta["namespace"] = namespace
        meta.pop("uid", None)
        meta.pop("creationTimestamp", None)
        self._stamp(meta)
        self.store[key] = obj
        self._emit(key, "ADDED", obj)
        return True

    async def apply(self, version: str, plural: str, namespace: str | None, body: Mapping) -> dict:
        name = body["metadata"]["name"]
        await self._enter(Call("apply", version, plural, namespace, name, body=copy.deepcopy(dict(body))))
        key = (version, plural, namespace, name)
        old = self.store.get(key)
        obj = copy.deepcopy(dict(body))
        meta = obj["metadata"]
        if namespace is not None:
            meta["namespace"] = namespace
        if old is None:
            self._stamp(meta)
        else:
            for field in ("uid", "creationTimestamp"):
                meta[field] = old["metadata"][field]
            if "status" in old:
                obj["status"] = old["status"]
            meta["resourceVersion"] = str(next(self._rv))
        self.store[key] = obj
        self._emit(key, "ADDED" if old is None else "MODIFIED", obj)
        return copy.deepcopy(obj)

    async def patch(self, version: str, plural: str, namespace: str | None, name: str, patch: Mapping,
                    subresource: str | None = None) -> dict | None:
        await self._enter(Call("patch", version, plural, namespace, name, body=copy.deepcopy(dict(patch)),
                               subresource=subresource))
        key = (version, plural, namespace, name)
        obj = self.store.get(key)
        if obj is None:
            return None
        if subresource == "status":
            if "status" in patch:
                obj["status"] = merge_patch(obj.get("status"), patch["status"])
        elif subresource is None:
            uid = obj["metadata"]["uid"]
            merged = merge_patch(obj, {k: v for k, v in patch.items() if k != "status"})
            merged["metadata"]["uid"] = uid
            obj.clear()
            obj.update(merged)
        elif subresource == "scale" and plural in SCALE_REPLICAS_PATHS:
            *parents, leaf = SCALE_REPLICAS_PATHS[plural]
            target = obj
            for part in parents:
                target = target.setdefault(part, {})
            target[leaf] = patch["spec"]["replicas"]
        else:
            raise NotImplementedError(f"FakeKube cannot patch subresource {subresource!r}")
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        self._emit(key, "MODIFIED", obj)
        return copy.deepcopy(obj)

    async def delete(self, version: str, plural: str, namespace: str | None, name: str,
                     uid: str | None = None) -> bool:
        await self._enter(Call("delete", version, plural, namespace, name, uid=uid))
        key = (version, plural, namespace, name)
        obj = self.store.get(key)
        if obj is None or (uid and obj["metadata"]["uid"] != uid):
            return False
        if self.graceful_delete:
            obj["metadata"].setdefault("deletionTimestamp", timestamp(next(self._clock)))
            obj["metadata"]["resourceVersion"] = str(next(self._rv))
            self._emit(key, "MODIFIED", obj)
        else:
            del self.store[key]
            self._emit(key, "DELETED", obj)
        return True

    async def watch(self, version: str, plural: str, namespace: str | None, selector: str):
        await self._enter(Call("watch", version, plural, namespace, selector=selector))
        queue: asyncio.Queue = asyncio.Queue()
        watcher = ((version, plural, namespace, selector), queue)
        self._watchers.append(watcher)  # before listing: nothing written in between is missed
        try:
            for obj in self._select(version, plural, namespace, selector):
                yield "ADDED", obj
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._watchers.remove(watcher)

    async def aclose(self) -> None:
        self.calls.append(Call("aclose", "", "", None))

    # ------------------------------------------------------------ internals

    def _stamp(self, meta: dict) -> None:
        meta.setdefault("uid", f"uid-{next(self._uids)}")
        meta.setdefault("creationTimestamp", timestamp(next(self._clock)))
        meta["resourceVersion"] = str(next(self._rv))

    def _select(self, version: str, plural: str, namespace: str | None, selector: str) -> list[dict]:
        keys = sorted((k for k in self.store if k[:2] == (version, plural)
                       and (namespace is None or k[2] == namespace)), key=lambda k: (k[2] or "", k[3]))
        return [copy.deepcopy(self.store[k]) for k in keys
                if selector_matches(selector, self.store[k]["metadata"].get("labels"))]

    def _emit(self, key: Key, type_: str, obj: dict) -> None:
        for (version, plural, namespace, selector), queue in self._watchers:
            if (key[:2] == (version, plural) and namespace in (None, key[2])
                    and selector_matches(selector, obj["metadata"].get("labels"))):
                queue.put_nowait((type_, copy.deepcopy(obj)))

    async def _enter(self, call: Call) -> None:
        """Log the call, yield once, then run its hook and raise its injected failure, if any."""
        self.calls.append(call)
        await asyncio.sleep(0)
        for i, (verb, name, fn) in enumerate(self._hooks):
            if verb == call.verb and name in (None, call.name):
                del self._hooks[i]
                result = fn(call)
                if inspect.isawaitable(result):
                    await result
                break
        for i, (verb, name, error) in enumerate(self._failures):
            if verb == call.verb and name in (None, call.name):
                del self._failures[i]
                raise error


def lowest_first(names: Iterable[str], n: int) -> list[str]:
    """FakeDask's default retirement rule: the `n` lowest names."""
    return sorted(names)[:n]


def prefer(*preferred: str) -> Callable[[Iterable[str], int], list[str]]:
    """A retirement rule: these workers first (those registered), then the lowest names."""

    def choose(names: Iterable[str], n: int) -> list[str]:
        names = list(names)
        first = [p for p in preferred if p in names]
        return (first + [w for w in sorted(names) if w not in first])[:n]

    return choose


class FakeDask:
    """Same async methods as `DaskSchedulerClient`, over an in-memory scheduler."""

    def __init__(self, workers: Iterable[str] | Mapping[str, str] = (), *,
                 choose: Callable[[Iterable[str], int], list[str]] = lowest_first, target: int = 0) -> None:
        self.registered: dict[str, str] = {}
        self._addresses = itertools.count(1)
        if isinstance(workers, Mapping):
            self.registered.update(workers)
        else:
            for name in workers:
                self.register(name)
        self.choose = choose
        self.retire_limit: int | None = None
        self.target = target
        self.targets: dict[str, int] = {}  # per URL, else `target`
        self.unreachable = False
        self.unreachable_urls: set[str] = set()
        self.closed = False
        self.calls: list[tuple] = []
        self._failures: list[tuple[str, BaseException]] = []
        self._after: list[tuple[str, Callable[[], Any]]] = []

    def register(self, name: str, address: str | None = None) -> str:
        address = address or f"tcp://10.1.0.{next(self._addresses)}:40000"
        self.registered[name] = address
        return address

    def fail_next(self, method: str, error: BaseException) -> None:
        self._failures.append((method, error))

    def after(self, method: str, fn: Callable[[], Any]) -> None:
        """Run `fn()` once, right after the next `method` call computed its answer."""
        self._after.append((method, fn))

    def methods(self) -> list[str]:
        """The calls as `method` or `method(arg)`, in order."""
        return [f"{m}({', '.join(map(str, args))})" if args else m for m, _, *args in self.calls]

    async def workers(self, base_url: str) -> dict[str, str]:
        await self._enter("workers", base_url)
        answer = dict(self.registered)
        self._run_after("workers")
        return answer

    async def retire(self, base_url: str, n: int | None = None, addresses=None) -> dict[str, dict]:
        if n is not None:
            await self._enter("retire", base_url, n)
            chosen = [w for w in self.choose(list(self.registered), n) if w in self.registered][:n]
        else:
            await self._enter("retire", base_url, *addresses)
            chosen = [w for w, a in self.registered.items() if a in addresses]
        if self.retire_limit is not None:
            chosen = chosen[:self.retire_limit]
        report = {}
        for name in chosen:
            address = self.registered.pop(name)
            report[address] = {"type": "Worker", "id": name, "name": name, "host": address.split("//")[1].split(":")[0],
                               "nthreads": 1, "status": "closing_gracefully", "nanny": None}
        self._run_after("retire")
        return report

    async def adaptive_target(self, base_url: str) -> int:
        await self._enter("adaptive_target", base_url)
        answer = self.targets.get(base_url, self.target)
        self._run_after("adaptive_target")
        return answer

    async def aclose(self) -> None:
        self.closed = True

    async def _enter(self, method: str, url: str, *args: Any) -> None:
        self.calls.append((method, url, *args))
        await asyncio.sleep(0)
        if self.unreachable or url in self.unreachable_urls:
            raise SchedulerUnreachable(f"{method} {url}: fake scheduler unreachable")
        for i, (m, error) in enumerate(self._failures):
            if m == method:
                del self._failures[i]
                raise error

    def _run_after(self, method: str) -> None:
        for i, (m, fn) in enumerate(self._after):
            if m == method:
                del self._after[i]
                fn()
                return


class Server:
    """An `httpx.MockTransport` handler for the HTTP clients' tests.

    Answers from `answers` in turn (the last one repeats): an `httpx.Response`,
    a callable taking the request, or a JSON body (answered with 200). Every
    request is recorded.
    """

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if callable(answer):
            answer = answer(request)
        return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]
