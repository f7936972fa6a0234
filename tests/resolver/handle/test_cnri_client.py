"""CNRI's own Handle client library (net.handle:handle-client 9.3.1, which the industrial
identifier system's SDKs fork) resolving at idres nodes over TCP and UDP."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.handle_probe import RESPONSE, aprobe
from tests.resolver.handle.conftest import LONG, PRIVATE, SECRET, HandleNet, record

pytestmark = pytest.mark.asyncio
TRANSPORTS = ("--tcp", "--udp")


async def resolve(
    net: HandleNet, node: str, handle: str, *args: str, transport: str = "--tcp"
) -> dict[str, Any]:
    host, port = net.addresses[node]
    status, out = await aprobe("resolve", transport, host, port, handle, *args)
    assert status == RESPONSE, out
    assert out["expired"] is False
    return out


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_record_held_two_nodes_down_resolves_at_the_super_node_with_its_values(
    handle_net: HandleNet, transport: str
) -> None:
    out = await resolve(handle_net, "super", "88.100.1/ABC-123", transport=transport)
    assert out["responseCode"] == 1, out
    assert out["handle"] == "88.100.1/ABC-123"
    values = {v["index"]: v for v in out["values"]}
    assert set(values) == {1, 2}
    url, email = values[1], values[2]
    assert (url["type"], url["data"], url["ttl"], url["ttlType"]) == (
        "URL",
        "https://example.com/products/ABC-123",
        3600,
        0,
    )
    assert (email["type"], email["data"], email["ttl"]) == ("EMAIL", "qa@example.com", 600)
    assert url["timestamp"] > 1_700_000_000  # seconds since 1970, as registered
    assert (url["adminRead"], url["adminWrite"], url["publicRead"], url["publicWrite"]) == (
        True,
        True,
        True,
        False,
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_unregistered_handle_is_handle_not_found(
    handle_net: HandleNet, transport: str
) -> None:
    out = await resolve(handle_net, "backbone", "88.100.1/NOBODY", transport=transport)
    assert out["responseCode"] == 100, out
    assert "88.100.1/NOBODY" in out["message"]


async def test_index_and_type_filters_pick_values_or_say_none_match(
    handle_net: HandleNet,
) -> None:
    by_index = await resolve(handle_net, "sub", "88.100.1/ABC-123", "--index", "2")
    assert [v["type"] for v in by_index["values"]] == ["EMAIL"]
    by_type = await resolve(handle_net, "sub", "88.100.1/ABC-123", "--type", "url")
    assert [v["index"] for v in by_type["values"]] == [1]  # types match case aside
    subtypes = await resolve(handle_net, "sub", "88.100.1/SOME", "--type", "URL")
    assert len(subtypes["values"]) == 12  # URL asks for URL.0 ... URL.11 too
    neither = await resolve(handle_net, "sub", "88.100.1/ABC-123", "--type", "HS_ALIAS")
    assert neither["responseCode"] == 200, neither  # values not found
    missing_index = await resolve(handle_net, "super", "88.100.1/ABC-123", "--index", "9")
    assert missing_index["responseCode"] == 200, missing_index


async def test_values_only_admins_may_read_are_not_handed_out(handle_net: HandleNet) -> None:
    out = await resolve(handle_net, "sub", PRIVATE, transport="--udp")
    assert [v["type"] for v in out["values"]] == ["URL"]
    hidden = await resolve(handle_net, "super", SECRET)
    assert hidden["responseCode"] == 401, hidden  # insufficient permissions, and why
    assert "not public" in hidden["message"]


async def test_without_recursion_each_node_refers_the_client_one_step_down(
    handle_net: HandleNet,
) -> None:
    """A client that follows the referrals' HS_SITE walks super -> backbone -> sub."""
    node = "super"
    seen = []
    for _ in range(3):
        out = await resolve(handle_net, node, "88.100.1/ABC-123", "--no-recursion")
        seen.append(out["responseCode"])
        if out["responseCode"] != 302:
            break
        (site_value,) = out["values"]
        assert site_value["type"] == "HS_SITE"
        (server,) = site_value["site"]["servers"]
        interfaces = {(i["protocolName"], i["port"]) for i in server["interfaces"]}
        node = next(n for n, (a, _) in handle_net.addresses.items() if a == server["address"])
        assert interfaces == {
            ("TCP", handle_net.addresses[node][1]),
            ("UDP", handle_net.addresses[node][1]),
        }
    assert seen == [302, 302, 1]
    assert node == "sub"
    assert out["values"][0]["data"] == "https://example.com/products/ABC-123"


async def test_an_answer_over_many_udp_packets_is_put_together_by_the_client(
    handle_net: HandleNet,
) -> None:
    """40 values of ~150 bytes: about 13 packets of 512 bytes each over UDP, more than
    a node sends for one datagram (8), so the client is told to ask over TCP; over TCP
    it gets them all. 12 values fit in 8 packets and come over UDP."""
    some = await resolve(handle_net, "sub", "88.100.1/SOME", transport="--udp")
    assert some["responseCode"] == 1, some
    assert len(some["values"]) == 12
    assert {v["data"] for v in some["values"]} == {LONG}
    many_udp = await resolve(handle_net, "sub", "88.100.1/MANY", transport="--udp")
    assert many_udp["responseCode"] == 2, many_udp
    assert "TCP" in many_udp["message"]
    many_tcp = await resolve(handle_net, "sub", "88.100.1/MANY", transport="--tcp")
    assert len(many_tcp["values"]) == 40


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_request_digest_the_client_asks_for_matches_its_request(
    handle_net: HandleNet, transport: str
) -> None:
    """The library checks the digest itself and throws on a mismatch."""
    out = await resolve(handle_net, "sub", "88.100.1/ABC-123", "--digest", transport=transport)
    assert out["responseCode"] == 1
    assert out["requestDigest"] is not None
    assert out["rdHashType"] in (1, 2, 3)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_site_info_names_the_node_s_address_and_its_tcp_and_udp_port(
    handle_net: HandleNet, transport: str
) -> None:
    host, port = handle_net.addresses["backbone"]
    status, out = await aprobe("siteinfo", transport, host, port)
    assert status == RESPONSE, out
    assert out["responseCode"] == 1, out
    (server,) = out["site"]["servers"]
    assert server["address"] == host
    assert {(i["protocolName"], i["port"]) for i in server["interfaces"]} == {
        ("TCP", port),
        ("UDP", port),
    }


async def test_a_malformed_identifier_is_an_invalid_handle(handle_net: HandleNet) -> None:
    out = await resolve(handle_net, "super", "88.100.1/")
    assert out["responseCode"] == 102, out
    assert out["message"]


async def test_a_repeated_request_is_answered_as_kept_and_a_change_forgets_it(
    handle_net: HandleNet,
) -> None:
    """The second answer comes from the kept bytes under the client's own request id
    and a fresh expiration time, which the library checks; a write forgets it."""
    face = handle_net.servers["sub"].face
    assert face.wires is not None  # the node hears of changes: it may keep answers
    for _ in range(20):  # an answer worked out across a change (the node announcing
        hits = face.wires.hits  # its delegation as it starts) is not kept: ask again
        again = await resolve(handle_net, "sub", "88.100.1/ABC-123", transport="--udp")
        if face.wires.hits == hits + 1:
            break
    assert face.wires.hits == hits + 1
    assert again["responseCode"] == 1
    assert again["values"][0]["data"] == "https://example.com/products/ABC-123"
    over_tcp = await resolve(handle_net, "sub", "88.100.1/ABC-123", transport="--tcp")
    assert face.wires.hits == hits + 2  # the same request over TCP: the same answer
    assert over_tcp["values"] == again["values"]
    # an answer carrying a digest of one request's bytes is never kept
    for _ in range(2):
        digested = await resolve(handle_net, "sub", "88.100.1/ABC-123", "--digest")
        assert digested["requestDigest"] is not None
    assert face.wires.hits == hits + 2
    await handle_net.stores["sub"].put(
        record("88.100.1/ABC-123", [("URL", "https://example.com/changed", 60)]), actor="test"
    )
    for _ in range(20):  # the notice arrives within milliseconds
        changed = await resolve(handle_net, "sub", "88.100.1/ABC-123", transport="--udp")
        if changed["values"][0]["data"] == "https://example.com/changed":
            break
        await asyncio.sleep(0.05)
    assert [v["data"] for v in changed["values"]] == ["https://example.com/changed"]
