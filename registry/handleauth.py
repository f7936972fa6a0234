"""Handle.Net's ``Authorization: Handle`` field, read into what it asks for.

The grammar is RFC 9110 §11's auth-params after the scheme name ``Handle``:
``name=value`` pairs, comma-separated, each value a token or a quoted-string; names
are case-insensitive and ``id`` is percent-encoded UTF-8. The parameters are those
of the Handle.Net HTTP JSON REST API's "Authorization: Handle" mechanism as EUDAT's
b2handle "Security" page documents it (docs.eudat.eu/b2handle/security: "Client-Side
Certificates", "Authorization: Handle"; the Handle.Net technical manual itself was not
at hand) and as CNRI's reference server reads it: ``clientCert="true"`` asks for the
TLS client certificate; ``sessionId``, ``id``, ``type``, ``cnonce``, ``alg`` and
``signature`` authenticate a session (registry/sessions.py).
Where the manual is silent this module decides, and says so: a parameter given twice
is refused (the manual's reference server keeps the last), an unknown one is ignored
(as there). Pure: nothing here awaits.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import unquote

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from registry.httpsig import MIN_RSA_BITS
from schemas.errors import AuthenticationFailed

SCHEME = "handle"
_TOKEN = r"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PARAM = re.compile(rf"\s*({_TOKEN})\s*=\s*({_TOKEN}|{_QUOTED})\s*(,?)", re.DOTALL)
_KNOWN = (
    "version",
    "clientcert",
    "renegotiate",
    "sessionid",
    "id",
    "type",
    "cnonce",
    "alg",
    "signature",
)
MAX_SESSION_ID = 128  # characters; ours are 43
MAX_CNONCE = 256  # bytes, decoded
MAX_SIGNATURE = 1024  # bytes, decoded (an RSA-4096 signature is 512)


@dataclass(frozen=True, slots=True, kw_only=True)
class Proof:
    """The answer to a session's nonce: ``signature`` over nonce || ``cnonce``, made
    with the key at ``index``:``handle`` (an HS_PUBKEY, ``type``) with ``alg``."""

    handle: str
    index: int
    type: str
    alg: str
    cnonce: bytes
    signature: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class HandleAuthorization:
    client_cert: bool = False
    session_id: str | None = None
    proof: Proof | None = None


def handle_authorization(authorization: str | None) -> HandleAuthorization | None:
    """What an ``Authorization: Handle`` field asks for; None for another scheme.

    Raises AuthenticationFailed, naming the parameter and what it should be, when the
    field is ``Handle`` but malformed.
    """
    if authorization is None:
        return None
    text = authorization.strip()
    scheme, _, rest = text.partition(" ")
    if scheme.lower() != SCHEME:
        return None
    params = _params(rest.strip())
    unknown_ok = {k: v for k, v in params.items() if k in _KNOWN}
    client_cert = _flag(unknown_ok, "clientcert")
    session = unknown_ok.get("sessionid")
    if session is not None and not 1 <= len(session) <= MAX_SESSION_ID:
        raise _bad("sessionId", f"must be 1 to {MAX_SESSION_ID} characters")
    proof = _proof(unknown_ok)
    if proof is not None and session is None:
        raise _bad(
            "sessionId",
            "is required with id and signature: POST /api/sessions first, then sign its "
            "nonce followed by your cnonce",
        )
    if not client_cert and session is None:
        raise AuthenticationFailed(
            'Authorization: Handle needs clientCert="true" or sessionId="..." '
            "(Handle.Net REST API authentication)"
        )
    return HandleAuthorization(client_cert=client_cert, session_id=session, proof=proof)


def _params(rest: str) -> dict[str, str]:
    if not rest:
        raise AuthenticationFailed(
            "Authorization: Handle has no parameters; send e.g. "
            'Handle sessionId="...", or Handle clientCert="true"'
        )
    out: dict[str, str] = {}
    at = 0
    while at < len(rest):
        m = _PARAM.match(rest, at)
        if m is None:
            raise AuthenticationFailed(
                f"Authorization: Handle is malformed at character {at + 1} of its "
                f"parameters ({rest[at : at + 20]!r}): expected name=value or "
                'name="quoted value", separated by commas'
            )
        name, raw, comma = m.group(1).lower(), m.group(2), m.group(3)
        if name in out:
            raise _bad(m.group(1), "is given twice")
        value = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
        if name == "id":  # percent-encoded UTF-8 (the manual; CNRI's server decodes it)
            try:
                value = unquote(value, errors="strict")
            except UnicodeDecodeError:
                raise _bad("id", "is not percent-encoded UTF-8") from None
        out[name] = value
        at = m.end()
        if not comma and at < len(rest) and rest[at] in "=/":
            raise _bad(
                m.group(1),
                "must be quoted: a value with '=' or '/' (base64, a handle) is a "
                'quoted-string, e.g. signature="MEUCIQ..=="',
            )
        if not comma and at < len(rest):
            raise AuthenticationFailed(
                f"Authorization: Handle is malformed at character {at + 1} of its "
                "parameters: a comma must separate them"
            )
    return out


def _flag(params: dict[str, str], name: str) -> bool:
    value = params.get(name)
    if value is None:
        return False
    if value.lower() not in ("true", "false"):
        raise _bad("clientCert", f'must be "true" or "false", not {value!r}')
    return value.lower() == "true"


def _proof(params: dict[str, str]) -> Proof | None:
    given = [k for k in ("id", "type", "cnonce", "alg", "signature") if k in params]
    if not given:
        return None
    missing = [k for k in ("id", "type", "cnonce", "alg", "signature") if k not in params]
    if missing:
        raise AuthenticationFailed(
            "Authorization: Handle authenticates a session with id, type, cnonce, alg "
            "and signature together; missing " + ", ".join(missing)
        )
    index, _, handle = params["id"].partition(":")
    if not index.isdigit() or not handle or not 0 < int(index) < 2**31:
        raise _bad(
            "id",
            f"must be index:handle of an HS_PUBKEY, e.g. 300:0.NA/88.100.1; got {params['id']!r}",
        )
    kind = params["type"]
    if kind.upper() != "HS_PUBKEY":
        raise _bad(
            "type",
            f"{kind!r} is not accepted here: only HS_PUBKEY (a signature); an HS_SECKEY "
            "secret goes in Authorization: Basic",
        )
    return Proof(
        handle=handle,
        index=int(index),
        type="HS_PUBKEY",
        alg=params["alg"],
        cnonce=_base64(params["cnonce"], "cnonce", MAX_CNONCE),
        signature=_base64(params["signature"], "signature", MAX_SIGNATURE),
    )


def _base64(text: str, name: str, limit: int) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(name, "must be base64 (RFC 4648 §4, with padding)") from None
    if not 1 <= len(raw) <= limit:
        raise _bad(name, f"must decode to 1 to {limit} bytes, not {len(raw)}")
    return raw


def _bad(name: str, reason: str) -> AuthenticationFailed:
    return AuthenticationFailed(f"Authorization: Handle parameter {name} {reason}")


# Signature algorithms a session proof may name (case-insensitive), by key type. The
# manual's alg is the hash (CNRI's clients send "SHA256" and sign with the JCA's
# SHA256withRSA / SHA256withECDSA); Ed25519 hashes internally, so its proof says so.
ALGS = {"ed25519": ("Ed25519", "EdDSA"), "p256": ("SHA256",), "rsa": ("SHA256",)}


def verify_proof(proof: Proof, nonce: bytes, public_key_der: bytes) -> None:
    """Check ``proof.signature`` over the session's ``nonce`` followed by the client's
    cnonce, with the HS_PUBKEY ``public_key_der``: Ed25519 (alg Ed25519 or EdDSA),
    ECDSA P-256 with SHA-256 (alg SHA256; DER, as Java signs, or 64 bytes r||s) or
    RSA PKCS#1 v1.5 with SHA-256 (alg SHA256, 2048 bits or more)."""
    who = f"{proof.index}:{proof.handle}"
    try:
        public = serialization.load_der_public_key(public_key_der)
    except (ValueError, UnsupportedAlgorithm):
        raise AuthenticationFailed(f"the HS_PUBKEY at {who} is not a key this node reads") from None
    signed = nonce + proof.cnonce
    alg = proof.alg.upper().replace("-", "")
    try:
        if isinstance(public, ed25519.Ed25519PublicKey):
            _want_alg(proof, "ed25519", alg)
            public.verify(proof.signature, signed)
        elif isinstance(public, ec.EllipticCurvePublicKey) and isinstance(
            public.curve, ec.SECP256R1
        ):
            _want_alg(proof, "p256", alg)
            sig = proof.signature
            if len(sig) == 64:  # r||s, as RFC 9421 and WebCrypto give it
                sig = encode_dss_signature(
                    int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
                )
            public.verify(sig, signed, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public, rsa.RSAPublicKey) and public.key_size >= MIN_RSA_BITS:
            _want_alg(proof, "rsa", alg)
            public.verify(proof.signature, signed, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise AuthenticationFailed(
                f"the HS_PUBKEY at {who} is not Ed25519, ECDSA P-256 or RSA of "
                f"{MIN_RSA_BITS} bits or more"
            )
    except InvalidSignature:
        raise AuthenticationFailed(
            f"signature does not verify with the HS_PUBKEY at {who}: sign the session's "
            "nonce bytes followed by your cnonce bytes (both base64-decoded)"
        ) from None


def _want_alg(proof: Proof, kind: str, alg: str) -> None:
    accepted = ALGS[kind]
    if alg not in {a.upper() for a in accepted}:
        raise AuthenticationFailed(
            f"Authorization: Handle parameter alg {proof.alg!r} does not fit the HS_PUBKEY "
            f'at {proof.index}:{proof.handle} ({kind}); send alg="{accepted[0]}"'
        )
