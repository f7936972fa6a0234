"""Public-key challenge-response (RFC 3652 §3.5) as the CNRI 9.3.1 client answers it, and
the HS_PUBKEY key encodings it rests on. Pure: nothing here does I/O or keeps state.

The exchange, as read in ``net.handle.hdllib`` (client) and ``net.handle.server.HandleServer``:

1. The server answers an admin request with RC_AUTHENTICATION_NEEDED (402): a
   ``ChallengeResponse(nonce)`` of CHALLENGE_NONCE_SIZE random bytes, always with the
   request digest attached (``messages.encode_response`` does that).
2. The client checks that digest against the request it sent, then signs
   ``nonce || digest`` (``signed_message``: the bare digest bytes, without the
   algorithm octet) with ``Signature.getInstance(Util.getDefaultSigId(alg, challenge))``
   (``PublicKeyAuthenticationInfo.authenticate``). ``alg`` is the private key's Java
   algorithm, so only RSA and DSA keys work. The hash follows the *challenge's*
   envelope version: SHA-256 from 2.7 on (DSA only from 2.11 on), SHA-1 before.
3. It sends OC_CHALLENGE_RESPONSE (200), a ``ChallengeAnswerRequest`` with auth type
   ``HS_PUBKEY``, its admin handle and index, and ``signed_response``, laid out as
   ``SignedResponse``: <hash id> <signature>, each a 4-byte length and its bytes. The
   hash id is ``Util.getHashAlgIdFromSigId``: ``SHA1`` or ``SHA-256``.
4. The server fetches the HS_PUBKEY value at that index (``Util.getPublicKeyFromBytes``,
   ``decode_public_key`` here) and verifies (``HandleServer.verifyIdentityAndGetIndex``,
   mirrored client-side in ``Resolver.verifyPubKeyAuth``): ``verify_challenge_answer``.

Hash ids this module accepts (``Util.getSigIdFromHashAlgId``), by key:

    key                     hash id                          signature
    RSA                     SHA1 | SHA-1 | 0x02              PKCS#1 v1.5 (Java SHA1withRSA)
                            SHA-256 | SHA256 | 0x03          PKCS#1 v1.5 (Java SHA256withRSA)
    DSA                     the same ids                     DER SEQUENCE {r, s} (Java)
    ECDSA P-256  (idres)    SHA-256 | SHA256 | 0x03          DER SEQUENCE {r, s}
    Ed25519      (idres)    Ed25519                          64 bytes (RFC 8032)

The last two rows are idres's own, for idres's admin keys: no CNRI client can make them
(it has no EC or EdDSA path). MD5 ids (``MD5``, 0x01), which CNRI would still accept,
are refused.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from schemas.handle_wire.codes import ResponseCode
from schemas.handle_wire.errors import HandleWireError
from schemas.handle_wire.limits import MAX_STRING
from schemas.handle_wire.request_bodies import ChallengeAnswerRequest
from schemas.handle_wire.wire import Reader, Writer

# CNRI Common.CHALLENGE_NONCE_SIZE: ChallengeResponse.generateNonce fills this many bytes
# from a SecureRandom.
CHALLENGE_NONCE_SIZE = 16

# <AuthenticationType> of a ChallengeAnswerRequest (CNRI Common.PUBLIC_KEY_TYPE).
AUTH_TYPE_PUBKEY = b"HS_PUBKEY"

# The hash ids a CNRI client writes (Common.HASH_ALG_SHA1, HASH_ALG_SHA256), and ours.
HASH_ID_SHA1 = b"SHA1"
HASH_ID_SHA256 = b"SHA-256"
HASH_ID_ED25519 = b"Ed25519"  # idres's own: not in the CNRI library

# The Handle encoding's key type strings (CNRI Common.KEY_ENCODING_*_PUBLIC).
_RSA_PUB_KEY = b"RSA_PUB_KEY"
_DSA_PUB_KEY = b"DSA_PUB_KEY"
_DH_PUB_KEY = b"DH_PUB_KEY"
# CNRI getBytesFromPublicKey sizes an RSA key's buffer for four length fields and writes
# three, so every RSA HS_PUBKEY it makes ends in these four zero bytes (never read back).
_RSA_TAIL = bytes(4)

# Ours: a smaller RSA modulus can be factored; CNRI's own tools made 1024-bit keys once.
MIN_RSA_BITS = 1024
# What cryptography (OpenSSL) accepts for DSA (FIPS 186-4 sizes).
_DSA_P_BITS = (1024, 2048, 3072, 4096)
_DSA_Q_BITS = (160, 224, 256)

_SHA1_IDS = frozenset({HASH_ID_SHA1, b"SHA-1", b"\x02"})
_SHA256_IDS = frozenset({HASH_ID_SHA256, b"SHA256", b"\x03"})
_MD5_IDS = frozenset({b"MD5", b"\x01"})

HandlePublicKey: TypeAlias = rsa.RSAPublicKey | dsa.DSAPublicKey
PublicKey: TypeAlias = (
    rsa.RSAPublicKey | dsa.DSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
)
PrivateKey: TypeAlias = (
    rsa.RSAPrivateKey | dsa.DSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
)


# ---- HS_PUBKEY data --------------------------------------------------------------------


def decode_public_key(data: bytes) -> PublicKey:
    """The key in HS_PUBKEY ``data``, in either encoding it may have:

    * the Handle encoding (CNRI ``Util.getPublicKeyFromBytes``): <key type> (a 4-byte
      length and ``RSA_PUB_KEY`` or ``DSA_PUB_KEY``), 2 reserved bytes (ignored, as CNRI
      ignores them), then length-prefixed unsigned big-endian integers: exponent and
      modulus for RSA (then the four zero bytes CNRI leaves at the end, or nothing);
      q, p, g, y for DSA. It starts with a zero byte.
    * DER SubjectPublicKeyInfo, as idres stores its own keys (Ed25519, ECDSA P-256, RSA).
      It starts with 0x30 (a SEQUENCE), so the two cannot be confused.

    Raises HandleWireError (INVALID_VALUE) naming the field that failed.
    """
    if data[:1] == b"\x30":
        return _decode_spki(data)
    try:
        return _decode_handle_encoding(data)
    except HandleWireError as exc:
        if exc.code == ResponseCode.INVALID_VALUE:
            raise
        # a length or count the Reader refused: the value is bad, not the message
        raise HandleWireError(
            ResponseCode.INVALID_VALUE, exc.reason, field=exc.field, offset=exc.offset
        ) from None


def encode_public_key(key: HandlePublicKey) -> bytes:
    """The Handle encoding of an RSA or DSA key, byte for byte as CNRI
    ``Util.getBytesFromPublicKey`` makes it: integers as Java's ``BigInteger.toByteArray``
    writes them (a leading zero byte when the top bit is set), and an RSA key's four
    trailing zero bytes. Ed25519 and P-256 keys have no Handle encoding: store
    their DER SubjectPublicKeyInfo instead."""
    w = Writer()
    if isinstance(key, rsa.RSAPublicKey):
        rsa_numbers = key.public_numbers()
        w.octets(_RSA_PUB_KEY, "key_type", cap=MAX_STRING)
        w.u16(0, "reserved")
        for value, field in ((rsa_numbers.e, "rsa exponent"), (rsa_numbers.n, "rsa modulus")):
            w.octets(_java_bytes(value), field, cap=MAX_STRING)
        w.raw(_RSA_TAIL)
        return w.getvalue()
    if isinstance(key, dsa.DSAPublicKey):
        numbers = key.public_numbers()
        params = numbers.parameter_numbers
        w.octets(_DSA_PUB_KEY, "key_type", cap=MAX_STRING)
        w.u16(0, "reserved")
        for value, field in (
            (params.q, "dsa q"),
            (params.p, "dsa p"),
            (params.g, "dsa g"),
            (numbers.y, "dsa y"),
        ):
            w.octets(_java_bytes(value), field, cap=MAX_STRING)
        return w.getvalue()
    raise TypeError(f"only RSA and DSA keys have a Handle encoding, not {type(key).__name__}")


def _java_bytes(value: int) -> bytes:
    """Java ``BigInteger.toByteArray`` of a non-negative integer: minimal two's complement."""
    return value.to_bytes(value.bit_length() // 8 + 1, "big")


def _invalid(reason: str, *, field: str, offset: int | None = None) -> HandleWireError:
    return HandleWireError(
        ResponseCode.INVALID_VALUE, f"HS_PUBKEY data: {reason}", field=field, offset=offset
    )


def _decode_handle_encoding(data: bytes) -> HandlePublicKey:
    r = Reader(data, "HS_PUBKEY data")
    key_type = r.octets("key_type", cap=MAX_STRING)
    r.u16("reserved")
    if key_type == _RSA_PUB_KEY:
        return _decode_rsa(r)
    if key_type == _DSA_PUB_KEY:
        return _decode_dsa(r)
    if key_type == _DH_PUB_KEY:
        raise _invalid("a DH_PUB_KEY cannot sign", field="key_type", offset=4)
    shown = key_type.decode("utf-8", errors="replace")
    raise _invalid(
        f"unknown key type {shown!r} (want RSA_PUB_KEY or DSA_PUB_KEY)", field="key_type", offset=4
    )


def _integer(r: Reader, field: str) -> tuple[int, int]:
    """A length-prefixed unsigned integer (Java ``new BigInteger(1, bytes)``) and its offset."""
    at = r.offset + 4
    return int.from_bytes(r.octets(field, cap=MAX_STRING), "big"), at


def _decode_rsa(r: Reader) -> rsa.RSAPublicKey:
    e, e_at = _integer(r, "rsa exponent")
    n, n_at = _integer(r, "rsa modulus")
    if r.remaining == len(_RSA_TAIL):  # CNRI's tail; nothing else may follow the modulus
        at = r.offset
        if r.raw(len(_RSA_TAIL), "(end)") != _RSA_TAIL:
            raise _invalid(
                "the 4 bytes after the RSA modulus are not zero", field="(end)", offset=at
            )
    r.expect_end()
    if n.bit_length() < MIN_RSA_BITS:
        raise _invalid(
            f"an RSA modulus of {n.bit_length()} bits is under the {MIN_RSA_BITS} accepted",
            field="rsa modulus",
            offset=n_at,
        )
    if e < 3 or e % 2 == 0 or e >= n:
        raise _invalid(
            f"RSA exponent {e} is not an odd number from 3 to below the modulus",
            field="rsa exponent",
            offset=e_at,
        )
    return rsa.RSAPublicNumbers(e, n).public_key()


def _decode_dsa(r: Reader) -> dsa.DSAPublicKey:
    q, q_at = _integer(r, "dsa q")
    p, p_at = _integer(r, "dsa p")
    g, g_at = _integer(r, "dsa g")
    y, y_at = _integer(r, "dsa y")
    r.expect_end()
    if p.bit_length() not in _DSA_P_BITS:
        raise _invalid(
            f"DSA p of {p.bit_length()} bits (want one of {_DSA_P_BITS})",
            field="dsa p",
            offset=p_at,
        )
    if q.bit_length() not in _DSA_Q_BITS:
        raise _invalid(
            f"DSA q of {q.bit_length()} bits (want one of {_DSA_Q_BITS})",
            field="dsa q",
            offset=q_at,
        )
    if not 1 < g < p:
        raise _invalid("DSA g is not between 1 and p", field="dsa g", offset=g_at)
    if not 1 < y < p:
        raise _invalid("DSA y is not between 1 and p", field="dsa y", offset=y_at)
    try:
        return dsa.DSAPublicNumbers(y, dsa.DSAParameterNumbers(p, q, g)).public_key()
    except ValueError as exc:
        raise _invalid(f"not a usable DSA key ({exc})", field="dsa") from None


def _decode_spki(data: bytes) -> PublicKey:
    try:
        key = load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise _invalid("not a DER SubjectPublicKeyInfo public key", field="spki") from None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return key
        raise _invalid(f"an ECDSA key must be on P-256, not {key.curve.name}", field="spki")
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise _invalid(
                f"an RSA modulus of {key.key_size} bits is under the {MIN_RSA_BITS} accepted",
                field="spki",
            )
        return key
    raise _invalid(
        f"a {type(key).__name__} in DER; want Ed25519, ECDSA P-256 or RSA "
        "(DSA keys go in the Handle encoding)",
        field="spki",
    )


# ---- the challenge and its answer ---------------------------------------------------------


def make_nonce(randbytes: Callable[[int], bytes] = secrets.token_bytes) -> bytes:
    """A fresh challenge nonce of CHALLENGE_NONCE_SIZE bytes; ``randbytes(n)`` must give n
    unpredictable bytes (a test may pass a fixed source)."""
    nonce = randbytes(CHALLENGE_NONCE_SIZE)
    if len(nonce) != CHALLENGE_NONCE_SIZE:
        raise ValueError(f"randbytes gave {len(nonce)} bytes, not {CHALLENGE_NONCE_SIZE}")
    return nonce


def signed_message(nonce: bytes, request_digest: bytes) -> bytes:
    """What the client signs: the nonce, then the request digest's bytes (no algorithm
    octet), as the challenge carried them (``signer.update(nonce)``,
    ``signer.update(requestDigest)`` in ``PublicKeyAuthenticationInfo.authenticate``)."""
    if not nonce or not request_digest:
        raise ValueError("a challenge has a nonce and a request digest; one is empty")
    return nonce + request_digest


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedResponse:
    """<ChallengeResponse> of an HS_PUBKEY answer: <hash id> <signature>, each a 4-byte
    length and its bytes (CNRI ``PublicKeyAuthenticationInfo.authenticate`` writes it,
    ``HandleServer.verifyIdentityAndGetIndex`` reads it)."""

    hash_id: bytes
    signature: bytes

    def encode(self) -> bytes:
        w = Writer()
        w.octets(self.hash_id, "hash_id", cap=MAX_STRING)
        w.octets(self.signature, "signature", cap=MAX_STRING)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> SignedResponse:
        """Raises HandleWireError (AUTHENTICATION_FAILED, as a CNRI server answers an
        answer it cannot read) naming the field."""
        r = Reader(data, "signed_response")
        try:
            hash_id = r.octets("hash_id", cap=MAX_STRING)
            signature = r.octets("signature", cap=MAX_STRING)
            r.expect_end()
        except HandleWireError as exc:
            raise HandleWireError(
                ResponseCode.AUTHENTICATION_FAILED,
                exc.reason,
                field=f"signed_response {exc.field}",
                offset=exc.offset,
            ) from None
        return cls(hash_id=hash_id, signature=signature)


def _refused(reason: str, *, field: str) -> HandleWireError:
    return HandleWireError(ResponseCode.AUTHENTICATION_FAILED, reason, field=field)


_HASH_ID_FIELD = "signed_response hash_id"


def _check_ed25519_id(hash_id: bytes) -> None:
    if hash_id != HASH_ID_ED25519:
        shown = hash_id.decode("utf-8", errors="replace")
        raise _refused(
            f"an Ed25519 key signs with hash id Ed25519, not {shown!r}", field=_HASH_ID_FIELD
        )


def _hash_for(
    key: HandlePublicKey | ec.EllipticCurvePublicKey | PrivateKey, hash_id: bytes
) -> hashes.HashAlgorithm:
    """The hash ``hash_id`` names (CNRI ``Util.getSigIdFromHashAlgId``), if this kind of key
    may sign with it."""
    shown = hash_id.decode("utf-8", errors="replace")
    if hash_id in _MD5_IDS:
        raise _refused("MD5 signatures are not accepted", field=_HASH_ID_FIELD)
    if hash_id in _SHA256_IDS:
        return hashes.SHA256()
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        raise _refused(
            f"an ECDSA P-256 key signs with SHA-256, not {shown!r}", field=_HASH_ID_FIELD
        )
    if hash_id in _SHA1_IDS:
        return hashes.SHA1()  # what CNRI clients send to servers before protocol 2.7
    raise _refused(f"unknown hash id {shown!r}", field=_HASH_ID_FIELD)


def verify_challenge_answer(
    public_key: PublicKey, nonce: bytes, request_digest: bytes, answer: ChallengeAnswerRequest
) -> bool:
    """Whether ``answer`` signs this challenge with ``public_key``'s private half.

    ``nonce`` and ``request_digest`` (the digest bytes, without the algorithm octet) are
    those the server sent in its challenge and kept, never anything the answer says.
    False: a readable answer whose signature does not verify (the server answers
    AUTHENTICATION_FAILED). HandleWireError: an answer that cannot be checked at all,
    with the code to answer and the field: an auth type other than HS_PUBKEY
    (INVALID_CREDENTIAL, as CNRI), an unreadable signed_response, or a hash id this key
    does not sign with (AUTHENTICATION_FAILED).
    """
    if answer.auth_type != AUTH_TYPE_PUBKEY:
        shown = answer.auth_type.decode("utf-8", errors="replace")
        raise HandleWireError(
            ResponseCode.INVALID_CREDENTIAL,
            f"authentication type {shown!r} is not supported (only HS_PUBKEY)",
            field="auth_type",
        )
    signed = SignedResponse.decode(answer.signed_response)
    message = signed_message(nonce, request_digest)
    signature = signed.signature
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            _check_ed25519_id(signed.hash_id)
            public_key.verify(signature, message)
        elif isinstance(public_key, rsa.RSAPublicKey):
            algorithm = _hash_for(public_key, signed.hash_id)
            public_key.verify(signature, message, padding.PKCS1v15(), algorithm)
        elif isinstance(public_key, dsa.DSAPublicKey):
            public_key.verify(signature, message, _hash_for(public_key, signed.hash_id))
        else:
            algorithm = _hash_for(public_key, signed.hash_id)
            public_key.verify(signature, message, ec.ECDSA(algorithm))
    except InvalidSignature:
        return False
    return True


def sign_challenge(
    private_key: PrivateKey, nonce: bytes, request_digest: bytes, *, hash_id: bytes | None = None
) -> bytes:
    """The signed_response a client sends for this challenge: what the CNRI client makes
    for RSA and DSA keys (SHA-256 by default, as it signs from protocol 2.11 on), and
    idres's form for Ed25519 and P-256 keys. For tests and idres's own clients."""
    message = signed_message(nonce, request_digest)
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        hash_id = HASH_ID_ED25519 if hash_id is None else hash_id
        _check_ed25519_id(hash_id)
        signature = private_key.sign(message)
    else:
        hash_id = HASH_ID_SHA256 if hash_id is None else hash_id
        algorithm = _hash_for(private_key, hash_id)
        if isinstance(private_key, rsa.RSAPrivateKey):
            signature = private_key.sign(message, padding.PKCS1v15(), algorithm)
        elif isinstance(private_key, dsa.DSAPrivateKey):
            signature = private_key.sign(message, algorithm)
        else:
            signature = private_key.sign(message, ec.ECDSA(algorithm))
    return SignedResponse(hash_id=hash_id, signature=signature).encode()
