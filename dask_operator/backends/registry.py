"""Which backend serves each kind of the scaling API.

The API's kinds are seed 000's plurals. Each has a default backend, and a
deployment may choose another (`--backend daskclusters=dco-dask`):

| kind | default | also |
|---|---|---|
| daskclusters | dask-operator (our Cluster) | dco-dask |
| rayclusters | kuberay | dco-ray |
| sparkclusters | dco-spark | spark-operator (Apache) |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..errors import InvalidKind
from ..kube import Kube
from .base import Backend
from .dask_cluster import DaskClusterBackend
from .dco import DcoDaskBackend, DcoRayBackend, DcoSparkBackend
from .kuberay import KubeRayBackend
from .spark_operator import SparkOperatorBackend

KINDS = ("rayclusters", "daskclusters", "sparkclusters")

FACTORIES: dict[str, Callable[[Kube], Backend]] = {
    b.name: b for b in (DaskClusterBackend, KubeRayBackend, DcoDaskBackend, DcoRayBackend, DcoSparkBackend,
                        SparkOperatorBackend)
}

DEFAULTS = {"daskclusters": "dask-operator", "rayclusters": "kuberay", "sparkclusters": "dco-spark"}


class Registry:
    """The configured backend of each kind."""

    def __init__(self, backends: Mapping[str, Backend]) -> None:
        self._backends = dict(backends)

    @classmethod
    def configure(cls, kube: Kube, choices: Mapping[str, str] | None = None) -> Registry:
        """Backends for every kind: `choices` ({kind: backend name}) over `DEFAULTS`."""
        chosen = {**DEFAULTS, **(choices or {})}
        unknown = {k: v for k, v in chosen.items() if k not in KINDS or v not in FACTORIES}
        if unknown:
            raise ValueError(f"unknown kinds or backends {unknown}; kinds: {list(KINDS)}, "
                             f"backends: {sorted(FACTORIES)}")
        backends = {kind: FACTORIES[name](kube) for kind, name in chosen.items()}
        for kind, backend in backends.items():
            if backend.plural != kind:
                raise ValueError(f"backend {backend.name} serves {backend.plural}, not {kind}")
        return cls(backends)

    def kinds(self) -> list[str]:
        return [k for k in KINDS if k in self._backends]

    def backend(self, kind: str) -> Backend:
        try:
            return self._backends[kind]
        except KeyError:
            raise InvalidKind(f"kind must be one of [{', '.join(self.kinds())}]") from None
