"""The async client a supply-chain app uses, against real nodes."""

from __future__ import annotations

import pytest

from resolver.client import Client, Referral, ResolutionFailed
from schemas.errors import IdentifierNotFound, InvalidIdentifier
from tests.resolver.conftest import Net, record

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]


def requests(net: Net) -> int:
    return sum(
        n
        for (name, _), n in net.resolvers["super"].metrics.counters.items()
        if name == "idres_requests_total"
    )


async def test_resolve_returns_typed_values_and_caches_for_the_ttl(net: Net) -> None:
    await net.stores["sub"].put(record("06901234567892", "https://e.x/tea"), actor="t")
    async with Client(net.urls["super"]) as client:
        found = await client.resolve("6901234567892")
        before = requests(net)
        again = await client.resolve("https://id.example.com/01/06901234567892/21/S9")
    assert found.handle == "06901234567892"
    assert found.url == "https://e.x/tea"
    assert found.values[0].type == "URL"
    assert requests(net) == before  # answered from the client's cache
    assert again.qualifiers == (("21", "S9"),)


async def test_a_zero_ttl_record_is_not_kept_by_the_client(net: Net) -> None:
    await net.stores["sub"].put(record("88.100.1/NOW", "https://e.x/1", ttl=0), actor="t")
    async with Client(net.urls["super"]) as client:
        await client.resolve("88.100.1/NOW")
        before = requests(net)
        await client.resolve("88.100.1/NOW")
    assert requests(net) == before + 1


async def test_errors_are_typed(net: Net) -> None:
    async with Client(net.urls["super"]) as client:
        with pytest.raises(IdentifierNotFound):
            await client.resolve("88.100.1/NOT-THERE")
        with pytest.raises(InvalidIdentifier):
            await client.resolve("06901234567891")  # refused before any request
        with pytest.raises(ResolutionFailed) as info:
            await client.resolve("88.77/HANGS")
        assert info.value.status == 504
        with pytest.raises(Referral) as referral:
            await client.resolve("88.100.1/X", recursive=False)
        assert referral.value.referral["node"] == "backbone"
    async with Client("http://127.0.0.1:9") as nobody:
        with pytest.raises(ResolutionFailed):
            await nobody.resolve("88.100.1/X")


async def test_resolve_many_keeps_order_and_answers_each(net: Net) -> None:
    await net.stores["sub"].put(record("88.100.1/M1", "https://e.x/m1"), actor="t")
    async with Client(net.urls["super"]) as client:
        results = await client.resolve_many(["88.100.1/M1", "88.100.1/M2", "x y"])
    assert results[0].url == "https://e.x/m1"  # type: ignore[union-attr]
    assert isinstance(results[1], IdentifierNotFound)
    assert isinstance(results[2], InvalidIdentifier)
