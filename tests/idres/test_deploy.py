"""Issue 16, item 2: ``idres deploy`` lays out a hierarchy that runs as separate
``idres serve`` processes, each operator keeping its own key.

Three operators, each with a folder of its own standing for its machine: each node's
key is made there by ``deploy request``; each parent signs its child's request there
with its key alone (``deploy sign``); ``deploy assemble`` makes ``nodes.json`` and
prints the command lines, which are run as printed, on the suite's real Kafka and
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import pytest_asyncio

from benchmarks.loadgen import free_port
from registry import httpsig
from registry.client import RegistryClient
from tests.conftest import with_database
from tests.sync.nodes import ADMIN_ID, NodeProcess

pytestmark = [pytest.mark.asyncio, pytest.mark.kafka]

IDRES = str(Path(sys.executable).with_name("idres"))
# (role, as the layout writes it, parent, prefix)
ROLES = (
    ("super", "super", None, "bid:"),
    ("backbone", "backbone", "super", "88"),
    ("sub", "subchain", "backbone", "88.100"),
)


def deploy(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [IDRES, "deploy", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    if ok:
        assert done.returncode == 0, done.stderr
    return done


@pytest_asyncio.fixture
async def databases(pg_server_url: str, pg_template: str) -> AsyncIterator[dict[str, str]]:
    """A database of its own for each node, by role."""
    run = uuid.uuid4().hex[:8]
    names = {role: f"idres_deploy_{role}_{run}" for role, *_ in ROLES}
    admin = await asyncpg.connect(pg_server_url)
    try:
        for db in names.values():
            await admin.execute(f'CREATE DATABASE "{db}" TEMPLATE "{pg_template}"')
    finally:
        await admin.close()
    yield {role: with_database(pg_server_url, db) for role, db in names.items()}
    admin = await asyncpg.connect(pg_server_url)
    try:
        for db in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    finally:
        await admin.close()


def layout_toml(
    tmp: Path, names: dict[str, str], ports: dict[str, int], dbs: dict[str, str], kafka: str
) -> str:
    sasl = bool(os.environ.get("KAFKA_SASL_USERNAME"))  # the suite's broker wants it
    lines = [
        "[network]",
        f'idres = "{IDRES}"',
        f'directory = "{tmp / "shared" / "nodes.json"}"',
        f'kafka = "{kafka}"',
        *([f'kafka_passwords = "{tmp / "kafka-users"}"'] if sasl else []),
    ]
    for role, kind, parent, prefix in ROLES:
        lines += [
            "",
            "[[node]]",
            f'name = "{names[role]}"',
            f'role = "{kind}"',
            *([f'parent = "{names[parent]}"'] if parent else []),
            f'url = "http://127.0.0.1:{ports[role]}"',
            f'listen = "127.0.0.1:{ports[role]}"',
            f'prefixes = ["{prefix}"]',
            f'data_dir = "{tmp / role / "data"}"',
            f'database_url = "{dbs[role]}"',
        ]
    return "\n".join(lines) + "\n"


def printed_commands(runbook: str) -> dict[str, tuple[dict[str, str], list[str]]]:
    """Each node's printed ``idres serve`` line: its environment and its argv, by name."""
    found = {}
    for line in runbook.splitlines():
        if line.lstrip().startswith("#") or f"{IDRES} serve " not in line:
            continue
        words = shlex.split(line)
        at = words.index(IDRES)
        env = dict(w.split("=", 1) for w in words[:at])
        found[words[words.index("--name") + 1]] = (env, words[at:])
    return found


async def resolve(url: str, handle: str, query: str = "") -> tuple[int, dict[str, object]]:
    target = f"{url}/api/handles/{handle}{query}"
    async with aiohttp.ClientSession() as session, session.get(target) as response:
        body: dict[str, object] = await response.json(content_type=None)
        return response.status, body


def lay_out(
    tmp_path: Path,
    names: dict[str, str],
    ports: dict[str, int],
    databases: dict[str, str],
    kafka: str,
) -> dict[str, tuple[dict[str, str], list[str]]]:
    """The three operators' steps, as the README gives them; each node's printed
    environment and command line."""
    description = layout_toml(tmp_path, names, ports, databases, kafka)
    # every operator holds the same description; each works in its own folder
    for role, *_ in ROLES:
        (tmp_path / role).mkdir()
        (tmp_path / role / "network.toml").write_text(description)

    # each node's operator: a key of its own, and a request to send to the parent
    for role, *_ in ROLES:
        deploy(
            "request",
            "network.toml",
            "--node",
            names[role],
            "--out",
            "request.json",
            cwd=tmp_path / role,
        )
        key = tmp_path / role / "data" / "node.pem"
        assert key.stat().st_mode & 0o777 == 0o600
    keys = {p.relative_to(tmp_path) for p in tmp_path.rglob("*.pem")}
    assert keys == {Path(role, "data", "node.pem") for role, *_ in ROLES}

    # each parent signs its child's request where its own key is, with nothing else
    deploy(
        "sign",
        "network.toml",
        "request.json",
        "--key",
        "data/node.pem",
        "--out",
        "super.json",
        cwd=tmp_path / "super",
    )
    for child, parent in (("backbone", "super"), ("sub", "backbone")):
        shutil.copy(tmp_path / child / "request.json", tmp_path / parent / f"{child}.request.json")
        shutil.copy(tmp_path / parent / f"{parent}.json", tmp_path / parent / "own.json")
        if child == "sub":  # the super node's key cannot stand in for the backbone's
            refused = deploy(
                "sign",
                "network.toml",
                "sub.request.json",
                "--key",
                str(tmp_path / "super" / "data" / "node.pem"),
                "--parent",
                "own.json",
                cwd=tmp_path / parent,
                ok=False,
            )
            assert refused.returncode == 2
            assert f"not the key of '{names['backbone']}'" in refused.stderr
        deploy(
            "sign",
            "network.toml",
            f"{child}.request.json",
            "--key",
            "data/node.pem",
            "--parent",
            "own.json",
            "--out",
            f"{child}.json",
            cwd=tmp_path / parent,
        )
        shutil.copy(tmp_path / parent / f"{child}.json", tmp_path / child / f"{child}.json")

    # anyone assembles nodes.json from the signed pieces, against the anchor the super
    # node's operator gave out, and reads what to run where
    anchor = json.loads((tmp_path / "super" / "request.json").read_text())["publicKey"]
    pieces = [str(tmp_path / role / f"{role}.json") for role, *_ in ROLES]
    shared = tmp_path / "shared"
    done = deploy(
        "assemble",
        "network.toml",
        *pieces,
        "--out",
        str(shared),
        "--trust-anchor",
        anchor,
        cwd=tmp_path / "super",
    )
    assert [d["name"] for d in json.loads((shared / "nodes.json").read_text())] == [
        names[role] for role, *_ in ROLES
    ]
    commands = printed_commands(done.stdout)
    assert sorted(commands) == sorted(names.values())
    for role, *_ in ROLES:
        env, argv = commands[names[role]]
        assert env["DATABASE_URL"] == databases[role]
        assert argv[argv.index("--data-dir") + 1] == str(tmp_path / role / "data")
        assert argv[argv.index("--trust-anchor") + 1] == anchor

    # the Kafka operator makes each node's user and ACLs, as printed
    if os.environ.get("KAFKA_SASL_USERNAME"):
        (acl,) = [line for line in done.stdout.splitlines() if " kafka-acl " in line]
        provisioned = subprocess.run(shlex.split(acl), capture_output=True, text=True, timeout=120)
        assert provisioned.returncode == 0, provisioned.stderr

    return commands


async def test_three_operators_lay_out_sign_and_run_a_hierarchy(
    tmp_path: Path, databases: dict[str, str], kafka_bootstrap: str
) -> None:
    run = uuid.uuid4().hex[:6]
    names = {role: f"{role}-{run}" for role, *_ in ROLES}  # its own Kafka topics
    ports = {role: free_port() for role, *_ in ROLES}
    commands = lay_out(tmp_path, names, ports, databases, kafka_bootstrap)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_SASL_")}
    nodes = {
        role: NodeProcess(
            name=names[role],
            url=f"http://127.0.0.1:{ports[role]}",
            port=ports[role],
            args=commands[names[role]][1],
            env={**clean, **commands[names[role]][0]},  # each logs in as itself
            database_url=databases[role],
            log=tmp_path / f"{role}.log",
        )
        for role, *_ in ROLES
    }
    try:
        for role in ("sub", "backbone", "super"):
            nodes[role].start()
        # a write at the sub-chain node, by its own operator's admin key
        admin = httpsig.load_private_key((tmp_path / "sub" / "data" / "admin.pem").read_bytes())
        async with RegistryClient(nodes["sub"].url, key=admin, key_id=ADMIN_ID) as client:
            reply = await client.put(
                "88.100.1/DEPLOY-1", [{"index": 1, "type": "URL", "data": "https://example.com/d"}]
            )
        assert reply.status == 201, reply.body
        # the super node answers it from its own copy, carried up over Kafka: asked not
        # to recurse (and never asked before, so nothing is cached), it names the node
        # below until the copy arrives
        deadline = time.monotonic() + 40
        while True:
            status, body = await resolve(
                nodes["super"].url, "88.100.1/DEPLOY-1", "?recursive=false"
            )
            if body.get("responseCode") == 1 or time.monotonic() > deadline:
                break
            # a referral, or "ask again" from a node busy starting on a shared machine
            assert body.get("responseCode") == 303 or status == 503, body
            await asyncio.sleep(0.25)
        assert body["responseCode"] == 1, body
        assert body["values"][0]["data"]["value"] == "https://example.com/d"  # type: ignore[index]
    finally:
        output = "".join(node.stop() for node in nodes.values())
    assert "Traceback" not in output, output
