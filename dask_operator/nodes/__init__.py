"""GPU nodes on Verda (formerly DataCrunch) for the stock cluster-autoscaler.

A gRPC service implementing cluster-autoscaler's externalgrpc ``CloudProvider``
(``--cloud-provider=externalgrpc``) on the official `verda` SDK: `cli` (the
``nodes serve`` command), `config` (environment), `cloud` (the SDK),
`provider` (state and actions), `servicer` (the gRPC edge), `server`, `kube`
(v1.Node / v1.Pod bytes), `script_source` (the provider's client of the
startup-script server). The startup-script server itself: `scripts_cli` (the
``startup-scripts`` command) and `script_server` (its HTTP edge and the
reaper). The rules are pure, in `dask_operator.core.nodegroups` and
`dask_operator.core.startup_scripts`. Generated stubs live in `protos/` (see
`protos/regenerate.py`).
"""
