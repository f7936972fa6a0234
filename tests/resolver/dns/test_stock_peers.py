"""Stock DNS software against the DNS face: Knot's kdig asks it, Unbound walks it.

deploy/test.sh installs both from Debian's packages (knot-dnsutils, unbound).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import pytest
import pytest_asyncio

from resolver.dns.names import owner, zone_name
from schemas.identifiers import parse
from schemas.identifiers.did import b58encode
from tests.resolver.dns.conftest import ADDRESSES, DID, ZONE, DnsNet

pytestmark = pytest.mark.asyncio
UNBOUND_AT = "127.0.54.1"


def need(program: str) -> str:
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{program} is missing: deploy/test.sh installs it")
        pytest.skip(f"{program} is not installed here (deploy/test.sh installs it)")
    return found


def name_of(identifier: str) -> str:
    found = owner(parse(identifier), zone_name(ZONE))
    assert found is not None
    return found.to_text()


async def kdig(net: DnsNet, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        need("kdig"),
        f"@{ADDRESSES['sub']}",
        "-p",
        str(net.port),
        "+norec",
        "+timeout=3",
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_kdig_reads_ons_naptr_over_udp_and_tcp(dns_net: DnsNet) -> None:
    for transport in ("+notcp", "+tcp"):
        out = await kdig(dns_net, transport, "NAPTR", name_of("06901234567892"))
        assert "status: NOERROR" in out
        assert "Flags: qr aa" in out
        assert '"!^.*$!https://example.com/gtin/06901234567892!"' in out
        assert '"http://www.gs1.org/ons/html"' in out


async def test_kdig_reads_a_handle_and_a_did_though_it_lowercases_names(
    dns_net: DnsNet,
) -> None:
    handle = await kdig(dns_net, "URI", name_of("88.100.1/ABC-123"))
    assert "abc-123._.1.100.88.handle.idres.internal." in handle  # as kdig sent it
    assert '"https://example.com/products/ABC-123"' in handle
    did = await kdig(dns_net, "URI", name_of(DID))
    assert '"https://example.com/agents/ab12"' in did


async def test_kdig_sees_nxdomain_with_the_soa(dns_net: DnsNet) -> None:
    out = await kdig(dns_net, "URI", name_of("88.100.1/MISSING"))
    assert "status: NXDOMAIN" in out
    assert "100.88.handle.idres.internal." in out
    assert "SOA" in out


@pytest_asyncio.fixture
async def unbound(dns_net: DnsNet, tmp_path: Path) -> AsyncIterator[int]:
    """Unbound as a recursive resolver whose only way in is the super node (a stub
    zone): everything else it learns from the referrals."""
    program = need("unbound")
    if dns_net.port != 53:
        pytest.skip("a resolver follows glue to port 53 only, which this process may not bind")
    port = 5399
    conf = tmp_path / "unbound.conf"
    conf.write_text(f"""
server:
  interface: {UNBOUND_AT}
  port: {port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{tmp_path}"
  pidfile: "{tmp_path}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 1
  module-config: "iterator"
  do-not-query-localhost: no
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  qname-minimisation: yes
  local-zone: "internal." transparent
stub-zone:
  name: "{ZONE}"
  stub-addr: {ADDRESSES["super"]}@53
""")
    proc = await asyncio.create_subprocess_exec(
        program, "-c", str(conf), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        for _ in range(100):  # until it answers
            try:
                query = dns.message.make_query(ZONE, "SOA")
                await dns.asyncquery.udp(query, UNBOUND_AT, port=port, timeout=0.2)
                break
            except (TimeoutError, dns.exception.Timeout, OSError):
                await asyncio.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        await proc.wait()


def asked(net: DnsNet) -> dict[str, int]:
    return {name: net.servers[name].face.counted for name in ADDRESSES}


async def resolve(port: int, identifier: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name_of(identifier), rdtype)
    return await dns.asyncquery.udp(query, UNBOUND_AT, port=port, timeout=5)


async def test_unbound_walks_super_backbone_sub_and_caches(dns_net: DnsNet, unbound: int) -> None:
    before = asked(dns_net)
    first = await resolve(unbound, "88.100.1/ABC-123", "URI")
    assert first.rcode() == dns.rcode.NOERROR
    assert [r.target for r in first.answer[0]] == [b"https://example.com/products/ABC-123"]
    walked = asked(dns_net)
    assert all(walked[n] > before[n] for n in ADDRESSES), (before, walked)  # each was asked
    again = await resolve(unbound, "88.100.1/ABC-123", "URI")
    assert [r.target for r in again.answer[0]] == [b"https://example.com/products/ABC-123"]
    assert asked(dns_net) == walked  # from Unbound's cache
    other = await resolve(unbound, "88.100.1/ABC-123", "TXT")
    assert other.answer
    now = asked(dns_net)
    # the cut down to the sub-chain was cached on the way: only the sub-chain is asked
    assert now["sub"] > walked["sub"]
    assert (now["super"], now["backbone"]) == (walked["super"], walked["backbone"])


async def test_unbound_passes_on_nxdomain(dns_net: DnsNet, unbound: int) -> None:
    missing = "did:bid:ab12:ef" + b58encode(bytes(range(50, 72)))
    response = await resolve(unbound, missing, "URI")
    assert response.rcode() == dns.rcode.NXDOMAIN
    gtin = await resolve(unbound, "06901234567892", "NAPTR")
    assert b"06901234567892" in gtin.answer[0][0].regexp
