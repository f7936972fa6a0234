"""Zone transfer (AXFR, RFC 5936; IXFR, RFC 1995) and NOTIFY (RFC 1996) of a node's zones.

A zone holds its SOA and NS, the NS and glue of each cut just below it, and the
records of the identifiers this node holds whose names fall in it and in no zone
below. Its serial is the height of the node's own chain: a block is what changes it.
IXFR is answered whole, in AXFR form, unless the asker is current (RFC 1995 §4 lets a
server do so); the packing below is pure, the reading is the ``ZoneSource``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rdatatype
import dns.rrset

from resolver.dns.names import cuts, owner
from resolver.dns.rdata import rrsets
from resolver.dns.zone import glue, ns_rrset
from resolver.topology import Delegation, Directory, covers, prefix_key
from schemas.errors import InvalidIdentifier
from schemas.identifiers import Namespace, RoutingKey, parse

log = logging.getLogger("idres.dns")
MESSAGE_BYTES = 16_000  # what one transfer message carries at most, well under 64 KiB
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Cut:
    """Where a zone starts: its apex, the prefix it holds, the node that serves it."""

    apex: dns.name.Name
    prefix: RoutingKey | None  # None: the network's zone itself
    node: Delegation


def zone_cuts(directory: Directory, zone: dns.name.Name) -> list[Cut]:
    """Every zone of the network, the network's own first. A prefix handed down whole
    is served by the last node that holds it."""
    nodes = directory.by_name
    root = next(d for d in nodes.values() if d.parent is None)
    found: dict[dns.name.Name, Cut] = {zone: Cut(apex=zone, prefix=None, node=root)}
    for node in nodes.values():
        depth = len(directory.ancestors(node.name))
        for text in node.prefixes:
            prefix = prefix_key(text)
            for apex in cuts(prefix, zone):
                held = found.get(apex)
                if held is None or len(directory.ancestors(held.node.name)) < depth:
                    found[apex] = Cut(apex=apex, prefix=prefix, node=node)
    return [found[zone], *(c for a, c in found.items() if a != zone)]


def enclosing(name: dns.name.Name, all_cuts: list[Cut], *, strictly: bool = False) -> Cut:
    """The zone ``name`` is in: the deepest cut at or (``strictly``) above it."""
    best = all_cuts[0]
    for cut in all_cuts:
        inside = name.is_subdomain(cut.apex) and (not strictly or name != cut.apex)
        if inside and len(cut.apex) > len(best.apex):
            best = cut
    return best


async def zone_rrsets(
    cut: Cut,
    directory: Directory,
    zone: dns.name.Name,
    source: ZoneSource,
    soa: dns.rrset.RRset,
    now: Callable[[], float] = time.time,
) -> AsyncGenerator[dns.rrset.RRset, None]:
    """The zone's RRsets in transfer order: SOA first and last (RFC 5936 §2.2)."""
    all_cuts = zone_cuts(directory, zone)
    yield soa
    yield ns_rrset(cut.apex, cut.node, zone, soa.ttl)
    for rrset in glue(cut.node, zone):
        if enclosing(rrset.name, all_cuts) == cut:
            yield rrset
    for below in all_cuts:
        if below == cut or enclosing(below.apex, all_cuts, strictly=True) != cut:
            continue
        yield ns_rrset(below.apex, below.node, zone, soa.ttl)
        for rrset in glue(below.node, zone):
            if enclosing(rrset.name, all_cuts) == cut:
                yield rrset
    if cut.prefix is not None:
        prefix = cut.prefix
        rendered = str(prefix)
        async with contextlib.aclosing(
            source.answers(rendered, match=_MATCH[prefix.namespace])
        ) as rows:
            async for handle, body in rows:
                for rrset in _records(handle, body, prefix, cut, all_cuts, zone, now()):
                    yield rrset
    if cut.prefix is None:  # the network's zone holds every node's address
        for node in directory.by_name.values():
            for rrset in glue(node, zone):
                if enclosing(rrset.name, all_cuts) == cut:
                    yield rrset
    yield soa


def _records(
    handle: str,
    body: bytes,
    prefix: RoutingKey,
    cut: Cut,
    all_cuts: list[Cut],
    zone: dns.name.Name,
    now: float,
) -> Iterator[dns.rrset.RRset]:
    try:
        ident = parse(handle)
    except InvalidIdentifier:  # a record stored under a form no longer accepted
        return
    name = owner(ident, zone)
    if name is None or not covers(prefix, ident.routing) or enclosing(name, all_cuts) != cut:
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
        rrset.to_wire(out)
        wire = len(out.getvalue())
        if batch and size + wire > MESSAGE_BYTES:
            yield pack(query, batch)
            batch, size = [], 0
        batch.append(rrset)
        size += wire
    if batch:
        yield pack(query, batch)


async def notify(
    apexes: list[dns.name.Name],
    targets: list[tuple[str, int]],
    serial: int,
    *,
    source: str | None = None,
    tries: int = 5,
    wait: float = 2.0,
) -> None:
    """Tell each secondary that the zones changed (RFC 1996 §3.6: retry until it
    answers, a few times), from ``source``, the address the zones are served on, which
    a secondary's ACL names."""

    async def one(apex: dns.name.Name, host: str, port: int) -> None:
        message = dns.message.make_query(apex, dns.rdatatype.SOA)
        message.flags = dns.flags.AA  # and no RD; the opcode is set after: flags hold it
        message.set_opcode(dns.opcode.NOTIFY)
        for attempt in range(tries):
            try:
                await dns.asyncquery.udp(message, host, port=port, timeout=wait, source=source)
                return
            except (dns.exception.DNSException, OSError, TimeoutError):
                await asyncio.sleep(min(2**attempt * 0.2, 5))
        log.warning(
            "dns: %s:%d never answered the NOTIFY of %s serial %d", host, port, apex, serial
        )

    await asyncio.gather(*(one(a, h, p) for a in apexes for h, p in targets))
