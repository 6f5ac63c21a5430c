"""Pod Security Standards "restricted" defaults, applied only where a template leaves them out.

- pod ``securityContext``: ``runAsNonRoot: true`` (skipped if any
  ``runAsUser`` is 0), ``runAsUser: 1000``, ``seccompProfile: RuntimeDefault``;
- container ``securityContext`` (every container and init container):
  ``allowPrivilegeEscalation: false`` (skipped for privileged containers),
  ``capabilities: {drop: [ALL]}``.
"""

from __future__ import annotations

import copy
from typing import Any

DEFAULT_POD_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
DEFAULT_CONTAINER_SECURITY_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def default_security(pod_spec: dict[str, Any]) -> None:
    """Pod Security Standards "restricted" defaults, only where not set."""
    containers = pod_spec["containers"] + (pod_spec.get("initContainers") or [])
    pod_ctx = pod_spec["securityContext"] = pod_spec.get("securityContext") or {}
    runs_as_root = any(
        ctx.get("runAsUser") == 0
        for ctx in [pod_ctx] + [ct.get("securityContext") or {} for ct in containers]
    )
    for key, value in DEFAULT_POD_SECURITY_CONTEXT.items():
        if key == "runAsNonRoot" and runs_as_root:
            continue
        pod_ctx.setdefault(key, copy.deepcopy(value))
    for container in containers:
        ctx = container["securityContext"] = container.get("securityContext") or {}
        for key, value in DEFAULT_CONTAINER_SECURITY_CONTEXT.items():
            if key == "allowPrivilegeEscalation" and ctx.get("privileged"):
                continue
            ctx.setdefault(key, copy.deepcopy(value))
