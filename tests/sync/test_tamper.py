"""A row changed directly in a node's PostgreSQL (issue 16, item 4), seen as a user
sees it: over HTTP from real ``idres serve`` processes on Kafka. Once the node finds
it (a proof asked for, ``idres verify``, its continuous check) the forged value is
not served again, by its workers or its edge; the record is rewritten from its
signed chain; a proof answers the true record, never a 503 to retry forever; and
/metrics counts the finding.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio

from tests.sync.nodes import Network

pytestmark = [pytest.mark.asyncio, pytest.mark.kafka]

TRUE_URL = "https://example.com/true"
FORGED = "https://evil.example/forged"


async def _network(
    tmp_path: Path, pg_server_url: str, pg_template: str, kafka: str, *, every: str
) -> AsyncIterator[Network]:
    net = Network(tmp_path, pg_server_url, pg_template, kafka)
    await net.create()
    for node in net.nodes.values():
        node.args += ["--verify-every", every]
    try:
        net.start_all()
        yield net
    finally:
        output = net.stop_all()
        await net.drop()
    assert "Traceback" not in output, output


@pytest_asyncio.fixture
async def network(
    tmp_path: Path, pg_server_url: str, pg_template: str, kafka_bootstrap: str
) -> AsyncIterator[Network]:
    """The continuous check off: only a proof or verify finds a change."""
    async for net in _network(tmp_path, pg_server_url, pg_template, kafka_bootstrap, every="0"):
        yield net


@pytest_asyncio.fixture
async def watched(
    tmp_path: Path, pg_server_url: str, pg_template: str, kafka_bootstrap: str
) -> AsyncIterator[Network]:
    """The continuous check every second."""
    async for net in _network(tmp_path, pg_server_url, pg_template, kafka_bootstrap, every="1"):
        yield net


async def _get(net: Network, node: str, path: str) -> tuple[int, Any, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(net.nodes[node].url + path) as response,
    ):
        text = await response.text()
        body = await response.json(content_type=None) if text.startswith("{") else text
        return response.status, body, dict(response.headers)


def _url(body: Any) -> str:
    return str(body["values"][0]["data"]["value"])


async def _at_super(net: Network, handle: str) -> None:
    """Registered at the sub-chain, held at the super node, answered there."""
    await net.register(handle, TRUE_URL)
    deadline = time.monotonic() + 60
    while (await net.records("super")).get(handle, (0, ""))[1] != TRUE_URL:
        assert time.monotonic() < deadline, f"{handle} never reached the super node"
        await asyncio.sleep(0.25)


async def _forge(net: Network, handle: str) -> None:
    conn = await asyncpg.connect(net.nodes["super"].database_url)
    try:  # the value, and the answer the node's edge serves from without a worker
        await conn.execute(
            "UPDATE handle_values SET data = $1 WHERE handle = $2 AND idx = 1",
            FORGED.encode(),
            handle,
        )
        await conn.execute(
            "UPDATE answers SET body = convert_to(replace(convert_from(body, 'UTF8'), $1, $2),"
            " 'UTF8') WHERE handle = $3",
            TRUE_URL,
            FORGED,
            handle,
        )
    finally:
        await conn.close()


async def _metric(net: Network, name: str, labels: str = "") -> float:
    """The value of one /metrics line (0 when absent)."""
    _, text, _ = await _get(net, "super", "/metrics")
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def _verify(net: Network) -> tuple[int, str, str]:
    """``idres verify`` of the super node, as an operator runs it (stderr not a TTY)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "idres",
        "verify",
        "--server",
        net.nodes["super"].url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _eventually(check: Any, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.25)


async def test_a_proof_finds_a_forged_row_repairs_it_and_no_cache_serves_it(
    network: Network,
) -> None:
    handle = "88.100.1/TAMPER-PROOF"
    await _at_super(network, handle)
    await _forge(network, handle)
    # served forged until found (and kept by the edge and the workers meanwhile)
    status, body, _ = await _get(network, "super", f"/api/handles/{handle}")
    assert (status, _url(body)) == (200, FORGED)

    status, body, headers = await _get(network, "super", f"/api/handles/{handle}?proof=true")
    # the true record and its proof: not 503 "ask again", which would never mend
    assert status == 200, body
    assert "Retry-After" not in headers
    assert _url(body) == TRUE_URL
    assert body["proof"]["levels"]

    # no cache serves the forged value after the repair: the edge, the workers
    for _ in range(20):
        status, body, _ = await _get(network, "super", f"/api/handles/{handle}")
        assert (status, _url(body)) == (200, TRUE_URL)
    labels = '{found_by="proof",repaired="true"}'

    async def counted() -> bool:
        return await _metric(network, "idres_integrity_findings_total", labels) == 1

    await _eventually(counted)


async def test_verify_names_repairs_and_counts_a_forged_row(network: Network) -> None:
    handle = "88.100.1/TAMPER-VERIFY"
    await _at_super(network, handle)
    await _forge(network, handle)
    _, body, _ = await _get(network, "super", f"/api/handles/{handle}")
    assert _url(body) == FORGED  # cached by the edge from here on, until told

    code, out, err = await _verify(network)
    assert code == 1, out + err  # it found a problem
    assert f"{handle}: the value at index 1 differs from operation" in out
    assert f"repaired from the chain: {handle}" in out
    assert re.search(r"verify: \d+ records checked in [\d.]+ s", err), err

    _, body, _ = await _get(network, "super", f"/api/handles/{handle}")
    assert _url(body) == TRUE_URL
    code, out, _ = await _verify(network)
    assert code == 0, out  # nothing departs any more
    labels = '{found_by="verify",repaired="true"}'

    async def counted() -> bool:
        return await _metric(network, "idres_integrity_findings_total", labels) == 1

    await _eventually(counted)


async def test_the_continuous_check_finds_a_forged_row_within_seconds(watched: Network) -> None:
    handle = "88.100.1/TAMPER-WATCHED"
    await _at_super(watched, handle)

    async def passed() -> bool:
        return await _metric(watched, "idres_verify_passes_total", '{kind="changes"}') >= 1

    await _eventually(passed)
    await _forge(watched, handle)
    started = time.monotonic()

    async def repaired() -> bool:
        _, body, _ = await _get(watched, "super", f"/api/handles/{handle}")
        return _url(body) == TRUE_URL

    await _eventually(repaired, within=15)
    assert time.monotonic() - started < 15
    labels = '{found_by="audit",repaired="true"}'

    async def counted() -> bool:
        return await _metric(watched, "idres_integrity_findings_total", labels) == 1

    await _eventually(counted)
    assert await _metric(watched, "idres_verify_last_pass_timestamp_seconds", '{kind="changes"}')
    assert await _metric(watched, "idres_verify_records_checked_total") >= 1
