"""GPU nodes on Verda (formerly DataCrunch) for the stock cluster-autoscaler.

A gRPC service implementing cluster-autoscaler's externalgrpc ``CloudProvider``
(``--cloud-provider=externalgrpc``) on the official `verda` SDK: `cli` (the
``nodes serve`` command), `config` (environment), `cloud` (the SDK),
`provider` (state and actions), `servicer` (the gRPC edge), `server`, `kube`
(v1.Node / v1.Pod bytes). The rules are pure, in `dask_operator.core.nodegroups`.
Generated stubs live in `protos/` (see `protos/regenerate.py`).
"""
