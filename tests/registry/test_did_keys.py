"""Registering a did:bid: the address ``idres keygen --did`` prints is accepted with its
key; a DID written with an Ed25519 key it is not the address of is refused, naming both."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from registry import httpsig
from schemas.identifiers.bid_address import address, raw_ed25519
from tests.registry.conftest import Node


def keygen_did(path: Path, *code: str) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "idres", "keygen", "--out", str(path), "--did", *code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    made: dict[str, str] = json.loads(done.stdout)
    return made


def pubkey(der: bytes, index: int = 300) -> dict[str, object]:
    return {
        "index": index,
        "type": "HS_PUBKEY",
        "data": {"format": "key", "value": base64.b64encode(der).decode()},
    }


def test_keygen_did_prints_the_keys_address(tmp_path: Path) -> None:
    made = keygen_did(tmp_path / "did.pem")
    der = httpsig.public_key_der(httpsig.load_private_key((tmp_path / "did.pem").read_bytes()))
    raw = raw_ed25519(der)
    assert raw is not None
    assert made["did"] == address(raw)
    assert made["did"].startswith("did:bid:ef")
    assert made["publicKeyHex"] == "b06566" + raw.hex()
    assert base64.b64decode(made["publicKey"]) == der
    on_ab12 = keygen_did(tmp_path / "sub.pem", "ab12")
    sub_raw = raw_ed25519(base64.b64decode(on_ab12["publicKey"]))
    assert sub_raw is not None
    assert on_ab12["did"] == address(sub_raw, "ab12")


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_a_did_registers_with_its_own_key_and_not_with_another(
    bid_node: Node, tmp_path: Path
) -> None:
    made = keygen_did(tmp_path / "did.pem", "ab12")
    der = base64.b64decode(made["publicKey"])
    other = httpsig.public_key_der(httpsig.generate_key())
    other_raw = raw_ed25519(other)
    assert other_raw is not None
    async with bid_node.admin_client() as c:
        refused = await c.put(made["did"], [pubkey(other)])
        assert refused.status == 400, refused.body
        assert refused.body["responseCode"] == 202
        (error,) = refused.body["errors"]
        assert error["field"] == "handle"
        # both named: the DID, and the address the key given has
        assert made["did"] in error["reason"]
        assert address(other_raw, "ab12") in error["reason"]
        assert "index 300" in error["reason"]

        created = await c.put(made["did"], [pubkey(der)])
        assert created.status == 201, created.body
        # adding a key beside its own (a recovery key) is fine; taking its own away is not
        added = await c.put(made["did"], [pubkey(der), pubkey(other, 301)])
        assert added.status == 200, added.body
        swapped = await c.put(made["did"], [pubkey(other, 301)])
        assert swapped.status == 400
        kept = await c.get(made["did"])
        assert [v["index"] for v in kept.body["values"]] == [300, 301]

        # a batch refuses the one operation, not its neighbour
        first = keygen_did(tmp_path / "first.pem", "ab12")
        second = keygen_did(tmp_path / "second.pem", "ab12")
        reply = await c.batch(
            [
                {"handle": first["did"], "values": [pubkey(other)]},
                {
                    "handle": second["did"],
                    "values": [pubkey(base64.b64decode(second["publicKey"]))],
                },
            ]
        )
        assert reply.status == 200, reply.body
        results = reply.body["results"]
        assert [(r["status"], r["responseCode"]) for r in results] == [(400, 202), (201, 1)]
        assert first["did"] in results[0]["errors"][0]["reason"]


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_a_main_chain_did_is_written_under_the_main_chains_prefix_record(
    main_chain_node: Node, tmp_path: Path
) -> None:
    """A DID without a sub-chain code lives on the main chain, ``bid:``, whose prefix
    record ``0.NA/bid:`` governs it as ``0.NA/bid:ab12`` governs sub-chain ab12's: the
    node admin of the node that holds it writes it; nobody else does."""
    made = keygen_did(tmp_path / "main.pem")
    values = [pubkey(base64.b64decode(made["publicKey"]))]
    async with main_chain_node.admin_client() as c:
        created = await c.put(made["did"], values)
        assert created.status == 201, created.body
        assert (await c.get(made["did"])).status == 200
        assert (await c.get("0.NA/bid:")).status == 200  # the record that governs it
    async with main_chain_node.client() as anonymous:
        refused = await anonymous.put(made["did"], values)
        assert refused.status == 401, refused.body
    # the DID's own key, named by the DID's HS_PUBKEY, holds no HS_ADMIN: the prefix
    # record decides, as for any identifier
    own = httpsig.load_private_key((tmp_path / "main.pem").read_bytes())
    async with main_chain_node.client(own, f"300:{made['did']}") as holder:
        refused = await holder.delete(made["did"])
        assert refused.status == 403, refused.body
        assert "delete" in refused.body["message"]
    async with main_chain_node.admin_client() as c:
        assert (await c.get(made["did"])).status == 200
