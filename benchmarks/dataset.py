"""The Singles' Day dataset: identifiers of every scheme spread over the sub-chain
nodes of the ``idres up`` layout, the requests that ask for them, and the same
records as static files for nginx and as a dict for the aiohttp floor.

Identifier ``n`` is a pure function of ``n`` (scheme by ``n % 100``: 85 Handle-style,
10 GTIN, 4 OID, 1 did:bid), so the requests, the rows and the files agree without
being kept side by side. Records are written the way the registry writes them
(``registry.store.value_to_row``) and answered bytes are built the way the resolver
builds them (``record_to_json``), so nginx serves what idres serves, byte for byte.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from idres.network import LAYOUT
from registry.httpio import dump
from registry.rows import ANSWER_COLUMNS, VALUE_COLUMNS, in_index_order, value_to_row
from schemas.codec_json import public_answer, record_to_json
from schemas.identifiers import parse
from schemas.identifiers.did import b58encode
from schemas.identifiers.gs1 import check_digit
from schemas.record import DataFormat, HandleValue, Record

TS = 1795420800  # every value's timestamp: the files and the database agree
SCHEMES = (("handle", 85), ("gtin", 10), ("oid", 4), ("did:bid", 1))  # per 100 identifiers
HANDLE_PREFIXES = (("sub-a", "88.100"), ("sub-b", "88.200"), ("sub-c", "86.1000"))


def owner_and_id(n: int) -> tuple[str, str]:
    """Identifier ``n`` and the sub-chain node its prefix is delegated to."""
    kind = n % 100
    if kind < 85:
        node, prefix = HANDLE_PREFIXES[n % 3]
        return node, f"{prefix}.{n % 97}/P{n:08d}"
    if kind < 95:  # GTIN-14 under GS1 company prefix 690 (sub-a)
        body = f"0690{n:09d}"
        return "sub-a", body + str(check_digit(body))
    if kind < 99:  # OIDs under 1.2.156.3001 (sub-c)
        return "sub-c", f"1.2.156.3001.{n % 89}.{n}"
    return "sub-b", "did:bid:ab12:ef" + b58encode((n + (1 << 170)).to_bytes(22, "big"))


def missing_id(n: int) -> str:
    """A well-formed identifier under a delegated prefix that nobody registered."""
    node_prefix = HANDLE_PREFIXES[n % 3][1]
    return f"{node_prefix}.{n % 97}/MISSING{n:08d}"


def record_of(n: int) -> Record:
    _, text = owner_and_id(n)
    return Record(
        handle=parse(text).canonical,
        values=(
            HandleValue(
                index=1,
                type="URL",
                format=DataFormat.STRING,
                value=f"https://example.com/p/{n}",
                timestamp=TS,
            ),
        ),
    )


def body_of(n: int) -> bytes:
    """The exact body idres answers for identifier ``n``."""
    return dump(record_to_json(record_of(n)))


def holders(node: str) -> list[str]:
    """``node`` and the nodes above it: each keeps a copy of its records."""
    parents = {name: parent for name, _, parent, _, _ in LAYOUT}
    out = [node]
    while (parent := parents[out[-1]]) is not None:
        out.append(parent)
    return out


async def load(urls: dict[str, str], keys: int, chunk: int = 50_000) -> dict[str, int]:
    """COPY the records into the database of each node that holds them (the owner and
    its ancestors, as replication leaves them); identifiers per owner."""
    conns = {node: await asyncpg.connect(url) for node, url in urls.items()}
    per_owner: dict[str, int] = {}
    try:
        for start in range(0, keys, chunk):
            idents: dict[str, list[tuple[object, ...]]] = {n: [] for n in urls}
            values: dict[str, list[tuple[object, ...]]] = {n: [] for n in urls}
            answers: dict[str, list[tuple[object, ...]]] = {n: [] for n in urls}
            for n in range(start, min(start + chunk, keys)):
                owner, text = owner_and_id(n)
                ident = parse(text)
                record = record_of(n)
                per_owner[owner] = per_owner.get(owner, 0) + 1
                # as registry.store.write_answers writes it
                placed = in_index_order(Record(handle=ident.canonical, values=record.values))
                public = public_answer(placed)
                for node in holders(owner):
                    idents[node].append((ident.canonical, str(ident.scheme), str(ident.routing), 1))
                    values[node] += [value_to_row(ident.canonical, v) for v in record.values]
                    if public is not None:
                        answers[node].append(
                            (ident.canonical, public.body, public.ttl, public.expires_at)
                        )
            for node, conn in conns.items():
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        "identifiers",
                        columns=("handle", "scheme", "routing_key", "version"),
                        records=idents[node],
                    )
                    await conn.copy_records_to_table(
                        "handle_values", columns=VALUE_COLUMNS, records=values[node]
                    )
                    await conn.copy_records_to_table(
                        "answers", columns=ANSWER_COLUMNS, records=answers[node]
                    )
        for conn in conns.values():
            await conn.execute("ANALYZE")
    finally:
        for conn in conns.values():
            await conn.close()
    return per_owner


def by_scheme(keys: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in range(keys):
        scheme = str(parse(owner_and_id(n)[1]).scheme)
        out[scheme] = out.get(scheme, 0) + 1
    return out


@dataclass(frozen=True, slots=True)
class Requests:
    """The identifiers the load asks for (oha draws from them at random)."""

    ids: list[str]
    missing: int


def requests(keys: int, samples: int, *, missing: float = 0.05, s: float = 1.1) -> Requests:
    """Zipf(s) over the keys, hot keys spread over the key space (not the first few),
    with a ``missing`` share of identifiers nobody registered (scanners, typos)."""
    rng = random.Random(7)
    cdf = list(itertools.accumulate(1.0 / (k**s) for k in range(1, keys + 1)))
    ranks = list(range(keys))
    rng.shuffle(ranks)
    ids: list[str] = []
    absent = 0
    for i in range(samples):
        if rng.random() < missing:
            ids.append(missing_id(i))
            absent += 1
        else:
            n = ranks[bisect.bisect_left(cdf, rng.random() * cdf[-1])]
            ids.append(parse(owner_and_id(n)[1]).canonical)
    return Requests(ids=ids, missing=absent)


def static_files(root: Path, keys: int) -> None:
    """Every record as a file under ``root``/api/handles, for nginx."""
    base = root / "api" / "handles"
    made: set[Path] = set()
    for n in range(keys):
        path = base / parse(owner_and_id(n)[1]).canonical
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(body_of(n))


def dump_lines(keys: int) -> Iterator[bytes]:
    """``/api/handles/<id> <body>`` per record, for the aiohttp floor."""
    for n in range(keys):
        yield b"/api/handles/%s %s\n" % (parse(owner_and_id(n)[1]).canonical.encode(), body_of(n))
