"""When a node may say "not found" from its copy of a chain: only while that copy
keeps up with the log."""

from __future__ import annotations

import pytest

from sync.log import Log
from tests.sync.chains import Node, flush, url_record

pytestmark = pytest.mark.asyncio


async def test_a_copy_is_current_only_while_it_keeps_up_with_the_log(
    network: dict[str, Node], log: Log
) -> None:
    sub, backbone = network["sub-a"], network["backbone-1"]
    follower = backbone.follower
    now = [1000.0]
    follower.clock = lambda: now[0]
    assert not follower.current(sub.name)  # never looked at the log
    await sub.store.put(url_record("88.100.1/A", "https://e.x/1"), actor="t")
    await flush(sub)
    await follower.refresh_behind()
    assert not follower.current(sub.name)  # a block waits
    while await follower.step(wait=2):
        pass
    await follower.refresh_behind()
    assert follower.current(sub.name)
    now[0] += 3.5  # and no look at the log since: not assumed any more
    assert not follower.current(sub.name)
    await follower.refresh_behind()
    assert follower.current(sub.name)
    follower.stalled[sub.name] = ("refused", now[0] + 5)
    assert not follower.current(sub.name)
