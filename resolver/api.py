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
from collections.abc import Awaitable, Callable, Sequence
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
from resolver import did
from resolver import web as web_view
from resolver.budget import (
    AUTH_BUDGET,
    MAX_UPSTREAM_PER_BATCH,
    UPSTREAM_BUDGET,
    BudgetConfig,
    Budgets,
)
from resolver.metrics import Metrics
from resolver.service import VIA_HEADER, Answer, Resolver, decorate
from resolver.topology import Directory
from schemas.codec_json import values_from_json
from schemas.errors import AuthenticationNeeded, IdresError, InvalidIdentifier, InvalidValue
from schemas.identifiers import Identifier, Scheme, parse
from schemas.identifiers.digital_link import PRIMARY_KEYS
from schemas.record import HandleValue

MAX_BATCH_RESOLVE = 1000
JSON = "application/json"
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
        # last: every other path names an identifier, as on hdl.handle.net or id.gs1.org
        app.router.add_get("/" + TAIL, self.proxy)

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
            return await self._did(text)
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
        answer = await self.resolver.resolve(
            ident, recursive=recursive, auth=auth, via=_via(request)
        )
        return respond(answer, ident, types=types, indexes=indexes)

    async def _did(self, text: str) -> web.Response:
        """A W3C DID resolution result, errors included, for did:bid and did:cn."""
        try:
            ident = parse(text)
            if ident.scheme not in (Scheme.DID_BID, Scheme.DID_CN):
                raise InvalidIdentifier(text, "not a did:bid or did:cn DID", position=0)
        except InvalidIdentifier as exc:
            return _did_response(did.resolution_error("invalidDid", exc.message), 400)
        try:
            answer = await self.resolver.resolve(ident)
        except IdresError as exc:
            return _did_response(
                did.resolution_error("internalError", exc.message), exc.http_status
            )
        body = orjson.loads(answer.body)
        if answer.status == 404:
            return _did_response(did.resolution_error("notFound", str(body.get("message"))), 404)
        if answer.status != 200 or body.get("responseCode") != 1:
            return _did_response(
                did.resolution_error("internalError", str(body.get("message"))), answer.status
            )
        return _did_response(did.resolution_result(ident.canonical, body), 200)

    async def proxy(self, request: web.Request) -> web.Response:
        """Browsers and scanners: redirect to the record's URL, or show it."""
        self.metrics.inc("idres_requests_total", 'interface="proxy"')
        raw = request.rel_url.raw_path[1:]
        try:
            text = unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return _html(raw, None, "not UTF-8 after percent-decoding", 400)
        first, _, rest = text.partition("/")
        if first in PRIMARY_KEYS and rest:  # a Digital Link path: this node is the resolver
            text = f"https://{self.digital_link_host}/{text}"
        try:
            ident = parse(text)
            answer = await self.resolver.resolve(ident)
        except IdresError as exc:
            return _html(text, None, exc.message, exc.http_status)
        try:
            record = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            return _html(ident.canonical, None, "the answer could not be read", 502)
        if answer.status != 200 or record.get("responseCode") != 1:
            return _html(ident.canonical, None, str(record.get("message", "")), answer.status)
        values = _values(record)
        if values is None:
            return _html(ident.canonical, None, "the answer holds values that are not valid", 502)
        if ident.uri is not None:  # GS1 Digital Link (GS1 DL URI syntax 1.2, resolver)
            if "application/linkset+json" in request.headers.get("Accept", ""):
                return web.Response(
                    body=dump(web_view.linkset(ident.uri, values)),
                    content_type="application/linkset+json",
                )
            target = web_view.default_link(values)
            if target and "noredirect" not in request.query:
                return web.Response(status=307, headers={"Location": target})
            return _html(ident.canonical, values, "", 200)
        target = web_view.redirect_target(values)
        if target and "noredirect" not in request.query:
            return web.Response(status=302, headers={"Location": target})
        return _html(ident.canonical, values, "", 200)

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


def respond(
    answer: Answer, ident: Identifier, *, types: set[str], indexes: frozenset[int] | None
) -> web.Response:
    """The answer as sent: the cached bytes themselves unless the request narrows or
    decorates them (filters, Digital Link qualifiers, a stale mark)."""
    headers = {"Idres-Source": answer.source}
    if answer.stale:
        headers["Idres-Stale"] = "true"
    if not (types or indexes is not None or ident.qualifiers or answer.stale):
        return web.Response(
            body=answer.body, status=answer.status, content_type=JSON, headers=headers
        )
    body = orjson.loads(answer.body)
    values = body.get("values")
    if isinstance(values, list) and (types or indexes is not None):
        body["values"] = [
            v
            for v in values
            if isinstance(v, dict)
            and (not types or v.get("type") in types)
            and (indexes is None or v.get("index") in indexes)
        ]
        if not body["values"]:
            body = {
                "responseCode": 200,
                "handle": body.get("handle"),
                "message": "no values match the filters",
            }
    body = decorate(body, ident, stale=answer.stale)
    return web.Response(body=dump(body), status=answer.status, content_type=JSON, headers=headers)


def _did_response(result: dict[str, Any], status: int) -> web.Response:
    return web.Response(body=dump(result), status=status, content_type=did.CONTENT_TYPE)


def _html(
    handle: str, values: Sequence[HandleValue] | None, message: str, status: int
) -> web.Response:
    return web.Response(
        text=web_view.page(handle, values, message=message), status=status, content_type="text/html"
    )


def _values(record: dict[str, Any]) -> tuple[HandleValue, ...] | None:
    """The answer's values parsed as a registrant's would be: the page and the redirect
    are built from these, not from the bytes that came from upstream."""
    try:
        return values_from_json({"values": record.get("values")}, now=0)
    except InvalidValue:
        return None


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


def local_answer(record_json: dict[str, Any] | None, handle: str) -> Answer:
    """What this node answers for a record it holds, to anyone: its public values."""
    if record_json is None:
        return Answer(
            status=404,
            body=dump(
                {
                    "responseCode": 100,
                    "handle": handle,
                    "message": f"identifier not found: {handle}",
                }
            ),
        )
    if not record_json["values"]:
        exc = AuthenticationNeeded(
            f"the values of {handle} are not public; sign the "
            "request with an admin key to read them"
        )
        return Answer(status=401, body=dump(error_body(exc)))
    return Answer(status=200, body=dump(record_json))
