"""A node restarted to keep fewer chains drops the answers of the copies it no longer
keeps: its edge would answer from them where its workers ask the next node."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from idres.assembly import NodeSpec, delegations
from resolver.topology import Directory, Role
from schemas.identifiers import parse
from sync.apply import drop_unkept_answers
from sync.notices import CHANGED_CHANNEL, EVERYTHING

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]

SPECS = [
    NodeSpec(name="super", role=Role.SUPER, parent=None, url="http://s", prefixes=()),
    NodeSpec(
        name="bb", role=Role.BACKBONE, parent="super", url="http://b", prefixes=("88", "gs1:69")
    ),
    NodeSpec(name="a", role=Role.SUBCHAIN, parent="bb", url="http://a", prefixes=("88.100",)),
    NodeSpec(name="c", role=Role.SUBCHAIN, parent="bb", url="http://c", prefixes=("88.200",)),
    NodeSpec(name="g", role=Role.SUBCHAIN, parent="bb", url="http://g", prefixes=("gs1:690",)),
]
KEYS = {s.name: ed25519.Ed25519PrivateKey.generate() for s in SPECS}
SIGNED = delegations(SPECS, KEYS)
DIRECTORY = Directory(SIGNED, trust_anchor=SIGNED[0].public_key)
HELD = {
    "88.5/OWN": True,  # bb's own prefix: answered here
    "88.100.1/A": True,  # a's chain, kept
    "88.200.1/C": False,  # c's chain, no longer kept
    "gtin:06901234567892": True,  # g's chain (GS1 routes digit by digit), kept
}


async def test_answers_of_chains_no_longer_kept_go_and_the_rest_stay(
    pool: asyncpg.Pool,
) -> None:
    for text in HELD:
        ident = parse(text)
        await pool.execute(
            "INSERT INTO identifiers (handle, scheme, routing_key, version) VALUES ($1, $2, $3, 1)",
            ident.canonical,
            str(ident.scheme),
            str(ident.routing),
        )
        await pool.execute("INSERT INTO answers (handle, body) VALUES ($1, '{}')", ident.canonical)
    heard: list[str] = []

    def note(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        heard.append(payload)

    async with pool.acquire() as listening:
        await listening.add_listener(CHANGED_CHANNEL, note)
        async with pool.acquire() as conn:
            assert await drop_unkept_answers(conn, DIRECTORY, "bb", kept=["a", "g"]) == 1
            assert await drop_unkept_answers(conn, DIRECTORY, "bb", kept=["a", "g"]) == 0
        for _ in range(100):  # the edges forget everything they kept
            if heard:
                break
            await asyncio.sleep(0.02)
        await listening.remove_listener(CHANGED_CHANNEL, note)
    assert heard == [EVERYTHING]
    left = {r["handle"] for r in await pool.fetch("SELECT handle FROM answers")}
    assert left == {parse(t).canonical for t, stays in HELD.items() if stays}
