"""``idres verify`` with the compiled checker (sync/native) finds exactly what the
Python path finds: the same problems, in the same order, and the same mismatches for
repair, on a database tampered with in each way verify knows of."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import sync.verify
from benchmarks.verify import load, record_of
from registry.database import create_pool
from sync import native
from sync.verify import Report, verify

ROOT = Path(__file__).resolve().parents[2]
RECORDS = 2500  # three blocks of the sub-chain (1,000, 1,000, 500), one of the super chain
PRIVATE = "format = 'commitment'"  # every tenth record's value 2, as the super node keeps it
# the holder keeps its private values in clear, with their salts (the loader's: zeros)
IN_CLEAR = (
    "UPDATE handle_values SET type = 'EMAIL', format = 'string', salt = '\\x{salt}'::bytea,"
    " data = convert_to('owner' || substring(handle from '/V(\\d+)$')::int || '@e.x', 'UTF8')"
    f" WHERE {PRIVATE}"
).format(salt="00" * 16)


def h(n: int) -> str:
    return record_of(n).handle


# (case, the node that verifies, SQL that tampers with its database)
CASES: list[tuple[str, str, list[str]]] = [
    ("untouched", "super", []),
    ("a value changed", "super", [f"UPDATE handle_values SET data = 'x' WHERE handle = '{h(5)}'"]),
    (
        "values added and removed",
        "super",
        [
            "INSERT INTO handle_values (handle, idx, type, format, data, ttl, ttl_type, ts,"
            f" perms, refs) SELECT handle, 7, type, format, data, ttl, ttl_type, ts, perms, refs"
            f" FROM handle_values WHERE handle = '{h(1003)}' AND idx = 1",
            f"DELETE FROM handle_values WHERE handle = '{h(2001)}' AND idx = 1",
        ],
    ),
    (
        "ttl, type, references and format changed",
        "super",
        [
            f"UPDATE handle_values SET ttl = 5 WHERE handle = '{h(7)}'",
            f"UPDATE handle_values SET type = 'EMAIL' WHERE handle = '{h(8)}'",
            "UPDATE handle_values SET refs = '\\x81826a38382e3130302e312f5801'::bytea"
            f" WHERE handle = '{h(9)}'",
            "UPDATE handle_values SET format = 'admin', data = '\\xa365696e646578016570"
            "65726d73190fff6668616e646c6566302e4e412f78'::bytea"
            f" WHERE handle = '{h(11)}'",
            f"UPDATE handle_values SET format = 'admin' WHERE handle = '{h(12)}'",
            f"UPDATE handle_values SET data = '\\xff'::bytea WHERE handle = '{h(13)}'",
        ],
    ),
    (
        "a commitment changed",
        "super",
        [f"UPDATE handle_values SET data = sha256(data) || '\\x00' WHERE handle = '{h(20)}'"],
    ),
    (
        "a record's version changed, one deleted, one added",
        "super",
        [
            f"UPDATE identifiers SET version = 2 WHERE handle = '{h(30)}'",
            f"DELETE FROM identifiers WHERE handle = '{h(1500)}'",
            "INSERT INTO identifiers (handle, scheme, routing_key, version)"
            " VALUES ('88.100.1/SNEAKY', 'handle', 'handle:88.100.1', 1)",
        ],
    ),
    (
        "an entry's payload changed",
        "super",
        [
            "UPDATE chain_entries SET payload = payload || '\\x00'"
            " WHERE chain = 'sub' AND seq = 1200"
        ],
    ),
    (
        "an entry's lookup columns changed",
        "super",
        [
            "UPDATE chain_entries SET version = 0 WHERE chain = 'sub' AND seq = 1",
            f"UPDATE chain_entries SET handle = '{h(3)}' WHERE chain = 'sub' AND seq = 2",
        ],
    ),
    (
        "an entry removed, another moved to the next block",
        "super",
        [
            "DELETE FROM chain_entries WHERE chain = 'sub' AND seq = 17",
            "UPDATE chain_entries SET height = 2 WHERE chain = 'sub' AND seq = 1000",
            "UPDATE chain_entries SET height = 1 WHERE chain = 'sub' AND seq = 2400",
        ],
    ),
    (
        "a signature broken",
        "super",
        [
            "UPDATE chain_blocks SET message = overlay(message placing '\\x00'::bytea from 12)"
            " WHERE chain = 'sub' AND height = 2"
        ],
    ),
    (
        "a stored block hash changed, a block removed",
        "super",
        [
            "UPDATE chain_blocks SET hash = sha256(hash) WHERE chain = 'sub' AND height = 1",
            "DELETE FROM chain_blocks WHERE chain = 'sub' AND height = 2",
        ],
    ),
    (
        "an anchor's entry changed",
        "super",
        [
            "UPDATE chain_entries SET hash = sha256(hash) WHERE chain = 'super' AND seq = 2",
            "UPDATE chain_entries SET version = 9 WHERE chain = 'super' AND seq = 3",
        ],
    ),
    (
        "an anchor's payload replaced by bytes that do not decode",  # was a crash, both ways
        "super",
        [
            "UPDATE chain_entries SET payload = '\\x00'"
            " WHERE chain = 'super' AND kind = 'anchor' AND seq = 2"
        ],
    ),
    (
        "an operation waits in the outbox",
        "super",
        [
            "INSERT INTO outbox (handle, version, op, payload)"
            f" VALUES ('{h(5)}', 2, 'replace', '\\x00')",
            f"UPDATE handle_values SET data = 'x' WHERE handle = '{h(5)}'",
        ],
    ),
    (
        "entries of no block after the last of the first chain read",  # more pages than blocks
        "super",
        [
            "INSERT INTO chain_entries (chain, seq, height, kind, handle, version, hash, payload)"
            " SELECT 'super', 100 + g, 9, 'anchor', 'x', g, '\\x00', '\\x00'"
            " FROM generate_series(1, 7000) g"
        ],
    ),
    ("the holder, its private values in clear", "sub", [IN_CLEAR]),
    (
        "the holder, a private value changed and a salt lost",
        "sub",
        [
            IN_CLEAR,
            f"UPDATE handle_values SET data = 'x' WHERE handle = '{h(40)}' AND idx = 2",
            f"UPDATE handle_values SET salt = NULL WHERE handle = '{h(50)}' AND idx = 2",
            "UPDATE handle_values SET salt = '\\x{salt}'::bytea".format(salt="01" * 16)
            + f" WHERE handle = '{h(60)}' AND idx = 2",
        ],
    ),
]


# a change hidden by a newer operation in the outbox is not a finding
CLEAN = {
    "untouched",
    "an operation waits in the outbox",
    "entries of no block after the last of the first chain read",
    "the holder, its private values in clear",
}


@pytest.fixture(scope="module", autouse=True)
def _built() -> None:
    if native.compiled() is None:
        if shutil.which("cargo"):
            pytest.fail("cargo is here but idres_native is not built: run deploy/setup.sh")
        pytest.skip("no compiled checker (deploy/setup.sh builds it where cargo is)")


@pytest.mark.asyncio
@pytest.mark.parametrize(("case", "me", "tamper"), CASES, ids=[c[0] for c in CASES])
async def test_the_compiled_checker_finds_what_python_finds(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, case: str, me: str, tamper: list[str]
) -> None:
    loaded = await load(pool, RECORDS)
    for statement in tamper:
        await pool.execute(statement)
    # the blocks the compiled checker hands back whole are checked by _check_signed
    handed_back: list[int] = []
    check_signed = sync.verify._check_signed

    def counted(key: bytes, chain: str, b: Any, tip: Any, report: Report) -> Any:
        handed_back.append(b["height"])
        return check_signed(key, chain, b, tip, report)

    monkeypatch.setattr(sync.verify, "_check_signed", counted)
    compiled = await verify(pool, loaded["directory"], me)
    monkeypatch.undo()
    python = await verify(pool, loaded["directory"], me, compiled=False)
    assert compiled.problems == python.problems
    assert compiled.mismatches == python.mismatches
    assert compiled == python
    if case in CLEAN:
        assert compiled.problems == []
        assert handed_back == []  # every block proven by the compiled checker
    else:
        assert compiled.problems


@pytest.mark.asyncio
async def test_the_compiled_checker_reads_on_two_connections_when_the_pool_has_no_third(
    db_url: str,
) -> None:
    two = await create_pool(db_url, min_size=1, max_size=2)
    try:
        loaded = await load(two, RECORDS)
        await two.execute(f"UPDATE handle_values SET data = 'x' WHERE handle = '{h(5)}'")
        compiled = await verify(two, loaded["directory"], "super")
        python = await verify(two, loaded["directory"], "super", compiled=False)
    finally:
        await two.close()
    assert compiled == python
    assert compiled.problems == [
        f"{h(5)}: the value at index 1 differs from operation 6 (version 1) in block 1 "
        "of chain 'sub'"
    ]


def test_the_checker_passes_its_own_tests() -> None:
    """The crate's unit tests (sync/native/src/tests.rs: blocks and records the Python
    reference wrote), linked against this Python rather than loaded by it."""
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("no cargo")
    env = {
        **os.environ,
        "PYO3_PYTHON": sys.executable,
        "CARGO_TARGET_DIR": str(ROOT / ".venv" / "native-target"),
        "LD_LIBRARY_PATH": str(sysconfig.get_config_var("LIBDIR")),
    }
    done = subprocess.run(
        [cargo, "test", "--release", "--quiet", "--no-default-features", "--locked"],
        cwd=ROOT / "sync" / "native",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# Tampers drawn at random, n a record, s an entry of the sub-chain, b a byte of a block.
RANDOM_TAMPERS = [
    "UPDATE handle_values SET data = 'x' WHERE handle = '{h}' AND idx = 1",
    "UPDATE handle_values SET perms = perms # 2 WHERE handle = '{h}'",
    "UPDATE handle_values SET ts = ts + 1 WHERE handle = '{h}'",
    "DELETE FROM handle_values WHERE handle = '{h}'",
    "DELETE FROM identifiers WHERE handle = '{h}'",
    "UPDATE identifiers SET version = version + 1 WHERE handle = '{h}'",
    "UPDATE identifiers SET routing_key = 'handle:99' WHERE handle = '{h}'",
    "UPDATE chain_entries SET payload = substring(payload from 1 for length(payload) - 1)"
    " WHERE chain = 'sub' AND seq = {s}",
    "UPDATE chain_entries SET height = height + 1 WHERE chain = 'sub' AND seq = {s}",
    "UPDATE chain_entries SET seq = seq + 100000 WHERE chain = 'sub' AND seq = {s}",
    "DELETE FROM chain_entries WHERE chain = 'sub' AND seq = {s}",
    "UPDATE chain_blocks SET message = overlay(message placing '\\x01'::bytea from {b})"
    " WHERE chain = 'sub' AND height = 3",
    # the same operation again in the super node's own chain, as a later version
    "INSERT INTO chain_entries (chain, seq, height, kind, handle, version, hash, payload)"
    " SELECT 'super', 1000 + seq, 1, kind, handle, 2, hash, payload FROM chain_entries"
    " WHERE chain = 'sub' AND handle = '{h}'",
    "INSERT INTO outbox (handle, version, op, payload) VALUES ('{h}', 2, 'replace', '\\x00')",
]


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", range(12))
async def test_the_compiled_checker_finds_what_python_finds_after_random_tampers(
    pool: asyncpg.Pool, seed: int
) -> None:
    draw = random.Random(seed)
    loaded = await load(pool, RECORDS)
    me = "sub" if seed % 3 == 0 else "super"
    if me == "sub":
        await pool.execute(IN_CLEAR)
    for template in draw.sample(RANDOM_TAMPERS, 4):
        n, s, b = draw.randrange(RECORDS), draw.randrange(1, RECORDS + 1), draw.randrange(1, 400)
        await pool.execute(template.format(h=h(n), s=s, b=b))
    compiled = await verify(pool, loaded["directory"], me)
    python = await verify(pool, loaded["directory"], me, compiled=False)
    assert compiled.problems == python.problems
    assert compiled == python
