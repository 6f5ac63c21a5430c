"""Hardware tiers: a ConfigMap's `tiers.yaml` to the `WorkerShape` a scale applies.

The ConfigMap (see deploy/api/tiers.yaml) holds one data key, `tiers.yaml`:

    tiers:
      - id: gpu-small-k8s          # unique
        name: GPU Small            # unique, case-insensitively
        resources:                 # a container's ResourceRequirements
          requests: {cpu: "4", memory: 16Gi}
          limits: {memory: 16Gi}
        gpus: 1                    # optional: adds <gpuResource>: 1 to requests and limits
        gpuResource: nvidia.com/gpu  # optional, this default
        nodeSelector: {dominodatalab.com/node-pool: gpu}   # optional
        tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]  # optional
        kinds: [rayclusters, daskclusters]                # optional: default every kind

Rules (`parse_tiers`, `resolve`), pure:
- A request names a tier by id (exact) or by name (case-insensitive); every
  tier field of one request must name the same tier.
- An unknown tier, a tier not allowed for the kind, conflicting fields, or a
  tier given while no tiers are configured: `InvalidTier` (400
  `invalid_hw_tier`), before anything is changed.
- A malformed ConfigMap is the server's fault (`TiersUnavailable`): a scale
  without a tier never reads it.
- A tier's shape sets resources, and nodeSelector and tolerations (empty when
  the tier has none, so moving from a GPU tier to a CPU tier clears them).

`TierSource` reads the ConfigMap through `Kube.get`, keeping it `ttl` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import yaml

from ..backends.registry import KINDS
from ..core.scaling import WorkerShape
from ..errors import KubeApiError
from .errors import InvalidTier, TiersUnavailable

DATA_KEY = "tiers.yaml"
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class Tier:
    id: str
    name: str
    resources: Mapping
    node_selector: Mapping
    tolerations: tuple[Mapping, ...]
    kinds: frozenset[str] | None  # None: every kind

    @property
    def shape(self) -> WorkerShape:
        return WorkerShape(resources=self.resources, node_selector=self.node_selector,
                           tolerations=self.tolerations)

    def allows(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds


def _tier(entry: object, where: str) -> Tier:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: a tier is a mapping")
    tid, name = entry.get("id"), entry.get("name")
    if not isinstance(tid, str) or not tid or not isinstance(name, str) or not name:
        raise ValueError(f"{where}: id and name are non-empty strings")
    resources = entry.get("resources") or {}
    if not isinstance(resources, Mapping) or set(resources) - {"requests", "limits"}:
        raise ValueError(f"{where} ({tid}): resources has only requests and limits")
    resources = {k: {str(r): str(q) for r, q in (v or {}).items()} for k, v in resources.items()}
    gpus = entry.get("gpus", 0)
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise ValueError(f"{where} ({tid}): gpus is a non-negative integer")
    if gpus:
        gpu = str(entry.get("gpuResource") or DEFAULT_GPU_RESOURCE)
        for key in ("requests", "limits"):  # extended resources: requests == limits
            resources.setdefault(key, {})[gpu] = str(gpus)
    selector = entry.get("nodeSelector") or {}
    tolerations = entry.get("tolerations") or []
    if not isinstance(selector, Mapping) or not isinstance(tolerations, list) \
            or not all(isinstance(t, Mapping) for t in tolerations):
        raise ValueError(f"{where} ({tid}): nodeSelector is a mapping, tolerations a list of mappings")
    kinds = entry.get("kinds")
    if kinds is not None:
        if not isinstance(kinds, list) or not set(kinds) <= set(KINDS):
            raise ValueError(f"{where} ({tid}): kinds is a list of {', '.join(KINDS)}")
        kinds = frozenset(kinds)
    return Tier(tid, name, resources, {str(k): str(v) for k, v in selector.items()},
                tuple(dict(t) for t in tolerations), kinds)


def parse_tiers(data: Mapping[str, str] | None) -> tuple[Tier, ...]:
    """The tiers of a ConfigMap's `data`; ValueError saying what is wrong."""
    text = (data or {}).get(DATA_KEY)
    if text is None:
        raise ValueError(f"the ConfigMap has no {DATA_KEY!r} key")
    doc = yaml.safe_load(text) or {}
    entries = doc.get("tiers") if isinstance(doc, Mapping) else None
    if not isinstance(entries, list):
        raise ValueError(f"{DATA_KEY} must hold a 'tiers' list")
    tiers = tuple(_tier(e, f"{DATA_KEY} tiers[{i}]") for i, e in enumerate(entries))
    ids = [t.id for t in tiers]
    names = [t.name.casefold() for t in tiers]
    if len(set(ids)) != len(ids) or len(set(names)) != len(names):
        raise ValueError(f"{DATA_KEY}: tier ids and names must be unique")
    return tiers


def find(tiers: Sequence[Tier], value: str) -> Tier | None:
    by_id = next((t for t in tiers if t.id == value), None)
    return by_id or next((t for t in tiers if t.name.casefold() == value.casefold()), None)


def resolve(tiers: Sequence[Tier], values: Sequence[str], kind: str) -> Tier | None:
    """The one tier `values` name for `kind`; None when none is given."""
    if not values:
        return None
    if not tiers:
        raise InvalidTier(f"unknown hardware tier {values[0]!r}: no hardware tiers are configured")
    found = []
    for value in values:
        tier = find(tiers, value)
        if tier is None:
            known = ", ".join(t.name for t in tiers if t.allows(kind))
            raise InvalidTier(f"unknown hardware tier {value!r}; tiers for {kind}: {known or 'none'}")
        found.append(tier)
    if len({t.id for t in found}) > 1:
        raise InvalidTier(f"the tier fields name different tiers: {', '.join(repr(v) for v in values)}")
    tier = found[0]
    if not tier.allows(kind):
        raise InvalidTier(f"hardware tier {tier.name!r} is not allowed for {kind} "
                          f"(allowed: {', '.join(sorted(tier.kinds or ()))})")
    return tier


class TierSource:
    """The tiers of one ConfigMap, read when needed and kept `ttl` seconds."""

    def __init__(self, kube, namespace: str | None, name: str | None, ttl: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self.ttl, self.clock = ttl, clock
        self._cached: tuple[float, tuple[Tier, ...]] | None = None

    async def tiers(self) -> tuple[Tier, ...]:
        if self.name is None:
            return ()
        if self._cached and self.clock() - self._cached[0] < self.ttl:
            return self._cached[1]
        where = f"ConfigMap {self.namespace}/{self.name}"
        try:
            cm = await self.kube.get("v1", "configmaps", self.namespace, self.name)
        except KubeApiError as e:
            raise TiersUnavailable(f"cannot read the hardware tiers ({where})", str(e)) from e
        if cm is None:
            raise TiersUnavailable(f"the hardware tiers {where} does not exist")
        try:
            tiers = parse_tiers(cm.get("data"))
        except (ValueError, yaml.YAMLError) as e:
            raise TiersUnavailable(f"the hardware tiers {where} are malformed", str(e)) from e
        self._cached = (self.clock(), tiers)
        return tiers


class StaticTiers:
    """Fixed tiers (tests, `--tiers-file`)."""

    def __init__(self, tiers: Sequence[Tier] = ()) -> None:
        self._tiers = tuple(tiers)

    async def tiers(self) -> tuple[Tier, ...]:
        return self._tiers
