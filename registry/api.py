"""The registry's HTTP API (aiohttp), after the Handle.Net REST API where they overlap.

PUT/GET/DELETE /api/handles/{identifier}, GET /api/handles?prefix=, POST /api/batch,
GET /api/handles/{identifier}/history, POST /api/prefixes, GET /openapi.json.
Writes are signed (RFC 9421), carry Handle.Net's Authorization: Handle (a TLS client
certificate or a session, registry/sessionapi.py) or, where the operator allows it, an
HS_SECKEY secret (registry/seckey.py); handlers translate HTTP to store operations and back.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import web

from registry.authz import Signer, covering_prefix_handles, governing_key
from registry.httpio import (
    KEEPALIVE_TIMEOUT,
    BadRequest,
    decode_json,
    dump,
    error_body,
    errors_middleware,
    json_response,
    listener_limits,
    query_bool,
    query_int,
    query_ints,
    read_body,
)
from registry.openapi import OPENAPI
from registry.plan import DeleteOp, PutOp, WriteOp, op_handle
from registry.referral import refer
from registry.seckey import basic_credentials, check_transport
from registry.service import (
    Authenticated,
    RegistryPolicy,
    SignedRequest,
    authenticate,
    authenticate_secret,
    authorize_listing,
    can_read_private,
    fingerprint,
    prefix_record,
)
from registry.sessionapi import HandleAuth
from registry.sessions import SessionStore
from registry.store import Guard, Outcome, PostgresStore, StoredResponse, WriteResult, listing_match
from schemas.codec_json import value_to_json, values_from_json
from schemas.errors import (
    AuthenticationNeeded,
    FieldError,
    Forbidden,
    IdentifierNotFound,
    IdresError,
    InvalidIdentifier,
    InvalidValue,
    NotResponsible,
)
from schemas.identifiers import Identifier, RoutingKey, parse
from schemas.identifiers.prefix import parse_prefix
from schemas.record import HandleValue, Record, check_values

log = logging.getLogger("idres.registry")
HANDLES = "/api/handles/"
# the rest of the path, newlines included, so that they reach the parser (a 400, not a 404)
TAIL = r"{tail:[\w\W]+}"
# {identifier}/history is a history, which only GET reads: writes do not match it, so
# the router answers 405 with Allow: GET, HEAD (an identifier that itself ends in
# /history is written with its last slash as %2F, which the router sees as such)
WRITABLE_TAIL = r"{tail:[\w\W]+(?<!/history)}"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# On a write's answer: the identifier it changed, so that the node's edge forgets the
# answers it keeps for it before the client hears of the write (read-your-writes; the
# NOTIFY that tells every cache arrives a moment later). resolver/edge/edge.go drops it.
EDGE_FORGET = "Idres-Edge-Forget"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryConfig:
    served: tuple[RoutingKey, ...]
    # longer prefixes under ``served`` that the directory gives to other nodes, as the
    # directory says now (it grows while the node runs)
    delegated: Callable[[], tuple[tuple[RoutingKey, str], ...]] = field(default=lambda: ())
    max_body_bytes: int = 8 * 1024 * 1024
    max_batch: int = 10_000
    signature_max_age: int = 300
    purge_interval: float = 60.0
    # Names a signature's @authority may carry here (RFC 9421 §2.2.3), besides the
    # address the request came in on: the node's public host[:port] (its URL in the
    # directory) and, opt-in, the network's name, so that one signed write may be sent
    # to any node of the network (each keeps its own replay memory).
    authorities: tuple[str, ...] = ()
    network: str | None = None
    # Handle.Net's Authorization: Basic with an HS_SECKEY secret, over TLS or loopback
    allow_seckey: bool = False
    # the URL of the node that holds a routing key this node does not (the directory's
    # answer), for the Location of a misdirected write; None: unknown
    holder: Callable[[RoutingKey], str | None] = field(default=lambda key: None)


class RegistryAPI:
    def __init__(
        self,
        store: PostgresStore,
        config: RegistryConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        # more names of this node, e.g. its URL in the directory (the resolver sets it)
        self.public_authorities: Callable[[], Collection[str]] = lambda: ()
        self.handle_auth = HandleAuth(store, SessionStore(store.pool), clock=clock)

    def install(self, app: web.Application, *, reads: bool = True) -> None:
        """Add the registry's routes; ``reads=False`` leaves GET of a record and
        /healthz to a resolver installed beside it (which calls ``get_handle``)."""
        app.router.add_get("/api/handles", self.list_handles)
        if reads:
            app.router.add_get(HANDLES + TAIL, self.get_handle)
        app.router.add_put(HANDLES + WRITABLE_TAIL, self.put_handle)
        app.router.add_delete(HANDLES + WRITABLE_TAIL, self.delete_handle)
        app.router.add_post("/api/batch", self.batch)
        app.router.add_post("/api/prefixes", self.delegate_prefix)
        app.router.add_get("/openapi.json", self.openapi)
        self.handle_auth.install(app)
        if reads:
            app.router.add_get("/healthz", self.healthz)
        app.cleanup_ctx.append(self._purge_loop)

    async def _purge_loop(self, app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(self.config.purge_interval)
                try:
                    await self.store.purge_expired()
                except Exception:  # keep purging later; say why it failed now
                    log.exception("purging expired signatures and idempotency keys failed")

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # --- reading -----------------------------------------------------------------------

    async def get_handle(self, request: web.Request) -> web.Response:
        text, history = target_of(request)
        ident = parse(text)
        types = set(request.query.getall("type", []))
        indexes = query_ints(request, "index")
        public_only = query_bool(request, "publicOnly", False)
        body = await read_body(request, max_bytes=self.config.max_body_bytes)
        auth = await self._authenticate(request, body)
        signer = auth.signer if auth else None
        if history:
            return await self._history(ident, signer)
        record = await self.store.get(ident.canonical)
        if record is None:
            raise IdentifierNotFound(ident.canonical)
        chosen = [
            v
            for v in record.values
            if (not types or v.type in types) and (indexes is None or v.index in indexes)
        ]
        hidden = [v for v in chosen if not v.permissions.public_read]
        private_ok = (
            bool(hidden) and not public_only and await self._may_read_private(signer, record, ident)
        )
        shown = [
            v
            for v in chosen
            if v.permissions.public_read or (private_ok and v.permissions.admin_read)
        ]
        if not shown and hidden and not public_only:
            if signer is None:
                raise AuthenticationNeeded(
                    f"the values of {ident.canonical} are not public; "
                    "sign the request with an admin key to read them"
                )
            raise Forbidden(f"key {signer} may not read the non-public values of {ident.canonical}")
        if not shown:
            return json_response(
                {
                    "responseCode": 200,
                    "handle": ident.canonical,
                    "message": "no values match the filters",
                }
            )
        salts = await self.store.salts(ident.canonical) if private_ok else {}
        values = []
        for v in shown:
            out = value_to_json(v)
            if not v.permissions.public_read and v.index in salts:
                # what opens the value's commitment in the chain (schemas/commitment.py)
                out["salt"] = base64.b64encode(salts[v.index]).decode()
            values.append(out)
        return json_response({"responseCode": 1, "handle": ident.canonical, "values": values})

    async def _may_read_private(
        self, signer: Signer | None, record: Record, ident: Identifier
    ) -> bool:
        if signer is None:
            return False
        prefixes = await self.store.get_many(covering_prefix_handles(ident))
        return can_read_private(signer, record, prefixes.values())

    async def _history(self, ident: Identifier, signer: Signer | None) -> web.Response:
        """What changed and when, for anyone; who changed it (the key id) and the
        types of values that are not public only for a signer who may read them."""
        entries = await self.store.history(ident.canonical)
        if not entries:
            raise IdentifierNotFound(ident.canonical)
        latest = next((e.record for e in reversed(entries) if e.record is not None), None)
        private_ok = latest is not None and await self._may_read_private(signer, latest, ident)

        def visible(values: Sequence[HandleValue]) -> list[dict[str, Any]]:
            return [
                value_to_json(v)
                for v in values
                if v.permissions.public_read or (private_ok and v.permissions.admin_read)
            ]

        shown: list[dict[str, Any]] = []
        public: set[int] = set()  # indexes public in the version before this one
        for e in entries:
            now_public = (
                {v.index for v in e.record.values if v.permissions.public_read}
                if (e.record)
                else set()
            )
            changes = []
            for c in e.changes:
                change: dict[str, Any] = {"index": c.index, "change": c.change}
                # a removed value was what the version before said; others, what this one says
                if private_ok or c.index in (public if c.change == "removed" else now_public):
                    change["type"] = c.type
                changes.append(change)
            entry: dict[str, Any] = {
                "version": e.version,
                "op": e.op,
                "at": e.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "changes": changes,
                "values": visible(e.record.values) if e.record else [],
            }
            if private_ok:
                entry["actor"] = e.actor
            shown.append(entry)
            public = now_public
        return json_response({"responseCode": 1, "handle": ident.canonical, "history": shown})

    async def list_handles(self, request: web.Request) -> web.Response:
        raw = request.query.get("prefix")
        if not raw:
            raise BadRequest("query parameter prefix is required, e.g. ?prefix=88.100.1")
        prefix = parse_prefix(raw)
        page = query_int(request, "page", 0, low=0, high=10**9)
        size = query_int(request, "pageSize", 100, low=1, high=10_000)
        body = await read_body(request, max_bytes=self.config.max_body_bytes)
        auth = await self._authenticate(request, body)
        await authorize_listing(
            self.store,
            auth.signer if auth else None,
            prefix,
            what=f"list the identifiers under {raw}",
        )
        total, handles = await self.store.list_handles(
            str(prefix), match=listing_match(prefix), page=page, page_size=size
        )
        return json_response(
            {
                "responseCode": 1,
                "prefix": raw,
                "totalCount": total,
                "page": page,
                "pageSize": size,
                "handles": handles,
            }
        )

    # --- writing -----------------------------------------------------------------------

    # Every write is signed (no HS_ADMIN grants anything to an unsigned request), so a
    # write is authenticated first: the body is read within its size limit, its
    # signature checked against one key record, and only then is it parsed, validated
    # and applied. An unsigned or forged batch costs no parsing and takes no row lock.

    async def put_handle(self, request: web.Request) -> web.Response:
        _known_query(request, {"overwrite", "index"})
        text, _ = target_of(request)
        ident = parse(text)
        overwrite = query_bool(request, "overwrite", True)
        indexes = query_ints(request, "index")
        if (elsewhere := self._elsewhere(request, ident)) is not None:
            return elsewhere
        raw, auth = await self._signed_write(request)
        body = decode_json(request, raw)
        values = values_from_json(body, now=int(self.clock()))
        record = Record(handle=ident.canonical, values=values)
        op = PutOp(record=record, overwrite=overwrite, indexes=indexes)
        return await self._write(request, raw, auth, [op], single=True)

    async def delete_handle(self, request: web.Request) -> web.Response:
        _known_query(request, {"index"})  # a mistyped ?indx= must not delete the record
        text, _ = target_of(request)
        ident = parse(text)
        indexes = query_ints(request, "index")
        if (elsewhere := self._elsewhere(request, ident)) is not None:
            return elsewhere
        raw, auth = await self._signed_write(request)
        op = DeleteOp(handle=ident.canonical, indexes=indexes)
        return await self._write(request, raw, auth, [op], single=True)

    async def delegate_prefix(self, request: web.Request) -> web.Response:
        raw, auth = await self._signed_write(request)
        prefix, key, index = _delegation(decode_json(request, raw))
        record = prefix_record(prefix, key, now=int(self.clock()), key_index=index)
        check_values(record.values)  # the key: Ed25519, P-256 or RSA, DER
        op = PutOp(record=record, overwrite=False)
        return await self._write(request, raw, auth, [op], single=True)

    async def batch(self, request: web.Request) -> web.Response:
        raw, auth = await self._signed_write(request)
        body = decode_json(request, raw)
        decoded = _batch_ops(body, now=int(self.clock()), limit=self.config.max_batch)
        return await self._write(request, raw, auth, decoded, single=False)

    def _elsewhere(self, request: web.Request, ident: Identifier) -> web.Response | None:
        """A write of one identifier this node does not hold: answered before any
        authentication (the entry node need not accept what the holder will), with the
        holder in Location (registry/referral.py); None when it is this node's."""
        try:
            RegistryPolicy(None, self.config.served, self.config.delegated()).admissible(ident)
        except NotResponsible as exc:
            referral = refer(
                exc.message,
                self.config.holder(governing_key(ident)),
                request.rel_url.raw_path_qs,
                prefer=request.headers.getall("Prefer", []),
            )
            body = {"responseCode": exc.response_code, "message": referral.message}
            response = json_response(body, status=referral.status)
            response.headers.update(referral.headers)
            return response
        return None

    async def _signed_write(self, request: web.Request) -> tuple[bytes, Authenticated]:
        """The body (size limit first) and its signer; unsigned writes stop here."""
        raw = await read_body(request, max_bytes=self.config.max_body_bytes)
        auth = await self._authenticate(request, raw)
        if auth is None:
            raise AuthenticationNeeded(
                f"{request.method} {request.path} needs a signed request (RFC 9421): "
                "Signature-Input and Signature made with a key this node knows"
                + (
                    "; or Authorization: Basic with index:handle and its HS_SECKEY secret"
                    if self.config.allow_seckey
                    else ""
                )
                + "; or Authorization: Handle with a session (POST /api/sessions) "
                + 'or clientCert="true"'
            )
        return raw, auth

    async def _write(
        self,
        request: web.Request,
        raw: bytes,
        auth: Authenticated,
        decoded: Sequence[WriteOp | IdresError],
        *,
        single: bool,
    ) -> web.Response:
        guard = Guard(
            scope=str(auth.signer),
            replay_token=auth.replay_token,
            replay_expires=auth.expires,
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
            fingerprint=fingerprint(_signed(request, raw)),
        )
        ops = [d for d in decoded if not isinstance(d, IdresError)]

        def render(outcomes: list[Outcome]) -> StoredResponse:
            it = iter(outcomes)
            merged = [d if isinstance(d, IdresError) else next(it) for d in decoded]
            if single:
                return _single_response(merged[0])
            return StoredResponse(
                status=200,
                body=dump(
                    {
                        "responseCode": 1,
                        "results": [_result(i, o, decoded[i]) for i, o in enumerate(merged)],
                    }
                ),
            )

        applied = await self.store.apply(
            ops,
            actor=str(auth.signer),
            policy=RegistryPolicy(auth.signer, self.config.served, self.config.delegated()),
            guard=guard,
            render=render,
            validated=True,
        )
        assert applied.response is not None
        headers = {"Idempotent-Replayed": "true"} if applied.outcomes is None else {}
        if single and ops and applied.response.status < 300:
            headers[EDGE_FORGET] = op_handle(ops[0])
        return web.Response(
            body=applied.response.body,
            status=applied.response.status,
            content_type="application/json",
            headers=headers,
        )

    async def _authenticate(self, request: web.Request, body: bytes) -> Authenticated | None:
        signed = _signed(request, body)
        auth = await authenticate(
            self.store,
            signed,
            now=int(self.clock()),
            max_age=self.config.signature_max_age,
            authorities=self.authorities(request),
            network=self.config.network.lower() if self.config.network else None,
        )
        credentials = None if auth else basic_credentials(request.headers.get("Authorization"))
        if credentials is not None:
            check_transport(
                enabled=self.config.allow_seckey, secure=request.secure, peer=request.remote
            )
            auth = await authenticate_secret(self.store, credentials, now=int(self.clock()))
        elif auth is None:  # Authorization: Handle (a client certificate, a session)
            auth = await self.handle_auth.authenticate(request)
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is not None and (
            not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable()
        ):
            raise BadRequest(f"{IDEMPOTENCY_HEADER} must be 1 to 255 printable ASCII characters")
        # a signature that does not cover the key was refused by parse_signature
        return auth

    def authorities(self, request: web.Request) -> frozenset[str]:
        """The @authority values a signature may name here: the configured ones, the
        node's public names, and the address this connection reached (so that a node
        nobody configured still accepts what is signed for the URL it listens on)."""
        names = {*self.config.authorities, *self.public_authorities()}
        if self.config.network:
            names.add(self.config.network.lower())
        names.update(_local_authorities(request))
        return frozenset(names)

    async def openapi(self, request: web.Request) -> web.Response:
        return json_response(OPENAPI)

    async def healthz(self, request: web.Request) -> web.Response:
        await self.store.get("0.NA/healthz")  # one round trip to PostgreSQL
        return json_response({"status": "ok"})


def create_app(
    store: PostgresStore,
    config: RegistryConfig,
    *,
    clock: Callable[[], float] = time.time,
    keepalive_timeout: float = KEEPALIVE_TIMEOUT,
) -> web.Application:
    app = web.Application(
        middlewares=[errors_middleware],
        client_max_size=config.max_body_bytes,
        handler_args=listener_limits(keepalive_timeout),
    )
    RegistryAPI(store, config, clock=clock).install(app)
    return app


def _signed(request: web.Request, body: bytes) -> SignedRequest:
    return SignedRequest(
        method=request.method,
        path=request.rel_url.raw_path,
        query=request.rel_url.raw_query_string,
        headers=_headers(request),
        body=body,
    )


def _local_authorities(request: web.Request) -> tuple[str, ...]:
    """``host:port`` of the local end of the connection, with ``localhost`` beside a
    loopback address (what a client on the same machine writes in its URL)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        return ()  # a Unix socket: only the configured names
    host, port = str(sockname[0]).lower(), sockname[1]
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    shown = f"[{host}]" if ":" in host else host
    out = [f"{shown}:{port}"]
    if loopback:
        out.append(f"localhost:{port}")
    return tuple(out)


def _known_query(request: web.Request, allowed: set[str]) -> None:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise BadRequest(
            f"unknown query parameter {unknown[0]!r}; this request takes "
            + (", ".join(sorted(allowed)) or "none")
        )


def _headers(request: web.Request) -> dict[str, str]:
    """Lower-cased names; a field sent on several lines joined as one (RFC 9110 §5.3)."""
    return {k.lower(): ", ".join(request.headers.getall(k)) for k in request.headers}


def target_of(request: web.Request) -> tuple[str, bool]:
    """The identifier named by the raw path, and whether ``/history`` follows it.

    Matching the raw path keeps ``%2F`` apart from ``/``: an identifier whose suffix
    really ends in ``/history`` is addressed with its last slash as ``%2F``.
    """
    tail = request.rel_url.raw_path[len(HANDLES) :]
    history = request.method == "GET" and tail.endswith("/history")
    if history:
        tail = tail[: -len("/history")]
    try:
        return unquote_to_bytes(tail).decode("utf-8"), history
    except UnicodeDecodeError:
        raise InvalidIdentifier(tail, "not UTF-8 after percent-decoding") from None


def _single_response(outcome: Outcome | IdresError) -> StoredResponse:
    if isinstance(outcome, IdresError):
        return StoredResponse(status=outcome.http_status, body=dump(error_body(outcome)))
    return StoredResponse(
        status=201 if outcome.created else 200,
        body=dump({"responseCode": 1, "handle": outcome.handle, "version": outcome.version}),
    )


def _result(
    position: int, outcome: Outcome | IdresError, sent: WriteOp | IdresError
) -> dict[str, Any]:
    if isinstance(outcome, WriteResult):
        return {
            "index": position,
            "handle": outcome.handle,
            "responseCode": 1,
            "status": 201 if outcome.created else 200,
            "version": outcome.version,
        }
    body = {"index": position, **error_body(outcome), "status": outcome.http_status}
    if not isinstance(sent, IdresError):
        body["handle"] = sent.record.handle if isinstance(sent, PutOp) else sent.handle
    return body


def _delegation(body: Any) -> tuple[RoutingKey, bytes, int]:
    if not isinstance(body, dict):
        raise InvalidValue.single("(body)", "must be a JSON object")
    errors = [
        FieldError(field=k, reason="unknown field")
        for k in body
        if k not in ("prefix", "publicKey", "keyIndex")
    ]
    prefix = key = None
    if not isinstance(body.get("prefix"), str):
        errors.append(FieldError(field="prefix", reason="is required, e.g. 88.100.1"))
    else:
        try:
            prefix = parse_prefix(body["prefix"])
        except InvalidIdentifier as exc:
            errors.append(FieldError(field="prefix", reason=exc.message))
    try:
        key = base64.b64decode(body.get("publicKey", ""), validate=True)
    except (binascii.Error, ValueError, TypeError):
        errors.append(
            FieldError(
                field="publicKey",
                reason="must be base64 of a DER SubjectPublicKeyInfo (idres keygen prints it)",
            )
        )
    if not key and not any(e.field == "publicKey" for e in errors):
        errors.append(FieldError(field="publicKey", reason="is required"))
    index = body.get("keyIndex", 300)
    if isinstance(index, bool) or not isinstance(index, int) or not 101 <= index < 2**31:
        errors.append(FieldError(field="keyIndex", reason="must be an integer from 101 on"))
    if errors:
        raise InvalidValue(errors)
    assert prefix is not None
    assert key is not None
    return prefix, key, index


_OP_FIELDS = frozenset({"op", "handle", "values", "overwrite", "index"})


def _batch_ops(body: Any, *, now: int, limit: int) -> list[WriteOp | IdresError]:
    if not isinstance(body, dict) or not isinstance(body.get("operations"), list):
        raise InvalidValue.single("operations", 'send {"operations": [...]}')
    extra = [k for k in body if k != "operations"]
    if extra:
        raise InvalidValue([FieldError(field=k, reason="unknown field") for k in extra])
    items = body["operations"]
    if not 1 <= len(items) <= limit:
        raise InvalidValue.single("operations", f"{len(items)} operations; send 1 to {limit}")
    return [_batch_op(item, f"operations[{i}]", now) for i, item in enumerate(items)]


def _batch_op(item: Any, where: str, now: int) -> WriteOp | IdresError:
    try:
        if not isinstance(item, dict):
            raise InvalidValue.single(where, "must be a JSON object")
        unknown = [
            FieldError(field=f"{where}.{k}", reason="unknown field")
            for k in item
            if k not in _OP_FIELDS
        ]
        if unknown:
            raise InvalidValue(unknown)
        op = item.get("op", "put")
        if op not in ("put", "delete"):
            raise InvalidValue.single(f"{where}.op", "must be put or delete")
        if not isinstance(item.get("handle"), str):
            raise InvalidValue.single(f"{where}.handle", "is required")
        ident = parse(item["handle"])
        indexes = _op_indexes(item.get("index"), f"{where}.index")
        if op == "delete":
            return DeleteOp(handle=ident.canonical, indexes=indexes)
        overwrite = item.get("overwrite", True)
        if not isinstance(overwrite, bool):
            raise InvalidValue.single(f"{where}.overwrite", "must be true or false")
        try:
            values = values_from_json({"values": item.get("values")}, now=now)
        except InvalidValue as exc:
            raise InvalidValue(
                [FieldError(field=f"{where}.{e.field}", reason=e.reason) for e in exc.errors]
            ) from None
        return PutOp(
            record=Record(handle=ident.canonical, values=values),
            overwrite=overwrite,
            indexes=indexes,
        )
    except IdresError as exc:
        return exc


def _op_indexes(raw: Any, where: str) -> frozenset[int] | None:
    if raw is None:
        return None
    if (
        not isinstance(raw, list)
        or not raw
        or any(isinstance(i, bool) or not isinstance(i, int) for i in raw)
    ):
        raise InvalidValue.single(where, "must be a non-empty list of integers")
    return frozenset(raw)
