"""A node that keeps a copy of the chain below says "not found" itself only when its
copy is current and has no such record; a record it holds but may not show, and a
copy that is not current, still go to the node that holds the record."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from idres.assembly import NodeSpec, delegations
from resolver.metrics import Metrics
from resolver.service import WITHHELD, Answer, Resolver, ResolverConfig, Withheld
from resolver.topology import Directory, Role, Route
from resolver.transport import UpstreamAnswer
from schemas.identifiers import Identifier, parse

pytestmark = pytest.mark.asyncio


class Below:
    """The node below: answers every identifier with a record, counting the asks."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def get(self, url: str, *, headers: Mapping[str, str]) -> UpstreamAnswer:
        self.asked.append(url)
        body = {"responseCode": 1, "handle": url.rsplit("/handles/", 1)[1], "values": []}
        return UpstreamAnswer(status=200, body=orjson.dumps(body), json=body)

    async def close(self) -> None:
        pass


def _resolver(
    replica: tuple[Answer, float] | Withheld | None, current: bool
) -> tuple[Resolver, Below]:
    keys = {n: ed25519.Ed25519PrivateKey.generate() for n in ("super", "sub")}
    specs = [
        NodeSpec(name="super", role=Role.SUPER, parent=None, url="http://s", prefixes=()),
        NodeSpec(name="sub", role=Role.BACKBONE, parent="super", url="http://b", prefixes=("88",)),
    ]
    signed = delegations(specs, keys)
    directory = Directory(signed, trust_anchor=signed[0].public_key)
    below = Below()

    async def local(ident: Identifier) -> Answer:
        raise AssertionError("nothing is held here")

    async def copy(ident: Identifier) -> tuple[Answer, float] | Withheld | None:
        return replica

    def is_current(route: Route) -> bool:
        return current

    resolver = Resolver(
        config=ResolverConfig(name="super"),
        directory=lambda: directory,
        local=local,
        transport=below,
        metrics=Metrics("super"),
        replica=copy,
        keeps=lambda route: True,
        current=is_current,
    )
    return resolver, below


async def test_a_current_copy_without_the_record_answers_not_found_itself() -> None:
    resolver, below = _resolver(None, current=True)
    answer = await resolver.resolve(parse("88.100.1/NOBODY"))
    assert (answer.status, answer.source) == (404, "replica")
    assert below.asked == []


async def test_a_copy_not_current_asks_below() -> None:
    resolver, below = _resolver(None, current=False)
    answer = await resolver.resolve(parse("88.100.1/NEW"))
    assert answer.status == 200
    assert len(below.asked) == 1


async def test_a_record_held_but_not_public_is_never_called_missing() -> None:
    resolver, below = _resolver(WITHHELD, current=True)
    answer = await resolver.resolve(parse("88.100.1/PRIVATE"))
    assert answer.status == 200  # the holder's answer, not "not found"
    assert len(below.asked) == 1


async def test_a_prefix_record_missing_from_a_current_copy_is_asked_for_below() -> None:
    """The node that holds a prefix writes the prefix's record ``0.NA/P`` itself when it
    starts, outside its chain: a copy without it proves nothing (``idres up``'s super
    node answered 404 for 0.NA/88.100, which sub-a holds)."""
    resolver, below = _resolver(None, current=True)
    answer = await resolver.resolve(parse("0.NA/88.100"))
    assert answer.status == 200
    assert below.asked == ["http://b/api/handles/0.NA/88.100"]
