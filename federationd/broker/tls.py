"""The one TLS set-up: an `ssl.SSLContext` that verifies the broker against the CA bundle and its host name."""

from __future__ import annotations

import ssl

from federationd.config import TlsSection


def client_context(tls: TlsSection) -> ssl.SSLContext:
    """Verify the peer (CERT_REQUIRED, host name checked) against `tls.ca_file`, or the system CAs if unset;
    present `tls.cert_file`/`key_file` when the partner's broker asks for a client certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=str(tls.ca_file) if tls.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file and tls.key_file:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return context


def describe(exc: BaseException) -> str | None:
    """A one-line account of a TLS failure found anywhere in an exception chain, or None if it is not one."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"certificate refused: {current.verify_message or current.reason}"
        if isinstance(current, ssl.SSLError):
            return f"TLS handshake failed: {current.reason or current}"
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
        wrapped = getattr(current, "exception", None)  # pika's connector errors keep the cause here
        if isinstance(wrapped, BaseException):
            stack.append(wrapped)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)
    return None
