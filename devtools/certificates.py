"""A throwaway certificate authority and a broker certificate, made with `openssl`, for
a local broker's TLS listener (tests and local runs; never for a real cluster)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BrokerCertificates:
    ca: Path
    """The CA certificate (PEM) that clients trust (`KAFKA_SSL_CAFILE`)."""
    keystore: Path
    """The broker's private key (PKCS#8) and certificate (PEM), a Kafka PEM key store."""


def generate(directory: Path, *, hosts: Sequence[str] = ("localhost", "127.0.0.1"),
             days: int = 2) -> BrokerCertificates:
    """A new CA, and a broker certificate it signed for `hosts` (names or IP addresses)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    broker_key, request = directory / "broker.key", directory / "broker.csr"
    broker_cert, extensions = directory / "broker.crt", directory / "broker.ext"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
             "-days", str(days), "-subj", "/CN=routing-local-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", broker_key, "-out", request,
             "-subj", f"/CN={hosts[0]}")
    names = ",".join(f"IP:{host}" if _is_address(host) else f"DNS:{host}" for host in hosts)
    extensions.write_text(f"subjectAltName={names}\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", broker_cert, "-days", str(days), "-extfile", extensions)
    keystore = directory / "broker-keystore.pem"
    keystore.write_text(broker_key.read_text() + broker_cert.read_text())
    keystore.chmod(0o600)
    return BrokerCertificates(ca=ca, keystore=keystore)


def _is_address(host: str) -> bool:
    return host.replace(".", "").isdigit() or ":" in host


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
