"""Sync between real node processes on a real Kafka broker: replication up the tree,
a Kafka outage during writes, and kill -9 of a producing and of a consuming node.

Every check is the full set: each identifier a client saw acknowledged is at the
super node with the version acknowledged, none missing, none applied twice.
"""

from __future__ import annotations

import asyncio
import random
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.conftest import KafkaControl
from tests.sync.nodes import Network

pytestmark = [pytest.mark.asyncio, pytest.mark.kafka]


@pytest_asyncio.fixture
async def network(
    tmp_path: Path, pg_server_url: str, pg_template: str, kafka_bootstrap: str
) -> AsyncIterator[Network]:
    net = Network(tmp_path, pg_server_url, pg_template, kafka_bootstrap)
    await net.create()
    try:
        net.start_all()  # inside: nodes started before one that fails are stopped too
        yield net
    finally:
        output = net.stop_all()
        await net.drop()
    assert "Traceback" not in output, output


async def converged(
    net: Network, expected: dict[str, int], *, node: str = "super", within: float = 60
) -> dict[str, tuple[int, str]]:
    """Wait until ``node`` holds exactly ``expected`` (identifier -> version)."""
    deadline = time.monotonic() + within
    while True:
        have = await net.records(node)
        versions = {h: v for h, (v, _) in have.items()}
        if versions == expected or time.monotonic() > deadline:
            missing = sorted(expected.keys() - versions.keys())[:5]
            assert versions == expected, f"missing {missing}; {len(versions)}/{len(expected)}"
            return have
        await asyncio.sleep(0.25)


async def test_a_record_registered_below_resolves_at_the_top_without_a_hop(
    network: Network,
) -> None:
    version = await network.register("88.100.1/ABC-123", "https://example.com/abc")
    assert version == 1
    await converged(network, {"88.100.1/ABC-123": 1})
    # asked not to recurse, the super node still answers: it holds the record itself
    body = await network.resolve("super", "88.100.1/ABC-123")
    assert body["responseCode"] == 1
    assert body["values"][0]["data"]["value"] == "https://example.com/abc"  # type: ignore[index]
    # the backbone holds it too and refuses to write it: 88.100 is the sub-chain's
    async with network.client("backbone") as client:
        refused = await client.put(
            "88.100.1/ABC-123", [{"index": 1, "type": "URL", "data": "https://evil.example"}]
        )
    assert refused.status == 400
    assert "delegated to node" in refused.body["message"]
    # the sub-chain's block is anchored in the backbone
    await converged(network, {"88.100.1/ABC-123": 1}, node="backbone")
    async with network.client("super") as client:
        report = await client.request("GET", "/api/sync/verify", sign=False)
    assert report.body["ok"] is True, report.body["problems"]
    assert report.body["anchors"] >= 1
    # and, its copy of the sub-chain being current, it says "not found" itself for an
    # identifier nobody registered there (within 3 s of its last look at the log)
    # (a chain counts as kept up with while its node publishes: write now and then)
    deadline = time.monotonic() + 10
    while (missing := await network.resolve("super", "88.100.1/NOBODY"))["responseCode"] != 100:
        await network.register(f"88.100.1/PULSE-{time.monotonic_ns()}", "https://e.x/p")
        if time.monotonic() > deadline:
            async with network.client("super") as client:
                metrics = await client.request("GET", "/metrics", sign=False)
            raise AssertionError(f"{missing}; {metrics.body}")
        await asyncio.sleep(0.25)


async def test_a_quiet_chains_copy_stays_current_so_a_miss_costs_no_hop(
    network: Network,
) -> None:
    """Long after the last write, the super node still knows that its copy of the
    sub-chain has every block (the sub-chain's node confirms its tip, sync/tips.py):
    an identifier nobody registered is "not found" from the copy, not a referral down
    the tree, and no lookup of the node below."""
    await network.register("88.100.1/QUIET", "https://e.x/q")
    await converged(network, {"88.100.1/QUIET": 1})
    await asyncio.sleep(5)  # past sync.notices.CURRENT_WITHIN since the last block
    deadline = time.monotonic() + 10
    while True:
        body = await network.resolve("super", "88.100.1/NOBODY-QUIET")
        if body["responseCode"] == 100 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert body["responseCode"] == 100, body  # not 303: a referral to the sub-chain
    async with (
        aiohttp.ClientSession() as session,
        session.get(network.nodes["super"].url + "/metrics") as response,
    ):
        metrics = await response.text()
    assert 'idres_replica_answers_total{node="' in metrics
    assert re.search(r'idres_replica_answers_total\{[^}]*result="not_found"\} [1-9]', metrics)


async def test_writes_during_a_kafka_outage_all_arrive_once(
    network: Network, kafka_control: KafkaControl
) -> None:
    expected = {}
    for n in range(10):
        expected[f"88.100.1/BEFORE-{n}"] = await network.register(
            f"88.100.1/BEFORE-{n}", f"https://e.x/{n}"
        )
    await converged(network, expected)
    kafka_control.stop()
    try:
        # registrations go on while the log is down: each is acknowledged
        for n in range(40):
            handle = f"88.100.1/DURING-{n % 30}"  # some written twice: version 2
            expected[handle] = await network.register(handle, f"https://e.x/during/{n}")
        # the outage is real: the sub-chain's blocks wait, counted in its /metrics
        assert await metric(network, "sub", "idres_sync_unpublished_blocks", above=0) > 0
    finally:
        kafka_control.resume()
    have = await converged(network, expected, within=120)
    assert have["88.100.1/DURING-0"] == (2, "https://e.x/during/30")
    assert await metric(network, "sub", "idres_sync_unpublished_blocks", below=1) == 0


async def metric(
    net: Network, node: str, name: str, *, above: float | None = None, below: float | None = None
) -> float:
    """A metric of ``node``, once it is above or below a bound (or after 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        url = net.nodes[node].url + "/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            text = await response.text()
        found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
        assert found is not None, text
        value = float(found[1])
        if (above is None or value > above) and (below is None or value < below):
            return value
        if time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("victim", ["sub", "backbone", "super"])
async def test_kill_9_mid_stream_loses_and_doubles_nothing(network: Network, victim: str) -> None:
    rng = random.Random(4)
    expected: dict[str, int] = {}
    stop = asyncio.Event()

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            handle = f"88.100.2/K{rng.randrange(150)}"
            expected[handle] = await network.register(handle, f"https://e.x/{n}")
            n += 1

    task = asyncio.create_task(writer())
    try:
        for _ in range(3):  # kill at a random point, three times
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            network.nodes[victim].kill()
            await asyncio.sleep(rng.uniform(0.1, 1.0))
            network.nodes[victim].start()
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await task
    assert len(expected) > 20
    await converged(network, expected, within=120)
    async with network.client("super") as client:
        report = await client.request("GET", "/api/sync/verify", sign=False)
    assert report.body["ok"] is True, report.body["problems"][:5]
    for node in ("backbone", "super"):  # nothing was refused on the way
        assert await metric(network, node, "idres_sync_dead_letters_total") == 0
    # every version reached the top, each once: history there matches history below
    below = await network.history("sub", "88.100.2/%")
    assert below == await network.history("super", "88.100.2/%")
    assert len(below) >= len(expected)


async def test_a_mirror_added_late_catches_up_from_the_log_and_answers(
    network: Network,
) -> None:
    expected = {}
    for n in range(30):
        handle = f"88.100.3/M{n % 20}"  # some twice: version 2
        expected[handle] = await network.register(handle, f"https://e.x/m/{n}")
    await converged(network, expected)
    # a node that did not exist while those were written joins as a mirror of the super
    # node: it reads every chain the super node keeps from the start of the log
    await network.add_mirror(of="super")
    have = await converged(network, expected, node="mirror")
    assert have["88.100.3/M0"] == (2, "https://e.x/m/20")
    # and stays current: a write after it joined reaches it too
    expected["88.100.3/LATE"] = await network.register("88.100.3/LATE", "https://e.x/late")
    await converged(network, expected, node="mirror")
    # it answers from its copies, asked not to recurse (no referral up or down)
    body = await network.resolve("mirror", "88.100.3/LATE")
    assert body["responseCode"] == 1, body
    async with network.client("mirror") as client:
        report = await client.request("GET", "/api/sync/verify", sign=False)
        refused = await client.put(
            "88.100.3/NOPE", [{"index": 1, "type": "URL", "data": "https://e.x/nope"}]
        )
    assert report.body["ok"] is True, report.body["problems"][:5]
    assert refused.status == 400  # a mirror holds no prefix: it takes no writes
    # its delegation, announced on the directory topic, reached the nodes already running
    deadline = time.monotonic() + 30
    while True:
        async with network.client("backbone") as client:
            listed = await client.request("GET", "/api/directory", sign=False)
        names = {d["name"] for d in listed.body["nodes"]}
        if network.names["mirror"] in names or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert network.names["mirror"] in names


async def test_a_mirror_started_from_a_snapshot_checks_it_then_follows_the_log(
    network: Network,
) -> None:
    expected = {}
    for n in range(30):
        handle = f"88.100.4/N{n % 20}"
        expected[handle] = await network.register(handle, f"https://e.x/n/{n}")
    await converged(network, expected)
    path = network.work / "super.snapshot"
    saver = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "idres", "snapshot", "--out", str(path)),
        *("--server", network.nodes["super"].url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(saver.communicate(), 120)
    assert saver.returncode == 0, stderr.decode()
    assert f"bytes written to {path}" in stdout.decode()
    # writes go on while the new node starts; it gets them from the log
    expected["88.100.4/AFTER"] = await network.register("88.100.4/AFTER", "https://e.x/after")
    mirror = await network.add_mirror(of="super", snapshot=path)
    started = re.search(
        r"idres: snapshot \S+ of node (\S+): loaded (.*), ([\d,]+) records", mirror.output()
    )
    assert started is not None, mirror.output()
    assert started[1] == network.names["super"]
    assert network.names["sub"] + " (" in started[2]  # the sub-chain's blocks came from the file
    assert int(started[3].replace(",", "")) >= 20
    await converged(network, expected, node="mirror")
    async with network.client("mirror") as client:
        report = await client.request("GET", "/api/sync/verify", sign=False)
    assert report.body["ok"] is True, report.body["problems"][:5]
