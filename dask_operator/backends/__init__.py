"""Dask, Ray and Spark clusters behind one scaling interface (see `base`)."""

from .base import Backend, ClusterStatus, WorkerShape
from .registry import DEFAULTS, FACTORIES, KINDS, Registry

__all__ = ["DEFAULTS", "FACTORIES", "KINDS", "Backend", "ClusterStatus", "Registry", "WorkerShape"]
