"""The front door's request router: the bytes a client sent in, a decision out.

A node has one port. Its front door (``resolver/front.py``) reads each request head
and asks ``decide`` what to do with it. The reads that scanners and apps make by the
million (``GET /api/handles/{id}`` with its filters, the browser proxy ``GET /{id}``,
Digital Link paths, DID documents) are answered by the front door itself; any other
request, and any request this module does not fully understand, is handed to the
node's aiohttp application together with the rest of the connection, where the full
HTTP parser and every other route live. So the router never has to be a complete
HTTP/1.1 parser: it only has to be sure of what it keeps.

Pure: no sockets, no clock, no state between calls. Tested with byte tables
(``tests/resolver/test_router.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# A head longer than this is the application's to judge (aiohttp's own limit is 8190
# bytes a line); the front door keeps only the short heads of ordinary reads.
MAX_HEAD = 8192
HANDLES = b"/api/handles/"
MAX_VIA = 32  # hops an Idres-Via header may name (resolver/api.py says the same)

# Any of these makes a request the application's: it has a body (RFC 9112 §6.1-6.3),
# asks for something beyond a read (Upgrade, Expect), or is signed and may see
# values that are not public (RFC 9421; registry/httpsig.py).
_HANDED = frozenset(
    (
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"signature",
        b"signature-input",
        b"authorization",
    )
)
# RFC 9110 §5.6.2 tchar, and the visible characters a request target may hold
_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_VCHAR = bytes(range(0x21, 0x7F))
_HANDLE_QUERY = frozenset((b"type", b"index", b"recursive", b"publicOnly"))
_PROXY_QUERY = frozenset((b"noredirect",))


class Kind(Enum):
    HANDLE = "handle"  # GET /api/handles/{id}
    PROXY = "proxy"  # GET /{id}: the browser proxy and Digital Link paths


class Verdict(Enum):
    NEED = "need"  # the head is not all here yet
    HANDOFF = "handoff"  # the application answers this request and the rest


@dataclass(frozen=True, slots=True)
class Read:
    """A read the front door answers itself."""

    kind: Kind
    target: bytes  # HANDLE: the identifier as sent (percent-encoded); PROXY: the path after "/"
    query: bytes  # the raw query, b"" when none (only the parameters the route knows)
    keep_alive: bool
    accept: bytes  # the Accept header, b"" when none
    via: tuple[str, ...]  # the Idres-Via hops, in order
    size: int  # bytes of the buffer this request took
    # the node's edge (resolver/edge) asks to fill its cache: a fresh answer, marked
    # with what the edge needs to keep it. Only the edge reaches a worker's door when
    # there is one (a socket of the node's own), and it drops the header from clients
    fill: bool = False
    accept_language: bytes = b""  # the Accept-Language header: a Digital Link's choice


Decision = Read | Verdict


def decide(buf: bytes, start: int, reserved: frozenset[bytes]) -> Decision:
    """What to do with the request that begins at ``buf[start]``.

    ``reserved`` holds the first path segments of the application's own routes
    (``api``, ``metrics``...): a path under one of them is never taken for an
    identifier by the proxy route.
    """
    end = buf.find(b"\r\n\r\n", start, start + MAX_HEAD)
    if end < 0:
        if len(buf) - start >= MAX_HEAD or (
            len(buf) - start >= 4 and buf[start : start + 4] != b"GET "
        ):
            return Verdict.HANDOFF  # no read of the door's: no need to wait for the rest
        return Verdict.NEED
    head = buf[start:end]
    # bare LF or CR, NUL: legal nowhere in a head we keep (RFC 9112 §2.2)
    if head.count(b"\n") != head.count(b"\r\n") or head.count(b"\r") != head.count(b"\n"):
        return Verdict.HANDOFF
    if b"\x00" in head:
        return Verdict.HANDOFF
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"GET":
        return Verdict.HANDOFF
    target, version = parts[1], parts[2]
    if version != b"HTTP/1.1" and version != b"HTTP/1.0":
        return Verdict.HANDOFF
    close = False  # the Connection header's close option (RFC 9112 §9.6)
    accept = b""
    accept_language = b""
    via = b""
    seen_via = False
    fill = False
    for line in lines[1:]:
        colon = line.find(b":")
        # RFC 9112 §5.1: no whitespace between a field name and its colon, and no
        # line folding (§5.2); such heads are the application's parser's to refuse
        if colon <= 0 or line[0] in b" \t" or line[colon - 1] in b" \t":
            return Verdict.HANDOFF
        name = line[:colon].lower()
        if name.translate(None, _TCHAR):
            return Verdict.HANDOFF
        value = line[colon + 1 :].strip(b" \t")
        if name in _HANDED:
            return Verdict.HANDOFF
        if name == b"content-length":
            if value != b"0":
                return Verdict.HANDOFF
        elif name == b"connection":
            for token in value.lower().split(b","):
                token = token.strip(b" \t")
                if token == b"close":
                    close = True
                elif token == b"upgrade":
                    return Verdict.HANDOFF
        elif name == b"accept":
            accept = value if not accept else accept + b", " + value
        elif name == b"accept-language":
            accept_language = value if not accept_language else accept_language + b", " + value
        elif name == b"idres-via":
            if seen_via:
                return Verdict.HANDOFF
            seen_via, via = True, value
        elif name == b"idres-edge":
            fill = value == b"fill"
    # an HTTP/1.0 connection is closed after its answer (RFC 9112 §9.3): the door does
    # not keep 1.0 connections alive
    keep_alive = not close and version == b"HTTP/1.1"
    hops = tuple(h.strip() for h in via.decode("latin-1").split(",") if h.strip())
    if len(hops) > MAX_VIA:
        return Verdict.HANDOFF
    if not target.startswith(b"/") or b"#" in target or target.translate(None, _VCHAR):
        return Verdict.HANDOFF
    path, _, query = target.partition(b"?")
    size = end + 4 - start
    if path.startswith(HANDLES):
        tail = path[len(HANDLES) :]
        if not tail or tail.endswith(b"/history") or not _only(query, _HANDLE_QUERY):
            return Verdict.HANDOFF
        return Read(Kind.HANDLE, tail, query, keep_alive, accept, hops, size, fill)
    first = path[1:].split(b"/", 1)[0]
    if not first or first in reserved or not _only(query, _PROXY_QUERY):
        return Verdict.HANDOFF
    return Read(
        Kind.PROXY, path[1:], query, keep_alive, accept, hops, size, accept_language=accept_language
    )


def _only(query: bytes, names: frozenset[bytes]) -> bool:
    """Whether every parameter of ``query`` is one of ``names`` (a route's own)."""
    return not query or all(
        not pair or pair.partition(b"=")[0] in names for pair in query.split(b"&")
    )
