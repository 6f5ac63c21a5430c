"""Domain errors of the operator.

Each error's ``reason`` is its class name, a CamelCase word fit for a
condition's or an Event's ``reason`` field.
"""

from __future__ import annotations


class DaskOperatorError(Exception):
    """Base class of every error the operator raises on purpose."""

    @property
    def reason(self) -> str:
        """The CamelCase reason for conditions and Events."""
        return type(self).__name__


class InvalidSpec(DaskOperatorError):
    """The Cluster resource cannot be turned into a ClusterSpec."""


class SchedulerUnreachable(DaskOperatorError):
    """The scheduler's HTTP API could not be reached or answered with an error."""


class RetireIncomplete(DaskOperatorError):
    """The scheduler retired fewer workers than requested."""

    def __init__(self, requested: int, retired: list[str]) -> None:
        self.requested = requested
        self.retired = list(retired)
        super().__init__(
            f"the scheduler retired {len(self.retired)} of {requested} requested workers"
        )


class KubeApiError(DaskOperatorError):
    """The Kubernetes API answered with an error status."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(f"HTTP {code}: {message}")
