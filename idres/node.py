"""Assemble and run one node: PostgreSQL, the store, the admin key, the HTTP API.

This is the only place that knows how the parts fit; each part is handed what it
needs.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from idres.config import NodeConfig
from registry import httpsig
from registry.api import RegistryConfig, create_app
from registry.authz import parse_prefix
from registry.database import create_pool, start_embedded
from registry.service import bootstrap
from registry.store import PostgresStore

log = logging.getLogger("idres.node")


def admin_public_key(config: NodeConfig) -> tuple[bytes, Path]:
    """The node admin's public key (DER), creating ``data_dir/admin.pem`` if none is set."""
    path = config.admin_key or config.data_dir.expanduser() / "admin.pem"
    if not path.exists():
        if config.admin_key is not None:
            raise SystemExit(f"idres: admin key {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        key = httpsig.generate_key()
        path.write_bytes(httpsig.private_key_pem(key))
        path.chmod(0o600)
    pem = path.read_bytes()
    if b"PRIVATE KEY" in pem:
        return httpsig.public_key_der(httpsig.load_private_key(pem)), path
    public = load_pem_public_key(pem)
    return public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo), path


async def serve(config: NodeConfig) -> None:
    served = tuple(parse_prefix(p) for p in config.prefixes)
    url = config.database_url
    if url is None:
        url = await asyncio.to_thread(start_embedded, config.data_dir / "pg")
    pool = await create_pool(url)
    store = PostgresStore(pool)
    admin_der, admin_path = admin_public_key(config)
    admin_id = await bootstrap(store, served, admin_der, now=int(time.time()))
    app = create_app(
        store,
        RegistryConfig(
            served=served,
            max_body_bytes=config.max_body_bytes,
            signature_max_age=config.signature_max_age,
        ),
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    print(
        f"idres: serving http://{config.host}:{config.port} "
        f"(prefixes {', '.join(config.prefixes)})",
        flush=True,
    )
    print(f"idres: admin key {admin_path}, key id {admin_id}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await pool.close()
