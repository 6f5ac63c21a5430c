"""The gRPC server: the servicer on a thread pool, plain or with mutual TLS.

A synchronous server, deliberately: the `verda` SDK blocks (``requests``),
so each call runs on a worker thread of its own and simply waits for Verda.
An asyncio server would have to push every SDK call to a thread anyway. The
autoscaler makes its calls one at a time (scale-down deletes in parallel), so
a few workers are plenty.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc

from .protos import externalgrpc_pb2_grpc as pb_grpc
from .provider import Provider
from .servicer import CloudProviderServicer

WORKERS = 8


@dataclass(frozen=True)
class TlsFiles:
    """The server's certificate and key, and the CA that signed the autoscaler's client certificate."""

    cert: Path
    key: Path
    ca: Path

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=self.ca.read_bytes(),
            require_client_auth=True,
        )


def start(provider: Provider, address: str, tls: TlsFiles | None = None) -> tuple[grpc.Server, int]:
    """Start serving on ``address`` (``host:port``, port 0 picks one); return the server and its port."""
    server = grpc.server(ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="nodes-grpc"))
    pb_grpc.add_CloudProviderServicer_to_server(CloudProviderServicer(provider), server)
    try:
        port = server.add_secure_port(address, tls.credentials()) if tls else server.add_insecure_port(address)
    except RuntimeError as e:  # grpcio raises when it cannot bind
        raise OSError(f"cannot listen on {address}: {e}") from None
    server.start()
    return server, port
