"""The provider's server: mutual TLS, and `nodes serve` as a process that stops on SIGTERM."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from dask_operator.core.nodegroups import build_node_groups
from dask_operator.nodes.cloud import VerdaCloud
from dask_operator.nodes.protos import externalgrpc_pb2 as pb
from dask_operator.nodes.protos import externalgrpc_pb2_grpc as pb_grpc
from dask_operator.nodes.provider import Provider
from dask_operator.nodes.server import TlsFiles, start
from dask_operator.sandbox.pki import make_ca, make_cert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from verda_standin import VerdaStandIn  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {"node_configs": {"gpu": {"image_type": "ubuntu-24.04", "instance_option": "prefer_spot"}}}
SPEC = "0:2:1A100.22V:FIN-01:gpu"


@pytest.fixture
def api():
    stand_in = VerdaStandIn()
    stand_in.url = stand_in.start()
    yield stand_in
    stand_in.stop()


def _groups(stub) -> list[str]:
    return [g.id for g in stub.NodeGroups(pb.NodeGroupsRequest(), timeout=10).nodeGroups]


def test_mutual_tls(tmp_path, api):
    ca = make_ca(tmp_path, "ca", "provider-ca")
    served = make_cert(tmp_path, "server", ca, "verda-provider", server=True, dns=("localhost",), ips=("127.0.0.1",))
    client = make_cert(tmp_path, "client", ca, "cluster-autoscaler", client=True)
    stranger = make_cert(tmp_path, "stranger", make_ca(tmp_path, "other-ca", "other"), "intruder", client=True)
    provider = Provider(build_node_groups([SPEC], CONFIG), VerdaCloud(api.client_id, api.client_secret, api.url))
    server, port = start(provider, "127.0.0.1:0", TlsFiles(served.cert, served.key, ca.cert))
    target = f"127.0.0.1:{port}"

    def channel(pair=None):
        creds = grpc.ssl_channel_credentials(ca.cert.read_bytes(), pair and pair.key.read_bytes(),
                                             pair and pair.cert.read_bytes())
        return grpc.secure_channel(target, creds)

    try:
        with channel(client) as ch:
            assert _groups(pb_grpc.CloudProviderStub(ch)) == ["gpu"]
        for refused in (channel(), channel(stranger), grpc.insecure_channel(target)):
            with refused as ch, pytest.raises(grpc.RpcError) as e:
                _groups(pb_grpc.CloudProviderStub(ch))
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert api.created == [] and api.requests == []
    finally:
        server.stop(None).wait()


def _lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)


def test_serve_runs_until_sigterm(api):
    env = {**os.environ, "DATACRUNCH_CLUSTER_CONFIG_JSON": json.dumps(CONFIG), "DATACRUNCH_CLIENT_ID": api.client_id,
           "DATACRUNCH_CLIENT_SECRET": api.client_secret, "VERDA_API_URL": api.url}
    for name in ("DATACRUNCH_CLUSTER_CONFIG", "DATACRUNCH_CLUSTER_CONFIG_FILE", "VERDA_CLUSTER_CONFIG_JSON",
                 "VERDA_CLUSTER_CONFIG", "VERDA_CLUSTER_CONFIG_FILE", "VERDA_CLIENT_ID", "VERDA_CLIENT_SECRET"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "dask_operator.nodes.cli", "serve", "--nodes", SPEC,
                             "--address", "127.0.0.1:0"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    output: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stderr, output), daemon=True).start()
    seen = []
    try:
        deadline = time.monotonic() + 60
        port = None
        while port is None:
            line = output.get(timeout=max(0.1, deadline - time.monotonic()))
            seen.append(line)
            if match := re.search(r"serving on 127\.0\.0\.1:0 \(port (\d+)\)", line):
                port = int(match[1])
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.CloudProviderStub(ch)
            assert _groups(stub) == ["gpu"]
            stub.NodeGroupIncreaseSize(pb.NodeGroupIncreaseSizeRequest(id="gpu", delta=1), timeout=10)
        assert len(api.created) == 1 and api.created[0]["is_spot"] is True
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    while not output.empty():
        seen.append(output.get())
    log = "".join(seen)
    assert "node group gpu: created spot instance" in log and "stopping" in log
    assert api.client_secret not in log and not [t for t in api.tokens if t in log]
