"""List Handles (RFC 3652 §3.7.1, opcode 105; CNRI ``ListHandlesRequest``) on a node's
Handle face: the identifiers under a prefix this node holds, for a key the HTTP API
would let list them (``registry.service.authorize_listing``).

The request names the prefix handle ``0.NA/P`` (CNRI's tools convert a bare ``P`` to
it, and so does this face). The answer goes out as messages of at most ``LIST_CHUNK``
handles, each read from PostgreSQL as the one before has been sent, every one but the
last with the CN flag (§2.2.2.3); the CNRI client reads on until a message without it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from registry.authz import named_prefix
from registry.service import RegistryPolicy
from registry.store import PostgresStore, listing_match
from schemas.errors import IdresError, InvalidIdentifier
from schemas.handle_wire import (
    ErrorResponse,
    ListHandlesRequest,
    ListHandlesResponse,
    ResponseBody,
    ResponseCode,
)
from schemas.identifiers import RoutingKey, parse

# handles a message carries: 500 of idres's longest (255 bytes and a length) are
# 130 KB, well within the 256 KiB a CNRI client takes in one message
LIST_CHUNK = 500
Part = tuple[ResponseCode, ResponseBody]


def listed_prefix(body: ListHandlesRequest, policy: RegistryPolicy) -> RoutingKey:
    """The prefix whose handles ``body`` asks for; raises InvalidIdentifier for a
    handle that names no prefix, NotResponsible for a prefix this node does not hold
    (or has delegated to another node)."""
    text = body.handle.decode("utf-8")  # the codec checked the UTF-8
    if "/" not in text:  # CNRI Util.convertSlashlessHandleToZeroNaHandle
        text = "0.NA/" + text
    ident = parse(text)
    prefix = named_prefix(ident)
    if prefix is None:
        raise InvalidIdentifier(
            text, "list handles names a prefix handle, 0.NA/ and the prefix, e.g. 0.NA/88.100"
        )
    policy.admissible(ident)
    return prefix


async def listing(
    store: PostgresStore, prefix: RoutingKey, *, chunk: int = LIST_CHUNK
) -> tuple[ListHandlesResponse, AsyncGenerator[Part, None] | None]:
    """The first message's body of the list of ``prefix``, and the parts after it (None
    when the first holds them all). A failure after the first message ends the
    answer with an error, so that no client takes a part of the list for all of it."""
    routing, match = str(prefix), listing_match(prefix)
    first = await store.handles_after(routing, match=match, after="", limit=chunk)
    body = ListHandlesResponse(handles=tuple(h.encode("utf-8") for h in first))
    if len(first) < chunk:
        return body, None

    async def rest(after: str) -> AsyncGenerator[Part, None]:
        while True:
            try:
                page = await store.handles_after(routing, match=match, after=after, limit=chunk)
            except IdresError as exc:
                yield ResponseCode.ERROR, ErrorResponse(message=f"listing stopped: {exc.message}")
                return
            if not page:
                return
            yield (
                ResponseCode.SUCCESS,
                ListHandlesResponse(handles=tuple(h.encode("utf-8") for h in page)),
            )
            if len(page) < chunk:
                return
            after = page[-1]

    return body, rest(first[-1])
