"""The autoscaling API's operations, one method each.

Rules:
- create: the body is checked first (400, nothing asked of Kubernetes), then
  the caller's right to create HPAs in the workload's namespace (403), then
  the workload (404 when it does not exist), then that no HPA, ours or not,
  targets it already (409: two HPAs on one workload fight), and only then is
  the HPA created. The answer is 201 with the new autoscaler's status.
- get / delete: an id that cannot be one, an HPA that does not exist, or one
  this API did not make (no managed-by label) is 404; the right to get /
  delete that HPA is checked before it is looked up (403 leaks nothing).
  Delete removes exactly the HPA read (uid precondition).
- list / metrics: every autoscaler of this API in the namespaces whose HPAs
  the caller may list (optionally one namespace), in id order.
Each change is logged at INFO with who asked and why it was possible.
"""

from __future__ import annotations

import logging

from ..api.auth import Identity
from ..constants import KIND
from ..core.autoscaler_spec import (AUTOSCALER_SELECTOR, HPA_API_VERSION, autoscaler_id, hpa_manifest,
                                    is_ours, parse_id, parse_request)
from ..core.k8s_names import DNS_LABEL_RE
from ..core.autoscaler_status import autoscaler_view, summary
from ..errors import InvalidAutoscalerRequest, KubeApiError
from .access import HpaAccess
from .errors import AutoscalerExists, AutoscalerNotFound, ValidationFailed, WorkloadNotFound

log = logging.getLogger(__name__)

HPAS = "horizontalpodautoscalers"
HPA_EVENTS = "involvedObject.kind=HorizontalPodAutoscaler"


def _replicas(kind: str, workload: dict) -> int | None:
    spec = workload.get("spec") or {}
    return (spec.get("workers") or {}).get("replicas") if kind == KIND else spec.get("replicas")


def _ref(hpa: dict) -> tuple[str, str]:
    ref = hpa.get("spec", {}).get("scaleTargetRef", {})
    return ref.get("kind", ""), ref.get("name", "")


class AutoscalingService:
    def __init__(self, kube, access: HpaAccess) -> None:
        """`kube` answers get / list / create / delete (see `kube.KubeClient`)."""
        self.kube, self.access = kube, access

    async def _events(self, namespace: str | None) -> list[dict]:
        return await self.kube.list("v1", "events", namespace, field_selector=HPA_EVENTS)

    async def _hpa(self, who: Identity, text: str, verb: str) -> dict:
        where = parse_id(text)
        if where is None:
            raise AutoscalerNotFound(f"autoscaler {text} not found")
        namespace, name = where
        await self.access.require(who, verb, namespace, name)
        hpa = await self.kube.get(HPA_API_VERSION, HPAS, namespace, name)
        if hpa is None or not is_ours(hpa):
            raise AutoscalerNotFound(f"autoscaler {text} not found")
        return hpa

    # -------------------------------------------------------------- operations

    async def create(self, who: Identity, body: object) -> dict:
        try:
            req = parse_request(body)
        except InvalidAutoscalerRequest as e:
            raise ValidationFailed(str(e)) from None
        ns, kind, name = req.workload_namespace, req.workload_type, req.workload_name
        await self.access.require(who, "create", ns)
        workload = await self.kube.get(req.workload.api_version, req.workload.plural, ns, name)
        if workload is None:
            raise WorkloadNotFound(f'{kind} "{name}" not found in namespace "{ns}"')
        manifest = hpa_manifest(req)
        new_name = manifest["metadata"]["name"]
        for other in await self.kube.list(HPA_API_VERSION, HPAS, ns):
            other_name = other["metadata"]["name"]
            if other_name == new_name or _ref(other) == (kind, name):
                owner = f"autoscaler {autoscaler_id(ns, other_name)}" if is_ours(other) else \
                    f"HorizontalPodAutoscaler {other_name} (not made by this API)"
                raise AutoscalerExists(f"{kind} {ns}/{name} is already autoscaled by {owner}")
        try:
            created = await self.kube.create(HPA_API_VERSION, HPAS, ns, manifest)
        except KubeApiError as e:
            if e.code == 409:  # created meanwhile
                raise AutoscalerExists(f"{kind} {ns}/{name} is already autoscaled by HorizontalPodAutoscaler "
                                       f"{new_name}") from None
            raise
        log.info("created autoscaler %s (HorizontalPodAutoscaler %s/%s, %d-%d replicas) for %s %s/%s: "
                 "requested by %s, allowed to create HPAs in %s", autoscaler_id(ns, new_name), ns, new_name,
                 req.min_replicas, req.max_replicas, kind, ns, name, who.username, ns)
        view = autoscaler_view(created, (), observed_replicas=_replicas(kind, workload))
        return {**view, "message": "Autoscaler created successfully"}

    async def get(self, who: Identity, text: str) -> dict:
        hpa = await self._hpa(who, text, "get")
        return autoscaler_view(hpa, await self._events(hpa["metadata"]["namespace"]))

    async def delete(self, who: Identity, text: str) -> dict:
        hpa = await self._hpa(who, text, "delete")
        meta = hpa["metadata"]
        if not await self.kube.delete(HPA_API_VERSION, HPAS, meta["namespace"], meta["name"], meta.get("uid")):
            raise AutoscalerNotFound(f"autoscaler {text} not found")
        kind, name = _ref(hpa)
        log.info("deleted autoscaler %s (HorizontalPodAutoscaler %s/%s) of %s %s: requested by %s, allowed to "
                 "delete it", text, meta["namespace"], meta["name"], kind, name, who.username)
        return {"message": "Autoscaler deleted successfully", "autoscaler_id": text}

    async def _views(self, who: Identity, namespace: str | None) -> list[dict]:
        if namespace is not None and not DNS_LABEL_RE.fullmatch(namespace):
            raise ValidationFailed("namespace must be a Kubernetes namespace name (DNS-1123 label)")
        if namespace is not None:
            await self.access.require(who, "list", namespace)
        hpas = [h for h in await self.kube.list(HPA_API_VERSION, HPAS, namespace, AUTOSCALER_SELECTOR)
                if is_ours(h)]
        if namespace is None:
            seen = await self.access.visible(who, {h["metadata"]["namespace"] for h in hpas})
            hpas = [h for h in hpas if h["metadata"]["namespace"] in seen]
        events = await self._events(namespace) if hpas else []
        views = [autoscaler_view(h, events) for h in hpas]
        return sorted(views, key=lambda v: v["autoscaling_id"])

    async def list(self, who: Identity, namespace: str | None = None) -> dict:
        views = await self._views(who, namespace)
        return {"autoscalers": views, "count": len(views)}

    async def metrics(self, who: Identity, namespace: str | None = None) -> dict:
        return summary(await self._views(who, namespace))
