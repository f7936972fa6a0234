"""Every node as a GS1-conformant resolver: Digital Link paths (compressed too) and
``/.well-known/gs1resolver``. The decisions are ``resolver/gs1.py``'s; this module
reads requests, resolves the key through the node's Resolver and sends the reply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from registry.httpio import dump
from resolver import gs1
from resolver import web as web_view
from resolver.replies import HTML, Reply
from resolver.service import Answer
from schemas.codec_json import values_from_json
from schemas.errors import IdresError, InvalidIdentifier, InvalidValue
from schemas.identifiers import Identifier, parse
from schemas.identifiers.digital_link import PRIMARY_KEYS
from schemas.identifiers.dl_compression import expand_path, is_compressed_segment

WELL_KNOWN = "/.well-known/gs1resolver"
# what this node answers with CORS on OPTIONS
_ALLOW = ("Allow", "GET, HEAD, OPTIONS")


class GS1Resolver:
    def __init__(
        self, resolve: Callable[[Identifier], Awaitable[Answer]], *, host: str, name: str
    ) -> None:
        self.resolve = resolve
        self.host = host
        self.name = name

    def install(self, app: web.Application) -> None:
        """The description file, and OPTIONS on Digital Link paths (their GET and HEAD
        are the node's ``/{tail}`` route, which asks ``answer`` first)."""
        app.router.add_get(WELL_KNOWN, self.well_known)
        app.router.add_route("OPTIONS", WELL_KNOWN, self.options)
        app.router.add_route("OPTIONS", "/{path:(?:01|00|414)/.*}", self.options)
        # a compressed URI: one segment of URI-safe base64, not all digits
        app.router.add_route(
            "OPTIONS", r"/{data:[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*/?}", self.options
        )

    async def well_known(self, request: web.Request) -> web.Response:
        body = dump(gs1.description(self.host, name=f"idres node {self.name}"))
        return web.Response(body=body, content_type="application/json", headers=dict(gs1.CORS))

    async def options(self, request: web.Request) -> web.Response:
        # a CORS preflight or a client asking what it may do: both learn it here
        return web.Response(status=204, headers=dict((*gs1.CORS, _ALLOW)))

    def digital_link(self, text: str) -> tuple[str, str | None] | None:
        """The Digital Link URI a request path (percent-decoded, after "/", no query)
        names, and the uncompressed URI when it was compressed; None when the path is
        not a Digital Link. Raises InvalidIdentifier for a malformed one."""
        first, _, rest = text.partition("/")
        if first in PRIMARY_KEYS and rest:
            uri = f"https://{self.host}/{text}"
            try:
                parse(uri)
            except InvalidIdentifier as exc:
                # /01/{gtin}/{compressed qualifiers and attributes}, or simply malformed
                try:
                    expanded = expand_path(text, host=self.host)
                except InvalidIdentifier:
                    raise exc from None
                if expanded is None:
                    raise
                return expanded, expanded
            return uri, None
        segment = text.removesuffix("/")
        if "/" not in segment and is_compressed_segment(segment):
            try:
                expanded = expand_path(segment, host=self.host)
            except InvalidIdentifier:
                return None  # not compressed data after all: an identifier's path
            return (expanded, expanded) if expanded else None
        return None

    async def answer(self, raw_path: str, request: gs1.Request) -> Reply | None:
        """The reply to a read of ``raw_path`` (decoded, after "/") if it is a Digital
        Link path, else None (the caller answers it as an identifier)."""
        try:
            found = self.digital_link(raw_path)
        except InvalidIdentifier as exc:
            return _page(raw_path, exc.message, 400, request)  # malformed: 400
        if found is None:
            return None
        uri, same_as = found
        query = request.query
        if same_as and "?" in uri:  # data attributes of a compressed URI pass on too
            uri, _, carried = uri.partition("?")
            query = carried + ("&" + query if query else "")
        request = gs1.Request(
            link_type=_link_type(query) if same_as else request.link_type,
            accept=request.accept,
            accept_language=request.accept_language,
            query=query,
            noredirect=request.noredirect,
            path=raw_path,
            same_as=same_as,
        )
        try:
            ident = parse(uri)
            answer = await self.resolve(ident)
        except IdresError as exc:
            return _page(uri, exc.message, exc.http_status, request)
        try:
            record = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            return _page(ident.canonical, "the answer could not be read", 502, request)
        if answer.status != 200 or record.get("responseCode") != 1:
            return _page(ident.canonical, str(record.get("message", "")), answer.status, request)
        try:
            values = values_from_json({"values": record.get("values")}, now=0)
        except InvalidValue:
            why = "the answer holds values that are not valid"
            return _page(ident.canonical, why, 502, request)
        return gs1.respond(ident, values, request, host=self.host)


def request_of(*, query: str, accept: str, accept_language: str, path: str) -> gs1.Request:
    """A Digital Link request as the HTTP layers see it (``query``: raw, no "?")."""
    return gs1.Request(
        link_type=_link_type(query),
        accept=accept,
        accept_language=accept_language,
        query=query,
        noredirect="noredirect" in dict(parse_qsl(query, keep_blank_values=True)),
        path=path,
    )


def _link_type(query: str) -> str | None:
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "linkType":
            return value
    return None


def _page(shown: str, message: str, status: int, request: gs1.Request) -> Reply:
    body = web_view.page(shown, None, message=message).encode()
    return Reply(status, body, HTML, gs1.CORS if status >= 400 else gs1.headers_for(request))
