"""The resolution interface of a node: Handle REST reads through the hierarchy, batch
resolve, the directory, health and Prometheus metrics.

A read of a record this node holds, or any signed read (it may see non-public
values), goes to the registry's handler; the rest goes through the Resolver. The
common answer, unfiltered and cached, is written as the bytes the cache holds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import orjson
from aiohttp import web

from registry.api import TAIL, RegistryAPI, target_of
from registry.httpio import (
    BadRequest,
    TooManyRequests,
    dump,
    error_body,
    json_response,
    query_bool,
    query_ints,
)
from registry.httpio import read_json as read_json_body
from registry.httpsig import authority_of
from resolver import did, gs1_api, replies
from resolver.budget import (
    AUTH_BUDGET,
    MAX_UPSTREAM_PER_BATCH,
    UPSTREAM_BUDGET,
    BudgetConfig,
    Budgets,
)
from resolver.did import Failure as DidFailure
from resolver.did_api import DidAPI
from resolver.metrics import Metrics
from resolver.replies import Reply
from resolver.service import VIA_HEADER, Answer, Resolver, not_found
from resolver.topology import Directory
from schemas.codec_json import public_answer
from schemas.errors import AuthenticationNeeded, IdresError, InvalidIdentifier, InvalidValue
from schemas.identifiers import Identifier, Scheme, parse
from schemas.identifiers.did import SERVED_METHODS, method_of
from schemas.record import Record

MAX_BATCH_RESOLVE = 1000
JSON = "application/json"
# The browser proxy's path: any but the API's own, so that /api/... answers 404, or 405
# with an Allow that lists only what the API serves there
BROWSER_TAIL = r"{tail:(?!api/)[\w\W]+}"
# The host a Digital Link path is read under when this node answers it (GS1 DL URI
# syntax 1.2 §4): configured, never the request's Host header, which the client writes.
DEFAULT_DIGITAL_LINK_HOST = "id.gs1.org"


class ResolverAPI:
    def __init__(
        self,
        resolver: Resolver,
        registry: RegistryAPI,
        directory: Callable[[], Directory],
        metrics: Metrics,
        *,
        role: str,
        digital_link_host: str = DEFAULT_DIGITAL_LINK_HOST,
        upstream_budget: BudgetConfig = UPSTREAM_BUDGET,
        auth_budget: BudgetConfig = AUTH_BUDGET,
        max_upstream_per_batch: int = MAX_UPSTREAM_PER_BATCH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.resolver = resolver
        self.registry = registry
        self.directory = directory
        self.metrics = metrics
        self.role = role
        self.digital_link_host = digital_link_host
        self.upstream_budgets = Budgets(upstream_budget)
        self.auth_budgets = Budgets(auth_budget)
        self.max_upstream_per_batch = max_upstream_per_batch
        self.clock = clock
        # a write signed for this node's URL in the directory is a write for this node
        registry.public_authorities = self._own_authorities
        # ?proof=true: answered by the node's sync, which holds the chains (if it runs)
        self.proof: Callable[[Identifier], Awaitable[web.Response]] | None = None
        # Digital Link paths: this node as a GS1-conformant resolver
        self.gs1 = gs1_api.GS1Resolver(
            resolver.resolve, host=digital_link_host, name=resolver.config.name
        )

    def _own_authorities(self) -> tuple[str, ...]:
        me = self.directory().by_name.get(self.resolver.config.name)
        try:
            return (authority_of(me.url),) if me is not None else ()
        except ValueError:
            return ()

    def install(self, app: web.Application) -> None:
        app.router.add_get("/api/handles/" + TAIL, self.get_handle)
        app.router.add_post("/api/resolve", self.resolve_many)
        app.router.add_get("/api/directory", self.directory_json)
        app.router.add_get("/metrics", self.metrics_text)
        app.router.add_get("/healthz", self.healthz)
        self.gs1.install(app)
        DidAPI(self).install(app)
        # last: every other path names an identifier, as on hdl.handle.net or id.gs1.org
        app.router.add_get("/" + BROWSER_TAIL, self.proxy)

    def _from_peer(self, request: web.Request) -> bool:
        """Whether this request was forwarded by the node its ``Idres-Via`` names last,
        from that node's own address: a peer's lookups are its clients', each budgeted
        at the node they entered by, not counted again against the peer here."""
        via = _via(request)
        node = self.directory().by_name.get(via[-1]) if via else None
        return node is not None and _host_ip(node.url) == request.remote

    async def get_handle(self, request: web.Request) -> web.StreamResponse:
        self.metrics.inc("idres_requests_total", 'interface="rest"')
        text, history = target_of(request)
        if did.CONTENT_TYPE in request.headers.get("Accept", ""):
            return to_response(await self.did(text))
        if history or "Signature" in request.headers:
            # a node answers history and signed reads only for what it holds itself
            return await self.registry.get_handle(request)
        ident = parse(text)
        if query_bool(request, "proof", False):
            if request.query.getall("type", []) or "index" in request.query:
                raise BadRequest("proof=true answers the whole record: drop type= and index=")
            if self.proof is None:
                raise BadRequest("this node keeps no chain to prove records with")
            return await self.proof(ident)
        recursive = query_bool(request, "recursive", True)
        auth = query_bool(request, "auth", False)
        types = set(request.query.getall("type", []))
        indexes = query_ints(request, "index")
        query_bool(request, "publicOnly", False)  # unsigned reads see public values only
        # auth=true skips every cache and asks the holder: rate-limited per client, so
        # that anonymous readers cannot turn this node into a flood of the one below
        if (
            auth
            and not self._from_peer(request)
            and not self.auth_budgets.take(_client(request), self.clock())
        ):
            cfg = self.auth_budgets.config
            raise TooManyRequests(
                f"auth=true skips every cache: at most {cfg.rate:g} a second "
                f"({cfg.burst:g} at once) per client; ask without it for the cached answer"
            )
        if auth:
            answer = await self.resolver.resolve(
                ident, recursive=recursive, auth=True, via=_via(request)
            )
            return to_response(replies.handle(answer, ident, types=types, indexes=indexes))
        reply = await self.read(
            ident, recursive=recursive, types=types, indexes=indexes, via=_via(request)
        )
        return to_response(reply)

    async def read(
        self,
        ident: Identifier,
        *,
        recursive: bool = True,
        types: set[str] | None = None,
        indexes: frozenset[int] | None = None,
        via: tuple[str, ...] = (),
        edge: bool = False,
    ) -> Reply:
        """An unsigned read of one identifier, as every port answers it; ``edge``: the
        node's edge fills its cache with it (a fresh answer, with what it needs)."""
        answer = await self.resolver.resolve(ident, recursive=recursive, via=via, fresh=edge)
        return replies.handle(answer, ident, types=types or set(), indexes=indexes, edge=edge)

    async def did(self, text: str) -> Reply:
        """A W3C DID resolution result, errors included, for did:bid and did:cn."""
        found = await self.resolve_did(text)
        if isinstance(found, DidFailure):
            return replies.did_error(found.error, found.message, found.status)
        return replies.did_document(*found)

    async def resolve_did(self, text: str) -> tuple[Identifier, Answer] | DidFailure:
        """The record a DID names, as this node resolves it, or why there is none to
        resolve: a DID of another method, or no DID (DID Resolution's error names)."""
        method = method_of(text)
        if method is not None and method not in SERVED_METHODS:
            served = ", ".join(f"did:{m}" for m in SERVED_METHODS)
            return DidFailure("methodNotSupported", f"did:{method} is not served ({served})")
        try:
            ident = parse(text)
            if ident.scheme not in (Scheme.DID_BID, Scheme.DID_CN):
                raise InvalidIdentifier(text, "not a did:bid or did:cn DID", position=0)
        except InvalidIdentifier as exc:
            return DidFailure("invalidDid", exc.message)
        try:
            return ident, await self.resolver.resolve(ident)
        except IdresError as exc:
            return DidFailure("internalError", exc.message, exc.http_status)

    async def browse(
        self,
        raw: bytes,
        *,
        accept: str,
        noredirect: bool,
        accept_language: str = "",
        query: str = "",
    ) -> Reply:
        """``GET /{id}`` for browsers and scanners (``raw``: the path after "/", as sent;
        ``query``: the raw query string, which a Digital Link passes on)."""
        self.metrics.inc("idres_requests_total", 'interface="proxy"')
        try:
            text = unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            shown = raw.decode("latin-1")
            return replies.page(shown, None, "not UTF-8 after percent-decoding", 400)
        dl = gs1_api.request_of(
            query=query, accept=accept, accept_language=accept_language, path=text
        )
        reply = await self.gs1.answer(text, dl)  # a Digital Link path: this node is the resolver
        if reply is not None:
            return reply
        try:
            ident = parse(text)
            answer = await self.resolver.resolve(ident)
        except IdresError as exc:
            return replies.page(text, None, exc.message, exc.http_status)
        return replies.browse(ident, answer, accept=accept, noredirect=noredirect)

    async def proxy(self, request: web.Request) -> web.Response:
        """Browsers and scanners: redirect to the record's URL, or show it."""
        reply = await self.browse(
            request.rel_url.raw_path[1:].encode("latin-1"),
            accept=request.headers.get("Accept", ""),
            noredirect="noredirect" in request.query,
            accept_language=request.headers.get("Accept-Language", ""),
            query=request.rel_url.raw_query_string,
        )
        return to_response(reply)

    async def resolve_many(self, request: web.Request) -> web.Response:
        self.metrics.inc("idres_requests_total", 'interface="batch"')
        _, body = await read_json_body(request, max_bytes=self.registry.config.max_body_bytes)
        if (
            not isinstance(body, dict)
            or set(body) != {"identifiers"}
            or not isinstance(body["identifiers"], list)
        ):
            raise InvalidValue.single("identifiers", 'send {"identifiers": ["...", ...]}')
        items = body["identifiers"]
        if not 1 <= len(items) <= MAX_BATCH_RESOLVE:
            raise InvalidValue.single(
                "identifiers", f"{len(items)} identifiers; send 1 to {MAX_BATCH_RESOLVE}"
            )
        limit = asyncio.Semaphore(64)
        client = _client(request)
        started = 0

        def permit() -> bool:
            """Whether one more lookup of the next node may start for this request."""
            nonlocal started
            if started >= self.max_upstream_per_batch:
                return False
            if not self.upstream_budgets.take(client, self.clock()):
                return False
            started += 1
            return True

        async def one(item: Any) -> dict[str, Any]:
            if not isinstance(item, str):
                return {
                    "input": item,
                    "responseCode": 102,
                    "status": 400,
                    "message": "not a string",
                }
            try:
                ident = parse(item)
                async with limit:
                    answer = await self.resolver.resolve(ident, permit=permit)
            except IdresError as exc:
                return {"input": item, **error_body(exc), "status": exc.http_status}
            return {
                "input": item,
                "status": answer.status,
                **orjson.loads(answer.body),
                **({"stale": True} if answer.stale else {}),
            }

        results = await asyncio.gather(*(one(i) for i in items))
        return json_response({"responseCode": 1, "results": results})

    async def directory_json(self, request: web.Request) -> web.Response:
        nodes = sorted(self.directory().by_name.values(), key=lambda d: d.name)
        return json_response({"responseCode": 1, "nodes": [d.to_json() for d in nodes]})

    async def metrics_text(self, request: web.Request) -> web.Response:
        text = self.metrics.render({"idres_cache_entries": len(self.resolver.cache)})
        return web.Response(
            text=text, content_type="text/plain", headers={"Cache-Control": "no-store"}
        )

    async def healthz(self, request: web.Request) -> web.Response:
        await self.registry.store.get("0.NA/healthz")  # one round trip to PostgreSQL
        return json_response({"status": "ok", "node": self.resolver.config.name, "role": self.role})


def to_response(reply: Reply) -> web.Response:
    """A reply as aiohttp sends it."""
    response = web.Response(body=reply.body, status=reply.status, headers=reply.headers)
    if reply.content_type:
        response.content_type = reply.content_type.partition(";")[0]
        if "charset=" in reply.content_type:
            response.charset = reply.content_type.rpartition("charset=")[2]
    return response


def _host_ip(url: str) -> str | None:
    """The host of a node's URL, if it is an IP address (names are not resolved here)."""
    host = urlsplit(url).hostname
    try:
        return str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        return None


def _client(request: web.Request) -> str:
    """Who to count a request against: the peer's address (behind a proxy, the proxy)."""
    return request.remote or "unknown"


def _via(request: web.Request) -> tuple[str, ...]:
    raw = request.headers.get(VIA_HEADER, "")
    hops = tuple(h.strip() for h in raw.split(",") if h.strip())
    if len(hops) > 32:
        raise BadRequest(f"{VIA_HEADER} names {len(hops)} hops")
    return hops


def local_answer(record: Record | None, handle: str) -> tuple[Answer, float]:
    """What this node answers for a record it holds, to anyone: its public values (the
    bytes its edge serves from the answers table, schemas.codec_json.public_answer),
    and how long they may be cached."""
    if record is None:
        return Answer(status=404, body=not_found(handle)), 0.0
    public = public_answer(record)
    if public is None:
        exc = AuthenticationNeeded(
            f"the values of {handle} are not public; sign the "
            "request with an admin key to read them"
        )
        return Answer(status=401, body=dump(error_body(exc))), 0.0
    left = None if public.expires_at is None else public.expires_at - time.time()
    ttl = min(t for t in (public.ttl, left) if t is not None)  # one at least: a value
    return Answer(status=200, body=public.body), max(0.0, ttl)
