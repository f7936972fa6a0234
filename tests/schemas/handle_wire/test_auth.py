"""Challenge-response authentication (``schemas/handle_wire/auth.py``): the answer the real
CNRI 9.3.1 client signed (``tests/fixtures/handle/admin/``), HS_PUBKEY encodings, and the
key kinds the client cannot make (DSA here, Ed25519 and P-256 for idres's own keys)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings

from schemas.handle_wire import (
    ChallengeAnswerRequest,
    ChallengeResponse,
    CreateHandleRequest,
    DigestAlgorithm,
    Envelope,
    HandleWireError,
    Message,
    OpCode,
    RequestDigest,
    ResponseCode,
    decode_request,
    decode_response,
)
from schemas.handle_wire.auth import (
    CHALLENGE_NONCE_SIZE,
    HASH_ID_ED25519,
    HASH_ID_SHA1,
    HASH_ID_SHA256,
    PrivateKey,
    PublicKey,
    SignedResponse,
    decode_public_key,
    encode_public_key,
    make_nonce,
    sign_challenge,
    signed_message,
    verify_challenge_answer,
)
from tests.fuzz.strategies import FUZZ, inputs

ADMIN = Path(__file__).parents[2] / "fixtures" / "handle" / "admin"
HSPUB = (ADMIN / "rsa-test-key.hspub").read_bytes()
SPKI = (ADMIN / "rsa-test-key.hspub.spki.der").read_bytes()
NONCE = (ADMIN / "challenge-nonce.bin").read_bytes()


def load(name: str, *, response: bool = False) -> Message:
    data = (ADMIN / name).read_bytes()
    envelope = Envelope.decode(data)
    decode = decode_response if response else decode_request
    return decode(envelope, data[20:])


CREATE = load("create-request.bin")
CHALLENGE = load("challenge.bin", response=True)
ANSWER = load("challenge-answer.bin")
# The server digested the request's header and body as received: SHA-256 (protocol 2.11).
DIGEST = hashlib.sha256(CREATE.header_and_body).digest()


def answer_body() -> ChallengeAnswerRequest:
    assert isinstance(ANSWER.body, ChallengeAnswerRequest)
    return ANSWER.body


CAPTURED_SIG = SignedResponse.decode(answer_body().signed_response).signature


def with_signed(
    signed_response: bytes, *, auth_type: bytes = b"HS_PUBKEY"
) -> ChallengeAnswerRequest:
    return ChallengeAnswerRequest(
        auth_type=auth_type,
        key_handle=b"0.NA/88.100.1",
        key_index=300,
        signed_response=signed_response,
    )


def flip(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


# ---- the captured exchange ------------------------------------------------------------


def test_the_capture_is_a_create_then_a_challenge_then_an_answer_in_its_session() -> None:
    assert CREATE.header.opcode == OpCode.CREATE_HANDLE
    assert isinstance(CREATE.body, CreateHandleRequest)
    assert CREATE.body.handle == b"88.100.1/ABC-123"
    assert CREATE.envelope.session_id == 0

    assert CHALLENGE.header.response_code == ResponseCode.AUTHENTICATION_NEEDED
    assert CHALLENGE.body == ChallengeResponse(nonce=NONCE)
    assert CHALLENGE.request_digest == RequestDigest(
        algorithm=DigestAlgorithm.SHA256, digest=DIGEST
    )
    assert CHALLENGE.envelope.request_id == CREATE.envelope.request_id

    # The answer: a new request (its own request id) in the session the challenge named,
    # at the challenge's protocol version; nothing in it names the create request.
    assert ANSWER.header.opcode == OpCode.CHALLENGE_RESPONSE
    assert ANSWER.envelope.session_id == CHALLENGE.envelope.session_id != 0
    assert ANSWER.envelope.request_id != CREATE.envelope.request_id
    assert ANSWER.envelope.version == CHALLENGE.envelope.version == (2, 11)
    assert answer_body().auth_type == b"HS_PUBKEY"
    assert (answer_body().key_handle, answer_body().key_index) == (b"0.NA/88.100.1", 300)


def test_the_cnri_signed_response_is_a_hash_id_and_an_rsa_signature() -> None:
    signed = SignedResponse.decode(answer_body().signed_response)

    assert signed.hash_id == b"SHA-256"  # Common.HASH_ALG_SHA256, for SHA256withRSA
    assert len(signed.signature) == 256  # a 2048-bit modulus
    assert signed.encode() == answer_body().signed_response


def test_the_client_signs_the_nonce_then_the_bare_digest_with_sha256_pkcs1v15() -> None:
    key = decode_public_key(HSPUB)
    assert isinstance(key, rsa.RSAPublicKey)
    signature = SignedResponse.decode(answer_body().signed_response).signature

    assert signed_message(NONCE, DIGEST) == NONCE + DIGEST
    key.verify(signature, NONCE + DIGEST, padding.PKCS1v15(), hashes.SHA256())  # raises if not


@pytest.mark.parametrize("key_data", [HSPUB, SPKI], ids=["handle-encoding", "spki"])
def test_the_captured_answer_verifies_with_the_captured_key(key_data: bytes) -> None:
    assert verify_challenge_answer(decode_public_key(key_data), NONCE, DIGEST, answer_body())


def test_sign_challenge_makes_the_same_bytes_as_the_cnri_client() -> None:
    # PKCS#1 v1.5 is deterministic, so our signer must reproduce the client's answer.
    assert sign_challenge(_rsa_from_fixture(), NONCE, DIGEST) == answer_body().signed_response


@pytest.fixture(scope="module")
def other_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(
    ("nonce", "digest", "signed"),
    [
        (flip(NONCE), DIGEST, None),
        (NONCE[:-1], DIGEST, None),
        (NONCE, flip(DIGEST, 31), None),
        (NONCE, hashlib.sha1(CREATE.header_and_body).digest(), None),  # another algorithm's
        (NONCE, DIGEST, flip(answer_body().signed_response, 20)),
        (NONCE, DIGEST, SignedResponse(hash_id=b"SHA-256", signature=CAPTURED_SIG[:-1]).encode()),
    ],
    ids=[
        "nonce-changed",
        "nonce-cut",
        "digest-changed",
        "sha1-digest",
        "signature-changed",
        "signature-cut",
    ],
)
def test_the_captured_answer_fails_on_anything_else(
    nonce: bytes, digest: bytes, signed: bytes | None
) -> None:
    answer = answer_body() if signed is None else with_signed(signed)

    assert not verify_challenge_answer(decode_public_key(HSPUB), nonce, digest, answer)


def test_the_captured_answer_fails_with_another_key(other_rsa: rsa.RSAPrivateKey) -> None:
    assert not verify_challenge_answer(other_rsa.public_key(), NONCE, DIGEST, answer_body())


# ---- key encodings ----------------------------------------------------------------------

_DSA_PUBLIC = dsa.generate_private_key(key_size=1024).public_key()
_ED25519_PUBLIC = ed25519.Ed25519PrivateKey.generate().public_key()


def _der(public: PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def dsa_key() -> dsa.DSAPrivateKey:
    # 1024-bit p, 160-bit q: the DSA keys CNRI's tools made by default for years
    return dsa.generate_private_key(key_size=1024)


def test_the_cnri_rsa_encoding_round_trips_byte_for_byte() -> None:
    key = decode_public_key(HSPUB)
    assert isinstance(key, rsa.RSAPublicKey)

    # including the four zero bytes Util.getBytesFromPublicKey leaves at the end
    assert HSPUB.endswith(bytes(4))
    assert encode_public_key(key) == HSPUB
    assert (
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == SPKI
    )


def test_an_rsa_encoding_without_cnris_zero_tail_is_read_too() -> None:
    key = decode_public_key(HSPUB[:-4])

    assert isinstance(key, rsa.RSAPublicKey)
    assert encode_public_key(key) == HSPUB


def test_integers_are_written_as_java_biginteger_writes_them() -> None:
    # exponent 65537 is 01 00 01; a modulus with its top bit set gets a leading zero byte
    assert HSPUB[17:28] == bytes.fromhex("0000000301000100000101")
    assert HSPUB[28] == 0x00
    assert HSPUB[29] & 0x80


def test_a_dsa_key_round_trips_in_the_handle_encoding(dsa_key: dsa.DSAPrivateKey) -> None:
    public = dsa_key.public_key()

    data = encode_public_key(public)

    assert data.startswith(b"\x00\x00\x00\x0bDSA_PUB_KEY\x00\x00")
    decoded = decode_public_key(data)
    assert isinstance(decoded, dsa.DSAPublicKey)
    assert decoded.public_numbers() == public.public_numbers()
    assert encode_public_key(decoded) == data


@pytest.mark.parametrize(
    "private",
    [ed25519.Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1())],
    ids=["ed25519", "p256"],
)
def test_idres_keys_are_read_from_der_spki(
    private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey,
) -> None:
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    assert decode_public_key(der) == private.public_key()


def test_only_rsa_and_dsa_have_a_handle_encoding() -> None:
    with pytest.raises(TypeError, match="only RSA and DSA"):
        encode_public_key(ed25519.Ed25519PrivateKey.generate().public_key())  # type: ignore[arg-type]


@settings(FUZZ, max_examples=400)
@given(inputs([HSPUB, SPKI, encode_public_key(_DSA_PUBLIC), _der(_ED25519_PUBLIC)]))
def test_any_bytes_give_a_key_or_an_invalid_value_naming_a_field(data: bytes) -> None:
    try:
        decode_public_key(data)  # any other exception fails the test
    except HandleWireError as exc:
        refusal = exc
    else:
        return
    assert (refusal.code, bool(refusal.field)) == (ResponseCode.INVALID_VALUE, True)


def _octets(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _int(value: int) -> bytes:
    return _octets(value.to_bytes(value.bit_length() // 8 + 1, "big"))


_RSA = decode_public_key(HSPUB)
assert isinstance(_RSA, rsa.RSAPublicKey)
_N = _RSA.public_numbers().n
_RSA_HEAD = _octets(b"RSA_PUB_KEY") + b"\x00\x00"


def _dsa(*, p_bits: int = 0, q: int = 0, g: int = 0, y: int = 0) -> bytes:
    """A DSA_PUB_KEY of a 1024/160 key, with one of its numbers spoiled."""
    key = _DSA_PUBLIC.public_numbers()
    params = key.parameter_numbers
    p = params.p if not p_bits else (1 << (p_bits - 1)) | 1
    return (
        _octets(b"DSA_PUB_KEY")
        + b"\x00\x00"
        + b"".join(_int(v) for v in (q or params.q, p, g or params.g, y or key.y))
    )


@dataclass(frozen=True, slots=True)
class Bad:
    data: bytes
    field: str


MALFORMED = {
    "empty": Bad(b"", "key_type"),
    "key-type-cut": Bad(_octets(b"RSA_PUB_KEY")[:-3], "key_type"),
    "unknown-type": Bad(_octets(b"ECC_PUB_KEY") + b"\x00\x00", "key_type"),
    "dh-cannot-sign": Bad(_octets(b"DH_PUB_KEY") + b"\x00\x00" + _int(5) * 3, "key_type"),
    "reserved-missing": Bad(_octets(b"RSA_PUB_KEY") + b"\x00", "reserved"),
    "exponent-missing": Bad(_RSA_HEAD, "rsa exponent"),
    "modulus-cut": Bad(_RSA_HEAD + _int(65537) + _int(_N)[:-10], "rsa modulus"),
    "modulus-512-bits": Bad(_RSA_HEAD + _int(65537) + _int((1 << 511) | 1), "rsa modulus"),
    "exponent-even": Bad(_RSA_HEAD + _int(65536) + _int(_N), "rsa exponent"),
    "exponent-one": Bad(_RSA_HEAD + _int(1) + _int(_N), "rsa exponent"),
    "tail-not-zero": Bad(_RSA_HEAD + _int(65537) + _int(_N) + b"\x00\x00\x00\x01", "(end)"),
    "tail-one-byte": Bad(_RSA_HEAD + _int(65537) + _int(_N) + b"\x00", "(end)"),
    "dsa-p-size": Bad(_dsa(p_bits=1000), "dsa p"),
    "dsa-q-size": Bad(_dsa(q=(1 << 100) | 1), "dsa q"),
    "dsa-g-one": Bad(_dsa(g=1), "dsa g"),
    "dsa-y-one": Bad(_dsa(y=1), "dsa y"),
    "dsa-y-cut": Bad(_dsa()[:-5], "dsa y"),
    "der-garbage": Bad(bytes.fromhex("3003020100"), "spki"),
    "der-p384": Bad(_der(ec.generate_private_key(ec.SECP384R1()).public_key()), "spki"),
    "der-dsa": Bad(_der(_DSA_PUBLIC), "spki"),
}


@pytest.mark.parametrize("bad", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_key_data_is_refused_naming_the_field(bad: Bad) -> None:
    with pytest.raises(HandleWireError) as caught:
        decode_public_key(bad.data)

    assert caught.value.code == ResponseCode.INVALID_VALUE
    assert caught.value.field == bad.field
    assert "HS_PUBKEY data" in str(caught.value)


# ---- answers that cannot be checked -----------------------------------------------------


@pytest.mark.parametrize(
    ("signed_response", "field"),
    [
        (b"", "signed_response hash_id"),
        (_octets(b"SHA-256"), "signed_response signature"),
        (_octets(b"SHA-256") + _octets(b"x") + b"!", "signed_response (end)"),
        (_octets(b"MD5") + _octets(bytes(256)), "signed_response hash_id"),
        (_octets(b"\x01") + _octets(bytes(256)), "signed_response hash_id"),
        (_octets(b"SHA-512") + _octets(bytes(256)), "signed_response hash_id"),
    ],
    ids=["empty", "signature-missing", "trailing-byte", "md5", "md5-code", "unknown-hash"],
)
def test_an_unreadable_answer_is_refused_naming_the_field(
    signed_response: bytes, field: str
) -> None:
    with pytest.raises(HandleWireError) as caught:
        verify_challenge_answer(
            decode_public_key(HSPUB), NONCE, DIGEST, with_signed(signed_response)
        )

    assert caught.value.code == ResponseCode.AUTHENTICATION_FAILED
    assert caught.value.field == field


def test_a_secret_key_answer_is_refused_as_an_invalid_credential() -> None:
    answer = with_signed(answer_body().signed_response, auth_type=b"HS_SECKEY")

    with pytest.raises(HandleWireError) as caught:
        verify_challenge_answer(decode_public_key(HSPUB), NONCE, DIGEST, answer)

    assert caught.value.code == ResponseCode.INVALID_CREDENTIAL
    assert caught.value.field == "auth_type"


# ---- every key kind, signed here --------------------------------------------------------


def _keys(dsa_key: dsa.DSAPrivateKey, rsa_key: rsa.RSAPrivateKey) -> dict[str, PrivateKey]:
    return {
        "rsa": rsa_key,
        "dsa": dsa_key,
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
        "p256": ec.generate_private_key(ec.SECP256R1()),
    }


# (key kind, hash id written, hash ids CNRI names the same hash by)
SIGNING = [
    ("rsa", HASH_ID_SHA256, [b"SHA256", b"\x03"]),
    ("rsa", HASH_ID_SHA1, [b"SHA-1", b"\x02"]),
    ("dsa", HASH_ID_SHA256, [b"SHA256", b"\x03"]),  # SHA256withDSA: protocol 2.11 on
    ("dsa", HASH_ID_SHA1, [b"SHA-1", b"\x02"]),  # SHA1withDSA: before 2.11
    ("p256", HASH_ID_SHA256, [b"SHA256", b"\x03"]),
    ("ed25519", HASH_ID_ED25519, []),
]


@pytest.mark.parametrize(
    ("kind", "hash_id", "aliases"), SIGNING, ids=[f"{k}-{h.decode()}" for k, h, _ in SIGNING]
)
def test_each_key_kind_verifies_its_own_answer_and_no_other(
    dsa_key: dsa.DSAPrivateKey,
    other_rsa: rsa.RSAPrivateKey,
    kind: str,
    hash_id: bytes,
    aliases: list[bytes],
) -> None:
    private = _keys(dsa_key, other_rsa)[kind]
    public = private.public_key()
    signed = sign_challenge(private, NONCE, DIGEST, hash_id=hash_id)

    assert SignedResponse.decode(signed).hash_id == hash_id
    assert verify_challenge_answer(public, NONCE, DIGEST, with_signed(signed))
    assert not verify_challenge_answer(public, flip(NONCE), DIGEST, with_signed(signed))
    assert not verify_challenge_answer(public, NONCE, flip(DIGEST), with_signed(signed))
    signature = SignedResponse.decode(signed).signature
    for alias in aliases:
        renamed = SignedResponse(hash_id=alias, signature=signature).encode()
        assert verify_challenge_answer(public, NONCE, DIGEST, with_signed(renamed))


@pytest.mark.parametrize("kind", ["dsa", "p256"])
def test_dsa_and_ecdsa_signatures_are_der_as_java_makes_them(
    dsa_key: dsa.DSAPrivateKey, other_rsa: rsa.RSAPrivateKey, kind: str
) -> None:
    signed = sign_challenge(_keys(dsa_key, other_rsa)[kind], NONCE, DIGEST)

    r, s = decode_dss_signature(SignedResponse.decode(signed).signature)
    assert min(r, s) > 0


@pytest.mark.parametrize(
    ("kind", "hash_id"),
    [("ed25519", HASH_ID_SHA256), ("p256", HASH_ID_SHA1), ("p256", HASH_ID_ED25519)],
)
def test_a_hash_id_the_key_does_not_sign_with_is_refused(
    dsa_key: dsa.DSAPrivateKey, other_rsa: rsa.RSAPrivateKey, kind: str, hash_id: bytes
) -> None:
    public = _keys(dsa_key, other_rsa)[kind].public_key()
    signed = SignedResponse(hash_id=hash_id, signature=bytes(64)).encode()

    with pytest.raises(HandleWireError) as caught:
        verify_challenge_answer(public, NONCE, DIGEST, with_signed(signed))

    assert caught.value.code == ResponseCode.AUTHENTICATION_FAILED
    assert caught.value.field == "signed_response hash_id"


@pytest.mark.parametrize("kind", ["rsa", "dsa", "ed25519", "p256"])
def test_a_signature_from_another_key_of_the_same_kind_fails(
    dsa_key: dsa.DSAPrivateKey, other_rsa: rsa.RSAPrivateKey, kind: str
) -> None:
    signer = _keys(dsa_key, other_rsa)[kind]
    others = _keys(dsa.generate_private_key(key_size=1024), _rsa_from_fixture())
    signed = sign_challenge(signer, NONCE, DIGEST)

    assert not verify_challenge_answer(
        others[kind].public_key(), NONCE, DIGEST, with_signed(signed)
    )


def _rsa_from_fixture() -> rsa.RSAPrivateKey:
    private = serialization.load_pem_private_key((ADMIN / "rsa-test-key.pem").read_bytes(), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    return private


# ---- nonces ------------------------------------------------------------------------------


def test_a_nonce_is_sixteen_fresh_bytes_as_cnris_server_makes_them() -> None:
    first, second = make_nonce(), make_nonce()

    assert len(first) == len(second) == CHALLENGE_NONCE_SIZE == 16
    assert first != second
    assert len(NONCE) == CHALLENGE_NONCE_SIZE  # what the capture server sent


def test_a_nonce_comes_from_the_source_given() -> None:
    assert make_nonce(lambda n: bytes(range(n))) == bytes(range(16))
    with pytest.raises(ValueError, match="15 bytes"):
        make_nonce(lambda n: bytes(n - 1))


def test_a_challenge_without_nonce_or_digest_is_a_caller_mistake() -> None:
    with pytest.raises(ValueError, match="empty"):
        signed_message(b"", DIGEST)
    with pytest.raises(ValueError, match="empty"):
        verify_challenge_answer(decode_public_key(HSPUB), NONCE, b"", answer_body())
