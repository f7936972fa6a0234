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

    def adopt(self, delegations: Iterable[Delegation]) -> bool:
        """Merge ``delegations`` (newest issue wins per node) if the result verifies."""
        merged = dict(self.current.by_name)
        for d in delegations:
            held = merged.get(d.name)
            if held is None or d.issued >= held.issued:
                merged[d.name] = d
        if merged == self.current.by_name:
            return False
        try:
            self.current = Directory(list(merged.values()), self.trust_anchor)
        except IdresError as exc:
            log.warning("ignoring directory update that does not verify: %s", exc)
            return False
        return True

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
