"""Certificates for the sandbox control plane, made with `cryptography`.

Two CAs, as kubeadm makes them: the cluster CA signs serving and client
certificates; the front-proxy CA signs the aggregator's client certificate so
that aggregated API servers (prometheus-adapter) trust the identity the
apiserver forwards. A separate RSA key pair signs ServiceAccount tokens.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


def _write_key(path: Path, key) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _load(pair: KeyPair):
    cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    key = serialization.load_pem_private_key(pair.key.read_bytes(), None)
    return cert, key


def make_ca(directory: Path, name: str, cn: str) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    subject = _name(cn)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pair.key, key)
    return pair


def make_cert(
    directory: Path,
    name: str,
    ca: KeyPair,
    cn: str,
    *,
    org: str | None = None,
    server: bool = False,
    client: bool = False,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
) -> KeyPair:
    ca_cert, ca_key = _load(ca)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pair.key, key)
    return pair


def make_service_account_keys(directory: Path) -> KeyPair:
    """RSA pair for ServiceAccount token signing (`cert` holds the public key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pair = KeyPair(directory / "sa.pub", directory / "sa.key")
    pair.cert.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    _write_key(pair.key, key)
    return pair


@dataclass(frozen=True)
class Pki:
    ca: KeyPair
    front_proxy_ca: KeyPair
    apiserver: KeyPair
    front_proxy_client: KeyPair
    service_account: KeyPair
    admin: KeyPair
    controller_manager: KeyPair
    scheduler: KeyPair
    serving: KeyPair  # for controller-manager, scheduler, kwok, adapter on 127.0.0.1


def make_pki(directory: Path, apiserver_ips: tuple[str, ...] = ()) -> Pki:
    """Generate every certificate the sandbox needs under `directory`;
    `apiserver_ips` are the API server's addresses besides 127.0.0.1."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca(directory, "ca", "dask-operator-sandbox-ca")
    fp_ca = make_ca(directory, "front-proxy-ca", "dask-operator-sandbox-front-proxy-ca")
    local_dns = ("localhost",)
    local_ips = ("127.0.0.1",)
    return Pki(
        ca=ca,
        front_proxy_ca=fp_ca,
        apiserver=make_cert(
            directory, "apiserver", ca, "kube-apiserver", server=True,
            dns=local_dns + (
                "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ips=local_ips + apiserver_ips,
        ),
        front_proxy_client=make_cert(
            directory, "front-proxy-client", fp_ca, "front-proxy-client", client=True
        ),
        service_account=make_service_account_keys(directory),
        admin=make_cert(directory, "admin", ca, "sandbox-admin", org="system:masters", client=True),
        controller_manager=make_cert(
            directory, "controller-manager", ca, "system:kube-controller-manager", client=True
        ),
        scheduler=make_cert(directory, "scheduler", ca, "system:kube-scheduler", client=True),
        serving=make_cert(
            directory, "serving", ca, "localhost", server=True, dns=local_dns, ips=local_ips
        ),
    )
