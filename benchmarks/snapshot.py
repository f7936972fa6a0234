"""Starting a new mirror of a node: from a snapshot, or by replaying the log.

One sub-chain node registers N identifiers (batches of 1,000, cut into blocks and
published to the in-process log); its parent follows it. Then a new mirror of the
parent starts twice on empty databases: once replaying the chain from offset 0
(the follower, in its transactions of 64 blocks), once loading a snapshot of the
parent (``sync/snapshot.py``: every block checked, records built in one
transaction). Both end with the same records; the times are compared.

    python -m benchmarks.snapshot --records 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import asyncpg
from cryptography.hazmat.primitives.asymmetric import ed25519

from benchmarks.registration import machine
from idres.assembly import NodeSpec, delegations
from registry.database import create_pool, start_embedded
from registry.plan import PutOp
from registry.store import PostgresStore
from resolver.topology import Directory, Role
from schemas.record import DataFormat, HandleValue, Record
from sync.follow import Follower
from sync.memory import MemoryLog
from sync.relay import Relay, RelayConfig
from sync.snapshot import load, take


async def _database(url: str, name: str) -> asyncpg.Pool:
    conn = await asyncpg.connect(url)
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    return await create_pool(url.replace("/postgres?", f"/{name}?"), min_size=1, max_size=4)


async def _records(pool: asyncpg.Pool) -> list[tuple[object, ...]]:
    return [
        tuple(r)
        for r in await pool.fetch(
            "SELECT i.handle, i.version, v.data FROM identifiers i JOIN handle_values v"
            " USING (handle) ORDER BY 1"
        )
    ]


async def run(url: str, records: int, work: Path) -> dict[str, object]:
    names = ("parent", "sub", "mirror")
    keys = {n: ed25519.Ed25519PrivateKey.generate() for n in names}
    specs = [
        NodeSpec(name="parent", role=Role.SUPER, parent=None, url="http://a", prefixes=()),
        NodeSpec(name="sub", role=Role.BACKBONE, parent="parent", url="http://b", prefixes=("88",)),
        NodeSpec(name="mirror", role=Role.BACKBONE, parent="parent", url="http://c", prefixes=()),
    ]
    signed = delegations(specs, keys)
    directory = Directory(signed, trust_anchor=signed[0].public_key)
    log = MemoryLog()
    pools = {n: await _database(url, f"snap_{n}") for n in ("parent", "sub")}
    sub = Relay(pools["sub"], keys["sub"], RelayConfig(chain="sub"), log=log)
    parent = Follower(pools["parent"], log, me="parent", directory=lambda: directory)
    store = PostgresStore(pools["sub"])
    for start in range(0, records, 1000):
        batch = [
            PutOp(
                record=Record(
                    handle=f"88.100.1/S{n:08d}",
                    values=(
                        HandleValue(
                            index=1, type="URL", format=DataFormat.STRING, value=f"https://e.x/{n}"
                        ),
                    ),
                )
            )
            for n in range(start, min(start + 1000, records))
        ]
        await store.apply(batch, actor="bench")
        while await sub.cut() is not None:
            pass
    await sub.publish()
    while await parent.step(wait=1):
        pass
    blocks = await pools["parent"].fetchval("SELECT count(*) FROM chain_blocks")

    replay_pool = await _database(url, "snap_replay")
    mirror = Follower(
        replay_pool, log, me="mirror", directory=lambda: directory, mirror_of="parent"
    )
    t = time.perf_counter()
    while await mirror.step(wait=0.1):
        pass
    replay = time.perf_counter() - t

    path = work / "parent.snapshot"
    t = time.perf_counter()
    with path.open("wb") as f:
        async for piece in take(pools["parent"], "parent"):
            f.write(piece)
    taken = time.perf_counter() - t
    loaded_pool = await _database(url, "snap_loaded")
    t = time.perf_counter()
    loaded = await load(loaded_pool, path, directory, "mirror", mirror_of="parent")
    loading = time.perf_counter() - t
    same = (
        await _records(replay_pool)
        == await _records(loaded_pool)
        == await _records(pools["parent"])
    )
    for pool in (*pools.values(), replay_pool, loaded_pool):
        await pool.close()
    return {
        "records": records,
        "blocks": blocks,
        "snapshot_bytes": path.stat().st_size,
        "replay_s": round(replay, 2),
        "take_s": round(taken, 2),
        "load_s": round(loading, 2),
        "records_loaded": len(loaded.records),
        "same_records": same,
        "load_vs_replay": round(replay / loading, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="idres-snapshot-") as tmp:
        url = start_embedded(Path(tmp) / "pg")
        result = asyncio.run(run(url, args.records, Path(tmp)))
    print(json.dumps({"machine": machine(), **result}, indent=2))


if __name__ == "__main__":
    main()
