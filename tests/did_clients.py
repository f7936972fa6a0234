"""npm's stock DID clients as a test helper: run deploy/did/resolve.mjs through
deploy/did/clients.sh, which installs did-resolver and @sphereon/did-uni-client once.

``await resolve_all(base, cases)`` returns one outcome a client and case (see
resolve.mjs); it runs as a subprocess without blocking the loop the nodes serve on.
"""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = ROOT / "deploy" / "did" / "clients.sh"
INSTALL_WAIT = 600.0  # npm ci, the first run on a machine
RUN_WAIT = 60.0


@functools.cache
def ensure_clients() -> None:
    """Install the clients, once per test process."""
    done = subprocess.run(
        ["bash", str(CLIENTS)], capture_output=True, text=True, timeout=INSTALL_WAIT, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{CLIENTS} failed ({done.returncode}):\n{done.stderr}")


async def resolve_all(base: str, cases: list[dict[str, str]]) -> list[dict[str, Any]]:
    ensure_clients()
    proc = await asyncio.create_subprocess_exec(
        "bash",
        str(CLIENTS),
        "run",
        json.dumps({"base": base, "cases": cases}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), RUN_WAIT)
    if proc.returncode != 0:
        raise RuntimeError(f"resolve.mjs failed ({proc.returncode}):\n{err.decode()}")
    outcomes: list[dict[str, Any]] = json.loads(out)
    return outcomes
