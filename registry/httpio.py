"""The HTTP boundary: JSON bodies in, domain errors out as Handle-style JSON responses.

Only this layer turns exceptions into responses; a client's mistake is never a 500,
and an unexpected failure is logged here and answered without a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from multidict import MultiMapping

from schemas.codec_json import dumps
from schemas.errors import IdresError, InvalidValue

log = logging.getLogger("idres.http")
# aiohttp closes a connection whose handler waits for a request longer than this from
# the connection's start or its last answer: a client that sends nothing, or sends its
# headers a byte at a time (slow-loris), loses its socket after it, not after an hour.
KEEPALIVE_TIMEOUT = 15.0
JSON = "application/json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# The longest request line or header field a node reads: the node's edge reads heads of
# up to 16 KiB (resolver/edge/main.go, ReadBufferSize) and passes them on, so aiohttp
# must take any of them; at its own default (8190) it refused a longer line and closed
# the socket while the edge still sent the body, and the client got 502, not 400.
MAX_HEAD_LINE = 16 << 10


def listener_limits(keepalive_timeout: float = KEEPALIVE_TIMEOUT) -> dict[str, Any]:
    """Handler arguments for every aiohttp listener of a node (``web.Application(
    handler_args=...)`` or ``web.AppRunner(app, **...)``)."""
    return {
        "keepalive_timeout": keepalive_timeout,
        "max_line_size": MAX_HEAD_LINE,
        "max_field_size": MAX_HEAD_LINE,
    }


def json_response(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=dump(body), status=status, content_type=JSON)


dump = dumps  # one encoder for every answer (schemas/codec_json.py)


def error_body(exc: IdresError) -> dict[str, Any]:
    body: dict[str, Any] = {"responseCode": exc.response_code, "message": exc.message}
    if isinstance(exc, InvalidValue):
        body["errors"] = [{"field": e.field, "reason": e.reason} for e in exc.errors]
    position = getattr(exc, "position", None)
    if position is not None:
        body["position"] = position
    return body


# RFC 9110 §11.6.1: a 401 carries at least one challenge. Handle.Net's scheme is the one
# a challenge can name (a session from POST /api/sessions, or clientCert="true"); RFC 9421
# signatures and HS_SECKEY need none. No nonce in it: a session costs a database row,
# which an unauthenticated 401 must not make
CHALLENGE = 'Handle realm="idres"'


def error_response(exc: IdresError) -> web.Response:
    response = json_response(error_body(exc), status=exc.http_status)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    if exc.http_status == 401:
        response.headers["WWW-Authenticate"] = CHALLENGE
    return response


class PayloadTooLarge(IdresError):
    response_code = 202
    http_status = 413


class UnsupportedMediaType(IdresError):
    response_code = 202
    http_status = 415


class BadRequest(IdresError):
    response_code = 202
    http_status = 400


class TooManyRequests(IdresError):
    """A client over its budget of upstream work (RFC 6585 §4); it may ask again later."""

    response_code = 2
    http_status = 429


# aiohttp's own refusals, in Handle terms
_HTTP_CODES = {404: 100, 405: 2, 413: 202}


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except IdresError as exc:
        return error_response(exc)
    except web.HTTPRequestEntityTooLarge as exc:
        return json_response(
            {
                "responseCode": 202,
                "message": f"request body too large: {exc.text}",
            },
            status=413,
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, 2)
        message = exc.reason if exc.status != 404 else f"no such resource: {request.path}"
        response = json_response({"responseCode": code, "message": message}, status=exc.status)
        if "Allow" in exc.headers:  # a 405 says what is allowed (RFC 9110 §15.5.6)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except (ConnectionResetError, asyncio.CancelledError):
        raise  # the client went away: nothing to answer, nothing to log
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_response({"responseCode": 2, "message": "internal server error"}, 500)


async def read_json(request: web.Request, *, max_bytes: int) -> tuple[bytes, Any]:
    """The raw body and its JSON value; refuses other content types and bad JSON."""
    body = await read_body(request, max_bytes=max_bytes)
    return body, decode_json(request, body)


def decode_json(request: web.Request, body: bytes) -> Any:
    """The JSON value of a body already read; refuses other content types and bad JSON."""
    ctype = request.content_type
    if ctype != JSON and not (ctype.startswith("application/") and ctype.endswith("+json")):
        raise UnsupportedMediaType(f"send the body as {JSON}, not {ctype or 'no content type'}")
    try:
        # orjson reads UTF-8 only, as RFC 8259 §8.1 asks; no guessing from a BOM
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None


async def read_body(request: web.Request, *, max_bytes: int) -> bytes:
    """The whole body, refused past ``max_bytes`` (the app's client_max_size as well)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(
            f"request body is {request.content_length} bytes; at most {max_bytes}"
        )
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"request body is over {max_bytes} bytes") from None
    except (ValueError, RequestPayloadError, HttpProcessingError) as exc:  # chunking, gzip
        raise BadRequest(f"could not read the body: {exc}") from None
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"request body is over {max_bytes} bytes")
    return body


# a request, or a query read apart from one (the front door's: resolver/front.py)
Queried = web.BaseRequest | MultiMapping[str]


def _query(source: Queried) -> MultiMapping[str]:
    return source.query if isinstance(source, web.BaseRequest) else source


def query_bool(request: Queried, name: str, default: bool) -> bool:
    raw = _query(request).get(name)
    if raw is None:
        return default
    if raw.lower() in ("true", "1", "yes", ""):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise BadRequest(f"query parameter {name}={raw!r}: use true or false")


def query_ints(request: Queried, name: str) -> frozenset[int] | None:
    raw = _query(request).getall(name, [])
    if not raw:
        return None
    try:
        values = frozenset(int(x) for part in raw for x in part.split(","))
    except ValueError:
        raise BadRequest(f"query parameter {name}: integers only, not {raw!r}") from None
    return values


def query_int(request: Queried, name: str, default: int, *, low: int, high: int) -> int:
    raw = _query(request).get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name}={raw!r}: not an integer") from None
    if not low <= value <= high:
        raise BadRequest(f"query parameter {name}={value}: must be from {low} to {high}")
    return value
