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


class InvalidAutoscaling(InvalidSpec):
    """An HPA spec (or a Cluster's ``spec.autoscaling``) the engine cannot run; names the field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


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
    """The Kubernetes API answered with an error status, or could not be reached (code 0)."""

    def __init__(self, code: int, message: str, status_reason: str = "") -> None:
        self.code = code
        self.status_reason = status_reason  # the API Status' reason: "AlreadyExists", "Conflict", ...
        super().__init__(f"HTTP {code}: {message}")


class ScalingError(DaskOperatorError):
    """A scaling request through a backend that cannot be carried out; nothing was changed.

    ``code`` is a stable, snake_case word for API error bodies; ``http_status``
    the status an HTTP edge answers with.
    """

    code = "scale_failed"
    http_status = 500


class ClusterNotFound(ScalingError):
    """No cluster of that kind and name in that namespace."""

    code = "not_found"
    http_status = 404


class OperatorNotInstalled(ScalingError):
    """The resource's CRD is not served: its operator is not installed."""

    code = "operator_not_installed"
    http_status = 404


class InvalidScale(ScalingError):
    """Bad input: replicas that are not a non-negative integer, an unknown worker group, ..."""

    code = "bad_request"
    http_status = 400


class NotScalable(ScalingError):
    """The resource cannot be scaled this way (no autoscaling bounds, an unsupported field)."""

    code = "not_scalable"
    http_status = 409


class ScaleDownUnsafe(ScalingError):
    """The backend cannot tell which workers are safe to remove, so it removes none."""

    code = "scale_down_unsafe"
    http_status = 409


class ScaleDownPartial(ScaleDownUnsafe):
    """Part of a scale-down was carried out: the framework released only some of the chosen
    workers; those went, the rest stay, and the desired count says so."""

    code = "scale_down_partial"


class HeadNotFound(ScalingError):
    """The cluster has no head pod (Dask scheduler, Ray head, Spark master) right now."""

    code = "head_not_found"
    http_status = 409


class InvalidKind(ScalingError):
    """A kind the API does not serve."""

    code = "invalid_kind"
    http_status = 400


class Conflict(ScalingError):
    """The resource changed between a read and a write (HTTP 409); read and decide again."""

    code = "conflict"
    http_status = 409


class BackendUnavailable(ScalingError):
    """A valid kind whose configured backend is not in this build."""

    code = "backend_unavailable"
    http_status = 501


class NotSupported(ScalingError):
    """The backend cannot do this operation (e.g. change the head's hardware tier)."""

    code = "not_supported"
    http_status = 501


# Verda node groups (dask-operator nodes serve)

class NodeGroupConfigError(DaskOperatorError):
    """A ``--nodes`` spec or the cluster config is invalid; ``field`` names what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


class StartupScriptError(DaskOperatorError):
    """A startup-script template, variable or request is invalid; ``field`` names what is wrong (never a secret)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


class ScriptSecretUnavailable(DaskOperatorError):
    """A Secret a startup-script variable comes from cannot be read; names the Secret and key, never a value."""


class VerdaError(DaskOperatorError):
    """Verda's API refused a call (``code``: its error code) or could not be reached.

    ``kind``: capacity (no instance of that type/offer left), quota (account
    limits, funds), auth (credentials refused), invalid (a request Verda
    rejects, e.g. an unknown image), not_found, unavailable (timeouts,
    connection errors, 5xx).
    """

    def __init__(self, kind: str, message: str, code: str | None = None) -> None:
        self.kind = kind
        self.code = code
        super().__init__(message)


class NodeGroupError(DaskOperatorError):
    """A request the node-group provider refuses; ``kind`` is one of `nodes.provider`'s kinds."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


# The cluster-scaler API's Python client (client.py)

class ClientError(DaskOperatorError):
    """Any failure of the client: the server's error, no answer, bad configuration, a wait run out."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "client_error",
                 details: str | None = None, request: str | None = None) -> None:
        self.message, self.status, self.code, self.details, self.request = message, status, code, details, request
        where = f"{request}: " if request else ""
        answer = f"HTTP {status} {code}" if status is not None else code
        super().__init__(f"{where}{answer}: {message}" + (f" ({details})" if details else ""))

    @property
    def transient(self) -> bool:
        """Worth asking again: no answer, or a gateway's or server's temporary failure."""
        return self.code in ("unreachable", "request_timeout") or self.status in (502, 503, 504)


# The autoscaling API (seed 004)

class InvalidAutoscalerRequest(DaskOperatorError):
    """An autoscaler create request seed 004's rules refuse; the message lists every problem."""
