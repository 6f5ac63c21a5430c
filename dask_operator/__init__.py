"""dask-operator: a Kubernetes operator for Dask clusters."""

__version__ = "0.1.0"
