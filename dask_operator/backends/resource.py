"""The Kubernetes side every backend shares: one custom resource and its pods,
with API errors turned into the scaling interface's errors."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from ..core.pods import pod_ready
from ..core.scaling import WorkerShape
from ..errors import (ClusterNotFound, Conflict, HeadNotFound, KubeApiError, NotSupported, OperatorNotInstalled,
                      ScalingError)
from ..kube import Kube


log = logging.getLogger(__name__)

UPDATE_ATTEMPTS = 3


class Resource:
    """Get, list and patch one kind of custom resource; pods by label selector."""

    def __init__(self, kube: Kube, api_version: str, plural: str, kind_name: str) -> None:
        self.kube = kube
        self.api_version = api_version
        self.plural = plural
        self.kind_name = kind_name  # for messages, e.g. "RayCluster (ray.io/v1)"

    async def get(self, namespace: str, name: str) -> dict:
        try:
            obj = await self.kube.get(self.api_version, self.plural, namespace, name)
        except KubeApiError as e:
            raise ScalingError(f"cannot read {self.kind_name} {namespace}/{name}: {e}") from e
        if obj is None:
            await self.require_served()
            raise ClusterNotFound(f"{self.kind_name} {namespace}/{name} does not exist")
        return obj

    async def list(self, namespace: str | None, label_selector: str | None = None) -> list[dict]:
        try:
            return await self.kube.list(self.api_version, self.plural, namespace, label_selector)
        except KubeApiError as e:
            if e.code == 404:
                await self.require_served()
            raise ScalingError(f"cannot list {self.kind_name}: {e}") from e

    async def require_served(self) -> None:
        try:
            served = await self.kube.served(self.api_version, self.plural)
        except KubeApiError as e:
            raise ScalingError(f"cannot tell whether {self.kind_name} is served: {e}") from e
        if not served:
            raise OperatorNotInstalled(
                f"{self.kind_name} is not served by this cluster: its operator's CRD is not installed")

    async def patch(self, namespace: str, name: str, patch: Mapping) -> dict:
        """A merge patch; carry `metadata.resourceVersion` in it to fail on a concurrent change."""
        try:
            obj = await self.kube.patch(self.api_version, self.plural, namespace, name, patch)
        except KubeApiError as e:
            if e.code == 409:
                raise Conflict(str(e)) from e
            raise ScalingError(f"cannot update {self.kind_name} {namespace}/{name}: {e}") from e
        if obj is None:
            raise ClusterNotFound(f"{self.kind_name} {namespace}/{name} does not exist")
        return obj

    async def update(self, namespace: str, name: str,
                     change: Callable[[dict], Awaitable[Mapping | None]]) -> dict:
        """Read, `await change(obj)` -> merge patch, write with the read's resourceVersion.

        A concurrent write (the resource's operator updating its status bumps
        the version too) makes the write fail; it is read and decided again,
        at most `UPDATE_ATTEMPTS` times. `change` raises to refuse, and
        answers None when there is nothing to write (the object is returned).
        """
        for attempt in range(1, UPDATE_ATTEMPTS + 1):
            obj = await self.get(namespace, name)
            wanted = await change(obj)
            if wanted is None:
                return obj
            patch = {**wanted}
            patch["metadata"] = {**patch.get("metadata", {}), "resourceVersion": obj["metadata"]["resourceVersion"]}
            try:
                return await self.patch(namespace, name, patch)
            except Conflict as e:
                if attempt == UPDATE_ATTEMPTS:
                    raise Conflict(f"{self.kind_name} {namespace}/{name} kept changing "
                                   f"({UPDATE_ATTEMPTS} attempts): {e}") from e
        raise AssertionError("unreachable")

    async def pods(self, namespace: str, selector: str) -> list[dict]:
        try:
            return await self.kube.list("v1", "pods", namespace, selector)
        except KubeApiError as e:
            raise ScalingError(f"cannot list the pods of a {self.kind_name}: {e}") from e

    async def delete_pod(self, pod: Mapping) -> None:
        meta = pod["metadata"]
        try:
            await self.kube.delete("v1", "pods", meta["namespace"], meta["name"], meta.get("uid"))
        except KubeApiError as e:
            raise ScalingError(f"cannot delete pod {meta['namespace']}/{meta['name']}: {e}") from e


class ResourceBackend:
    """What every backend does the same way: get and list its resource,
    restart the head by deleting its pod for the head's controller to replace,
    and reshape the head.

    A subclass sets `api` (a `Resource`), `head_noun` and `head_pod`, and for
    `shape_head` the pure `head_patch` and `head_rolls`: whether the head's
    controller replaces the head pod by itself when its template changes
    (a Deployment or StatefulSet does; KubeRay does not).
    """

    api: Resource
    head_noun = "head"
    head_rolls = True

    async def get(self, namespace: str, name: str) -> dict:
        return await self.api.get(namespace, name)

    async def list(self, namespace: str | None, label_selector: str | None = None) -> list[dict]:
        return await self.api.list(namespace, label_selector)

    async def head_pod(self, namespace: str, name: str) -> dict | None:
        raise NotImplementedError

    async def restart_head(self, namespace: str, name: str) -> dict:
        await self.api.get(namespace, name)
        pod = await self.head_pod(namespace, name)
        if pod is None:
            raise HeadNotFound(f"{self.api.kind_name} {namespace}/{name} has no {self.head_noun} pod to restart")
        await self.api.delete_pod(pod)
        log.info("%s %s/%s: deleted the %s pod %s for its controller to recreate (head restart)",
                 self.api.kind_name, namespace, name, self.head_noun, pod["metadata"]["name"])
        return pod

    def head_patch(self, obj: dict, shape: WorkerShape) -> dict | None:
        """The merge patch that gives the head `shape`, None when it has it already."""
        raise NotSupported(f"the {getattr(self, 'name', self.api.kind_name)} backend cannot change the "
                           f"{self.head_noun}'s hardware tier")

    async def shape_head(self, namespace: str, name: str, shape: WorkerShape) -> tuple[dict, bool]:
        """Give the head `shape`: (the resource, whether the head restarts). A shape the head
        has already changes nothing; a new one restarts the head (its controller rolls it, or,
        when it does not, the head pod is deleted here)."""
        changed = False

        async def change(obj: dict) -> dict | None:
            nonlocal changed
            patch = self.head_patch(obj, shape)
            changed = patch is not None
            return patch

        obj = await self.api.update(namespace, name, change)
        if changed:
            log.info("%s %s/%s: set the %s's hardware shape; the %s restarts", self.api.kind_name, namespace, name,
                     self.head_noun, self.head_noun)
            if not self.head_rolls:
                await self.restart_head(namespace, name)
        return obj, changed


def newest(pods: list[dict]) -> dict | None:
    """The newest pod that is not being deleted (a restarted head's replacement), else None."""
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return max(live, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)


def ready_count(pods: list[dict]) -> int:
    return sum(1 for p in pods if pod_ready(p))
