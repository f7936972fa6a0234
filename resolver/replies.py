"""Every answer a read gets, encoded once: the aiohttp routes (``resolver/api.py``) and
the front door (``resolver/front.py``) send the same bytes because both build them
here. A ``Reply`` is status, content type, extra headers and body; how it goes on
the wire is the caller's business.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from registry.httpio import CHALLENGE, dump, error_body
from resolver import did
from resolver import web as web_view
from resolver.service import Answer, decorate, not_found
from schemas.codec_json import values_from_json
from schemas.errors import IdresError, InvalidValue
from schemas.identifiers import Identifier
from schemas.record import HandleValue

JSON = "application/json"
HTML = "text/html; charset=utf-8"
LINKSET = "application/linkset+json"


__all__ = ["Reply", "not_found"]


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


def error(exc: IdresError) -> Reply:
    """A domain error as JSON, as registry/httpio.py's middleware answers it."""
    retry = () if exc.retry_after is None else (("Retry-After", str(exc.retry_after)),)
    return Reply(
        exc.http_status, dump(error_body(exc)), headers=retry + _challenge(exc.http_status)
    )


def _challenge(status: int) -> tuple[tuple[str, str], ...]:
    return (("WWW-Authenticate", CHALLENGE),) if status == 401 else ()


def overloaded(retry_after: int) -> Reply:
    """Shed at the door: the node is past what it can answer within its bound."""
    return Reply(
        503,
        dump(
            {
                "responseCode": 2,
                "message": f"this node is answering all it can; ask again in {retry_after} s",
            }
        ),
        headers=(("Retry-After", str(retry_after)),),
    )


def handle(
    answer: Answer,
    ident: Identifier,
    *,
    types: set[str],
    indexes: frozenset[int] | None,
    edge: bool = False,
) -> Reply:
    """``GET /api/handles/{id}``: the cached bytes themselves unless the request narrows
    or decorates them (filters, Digital Link qualifiers, a stale mark).

    ``edge``: the node's edge asked, and may keep the plain answer (see edge_headers).
    """
    headers: tuple[tuple[str, str], ...] = (("Idres-Source", answer.source),)
    headers += _challenge(answer.status)  # values none but their admins may read
    if answer.stale:
        headers += (("Idres-Stale", "true"),)
    if not (types or indexes is not None or ident.qualifiers or answer.stale):
        if edge:
            headers += edge_headers(answer, ident.canonical)
        return Reply(answer.status, answer.body, JSON, headers)
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
    return Reply(answer.status, dump(body), JSON, headers)


EDGE_KEY = "Idres-Edge-Key"
EDGE_TTL = "Idres-Edge-TTL"
EDGE_CLIENT = "Idres-Client"  # the client's address, as the edge saw it
EDGE_SCHEME = "Idres-Scheme"  # "https" when the client spoke TLS to the edge


def edge_headers(answer: Answer, key: str) -> tuple[tuple[str, str], ...]:
    """What lets the node's edge (``resolver/edge``) keep an answer: the identifier
    whose change makes it old (the edge hears ``idres_changed`` as the workers do) and
    for how long it may be kept at most. None for answers no cache here may keep, and
    for keys a header cannot carry as they are (the edge matches them byte for byte
    against the NOTIFY payloads)."""
    if answer.ttl is None or answer.status not in (200, 404):
        return ()
    if not (key.isascii() and key.isprintable()):
        return ()
    return ((EDGE_KEY, key), (EDGE_TTL, f"{answer.ttl:.3f}"))


def did_document(ident: Identifier, answer: Answer) -> Reply:
    """A W3C DID resolution result for a resolved did:bid or did:cn."""
    result, status = did.from_answer(ident.canonical, answer.status, orjson.loads(answer.body))
    return _did(result, status)


def did_error(error: str, message: str, status: int) -> Reply:
    return _did(did.resolution_error(error, message), status)


def _did(result: dict[str, Any], status: int) -> Reply:
    return Reply(status, dump(result), did.CONTENT_TYPE)


def browse(ident: Identifier, answer: Answer, *, accept: str, noredirect: bool) -> Reply:
    """``GET /{id}``: redirect a browser or scanner to the record's URL, or show it; for
    a GS1 Digital Link, its default link or its linkset (GS1 DL URI syntax 1.2)."""
    try:
        record = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        return page(ident.canonical, None, "the answer could not be read", 502)
    if answer.status != 200 or record.get("responseCode") != 1:
        return page(ident.canonical, None, str(record.get("message", "")), answer.status)
    values = _values(record)
    if values is None:
        return page(ident.canonical, None, "the answer holds values that are not valid", 502)
    if ident.uri is not None:
        if LINKSET in accept:
            return Reply(200, dump(web_view.linkset(ident.uri, values)), LINKSET)
        target = web_view.default_link(values)
        if target and not noredirect:
            return Reply(307, b"", "", (("Location", target),))
        return page(ident.canonical, values, "", 200)
    target = web_view.redirect_target(values)
    if target and not noredirect:
        return Reply(302, b"", "", (("Location", target),))
    return page(ident.canonical, values, "", 200)


def page(handle: str, values: Sequence[HandleValue] | None, message: str, status: int) -> Reply:
    return Reply(status, web_view.page(handle, values, message=message).encode(), HTML)


def _values(record: dict[str, Any]) -> tuple[HandleValue, ...] | None:
    """The answer's values parsed as a registrant's would be: the page and the redirect
    are built from these, not from the bytes that came from upstream."""
    try:
        return values_from_json({"values": record.get("values")}, now=0)
    except InvalidValue:
        return None
