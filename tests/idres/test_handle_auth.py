"""Handle.Net's other two ways to authenticate a REST write, against ``idres serve``:
pyhandle's RESTHandleClient with a TLS client certificate (through the node's edge),
and the ``Authorization: Handle`` session scheme, spoken with requests as the
Handle.Net documentation describes it (no client on PyPI or npm speaks it)."""

from __future__ import annotations

import base64
import datetime
import secrets
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from pyhandle.client.resthandleclient import RESTHandleClient
from pyhandle.handleexceptions import HandleAuthenticationError

from tests.idres.test_handle_clients import (
    OWNER,
    Served,
    certificates,
    network_address,
    serve,
    signed,
)

pytestmark = [pytest.mark.postgres]

ClientKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
URL_VALUE = [{"index": 1, "type": "URL", "data": "https://example.com/a"}]


def spki(key: ClientKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def give_prefix_keys(node: Served, admin: ClientKey, other: ClientKey | None = None) -> None:
    """``0.NA/88.100.1``: administered by its HS_PUBKEY at 300 (``admin``); ``other``,
    when given, is an HS_PUBKEY at 301 that no HS_ADMIN names."""
    values: list[dict[str, Any]] = [
        {
            "index": 100,
            "type": "HS_ADMIN",
            "data": {
                "format": "admin",
                "value": {"handle": "0.NA/88.100.1", "index": 300, "permissions": "111111111111"},
            },
        },
        {"index": 300, "type": "HS_PUBKEY", "data": {"format": "key", "value": spki(admin)}},
    ]
    if other is not None:
        values.append(
            {"index": 301, "type": "HS_PUBKEY", "data": {"format": "key", "value": spki(other)}}
        )
    reply = signed(node, "PUT", "/api/handles/0.NA/88.100.1", {"values": values})
    assert reply.status_code in (200, 201), reply.text


def client_certificate(
    folder: Path, key: ClientKey, *, uid: str | None = None, cn: str = "someone"
) -> tuple[str, str]:
    """A self-signed client certificate naming ``uid`` (or only ``cn``): (cert, key) paths."""
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if uid is not None:
        attrs.append(x509.NameAttribute(NameOID.USER_ID, uid))
    name = x509.Name(attrs)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    )
    tag = secrets.token_hex(4)
    cert_path, key_path = folder / f"client-{tag}.pem", folder / f"client-{tag}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def der_of(cert_path: str) -> str:
    """A certificate file's DER, base64: what the edge would pass to the workers."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def tls_node(db_url: str, tmp_path: Path, front: str = "edge") -> Any:
    ca, cert, key = certificates(tmp_path, "127.0.0.1")
    return serve(
        db_url,
        tmp_path,
        "--front",
        front,
        "--workers",
        "2",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        verify=str(ca),
    )


def cert_put(node: Served, cert: tuple[str, str] | None, path: str, **kw: Any) -> Any:
    headers = {"Authorization": 'Handle clientCert="true"', **kw.pop("headers", {})}
    reply = requests.put(
        node.url + path,
        json={"values": URL_VALUE},
        headers=headers,
        cert=cert,
        verify=node.verify,
        timeout=30,
        **kw,
    )
    return reply.status_code, reply.json()


# --- TLS client certificates ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["p256", "ed25519"])
def test_pyhandle_writes_with_a_client_certificate_through_the_edge(
    db_url: str, tmp_path: Path, kind: str
) -> None:
    key: ClientKey = (
        ec.generate_private_key(ec.SECP256R1())
        if kind == "p256"
        else ed25519.Ed25519PrivateKey.generate()
    )
    with tls_node(db_url, tmp_path) as node:
        give_prefix_keys(node, key)
        # the identity in UID for one key type, in CN (no UID) for the other
        cert, private = client_certificate(
            tmp_path, key, **({"uid": OWNER} if kind == "p256" else {"cn": OWNER})
        )
        client = RESTHandleClient(
            node.url,
            certificate_only=cert,
            private_key=private,
            HTTPS_verify=node.verify,
            handleowner=OWNER,
        )
        handle = f"88.100.1/CERT-{kind}"
        assert client.register_handle(handle, "https://example.com/one", EMAIL="a@x.org") == handle
        assert client.modify_handle_value(handle, URL="https://example.com/two") == handle
        assert client.get_value_from_handle(handle, "URL") == "https://example.com/two"
        assert client.delete_handle_value(handle, "EMAIL") == handle
        history = signed(node, "GET", f"/api/handles/{handle}/history").json()["history"]
        assert [e["actor"] for e in history] == [OWNER, OWNER, OWNER]
        assert client.delete_handle(handle) == handle
        assert client.retrieve_handle_record_json(handle) is None


def test_client_certificates_that_do_not_check_are_refused_with_the_reason(
    db_url: str, tmp_path: Path
) -> None:
    admin = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    with tls_node(db_url, tmp_path) as node:
        give_prefix_keys(node, admin, other)
        # a certificate naming 300 but made for another key
        stolen_name = client_certificate(tmp_path, other, uid=OWNER)
        status, body = cert_put(node, stolen_name, "/api/handles/88.100.1/C1")
        assert (status, body["responseCode"]) == (401, 403)
        assert body["message"] == (
            f"the TLS client certificate's public key is not the HS_PUBKEY at {OWNER}"
        )
        # pyhandle hears the refusal as its own error
        client = RESTHandleClient(
            node.url,
            certificate_only=stolen_name[0],
            private_key=stolen_name[1],
            HTTPS_verify=node.verify,
            handleowner=OWNER,
        )
        with pytest.raises(HandleAuthenticationError):
            client.register_handle("88.100.1/C1", "https://example.com/x")
        # the right key for 301, which no HS_ADMIN names: authenticated, not allowed
        status, body = cert_put(
            node,
            client_certificate(tmp_path, other, uid="301:0.NA/88.100.1"),
            "/api/handles/88.100.1/C2",
        )
        assert (status, body["responseCode"]) == (403, 400)
        assert "key 301:0.NA/88.100.1 may not create 88.100.1/C2" in body["message"]
        # an identity that is no index:handle, and one whose handle holds no key
        status, body = cert_put(
            node, client_certificate(tmp_path, admin, cn="alice"), "/api/handles/88.100.1/C3"
        )
        assert (status, body["responseCode"]) == (401, 403)
        assert "CN is 'alice'; it must be index:handle" in body["message"]
        status, body = cert_put(
            node,
            client_certificate(tmp_path, admin, uid="300:0.NA/88.100.9"),
            "/api/handles/88.100.1/C3",
        )
        assert (
            "300:0.NA/88.100.9 (from the TLS client certificate) names no HS_PUBKEY"
            in body["message"]
        )
        # asked for, but none sent
        status, body = cert_put(node, None, "/api/handles/88.100.1/C4")
        assert (status, body["responseCode"]) == (401, 402)
        assert "no client certificate came with the TLS handshake" in body["message"]
        # a client's own Idres-Client-Cert is dropped by the edge
        forged = der_of(stolen_name[0])
        status, body = cert_put(
            node, None, "/api/handles/88.100.1/C5", headers={"Idres-Client-Cert": forged}
        )
        assert (status, body["responseCode"]) == (401, 402)
        for name in ("C1", "C2", "C3", "C4", "C5"):
            assert (
                requests.get(
                    node.url + f"/api/handles/88.100.1/{name}", verify=node.verify, timeout=30
                ).status_code
                == 404
            )


@pytest.mark.parametrize("front", ["edge", "python"])
def test_a_client_certificate_needs_tls_and_the_edge(
    db_url: str, tmp_path: Path, front: str
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = client_certificate(tmp_path, key, uid=OWNER)
    with serve(db_url, tmp_path, "--front", front) as node:
        give_prefix_keys(node, key)
        # plain HTTP: no certificate can come, and a header that claims one is not believed
        forged = der_of(cert[0])
        status, body = cert_put(
            node, None, "/api/handles/88.100.1/P1", headers={"Idres-Client-Cert": forged}
        )
        assert (status, body["responseCode"]) == (401, 402)
        assert 'clientCert="true" needs https://' in body["message"]
    if front == "python":  # TLS without the edge: nobody asks for the certificate
        (tmp_path / "py").mkdir()
        with tls_node(db_url, tmp_path / "py", front="python") as node:
            give_prefix_keys(node, key)
            status, body = cert_put(node, cert, "/api/handles/88.100.1/P2")
            assert (status, body["responseCode"]) == (401, 402)
            assert "--front python, cannot take one" in body["message"]


# --- Authorization: Handle sessions ----------------------------------------------------


def sign_nonce(key: ClientKey, nonce: str, cnonce: bytes) -> tuple[str, str]:
    """(alg, base64 signature) over the server's nonce bytes then the client's cnonce."""
    data = base64.b64decode(nonce) + cnonce
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "Ed25519", base64.b64encode(key.sign(data)).decode()
    return "SHA256", base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


def session_header(
    session_id: str, key: ClientKey | None = None, nonce: str = "", who: str = OWNER
) -> str:
    if key is None:
        return f'Handle sessionId="{session_id}"'
    cnonce = secrets.token_bytes(16)
    alg, signature = sign_nonce(key, nonce, cnonce)
    return (
        f'Handle sessionId="{session_id}", id="{who.replace(":", "%3A", 1)}", '
        f'type="HS_PUBKEY", cnonce="{base64.b64encode(cnonce).decode()}", '
        f'alg="{alg}", signature="{signature}"'
    )


def forged(session_id: str, **params: str) -> str:
    """A session proof with ``params`` replacing its well-formed defaults."""
    sent = {"id": "300%3A0.NA/88.100.1", "type": "HS_PUBKEY", "cnonce": "AA==", "alg": "SHA256"}
    sent.update(params, signature="AA==")
    return f'Handle sessionId="{session_id}", ' + ", ".join(f'{k}="{v}"' for k, v in sent.items())


def call(node: Served, method: str, path: str, auth: str | None = None, **kw: Any) -> Any:
    headers = {"Authorization": auth} if auth is not None else {}
    reply = requests.request(
        method, node.url + path, headers=headers, verify=node.verify, timeout=30, **kw
    )
    return reply.status_code, reply.json()


@pytest.mark.parametrize("kind", ["p256", "ed25519"])
def test_a_session_signed_with_an_hs_pubkey_writes_across_workers(
    db_url: str, tmp_path: Path, kind: str
) -> None:
    key: ClientKey = (
        ec.generate_private_key(ec.SECP256R1())
        if kind == "p256"
        else ed25519.Ed25519PrivateKey.generate()
    )
    with tls_node(db_url, tmp_path) as node:
        give_prefix_keys(node, key)
        status, opened = call(node, "POST", "/api/sessions")
        assert status == 201
        assert opened["authenticated"] is False
        sid, nonce = opened["sessionId"], opened["nonce"]
        status, state = call(node, "GET", "/api/sessions/this", session_header(sid))
        assert (status, state["authenticated"], state["nonce"]) == (200, False, nonce)
        # a write before the signature: the session is not anyone yet
        status, body = call(
            node, "PUT", "/api/handles/88.100.1/S", session_header(sid), json={"values": URL_VALUE}
        )
        assert (status, body["responseCode"]) == (401, 402)
        assert "is not authenticated yet" in body["message"]
        proof = session_header(sid, key, nonce)
        status, state = call(node, "POST", "/api/sessions/this", proof)
        assert (status, state["authenticated"], state["id"]) == (200, True, OWNER)
        # the same signature again: its nonce is used up
        status, body = call(node, "GET", "/api/sessions/this", proof)
        assert (status, body["responseCode"]) == (401, 403)
        assert "nonce is used up" in body["message"]
        # many requests, any of the node's workers: the session is in PostgreSQL
        for i in range(6):
            status, body = call(
                node,
                "PUT",
                f"/api/handles/88.100.1/S{i}",
                session_header(sid),
                json={"values": URL_VALUE},
            )
            assert (status, body["responseCode"]) == (201, 1), body
        history = signed(node, "GET", "/api/handles/88.100.1/S0/history").json()["history"]
        assert [e["actor"] for e in history] == [OWNER]
        status, body = call(node, "DELETE", "/api/handles/88.100.1/S0", session_header(sid))
        assert status == 200
        status, body = call(node, "DELETE", "/api/sessions/this", session_header(sid))
        assert (status, body["ended"]) == (200, True)
        status, body = call(node, "DELETE", "/api/handles/88.100.1/S1", session_header(sid))
        assert (status, body["responseCode"]) == (401, 403)
        assert "is unknown here" in body["message"]
        assert sid not in body["message"]  # never echo a bearer token whole


def test_session_mistakes_are_refused_with_what_and_where(db_url: str, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    with serve(db_url, tmp_path) as node:  # loopback HTTP: sessions are allowed here
        give_prefix_keys(node, key, other)  # other: an HS_PUBKEY at 301 no HS_ADMIN names
        # authenticated as 301, refused as a signed write by 301 would be
        _, second = call(node, "POST", "/api/sessions")
        as_301 = session_header(second["sessionId"], other, second["nonce"], "301:0.NA/88.100.1")
        status, body = call(
            node, "PUT", "/api/handles/88.100.1/M", as_301, json={"values": URL_VALUE}
        )
        assert (status, body["responseCode"]) == (403, 400)
        assert "key 301:0.NA/88.100.1 may not create 88.100.1/M" in body["message"]
        _, opened = call(node, "POST", "/api/sessions")
        sid, nonce = opened["sessionId"], opened["nonce"]
        cases = [
            ("Handle", "has no parameters"),
            ('Handle sessionId="x" id=', "malformed at character 15"),
            ('Handle sessionId="a", sessionId="b"', "parameter sessionId is given twice"),
            ('Handle sessionId="a" cnonce="x"', "a comma must separate them"),
            ('Handle version="1"', 'needs clientCert="true" or sessionId'),
            ('Handle clientCert="maybe"', 'must be "true" or "false"'),
            (
                f'Handle sessionId="{sid}", id="300%3A0.NA/88.100.1"',
                "missing type, cnonce, alg, signature",
            ),
            (
                forged(sid, id="0.NA/88.100.1"),
                "parameter id must be index:handle",
            ),
            (
                forged(sid, type="HS_SECKEY"),
                "only HS_PUBKEY",
            ),
            (
                forged(sid, cnonce="!!"),
                "parameter cnonce must be base64",
            ),
            (
                forged(sid, alg="Ed25519"),
                "alg 'Ed25519' does not fit the HS_PUBKEY at 300:0.NA/88.100.1 (p256)",
            ),
            (session_header(sid, other, nonce), "signature does not verify with the HS_PUBKEY"),
            (session_header("not-a-session", key, nonce), "is unknown here"),
        ]
        for auth, says in cases:
            status, body = call(
                node, "PUT", "/api/handles/88.100.1/M", auth, json={"values": URL_VALUE}
            )
            assert status == 401, (auth, body)
            assert body["responseCode"] in (402, 403)
            assert says in body["message"], (auth, body["message"])
        # none of that used the nonce up: the right signature still authenticates
        status, body = call(
            node,
            "PUT",
            "/api/handles/88.100.1/M",
            session_header(sid, key, nonce),
            json={"values": URL_VALUE},
        )
        assert (status, body["responseCode"]) == (201, 1)
        status, body = call(node, "DELETE", "/api/sessions/this")
        assert (status, body["responseCode"]) == (401, 402)
        # a new HS_PUBKEY at 300 ends what the old one authenticated
        give_prefix_keys(node, other)
        status, body = call(node, "DELETE", "/api/handles/88.100.1/M", session_header(sid))
        assert (status, body["responseCode"]) == (401, 403)
        assert "was changed or removed, which ended it" in body["message"]
        status, body = call(node, "GET", "/api/sessions/this", session_header(sid))
        assert "is unknown here" in body["message"]
        assert requests.get(node.url + "/api/handles/88.100.1/M", timeout=30).status_code == 200


def test_a_session_id_never_crosses_a_network_in_clear_text(db_url: str, tmp_path: Path) -> None:
    address = network_address()
    with serve(db_url, tmp_path, "--host", address) as node:
        status, body = call(node, "POST", "/api/sessions")
        assert (status, body["responseCode"]) == (401, 402)
        assert "accepted only over https or from this machine" in body["message"]
        status, body = call(
            node,
            "PUT",
            "/api/handles/88.100.1/N",
            'Handle sessionId="abc"',
            json={"values": URL_VALUE},
        )
        assert (status, body["responseCode"]) == (401, 402)
