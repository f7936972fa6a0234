"""Resolution through real super, backbone and sub-chain nodes on loopback ports."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from tests.resolver.conftest import Net, record

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]


async def get(
    url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers or {}) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def test_a_record_at_a_sub_chain_resolves_from_the_super_node_then_from_cache(
    net: Net,
) -> None:
    await net.stores["sub"].put(record("88.100.1/ABC-123"), actor="test")
    status, body, headers = await get(net.urls["super"] + "/api/handles/88.100.1/ABC-123")
    assert (status, body["responseCode"], body["handle"]) == (200, 1, "88.100.1/ABC-123")
    assert body["values"][0]["data"]["value"] == "https://example.com/p"
    assert headers["Idres-Source"] == "upstream"
    _, again, headers = await get(net.urls["super"] + "/api/handles/88.100.1/ABC-123")
    assert again == body
    assert headers["Idres-Source"] == "cache"
    # from the sub-chain's sibling side of the tree too: the backbone holds 86
    status, _, _ = await get(net.urls["backbone"] + "/api/handles/88.100.1/ABC-123")
    assert status == 200


async def test_every_scheme_routes_by_its_own_prefixes(net: Net) -> None:
    await net.stores["sub"].put(record("06901234567892"), actor="test")
    await net.stores["sub"].put(record("1.2.156.3001.1"), actor="test")
    for path in (
        "06901234567892",
        "6901234567892",
        "1.2.156.3001.1",
        "https://id.example.com/01/06901234567892/10/LOT7",
    ):
        status, body, _ = await get(net.urls["super"] + "/api/handles/" + path)
        assert status == 200, (path, body)
    assert body["qualifiers"] == {"10": "LOT7"}  # Digital Link qualifiers passed through


async def test_a_prefix_record_resolves_from_the_node_that_holds_its_prefix(net: Net) -> None:
    # 0.NA/88.100 lives with 88.100 at the sub-chain node, not under a prefix "0"
    status, body, _ = await get(net.urls["super"] + "/api/handles/0.NA/88.100")
    assert (status, body["responseCode"]) == (200, 1), body
    assert [v["type"] for v in body["values"]] == ["HS_ADMIN"]
    status, body, _ = await get(net.urls["super"] + "/api/handles/0.NA/88.99")
    assert (status, body["responseCode"]) == (404, 100)


async def test_referral_mode_names_each_next_node_down_to_the_record(net: Net) -> None:
    await net.stores["sub"].put(record("88.100.1/REF"), actor="test")
    url = net.urls["super"] + "/api/handles/88.100.1/REF?recursive=false"
    hops = []
    for _ in range(3):
        status, body, _ = await get(url)
        if body["responseCode"] == 1:
            break
        assert (status, body["responseCode"]) == (200, 303)
        hops.append(body["referral"]["node"])
        url = body["referral"]["url"] + "?recursive=false"
    assert hops == ["backbone", "sub"]
    assert body["handle"] == "88.100.1/REF"
    _, up, _ = await get(net.urls["sub"] + "/api/handles/86.5/X?recursive=false")
    assert (up["responseCode"], up["referral"]["node"]) == (302, "backbone")


async def test_unknown_identifiers_are_404_and_then_answered_from_the_negative_cache(
    net: Net,
) -> None:
    for _ in range(2):
        status, body, headers = await get(net.urls["super"] + "/api/handles/99.1/NOPE")
        assert (status, body["responseCode"]) == (404, 100)
    assert headers["Idres-Source"] == "cache"
    status, body, headers = await get(net.urls["super"] + "/api/handles/88.100.1/MISSING")
    assert (status, body["responseCode"]) == (404, 100)
    _, _, headers = await get(net.urls["super"] + "/api/handles/88.100.1/MISSING")
    assert headers["Idres-Source"] == "cache"


async def test_malformed_identifiers_are_400_with_the_position(net: Net) -> None:
    status, body, _ = await get(net.urls["super"] + "/api/handles/06901234567891")
    assert (status, body["responseCode"], body["position"]) == (400, 102, 13)
    assert "expected 2" in body["message"]


async def test_auth_true_skips_the_cache(net: Net) -> None:
    await net.stores["sub"].put(record("88.100.1/CHG", "https://old.example/"), actor="t")
    await get(net.urls["super"] + "/api/handles/88.100.1/CHG")
    await net.stores["sub"].put(record("88.100.1/CHG", "https://new.example/"), actor="t")
    _, cached, _ = await get(net.urls["super"] + "/api/handles/88.100.1/CHG")
    _, fresh, _ = await get(net.urls["super"] + "/api/handles/88.100.1/CHG?auth=true")
    assert cached["values"][0]["data"]["value"] == "https://old.example/"
    assert fresh["values"][0]["data"]["value"] == "https://new.example/"


async def test_a_down_node_is_covered_by_a_stale_copy_and_failures_are_not_cached(
    net: Net,
) -> None:
    await net.stores["sub"].put(record("88.100.1/STALE", ttl=1), actor="t")
    status, _, _ = await get(net.urls["super"] + "/api/handles/88.100.1/STALE")
    assert status == 200
    net.doors["backbone"].close()  # the next node goes away
    await net.runners["backbone"].cleanup()
    await asyncio.sleep(1.2)  # and the cached copy expires
    status, body, headers = await get(net.urls["super"] + "/api/handles/88.100.1/STALE")
    assert (status, body["stale"], headers["Idres-Stale"]) == (200, True, "true")
    status, body, _ = await get(net.urls["super"] + "/api/handles/88.100.1/NEVER-SEEN")
    assert (status, body["responseCode"]) == (502, 2)
    assert "could not be reached" in body["message"]


async def test_a_hanging_node_is_a_504_in_bounded_time_and_not_cached(net: Net) -> None:
    for _ in range(2):
        started = time.monotonic()
        status, body, _ = await get(net.urls["super"] + "/api/handles/88.77/X")
        assert (status, body["responseCode"]) == (504, 2), body["message"]
        assert time.monotonic() - started < 3  # backbone and super each wait 0.5 s at most


async def test_a_node_answering_garbage_is_a_502(net: Net) -> None:
    status, body, _ = await get(net.urls["backbone"] + "/api/handles/88.66/X")
    assert (status, body["responseCode"]) == (502, 2)
    assert "not JSON" in body["message"]


async def test_concurrent_misses_make_one_upstream_call(net: Net) -> None:
    await net.stores["sub"].put(record("88.100.1/HOT"), actor="t")
    results = await asyncio.gather(
        *[get(net.urls["super"] + "/api/handles/88.100.1/HOT") for _ in range(30)]
    )
    assert {r[0] for r in results} == {200}
    counters = net.resolvers["super"].metrics.counters
    assert counters[("idres_upstream_requests_total", 'result="ok"')] == 1


async def test_a_resolution_loop_is_refused(net: Net) -> None:
    status, body, _ = await get(
        net.urls["backbone"] + "/api/handles/88.100.1/X", headers={"Idres-Via": "super,backbone"}
    )
    assert (status, body["responseCode"]) == (508, 2)
    assert "loop" in body["message"]


async def test_batch_resolve_answers_each_identifier(net: Net) -> None:
    await net.stores["sub"].put(record("88.100.1/B1"), actor="t")
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            net.urls["super"] + "/api/resolve",
            json={"identifiers": ["88.100.1/B1", "99.9/none", "bad id", 5]},
        ) as resp,
    ):
        body = await resp.json()
    assert resp.status == 200
    assert [(r["responseCode"], r["status"]) for r in body["results"]] == [
        (1, 200),
        (100, 404),
        (102, 400),
        (102, 400),
    ]


async def test_metrics_and_health(net: Net) -> None:
    await get(net.urls["super"] + "/api/handles/99.2/X")
    async with aiohttp.ClientSession() as s:
        async with s.get(net.urls["super"] + "/metrics") as resp:
            text = await resp.text()
            assert resp.content_type == "text/plain"
        async with s.get(net.urls["super"] + "/healthz") as resp:
            health = await resp.json()
    assert 'idres_requests_total{node="super",interface="rest"} 1' in text
    assert "idres_upstream_latency_seconds_bucket" in text
    assert "idres_cache_entries" in text
    assert health == {"status": "ok", "node": "super", "role": "super"}


async def test_a_registration_at_the_sub_chain_is_resolvable_everywhere(net: Net) -> None:
    from registry.client import RegistryClient

    async with RegistryClient(net.urls["sub"], key=net.admin, key_id="300:0.NA/node.admin") as c:
        created = await c.put(
            "88.100.9/NEW", [{"index": 1, "type": "URL", "data": "https://example.com/new"}]
        )
    assert created.status == 201
    for node in ("super", "backbone", "sub"):
        status, body, _ = await get(net.urls[node] + "/api/handles/88.100.9/NEW")
        assert (status, body["values"][0]["data"]["value"]) == (200, "https://example.com/new")
