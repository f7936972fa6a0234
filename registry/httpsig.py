"""HTTP Message Signatures (RFC 9421) with Content-Digest (RFC 9530) for write requests.

The CLI signs with ``sign_request``; the server runs ``parse_signature``, ``signature_base``,
``verify`` and ``check_freshness``. Pure: plain method, path, query, headers and body in,
nothing here does I/O or knows about aiohttp.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_der_public_key,
    load_pem_private_key,
)

from registry.sfv import (
    BareItem,
    InnerList,
    Item,
    is_key,
    parse_dictionary,
    serialize_params,
    serialize_string,
)
from schemas.errors import AuthenticationNeeded, Forbidden
from schemas.record import MAX_INDEX

# @authority is required (RFC 9421 §2.2.3): a signature names the node it was made
# for, so that it cannot be replayed at another node holding the same key records.
DEFAULT_COMPONENTS = ("@method", "@authority", "@path", "@query", "content-digest")
IDEMPOTENCY_KEY = "idempotency-key"
ALG_ED25519 = "ed25519"  # RFC 9421 §3.3.6
ALG_ECDSA_P256 = "ecdsa-p256-sha256"  # RFC 9421 §3.3.4
P256_SIGNATURE_BYTES = 64  # r || s, each left-padded to 32 octets (RFC 9421 §3.3.4)
# RSA keys verify only (CNRI's Handle client signs with RSA, so an administrator's key
# may be one); with no alg parameter an RSA signature is taken as PKCS#1 v1.5.
ALG_RSA_V15_SHA256 = "rsa-v1_5-sha256"  # RFC 9421 §3.3.2
ALG_RSA_PSS_SHA512 = "rsa-pss-sha512"  # RFC 9421 §3.3.1
MIN_RSA_BITS = 2048

PrivateKey: TypeAlias = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey

# RFC 9530 §5 registers more algorithms; md5, sha, unixsum and friends are deprecated
# there, so only these two count as a digest we check.
_DIGESTS: dict[str, Callable[[bytes], bytes]] = {
    "sha-256": lambda body: hashlib.sha256(body).digest(),
    "sha-512": lambda body: hashlib.sha512(body).digest(),
}
# Derived components we compute (RFC 9421 §2.2); the others need the scheme, the full
# target URI or a response, which a request handler does not hand us.
_DERIVED = frozenset({"@method", "@authority", "@path", "@query"})
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")  # RFC 9110 §5.1 token, lowercased
_KEY_ID = re.compile(r"(0|[1-9][0-9]{0,9}):(\S+)")  # an index has at most 10 digits


class SignatureMismatch(Forbidden):
    """The signature is well formed and fresh but does not verify over the request as
    it arrived, with the key its keyid names."""


# --- Content-Digest (RFC 9530)


def content_digest(body: bytes) -> str:
    """The Content-Digest value for ``body``: ``sha-256=:<base64>:`` (RFC 9530 §2)."""
    return f"sha-256=:{base64.b64encode(_DIGESTS['sha-256'](body)).decode()}:"


def check_content_digest(header: str | None, body: bytes) -> None:
    """Check a Content-Digest header against the body.

    Algorithms we do not know are ignored (RFC 9530 §2 lets a recipient ignore any
    digest); at least one of sha-256 and sha-512 must be there, and each present must match.
    """
    if header is None:
        raise AuthenticationNeeded("missing Content-Digest header (RFC 9530 §2)")
    checked: list[str] = []
    for alg, member in parse_dictionary(header, "Content-Digest").items():
        digest = _DIGESTS.get(alg)
        if digest is None:
            continue
        if not isinstance(member, Item) or not isinstance(member.value, bytes):
            raise Forbidden(f"malformed Content-Digest: {alg} must be a byte sequence")
        if not hmac.compare_digest(member.value, digest(body)):
            raise Forbidden(f"Content-Digest {alg} does not match the request body")
        checked.append(alg)
    if not checked:
        raise Forbidden("Content-Digest carries no supported algorithm (sha-256 or sha-512)")


# --- Signing and verifying (RFC 9421)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignatureParams:
    """One signature from Signature-Input and Signature (RFC 9421 §4.1, §4.2).

    ``params_text`` is the inner list and its parameters exactly as received: it is
    the value of ``@signature-params`` in the signature base (RFC 9421 §2.3).
    """

    label: str
    components: tuple[str, ...]
    created: int
    expires: int | None
    keyid: str
    alg: str | None
    nonce: str | None
    signature: bytes
    params_text: str


def _field_lines(headers: Mapping[str, str]) -> dict[str, list[str]]:
    """Header values by lowercased name; two spellings of one name are two field lines."""
    out: dict[str, list[str]] = {}
    for name, value in headers.items():
        out.setdefault(name.lower(), []).append(value)
    return out


def _component_problem(name: str) -> str | None:
    if name.startswith("@"):
        return None if _FIELD_NAME.fullmatch(name[1:]) else "is not a valid derived name"
    if name != name.lower():
        return "must be lowercase (RFC 9421 §2.1)"
    return None if _FIELD_NAME.fullmatch(name) else "is not a valid field name"


def _component_value(
    name: str, *, method: str, path: str, query: str, fields: Mapping[str, list[str]]
) -> str:
    if name.startswith("@") and name not in _DERIVED:
        raise Forbidden(f"derived component {name} is not supported")
    if name == "@method":
        return method.upper()
    if name == "@path":
        return path or "/"  # §2.2.6: an empty path is a single slash
    if name == "@query":
        return "?" + query  # §2.2.7: no query still gives the lone "?"
    if name == "@authority":
        hosts = fields.get("host")
        if not hosts:
            raise Forbidden("signature covers @authority but the request has no Host header")
        return hosts[0].strip(" \t").lower()  # §2.2.3: the host is lowercased
    lines = fields.get(name)
    if lines is None:
        raise Forbidden(f"signature covers header {name!r}, which the request lacks")
    # §2.1: unfold obsolete line folding, trim each field line, join with ", ".
    return ", ".join(re.sub(r"\r\n[ \t]+", " ", v).strip(" \t") for v in lines)


def _build_base(
    components: Sequence[str],
    params_text: str,
    *,
    method: str,
    path: str,
    query: str,
    fields: Mapping[str, list[str]],
) -> bytes:
    """The signature base of RFC 9421 §2.5: one line per component, then @signature-params."""
    lines: list[str] = []
    for name in components:
        value = _component_value(name, method=method, path=path, query=query, fields=fields)
        # A newline would let a value forge further base lines; §2.5 also wants ASCII.
        if "\r" in value or "\n" in value or not value.isascii():
            raise Forbidden(f"component {name} holds a newline or non-ASCII character")
        lines.append(f'"{name}": {value}')
    lines.append(f'"@signature-params": {params_text}')
    return "\n".join(lines).encode("ascii")


def _kind(key: object) -> str:
    """A key's kind for messages: the curve of an EC key, else its class name."""
    curve = getattr(key, "curve", None)
    return f"EC {curve.name}" if isinstance(curve, ec.EllipticCurve) else type(key).__name__


def _alg_of(key: PrivateKey) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return ALG_ED25519
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return ALG_ECDSA_P256
    raise ValueError(f"unsupported signing key ({_kind(key)}); use Ed25519 or P-256")


def _sign(key: PrivateKey, base: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(base)
    r, s = decode_dss_signature(key.sign(base, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # §3.3.4: r || s, not DER


def sign_request(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    key: PrivateKey,
    keyid: str,
    created: int,
    nonce: str | None = None,
    components: Sequence[str] = DEFAULT_COMPONENTS,
    label: str = "sig1",
    authority: str | None = None,
) -> dict[str, str]:
    """Sign a request; return the Content-Digest, Signature-Input and Signature headers to add.

    ``path`` is the raw (still percent-encoded) path, ``query`` the raw query string without
    "?", "" when none. An Idempotency-Key header is always covered, so it cannot be swapped.
    ``authority`` (``host[:port]``, see ``authority_of``) is the node the request is for;
    it is returned as the Host header to send, which ``@authority`` covers. Without it
    the headers must carry Host.
    """
    if not is_key(label):
        raise ValueError(f"label {label!r} is not a structured-field key (RFC 8941 §3.2)")
    fields = _field_lines(headers)
    added: dict[str, str] = {}
    if authority is not None:
        if "host" in fields:
            raise ValueError("give the authority or a Host header, not both")
        fields["host"] = [authority]
        added["Host"] = authority
    if own := {"content-digest", "signature-input", "signature"} & fields.keys():
        raise ValueError(f"headers already carry {', '.join(sorted(own))}; sign_request sets them")
    covered = list(components)
    for name in covered:
        if problem := _component_problem(name):
            raise ValueError(f"component {name!r} {problem}")
    if len(set(covered)) != len(covered):
        raise ValueError(f"components {covered} repeat an identifier")
    digest = content_digest(body)
    fields["content-digest"] = [digest]
    if IDEMPOTENCY_KEY in fields and IDEMPOTENCY_KEY not in covered:
        covered.append(IDEMPOTENCY_KEY)
    params: list[tuple[str, int | str]] = [("created", created), ("keyid", keyid)]
    params.append(("alg", _alg_of(key)))
    if nonce is not None:
        params.append(("nonce", nonce))
    names = " ".join(serialize_string(c, "component") for c in covered)
    params_text = f"({names}){serialize_params(params)}"
    try:
        base = _build_base(
            covered, params_text, method=method, path=path, query=query, fields=fields
        )
    except Forbidden as exc:  # on this side a missing header is the caller's mistake
        raise ValueError(exc.message) from exc
    signature = base64.b64encode(_sign(key, base)).decode()
    return {
        **added,
        "Content-Digest": digest,
        "Signature-Input": f"{label}={params_text}",
        "Signature": f"{label}=:{signature}:",
    }


def _int_param(params: Mapping[str, BareItem], name: str, label: str) -> int | None:
    value = params.get(name)
    # bool is an int in Python but not an sf-integer.
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise Forbidden(f"malformed Signature-Input: {label} parameter {name} must be an integer")


def _str_param(params: Mapping[str, BareItem], name: str, label: str) -> str | None:
    value = params.get(name)
    if value is None or isinstance(value, str):
        return value
    raise Forbidden(f"malformed Signature-Input: {label} parameter {name} must be a string")


def parse_signature(
    headers: Mapping[str, str], *, required: Collection[str] = DEFAULT_COMPONENTS
) -> SignatureParams:
    """Read the first signature whose label is in both Signature-Input and Signature.

    The signature must cover every component in ``required``, and the Idempotency-Key
    header whenever the request carries one.
    """
    fields = _field_lines(headers)
    for field, section in (("Signature-Input", "4.1"), ("Signature", "4.2")):
        if field.lower() not in fields:
            raise AuthenticationNeeded(
                f"request is not signed: no {field} header (RFC 9421 §{section})"
            )
    inputs = parse_dictionary(", ".join(fields["signature-input"]), "Signature-Input")
    signatures = parse_dictionary(", ".join(fields["signature"]), "Signature")
    label = next((name for name in inputs if name in signatures), None)
    if label is None:
        raise Forbidden("no label appears in both Signature-Input and Signature")
    member, signed = inputs[label], signatures[label]
    if not isinstance(member, InnerList):
        raise Forbidden(f"malformed Signature-Input: {label} must be an inner list of components")
    if not isinstance(signed, Item) or not isinstance(signed.value, bytes):
        raise Forbidden(f"malformed Signature: {label} must be a byte sequence")

    components: list[str] = []
    for item in member.items:
        name = item.value
        if not isinstance(name, str):
            raise Forbidden(f"malformed Signature-Input: {label} components must be strings")
        if problem := _component_problem(name):
            raise Forbidden(f"malformed Signature-Input: component {name!r} {problem}")
        if item.params:
            keys = ", ".join(item.params)
            raise Forbidden(f"component {name!r} has parameters ({keys}), which are not supported")
        if name in components:  # §2.5 step 2.1: a repeated identifier is an error
            raise Forbidden(f"malformed Signature-Input: component {name!r} is repeated")
        components.append(name)

    created = _int_param(member.params, "created", label)
    keyid = _str_param(member.params, "keyid", label)
    if created is None:
        raise Forbidden(f"signature {label} has no created parameter")
    if keyid is None:
        raise Forbidden(f"signature {label} has no keyid parameter")

    must = list(dict.fromkeys(required))
    if IDEMPOTENCY_KEY in fields and IDEMPOTENCY_KEY not in must:
        must.append(IDEMPOTENCY_KEY)
    missing = [name for name in must if name not in components]
    if missing:
        raise Forbidden(f"signature must cover {', '.join(missing)}")
    return SignatureParams(
        label=label,
        components=tuple(components),
        created=created,
        expires=_int_param(member.params, "expires", label),
        keyid=keyid,
        alg=_str_param(member.params, "alg", label),
        nonce=_str_param(member.params, "nonce", label),
        signature=signed.value,
        params_text=member.text,
    )


def signature_base(
    params: SignatureParams, *, method: str, path: str, query: str, headers: Mapping[str, str]
) -> bytes:
    """Recreate the signature base (RFC 9421 §2.5) a verifier checks the signature over.

    ``path`` and ``query`` are raw, as received (in aiohttp ``rel_url.raw_path`` and
    ``rel_url.raw_query_string``): decoding them would make the base differ from the signer's.
    """
    return _build_base(
        params.components,
        params.params_text,
        method=method,
        path=path,
        query=query,
        fields=_field_lines(headers),
    )


def _check_alg(params: SignatureParams, expected: str) -> None:
    # §3.2: an alg parameter, when present, must agree with the key's algorithm.
    if params.alg is not None and params.alg != expected:
        raise Forbidden(f"signature alg {params.alg!r} does not match the key ({expected})")


def verify(params: SignatureParams, base: bytes, public_key_der: bytes) -> None:
    """Check the signature over ``base`` with a DER SubjectPublicKeyInfo (Ed25519, P-256,
    or RSA with rsa-v1_5-sha256 or rsa-pss-sha512)."""
    try:
        public = load_der_public_key(public_key_der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise Forbidden("the signing key is not a usable DER SubjectPublicKeyInfo") from exc
    try:
        if isinstance(public, ed25519.Ed25519PublicKey):
            _check_alg(params, ALG_ED25519)
            public.verify(params.signature, base)
        elif isinstance(public, ec.EllipticCurvePublicKey) and isinstance(
            public.curve, ec.SECP256R1
        ):
            _check_alg(params, ALG_ECDSA_P256)
            if len(params.signature) != P256_SIGNATURE_BYTES:
                raise Forbidden(
                    f"{ALG_ECDSA_P256} signature must be {P256_SIGNATURE_BYTES} bytes r||s "
                    f"(RFC 9421 §3.3.4), not {len(params.signature)}"
                )
            r = int.from_bytes(params.signature[:32], "big")
            s = int.from_bytes(params.signature[32:], "big")
            public.verify(encode_dss_signature(r, s), base, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public, rsa.RSAPublicKey):
            _verify_rsa(params, base, public)
        else:
            raise Forbidden(f"unsupported key type ({_kind(public)}); need Ed25519, P-256 or RSA")
    except InvalidSignature as exc:
        raise SignatureMismatch(_does_not_verify(params, base)) from exc


def _does_not_verify(params: SignatureParams, base: bytes) -> str:
    """What a signer needs to find its mistake: the components the signature covers and
    the values this node derived for the request's own parts (method, host, path,
    query). Never a header's value: a covered header may carry a credential."""
    derived = []
    for line in base.decode("ascii").split("\n"):  # _build_base wrote it: ASCII lines
        quoted, _, value = line.partition(": ")
        if (name := quoted.strip('"')) in _DERIVED:
            derived.append(f"{name} {value}")
    return (
        f"signature does not verify: it covers {' '.join(params.components)}; this node "
        f"computed {', '.join(derived) or 'no derived components'}. Sign the request as "
        f"sent here, with the key that keyid {params.keyid} names"
    )


def _verify_rsa(params: SignatureParams, base: bytes, public: rsa.RSAPublicKey) -> None:
    if public.key_size < MIN_RSA_BITS:
        raise Forbidden(f"an RSA key of {public.key_size} bits; at least {MIN_RSA_BITS}")
    alg = params.alg or ALG_RSA_V15_SHA256
    if alg == ALG_RSA_V15_SHA256:
        public.verify(params.signature, base, padding.PKCS1v15(), hashes.SHA256())
    elif alg == ALG_RSA_PSS_SHA512:
        # §3.3.1: MGF1 with SHA-512, a salt of 64 bytes
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64)
        public.verify(params.signature, base, pss, hashes.SHA512())
    else:
        raise Forbidden(
            f"signature alg {alg!r} does not match the key "
            f"({ALG_RSA_V15_SHA256} or {ALG_RSA_PSS_SHA512})"
        )


def check_freshness(
    params: SignatureParams, *, now: int, max_age: int = 300, max_skew: int = 30
) -> None:
    """Refuse a signature created too long ago, too far ahead, or past its expires.

    RFC 9421 §3.2.1 leaves the window to the application; the edges are inclusive.
    """
    age = now - params.created
    if age > max_age:
        raise Forbidden(
            f"signature created at {params.created} is {age}s old; the limit is {max_age}s"
        )
    if -age > max_skew:
        raise Forbidden(
            f"signature created at {params.created} is {-age}s in the future; "
            f"the allowed clock skew is {max_skew}s"
        )
    if params.expires is not None and params.expires < now:
        raise Forbidden(f"signature expired at {params.expires}, {now - params.expires}s ago")


# --- Authorities (RFC 9421 §2.2.3, RFC 3986 §3.2)

_DEFAULT_PORTS = {"http": 80, "https": 443}


def authority_of(url: str) -> str:
    """The ``@authority`` a request to ``url`` carries: host lowercased, the scheme's
    default port left out (RFC 9421 §2.2.3), ``[...]`` kept around an IPv6 address."""
    parts = urlsplit(url)
    if parts.hostname is None:
        raise ValueError(f"{url!r} names no host")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or port == _DEFAULT_PORTS.get(parts.scheme.lower()):
        return host
    return f"{host}:{port}"


def signed_authority(headers: Mapping[str, str]) -> str:
    """The ``@authority`` value a signature covers, as the verifier computes it."""
    return _component_value(
        "@authority", method="", path="", query="", fields=_field_lines(headers)
    )


def check_authority(
    params: SignatureParams,
    headers: Mapping[str, str],
    accepted: Collection[str],
    *,
    network: str | None = None,
) -> None:
    """Refuse a signature made for another node: its ``@authority`` must be one this
    node answers to (its own names, or the network's). Pure; no key is needed yet."""
    if "@authority" not in params.components:
        raise Forbidden("signature must cover @authority")
    value = signed_authority(headers)
    if value not in accepted:
        raise Forbidden(
            f"signature was made for {value!r}, not for this node "
            f"({', '.join(sorted(accepted)) or 'no names'}); sign it for the node you send it to"
            + redirect_hint(network)
        )


def redirect_hint(network: str | None) -> str:
    """What a write that may be redirected to another node must be signed for."""
    if network is None:
        return ""
    return f", or, for a write that may be redirected, for the network's name {network!r}"


# --- Key ids and keys


def key_id(handle: str, index: int) -> str:
    """The keyid for HS_PUBKEY value ``index`` of ``handle``: ``"300:0.NA/88.100.1"``."""
    if not 1 <= index <= MAX_INDEX:
        raise ValueError(f"index must be from 1 to {MAX_INDEX}, not {index}")
    if not handle or any(c.isspace() for c in handle):
        raise ValueError(f"handle {handle!r} must be non-empty without whitespace")
    return f"{index}:{handle}"


def parse_key_id(keyid: str) -> tuple[str, int]:
    """Split a keyid ``index:handle`` into ``(handle, index)``; Forbidden when malformed."""
    match = _KEY_ID.fullmatch(keyid)
    if match is None or not 1 <= int(match[1]) <= MAX_INDEX:
        raise Forbidden(f"keyid {keyid!r} is not index:handle with index 1 to {MAX_INDEX}")
    return match[2], int(match[1])


def load_private_key(pem: bytes) -> PrivateKey:
    """Load an unencrypted PEM private key (Ed25519 or P-256); ValueError says what is wrong."""
    try:
        key = load_pem_private_key(pem, password=None)
    except TypeError as exc:  # cryptography's signal for "this key needs a password"
        raise ValueError("private key is encrypted; give an unencrypted PKCS#8 PEM") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a PEM private key: {exc}") from exc
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise ValueError(f"unsupported private key ({_kind(key)}); use Ed25519 or P-256")


def public_key_der(key: PrivateKey) -> bytes:
    """The DER SubjectPublicKeyInfo of the key's public half, as HS_PUBKEY stores it."""
    return key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def generate_key(alg: str = "ed25519") -> PrivateKey:
    """A fresh signing key: ``"ed25519"`` or ``"p256"``."""
    if alg == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key algorithm {alg!r}; use 'ed25519' or 'p256'")


def private_key_pem(key: PrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM, the form ``load_private_key`` reads."""
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
