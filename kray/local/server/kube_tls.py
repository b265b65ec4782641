"""The local server's own CA and loopback serving certificate, for the Kubernetes API it serves.

Ray's autoscaler refuses plain HTTP (``url_from_resource`` raises for ``http://``) and verifies the
server against ``/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`` (or ``RAY_KUBERAY_CA_CERT_PATH``),
so that API is served over TLS on 127.0.0.1 with a certificate from a CA made for this state directory.
The CA is kept across server restarts: a running autoscaler keeps trusting the file it was given.
``cryptography`` comes with Ray (through google-auth), which local mode needs anyway.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

VALIDITY = datetime.timedelta(days=3650)


@dataclass(frozen=True, slots=True)
class ServingTls:
    ca_cert: Path
    cert: Path
    key: Path


def ensure_serving_tls(directory: Path) -> ServingTls:
    """The CA and serving pair in ``directory`` (mode 0700), generated when missing."""
    tls = ServingTls(ca_cert=directory / "ca.crt", cert=directory / "tls.crt", key=directory / "tls.key")
    if all(p.exists() for p in (tls.ca_cert, tls.cert, tls.key)):
        return tls
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_pem, cert_pem, key_pem = _generate()
    _write(tls.key, key_pem, mode=0o600)
    _write(tls.cert, cert_pem, mode=0o644)
    _write(tls.ca_cert, ca_pem, mode=0o644)  # last: its presence means the set is complete
    return tls


def _write(path: Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _generate() -> tuple[bytes, bytes, bytes]:
    """PEMs of a fresh CA certificate, a serving certificate for 127.0.0.1/localhost it signed, and its key."""
    # Lazily: a server whose state dir already has its certificates never needs the package.
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kray-local-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kray-local-kube-api")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ca.public_bytes(pem), cert.public_bytes(pem), key_pem
