"""Handle.Net's secret-key authentication for REST writes, as existing Handle clients send it.

``Authorization: Basic base64(user ":" secret)`` (RFC 7617), where ``user`` is
``index:handle`` percent-encoded as UTF-8 (so its own colon travels as ``%3A``;
pyhandle's ``create_authentication_string``) and ``secret`` is the data of the
HS_SECKEY value at that index. The signer is then that ``index:handle``, under the
same HS_ADMIN rules as a signed write. The secret crosses the wire on every request,
so a node accepts it only when its operator turns it on, and only over TLS or from a
loopback address. Pure decisions: nothing here awaits.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import unquote

from registry.authz import Signer
from schemas.errors import AuthenticationFailed, AuthenticationNeeded
from schemas.record import Record

ENABLE_HINT = (
    "its operator turns it on with `idres serve --allow-seckey` (IDRES_ALLOW_SECKEY=1); "
    "or sign the request (RFC 9421)"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretKeyCredentials:
    signer: Signer
    secret: bytes = field(repr=False)


def basic_credentials(authorization: str | None) -> SecretKeyCredentials | None:
    """The credentials of an ``Authorization: Basic`` field; None for any other scheme.

    Raises AuthenticationFailed when the field is Basic but not ``index:handle:secret``.
    """
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":  # auth-scheme is case-insensitive (RFC 9110 §11.1)
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise AuthenticationFailed(
            "Authorization: Basic must carry base64 of UTF-8 'index:handle:secret' "
            "(RFC 7617), the index:handle percent-encoded"
        ) from None
    # The user is percent-encoded, so the first colon ends it; the secret is as sent.
    user, sep, secret = decoded.partition(":")
    try:
        user = unquote(user, errors="strict") if sep else ""
    except UnicodeDecodeError:
        user = ""
    index, _, handle = user.partition(":")
    if not index.isdigit() or not handle:
        raise AuthenticationFailed(
            "the Basic user must be index:handle of an HS_SECKEY value, percent-encoded "
            f"(e.g. 300%3A0.NA/88.100.1); got {decoded.partition(':')[0]!r}"
        )
    return SecretKeyCredentials(
        signer=Signer(handle=handle, index=int(index)), secret=secret.encode("utf-8")
    )


def check_transport(*, enabled: bool, secure: bool, peer: str | None) -> None:
    """Refuse secret keys where the operator has not allowed them, or where they would
    cross a network in clear text: only TLS, or a client on this machine, may send one."""
    if not enabled:
        raise AuthenticationNeeded(
            "this node does not accept HS_SECKEY secrets (Authorization: Basic); " + ENABLE_HINT
        )
    if secure or is_loopback(peer):
        return
    raise AuthenticationNeeded(
        "an HS_SECKEY secret (Authorization: Basic) is accepted only over https or from "
        "this machine, never in clear text across a network; use https:// or sign the "
        "request (RFC 9421)"
    )


def check_secret(record: Record | None, credentials: SecretKeyCredentials) -> None:
    """Raise unless ``record`` (the signer's handle) holds this secret at its index."""
    who = str(credentials.signer)
    found = None
    if record is not None:
        found = next(
            (v for v in record.by_type("HS_SECKEY") if v.index == credentials.signer.index),
            None,
        )
    if found is None:
        raise AuthenticationFailed(f"{who} names no HS_SECKEY value on this node")
    if found.permissions.public_read:
        # anyone could read it: it proves nothing about who sends it
        raise AuthenticationFailed(
            f"the HS_SECKEY at {who} is publicly readable, so it cannot authenticate; "
            "give it permissions 1100 (admin read and write only)"
        )
    stored = found.value.encode("utf-8") if isinstance(found.value, str) else found.value
    if not isinstance(stored, bytes) or not hmac.compare_digest(stored, credentials.secret):
        raise AuthenticationFailed(f"wrong secret key for {who}")


def is_loopback(peer: str | None) -> bool:
    """Whether ``peer`` (an address as aiohttp gives it) is on this machine."""
    if not peer:
        return False
    try:
        return ipaddress.ip_address(peer.strip("[]")).is_loopback
    except ValueError:
        return False
