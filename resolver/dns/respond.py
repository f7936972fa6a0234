"""One DNS query in, one response out: a node's DNS face (RFC 1034 §4.3.2, RFC 1035).

Iterative queries (RD clear, as a recursive resolver sends) get what an authoritative
server gives: answers for this node's zones, referrals with glue for the zones below,
REFUSED for the rest. A query with RD set for an identifier this node does not hold is
resolved as the HTTP API would resolve it (cache, copies, the next node) and answered
without AA. Every packet gets a defined answer or, when it has no header to answer
(under 12 bytes, or a response), none.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.SOA import SOA

from registry.httpio import TooManyRequests
from resolver.budget import UPSTREAM_BUDGET, BudgetConfig, Budgets
from resolver.dns.names import Named, NodeHost, ns_host
from resolver.dns.rdata import rrsets
from resolver.dns.transfer import ZoneSource, messages, zone_rrsets
from resolver.dns.zone import (
    REFERRAL_TTL,
    Below,
    Elsewhere,
    Here,
    Zones,
    address,
    cut_above,
    glue,
    ns_rrset,
    place_of,
    where,
)
from resolver.service import Answer, Resolver
from resolver.topology import Directory
from resolver.wirecache import HEADER, Kept, WireCache
from schemas.errors import IdresError
from schemas.identifiers import Scheme

IN = dns.rdataclass.IN
MAX_UDP_PAYLOAD = 1232  # what we offer and send at most over UDP (DNS flag day 2020)
# Schemes whose names nothing sits below: a missing identifier there is NXDOMAIN. An
# OID or an Ecode may have longer ones below it, so a missing one has no data instead
# (RFC 8020 §2: NXDOMAIN would deny the whole subtree).
_LEAVES = frozenset({Scheme.GTIN, Scheme.GLN, Scheme.SSCC, Scheme.HANDLE, Scheme.DID_BID})
_ZONE_TYPES = frozenset({dns.rdatatype.SOA, dns.rdatatype.NS})
_META = frozenset({dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY})
# what an identifier's name holds: RD queries for these may be resolved elsewhere
_DATA = frozenset({dns.rdatatype.NAPTR, dns.rdatatype.URI, dns.rdatatype.TXT, dns.rdatatype.ANY})
STALE_TTL = 30  # a stale copy handed on while the next node is down (RFC 8767 §5)
HEARD_TTL = 60  # an answer of another node's whose age here is not known
# RD lookups of other nodes all askers together may start (a UDP source is forgeable)
DNS_UPSTREAM_BUDGET = BudgetConfig(rate=500.0, burst=1_000.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsConfig:
    zone: dns.name.Name
    negative_ttl: int = 60  # SOA minimum: how long a "no such name" is kept (RFC 2308 §5)
    hostmaster: str = "hostmaster"
    # who may transfer this node's zones (AXFR, IXFR): addresses; None: anyone
    transfer_to: frozenset[str] | None = frozenset({"127.0.0.1", "::1"})


@dataclass(frozen=True, slots=True)
class Transfer:
    """A zone transfer's messages, for the TCP connection that asked (RFC 5936 §2.2)."""

    messages: AsyncGenerator[bytes, None]


class Face:
    """A node's DNS answers: ``answer`` takes a query's wire bytes."""

    def __init__(
        self,
        *,
        name: str,
        directory: Callable[[], Directory],
        resolver: Resolver,
        config: DnsConfig,
        source: ZoneSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.directory = directory
        self.resolver = resolver
        self.config = config
        self.source = source  # the zones' content and serial, for transfers
        self.clock = clock
        self.counted = 0  # queries answered
        self.height = 0  # the node's chain height (DnsServer keeps it): see zone_serial
        # what RD queries may make this node ask others: per asker, and all together
        # (a UDP source address is easy to forge)
        self.budgets = Budgets(UPSTREAM_BUDGET)
        self.all_askers = Budgets(DNS_UPSTREAM_BUDGET)
        # UDP answers as sent, kept while a notice feed can tell of each change
        self.wires: WireCache | None = None
        self._seen: Directory | None = None  # the directory the kept answers came from
        self._zones: tuple[Directory, Zones] | None = None
        if resolver.forgetters is not None:
            self.wires = WireCache()
            resolver.forgetters.append(self.wires.forget)

    def cached(self, wire: bytes) -> bytes | None:
        """The kept answer to a UDP query, or None: ``answer`` must work it out."""
        if self.wires is None:
            return None
        found = self.wires.answer(wire)
        if found is not None:
            self.counted += 1
        return found

    def check_directory(self) -> None:
        """Forget the kept answers when the directory changed: referrals and glue may
        all be different now (DnsServer calls it often)."""
        directory = self.directory()
        if directory is not self._seen:
            if self.wires is not None:
                self.wires.forget(None)
            self._seen = directory

    def zone_serial(self, height: int | None = None) -> int:
        """The zones' SOA serial: the node's chain height plus the newest delegation's
        issue time, so that a block and a directory change both raise it (RFC 1982
        arithmetic, 32 bits: room for decades of both)."""
        issued = self.zones().issued
        return (issued + (self.height if height is None else height)) % 2**32

    def apexes(self) -> list[dns.name.Name]:
        """Where this node's zones start."""
        return [c.apex for c in self.zones().of(self.name)]

    def zones(self) -> Zones:
        """The network's zones under the current directory (worked out once for each)."""
        directory = self.directory()
        if self._zones is None or self._zones[0] is not directory:
            self._zones = (directory, Zones(directory, self.config.zone))
        return self._zones[1]

    async def answer(self, wire: bytes, *, tcp: bool, peer: str = "") -> bytes | Transfer | None:
        """The response to ``wire``; a ``Transfer`` for AXFR or IXFR over TCP; None when
        there is nothing to answer. A UDP answer that may be kept is kept here."""
        generation = self.wires.generation if self.wires is not None else 0
        out, kept = await self._respond(wire, tcp=tcp, peer=peer, fresh=False)
        if kept is not None and self.wires is not None and isinstance(out, bytes):
            self.wires.keep(wire, out, kept.ttl, kept.about, generation)
        return out

    async def answer_for_edge(
        self, wire: bytes, *, peer: str, fill: bool
    ) -> tuple[bytes | None, Kept | None]:
        """The response to a UDP query the node's edge passed on, and, when ``fill``,
        how long the edge may keep it: then it is read fresh (never from this worker's
        caches, which may not have heard of a change the edge has), as the HTTP edge's
        fills are (resolver/front.py)."""
        out, kept = await self._respond(wire, tcp=False, peer=peer, fresh=fill)
        if isinstance(out, Transfer):  # AXFR over UDP is refused before this
            return None, None
        return out, kept if fill else None

    async def _respond(
        self, wire: bytes, *, tcp: bool, peer: str, fresh: bool
    ) -> tuple[bytes | Transfer | None, Kept | None]:
        self.counted += 1
        if len(wire) < HEADER or wire[2] & 0x80:  # no header to answer, or a response
            return None, None
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return formerr(wire), None
        if query.opcode() != dns.opcode.QUERY:
            return _error(query, dns.rcode.NOTIMP), None
        if query.edns > 0:  # RFC 6891 §6.1.3
            return _error(query, dns.rcode.BADVERS), None
        if len(query.question) != 1:
            return _error(query, dns.rcode.FORMERR), None
        question = query.question[0]
        if question.rdtype in _META:
            return _error(query, dns.rcode.FORMERR), None
        if question.rdclass != IN:
            return _error(query, dns.rcode.REFUSED), None
        if question.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            return await self._transfer(query, tcp=tcp, peer=peer), None
        response = dns.message.make_response(query, our_payload=MAX_UDP_PAYLOAD)
        response.flags |= dns.flags.RA
        if question.rdtype == dns.rdatatype.ANY and not tcp:
            # RFC 8482 §4.4: no amplification; the asker may ask again over TCP
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=512), None
        self.check_directory()
        directory = self._seen
        keep, about = await self._fill(
            response, question.name, question.rdtype, query.flags & dns.flags.RD, peer, fresh
        )
        out = _wire(response, query, tcp)
        if not keep or tcp or directory is not self.directory():
            return out, None
        ttl = _keepable(response)
        return out, None if ttl is None else Kept(ttl, about)

    async def _transfer(
        self, query: dns.message.Message, *, tcp: bool, peer: str
    ) -> bytes | Transfer:
        question = query.question[0]
        allowed = self.config.transfer_to
        if self.source is None or (allowed is not None and peer not in allowed):
            return _error(query, dns.rcode.REFUSED)
        directory = self.directory()
        zones = self.zones()
        cut = next((c for c in zones.of(self.name) if c.apex == question.name), None)
        if cut is None:  # not a zone of this node's (RFC 5936 §2.2.1)
            return _error(query, dns.rcode.NOTAUTH)
        try:
            serial = self.zone_serial(await self.source.serial())
        except IdresError:  # the database away
            return _error(query, dns.rcode.SERVFAIL)
        soa = self._soa(cut.apex, self.name, serial)
        asked = [r for r in query.authority if r.rdtype == dns.rdatatype.SOA]
        current = bool(asked) and _not_before(asked[0][0].serial, serial)
        if question.rdtype == dns.rdatatype.IXFR and (current or not tcp):
            # current: the SOA alone says so; over UDP it says "ask again over TCP"
            # (RFC 1995 §2, §4)
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            response.answer.append(soa)
            return response.to_wire(max_size=512 if not tcp else 65535)
        if not tcp:  # RFC 5936 §4.2: AXFR only over TCP
            return _error(query, dns.rcode.REFUSED)
        rrsets_ = zone_rrsets(cut, zones, directory, self.source, soa, self.clock)
        return Transfer(messages(query, rrsets_))

    async def _fill(
        self,
        response: dns.message.Message,
        qname: dns.name.Name,
        qtype: int,
        rd: int,
        peer: str,
        fresh: bool = False,
    ) -> tuple[bool, str | None]:
        """Fill ``response``; whether it may be kept, and the identifier it is about, if
        any (a change to it makes the answer old). ``fresh``: read past every cache."""
        zone = self.config.zone
        if not qname.is_subdomain(zone):
            response.set_rcode(dns.rcode.REFUSED)
            return False, None
        directory = self.directory()
        place, nearest = place_of(qname, zone)
        spot = where(nearest, qname, self.name, directory, zone)
        about = place.ident.canonical if isinstance(place, Named) else None
        if isinstance(place, Named) and rd and qtype in _DATA and not isinstance(spot, Here):
            kept = await self._recurse(response, place, qname, qtype, directory, peer, fresh)
            return kept, about
        if isinstance(spot, Elsewhere):
            response.set_rcode(dns.rcode.REFUSED)
            return False, None
        if isinstance(spot, Below) and qtype == dns.rdatatype.DS and qname == spot.cut:
            # DS lives on the parent's side of a cut (RFC 4035 §3.1.4.1): none here
            response.flags |= dns.flags.AA
            above = self.zones().enclosing(qname, strictly=True)
            self._negative(response, above.apex, self.name, nxdomain=False)
            return True, None
        if isinstance(spot, Below):
            self._referral(response, spot)
            return True, None  # the directory's: forgotten when it changes
        response.flags |= dns.flags.AA
        if qname == spot.apex and qtype in (*_ZONE_TYPES, dns.rdatatype.ANY):
            self._apex(response, spot.apex, qtype)
            return False, None  # the SOA's serial moves with each block
        if place is None:
            self._negative(response, spot.apex, self.name, nxdomain=True)
        elif isinstance(place, Named) and self.resolver.absent(place.ident.canonical):
            # certainly not among the node's records (resolver.known): no query. The
            # filter is this worker's: a fresh answer may not come from it (kept, it
            # could outlive a write the filter has not heard of yet)
            self._negative(response, spot.apex, self.name, nxdomain=place.ident.scheme in _LEAVES)
            if fresh:
                return False, about
        elif isinstance(place, Named):
            answer = await self._lookup(response, place, None, fresh)
            if answer is not None:
                self._records(response, place, qname, qtype, answer, spot.apex, self.name)
                if answer.stale:
                    return False, about
        elif isinstance(place, NodeHost):
            self._host(response, place, qname, qtype, directory, spot.apex)
        else:
            self._negative(response, spot.apex, self.name, nxdomain=False)
        return True, about

    async def _lookup(
        self, response: dns.message.Message, place: Named, peer: str | None, fresh: bool = False
    ) -> Answer | None:
        """The identifier's answer; ``peer``: the asker whose budget a lookup of
        another node spends (None: this node's own records, no lookup)."""

        def permit() -> bool:
            now = self.clock()
            return self.all_askers.take("*", now) and self.budgets.take(peer or "", now)

        try:
            return await self.resolver.resolve(
                place.ident, permit=None if peer is None else permit, fresh=fresh
            )
        except TooManyRequests:  # RFC 8906 §3.1.4: a policy refusal
            response.set_rcode(dns.rcode.REFUSED)
        except IdresError:  # the next node failed, a loop
            response.set_rcode(dns.rcode.SERVFAIL)
        return None

    async def _recurse(
        self,
        response: dns.message.Message,
        place: Named,
        qname: dns.name.Name,
        qtype: int,
        directory: Directory,
        peer: str,
        fresh: bool,
    ) -> bool:
        """Answer as the HTTP API resolves (cache, copies, the next node); whether the
        answer may be kept."""
        answer = await self._lookup(response, place, peer, fresh)
        if answer is None:
            return False
        route = self.resolver.route(place.ident)
        holder = route.authority
        if holder is None or route.prefix is None:  # nothing holds it: the super says so
            apex, node = self.config.zone, directory.ancestors(self.name)[-1]
        else:
            apex = cut_above(qname, route.prefix, self.config.zone)
            node = holder.name
        # not ours: the holder's TTLs, but no longer than this node may keep the answer
        # (a stale copy while the next node is down: briefly, RFC 8767 §5)
        cap = STALE_TTL if answer.stale else answer.ttl if answer.ttl is not None else HEARD_TTL
        self._records(response, place, qname, qtype, answer, apex, node, cap)
        return not answer.stale

    def _records(
        self,
        response: dns.message.Message,
        place: Named,
        qname: dns.name.Name,
        qtype: int,
        answer: Answer,
        apex: dns.name.Name,
        node: str,
        cap: float | None = None,
    ) -> None:
        body = json.loads(answer.body)
        if answer.status == 404 or body.get("responseCode") == 100:
            self._negative(response, apex, node, nxdomain=place.ident.scheme in _LEAVES)
            return
        if answer.status >= 500:
            response.set_rcode(dns.rcode.SERVFAIL)
            return
        found = rrsets(qname, place.ident, body, self.clock())
        wanted = [r for r in found if qtype in (r.rdtype, dns.rdatatype.ANY)]
        for rrset in wanted:
            if cap is not None and rrset.ttl > cap:
                rrset.ttl = int(cap)
        if not wanted:
            self._negative(response, apex, node, nxdomain=False)
        response.answer.extend(wanted)

    def _apex(self, response: dns.message.Message, apex: dns.name.Name, qtype: int) -> None:
        if qtype in (dns.rdatatype.SOA, dns.rdatatype.ANY):
            response.answer.append(self._soa(apex, self.name))
        if qtype in (dns.rdatatype.NS, dns.rdatatype.ANY):
            me = self.directory().by_name[self.name]
            response.answer.append(ns_rrset(apex, me, self.config.zone, REFERRAL_TTL))
            response.additional.extend(glue(me, self.config.zone))

    def _host(
        self,
        response: dns.message.Message,
        place: NodeHost,
        qname: dns.name.Name,
        qtype: int,
        directory: Directory,
        apex: dns.name.Name,
    ) -> None:
        node = next(
            (d for d in directory.by_name.values() if ns_host(d.name, self.config.zone) == qname),
            None,
        )
        if node is None or address(node) is None:
            self._negative(response, apex, self.name, nxdomain=True)
            return
        found = [r for r in glue(node, self.config.zone) if qtype in (r.rdtype, dns.rdatatype.ANY)]
        for rrset in found:
            response.answer.append(dns.rrset.from_rdata_list(qname, rrset.ttl, list(rrset)))
        if not found:
            self._negative(response, apex, self.name, nxdomain=False)

    def _referral(self, response: dns.message.Message, spot: Below) -> None:
        zone = self.config.zone
        response.authority.append(ns_rrset(spot.cut, spot.node, zone, REFERRAL_TTL))
        response.additional.extend(glue(spot.node, zone))

    def _negative(
        self, response: dns.message.Message, apex: dns.name.Name, node: str, *, nxdomain: bool
    ) -> None:
        if nxdomain:
            response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(self._soa(apex, node))

    def _soa(self, apex: dns.name.Name, node: str, serial: int | None = None) -> dns.rrset.RRset:
        """The SOA a negative answer carries: its minimum and its own TTL say how long
        the answer may be kept (RFC 2308 §3, §5)."""
        zone = self.config.zone
        ttl = self.config.negative_ttl
        soa = SOA(
            IN,
            dns.rdatatype.SOA,
            ns_host(node, zone),
            dns.name.Name((self.config.hostmaster.encode(), *zone.labels)),
            self.zone_serial() if serial is None else serial,
            3600,
            600,
            86400,
            ttl,
        )
        return dns.rrset.from_rdata(apex, ttl, soa)


def _not_before(theirs: int, ours: int) -> bool:
    """Whether serial ``theirs`` is ``ours`` or after it (RFC 1982 §3.2)."""
    return theirs == ours or 0 < (theirs - ours) % 2**32 < 2**31


def _keepable(response: dns.message.Message) -> float | None:
    """How long an answer may be kept: its least TTL; None for an answer not to keep
    (a failure, a truncated one, one with no records to take a TTL from)."""
    if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return None
    if response.flags & dns.flags.TC:
        return None
    ttls = [r.ttl for r in (*response.answer, *response.authority)]
    return float(min(ttls)) if ttls else None


def _wire(response: dns.message.Message, query: dns.message.Message, tcp: bool) -> bytes:
    """The response's bytes; over UDP, cut to the asker's size with TC set (RFC 2181 §9)."""
    limit = 65535 if tcp else max(512, min(query.payload, MAX_UDP_PAYLOAD))
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:  # over TCP too: a client can do nothing with more
        response.flags |= dns.flags.TC
    except dns.exception.DNSException:  # a record DNS cannot carry (an RR over 64 KiB)
        response.set_rcode(dns.rcode.SERVFAIL)
    response.answer.clear()
    response.authority.clear()
    response.additional.clear()
    return response.to_wire(max_size=limit)


def _error(query: dns.message.Message, rcode: dns.rcode.Rcode) -> bytes:
    response = dns.message.make_response(query, our_payload=MAX_UDP_PAYLOAD)
    response.set_rcode(rcode)
    if rcode == dns.rcode.BADVERS:
        response.use_edns(0, 0, MAX_UDP_PAYLOAD)
        response.set_rcode(rcode)
    return response.to_wire(max_size=512)


def formerr(wire: bytes) -> bytes:
    """FORMERR for a packet the parser refused: its ID and opcode, no sections (RFC
    1035 §4.1.1: the header is all we can trust)."""
    flags = 0x8000 | (wire[2] & 0x79) << 8 | dns.rcode.FORMERR  # QR, opcode, RD
    return wire[:2] + flags.to_bytes(2, "big") + bytes(8)


__all__ = ["DnsConfig", "Face", "Kept", "Transfer", "formerr"]
