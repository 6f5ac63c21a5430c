"""The Ray GCS messages the operator uses (`ray_autoscaler.proto`) and their generated Python.

`ray_autoscaler_pb2.py` is generated and committed: after changing the .proto,
run `python -m dask_operator.ray_gcs_protos.regenerate` (needs grpcio-tools,
the test extra). tests/unit/test_ray_gcs_protos.py checks that regenerating
gives the committed file byte for byte, and that every field matches Ray's.
"""
