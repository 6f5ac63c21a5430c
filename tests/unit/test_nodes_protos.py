"""The committed gRPC/protobuf stubs are exactly what regenerating them from the committed .proto files gives."""

from __future__ import annotations

from pathlib import Path

from dask_operator.nodes.kube import pod_requests
from dask_operator.nodes.protos import regenerate


def test_regenerating_gives_the_committed_files(tmp_path: Path):
    fresh = regenerate.generate(tmp_path)
    committed = regenerate.generated_files(regenerate.HERE)
    assert regenerate.generated_files(fresh) == committed
    changed = [str(rel) for rel in committed if (fresh / rel).read_bytes() != (regenerate.HERE / rel).read_bytes()]
    assert not changed, f"stale stubs, run: python -m dask_operator.nodes.protos.regenerate ({changed})"


def test_every_proto_source_is_committed_and_generated():
    stubs = {str(p) for p in regenerate.generated_files(regenerate.HERE)}
    for proto in regenerate.proto_files():
        assert (regenerate.HERE / proto).is_file()
        assert proto.removesuffix(".proto") + "_pb2.py" in stubs
    assert "externalgrpc_pb2_grpc.py" in stubs


def test_k8s_imports_point_inside_the_package():
    for proto in regenerate.K8S_PROTOS:
        text = (regenerate.HERE / proto).read_text()
        assert 'import "k8s.io/' not in text
        assert 'package k8s.io.' in text, "message names stay Kubernetes' own"


# A v1.Pod with one container requesting cpu 1500m, memory 4Gi and nvidia.com/gpu 1, marshalled by
# k8s.io/api v0.35.6 in Go (`pod.Marshal()`, as the autoscaler sends PricingPodPrice's pod_bytes).
GO_POD = bytes.fromhex(
    "0a100a0012001a0022002a00320038004200126f12510a017712002a004238120e0a0363707512070a05313530306d120f0a066d656d"
    "6f727912050a0334476912150a0e6e76696469612e636f6d2f67707512030a01316a007200800100880100900100a201001a003200"
    "42004a0052005800600068008201008a01009a0100c201001a130a001a0022002a0032004a005a007200880100")


def test_a_pod_marshalled_by_go_parses():
    assert pod_requests(GO_POD) == {"cpu": 1.5, "memory": 4 * 2**30, "nvidia.com/gpu": 1}
