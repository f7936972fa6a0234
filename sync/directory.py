"""The directory on the log: delegations published to a compacted topic, keyed by node.

Every node announces the delegation its parent signed; every node reads the topic and
adopts the delegations whose signatures chain to its trust anchor. A delegation that
does not verify is ignored (and logged): the directory a node holds never loses its
verified links to an unverifiable message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import cbor2

from resolver.topology import Delegation, Directory
from schemas.errors import EncodingError, IdresError
from sync.log import DIRECTORY_TOPIC, Log, LogUnavailable

log = logging.getLogger("idres.sync.directory")


def encode_delegation(d: Delegation) -> bytes:
    return cbor2.dumps({"v": 1, "delegation": d.to_json()}, canonical=True)


def decode_delegation(data: bytes) -> Delegation:
    try:
        obj = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise EncodingError(f"directory message is not CBOR: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("v") != 1 or "delegation" not in obj:
        raise EncodingError("directory message must be {v: 1, delegation: {...}}")
    return Delegation.from_json(obj["delegation"])


class LiveDirectory:
    """The directory a node routes by, grown by verified delegations from the log."""

    def __init__(self, initial: Directory, trust_anchor: bytes) -> None:
        self.current = initial
        self.trust_anchor = trust_anchor
        self.offset = 0

    def __call__(self) -> Directory:
        return self.current

    def adopt(self, delegations: Iterable[Delegation]) -> int:
        """Take each newer delegation whose directory still verifies; how many were taken.

        A node keeps its parent: a delegation naming another parent for a known node
        is refused (a neighbour cannot adopt it). Each is tried on its own, in order
        of issue, so one bad message does not discard the good ones beside it.
        """
        taken = 0
        for d in sorted(delegations, key=lambda d: d.issued):
            held = self.current.by_name.get(d.name)
            if held is not None and (d.issued < held.issued or d == held):
                continue
            if held is not None and d.parent != held.parent:
                log.warning(
                    "ignoring delegation of %r by %r: its parent is %r",
                    d.name,
                    d.parent,
                    held.parent,
                )
                continue
            merged = {**self.current.by_name, d.name: d}
            try:
                self.current = Directory(list(merged.values()), self.trust_anchor)
            except IdresError as exc:
                log.warning("ignoring delegation of %r that does not verify: %s", d.name, exc)
                continue
            taken += 1
        return taken

    async def announce(self, log_: Log, delegations: Iterable[Delegation]) -> None:
        await log_.ensure_topic(DIRECTORY_TOPIC, compacted=True)
        for d in delegations:
            await log_.append(DIRECTORY_TOPIC, d.name.encode(), [encode_delegation(d)])

    async def follow(self, log_: Log, *, wait: float = 1.0) -> None:
        """Read the directory topic until cancelled."""
        while True:
            try:
                await log_.ensure_topic(DIRECTORY_TOPIC, compacted=True)
                records = await log_.fetch({DIRECTORY_TOPIC: self.offset}, wait=wait)
            except LogUnavailable as exc:
                log.warning("directory: %s", exc)
                await asyncio.sleep(1.0)
                continue
            found = []
            for r in records:
                self.offset = r.offset + 1
                try:
                    found.append(decode_delegation(r.value))
                except EncodingError as exc:
                    log.warning("directory offset %d ignored: %s", r.offset, exc)
            if found:
                self.adopt(found)
