"""Pure rules of the HTTP API: request fields, ownership, the replica cap, the
compatibility view and the head-restart status. No I/O, no clock.

Request fields:
- `replicas` is a JSON integer >= 0, else seed 000's `replicas must be a
  non-negative integer`: not a bool, a string or a fraction; a number with
  a zero fraction (`3.0`) is the integer it equals, as JSON Schema (and so
  the OpenAPI document) counts it.
- `worker_group` (optional) names the worker group of a resource with
  several (KubeRay); backends with one group accept only theirs.
- A tier may be named by `worker_hw_tier_name`, `worker_hw_tier` or
  `worker_hw_tier_id` (`head_hw_tier_*` for the head); the seed-001 client
  sends the same value in two of them. Empty or null values are absent.
- Flags (`raw`) are `true|1|yes` or `false|0|no` (any case, nothing around
  them) or empty; names and namespaces are DNS-1123, as Kubernetes
  requires. Each rule is a whole-string match (a trailing newline fails it),
  and `openapi.py` publishes the same patterns.

Ownership: a cluster is owned by the value of its owner label; a user id
that is not a valid label value owns nothing (and never reaches a selector).

Replica cap (`cap_replicas`): the request is capped at the server's maximum
and at the backend's `ClusterStatus.max_replicas`, except for backends whose
maximum moves with the scale (Domino's DCO: seed 000 raises
`spec.autoscaling.maxReplicas` to at least replicas + 1), for which it is no
ceiling. The answer says when it capped.

Compatibility view (`compat_view`): the seed-001 client reads
`spec.worker.replicas` and counts `status.nodes` minus one head to decide a
scale is complete. Domino's resources carry both; for the others the view
adds what is missing from the uniform status: `spec.worker.replicas` =
desired workers, `status.nodes` = a head entry then one entry per Ready
worker (placeholder names, `<name>-head`, `<name>-worker-<i>`). Every view
also carries the uniform status as `status.scaler`, listing the fields it
added in `status.scaler.compat`. `?raw=true` skips the view entirely.

Head restart (`head_restart_status`): the head counts as restarted when its
`creationTimestamp` is at or after `started_at`, compared at whole seconds
(creationTimestamp has no fraction); `status` is `restarted_and_ready` once
it is also Ready. `restart_started_at` never echoes a time later than the
server's clock, so a client clock ahead of the cluster's cannot make the
replacement look older than the restart.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core.k8s_names import DNS_LABEL_RE, DNS_SUBDOMAIN_RE
from ..backends.base import ClusterStatus
from ..core.pods import pod_ready
from .errors import BadRequest

REPLICAS_MESSAGE = "replicas must be a non-negative integer"
TIER_SUFFIXES = ("_hw_tier_name", "_hw_tier", "_hw_tier_id")
MAX_RAISED_BY_SCALE = frozenset({"dco-dask", "dco-ray", "dco-spark"})

# JSON Schema (ECMA-262) patterns, also served in the OpenAPI document; matched
# here with `fullmatch`, so that `$` cannot accept a trailing newline.
FLAG = r"^([Tt][Rr][Uu][Ee]|[Yy][Ee][Ss]|1|[Ff][Aa][Ll][Ss][Ee]|[Nn][Oo]|0)?$"
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


# ------------------------------------------------------------------ request fields


def parse_replicas(body: Mapping) -> int:
    value = body.get("replicas")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(REPLICAS_MESSAGE)
    return value


def worker_group(body: Mapping) -> str | None:
    """The optional `worker_group` (a RayCluster with several groups needs one)."""
    value = body.get("worker_group")
    if value is not None and (not isinstance(value, str) or not value):
        raise BadRequest("worker_group must be a non-empty string")
    return value


def tier_fields(body: Mapping, role: str = "worker") -> list[str]:
    """The tier names/ids given for `role` ("worker" or "head"), in field order, empties dropped."""
    values = []
    for suffix in TIER_SUFFIXES:
        value = body.get(role + suffix)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise BadRequest(f"{role + suffix} must be a string")
        values.append(value)
    return values


def parse_flag(value: str | None, name: str) -> bool:
    text = (value or "").lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise BadRequest(f"{name} must be true or false")


def check_namespace(namespace: str) -> str:
    if not DNS_LABEL_RE.fullmatch(namespace or ""):
        raise BadRequest("namespace must be a Kubernetes namespace name (DNS-1123 label)")
    return namespace


def check_name(name: str) -> str:
    if not DNS_SUBDOMAIN_RE.fullmatch(name or ""):
        raise BadRequest("cluster name must be a Kubernetes object name (DNS-1123 subdomain)")
    return name


# ------------------------------------------------------------------ ownership


def valid_label_value(value: str) -> bool:
    return bool(value) and bool(_LABEL_VALUE.fullmatch(value))


def owner_of(obj: Mapping, label: str) -> str | None:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(label)


def owns(obj: Mapping, label: str, user_id: str) -> bool:
    return valid_label_value(user_id) and owner_of(obj, label) == user_id


def owner_selector(label: str, user_id: str) -> str | None:
    """The label selector of a user's clusters; None when the user can own none."""
    return f"{label}={user_id}" if valid_label_value(user_id) else None


# ------------------------------------------------------------------ replica cap


@dataclass(frozen=True)
class Cap:
    replicas: int  # what is sent to the backend
    limit: int | None = None  # the maximum that capped it, None when not capped

    @property
    def capped(self) -> bool:
        return self.limit is not None


def cap_replicas(requested: int, backend: str, backend_max: int | None, server_max: int | None) -> Cap:
    limits = [m for m in (server_max, None if backend in MAX_RAISED_BY_SCALE else backend_max) if m is not None]
    limit = min(limits, default=None)
    if limit is not None and requested > limit:
        return Cap(limit, limit)
    return Cap(requested)


# ------------------------------------------------------------------ views


def uniform(status: ClusterStatus) -> dict:
    return {
        "desired": status.desired,
        "readyWorkers": status.ready_workers,
        "headReady": status.head_ready,
        "minReplicas": status.min_replicas,
        "maxReplicas": status.max_replicas,
        "scaleDown": status.scale_down,
        "complete": status.head_ready and status.ready_workers == status.desired,
    }


def compat_view(obj: Mapping, status: ClusterStatus) -> dict:
    """A copy of `obj` with the seed-001 client's fields filled in where missing."""
    out = copy.deepcopy(dict(obj))
    name = (out.get("metadata") or {}).get("name") or "cluster"
    added = []
    spec = out.get("spec") if isinstance(out.get("spec"), dict) else {}
    out["spec"] = spec
    worker = spec.get("worker") if isinstance(spec.get("worker"), dict) else None
    if worker is None or not isinstance(worker.get("replicas"), int):
        spec["worker"] = {**(worker or {}), "replicas": status.desired}
        added.append("spec.worker.replicas")
    st = out.get("status") if isinstance(out.get("status"), dict) else {}
    out["status"] = st
    if not isinstance(st.get("nodes"), list):
        st["nodes"] = [f"{name}-head"] + [f"{name}-worker-{i}" for i in range(status.ready_workers)]
        added.append("status.nodes")
    st["scaler"] = {**uniform(status), "compat": added}
    return out


# ------------------------------------------------------------------ timestamps and head restart


def parse_timestamp(text: str | None, name: str = "started_at") -> dt.datetime:
    """An ISO-8601 time (`Z` or an offset; without one, UTC) as an aware datetime in UTC. A time
    whose UTC form is before year 1 or after year 9999 (0001-01-01T00:00:00+01:00) is the first
    or last time Python has: every real time compares with it as with the time given."""
    if not text:
        raise BadRequest(f"{name} is required (ISO-8601, e.g. 2025-09-02T15:40:00Z)")
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} must be an ISO-8601 timestamp, e.g. 2025-09-02T15:40:00Z") from None
    value = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    try:
        return value.astimezone(dt.timezone.utc)
    except OverflowError:
        return (dt.datetime.min if value.year == dt.MINYEAR else dt.datetime.max).replace(tzinfo=dt.timezone.utc)


def format_timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _floor(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.timezone.utc).replace(microsecond=0)


def restart_started_at(given: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    """The `started_at` a restart answers with: the client's, but never after the server's now."""
    return _floor(min(given, now) if given is not None else now)


def head_restart_status(head: Mapping | None, started_at: dt.datetime) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": True, "started_at": format_timestamp(started_at), "pod": None,
                            "created_at": None, "restarted": False, "ready": False, "status": "no_head"}
    if head is None:
        return body
    meta = head.get("metadata") or {}
    created = meta.get("creationTimestamp")
    restarted = bool(created) and _floor(parse_timestamp(created, "creationTimestamp")) >= _floor(started_at)
    ready = pod_ready(head)
    status = ("restarted_and_ready" if ready else "restarted_not_ready") if restarted else "not_restarted"
    return {**body, "pod": meta.get("name"), "created_at": created, "restarted": restarted, "ready": ready,
            "status": status}
