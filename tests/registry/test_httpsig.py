"""HTTP Message Signatures and Content-Digest: RFC vectors, round trips and refusals."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_public_key,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.httpsig import (
    DEFAULT_COMPONENTS,
    PrivateKey,
    SignatureParams,
    authority_of,
    check_authority,
    check_content_digest,
    check_freshness,
    content_digest,
    generate_key,
    key_id,
    load_private_key,
    parse_key_id,
    parse_signature,
    private_key_pem,
    public_key_der,
    sign_request,
    signature_base,
    verify,
)
from schemas.errors import AuthenticationNeeded, Forbidden

# RFC 9421 Appendix B.1.4, "test-key-ed25519".
RFC_ED25519_PRIVATE = b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
"""
RFC_ED25519_PUBLIC = b"""-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----
"""
RFC_ED25519_PUBLIC_DER = load_pem_public_key(RFC_ED25519_PUBLIC).public_bytes(
    Encoding.DER, PublicFormat.SubjectPublicKeyInfo
)

# RFC 9421 Appendix B.2, the test request: POST /foo?param=Value&Pet=dog.
RFC_BODY = b'{"hello": "world"}'
RFC_HEADERS = {
    "Host": "example.com",
    "Date": "Tue, 20 Apr 2021 02:07:55 GMT",
    "Content-Type": "application/json",
    "Content-Digest": (
        "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+"
        "AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"
    ),
    "Content-Length": "18",
}
# RFC 9421 Appendix B.2.6, "Signing a Request Using ed25519" (RFC 8792 line wrapping undone).
RFC_B26_SIGNATURE_INPUT = (
    'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")'
    ';created=1618884473;keyid="test-key-ed25519"'
)
RFC_B26_SIGNATURE = (
    "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1"
    "u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:"
)
RFC_B26_BASE = (
    b'"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    b'"@method": POST\n'
    b'"@path": /foo\n'
    b'"@authority": example.com\n'
    b'"content-type": application/json\n'
    b'"content-length": 18\n'
    b'"@signature-params": ("date" "@method" "@path" "@authority" "content-type" '
    b'"content-length");created=1618884473;keyid="test-key-ed25519"'
)
RFC_B26_REQUEST = {
    **RFC_HEADERS,
    "Signature-Input": RFC_B26_SIGNATURE_INPUT,
    "Signature": RFC_B26_SIGNATURE,
}

# RFC 9530 Appendix B: {"hello": "world"} followed by LF.
RFC9530_BODY = b'{"hello": "world"}\n'
RFC9530_SHA256 = "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"
RFC9530_SHA512 = (
    "sha-512=:YMAam51Jz/jOATT6/zvHrLVgOYTGFy1d6GJiOHTohq4yP+pgk4vf2aCs"
    "yRZOtw8MjkM7iw7yZ/WkppmM44T3qg==:"
)

NOW = 1_795_420_800
KEYID = "300:0.NA/88.100.1"
SIG_BYTES = base64.b64encode(bytes(64)).decode()


def rfc_key() -> ed25519.Ed25519PrivateKey:
    key = load_private_key(RFC_ED25519_PRIVATE)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return key


# --- RFC 9421 Appendix B.2.6


def test_rfc_private_key_matches_the_published_public_key() -> None:
    assert public_key_der(rfc_key()) == RFC_ED25519_PUBLIC_DER


def test_rfc_b26_parses() -> None:
    params = parse_signature(RFC_B26_REQUEST, required=())
    assert params.label == "sig-b26"
    assert params.components == (
        "date",
        "@method",
        "@path",
        "@authority",
        "content-type",
        "content-length",
    )
    assert (params.created, params.keyid) == (1618884473, "test-key-ed25519")
    assert (params.expires, params.alg, params.nonce) == (None, None, None)
    assert params.params_text == RFC_B26_SIGNATURE_INPUT.removeprefix("sig-b26=")
    assert len(params.signature) == 64


def test_rfc_b26_signature_base_is_reproduced_byte_for_byte() -> None:
    params = parse_signature(RFC_B26_REQUEST, required=())
    base = signature_base(
        params, method="POST", path="/foo", query="param=Value&Pet=dog", headers=RFC_HEADERS
    )
    assert base == RFC_B26_BASE


def test_rfc_b26_signature_verifies() -> None:
    params = parse_signature(RFC_B26_REQUEST, required=())
    verify(params, RFC_B26_BASE, RFC_ED25519_PUBLIC_DER)


def test_rfc_b26_signature_is_what_the_test_key_signs() -> None:
    # Ed25519 is deterministic, so the published signature is exactly key.sign(base).
    assert rfc_key().sign(RFC_B26_BASE) == parse_signature(RFC_B26_REQUEST, required=()).signature


def test_rfc_b26_is_refused_by_default_for_what_it_leaves_uncovered() -> None:
    with pytest.raises(Forbidden, match=r"signature must cover @query, content-digest$"):
        parse_signature(RFC_B26_REQUEST)


def test_rfc_b26_fails_with_a_changed_authority() -> None:
    params = parse_signature(RFC_B26_REQUEST, required=())
    headers = {**RFC_HEADERS, "Host": "example.org"}
    base = signature_base(params, method="POST", path="/foo", query="", headers=headers)
    with pytest.raises(Forbidden, match="signature does not verify"):
        verify(params, base, RFC_ED25519_PUBLIC_DER)


# --- Content-Digest (RFC 9530)


def test_rfc9530_content_digest_vector() -> None:
    assert content_digest(RFC9530_BODY) == RFC9530_SHA256


@pytest.mark.parametrize(
    ("header", "body"),
    [
        pytest.param(RFC9530_SHA256, RFC9530_BODY, id="rfc9530-sha-256"),
        pytest.param(RFC9530_SHA512, RFC9530_BODY, id="rfc9530-sha-512"),
        pytest.param(f"{RFC9530_SHA256}, {RFC9530_SHA512}", RFC9530_BODY, id="both"),
        pytest.param(f"md5=:AAAA:, {RFC9530_SHA256}", RFC9530_BODY, id="unknown-alg-ignored"),
        pytest.param(RFC_HEADERS["Content-Digest"], RFC_BODY, id="rfc9421-sha-512"),
        pytest.param(content_digest(b""), b"", id="empty-body"),
    ],
)
def test_content_digest_accepted(header: str, body: bytes) -> None:
    check_content_digest(header, body)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        pytest.param("", "no supported algorithm", id="empty"),
        pytest.param("md5=:AAAA:", "no supported algorithm", id="only-unknown"),
        pytest.param(content_digest(b"other"), "sha-256 does not match", id="sha-256-mismatch"),
        pytest.param(
            f"{RFC9530_SHA256}, sha-512=:{base64.b64encode(bytes(64)).decode()}:",
            "sha-512 does not match",
            id="one-of-two-mismatches",
        ),
        pytest.param("sha-256=abc", "sha-256 must be a byte sequence", id="token-not-bytes"),
        pytest.param("sha-256=:!!!!:", "not base64", id="bad-base64"),
        pytest.param("SHA-256=:AAAA:", "expected a key", id="uppercase-key"),
        pytest.param(RFC9530_SHA256 + ",", "trailing comma", id="trailing-comma"),
    ],
)
def test_content_digest_refused(header: str, message: str) -> None:
    with pytest.raises(Forbidden, match=message):
        check_content_digest(header, RFC9530_BODY)


def test_missing_content_digest_asks_for_authentication() -> None:
    with pytest.raises(AuthenticationNeeded, match="Content-Digest"):
        check_content_digest(None, b"")


# --- Round trips


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    method: str = "POST"
    path: str = "/api/handles/88.100.1/x"
    query: str = "overwrite=true"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: bytes = b'{"values": []}'


AUTHORITY = "registry.example:8443"


def signed(key: PrivateKey, request: Request, **kwargs: object) -> Request:
    if not any(k.lower() == "host" for k in request.headers):
        kwargs.setdefault("authority", AUTHORITY)
    added = sign_request(
        method=request.method,
        path=request.path,
        query=request.query,
        headers=request.headers,
        body=request.body,
        key=key,
        keyid=KEYID,
        created=NOW,
        **kwargs,  # type: ignore[arg-type]
    )
    return dataclasses.replace(request, headers={**request.headers, **added})


def server_checks(request: Request, public_der: bytes, *, now: int = NOW) -> SignatureParams:
    """What the server does with a write request, in order."""
    params = parse_signature(request.headers)
    check_freshness(params, now=now)
    check_authority(params, request.headers, {AUTHORITY})
    lowered = {k.lower(): v for k, v in request.headers.items()}
    check_content_digest(lowered.get("content-digest"), request.body)
    base = signature_base(
        params,
        method=request.method,
        path=request.path,
        query=request.query,
        headers=request.headers,
    )
    verify(params, base, public_der)
    return params


@pytest.mark.parametrize(
    ("alg", "expected_alg"), [("ed25519", "ed25519"), ("p256", "ecdsa-p256-sha256")]
)
def test_sign_then_verify(alg: str, expected_alg: str) -> None:
    key = generate_key(alg)
    request = signed(key, Request(headers={"Content-Type": "application/json"}))
    params = server_checks(request, public_key_der(key))
    assert params.components == DEFAULT_COMPONENTS
    assert (params.label, params.keyid, params.created, params.alg) == (
        "sig1",
        KEYID,
        NOW,
        expected_alg,
    )
    assert len(params.signature) == 64


def test_signed_headers_have_the_documented_shape() -> None:
    request = Request(body=RFC9530_BODY)
    added = sign_request(
        method="post",
        path=request.path,
        query="",
        headers={},
        body=request.body,
        key=rfc_key(),
        keyid=KEYID,
        created=NOW,
        nonce="n-1",
        label="idres",
        authority="registry.example",
    )
    assert set(added) == {"Host", "Content-Digest", "Signature-Input", "Signature"}
    assert added["Host"] == "registry.example"
    assert added["Content-Digest"] == RFC9530_SHA256
    assert added["Signature-Input"] == (
        'idres=("@method" "@authority" "@path" "@query" "content-digest")'
        f';created={NOW};keyid="{KEYID}";alg="ed25519";nonce="n-1"'
    )
    params = parse_signature(added)
    base = signature_base(params, method="POST", path=request.path, query="", headers=added)
    assert base == (
        b'"@method": POST\n'
        b'"@authority": registry.example\n'
        b'"@path": /api/handles/88.100.1/x\n'
        b'"@query": ?\n'
        b'"content-digest": ' + RFC9530_SHA256.encode() + b"\n"
        b'"@signature-params": ' + added["Signature-Input"].removeprefix("idres=").encode()
    )
    assert added["Signature"] == f"idres=:{base64.b64encode(rfc_key().sign(base)).decode()}:"


def test_extra_components_are_covered_and_header_values_trimmed() -> None:
    key = generate_key()
    request = signed(
        key,
        Request(headers={"Content-Type": "  application/json\t"}),
        components=(*DEFAULT_COMPONENTS, "content-type"),
    )
    params = server_checks(request, public_key_der(key))
    base = signature_base(
        params, method="POST", path=request.path, query="", headers=request.headers
    )
    assert b'\n"content-type": application/json\n' in base


def test_idempotency_key_is_covered_automatically() -> None:
    key = generate_key()
    request = signed(key, Request(headers={"Idempotency-Key": "abc-123"}))
    params = server_checks(request, public_key_der(key))
    assert params.components == (*DEFAULT_COMPONENTS, "idempotency-key")
    replayed = dataclasses.replace(
        request, headers={**request.headers, "Idempotency-Key": "abc-124"}
    )
    with pytest.raises(Forbidden, match="signature does not verify"):
        server_checks(replayed, public_key_der(key))


def test_an_uncovered_idempotency_key_is_refused() -> None:
    key = generate_key()
    request = signed(key, Request())
    smuggled = dataclasses.replace(request, headers={**request.headers, "idempotency-KEY": "x"})
    with pytest.raises(Forbidden, match="signature must cover idempotency-key"):
        server_checks(smuggled, public_key_der(key))


def _flip_created(r: Request) -> Request:
    text = r.headers["Signature-Input"].replace(f"created={NOW}", f"created={NOW + 1}")
    return dataclasses.replace(r, headers={**r.headers, "Signature-Input": text})


def _flip_signature(r: Request) -> Request:
    raw = bytearray(base64.b64decode(r.headers["Signature"].split("=", 1)[1].strip(":")))
    raw[10] ^= 1
    value = f"sig1=:{base64.b64encode(bytes(raw)).decode()}:"
    return dataclasses.replace(r, headers={**r.headers, "Signature": value})


TAMPERINGS: dict[str, tuple[Callable[[Request], Request], str]] = {
    "method": (lambda r: dataclasses.replace(r, method="DELETE"), "does not verify"),
    "path": (lambda r: dataclasses.replace(r, path="/api/handles/88.100.1/y"), "does not verify"),
    "query": (lambda r: dataclasses.replace(r, query="overwrite=false"), "does not verify"),
    "query-dropped": (lambda r: dataclasses.replace(r, query=""), "does not verify"),
    "body": (lambda r: dataclasses.replace(r, body=b'{"values": [1]}'), "does not match"),
    "covered-header": (
        lambda r: dataclasses.replace(r, headers={**r.headers, "Content-Type": "text/plain"}),
        "does not verify",
    ),
    "created": (_flip_created, "does not verify"),
    "signature-bytes": (_flip_signature, "does not verify"),
}


@pytest.mark.parametrize("alg", ["ed25519", "p256"])
@pytest.mark.parametrize("what", list(TAMPERINGS))
def test_tampering_is_refused(alg: str, what: str) -> None:
    key = generate_key(alg)
    request = signed(
        key,
        Request(headers={"Content-Type": "application/json"}),
        components=(*DEFAULT_COMPONENTS, "content-type"),
    )
    server_checks(request, public_key_der(key))
    tamper, message = TAMPERINGS[what]
    with pytest.raises(Forbidden, match=message):
        server_checks(tamper(request), public_key_der(key))


def test_a_different_key_does_not_verify() -> None:
    request = signed(generate_key(), Request())
    with pytest.raises(Forbidden, match="signature does not verify"):
        server_checks(request, public_key_der(generate_key()))


@given(
    body=st.binary(max_size=256),
    path=st.from_regex(r"/[A-Za-z0-9._~%/-]{0,40}", fullmatch=True),
    query=st.from_regex(r"[A-Za-z0-9=&%._-]{0,40}", fullmatch=True),
    idem=st.none() | st.from_regex(r"[A-Za-z0-9-]{1,36}", fullmatch=True),
    nonce=st.none() | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
)
@settings(max_examples=50, deadline=None)
def test_round_trip_property(
    body: bytes, path: str, query: str, idem: str | None, nonce: str | None
) -> None:
    key = rfc_key()
    headers = {"Idempotency-Key": idem} if idem is not None else {}
    request = signed(key, Request(path=path, query=query, body=body, headers=headers), nonce=nonce)
    params = server_checks(request, RFC_ED25519_PUBLIC_DER)
    assert params.nonce == nonce
    assert ("idempotency-key" in params.components) == (idem is not None)


# --- Missing, malformed and ambiguous signature headers


@pytest.mark.parametrize("dropped", ["Signature", "Signature-Input"])
def test_missing_signature_headers_ask_for_authentication(dropped: str) -> None:
    request = signed(generate_key(), Request())
    headers = {k: v for k, v in request.headers.items() if k != dropped}
    with pytest.raises(AuthenticationNeeded, match=f"no {dropped} header"):
        parse_signature(headers)


def test_header_names_are_case_insensitive() -> None:
    key = generate_key()
    request = signed(key, Request())
    lowered = dataclasses.replace(
        request, headers={k.upper(): v for k, v in request.headers.items()}
    )
    server_checks(lowered, public_key_der(key))


OK_INPUT = '("@method" "@authority" "@path" "@query" "content-digest");created=1;keyid="k"'


@pytest.mark.parametrize(
    ("signature_input", "message"),
    [
        pytest.param('sig1=("@method" "@path"', "inner list is not closed", id="unclosed-list"),
        pytest.param(
            'sig1="@method";created=1;keyid="k"', "must be an inner list", id="not-a-list"
        ),
        pytest.param('sig1=("@method" @path);created=1;keyid="k"', "expected an item", id="bare-@"),
        pytest.param(
            'sig1=("@method""@path");created=1', "expected a space or '\\)'", id="no-space"
        ),
        pytest.param(
            'sig1=("@method" tok);created=1;keyid="k"', "must be strings", id="token-component"
        ),
        pytest.param(
            'sig1=("@method");created="1";keyid="k"',
            "created must be an integer",
            id="created-string",
        ),
        pytest.param(
            'sig1=("@method");created=?1;keyid="k"', "created must be an integer", id="created-bool"
        ),
        pytest.param(
            'sig1=("@method");created=1;keyid=k', "keyid must be a string", id="keyid-token"
        ),
        pytest.param(
            'sig1=("@method");created=1;keyid="k";expires="x"',
            "expires must be an integer",
            id="expires-string",
        ),
        pytest.param('sig1=("@method");keyid="k"', "has no created parameter", id="no-created"),
        pytest.param('sig1=("@method");created=1', "has no keyid parameter", id="no-keyid"),
        pytest.param(
            'sig1=("@method" "@method");created=1;keyid="k"', "'@method' is repeated", id="repeat"
        ),
        pytest.param(
            'sig1=("Content-Type");created=1;keyid="k"', "must be lowercase", id="uppercase-field"
        ),
        pytest.param(
            'sig1=("content type");created=1;keyid="k"', "not a valid field name", id="bad-field"
        ),
        pytest.param(
            'sig1=("@method";req);created=1;keyid="k"',
            "has parameters \\(req\\)",
            id="component-params",
        ),
        pytest.param(
            'Sig1=("@method");created=1;keyid="k"', "expected a key", id="uppercase-label"
        ),
        pytest.param(
            'sig1=("@method");created=1.5;keyid="k"', "decimals are not supported", id="decimal"
        ),
        pytest.param(
            'sig1=("@method");created=1234567890123456;keyid="k"',
            "more than 15 digits",
            id="long-int",
        ),
        pytest.param('sig1=("@method");created=1;keyid="a\\b"', "may be escaped", id="bad-escape"),
        pytest.param(
            'sig1=("@method");created=1;keyid="k', "string is not closed", id="unclosed-string"
        ),
        pytest.param(
            'sig1=("@method");created=1;keyid="k" x', "expected ','", id="junk-after-member"
        ),
        pytest.param(f"sig1={OK_INPUT},", "trailing comma", id="trailing-comma"),
        pytest.param(
            'sig1=("@méthod");created=1;keyid="k"', "outside printable ASCII", id="non-ascii"
        ),
    ],
)
def test_malformed_signature_input_is_refused(signature_input: str, message: str) -> None:
    headers = {"Signature-Input": signature_input, "Signature": f"sig1=:{SIG_BYTES}:"}
    with pytest.raises(Forbidden, match=message):
        parse_signature(headers, required=())


def test_malformed_signature_input_message_points_at_the_position() -> None:
    headers = {"Signature-Input": 'sig1=("@method" "@path"', "Signature": f"sig1=:{SIG_BYTES}:"}
    with pytest.raises(Forbidden) as info:
        parse_signature(headers, required=())
    assert info.value.message == (
        'malformed Signature-Input \'sig1=("@method" "@path"\': '
        "inner list is not closed with ')' at position 23"
    )


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        pytest.param("sig1=abc", "sig1 must be a byte sequence", id="token"),
        pytest.param('sig1=("x")', "sig1 must be a byte sequence", id="inner-list"),
        pytest.param("sig1=:AAA*:", "not base64", id="bad-base64"),
        pytest.param("sig1=:AAAA", "not closed with ':'", id="unclosed"),
        pytest.param(f"other=:{SIG_BYTES}:", "no label appears in both", id="no-shared-label"),
    ],
)
def test_malformed_signature_is_refused(signature: str, message: str) -> None:
    headers = {"Signature-Input": f"sig1={OK_INPUT}", "Signature": signature}
    with pytest.raises(Forbidden, match=message):
        parse_signature(headers)


@pytest.mark.parametrize(
    ("inputs", "signatures", "label"),
    [
        pytest.param("a=X, b=X", "b=S", "b", id="only-shared-label"),
        pytest.param("a=X, b=X", "b=S, a=S", "a", id="first-in-signature-input"),
        pytest.param("a=X", "a=S, b=S", "a", id="extra-signature"),
    ],
)
def test_first_label_in_both_headers_is_used(inputs: str, signatures: str, label: str) -> None:
    headers = {
        "Signature-Input": inputs.replace("X", OK_INPUT),
        "Signature": signatures.replace("S", f":{SIG_BYTES}:"),
    }
    assert parse_signature(headers).label == label


def test_signature_headers_on_several_lines_are_combined() -> None:
    headers = {
        "Signature-Input": f"a={OK_INPUT}",
        "signature-input": f"b={OK_INPUT}",
        "Signature": f"b=:{SIG_BYTES}:",
    }
    assert parse_signature(headers).label == "b"


@pytest.mark.parametrize(
    ("components", "missing"),
    [
        pytest.param(
            ("@method", "@authority", "@path", "@query"), "content-digest", id="no-digest"
        ),
        pytest.param(("content-digest",), "@method, @authority, @path, @query", id="only-digest"),
        pytest.param(
            ("@method", "@path", "@query", "content-digest"), "@authority", id="no-authority"
        ),
    ],
)
def test_signature_must_cover_the_required_components(
    components: tuple[str, ...], missing: str
) -> None:
    request = signed(generate_key(), Request(), components=components)
    with pytest.raises(Forbidden, match=f"signature must cover {missing}$"):
        parse_signature(request.headers)


@pytest.mark.parametrize(
    ("url", "authority"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000"),
        ("https://Registry.Example/", "registry.example"),  # §2.2.3: lowercased
        ("https://registry.example:443/api", "registry.example"),  # default port left out
        ("http://registry.example:80", "registry.example"),
        ("https://registry.example:8443", "registry.example:8443"),
        ("http://[::1]:8000", "[::1]:8000"),
    ],
)
def test_authority_of_a_url(url: str, authority: str) -> None:
    assert authority_of(url) == authority


def test_a_signature_made_for_another_node_is_refused_before_any_key_is_read() -> None:
    key = generate_key()
    request = signed(key, Request(), authority="node-a.example")
    params = parse_signature(request.headers)
    check_authority(params, request.headers, {"node-a.example", "network.example"})
    # the same request replayed at node B, Host and all: the signature still verifies,
    # but it names node A, so node B refuses it
    with pytest.raises(Forbidden, match=r"made for 'node-a\.example', not for this node"):
        check_authority(params, request.headers, {"node-b.example", "network.example"})
    # and a Host rewritten to node B's name breaks the signature
    moved = {**request.headers, "Host": "node-b.example"}
    with pytest.raises(Forbidden, match="does not verify"):
        verify(
            params,
            signature_base(
                params, method="POST", path=request.path, query=request.query, headers=moved
            ),
            public_key_der(key),
        )


# --- Signature base refusals


def _params(*components: str) -> SignatureParams:
    return SignatureParams(
        label="sig1",
        components=components,
        created=NOW,
        expires=None,
        keyid=KEYID,
        alg=None,
        nonce=None,
        signature=bytes(64),
        params_text="()",
    )


@pytest.mark.parametrize(
    ("components", "headers", "message"),
    [
        pytest.param(
            ("content-type",),
            {},
            "header 'content-type', which the request lacks",
            id="missing-header",
        ),
        pytest.param(("@authority",), {}, "no Host header", id="authority-without-host"),
        pytest.param(("@target-uri",), {}, "@target-uri is not supported", id="target-uri"),
        pytest.param(("@status",), {}, "@status is not supported", id="status"),
        pytest.param(
            ("x-a",), {"X-A": "caf\u00e9"}, "x-a holds a newline or non-ASCII", id="non-ascii"
        ),
        pytest.param(("x-a",), {"X-A": "a\nb"}, "x-a holds a newline", id="newline"),
    ],
)
def test_signature_base_refusals(
    components: tuple[str, ...], headers: dict[str, str], message: str
) -> None:
    with pytest.raises(Forbidden, match=message):
        signature_base(_params(*components), method="POST", path="/", query="", headers=headers)


@pytest.mark.parametrize(
    ("component", "request_parts", "line"),
    [
        pytest.param("@method", {"method": "post"}, b'"@method": POST', id="method-uppercased"),
        pytest.param("@path", {"path": ""}, b'"@path": /', id="empty-path"),
        pytest.param("@query", {"query": ""}, b'"@query": ?', id="no-query"),
        pytest.param("@query", {"query": "a=1&b"}, b'"@query": ?a=1&b', id="query"),
        pytest.param(
            "@authority",
            {"headers": {"HOST": "Example.COM"}},
            b'"@authority": example.com',
            id="authority",
        ),
        pytest.param(
            "x-a", {"headers": {"X-A": " 1 ", "x-a": "2"}}, b'"x-a": 1, 2', id="field-lines-joined"
        ),
        pytest.param("x-a", {"headers": {"X-A": "a\r\n  b"}}, b'"x-a": a b', id="obs-fold"),
    ],
)
def test_signature_base_component_values(
    component: str, request_parts: dict[str, object], line: bytes
) -> None:
    parts: dict[str, object] = {"method": "POST", "path": "/p", "query": "", "headers": {}}
    parts.update(request_parts)
    base = signature_base(_params(component), **parts)  # type: ignore[arg-type]
    assert base == line + b'\n"@signature-params": ()'


# --- verify: algorithms and encodings


@pytest.mark.parametrize(
    ("signer", "verifier", "claimed", "message"),
    [
        pytest.param(
            "p256", "ed25519", None, "'ecdsa-p256-sha256' does not match the key \\(ed25519\\)"
        ),
        pytest.param(
            "ed25519", "p256", None, "'ed25519' does not match the key \\(ecdsa-p256-sha256\\)"
        ),
        pytest.param("ed25519", "ed25519", "hmac-sha256", "'hmac-sha256' does not match the key"),
    ],
)
def test_alg_must_match_the_key_type(
    signer: str, verifier: str, claimed: str | None, message: str
) -> None:
    key = generate_key(signer)
    request = signed(key, Request())
    if claimed is not None:
        text = request.headers["Signature-Input"].replace('alg="ed25519"', f'alg="{claimed}"')
        request = dataclasses.replace(request, headers={**request.headers, "Signature-Input": text})
    verifying_key = key if verifier == signer else generate_key(verifier)
    with pytest.raises(Forbidden, match=f"signature alg {message}"):
        server_checks(request, public_key_der(verifying_key))


def test_ecdsa_signature_in_der_form_is_refused() -> None:
    key = generate_key("p256")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    request = signed(key, Request())
    params = parse_signature(request.headers)
    base = signature_base(
        params,
        method=request.method,
        path=request.path,
        query=request.query,
        headers=request.headers,
    )
    verify(params, base, public_key_der(key))
    der = key.sign(base, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(Forbidden, match=f"must be 64 bytes r\\|\\|s .*not {len(der)}"):
        verify(dataclasses.replace(params, signature=der), base, public_key_der(key))


_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_RSA_DER = _RSA_KEY.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
_RSA_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64)


@pytest.mark.parametrize(
    ("alg", "sign"),
    [
        pytest.param(
            "rsa-v1_5-sha256",
            lambda base: _RSA_KEY.sign(base, padding.PKCS1v15(), hashes.SHA256()),
            id="v1_5",
        ),
        pytest.param(
            None,
            lambda base: _RSA_KEY.sign(base, padding.PKCS1v15(), hashes.SHA256()),
            id="v1_5-without-alg",
        ),
        pytest.param(
            "rsa-pss-sha512",
            lambda base: _RSA_KEY.sign(base, _RSA_PSS, hashes.SHA512()),
            id="pss",
        ),
    ],
)
def test_an_rsa_signed_request_verifies_with_the_rsa_algorithms(
    alg: str | None, sign: Callable[[bytes], bytes]
) -> None:
    base = b'"@method": PUT\n"@signature-params": ()'
    params = dataclasses.replace(_params("@method"), alg=alg, signature=sign(base))
    verify(params, base, _RSA_DER)
    with pytest.raises(Forbidden, match="signature does not verify"):
        verify(params, base + b"!", _RSA_DER)


@pytest.mark.parametrize("alg", ["ed25519", "ecdsa-p256-sha256", "rsa-pss-sha256"])
def test_an_rsa_signature_under_another_alg_is_refused(alg: str) -> None:
    base = b'"@method": PUT\n"@signature-params": ()'
    signature = _RSA_KEY.sign(base, padding.PKCS1v15(), hashes.SHA256())
    params = dataclasses.replace(_params("@method"), alg=alg, signature=signature)
    with pytest.raises(Forbidden, match=f"signature alg '{alg}' does not match the key"):
        verify(params, base, _RSA_DER)


@pytest.mark.parametrize(
    ("public_der", "message"),
    [
        pytest.param(b"not a key", "not a usable DER", id="garbage"),
        pytest.param(
            ec.generate_private_key(ec.SECP384R1())
            .public_key()
            .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
            "unsupported key type",
            id="p384",
        ),
    ],
)
def test_unusable_public_keys_are_refused(public_der: bytes, message: str) -> None:
    with pytest.raises(Forbidden, match=message):
        verify(_params("@method"), b"base", public_der)


# --- Freshness


@pytest.mark.parametrize(
    ("created", "expires", "message"),
    [
        pytest.param(NOW, None, None, id="now"),
        pytest.param(NOW - 300, None, None, id="oldest-allowed"),
        pytest.param(
            NOW - 301, None, f"created at {NOW - 301} is 301s old; the limit is 300s", id="too-old"
        ),
        pytest.param(NOW + 30, None, None, id="furthest-future-allowed"),
        pytest.param(
            NOW + 31, None, "is 31s in the future; the allowed clock skew is 30s", id="too-new"
        ),
        pytest.param(NOW, NOW, None, id="expires-now"),
        pytest.param(NOW - 10, NOW - 1, f"expired at {NOW - 1}, 1s ago", id="expired"),
    ],
)
def test_freshness_window(created: int, expires: int | None, message: str | None) -> None:
    params = dataclasses.replace(_params(), created=created, expires=expires)
    if message is None:
        check_freshness(params, now=NOW)
    else:
        with pytest.raises(Forbidden, match=message):
            check_freshness(params, now=NOW)


def test_freshness_limits_are_configurable() -> None:
    params = dataclasses.replace(_params(), created=NOW - 60)
    check_freshness(params, now=NOW, max_age=60)
    with pytest.raises(Forbidden, match="is 60s old; the limit is 59s"):
        check_freshness(params, now=NOW, max_age=59)


def test_expires_parsed_from_signature_input_is_enforced() -> None:
    headers = {
        "Signature-Input": f"sig1={OK_INPUT};expires=5",
        "Signature": f"sig1=:{SIG_BYTES}:",
    }
    params = parse_signature(headers)
    assert (params.created, params.expires) == (1, 5)
    with pytest.raises(Forbidden, match="expired at 5"):
        check_freshness(params, now=6, max_age=10)


# --- Key ids


def test_key_id_round_trip() -> None:
    assert key_id("0.NA/88.100.1", 300) == KEYID
    assert parse_key_id(KEYID) == ("0.NA/88.100.1", 300)
    assert parse_key_id("1:88.100.1/a:b") == ("88.100.1/a:b", 1)


@pytest.mark.parametrize(
    "keyid",
    ["", "300", ":0.NA/1", "300:", "x:0.NA/1", "-1:h", "0:h", "01:h", "300:a b", "2147483648:h"],
)
def test_malformed_key_id_is_refused(keyid: str) -> None:
    with pytest.raises(Forbidden, match="is not index:handle"):
        parse_key_id(keyid)


@pytest.mark.parametrize(("handle", "index"), [("h", 0), ("h", 2**31), ("", 1), ("a b", 1)])
def test_key_id_refuses_bad_parts(handle: str, index: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        key_id(handle, index)


# --- Keys


@pytest.mark.parametrize("alg", ["ed25519", "p256"])
def test_private_key_pem_round_trip(alg: str) -> None:
    key = generate_key(alg)
    pem = private_key_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert public_key_der(load_private_key(pem)) == public_key_der(key)


def test_generate_key_refuses_unknown_algorithms() -> None:
    with pytest.raises(ValueError, match="unknown key algorithm 'rsa'"):
        generate_key("rsa")


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        pytest.param(b"garbage", "not a PEM private key", id="garbage"),
        pytest.param(
            ed25519.Ed25519PrivateKey.generate().private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"pw")
            ),
            "private key is encrypted",
            id="encrypted",
        ),
        pytest.param(
            ec.generate_private_key(ec.SECP384R1()).private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
            ),
            "unsupported private key \\(EC secp384r1\\)",
            id="p384",
        ),
    ],
)
def test_load_private_key_refusals(pem: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_private_key(pem)


def test_signing_refuses_a_key_of_another_kind() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ValueError, match="unsupported signing key"):
        signed(rsa_key, Request())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"label": "Sig"}, "not a structured-field key", id="label"),
        pytest.param({"components": ("@method", "Host")}, "must be lowercase", id="uppercase"),
        pytest.param({"components": ("@method", "@method")}, "repeat", id="repeat"),
        pytest.param({"components": ("x-absent",)}, "x-absent", id="missing-header"),
        pytest.param({"nonce": "caf\u00e9"}, "printable ASCII", id="nonce"),
        pytest.param({"keyid": "k\n"}, "printable ASCII", id="keyid"),
        pytest.param(
            {"headers": {"content-digest": "sha-256=:AAAA:"}},
            "already carry content-digest",
            id="own-header",
        ),
    ],
)
def test_signing_refuses_caller_mistakes(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "method": "POST",
        "path": "/p",
        "query": "",
        "headers": {},
        "body": b"",
        "key": rfc_key(),
        "keyid": KEYID,
        "created": NOW,
    }
    with pytest.raises(ValueError, match=message):
        sign_request(**{**arguments, **kwargs})  # type: ignore[arg-type]
