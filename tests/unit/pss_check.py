"""A small checker for the Pod Security Standards "restricted" profile.

It covers the controls the operator's pods can get wrong: privileged
containers, host namespaces, volume types, privilege escalation, running as
root, seccomp and capabilities. An empty result means compliant.
"""

from __future__ import annotations

from collections.abc import Mapping

ALLOWED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}
SECCOMP_TYPES = {"RuntimeDefault", "Localhost"}


def restricted_violations(pod_spec: Mapping) -> list[str]:
    """Violations of the restricted profile by a PodSpec."""
    pod_ctx = pod_spec.get("securityContext") or {}
    containers = [
        *(pod_spec.get("containers") or []),
        *(pod_spec.get("initContainers") or []),
        *(pod_spec.get("ephemeralContainers") or []),
    ]
    problems = [f"host namespace: {k}" for k in ("hostNetwork", "hostPID", "hostIPC") if pod_spec.get(k)]
    for volume in pod_spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            problems.append(f"volume {volume.get('name')}: type {sorted(kinds)} not allowed")
    if pod_ctx.get("runAsUser") == 0:
        problems.append("pod runAsUser 0")
    for container in containers:
        problems += _container_violations(container, pod_ctx)
    return problems


def _container_violations(container: Mapping, pod_ctx: Mapping) -> list[str]:
    name = container.get("name")
    ctx = container.get("securityContext") or {}
    problems = []
    if ctx.get("privileged"):
        problems.append(f"{name}: privileged")
    if ctx.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{name}: allowPrivilegeEscalation must be false")
    if ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is not True:
        problems.append(f"{name}: runAsNonRoot must be true")
    if ctx.get("runAsUser") == 0:
        problems.append(f"{name}: runAsUser 0")
    seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
    if seccomp not in SECCOMP_TYPES:
        problems.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
    capabilities = ctx.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        problems.append(f"{name}: capabilities must drop ALL")
    if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
        problems.append(f"{name}: may only add NET_BIND_SERVICE")
    return problems
