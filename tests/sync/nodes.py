"""A hierarchy of real ``idres serve`` processes on Kafka, each with its own database,
that a test can kill (-9), restart, and write to."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
from cryptography.hazmat.primitives.asymmetric import ed25519

from benchmarks.loadgen import free_port
from idres.assembly import NodeSpec, delegations, node_public_key, save_node_key
from idres.keyfiles import write_secret
from registry import httpsig
from registry.client import ClientError, RegistryClient
from registry.database import create_pool
from resolver.topology import Directory, Role
from sync.kafka import KafkaCredentials
from sync.kafka_acl import provision
from tests.conftest import with_database

ADMIN_ID = "300:0.NA/node.admin"


@dataclass
class NodeProcess:
    name: str
    url: str
    port: int
    args: list[str]
    env: dict[str, str]
    database_url: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the node, its output appended to ``log``; return once it serves."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("a") as out:  # a file, not a pipe: a full pipe would stall it
            self.proc = subprocess.Popen(
                self.args,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            with self.log.open() as f:
                f.seek(offset)
                if "idres: chain" in f.read():
                    return
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not start:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def kill(self) -> None:
        """kill -9: no cleanup, no flush, whatever was in flight is cut off."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> str:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.output()


class Network:
    """super -> backbone -> sub, names unique per test (their Kafka topics too)."""

    def __init__(self, work: Path, pg_url: str, template: str, kafka: str) -> None:
        run = uuid.uuid4().hex[:6]
        self.work, self.pg_url, self.template, self.kafka = work, pg_url, template, kafka
        self.names = {n: f"{n}-{run}" for n in ("super", "backbone", "sub")}
        self.admin_path = work / "admin.pem"
        write_secret(self.admin_path, httpsig.private_key_pem(httpsig.generate_key()))
        self.admin = httpsig.load_private_key(self.admin_path.read_bytes())
        self.nodes: dict[str, NodeProcess] = {}
        self.passwords: dict[str, str] = {}  # Kafka SCRAM passwords, by node name

    async def create(self) -> None:
        keys = {n: ed25519.Ed25519PrivateKey.generate() for n in self.names}
        ports = {n: free_port() for n in self.names}
        layout = [
            ("super", Role.SUPER, None, ("bid:",)),
            ("backbone", Role.BACKBONE, "super", ("88",)),
            ("sub", Role.SUBCHAIN, "backbone", ("88.100",)),
        ]
        specs = [
            NodeSpec(
                name=self.names[n],
                role=role,
                parent=self.names[p] if p else None,
                url=f"http://127.0.0.1:{ports[n]}",
                prefixes=prefixes,
            )
            for n, role, p, prefixes in layout
        ]
        directory = self.work / "directory.json"
        by_name = {self.names[n]: k for n, k in keys.items()}
        self.delegations = delegations(specs, by_name)
        directory.write_text(json.dumps([d.to_json() for d in self.delegations]))
        anchor = base64.b64encode(node_public_key(keys["super"])).decode()
        self.keys, self.anchor, self.ports = keys, anchor, ports
        await self._provision()
        admin = await asyncpg.connect(self.pg_url)
        try:
            for n in self.names.values():
                db = "idres_" + n.replace("-", "_")
                await admin.execute(f'CREATE DATABASE "{db}" TEMPLATE "{self.template}"')
        finally:
            await admin.close()
        for n in self.names:
            self._node(n, directory, keys[n])

    async def add_mirror(self, of: str = "super", snapshot: Path | None = None) -> NodeProcess:
        """A new node, delegated by the super node late, that mirrors ``of`` (starting
        from ``snapshot`` when given)."""
        key = ed25519.Ed25519PrivateKey.generate()
        port = free_port()
        self.names["mirror"] = f"mirror-{self.names['super'].rsplit('-', 1)[1]}"
        spec = NodeSpec(
            name=self.names["mirror"],
            role=Role.BACKBONE,
            parent=self.names["super"],
            url=f"http://127.0.0.1:{port}",
            prefixes=(),
        )
        (mirror,) = [
            d
            for d in delegations([spec], {spec.name: key, self.names["super"]: self.keys["super"]})
            if d.name == spec.name
        ]
        directory = self.work / "directory-mirror.json"
        self.delegations = [*self.delegations, mirror]
        directory.write_text(json.dumps([d.to_json() for d in self.delegations]))
        await self._provision(mirrors={spec.name: self.names[of]})
        admin = await asyncpg.connect(self.pg_url)
        try:
            db = "idres_" + spec.name.replace("-", "_")
            await admin.execute(f'CREATE DATABASE "{db}" TEMPLATE "{self.template}"')
        finally:
            await admin.close()
        node = self._node("mirror", directory, key, port=port)
        node.args += ["--mirror-of", self.names[of]]
        if snapshot is not None:
            node.args += ["--snapshot", str(snapshot)]
        node.start()
        return node

    def _node(
        self, n: str, directory: Path, key: ed25519.Ed25519PrivateKey, *, port: int | None = None
    ) -> NodeProcess:
        name = self.names[n]
        data = self.work / n
        save_node_key(data / "node.pem", key)
        db_url = with_database(self.pg_url, "idres_" + name.replace("-", "_"))
        port = port or self.ports[n]
        self.nodes[n] = NodeProcess(
            name=name,
            url=f"http://127.0.0.1:{port}",
            port=port,
            args=[
                sys.executable,
                "-m",
                "idres",
                "serve",
                "--port",
                str(port),
                "--directory",
                str(directory),
                "--name",
                name,
                "--trust-anchor",
                self.anchor,
                "--data-dir",
                str(data),
                "--admin-key",
                str(self.admin_path),
                "--kafka",
                self.kafka,
                *self._kafka_login(name),
            ],
            # each node logs in as itself, never as the suite's admin
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("KAFKA_SASL_")},
                "DATABASE_URL": db_url,
            },
            database_url=db_url,
            log=self.work / f"{n}.log",
        )
        return self.nodes[n]

    async def _provision(self, mirrors: dict[str, str] | None = None) -> None:
        """Each node a SCRAM user of its own with the ACLs its place in the directory
        gives it (``idres kafka-acl``'s work), when the suite's broker checks them."""
        admin = KafkaCredentials.from_env()
        if admin is None:  # a broker without SASL (KAFKA_BOOTSTRAP of one's own)
            return
        for name in self.names.values():
            self.passwords.setdefault(name, uuid.uuid4().hex)
        directory = Directory(self.delegations, trust_anchor=self.delegations[0].public_key)
        await provision(
            self.kafka,
            admin,
            directory,
            passwords={n: self.passwords[n] for n in self.names.values()},
            mirrors=mirrors,
        )

    def _kafka_login(self, name: str) -> list[str]:
        if name not in self.passwords:
            return []
        path = self.work / f"{name}.kafka-password"
        write_secret(path, self.passwords[name].encode(), replace=True)
        return ["--kafka-user", name, "--kafka-password-file", str(path)]

    def start_all(self) -> None:
        for n in ("sub", "backbone", "super"):
            self.nodes[n].start()

    def stop_all(self) -> str:
        return "".join(node.stop() for node in self.nodes.values())

    async def drop(self) -> None:
        admin = await asyncpg.connect(self.pg_url)
        try:
            for n in self.names.values():
                db = "idres_" + n.replace("-", "_")
                await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        finally:
            await admin.close()

    def client(self, node: str) -> RegistryClient:
        return RegistryClient(self.nodes[node].url, key=self.admin, key_id=ADMIN_ID, timeout=10)

    async def register(self, handle: str, url: str, *, node: str = "sub") -> int:
        """PUT until acknowledged (retrying through a restart); the version written."""
        key = uuid.uuid4().hex  # one Idempotency-Key: a retry never writes twice
        values = [{"index": 1, "type": "URL", "data": url}]
        for _ in range(600):
            try:
                async with self.client(node) as client:
                    reply = await client.put(handle, values, idempotency_key=key)
            except ClientError:
                await asyncio.sleep(0.1)
                continue
            if reply.status in (200, 201):
                return int(reply.body["version"])
            if reply.status >= 500:
                await asyncio.sleep(0.1)
                continue
            raise AssertionError(f"PUT {handle}: {reply.status} {reply.body}")
        raise AssertionError(f"PUT {handle} never acknowledged")

    async def records(self, node: str) -> dict[str, tuple[int, str]]:
        """Every identifier under 88.100 at ``node``: version and URL, from its database."""
        pool = await create_pool(self.nodes[node].database_url, min_size=1, max_size=1)
        try:
            rows = await pool.fetch(
                "SELECT i.handle, i.version, convert_from(v.data, 'UTF8') AS url"
                " FROM identifiers i JOIN handle_values v USING (handle)"
                " WHERE i.handle LIKE '88.100.%' AND v.idx = 1"
            )
        finally:
            await pool.close()
        return {r["handle"]: (r["version"], r["url"]) for r in rows}

    async def history(self, node: str, like: str) -> list[tuple[str, int, str]]:
        """(identifier, version, op) of every history row matching ``like`` at ``node``."""
        pool = await create_pool(self.nodes[node].database_url, min_size=1, max_size=1)
        try:
            rows = await pool.fetch(
                "SELECT handle, version, op FROM history WHERE handle LIKE $1"
                " ORDER BY handle, version",
                like,
            )
        finally:
            await pool.close()
        return [(r["handle"], r["version"], r["op"]) for r in rows]

    async def resolve(self, node: str, handle: str) -> dict[str, object]:
        url = f"{self.nodes[node].url}/api/handles/{handle}?recursive=false"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            body: dict[str, object] = await response.json()
            return body
