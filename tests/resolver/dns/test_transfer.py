"""Zone transfer: dnspython takes the zones whole, and Knot DNS serves a node's zone as
a real secondary, kept current by NOTIFY as the node's chain grows."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest
import pytest_asyncio

from tests.resolver.dns.conftest import (
    ADDRESSES,
    SECONDARY,
    SECONDARY_PORT,
    ZONE,
    DnsNet,
    record,
)
from tests.resolver.dns.test_stock_peers import name_of, need

pytestmark = pytest.mark.asyncio
SUB_ZONE = "100.88.handle." + ZONE
IN = dns.rdataclass.IN


def take(net: DnsNet, node: str, zone: str, **kw: object) -> dns.zone.Zone:
    return dns.zone.from_xfr(
        dns.query.xfr(ADDRESSES[node], zone, port=net.port, timeout=5, lifetime=20, **kw)
    )


async def test_the_super_nodes_zone_delegates_every_first_cut_with_glue(dns_net: DnsNet) -> None:
    zone = await asyncio.to_thread(take, dns_net, "super", ZONE)
    delegations = {
        name.to_text(): [r.target.to_text() for r in node.get_rdataset(IN, dns.rdatatype.NS) or []]
        for name, node in zone.nodes.items()
        if node.get_rdataset(IN, dns.rdatatype.NS) is not None
    }
    assert delegations == {
        "@": ["super.ns"],
        "6.gtin.gs1.id": ["backbone.ns"],
        "6.gln.gs1.id": ["backbone.ns"],
        "6.sscc.gs1.id": ["backbone.ns"],
        "88.handle": ["backbone.ns"],
        "156.2.1.oid-res": ["backbone.ns"],
        "bid": ["super.ns"],  # the main chain: a zone of the super node's own
    }
    glue = {
        name.to_text(): str(node.get_rdataset(IN, dns.rdatatype.A)[0])
        for name, node in zone.nodes.items()
        if node.get_rdataset(IN, dns.rdatatype.A) is not None
    }
    assert glue == {f"{n}.ns": a for n, a in ADDRESSES.items()}
    # the main chain's zone delegates the sub-chain code handed down whole to its last
    # holder, and holds the main chain's DIDs
    bid = await asyncio.to_thread(take, dns_net, "super", "bid." + ZONE)
    assert [r.target.to_text() for r in bid.find_rdataset("ab12", dns.rdatatype.NS)] == [
        "sub.ns.idres.internal."
    ]
    assert any(n.to_text().startswith("b32-") for n in bid.nodes)  # the main chain's DID


async def test_a_sub_chains_zone_holds_its_records_and_no_others(dns_net: DnsNet) -> None:
    zone = await asyncio.to_thread(take, dns_net, "sub", SUB_ZONE)
    (uri,) = zone.find_rdataset("ABC-123._.1", dns.rdatatype.URI)
    assert uri.target == b"https://example.com/products/ABC-123"
    names = {n.to_text() for n in zone.nodes}
    assert names == {"@", "ABC-123._.1"}  # the GTIN and the OID are in other zones
    assert zone.get_soa().mname.to_text() == "sub.ns.idres.internal."


@pytest.mark.parametrize(
    ("node", "zone", "source", "rcode"),
    [
        ("backbone", SUB_ZONE, None, dns.rcode.NOTAUTH),  # not its zone
        ("sub", "1.100.88.handle." + ZONE, None, dns.rcode.NOTAUTH),  # no zone starts there
        ("sub", SUB_ZONE, "127.0.0.9", dns.rcode.REFUSED),  # not an address it serves
    ],
)
async def test_transfers_it_may_not_give_are_refused(
    dns_net: DnsNet, node: str, zone: str, source: str | None, rcode: dns.rcode.Rcode
) -> None:
    query = dns.message.make_query(zone, dns.rdatatype.AXFR)
    response = await dns.asyncquery.tcp(
        query, ADDRESSES[node], port=dns_net.port, timeout=5, source=source
    )
    assert response.rcode() == rcode
    assert not response.answer


async def test_a_current_secondary_gets_the_soa_alone(dns_net: DnsNet) -> None:
    soa = await dns.asyncquery.udp(
        dns.message.make_query(SUB_ZONE, "SOA"), ADDRESSES["sub"], port=dns_net.port, timeout=5
    )
    serial = soa.answer[0][0].serial
    query = dns.message.make_query(SUB_ZONE, dns.rdatatype.IXFR)
    query.authority.append(soa.answer[0])  # "I have this serial" (RFC 1995 §3)
    response = await dns.asyncquery.tcp(query, ADDRESSES["sub"], port=dns_net.port, timeout=5)
    assert [(r.rdtype, r[0].serial) for r in response.answer] == [(dns.rdatatype.SOA, serial)]


@pytest_asyncio.fixture
async def knot(dns_net: DnsNet, tmp_path: Path) -> AsyncIterator[None]:
    """Knot DNS as a secondary of the sub-chain's zone, told of changes by NOTIFY."""
    program = shutil.which("knotd") or need("knotd")
    conf = tmp_path / "knot.conf"
    conf.write_text(f"""
server:
    rundir: "{tmp_path}"
    listen: {SECONDARY}@{SECONDARY_PORT}
database:
    storage: "{tmp_path}"
log:
  - target: stderr
    any: info
remote:
  - id: primary
    address: {ADDRESSES["sub"]}@{dns_net.port}
acl:
  - id: from_primary
    address: {ADDRESSES["sub"]}
    action: notify
template:
  - id: default
    storage: "{tmp_path}"
    zonefile-sync: -1
    zonefile-load: none
zone:
  - domain: {SUB_ZONE}
    master: primary
    acl: from_primary
""")
    proc = await asyncio.create_subprocess_exec(
        program, "-c", str(conf), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        yield
    finally:
        proc.terminate()
        await proc.communicate()


async def secondary(qname: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(qname, rdtype)
    return await dns.asyncquery.udp(query, SECONDARY, port=SECONDARY_PORT, timeout=2)


async def until(qname: str, rdtype: str, *, rcode: dns.rcode.Rcode) -> dns.message.Message:
    deadline = time.monotonic() + 20
    while True:
        try:
            response = await secondary(qname, rdtype)
            if response.rcode() == rcode and (response.answer or rcode != dns.rcode.NOERROR):
                return response
        except (dns.exception.Timeout, OSError):
            pass
        assert time.monotonic() < deadline, f"Knot never answered {qname} {rdtype} {rcode}"
        await asyncio.sleep(0.2)


async def test_knot_as_a_secondary_answers_as_the_node_does(dns_net: DnsNet, knot: None) -> None:
    handle = name_of("88.100.1/ABC-123")
    for rdtype in ("URI", "TXT"):
        from_knot = await until(handle, rdtype, rcode=dns.rcode.NOERROR)
        direct = await dns.asyncquery.udp(
            dns.message.make_query(handle, rdtype), ADDRESSES["sub"], port=dns_net.port, timeout=5
        )
        assert from_knot.answer == direct.answer
    missing = await until(name_of("88.100.1/NOT-THERE"), "URI", rcode=dns.rcode.NXDOMAIN)
    assert missing.authority[0].rdtype == dns.rdatatype.SOA
    # a new record: the node's next block raises the serial, NOTIFY tells Knot, which
    # transfers the zone again and answers it
    await dns_net.stores["sub"].put(
        record("88.100.1/LATER", [("URL", "https://example.com/later", 300)]), actor="test"
    )
    later = await until(name_of("88.100.1/LATER"), "URI", rcode=dns.rcode.NOERROR)
    assert [r.target for r in later.answer[0]] == [b"https://example.com/later"]
