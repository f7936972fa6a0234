"""Where a followed chain stands at its own node: what makes a quiet chain's copy
current.

A copy of a chain counts as current (``sync.notices.is_current``) while its node is
known to publish: a block cut within the last few seconds, or, for a chain with
nothing new, its node saying that its chain ends exactly where the copy ends. A
quiet chain cuts no blocks, and without this its copy would stop counting as current
3 s after its last write: every identifier missing from it would be asked for down
the tree (a hop, and a connection held meanwhile) although the copy has every block.

Each node answers ``GET /api/sync/tip`` with its own chain's last block (height and
hash) and whether writes wait in its outbox, not yet cut (``sync/service.py``): only
a tip with nothing pending confirms a copy. The answer is the chain node's own word about its own
chain: a node that lies can only make the nodes above it answer "not found" for its
own identifiers, or ask it for them; it cannot touch another node's records.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import aiohttp

from resolver.topology import Directory

TIP_PATH = "/api/sync/tip"
# seconds: a slower answer is no answer (the copy stays as it was). Each answer
# vouches for the moment it was asked, so a slow one is still sound, only older
TIMEOUT = 2.0


def read_tip(body: object, chain: str) -> tuple[int, bytes] | None:
    """(height, block hash) from a tip answer for ``chain``; None if it is not one, or
    if writes wait at the node, not yet in a block (its chain is about to grow)."""
    if not isinstance(body, dict) or body.get("chain") != chain:
        return None
    if body.get("pending") is not False:
        return None
    height, digest = body.get("height"), body.get("hash")
    if type(height) is not int or height < 0 or not isinstance(digest, str):
        return None
    try:
        return height, bytes.fromhex(digest)
    except ValueError:
        return None


class TipClient:
    """Asks a chain's node where its chain ends; None when it cannot tell."""

    def __init__(self, directory: Callable[[], Directory], *, timeout: float = TIMEOUT) -> None:
        self.directory = directory
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, chain: str) -> tuple[int, bytes] | None:
        node = self.directory().by_name.get(chain)
        if node is None:
            return None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._session.get(node.url + TIP_PATH) as response:
                if response.status != 200:
                    return None
                body = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return None
        return read_tip(body, chain)

    async def close(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.close()
            self._session = None
