"""An async client for the registry API that signs what it sends (RFC 9421).

The CLI's commands are thin wrappers over it. The client encodes paths itself and
hands them to aiohttp already encoded, so the path it signs is the path it sends.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from yarl import URL

from registry import httpsig
from schemas.errors import IdresError


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    status: int
    body: dict[str, Any]
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return self.status < 400


class ClientError(IdresError):
    """The server could not be reached or answered with something that is not ours."""

    response_code = 2
    http_status = 502


def handle_path(handle: str, suffix: str = "") -> str:
    """``/api/handles/`` + the identifier percent-encoded, its '/' kept (RFC 3986 §3.3);
    an identifier that itself ends in ``/history`` gets that slash as ``%2F``."""
    path = quote(handle, safe="/:@!$&'()*+,;=-._~")
    if path.endswith("/history"):
        path = path[: -len("/history")] + "%2Fhistory"
    return "/api/handles/" + path + suffix


class RegistryClient:
    def __init__(
        self,
        base_url: str,
        *,
        key: httpsig.PrivateKey | None = None,
        key_id: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.base = base_url.rstrip("/")
        self.key = key
        self.key_id = key_id
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RegistryClient:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        idempotency_key: str | None = None,
        sign: bool = True,
    ) -> Reply:
        assert self._session is not None, "use 'async with RegistryClient(...)'"
        raw_query = urlencode(query or {}, doseq=True)
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers: dict[str, str] = {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if sign and self.key is not None and self.key_id is not None:
            headers.update(
                httpsig.sign_request(
                    method=method,
                    path=path,
                    query=raw_query,
                    headers=headers,
                    body=data,
                    key=self.key,
                    keyid=self.key_id,
                    created=int(time.time()),
                    nonce=uuid.uuid4().hex,
                    # the signature names the node it is for (@authority): sent to
                    # another node holding the same keys it is refused
                    authority=httpsig.authority_of(self.base),
                )
            )
        url = URL(self.base + path + ("?" + raw_query if raw_query else ""), encoded=True)
        try:
            async with self._session.request(method, url, data=data, headers=headers) as resp:
                raw = await resp.read()
                replayed = resp.headers.get("Idempotent-Replayed") == "true"
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ClientError(f"{method} {self.base}{path}: {exc or type(exc).__name__}") from exc
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise ClientError(
                f"{method} {path}: HTTP {status} with a body that is not JSON"
            ) from None
        if not isinstance(parsed, dict):
            raise ClientError(f"{method} {path}: HTTP {status} with unexpected JSON")
        return Reply(status=status, body=parsed, replayed=replayed)

    async def put(
        self,
        handle: str,
        values: list[dict[str, Any]],
        *,
        overwrite: bool = True,
        idempotency_key: str | None = None,
    ) -> Reply:
        query = {} if overwrite else {"overwrite": "false"}
        return await self.request(
            "PUT",
            handle_path(handle),
            query=query,
            body={"values": values},
            idempotency_key=idempotency_key,
        )

    async def delete(self, handle: str, *, idempotency_key: str | None = None) -> Reply:
        return await self.request("DELETE", handle_path(handle), idempotency_key=idempotency_key)

    async def get(self, handle: str, **filters: Any) -> Reply:
        return await self.request("GET", handle_path(handle), query=filters)

    async def history(self, handle: str) -> Reply:
        return await self.request("GET", handle_path(handle, "/history"))

    async def batch(
        self, operations: list[dict[str, Any]], *, idempotency_key: str | None = None
    ) -> Reply:
        return await self.request(
            "POST", "/api/batch", body={"operations": operations}, idempotency_key=idempotency_key
        )

    async def delegate(self, prefix: str, public_key_der: bytes, *, key_index: int = 300) -> Reply:
        body = {
            "prefix": prefix,
            "publicKey": base64.b64encode(public_key_der).decode(),
            "keyIndex": key_index,
        }
        return await self.request("POST", "/api/prefixes", body=body)

    async def list(self, prefix: str, *, page: int = 0, page_size: int = 100) -> Reply:
        return await self.request(
            "GET", "/api/handles", query={"prefix": prefix, "page": page, "pageSize": page_size}
        )
