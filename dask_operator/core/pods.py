"""What the operator reads off a Pod object, in one place.

A pod is *ready* when its ``Ready`` condition is ``True`` and it is not being
deleted: a pod on its way out serves no new clients, whatever its last
condition says. Every reader of readiness (scale plans, status, the choice of
scheduler address, the tests) uses `pod_ready`.
"""

from __future__ import annotations

from collections.abc import Mapping


def pod_ready(pod: Mapping) -> bool:
    """Ready condition True and no deletionTimestamp."""
    metadata = pod.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return False
    return any(
        cond.get("type") == "Ready" and cond.get("status") == "True"
        for cond in (pod.get("status") or {}).get("conditions") or ()
    )


def pod_ip(pod: Mapping) -> str | None:
    """The pod's IP, when it has one."""
    return (pod.get("status") or {}).get("podIP") or None
