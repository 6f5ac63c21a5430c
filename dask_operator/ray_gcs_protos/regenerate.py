"""Regenerate `ray_autoscaler_pb2.py` from `ray_autoscaler.proto` beside it.

    python -m dask_operator.ray_gcs_protos.regenerate

Needs only grpcio-tools (the `test` extra). protoc runs with the repository
root as its include path, so the file registers in protobuf's pool under its
package path, `dask_operator/ray_gcs_protos/ray_autoscaler.proto`, which no
other library uses. No `_pb2_grpc.py`: the client calls Ray's two methods by
their paths (see the .proto's header).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]  # -I root: the proto's path below it is its Python module path
PREFIX = HERE.relative_to(ROOT).as_posix()  # dask_operator/ray_gcs_protos
PROTO = "ray_autoscaler.proto"
GENERATED = ("ray_autoscaler_pb2.py",)


def generate(out_root: Path) -> Path:
    """Write the stubs below `out_root` (as if it were the repository root); return their directory."""
    from grpc_tools import protoc  # the test extra: never needed at run time

    out_root.mkdir(parents=True, exist_ok=True)
    code = protoc.main(["grpc_tools.protoc", f"-I{ROOT}", f"--python_out={out_root}", f"{PREFIX}/{PROTO}"])
    if code != 0:
        raise RuntimeError(f"protoc failed ({code}) on {PREFIX}/{PROTO}")
    return out_root / PREFIX


def main() -> int:
    generate(ROOT)
    for name in GENERATED:
        print(f"{PREFIX}/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
