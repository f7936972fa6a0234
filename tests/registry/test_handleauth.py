"""Authorization: Handle read into what it asks (registry/handleauth.py), session
proofs checked, and TLS client certificates' identities (registry/clientcert.py)."""

from __future__ import annotations

import contextlib
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from registry.authz import Signer
from registry.clientcert import TOO_LARGE, certificate, check_key, identity
from registry.handleauth import HandleAuthorization, Proof, handle_authorization, verify_proof
from schemas.errors import AuthenticationFailed
from schemas.record import DataFormat, HandleValue, Record

PROOF = Proof(
    handle="0.NA/88.100.1",
    index=300,
    type="HS_PUBKEY",
    alg="SHA256",
    cnonce=b"\x01",
    signature=b"\x02",
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("Basic abc", None),
        ('Handle clientCert="true"', HandleAuthorization(client_cert=True)),
        ("handle clientcert=TRUE", HandleAuthorization(client_cert=True)),
        ('Handle sessionId="s1"', HandleAuthorization(session_id="s1")),
        ('Handle version="0", sessionId=s1, future="x"', HandleAuthorization(session_id="s1")),
        (
            'Handle sessionId="s\\"1", id="300%3A0.NA%2F88.100.1", type="HS_PUBKEY",'
            ' cnonce="AQ==", alg="SHA256", signature="Ag=="',
            HandleAuthorization(session_id='s"1', proof=PROOF),
        ),
        (
            'Handle sessionId=s1 ,id="300:0.NA/88.100.1",type=hs_pubkey,cnonce="AQ==",'
            'alg=SHA256,signature="Ag=="',
            HandleAuthorization(session_id="s1", proof=PROOF),
        ),
    ],
)
def test_handle_authorization_reads_the_manuals_parameters(
    header: str | None, expected: HandleAuthorization | None
) -> None:
    assert handle_authorization(header) == expected


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("Handle", "has no parameters"),
        ("Handle   ", "has no parameters"),
        ("Handle sessionId", "malformed at character 1"),
        ('Handle sessionId="open', "malformed at character 1"),
        ('Handle sessionId="a" id="b"', "a comma must separate them"),
        ('Handle sessionId="a", SESSIONID="b"', "SESSIONID is given twice"),
        ('Handle sessionId=""', "sessionId must be 1 to 128 characters"),
        (
            'Handle id="300%3Ax", type=HS_PUBKEY, cnonce="AQ==", alg=SHA256, signature="Ag=="',
            "sessionId is required",
        ),
        ('Handle sessionId=a, id="%FF"', "id is not percent-encoded UTF-8"),
        ('Handle sessionId=a, signature="Ag=="', "missing id, type, cnonce, alg"),
        ("Handle sessionId=a, cnonce=AQ==", "parameter cnonce must be quoted"),
        ("Handle renegotiate=true", 'needs clientCert="true" or sessionId'),
    ],
)
def test_a_malformed_handle_authorization_says_what_and_where(header: str, says: str) -> None:
    with pytest.raises(AuthenticationFailed, match=says):
        handle_authorization(header)


def _der(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _proof(alg: str, signature: bytes) -> Proof:
    return Proof(
        handle="0.NA/x", index=300, type="HS_PUBKEY", alg=alg, cnonce=b"cn", signature=signature
    )


def test_session_proofs_verify_with_each_key_type_and_only_over_nonce_then_cnonce() -> None:
    data = b"nonce" + b"cn"
    ed = ed25519.Ed25519PrivateKey.generate()
    verify_proof(_proof("Ed25519", ed.sign(data)), b"nonce", _der(ed))
    verify_proof(_proof("eddsa", ed.sign(data)), b"nonce", _der(ed))
    p256 = ec.generate_private_key(ec.SECP256R1())
    der_sig = p256.sign(data, ec.ECDSA(hashes.SHA256()))
    verify_proof(_proof("SHA256", der_sig), b"nonce", _der(p256))
    r, s = decode_dss_signature(der_sig)
    verify_proof(
        _proof("sha-256", r.to_bytes(32, "big") + s.to_bytes(32, "big")), b"nonce", _der(p256)
    )
    big = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    verify_proof(
        _proof("SHA256", big.sign(data, padding.PKCS1v15(), hashes.SHA256())), b"nonce", _der(big)
    )
    with pytest.raises(AuthenticationFailed, match="does not verify"):
        verify_proof(_proof("Ed25519", ed.sign(b"cn" + b"nonce")), b"nonce", _der(ed))
    with pytest.raises(AuthenticationFailed, match="does not verify"):
        verify_proof(_proof("Ed25519", ed.sign(data)), b"other", _der(ed))
    with pytest.raises(AuthenticationFailed, match='send alg="SHA256"'):
        verify_proof(_proof("SHA1", der_sig), b"nonce", _der(p256))


def _cert(subject: list[x509.NameAttribute], key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name(subject)
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "any issuer")]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=9))
        .not_valid_after(now - datetime.timedelta(days=8))  # expired: dates are not looked at
        .sign(key, hashes.SHA256())
    )


KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize(
    ("subject", "signer", "says"),
    [
        (
            [x509.NameAttribute(NameOID.USER_ID, "300:0.NA/88.100.1")],
            Signer(handle="0.NA/88.100.1", index=300),
            None,
        ),
        (
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "301:0.NA/other"),
                x509.NameAttribute(NameOID.USER_ID, "300:88.100.1/USER"),
            ],
            Signer(handle="88.100.1/USER", index=300),
            None,
        ),
        (
            [x509.NameAttribute(NameOID.COMMON_NAME, "7:88.100.1/Ü")],
            Signer(handle="88.100.1/Ü", index=7),
            None,
        ),
        ([x509.NameAttribute(NameOID.COMMON_NAME, "alice")], None, "CN is 'alice'"),
        ([x509.NameAttribute(NameOID.USER_ID, "0.NA/x")], None, "UID is '0.NA/x'"),
        ([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Org")], None, "has no UID or CN"),
        (
            [
                x509.NameAttribute(NameOID.USER_ID, "1:a/b"),
                x509.NameAttribute(NameOID.USER_ID, "2:a/b"),
            ],
            None,
            "2 UID attributes",
        ),
    ],
)
def test_a_certificate_names_its_key_in_uid_or_else_cn(
    subject: list[x509.NameAttribute], signer: Signer | None, says: str | None
) -> None:
    cert = _cert(subject, KEY)
    if says is None:
        assert identity(cert) == signer
    else:
        with pytest.raises(AuthenticationFailed, match=says):
            identity(cert)


def test_the_certificates_key_must_be_the_hs_pubkey_at_its_index() -> None:
    cert = _cert([x509.NameAttribute(NameOID.USER_ID, "300:0.NA/x")], KEY)
    signer = Signer(handle="0.NA/x", index=300)

    def record(index: int, key: ec.EllipticCurvePrivateKey) -> Record:
        value = HandleValue(index=index, type="HS_PUBKEY", format=DataFormat.KEY, value=_der(key))
        return Record(handle="0.NA/x", values=(value,))

    check_key(record(300, KEY), signer, cert)
    with pytest.raises(AuthenticationFailed, match=r"is not the HS_PUBKEY at 300:0\.NA/x"):
        check_key(record(300, ec.generate_private_key(ec.SECP256R1())), signer, cert)
    with pytest.raises(AuthenticationFailed, match="names no HS_PUBKEY"):
        check_key(record(301, KEY), signer, cert)
    with pytest.raises(AuthenticationFailed, match="names no HS_PUBKEY"):
        check_key(None, signer, cert)


def test_a_certificate_the_edge_could_not_pass_is_refused_saying_why() -> None:
    with pytest.raises(AuthenticationFailed, match="larger than 8192 bytes"):
        certificate(TOO_LARGE)
    with pytest.raises(AuthenticationFailed, match=r"could not be read as X\.509"):
        certificate("bm90IGEgY2VydA==")


@given(st.text(max_size=200))
def test_any_handle_authorization_is_read_or_refused_as_a_failed_authentication(
    params: str,
) -> None:
    with contextlib.suppress(AuthenticationFailed):  # anything else would be a 500
        handle_authorization("Handle " + params)


@given(
    st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=128
    )
)
def test_a_quoted_session_id_reads_back_as_sent(session_id: str) -> None:
    quoted = session_id.replace("\\", "\\\\").replace('"', '\\"')
    assert handle_authorization(f'Handle sessionId="{quoted}"') == HandleAuthorization(
        session_id=session_id
    )
