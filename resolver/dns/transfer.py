"""Zone transfer (AXFR, RFC 5936; IXFR, RFC 1995) and NOTIFY (RFC 1996) of a node's zones.

A zone holds its SOA and NS, the NS and glue of each cut just below it, and the
records of the identifiers this node holds whose names fall in it and in no zone
below. Its serial is the height of the node's own chain: a block is what changes it.
IXFR is answered whole, in AXFR form, unless the asker is current (RFC 1995 §4 lets a
server do so); the packing below is pure, the reading is the ``ZoneSource``'s.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Literal, Protocol

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rdatatype
import dns.rrset

from resolver.dns.names import owner
from resolver.dns.rdata import rrsets
from resolver.dns.zone import REFERRAL_TTL, Cut, Zones, glue, ns_rrset
from resolver.topology import Directory, covers
from schemas.errors import InvalidIdentifier
from schemas.identifiers import Namespace, RoutingKey, parse

log = logging.getLogger("idres.dns")
MESSAGE_BYTES = 16_000  # what one transfer message carries at most, well under 64 KiB
MAX_RRSET = 60_000  # bytes: one RRset past this fits no message with its header
_MATCH: dict[Namespace, Literal["exact", "dotted", "digits"]] = {
    Namespace.HANDLE: "dotted",
    Namespace.OID: "dotted",
    Namespace.GS1: "digits",
    Namespace.ECODE: "digits",
    Namespace.BID: "exact",
}


class ZoneSource(Protocol):
    async def serial(self) -> int: ...

    def answers(
        self, routing_prefix: str, *, match: Literal["exact", "dotted", "digits"]
    ) -> AsyncGenerator[tuple[str, bytes], None]: ...


async def zone_rrsets(
    cut: Cut,
    zones: Zones,
    directory: Directory,
    source: ZoneSource,
    soa: dns.rrset.RRset,
    now: Callable[[], float] = time.time,
) -> AsyncGenerator[dns.rrset.RRset, None]:
    """The zone's RRsets in transfer order: SOA first and last (RFC 5936 §2.2), each
    name and type once."""
    zone = zones.zone
    seen: set[tuple[dns.name.Name, int]] = set()

    def fresh(rrset: dns.rrset.RRset) -> bool:
        """Whether ``rrset`` is this zone's and not sent yet."""
        key = (rrset.name, rrset.rdtype)
        if key in seen or zones.enclosing(rrset.name) != cut:
            return False
        seen.add(key)
        return True

    yield soa
    yield ns_rrset(cut.apex, cut.node, zone, soa.ttl)
    for below in zones.cuts:
        if below == cut or zones.enclosing(below.apex, strictly=True) != cut:
            continue
        yield ns_rrset(below.apex, below.node, zone, REFERRAL_TTL)
        for rrset in glue(below.node, zone):  # in the zone: glue, which a referral needs
            if fresh(rrset):
                yield rrset
    for node in directory.by_name.values():  # every node's address this zone holds
        for rrset in glue(node, zone):
            if fresh(rrset):
                yield rrset
    if cut.prefix is not None:
        prefix = cut.prefix
        found = source.answers(str(prefix), match=_MATCH[prefix.namespace])
        async with contextlib.aclosing(found) as rows:
            async for handle, body in rows:
                for rrset in _records(handle, body, prefix, cut, zones, now()):
                    yield rrset
    yield soa


def _records(
    handle: str, body: bytes, prefix: RoutingKey, cut: Cut, zones: Zones, now: float
) -> Iterator[dns.rrset.RRset]:
    try:
        ident = parse(handle)
    except InvalidIdentifier:  # a record stored under a form no longer accepted
        return
    name = owner(ident, zones.zone)
    if name is None or not covers(prefix, ident.routing) or zones.enclosing(name) != cut:
        return
    yield from rrsets(name, ident, json.loads(body), now)


def pack(query: dns.message.Message, rrset_batches: list[dns.rrset.RRset]) -> bytes:
    """One transfer message: the query's ID and question, these RRsets as its answer."""
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    response.answer.extend(rrset_batches)
    return response.to_wire(max_size=65535)


async def messages(
    query: dns.message.Message, rrsets_: AsyncIterator[dns.rrset.RRset]
) -> AsyncGenerator[bytes, None]:
    """The transfer's RRsets in messages of about ``MESSAGE_BYTES`` each."""
    batch: list[dns.rrset.RRset] = []
    size = 0
    async for rrset in rrsets_:
        out = io.BytesIO()
        try:
            rrset.to_wire(out)
        except dns.exception.DNSException:  # a record DNS cannot carry: left out
            log.warning("dns: %s %s left out of a transfer", rrset.name, rrset.rdtype)
            continue
        wire = len(out.getvalue())
        if wire > MAX_RRSET:
            log.warning("dns: %s %s is too big for a transfer", rrset.name, rrset.rdtype)
            continue
        if batch and size + wire > MESSAGE_BYTES:
            yield pack(query, batch)
            batch, size = [], 0
        batch.append(rrset)
        size += wire
    if batch:
        yield pack(query, batch)
