"""The API's operations, one method each: which backend, who may, what to send.

Rules:
- A kind outside seed 000's three is `InvalidKind`; a valid kind whose
  configured backend is not in this build is `BackendUnavailable` (501),
  naming the backend, so a deployment says clearly what it lacks.
- Non-admins see and change only clusters whose owner label equals their
  user id: list filters (by label selector, then again by value); get and
  the head-restart status answer `Not authorized to access cluster <name>`,
  scale, restart and head-hw-tier `Not authorized to update cluster <name>`.
  The owner check comes first, so an owner never costs a SubjectAccessReview.
- Everything a request says is checked before anything is changed: body,
  cluster, permission, tier; only then does the backend scale or restart.
- Scale answers `replicas` (what was sent), `requested`, `capped` and, when
  capped, `max_replicas` (see `views.cap_replicas`), with the updated object.
- Objects are answered in the compatibility view unless `raw` (`views`).
- head-hw-tier answers `restarts` (False when the head had that tier's shape
  already: nothing changes) and `started_at`, for the restart-status route.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..backends.base import Backend
from ..backends.registry import Registry
from . import views
from .auth import Identity
from .errors import BadRequest, Forbidden
from .tiers import resolve

DEFAULT_NAMESPACE = "domino-compute"
DEFAULT_OWNER_LABEL = "dominodatalab.com/starting-user-id"


@dataclass(frozen=True)
class Settings:
    namespace: str = DEFAULT_NAMESPACE
    owner_label: str = DEFAULT_OWNER_LABEL
    max_replicas: int | None = None  # the server's cap, on top of each backend's
    list_concurrency: int = 8  # status reads in flight while building a list's views


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class ScalerService:
    def __init__(self, kinds: Registry, auth, tiers, settings: Settings = Settings(),
                 now: Callable[[], dt.datetime] = _utcnow) -> None:
        """`auth` answers `is_admin(identity, api_group, resource)`; `tiers` answers `tiers()`."""
        self.kinds, self.auth, self.tiers, self.settings, self.now = kinds, auth, tiers, settings, now

    # -------------------------------------------------------------- permission

    async def _admin(self, who: Identity, backend: Backend) -> bool:
        group = backend.api_version.rpartition("/")[0]
        return await self.auth.is_admin(who, group, backend.resource)

    async def _authorize(self, who: Identity, backend: Backend, obj: Mapping, action: str) -> None:
        if views.owns(obj, self.settings.owner_label, who.user_id) or await self._admin(who, backend):
            return
        raise Forbidden(f"Not authorized to {action} cluster {obj['metadata']['name']}")

    async def _cluster(self, who: Identity, kind: str, namespace: str, name: str,
                       action: str) -> tuple[Backend, dict]:
        backend = self.kinds.backend(kind)
        views.check_namespace(namespace)
        views.check_name(name)
        obj = await backend.get(namespace, name)
        await self._authorize(who, backend, obj, action)
        return backend, obj

    async def _view(self, backend: Backend, obj: dict, raw: bool) -> dict:
        return obj if raw else views.compat_view(obj, await backend.status(obj))

    # -------------------------------------------------------------- operations

    async def list(self, who: Identity, kind: str, namespace: str, raw: bool = False) -> dict:
        backend = self.kinds.backend(kind)
        views.check_namespace(namespace)
        label = self.settings.owner_label
        admin = await self._admin(who, backend)
        selector = None if admin else views.owner_selector(label, who.user_id)
        objs = await backend.list(namespace, selector) if admin or selector else []
        if not admin:
            objs = [o for o in objs if views.owns(o, label, who.user_id)]
        gate = asyncio.Semaphore(self.settings.list_concurrency)

        async def view(obj: dict) -> dict:
            async with gate:
                return await self._view(backend, obj, raw)

        clusters = list(await asyncio.gather(*(view(o) for o in objs)))
        return {"kind": kind, "count": len(clusters), "clusters": clusters}

    async def get(self, who: Identity, kind: str, namespace: str, name: str, raw: bool = False) -> dict:
        backend, obj = await self._cluster(who, kind, namespace, name, "access")
        return await self._view(backend, obj, raw)

    async def scale(self, who: Identity, kind: str, namespace: str, name: str, body: Mapping,
                    raw: bool = False) -> dict:
        self.kinds.backend(kind)
        replicas = views.parse_replicas(body)
        wanted = views.tier_fields(body, "worker")
        group = views.worker_group(body)
        backend, obj = await self._cluster(who, kind, namespace, name, "update")
        tier = resolve(await self.tiers.tiers(), wanted, kind) if wanted else None
        status = await backend.status(obj)
        cap = views.cap_replicas(replicas, backend.name, status.max_replicas, self.settings.max_replicas)
        updated = await backend.scale(namespace, name, cap.replicas, shape=tier.shape if tier else None,
                                      group=group)
        answer = {"kind": kind, "name": name, "replicas": cap.replicas, "requested": replicas,
                  "capped": cap.capped}
        if cap.capped:
            answer["max_replicas"] = cap.limit
        if tier is not None:
            answer["worker_hw_tier"] = {"id": tier.id, "name": tier.name}
        answer["object"] = await self._view(backend, updated, raw)
        return answer

    async def restart_head(self, who: Identity, kind: str, namespace: str, name: str,
                           started_at: str | None) -> dict:
        self.kinds.backend(kind)
        given = views.parse_timestamp(started_at) if started_at else None
        backend, _ = await self._cluster(who, kind, namespace, name, "update")
        since = views.restart_started_at(given, self.now())
        pod = await backend.restart_head(namespace, name)
        return {"ok": True, "kind": kind, "name": name, "namespace": namespace,
                "started_at": views.format_timestamp(since), "pod": pod["metadata"]["name"]}

    async def restart_head_status(self, who: Identity, kind: str, namespace: str, name: str,
                                  started_at: str | None) -> dict:
        self.kinds.backend(kind)
        since = views.parse_timestamp(started_at)
        backend, _ = await self._cluster(who, kind, namespace, name, "access")
        head = await backend.head_pod(namespace, name)
        return {"kind": kind, "name": name, "namespace": namespace, **views.head_restart_status(head, since)}

    async def head_hw_tier(self, who: Identity, kind: str, namespace: str, name: str, body: Mapping,
                           raw: bool = False) -> dict:
        self.kinds.backend(kind)
        wanted = views.tier_fields(body, "head")
        if not wanted:
            raise BadRequest("head_hw_tier_name (or head_hw_tier, head_hw_tier_id) is required")
        backend, _ = await self._cluster(who, kind, namespace, name, "update")
        tier = resolve(await self.tiers.tiers(), wanted, kind)
        since = self.now()
        updated, restarts = await backend.shape_head(namespace, name, tier.shape)
        return {"kind": kind, "name": name, "head_hw_tier": {"id": tier.id, "name": tier.name},
                "restarts": restarts, "started_at": views.format_timestamp(since),
                "object": await self._view(backend, updated, raw)}
