"""Handle.Net's TLS client certificates: who a certificate names, and whether its key
is the HS_PUBKEY there (docs.eudat.eu/b2handle/security, "Client-Side Certificates").

The caller's ``index:handle`` is the subject's UID attribute or, when it has none,
its CN; the certificate's public key must be the HS_PUBKEY at that index of that
handle. Self-signed is fine: the issuer and the validity dates are not looked at (the
key is what is checked; removing the HS_PUBKEY revokes it). The node's edge asks for
the certificate and hands its leaf to the workers in ``Idres-Client-Cert`` (base64
DER), a header it always drops from clients; the workers read it only from the edge
(idres/assembly.py). Pure decisions: nothing here awaits.
"""

from __future__ import annotations

import base64
import binascii

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from registry.authz import Signer
from schemas.errors import AuthenticationFailed, AuthenticationNeeded
from schemas.record import Record

EDGE_CERT_HEADER = "Idres-Client-Cert"
# Where the edge's word lands on a request (aiohttp's per-request mapping): set by
# the middleware that trusts the edge, so a client's own header never gets here.
CLIENT_CERT = "idres.client_cert"
TOO_LARGE = "too-large"  # what the edge passes for a leaf over MAX_CERT_BYTES (edge.go)
MAX_CERT_BYTES = 8 << 10
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def certificate(header: str) -> x509.Certificate:
    """The certificate the edge passed on (base64 of its DER)."""
    if header == TOO_LARGE:
        raise AuthenticationFailed(
            f"the TLS client certificate is larger than {MAX_CERT_BYTES} bytes (DER), more "
            "than this node takes; a self-signed certificate with a UID and a key is a few "
            "hundred bytes"
        )
    try:
        return x509.load_der_x509_certificate(base64.b64decode(header, validate=True))
    except (binascii.Error, ValueError):
        raise AuthenticationFailed(
            "the TLS client certificate could not be read as X.509 (DER)"
        ) from None


def identity(cert: x509.Certificate) -> Signer:
    """``index:handle`` from the subject's UID, or from its CN when there is no UID."""
    subject = cert.subject
    uid = subject.get_attributes_for_oid(NameOID.USER_ID)
    field, attrs = (
        ("UID", uid) if uid else ("CN", subject.get_attributes_for_oid(NameOID.COMMON_NAME))
    )
    if not attrs:
        raise AuthenticationFailed(
            f"the TLS client certificate's subject ({subject.rfc4514_string()}) has no UID "
            "or CN naming index:handle of an HS_PUBKEY, e.g. UID=300:0.NA/88.100.1"
        )
    if len(attrs) > 1:
        raise AuthenticationFailed(
            f"the TLS client certificate's subject has {len(attrs)} {field} attributes; "
            "it must name one index:handle"
        )
    value = attrs[0].value
    text = value if isinstance(value, str) else value.decode("utf-8", "replace")
    index, _, handle = text.partition(":")
    if not index.isdigit() or not handle or not 0 < int(index) < 2**31:
        raise AuthenticationFailed(
            f"the TLS client certificate's {field} is {text!r}; it must be index:handle "
            "of an HS_PUBKEY, e.g. 300:0.NA/88.100.1"
        )
    return Signer(handle=handle, index=int(index))


def check_key(record: Record | None, signer: Signer, cert: x509.Certificate) -> None:
    """Raise unless the certificate's public key is the HS_PUBKEY at ``signer``."""
    stored = record.public_keys().get(signer.index) if record is not None else None
    if stored is None:
        raise AuthenticationFailed(
            f"{signer} (from the TLS client certificate) names no HS_PUBKEY on this node"
        )
    try:
        stored_spki = serialization.load_der_public_key(stored).public_bytes(*_SPKI)
    except (ValueError, TypeError):
        raise AuthenticationFailed(
            f"the HS_PUBKEY at {signer} is not a key this node reads"
        ) from None
    if cert.public_key().public_bytes(*_SPKI) != stored_spki:
        raise AuthenticationFailed(
            f"the TLS client certificate's public key is not the HS_PUBKEY at {signer}"
        )


def missing(*, secure: bool) -> AuthenticationNeeded:
    """Why a request that asked for its client certificate has none."""
    if not secure:
        return AuthenticationNeeded(
            'Authorization: Handle clientCert="true" needs https://: a client '
            "certificate travels only in a TLS handshake"
        )
    return AuthenticationNeeded(
        'Authorization: Handle clientCert="true", but no client certificate came with the '
        "TLS handshake (send one with the request; the node's edge asks for it, so a node "
        "serving TLS without its edge, --front python, cannot take one)"
    )
