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

from ..errors import BackendUnavailable, InvalidKind
from ..kube import Kube
from .base import Backend
from .dask_cluster import DaskClusterBackend
from .dco import DcoDaskBackend, DcoRayBackend, DcoSparkBackend
from .kuberay import KubeRayBackend
from .spark_operator import SparkOperatorBackend

KINDS = ("rayclusters", "daskclusters", "sparkclusters")
KIND_MESSAGE = f"kind must be one of [{', '.join(KINDS)}]"

FACTORIES: dict[str, Callable[[Kube], Backend]] = {
    b.name: b for b in (DaskClusterBackend, KubeRayBackend, DcoDaskBackend, DcoRayBackend, DcoSparkBackend,
                        SparkOperatorBackend)
}

DEFAULTS = {"daskclusters": "dask-operator", "rayclusters": "kuberay", "sparkclusters": "dco-spark"}


class Registry:
    """The configured backend of each kind; a kind whose backend is missing says so.

    A kind outside `KINDS` is `InvalidKind` (seed 000's message); a valid kind
    whose backend is not in this build is `BackendUnavailable`, naming it.
    """

    def __init__(self, backends: Mapping[str, Backend], missing: Mapping[str, str] | None = None) -> None:
        self.backends = dict(backends)
        self.missing = dict(missing or {})  # kind -> the backend name that is not available

    @classmethod
    def build(cls, kube: Kube | None, choices: Mapping[str, str] | None = None,
              factories: Mapping[str, Callable[[Kube], Backend]] = FACTORIES,
              defaults: Mapping[str, str] = DEFAULTS) -> Registry:
        """Backends over `defaults`; a backend chosen explicitly must exist (ValueError),
        a default one that does not is reported per kind (`BackendUnavailable`)."""
        choices = dict(choices or {})
        wrong = {k: v for k, v in choices.items() if k not in KINDS or v not in factories}
        if wrong:
            raise ValueError(f"unknown kinds or backends {wrong}; kinds: {list(KINDS)}, "
                             f"backends available: {sorted(factories)}")
        chosen = {**defaults, **choices}
        backends = {k: factories[v](kube) for k, v in chosen.items() if v in factories}
        for kind, backend in backends.items():
            if backend.plural != kind:
                raise ValueError(f"backend {backend.name} serves {backend.plural}, not {kind}")
        return cls(backends, {k: v for k, v in chosen.items() if v not in factories})

    def backend(self, kind: str) -> Backend:
        if kind not in KINDS:
            raise InvalidKind(KIND_MESSAGE)
        if kind in self.backends:
            return self.backends[kind]
        name = self.missing.get(kind, "none")
        raise BackendUnavailable(f"{kind} are served by the backend {name!r}, which this server does not have "
                                 f"(available: {', '.join(sorted(b.name for b in self.backends.values()))})")

    async def aclose(self) -> None:
        for backend in self.backends.values():
            if hasattr(backend, "aclose"):
                await backend.aclose()
