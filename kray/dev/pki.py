"""Throwaway PKI for one test control plane: a CA, the apiserver's serving cert, the service-account key.

Why a CA instead of letting kube-apiserver self-sign into ``--cert-dir``: clients (lightkube, kubectl,
the operator, KubeRay's Go binary) then verify TLS for real through ``certificate-authority-data`` in the
kubeconfig, with no ``insecure-skip-tls-verify``. The identity is a static bearer token in
``system:masters`` (simplest for every client); the SA key pair lets the apiserver issue service-account
tokens and the controller-manager run its token controller. Generated with the ``openssl`` CLI (present
on the project's machines) using P-256 keys, which takes tens of milliseconds, so no Python crypto
dependency is needed.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


class PkiError(RuntimeError):
    """openssl is missing or failed (message carries its stderr)."""


@dataclass(frozen=True)
class Pki:
    """Paths of the generated material plus the admin bearer token."""

    dir: Path
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path
    sa_pub: Path
    token_file: Path
    token: str


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise PkiError("the openssl CLI is required to generate the test control plane's certificates")
    res = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if res.returncode != 0:
        raise PkiError(f"openssl {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")


def generate(*, directory: Path, service_ip: str, user: str = "kray-admin") -> Pki:
    """Create all material in ``directory`` (must exist). ``service_ip`` is the ``kubernetes`` Service IP."""
    d = directory
    _openssl(
        "req", "-x509", *_EC, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
        "-subj", "/CN=kray-dev-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=d,
    )  # fmt: skip
    _openssl("req", "-new", *_EC, "-keyout", "apiserver.key", "-out", "apiserver.csr",
             "-subj", "/CN=kube-apiserver", cwd=d)  # fmt: skip
    sans = ",".join(
        [
            "IP:127.0.0.1",
            f"IP:{service_ip}",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
    )
    (d / "apiserver.ext").write_text(
        f"subjectAltName={sans}\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "basicConstraints=critical,CA:FALSE\n"
    )
    _openssl(
        "x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-set_serial", str(secrets.randbits(63)), "-days", "365", "-sha256",
        "-extfile", "apiserver.ext", "-out", "apiserver.crt",
        cwd=d,
    )  # fmt: skip
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "sa.key", cwd=d)
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)
    token = secrets.token_hex(24)
    token_file = d / "tokens.csv"
    token_file.write_text(f'{token},{user},{user}-uid,"system:masters"\n')
    for p in d.iterdir():
        p.chmod(0o600)
    return Pki(
        dir=d,
        ca_cert=d / "ca.crt",
        ca_key=d / "ca.key",
        serving_cert=d / "apiserver.crt",
        serving_key=d / "apiserver.key",
        sa_key=d / "sa.key",
        sa_pub=d / "sa.pub",
        token_file=token_file,
        token=token,
    )
