"""Asking the next node: one pooled HTTP client, and the faults it can meet as domain errors.

A node that hangs is a 504 after the timeout, one that answers garbage is a 502, and
one that cannot be reached is a 502 too; aiohttp's exceptions stay in this file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson

from schemas.errors import IdresError

MAX_UPSTREAM_BODY = 16 * 1024 * 1024


class UpstreamError(IdresError):
    """The next node failed; a cached copy may still be served, marked stale."""

    response_code = 2
    http_status = 502


class UpstreamTimeout(UpstreamError):
    http_status = 504


class UpstreamBusy(UpstreamError):
    """The next node refused the lookup as overloaded (503): so do we, and the client
    may ask again as it was told."""

    http_status = 503
    retry_after = 1


class LoopDetected(IdresError):
    response_code = 2
    http_status = 508


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamAnswer:
    status: int
    body: bytes
    json: dict[str, Any]


class NodeTransport(Protocol):
    async def get(self, url: str, *, headers: Mapping[str, str]) -> UpstreamAnswer: ...

    async def close(self) -> None: ...


class HttpTransport:
    """NodeTransport over aiohttp with one connection pool for all upstream nodes."""

    def __init__(self, *, timeout: float = 2.0, connections: int = 256) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # created on the running loop, on first use
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300),
                auto_decompress=False,
            )
        return self._session

    async def get(self, url: str, *, headers: Mapping[str, str]) -> UpstreamAnswer:
        from yarl import URL

        try:
            async with self._client().get(
                URL(url, encoded=True), headers=dict(headers), allow_redirects=False
            ) as resp:
                body = await resp.content.read(MAX_UPSTREAM_BODY + 1)
                status = resp.status
        except TimeoutError:
            raise UpstreamTimeout(f"the next node did not answer in time: {url}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamError(
                f"the next node could not be reached: {url}: {exc.__class__.__name__}"
            ) from exc
        if len(body) > MAX_UPSTREAM_BODY:
            raise UpstreamError(f"the next node's answer is too large: {url}")
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                f"the next node answered HTTP {status} with a body that is not JSON: {url}"
            ) from None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("responseCode"), int):
            raise UpstreamError(f"the next node answered without a responseCode: {url}")
        return UpstreamAnswer(status=status, body=body, json=parsed)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)
