"""Nodes in one process for the sync tests: each a relay and a follower on its own
database, super -> backbone-1 -> sub-a; and the steps a test drives them with."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from cryptography.hazmat.primitives.asymmetric import ed25519

from registry.store import PostgresStore
from resolver.topology import Role
from schemas.record import DataFormat, HandleValue, Record
from sync.follow import Follower
from sync.relay import Relay

LAYOUT = [
    ("super", Role.SUPER, None, ()),
    ("backbone-1", Role.BACKBONE, "super", ("88",)),
    ("sub-a", Role.SUBCHAIN, "backbone-1", ("88.100",)),
]


@dataclass
class Node:
    name: str
    pool: asyncpg.Pool
    store: PostgresStore
    relay: Relay
    follower: Follower
    key: ed25519.Ed25519PrivateKey  # the one its delegation names


def url_record(handle: str, url: str) -> Record:
    """A record with one URL value."""
    return Record(
        handle=handle,
        values=(HandleValue(index=1, type="URL", format=DataFormat.STRING, value=url),),
    )


async def flush(node: Node) -> None:
    """Cut every pending operation into blocks and publish them."""
    while await node.relay.cut() is not None:
        pass
    await node.relay.publish()


async def catch_up(node: Node) -> int:
    """Apply every block waiting in the log; how many."""
    applied = 0
    while n := await node.follower.step(wait=2):
        applied += n
    return applied
