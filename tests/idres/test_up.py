"""``idres up`` as an operator runs it: six nodes, seeded, resolvable, and a restart
that keeps the data."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import pydid
import pytest
from pyhandle.client.resthandleclient import RESTHandleClient

from idres.network import LAYOUT
from tests.did_clients import resolve_all
from tests.handle_probe import RESPONSE, probe

pytestmark = [pytest.mark.postgres]


DNS_OUT: dict[str, str] = {}  # each node's DNS face, host:port, from the last start
HANDLE_OUT: dict[str, str] = {}  # each node's Handle face, host:port, from the last start
PRINTED: dict[str, str] = {}  # what idres up printed, and each node's URL, from the last start
README = (Path(__file__).parents[2] / "README.md").read_text()


def start(data_dir: Path, kafka: str | None) -> tuple[subprocess.Popen[str], str, str]:
    # the transport is chosen here, whatever the suite's own environment says
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP"}
    if kafka is not None:
        env["KAFKA_BOOTSTRAP"] = kafka
    proc = subprocess.Popen(
        [sys.executable, "-m", "idres", "up", "--data-dir", str(data_dir), "--base-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C" in line:
            break
    out = "".join(lines)
    urls = dict(re.findall(r"^  (\S+)\s+\w+\s+(http://\S+)", out, re.MULTILINE))
    assert set(urls) == {"super", "backbone-1", "backbone-2", "sub-a", "sub-b", "sub-c"}, out
    DNS_OUT.clear()
    DNS_OUT.update(re.findall(r"^  (\S+)\s+\w+\s+http://\S+\s+dns (\S+)", out, re.MULTILINE))
    HANDLE_OUT.clear()
    faces = re.findall(r"^  (\S+)\s+\w+\s+http://\S+\s+.*handle (\S+)", out, re.MULTILINE)
    HANDLE_OUT.update(faces)
    PRINTED.clear()
    PRINTED.update(urls, out=out)
    return proc, urls["super"], urls["sub-a"]


GS1_SDK = Path(__file__).parents[2] / "deploy" / "gs1" / "digital-link.sh"
MAIN_DID = "did:bid:efGsChQR2u32pvwJcDNPoYHhGXL1Rgq"
SUB_DID = "did:bid:ab12:efGsChQR2u32pvwJcDNPoYHhGXL1Rgq"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the redirect itself is the answer looked at


def check_the_standard_clients(entry: str) -> None:
    """Issue 15's clients, none of them ours, against the network as the README starts
    it, all at the super node: npm's DID clients, the BIF path, a GS1 Digital Link made
    by GS1's digital-link.js, and pyhandle reading."""
    outcomes = asyncio.run(resolve_all(entry, [{"did": MAIN_DID}, {"did": SUB_DID}]))
    for did, endpoint in (
        (MAIN_DID, "https://example.com/main-chain/agent"),
        (SUB_DID, "https://example.com/agents/ab12"),
    ):
        for via in ("did-resolver", "uni-client", "uni-driver"):
            (got,) = [o for o in outcomes if (o["via"], o["did"]) == (via, did)]
            assert "thrown" not in got, got
            assert got.get("status", 200) == 200, got  # did-resolver reports its status
            document = pydid.DIDDocument.deserialize(got["result"]["didDocument"])
            assert document.id == did
            assert [s.service_endpoint for s in document.service or []] == [endpoint], via
    bif = fetch_json(f"{entry}/bif/v1/did/{MAIN_DID}")
    assert bif["errorCode"] == 0, bif
    assert bif["data"]["didDocument"]["id"] == MAIN_DID  # type: ignore[index]
    job = {"build": {"domain": entry, "identifier": {"01": "06901234567892"}}}
    made = subprocess.run(
        ["bash", str(GS1_SDK), "run"], input=json.dumps([job]), capture_output=True,
        text=True, timeout=600, check=True,
    )  # fmt: skip
    ((built),) = json.loads(made.stdout)
    assert built["valid"], built
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as moved:
        opener.open(built["uri"], timeout=10)
    moved.value.close()  # an HTTPError holds its socket open until closed
    assert moved.value.code == 307
    assert moved.value.headers["Location"] == "https://example.com/gtin/06901234567892"
    assert 'rel="linkset"' in moved.value.headers["Link"]
    reader = RESTHandleClient(handle_server_url=entry, HTTPS_verify=False)
    url = reader.get_value_from_handle("88.200.7/LOT-42", "URL")
    assert url == "https://example.com/batches/LOT-42"


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()  # never leave a network running after the test
        out, err = proc.communicate(timeout=30)
        raise AssertionError(f"idres up did not stop within 60 s:\n{err}") from None
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "stopping" in out


def register(data_dir: Path, server: str, handle: str, url: str) -> None:
    """``idres register`` as the node admin whose key ``idres up`` keeps."""
    admin = data_dir / "up" / "keys" / "admin.pem"
    done = idres(
        "register", handle, "--url", url, "--server", server,
        "--key", str(admin), "--key-id", "300:0.NA/node.admin",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def fetch_json(url: str) -> dict[str, object]:
    """GET ``url`` until it answers 200 (a proof waits for its block), for up to 20 s."""
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body: dict[str, object] = json.loads(response.read())
                return body
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def wait_for_replica(entry: str, handle: str) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while True:
        url = f"{entry}/api/handles/{handle}?recursive=false"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body: dict[str, object] = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            # within the replication lag a node whose copy keeps up may say "not found"
            if exc.code != 404:
                raise
            body = json.loads(exc.read())
        if body["responseCode"] == 1 or time.monotonic() > deadline:
            assert body["responseCode"] == 1, body
            return body
        time.sleep(0.1)


def dns_ask(node: str, name: str, rdtype: str, *, rd: bool = True) -> dns.message.Message:
    host, port = DNS_OUT[node].rsplit(":", 1)
    query = dns.message.make_query(name, rdtype)
    if not rd:
        query.flags &= ~dns.flags.RD
    return dns.query.udp(query, host, port=int(port), timeout=5)


def idres(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "idres", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def check_the_referral_examples() -> None:
    """The ``recursive=false`` example idres up prints, and the README shows at the
    default ports, is a referral (issue 16: it was answered from the super node's copy);
    with ``auth=true`` the walk goes down the tree as the README says."""
    (example,) = re.findall(r"curl '(\S+\?recursive=false)'", PRINTED["out"])
    answer = fetch_json(example)
    assert answer["responseCode"] == 302, answer  # not answered from a copy
    assert answer["referral"] == {
        "node": "super",
        "role": "super",
        "url": PRINTED["super"] + "/api/handles/88.200.7/LOT-42",
        "prefix": "handle:88.200",
    }
    (asked,) = [n for n in PRINTED if n != "out" and example.startswith(PRINTED[n] + "/")]
    (offset,) = [layout[3] for layout in LAYOUT if layout[0] == asked]
    at_default_port = example.replace(PRINTED[asked], f"http://127.0.0.1:{8000 + offset}")
    assert f"curl '{at_default_port}'" in README
    walk: list[tuple[object, object]] = []
    url = PRINTED["super"] + "/api/handles/1.2.156.3001.1"
    while (answer := fetch_json(url + "?recursive=false&auth=true"))["responseCode"] != 1:
        assert answer["responseCode"] in (302, 303), answer
        walk.append((answer["responseCode"], answer["referral"]["node"]))  # type: ignore[index]
        url = answer["referral"]["url"]  # type: ignore[index]
        assert len(walk) < 4, walk
    assert walk == [(303, "backbone-2"), (303, "sub-c")]
    assert url.startswith(PRINTED["sub-c"] + "/")


@pytest.mark.parametrize("transport", ["in-process", "kafka"])
def test_up_resolves_every_seeded_scheme_and_keeps_data_across_restarts(
    tmp_path: Path, transport: str, request: pytest.FixtureRequest
) -> None:
    kafka = request.getfixturevalue("kafka_bootstrap") if transport == "kafka" else None
    proc, entry, sub_a = start(tmp_path, kafka)
    try:
        seeds = [
            "88.100.1/ABC-123",
            "06901234567892",
            "88.200.7/LOT-42",
            "did:bid:ab12:efGsChQR2u32pvwJcDNPoYHhGXL1Rgq",
            "86.1000.12/x",
            "1.2.156.3001.1",
            "ecode:10001000000000000001",
            "did:bid:efGsChQR2u32pvwJcDNPoYHhGXL1Rgq",
        ]
        resolved = idres("resolve", *seeds, "--server", entry)
        assert resolved.returncode == 0, resolved.stdout + resolved.stderr
        answers = [json.loads(line) for line in resolved.stdout.splitlines()]
        assert [a["values"][0]["type"] for a in answers] == ["URL"] * len(seeds)
        check_the_referral_examples()
        if transport == "in-process":  # the transport changes nothing these clients see
            check_the_standard_clients(entry)
        # the same through DNS: the super node resolves a GTIN (recursion desired), the
        # sub-chain answers a handle with authority
        assert set(DNS_OUT) == {"super", "backbone-1", "backbone-2", "sub-a", "sub-b", "sub-c"}
        gtin = dns_ask("super", "0.9.8.7.6.5.4.3.2.1.0.9.6.gtin.gs1.id.idres.internal.", "NAPTR")
        assert b"https://example.com/gtin/06901234567892" in gtin.answer[0][0].regexp
        handle = dns_ask("sub-a", "ABC-123._.1.100.88.handle.idres.internal.", "URI", rd=False)
        assert handle.flags & dns.flags.AA
        assert [r.target for r in handle.answer[0]] == [b"https://example.com/products/ABC-123"]
        # and through the Handle protocol, with CNRI's client library: the super node
        # resolves over UDP, and says what is not registered
        assert set(HANDLE_OUT) == set(DNS_OUT)
        host, port = HANDLE_OUT["super"].split(":")
        status, hdl = probe("resolve", "--udp", host, port, "88.100.1/ABC-123")
        assert (status, hdl["responseCode"]) == (RESPONSE, 1), hdl
        assert hdl["values"][0]["data"] == "https://example.com/products/ABC-123"
        status, hdl = probe("resolve", "--tcp", host, port, "88.100.1/NOT-HERE")
        assert hdl["responseCode"] == 100, hdl
        # backbone-2 keeps no copy of backbone-1's tree: it names the node above
        host, port = HANDLE_OUT["backbone-2"].split(":")
        status, hdl = probe("resolve", "--tcp", host, port, "88.200.7/LOT-42", "--no-recursion")
        assert hdl["responseCode"] == 302, hdl
        (server,) = hdl["values"][0]["site"]["servers"]
        assert f"{server['address']}:{server['interfaces'][0]['port']}" == HANDLE_OUT["super"]
        # an administrator with an RSA key (what CNRI's library signs with) takes a
        # prefix at the sub-chain and creates a handle under it over the protocol, as
        # the README shows
        admin_key, hspub = tmp_path / "rsa.pem", tmp_path / "rsa.hspub"
        status, made = probe("keygen-rsa", str(admin_key), str(hspub))
        assert status == RESPONSE, made
        node_admin = tmp_path / "up" / "keys" / "admin.pem"
        delegated = idres(
            "delegate", "88.100.1", "--public-key", str(tmp_path / "rsa.hspub.spki.der"),
            "--server", sub_a, "--key", str(node_admin), "--key-id", "300:0.NA/node.admin",
        )  # fmt: skip
        assert delegated.returncode == 0, delegated.stdout + delegated.stderr
        host, port = HANDLE_OUT["sub-a"].split(":")
        status, created = probe(
            "create", "--tcp", host, port, "88.100.1/BY-HANDLE",
            "--admin", "0.NA/88.100.1:300", "--key", str(admin_key),
            "--value", "1:URL:https://e.x/by-handle",
        )  # fmt: skip
        assert (status, created["responseCode"]) == (RESPONSE, 1), created
        made_there = idres("resolve", "88.100.1/BY-HANDLE", "--server", entry)
        assert (
            json.loads(made_there.stdout)["values"][0]["data"]["value"] == "https://e.x/by-handle"
        )
        register(tmp_path, sub_a, "88.100.5/KEPT", "https://e.x/kept")
        # the new record is replicated up the tree: the super node answers it itself,
        # even when asked not to recurse (no referral to the sub-chain)
        answer = wait_for_replica(entry, "88.100.5/KEPT")
        assert answer["values"][0]["data"]["value"] == "https://e.x/kept"
        # a proof of it, saved as a client would, checks offline
        proved = fetch_json(f"{entry}/api/handles/88.100.5/KEPT?proof=true")
        saved = tmp_path / "kept.proof.json"
        saved.write_text(json.dumps(proved))
        # the trust anchor, as a client gets it out of band: the super node's key
        nodes = fetch_json(f"{entry}/api/directory")["nodes"]
        (anchor,) = [n["publicKey"] for n in nodes if n["parent"] is None]  # type: ignore[union-attr, index, attr-defined]
        checked = idres("verify", "--proof", str(saved), "--trust-anchor", anchor)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "88.100.5/KEPT as answered is version 1" in checked.stdout
        # each node's port is its edge, which answers a replicated record it was given
        # once from its own memory
        for _ in range(2):
            urllib.request.urlopen(f"{entry}/api/handles/88.100.5/KEPT", timeout=10).read()
        metrics = urllib.request.urlopen(entry + "/metrics", timeout=10).read().decode()
        assert re.search(r'idres_sync_applied_height\{chain="sub-a"\} [1-9]', metrics), metrics
        assert re.search(r'idres_edge_hits_total\{node="super"\} [1-9]', metrics), metrics
    finally:
        stop(proc)
    proc, entry, sub_a = start(tmp_path, kafka)
    try:
        kept = idres("resolve", "88.100.5/KEPT", "--server", entry)
        assert json.loads(kept.stdout)["values"][0]["data"]["value"] == "https://e.x/kept"
        # replication goes on after a restart: a new record reaches the top again
        register(tmp_path, sub_a, "88.100.5/AFTER", "https://e.x/after")
        after = wait_for_replica(entry, "88.100.5/AFTER")
        assert after["values"][0]["data"]["value"] == "https://e.x/after"
        verified = idres("verify", "--server", entry)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        # history lives with the record, at the sub-chain: seeded once, not at each start
        history = idres("history", "88.100.1/ABC-123", "--server", sub_a)
        assert len(json.loads(history.stdout)["history"]) == 1
    finally:
        stop(proc)
