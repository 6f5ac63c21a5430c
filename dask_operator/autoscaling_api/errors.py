"""Errors the autoscaling API raises; `app.ERRORS` maps each to a status and title.

The message is the error body's `details`: it never holds a token or a key.
"""

from __future__ import annotations

from ..errors import DaskOperatorError


class AutoscalingError(DaskOperatorError):
    """Base class of the autoscaling API's own errors."""


class ValidationFailed(AutoscalingError):
    """A malformed request (body, query parameter)."""


class AutoscalerNotFound(AutoscalingError):
    """No autoscaler of this API with that id (or an id that cannot be one)."""


class WorkloadNotFound(AutoscalingError):
    """The workload a create names does not exist (or its kind is not served)."""


class AutoscalerExists(AutoscalingError):
    """The workload already has an autoscaler (ours, or another HPA)."""
