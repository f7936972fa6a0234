"""When a node may say "not found" from its copy of a chain: only while that copy
keeps up with a chain whose node is publishing."""

from __future__ import annotations

import time

import pytest

from sync.log import Log
from tests.sync.chains import Node, flush, url_record

pytestmark = pytest.mark.asyncio


async def _write_and_follow(sub: Node, backbone: Node, n: int) -> None:
    await sub.store.put(url_record(f"88.100.1/A{n}", "https://e.x/1"), actor="t")
    await flush(sub)
    while await backbone.follower.step(wait=2):
        pass


async def test_a_copy_is_current_only_while_it_keeps_up_with_a_publishing_chain(
    network: dict[str, Node], log: Log
) -> None:
    sub, backbone = network["sub-a"], network["backbone-1"]
    follower = backbone.follower
    now = [time.time()]
    follower.clock = lambda: now[0]
    assert not follower.current(sub.name)  # never looked at the log
    await sub.store.put(url_record("88.100.1/A", "https://e.x/1"), actor="t")
    await flush(sub)
    await follower.refresh_behind()
    assert not follower.current(sub.name)  # nothing of the chain applied yet
    await _write_and_follow(sub, backbone, 1)
    now[0] = time.time()
    await follower.refresh_behind()
    assert follower.current(sub.name)
    now[0] += 3.5  # no look at the log since: not assumed any more
    assert not follower.current(sub.name)
    # looked again, nothing waiting, but the chain's node has cut nothing for 3.5 s:
    # it may be unable to publish, so its copy here is not taken as complete
    await follower.refresh_behind()
    assert not follower.current(sub.name)
    await _write_and_follow(sub, backbone, 2)  # it publishes again
    now[0] = time.time()
    await follower.refresh_behind()
    assert follower.current(sub.name)
    follower.stalled[sub.name] = ("refused", now[0] + 5)
    assert not follower.current(sub.name)
