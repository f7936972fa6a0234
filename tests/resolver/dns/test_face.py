"""The DNS face as a stock client sees it: dnspython over UDP and TCP against real nodes."""

from __future__ import annotations

import asyncio
import struct

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from resolver.dns.names import owner, zone_name
from schemas.identifiers import parse
from tests.resolver.dns.conftest import ADDRESSES, DID, MAIN_DID, ZONE, DnsNet, record

ZONE_NAME = zone_name(ZONE)
pytestmark = pytest.mark.asyncio


def name_of(identifier: str) -> dns.name.Name:
    found = owner(parse(identifier), ZONE_NAME)
    assert found is not None
    return found


async def ask(
    net: DnsNet,
    node: str,
    qname: dns.name.Name | str,
    rdtype: str,
    *,
    rd: bool = False,
    tcp: bool = False,
    payload: int | None = 1232,
) -> dns.message.Message:
    if payload is None:
        query = dns.message.make_query(qname, rdtype)
    else:
        query = dns.message.make_query(qname, rdtype, use_edns=0, payload=payload)
    if not rd:
        query.flags &= ~dns.flags.RD
    if tcp:
        return await dns.asyncquery.tcp(query, ADDRESSES[node], port=net.port, timeout=3)
    return await dns.asyncquery.udp(query, ADDRESSES[node], port=net.port, timeout=3)


async def test_a_gtin_in_ons_form_gets_naptr_records_with_the_url(dns_net: DnsNet) -> None:
    qname = name_of("06901234567892")
    # ONS 2.0.1: indicator first, the other digits without the check digit reversed
    assert qname.to_text() == "0.9.8.7.6.5.4.3.2.1.0.9.6.gtin.gs1.id.idres.internal."
    response = await ask(dns_net, "sub", qname, "NAPTR")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    (rrset,) = response.answer
    (naptr,) = list(rrset)
    assert naptr.flags == b"u"
    assert naptr.service == b"http://www.gs1.org/ons/html"
    assert naptr.regexp == b"!^.*$!https://example.com/gtin/06901234567892!"
    assert naptr.replacement == dns.name.root
    assert rrset.ttl == 7200


async def test_an_oid_in_x672_form_gets_naptr_records(dns_net: DnsNet) -> None:
    qname = dns.name.from_text("1.3001.156.2.1.oid-res." + ZONE)
    response = await ask(dns_net, "sub", qname, "NAPTR")
    (naptr,) = list(response.answer[0])
    assert naptr.service == b"ORS+UINF"
    assert naptr.regexp == b"!^.*$!https://example.com/oid/1.2.156.3001.1!"


async def test_a_handle_gets_uri_and_txt_records_with_the_values_ttls(dns_net: DnsNet) -> None:
    qname = name_of("88.100.1/ABC-123")
    assert qname.to_text() == "ABC-123._.1.100.88.handle.idres.internal."
    uri = await ask(dns_net, "sub", qname, "URI")
    (rrset,) = uri.answer
    assert [(r.priority, r.target) for r in rrset] == [(1, b"https://example.com/products/ABC-123")]
    assert rrset.ttl == 3600
    txt = await ask(dns_net, "sub", qname, "TXT")
    (rrset,) = txt.answer
    assert sorted(r.strings for r in rrset) == [
        (b"1", b"URL", b"https://example.com/products/ABC-123"),
        (b"2", b"EMAIL", b"qa@example.com"),
    ]
    assert rrset.ttl == 600  # one TTL an RRset: the least of its values' (RFC 2181 §5.2)


async def test_a_did_bid_gets_records_at_its_name(dns_net: DnsNet) -> None:
    qname = name_of(DID)
    assert qname.labels[1:3] == (b"ab12", b"bid")
    response = await ask(dns_net, "sub", qname, "URI")
    assert [r.target for r in response.answer[0]] == [b"https://example.com/agents/ab12"]
    main = await ask(dns_net, "super", name_of(MAIN_DID), "URI")
    assert [r.target for r in main.answer[0]] == [b"https://example.com/main"]


async def test_the_super_node_refers_down_with_ns_and_glue(dns_net: DnsNet) -> None:
    qname = name_of("06901234567892")
    response = await ask(dns_net, "super", qname, "NAPTR")
    assert response.rcode() == dns.rcode.NOERROR
    assert not response.answer
    assert not response.flags & dns.flags.AA
    (ns,) = response.authority
    assert ns.name.to_text() == "6.gtin.gs1.id.idres.internal."
    assert [r.target.to_text() for r in ns] == ["backbone.ns.idres.internal."]
    (glue,) = response.additional[:1] if response.additional else [None]
    assert glue is not None
    assert [r.address for r in glue] == [ADDRESSES["backbone"]]
    # the backbone refers on to the sub-chain's zone
    below = await ask(dns_net, "backbone", qname, "NAPTR")
    assert below.authority[0].name.to_text() == "0.9.6.gtin.gs1.id.idres.internal."
    assert [r.target.to_text() for r in below.authority[0]] == ["sub.ns.idres.internal."]


async def test_a_prefix_handed_down_whole_is_referred_to_its_last_holder(
    dns_net: DnsNet,
) -> None:
    # backbone holds bid:ab12 and hands it to sub whole: the super names sub, since a
    # referral from backbone to the same zone would be lame
    response = await ask(dns_net, "super", name_of(DID), "URI")
    assert response.authority[0].name.to_text() == "ab12.bid.idres.internal."
    assert [r.target.to_text() for r in response.authority[0]] == ["sub.ns.idres.internal."]


async def test_with_recursion_desired_any_node_answers_without_authority(
    dns_net: DnsNet,
) -> None:
    response = await ask(dns_net, "super", name_of("88.100.1/ABC-123"), "URI", rd=True)
    assert response.rcode() == dns.rcode.NOERROR
    assert not response.flags & dns.flags.AA
    assert response.flags & dns.flags.RA
    assert [r.target for r in response.answer[0]] == [b"https://example.com/products/ABC-123"]
    # and from a sub-chain, up the tree
    up = await ask(dns_net, "sub", name_of("88.7/LOT-1"), "URI", rd=True)
    assert [r.target for r in up.answer[0]] == [b"https://example.com/lots/1"]


async def test_a_missing_identifier_is_nxdomain_with_the_zones_soa(dns_net: DnsNet) -> None:
    response = await ask(dns_net, "sub", name_of("06901234567885"), "NAPTR")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.flags & dns.flags.AA
    (soa,) = response.authority
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.name.to_text() == "0.9.6.gtin.gs1.id.idres.internal."
    assert soa[0].minimum == 60
    assert soa.ttl == 60
    # the same through recursion: the holder's zone and SOA
    far = await ask(dns_net, "super", name_of("88.100.1/NOPE"), "URI", rd=True)
    assert far.rcode() == dns.rcode.NXDOMAIN
    assert far.authority[0].name.to_text() == "100.88.handle.idres.internal."


async def test_names_between_zones_have_no_data_and_are_not_nxdomain(dns_net: DnsNet) -> None:
    # a resolver minimising its questions (RFC 9156) asks for these on the way down
    for node, name in [
        ("super", "gs1.id." + ZONE),
        ("super", "handle." + ZONE),
        ("backbone", "_.7.88.handle." + ZONE),
        ("sub", "5.4.0.9.6.gtin.gs1.id." + ZONE),
    ]:
        response = await ask(dns_net, node, name, "A")
        assert response.rcode() == dns.rcode.NOERROR, name
        assert not response.answer, name
        assert response.authority[0].rdtype == dns.rdatatype.SOA, name


async def test_each_zone_apex_has_its_soa_and_ns(dns_net: DnsNet) -> None:
    soa = await ask(dns_net, "sub", "100.88.handle." + ZONE, "SOA")
    assert soa.answer[0][0].mname.to_text() == "sub.ns.idres.internal."
    ns = await ask(dns_net, "super", ZONE, "NS")
    assert [r.target.to_text() for r in ns.answer[0]] == ["super.ns.idres.internal."]
    host = await ask(dns_net, "super", "backbone.ns." + ZONE, "A")
    assert [r.address for r in host.answer[0]] == [ADDRESSES["backbone"]]


@pytest.mark.parametrize(
    ("node", "qname", "rcode"),
    [
        ("super", "nothing-here." + ZONE, dns.rcode.NXDOMAIN),  # no such subtree
        ("super", "x.y._.7.88.handle." + ZONE, dns.rcode.NOERROR),  # referred: below 88
        ("sub", "a.b._.100.88.handle." + ZONE, dns.rcode.NXDOMAIN),  # under a suffix
        ("sub", "12.gtin.gs1.id." + ZONE, dns.rcode.REFUSED),  # not its zone, RD clear
        ("sub", "example.com.", dns.rcode.REFUSED),  # not the network's zone
    ],
)
async def test_names_no_identifier_can_have(
    dns_net: DnsNet, node: str, qname: str, rcode: dns.rcode.Rcode
) -> None:
    response = await ask(dns_net, node, qname, "TXT")
    assert response.rcode() == rcode


async def test_an_answer_too_big_for_udp_is_truncated_and_whole_over_tcp(
    dns_net: DnsNet,
) -> None:
    long = [("DESC", "x" * 200, 60) for _ in range(8)]
    await dns_net.stores["sub"].put(record("88.100.1/BIG", long), actor="test")
    qname = name_of("88.100.1/BIG")
    for _ in range(50):  # NXDOMAIN until the write's notice reaches the node's filter
        udp = await ask(dns_net, "sub", qname, "TXT", payload=None)  # 512 bytes, RFC 1035
        if udp.rcode() != dns.rcode.NXDOMAIN:
            break
        await asyncio.sleep(0.05)
    assert udp.flags & dns.flags.TC
    assert not udp.answer
    tcp = await ask(dns_net, "sub", qname, "TXT", tcp=True)
    assert len(tcp.answer[0]) == 8


async def test_a_new_record_is_answered_once_its_notice_arrives(dns_net: DnsNet) -> None:
    qname = name_of("88.100.1/NEW")
    before = await ask(dns_net, "sub", qname, "URI")
    assert before.rcode() == dns.rcode.NXDOMAIN  # and kept: the name is asked again below
    await dns_net.stores["sub"].put(
        record("88.100.1/NEW", [("URL", "https://example.com/new", 60)]), actor="test"
    )
    for _ in range(50):  # the write's notice arrives within milliseconds
        after = await ask(dns_net, "sub", qname, "URI")
        if after.answer:
            break
        await asyncio.sleep(0.05)
    assert [r.target for r in after.answer[0]] == [b"https://example.com/new"]


# Bad input: raw packets, each with a defined answer or none, and the node still answers.


async def raw_udp(net: DnsNet, node: str, packet: bytes, wait: float = 1.0) -> bytes | None:
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Catch(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            if not got.done():
                got.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(
        Catch, remote_addr=(ADDRESSES[node], net.port)
    )
    try:
        transport.sendto(packet)
        return await asyncio.wait_for(got, wait)
    except TimeoutError:
        return None
    finally:
        transport.close()


def header(qid: int = 0x1234, flags: int = 0, qd: int = 1, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, 0, 0, ar)


QUESTION = b"\x05idres\x08internal\x00\x00\x06\x00\x01"  # idres.internal. SOA IN


@pytest.mark.parametrize(
    ("packet", "rcode"),
    [
        (header() + QUESTION[:9], dns.rcode.FORMERR),  # truncated in the question
        (header() + b"\xc0\x0c\x00\x01\x00\x01", dns.rcode.FORMERR),  # pointer to itself
        (header(qd=2) + QUESTION + QUESTION, dns.rcode.FORMERR),  # two questions
        (header() + QUESTION[:-2] + b"\x00\x03", dns.rcode.REFUSED),  # class CHAOS
        (header() + QUESTION + b"\x00", dns.rcode.FORMERR),  # trailing junk
        (header(flags=0x2800) + QUESTION, dns.rcode.NOTIMP),  # opcode UPDATE
        # EDNS version 1 (RFC 6891 §6.1.3): BADVERS, an extended code
        (header(ar=1) + QUESTION + b"\x00\x00\x29\x04\xd0\x00\x01\x00\x00\x00\x00", 16),
        # EDNS with a 0-byte payload: read as 512
        (header(ar=1) + QUESTION + b"\x00\x00\x29\x00\x00\x00\x00\x00\x00\x00\x00", 0),
        (header() + QUESTION[:-4] + b"\x00\xfb\x00\x01", dns.rcode.NOERROR),  # IXFR on UDP: SOA
        (header() + QUESTION[:-4] + b"\x12\x34\x00\x01", dns.rcode.NOERROR),  # unknown type
    ],
)
async def test_bad_packets_get_a_defined_answer(dns_net: DnsNet, packet: bytes, rcode: int) -> None:
    reply = await raw_udp(dns_net, "super", packet)
    assert reply is not None
    assert reply[:2] == b"\x12\x34"
    assert reply[2] & 0x80
    assert dns.message.from_wire(reply).rcode() == rcode
    ok = await ask(dns_net, "super", ZONE, "SOA")
    assert ok.rcode() == dns.rcode.NOERROR


@pytest.mark.parametrize("packet", [b"", b"\x12\x34\x00", header(flags=0x8000) + QUESTION])
async def test_packets_with_nothing_to_answer_get_silence(dns_net: DnsNet, packet: bytes) -> None:
    assert await raw_udp(dns_net, "super", packet, wait=0.3) is None
    assert (await ask(dns_net, "super", ZONE, "SOA")).rcode() == dns.rcode.NOERROR


async def test_tcp_answers_pipelined_queries_in_order_and_closes_on_a_bad_length(
    dns_net: DnsNet,
) -> None:
    reader, writer = await asyncio.open_connection(ADDRESSES["sub"], dns_net.port)
    names = [name_of("88.100.1/ABC-123"), name_of("06901234567892")]
    for i, qname in enumerate(names):
        wire = dns.message.make_query(qname, "URI", id=100 + i).to_wire()
        writer.write(len(wire).to_bytes(2, "big") + wire)
    await writer.drain()
    for i in range(2):
        size = int.from_bytes(await reader.readexactly(2), "big")
        reply = dns.message.from_wire(await reader.readexactly(size))
        assert reply.id == 100 + i
        assert reply.answer[0].name == names[i]
    writer.write(b"\x00\x05hello")  # shorter than any header: the stream is lost
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 3) == b""
    writer.close()


async def test_a_thousand_tcp_connections_at_once_leave_the_node_answering(
    dns_net: DnsNet,
) -> None:
    async def one(i: int) -> bool:
        try:
            reply = await ask(dns_net, "super", ZONE, "SOA", tcp=True)
            return reply.rcode() == dns.rcode.NOERROR
        except (OSError, EOFError, dns.exception.DNSException):
            return False

    results = await asyncio.gather(*(one(i) for i in range(1000)))
    # one address holds 200 connections at most (RFC 7766 §6.2.2): the others are
    # closed at once, and none hangs
    assert sum(results) >= 200
    assert (await ask(dns_net, "super", ZONE, "SOA", tcp=True)).answer


async def test_a_repeated_question_is_answered_as_kept_under_its_own_id(
    dns_net: DnsNet,
) -> None:
    face = dns_net.servers["sub"].face
    assert face.wires is not None  # the node hears of changes: it may keep answers
    first = await ask(dns_net, "sub", "ABC-123._.1.100.88.handle." + ZONE, "URI")
    for _ in range(20):  # an answer worked out across a change (the node announcing
        hits = face.wires.hits  # its delegation as it starts) is not kept: ask again
        again = await ask(dns_net, "sub", "ABC-123._.1.100.88.handle." + ZONE, "URI")
        if face.wires.hits == hits + 1:
            break
        await asyncio.sleep(0.1)
    assert face.wires.hits == hits + 1
    assert again.id != first.id  # its own ID
    assert again.answer == first.answer
    # another case is another question: answered with its own case (0x20, RFC 4343)
    other = await ask(dns_net, "sub", "aBc-123._.1.100.88.HANDLE." + ZONE, "URI")
    assert other.question[0].name.labels[0] == b"aBc-123"
    assert other.answer[0].to_rdataset() == first.answer[0].to_rdataset()
    # a change forgets it: the next answer is worked out again, with the new value
    await dns_net.stores["sub"].put(
        record("88.100.1/ABC-123", [("URL", "https://example.com/changed", 60)]), actor="test"
    )
    for _ in range(50):  # the notice arrives within milliseconds
        changed = await ask(dns_net, "sub", "ABC-123._.1.100.88.handle." + ZONE, "URI")
        if [r.target for r in changed.answer[0]] == [b"https://example.com/changed"]:
            break
        await asyncio.sleep(0.05)
    assert [r.target for r in changed.answer[0]] == [b"https://example.com/changed"]


async def test_ds_at_a_cut_is_answered_by_the_parent_with_no_data(dns_net: DnsNet) -> None:
    # RFC 4035 §3.1.4.1: DS sits on the parent's side of a cut, not the child's
    response = await ask(dns_net, "super", "88.handle." + ZONE, "DS")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert not response.answer
    assert response.authority[0].rdtype == dns.rdatatype.SOA
    assert response.authority[0].name == ZONE_NAME


async def test_any_over_udp_is_truncated_and_answered_whole_over_tcp(dns_net: DnsNet) -> None:
    qname = name_of("06901234567892")
    udp = await ask(dns_net, "sub", qname, "ANY")  # RFC 8482: no amplification
    assert udp.flags & dns.flags.TC
    assert not udp.answer
    tcp = await ask(dns_net, "sub", qname, "ANY", tcp=True)
    assert {r.rdtype for r in tcp.answer} == {
        dns.rdatatype.NAPTR,
        dns.rdatatype.URI,
        dns.rdatatype.TXT,
    }
