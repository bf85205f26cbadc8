"""Throwaway X.509 material for the test brokers and TLS clients.

This module owns the test PKI: one private CA, the leaf certificates a test
broker can serve (good, self-signed, expired, wrong host name), a client
certificate for mutual TLS and a second, unrelated CA for "trusted the wrong
CA" checks.  Everything is generated in-process with ``cryptography`` (no
``openssl`` subprocess), with EC P-256 keys because they are generated in
microseconds, which keeps per-test PKIs cheap.

Nothing here is secret: keys are unencrypted and written world-readable
(0644) because the Erlang node reading them may run as another user.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["LEAVES", "PKI", "Leaf", "make_pki"]

#: Names of the certificate pairs a test broker can serve (see ``PKI.leaf``).
Leaf = Literal["server", "self_signed", "expired", "wrong_host"]
LEAVES: tuple[Leaf, ...] = ("server", "self_signed", "expired", "wrong_host")

_KEY_MODE = 0o644  # readable by a broker running as another user; throwaway keys


@dataclass(frozen=True)
class PKI:
    """Paths of every PEM file written by :func:`make_pki`."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    #: CA-signed, CN=localhost, SAN DNS:localhost + IP:127.0.0.1, valid now-1d .. now+2d.
    server_cert: Path
    server_key: Path
    #: Self-signed leaf with the same names as ``server_cert``.
    self_signed_cert: Path
    self_signed_key: Path
    #: CA-signed, right names, but ``not_valid_after`` is in the past.
    expired_cert: Path
    expired_key: Path
    #: CA-signed and current, but its only SAN is DNS:wrong.example.
    wrong_host_cert: Path
    wrong_host_key: Path
    #: CA-signed client certificate (CN=federationd-test-client), for mutual TLS.
    client_cert: Path
    client_key: Path
    #: A second CA that signed nothing we serve: trusting it must fail verification.
    other_ca_cert: Path
    other_ca_key: Path

    def leaf(self, name: Leaf) -> tuple[Path, Path]:
        """Return ``(cert, key)`` of the server leaf called ``name`` (one of :data:`LEAVES`)."""
        if name not in LEAVES:
            raise ValueError(f"unknown leaf {name!r}; expected one of {LEAVES}")
        return getattr(self, f"{name}_cert"), getattr(self, f"{name}_key")


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "federationd tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_pair(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_path = directory / f"{stem}.pem"
    key_path = directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    # Traditional "EC PRIVATE KEY" PEM: the most widely understood unencrypted
    # form (Erlang's public_key, OpenSSL and Python's ssl all read it).
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cert_path.chmod(0o644)
    key_path.chmod(_KEY_MODE)
    return cert_path, key_path


def _ca(common_name: str, now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    name = _name(common_name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        # An AKI on the root too: Python 3.13+ enables VERIFY_X509_STRICT,
        # which rejects certificates without one.
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    common_name: str,
    san: list[x509.GeneralName],
    *,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    not_before: dt.datetime,
    not_after: dt.datetime,
    usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.SERVER_AUTH,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Build an end-entity certificate; ``issuer=None`` makes it self-signed."""
    key = _new_key()
    subject = _name(common_name)
    if issuer is None:
        issuer_name, signing_key = subject, key
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
    else:
        issuer_cert, signing_key = issuer
        issuer_name = issuer_cert.subject
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key())  # type: ignore[arg-type]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .sign(signing_key, hashes.SHA256())
    )
    return cert, key


def make_pki(directory: Path) -> PKI:
    """Write a complete test PKI into ``directory`` (created if needed) and return its paths.

    Takes a few milliseconds; call it once per test session or module.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(days=1), now + dt.timedelta(days=2)
    localhost: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]

    ca = _ca("federationd test CA", now)
    other_ca = _ca("unrelated test CA", now)
    server = _leaf("localhost", localhost, issuer=ca, not_before=start, not_after=end)
    self_signed = _leaf("localhost", localhost, issuer=None, not_before=start, not_after=end)
    expired = _leaf(
        "localhost",
        localhost,
        issuer=ca,
        not_before=now - dt.timedelta(days=10),
        not_after=now - dt.timedelta(days=1),
    )
    wrong_host = _leaf("wrong.example", [x509.DNSName("wrong.example")], issuer=ca, not_before=start, not_after=end)
    client = _leaf(
        "federationd-test-client",
        [x509.DNSName("federationd-test-client")],
        issuer=ca,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        not_before=start,
        not_after=end,
    )

    paths: dict[str, Path] = {}
    for stem, (cert, key) in {
        "ca": ca,
        "other_ca": other_ca,
        "server": server,
        "self_signed": self_signed,
        "expired": expired,
        "wrong_host": wrong_host,
        "client": client,
    }.items():
        paths[f"{stem}_cert"], paths[f"{stem}_key"] = _write_pair(directory, stem, cert, key)
    return PKI(directory=directory, **paths)
