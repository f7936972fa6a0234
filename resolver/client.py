"""An async client for supply-chain apps: resolve codes with a pooled connection and a
TTL-aware cache, one at a time or in batches, with typed errors.

    async with Client("http://127.0.0.1:8000") as client:
        record = await client.resolve("06901234567892")
        print(record.url)
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from resolver.cache import record_ttl
from schemas.codec_json import values_from_json
from schemas.errors import (
    AuthenticationNeeded,
    Forbidden,
    IdentifierNotFound,
    IdresError,
    InvalidIdentifier,
    ServerError,
    ValuesNotFound,
)
from schemas.identifiers import parse
from schemas.record import HandleValue

MAX_BATCH = 1000


class ResolutionFailed(ServerError):
    """The network could not answer: a node down, slow or broken (HTTP 5xx)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class Referral(IdresError):
    """With ``recursive=False``: the node names the node to ask next (302/303)."""

    http_status = 200

    def __init__(self, message: str, *, code: int, referral: dict[str, Any]) -> None:
        super().__init__(message)
        self.response_code = code
        self.referral = referral


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolved:
    handle: str
    values: tuple[HandleValue, ...]
    stale: bool = False
    qualifiers: tuple[tuple[str, str], ...] = ()

    @property
    def url(self) -> str | None:
        """The first URL value, where a scanned code usually leads."""
        for v in self.values:
            if v.type == "URL" and isinstance(v.value, str):
                return v.value
        return None


def error_for(status: int, body: dict[str, Any], identifier: str) -> IdresError:
    """The typed error a non-success answer stands for."""
    code = body.get("responseCode")
    message = str(body.get("message", f"HTTP {status}"))
    if code == 100:
        return IdentifierNotFound(str(body.get("handle", identifier)))
    if code == 102:
        return InvalidIdentifier(identifier, message)
    if code == 200:
        return ValuesNotFound(message)
    if code in (302, 303) and isinstance(body.get("referral"), dict):
        return Referral(message, code=code, referral=body["referral"])
    if code == 402:
        return AuthenticationNeeded(message)
    if code == 400 and status == 403:
        return Forbidden(message)
    return ResolutionFailed(message, status=status)


class Client:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        connections: int = 100,
        cache_size: int = 10_000,
        negative_ttl: float = 5.0,
    ) -> None:
        self.base = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._cache: OrderedDict[str, tuple[float, Resolved | IdresError]] = OrderedDict()
        self._cache_size = cache_size
        self._negative_ttl = negative_ttl
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout, connector=aiohttp.TCPConnector(limit=self._connections)
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def resolve(
        self, identifier: str, *, recursive: bool = True, auth: bool = False
    ) -> Resolved:
        """The record of ``identifier``; raises IdentifierNotFound, InvalidIdentifier,
        ResolutionFailed, ... Invalid input fails here, without a request."""
        ident = parse(identifier)
        key = ident.canonical
        if not auth:
            hit = self._cached(key)
            if hit is not None:
                if isinstance(hit, IdresError):
                    raise hit
                return _with_qualifiers(hit, ident.qualifiers)
        query = {} if recursive else {"recursive": "false"}
        if auth:
            query["auth"] = "true"
        status, body = await self._get(
            "/api/handles/" + quote(key, safe="/:@!$&'()*+,;=-._~"), query
        )
        result = self._result(status, body, identifier)
        if isinstance(result, IdresError):
            if isinstance(result, IdentifierNotFound):
                self._store(key, time.monotonic() + self._negative_ttl, result)
            raise result
        if not result.stale:
            ttl = record_ttl([(v.ttl, v.ttl_type.value == 1) for v in result.values], time.time())
            self._store(key, time.monotonic() + ttl, result)
        return _with_qualifiers(result, ident.qualifiers)

    async def resolve_many(self, identifiers: list[str]) -> list[Resolved | IdresError]:
        """Each identifier's record or error, in order; one request per 1,000."""
        out: list[Resolved | IdresError] = []
        for start in range(0, len(identifiers), MAX_BATCH):
            chunk = identifiers[start : start + MAX_BATCH]
            status, body = await self._post("/api/resolve", {"identifiers": chunk})
            if status != 200 or not isinstance(body.get("results"), list):
                raise error_for(status, body, "")
            for item, identifier in zip(body["results"], chunk, strict=True):
                out.append(self._result(int(item.get("status", 500)), item, identifier))
        return out

    def _result(self, status: int, body: dict[str, Any], identifier: str) -> Resolved | IdresError:
        if status != 200 or body.get("responseCode") != 1:
            return error_for(status, body, identifier)
        try:
            values = values_from_json({"values": body.get("values")}, now=0)
        except IdresError as exc:
            return ResolutionFailed(
                f"the node answered an invalid record: {exc.message}", status=status
            )
        return Resolved(
            handle=str(body.get("handle")), values=values, stale=bool(body.get("stale"))
        )

    def _cached(self, key: str) -> Resolved | IdresError | None:
        hit = self._cache.get(key)
        if hit is None or hit[0] <= time.monotonic():
            return None
        self._cache.move_to_end(key)
        return hit[1]

    def _store(self, key: str, until: float, value: Resolved | IdresError) -> None:
        self._cache[key] = (until, value)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _get(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        return await self._request("GET", path, query=query)

    async def _post(self, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        return await self._request("POST", path, body=body)

    async def _request(
        self, method: str, path: str, *, query: dict[str, str] | None = None, body: Any = None
    ) -> tuple[int, dict[str, Any]]:
        assert self._session is not None, "use 'async with Client(...)'"
        url = URL(self.base + path, encoded=True).with_query(query or {})
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            async with self._session.request(method, url, data=data, headers=headers) as resp:
                raw, status = await resp.read(), resp.status
        except TimeoutError:
            raise ResolutionFailed(f"{self.base} did not answer in time", status=504) from None
        except aiohttp.ClientError as exc:
            raise ResolutionFailed(f"{self.base}: {exc}", status=502) from exc
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ResolutionFailed(
                f"{self.base} answered HTTP {status} without JSON", status=status
            ) from None
        if not isinstance(parsed, dict):
            raise ResolutionFailed(f"{self.base} answered unexpected JSON", status=status)
        return status, parsed


def _with_qualifiers(resolved: Resolved, qualifiers: tuple[tuple[str, str], ...]) -> Resolved:
    if not qualifiers:
        return resolved
    return Resolved(
        handle=resolved.handle, values=resolved.values, stale=resolved.stale, qualifiers=qualifiers
    )
