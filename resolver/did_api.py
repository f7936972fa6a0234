"""A node's DID routes for resolvers that are not ours: the Universal Resolver's driver
contract, ``GET /1.0/identifiers/{did}``, so a stock Universal Resolver can use any
node as its did:bid and did:cn driver; and BIF's own answer, ``GET
/bif/v1/did/{did}``, so Xinghuo's tools read it as they read a BID resolver.

Every node answers: the lookup goes through the hierarchy like any other read. The
shapes are built in ``resolver/did.py`` and ``resolver/bif.py``; this module only reads
requests and sends.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from registry.httpio import dump
from resolver import bif, did
from schemas.identifiers import Scheme

if TYPE_CHECKING:
    from resolver.api import ResolverAPI

# The Universal Resolver calls a driver at http://<driver>/1.0/identifiers/<did>
# (docs/driver-development.md, "Driver Interface")
UNIVERSAL_RESOLVER = "/1.0/identifiers/"
# BIF clients append "/{bid}" to a resolver's base URL (RFC-005 §5.1 "http://${url}/${bid}",
# the BIF driver's bidUrl + "/" + did): any base serves. Ours is one reserved first path
# segment, so no handle is taken for it, with the protocol's version in it
BIF = "/bif/v1/did/"


class DidAPI:
    def __init__(self, api: ResolverAPI) -> None:
        self.api = api

    def install(self, app: web.Application) -> None:
        app.router.add_get(UNIVERSAL_RESOLVER + "{did:.+}", self.identifiers)
        app.router.add_get(BIF + "{tail:.+}", self.bif)

    async def identifiers(self, request: web.Request) -> web.Response:
        """The Universal Resolver's driver contract: the DID resolution result or the bare
        DID document, as the Accept header asks; errors as results with their status."""
        self.api.metrics.inc("idres_requests_total", 'interface="did"')
        offer = did.negotiate(request.headers.get("Accept", ""))
        text = request.match_info["did"]
        if offer is None:
            wanted = ", ".join(o.media_type for o in did.OFFERS)
            failure = did.Failure(
                "representationNotSupported", f"this resolver answers in {wanted}"
            )
            return _failed(failure, None)
        found = await self.api.resolve_did(text)
        if isinstance(found, did.Failure):
            return _failed(found, offer)
        ident, answer = found
        result, status = did.from_answer(ident.canonical, answer.status, orjson.loads(answer.body))
        if status != 200:
            error = result["didResolutionMetadata"]
            return _failed(did.Failure(error["error"], error["errorMessage"], status), offer)
        return _send(did.render(result, offer), 200, offer.media_type)

    async def bif(self, request: web.Request) -> web.Response:
        """A BID document as BIF's resolvers answer (RFC-005 §5.1), or one field of it
        (``/public-keys``, ``/attributes``: §5.2)."""
        self.api.metrics.inc("idres_requests_total", 'interface="bif"')
        text, _, field = request.match_info["tail"].partition("/")
        if field and field not in bif.FIELDS:
            fields = ", ".join(bif.FIELDS)
            return _bif(bif.failure(bif.FIELD_NOT_FOUND, f"no field {field!r} ({fields})", 404))
        found = await self.api.resolve_did(text)
        if isinstance(found, did.Failure):
            code = {"invalidDid": bif.PROTOCOL_ERROR, "methodNotSupported": bif.NOT_SUPPORTED}
            return _bif(bif.failure(code.get(found.error, bif.ERROR), found.message, found.status))
        ident, answer = found
        if ident.scheme is not Scheme.DID_BID:
            why = f"BID documents are for did:bid; ask {UNIVERSAL_RESOLVER}{text}"
            return _bif(bif.failure(bif.NOT_SUPPORTED, why, 501))
        record = orjson.loads(answer.body)
        return _bif(bif.answer(ident.canonical, answer.status, record, field, now=time.time()))


def _bif(answer: bif.Answer) -> web.Response:
    return web.Response(
        body=dump(answer.body), status=answer.status, content_type="application/json"
    )


def _failed(failure: did.Failure, offer: did.Offer | None) -> web.Response:
    """An error is always a resolution result (DID Resolution's HTTP(S) binding), in the
    result type the client asked for, or the contract's own."""
    media = offer.media_type if offer is not None and not offer.document else did.RESULT_LD
    return _send(did.resolution_error(failure.error, failure.message), failure.status, media)


def _send(body: dict[str, object], status: int, media: str) -> web.Response:
    response = web.Response(body=dump(body), status=status)
    response.headers["Content-Type"] = media
    return response
