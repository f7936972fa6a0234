"""Existing Handle.Net REST clients against ``idres serve``: pyhandle's RESTHandleClient
writes with an HS_SECKEY secret (Authorization: Basic) and reads, unmodified, over
loopback HTTP and over HTTPS (--tls-cert) across a network address."""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhandle.client.resthandleclient import RESTHandleClient
from pyhandle.handleexceptions import HandleAuthenticationError

from registry import httpsig

pytestmark = [pytest.mark.postgres]

RUN = [sys.executable, "-m", "idres"]
ADMIN_ID = "300:0.NA/node.admin"
OWNER = "300:0.NA/88.100.1"
SECRET = "pyhandle s3cret: with colons"


@dataclass
class Served:
    url: str
    admin: httpsig.PrivateKey
    verify: bool | str  # what requests and pyhandle check the node's certificate with
    proc: subprocess.Popen[str]


@contextlib.contextmanager
def serve(db_url: str, tmp_path: Path, *extra: str, verify: bool | str = True) -> Iterator[Served]:
    """``idres serve`` on a free loopback port with its own admin key, until the test ends."""
    admin = tmp_path / "admin.pem"
    subprocess.run([*RUN, "keygen", "--out", str(admin)], check=True, capture_output=True)
    proc = subprocess.Popen(
        [*RUN, "serve", "--port", "0", "--prefix", "88.100", "--admin-key", str(admin), *extra],
        env={**os.environ, "DATABASE_URL": db_url, "IDRES_DATA_DIR": str(tmp_path / "d")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        served = re.search(r"serving (https?://\S+) ", line)
        assert served is not None, (line, proc.stderr.read() if proc.stderr else "")
        key = httpsig.load_private_key(admin.read_bytes())
        ready(served.group(1), verify)
        yield Served(url=served.group(1), admin=key, verify=verify, proc=proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def ready(url: str, verify: bool | str) -> None:
    """Wait out the node's start (its first answers may shed load, 503) on this busy
    machine: the clients under test do not retry."""
    for _ in range(100):
        if requests.get(url + "/healthz", verify=verify, timeout=30).status_code == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered /healthz")


def signed(
    node: Served,
    method: str,
    path: str,
    body: Any = None,
    *,
    url: str | None = None,
    authority: str | None = None,
    headers: dict[str, str] | None = None,
    allow_redirects: bool = False,
) -> requests.Response:
    """A request signed with the node admin's key, sent with requests (again, signed
    anew, while the node sheds load: 503)."""
    for _ in range(10):
        reply = _signed_once(node, method, path, body, url, authority, headers, allow_redirects)
        if reply.status_code != 503:
            return reply
        time.sleep(1)
    return reply


def _signed_once(
    node: Served,
    method: str,
    path: str,
    body: Any,
    url: str | None,
    authority: str | None,
    headers: dict[str, str] | None,
    allow_redirects: bool,
) -> requests.Response:
    data = b"" if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    base = url or node.url
    sent.update(
        httpsig.sign_request(
            method=method,
            path=path,
            query="",
            headers=sent,
            body=data,
            key=node.admin,
            keyid=ADMIN_ID,
            created=int(time.time()),
            nonce=uuid.uuid4().hex,
            authority=authority or httpsig.authority_of(base),
        )
    )
    return requests.request(
        method,
        base + path,
        data=data,
        headers=sent,
        verify=node.verify,
        allow_redirects=allow_redirects,
        timeout=30,
    )


def give_prefix_a_secret(node: Served) -> None:
    """``0.NA/88.100.1``: administered by its own HS_SECKEY at 300 (admin read only)."""
    values = [
        {
            "index": 100,
            "type": "HS_ADMIN",
            "data": {
                "format": "admin",
                "value": {"handle": "0.NA/88.100.1", "index": 300, "permissions": "111111111111"},
            },
        },
        {
            "index": 300,
            "type": "HS_SECKEY",
            "data": {"format": "string", "value": SECRET},
            "permissions": "1100",
        },
    ]
    reply = signed(node, "PUT", "/api/handles/0.NA/88.100.1", {"values": values})
    assert reply.status_code == 201, reply.text


def pyhandle_client(node: Served, password: str = SECRET) -> RESTHandleClient:
    return RESTHandleClient.instantiate_with_username_and_password(
        node.url, OWNER, password, HTTPS_verify=node.verify, handleowner=OWNER
    )


def pyhandle_creates_modifies_and_deletes(node: Served) -> None:
    give_prefix_a_secret(node)
    client = pyhandle_client(node)  # its check reads 0.NA/88.100.1: the secret stays hidden
    owner = client.retrieve_handle_record_json("0.NA/88.100.1")
    assert owner is not None
    assert [v["type"] for v in owner["values"]] == ["HS_ADMIN"]
    handle = "88.100.1/PYHANDLE-1"
    assert client.retrieve_handle_record_json(handle) is None
    assert (
        client.register_handle(handle, "https://example.com/one", EMAIL="a@example.com") == handle
    )
    record = client.retrieve_handle_record(handle)
    assert record is not None
    assert (record["URL"], record["EMAIL"]) == ("https://example.com/one", "a@example.com")
    assert client.modify_handle_value(handle, URL="https://example.com/two", NOTE="added") == handle
    assert client.get_value_from_handle(handle, "URL") == "https://example.com/two"
    assert client.get_value_from_handle(handle, "NOTE") == "added"
    assert client.delete_handle_value(handle, "EMAIL") == handle
    record = client.retrieve_handle_record(handle)
    assert record is not None
    assert "EMAIL" not in record
    assert record["NOTE"] == "added"
    # every version was written as the secret key's owner
    history = requests.get(
        node.url + f"/api/handles/{handle}/history",
        auth=("300%3A0.NA/88.100.1", SECRET),
        verify=node.verify,
        timeout=30,
    ).json()["history"]
    assert [e["actor"] for e in history] == [OWNER, OWNER, OWNER]
    assert [[c["change"] for c in e["changes"]] for e in history][1:] == [
        ["modified", "added"],
        ["removed"],
    ]
    assert client.delete_handle(handle) == handle
    assert client.retrieve_handle_record_json(handle) is None

    # a wrong secret: pyhandle's own error, the node's reason, nothing written
    wrong = pyhandle_client(node, "not the secret")
    with pytest.raises(HandleAuthenticationError):
        wrong.register_handle("88.100.1/PYHANDLE-2", "https://example.com/x")
    sent = base64.b64encode(b"300%3A0.NA/88.100.1:not the secret").decode()
    reply = requests.delete(
        node.url + "/api/handles/88.100.1/PYHANDLE-2",
        headers={"Authorization": "Basic " + sent},
        verify=node.verify,
        timeout=30,
    )
    assert (reply.status_code, reply.json()["responseCode"]) == (401, 403)
    assert reply.json()["message"] == f"wrong secret key for {OWNER}"
    assert client.retrieve_handle_record_json("88.100.1/PYHANDLE-2") is None


@pytest.mark.parametrize("front", ["edge", "python"])
def test_pyhandle_writes_with_a_secret_key_over_loopback_http(
    db_url: str, tmp_path: Path, front: str
) -> None:
    with serve(db_url, tmp_path, "--allow-seckey", "--front", front) as node:
        assert node.url.startswith("http://127.0.0.1:")
        pyhandle_creates_modifies_and_deletes(node)


def test_secret_keys_are_refused_unless_the_operator_allows_them(
    db_url: str, tmp_path: Path
) -> None:
    with serve(db_url, tmp_path) as node:
        give_prefix_a_secret(node)
        client = pyhandle_client(node)
        with pytest.raises(HandleAuthenticationError):
            client.register_handle("88.100.1/OFF", "https://example.com/off")
        reply = requests.put(
            node.url + "/api/handles/88.100.1/OFF",
            json={"values": [{"index": 1, "type": "URL", "data": "https://example.com/off"}]},
            auth=("300%3A0.NA/88.100.1", SECRET),
            timeout=30,
        )
        assert (reply.status_code, reply.json()["responseCode"]) == (401, 402)
        assert "idres serve --allow-seckey" in reply.json()["message"]


# --- HTTPS -------------------------------------------------------------------------


def network_address() -> str:
    """An address of this machine that is not loopback (the route out; nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1 (RFC 5737): any routed address
        except OSError:
            pytest.skip("no network interface but loopback")
        address = str(probe.getsockname()[0])
    if ipaddress.ip_address(address).is_loopback:
        pytest.skip("no network interface but loopback")
    return address


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def certificates(folder: Path, address: str) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate it signs for ``address``: (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("idres test CA"))
        .issuer_name(_name("idres test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("idres node"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(a)) for a in {address, "127.0.0.1"}]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.mark.parametrize("front", ["edge", "python"])
def test_pyhandle_writes_with_a_secret_key_over_https_across_a_network(
    db_url: str, tmp_path: Path, front: str
) -> None:
    address = network_address()
    ca, cert, key = certificates(tmp_path, address)
    tls = ("--tls-cert", str(cert), "--tls-key", str(key))
    with serve(
        db_url,
        tmp_path,
        "--host",
        address,
        "--allow-seckey",
        "--front",
        front,
        *tls,
        verify=str(ca),
    ) as node:
        assert node.url.startswith(f"https://{address}:")
        pyhandle_creates_modifies_and_deletes(node)
        # a client that does not trust the node's certificate does not talk to it
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(node.url + "/healthz", timeout=30)


@pytest.mark.parametrize("front", ["edge", "python"])
def test_a_secret_key_in_clear_text_across_a_network_is_refused(
    db_url: str, tmp_path: Path, front: str
) -> None:
    address = network_address()
    with serve(db_url, tmp_path, "--host", address, "--allow-seckey", "--front", front) as node:
        give_prefix_a_secret(node)
        with pytest.raises(HandleAuthenticationError):
            pyhandle_client(node).register_handle("88.100.1/CLEAR", "https://example.com/c")
        reply = requests.put(
            node.url + "/api/handles/88.100.1/CLEAR",
            json={"values": [{"index": 1, "type": "URL", "data": "https://example.com/c"}]},
            auth=("300%3A0.NA/88.100.1", SECRET),
            timeout=30,
        )
        assert (reply.status_code, reply.json()["responseCode"]) == (401, 402)
        assert "only over https" in reply.json()["message"]
        assert requests.get(node.url + "/api/handles/88.100.1/CLEAR", timeout=30).status_code == 404
