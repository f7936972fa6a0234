"""One Handle protocol request in, one response out: a node's Handle face (RFC 3652).

Resolution (§3.2.1 of RFC 3652, opcode 1) is answered as the HTTP API answers an
unsigned read: from this node's records, its copies, its cache, or, when the request
asks for recursion, by asking the next node down the directory. Without recursion a
lookup this node cannot answer itself gets a service referral naming the node that
can, with that node's HS_SITE as its delegation signs it. Get site info (opcode 2)
answers this node's HS_SITE. Writes (create, delete, add, modify and remove values),
list handles (105) and the answers to their challenges go to ``admin.Admin``; every
other operation gets OPERATION_NOT_SUPPORTED.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, replace

import orjson

from registry.httpio import TooManyRequests
from resolver.budget import BudgetConfig, Budgets
from resolver.handle.admin import ADMIN_OPS, WRITE_OPS, Admin, AdminReply
from resolver.handle.listing import Part
from resolver.handle.values import wire_values
from resolver.service import Answer, Resolver
from resolver.topology import Directory, handle_address
from resolver.wirecache import WireCache
from schemas.codec_json import values_from_json
from schemas.errors import IdresError, InvalidIdentifier
from schemas.handle_wire import (
    RESPONSE_LIFETIME,
    ChallengeAnswerRequest,
    ErrorResponse,
    GetSiteInfoRequest,
    HandleValue,
    Interface,
    Message,
    OpCode,
    OpFlag,
    ResolutionRequest,
    ResolutionResponse,
    ResponseBody,
    ResponseCode,
    ServerInfo,
    ServiceReferral,
    ServiceType,
    SiteInfo,
    SiteInfoResponse,
    TransportProtocol,
)
from schemas.identifiers import Identifier, parse
from schemas.record import HandleValue as RecordValue
from schemas.record import TtlType

# lookups of other nodes all askers together may start over this face (a UDP source
# is forgeable, as for the DNS face)
HANDLE_UPSTREAM_BUDGET = BudgetConfig(rate=500.0, burst=1_000.0)
PER_ASKER_BUDGET = BudgetConfig(rate=50.0, burst=100.0)
SITE_TTL = 86_400  # how long a client may keep a HS_SITE we hand out (seconds)
HEARD_TTL = 60.0  # an answer of another node's whose age here is not known
REFERRAL_KEEP = 60.0  # a referral kept as sent (a directory change forgets it first)
# where a message's header keeps its expiration time: envelope (20) + 16 (RFC 3652 §2.2.2)
EXPIRATION = 36
KEEPABLE_FLAGS = ~int(OpFlag.RETURN_REQUEST_DIGEST)  # a digest is of one request's bytes


# An HTTP answer's status as the Handle protocol says it (RFC 3652 §2.2.2.2)
_BY_STATUS = {
    400: ResponseCode.INVALID_HANDLE,
    401: ResponseCode.INSUFFICIENT_PERMISSIONS,  # no value is public: a signed read only
    403: ResponseCode.INSUFFICIENT_PERMISSIONS,
    404: ResponseCode.HANDLE_NOT_FOUND,
    429: ResponseCode.SERVER_TOO_BUSY,
    503: ResponseCode.SERVER_TOO_BUSY,
}


@dataclass(frozen=True, slots=True)
class Reply:
    code: ResponseCode
    body: ResponseBody
    # how long the answer may be kept as sent (seconds), and the identifier it is about
    # (what a change forgets it by); None: not kept
    keep: float | None = None
    about: str | None = None
    # the reply envelope's session id, when not the request's (a challenge opens one)
    session_id: int | None = None
    # the opcode the reply answers, when not the request's (the outcome of a challenge
    # answer is framed for the request that was challenged)
    opcode: OpCode | None = None
    # the parts of further messages of this answer, sent over TCP after it, every
    # message but the last flagged CN (RFC 3652 §2.2.2.3); None: one message
    more: AsyncGenerator[Part, None] | None = None


def kept_key(request: bytes) -> bytes:
    """A request's bytes but for its request id and expiration time (RFC 3652 §2.2.1,
    §2.2.2): what decides its answer, so what a kept answer is found by."""
    return request[:8] + request[12:EXPIRATION] + request[EXPIRATION + 4 :]


class HandleFace:
    """What a node answers over the Handle protocol; the sockets are the server's."""

    def __init__(
        self,
        *,
        name: str,
        directory: Callable[[], Directory],
        resolver: Resolver,
        address: tuple[str, int],
        clock: Callable[[], float] = time.monotonic,
        admin: Admin | None = None,
    ) -> None:
        self.name = name
        self.admin = admin  # None: a node that takes no writes over this face
        self.directory = directory
        self.resolver = resolver
        self.address = address
        self.clock = clock
        self.all_askers = Budgets(HANDLE_UPSTREAM_BUDGET)
        self.budgets = Budgets(PER_ASKER_BUDGET)
        self.answered = 0
        # answers as sent, kept while a notice feed can tell of each change
        self.wires: WireCache | None = None
        self._seen: Directory | None = None  # the directory the kept answers came from
        self._expires = (0, b"")  # (second, the expiration bytes answers carry then)
        if resolver.forgetters is not None:
            self.wires = WireCache()
            resolver.forgetters.append(self.wires.forget)

    def kept(self, request: bytes) -> bytes | None:
        """The kept answer to a whole request message (envelope first), under its
        request id and a fresh expiration time, or None: ``answer`` must work it out."""
        wires = self.wires
        if wires is None or len(request) <= EXPIRATION + 4:
            return None
        directory = self.directory()
        if directory is not self._seen:  # referrals name the nodes it delegates to
            wires.forget(None)
            self._seen = directory
        found = wires.get(kept_key(request))
        if found is None:
            return None
        self.answered += 1
        return found[:8] + request[8:12] + found[12:EXPIRATION] + self._expiry() + found[40:]

    def keep(self, request: bytes, message: bytes, reply: Reply, generation: int) -> None:
        """Keep ``message``, the whole answer to ``request``, if ``reply`` may be kept."""
        if self.wires is not None and reply.keep is not None:
            self.wires.put(kept_key(request), message, reply.keep, reply.about, generation)

    def _expiry(self) -> bytes:
        now = int(time.time())
        if self._expires[0] != now:
            self._expires = (now, (now + RESPONSE_LIFETIME).to_bytes(4, "big"))
        return self._expires[1]

    async def answer(self, request: Message, *, peer: str, fresh: bool = False) -> Reply:
        """The reply to ``request``; ``fresh``: read past this process's caches (for
        an answer the node's edge will keep)."""
        self.answered += 1
        body = request.body
        if isinstance(body, ResolutionRequest):
            return await self._resolve(request, body, peer, fresh)
        if isinstance(body, GetSiteInfoRequest):
            return Reply(ResponseCode.SUCCESS, SiteInfoResponse(site=self.site()))
        if self.admin is not None:
            if request.header.opcode in ADMIN_OPS:
                return _from_admin(await self.admin.challenge(request))
            if isinstance(body, ChallengeAnswerRequest):
                return _from_admin(await self.admin.answer(request))
        if request.header.opcode in WRITE_OPS:
            return _error(
                ResponseCode.OPERATION_NOT_SUPPORTED,
                "this node takes writes over its HTTP API (RFC 9421 signatures) only",
            )
        return _error(
            ResponseCode.OPERATION_NOT_SUPPORTED,
            f"operation {int(request.header.opcode)} is not served here",
        )

    def site(self) -> SiteInfo:
        """This node's HS_SITE: one server, its address, TCP and UDP on its port."""
        return site_info(self.address, serial=1, admin=self.admin is not None)

    async def _resolve(
        self, request: Message, body: ResolutionRequest, peer: str, fresh: bool
    ) -> Reply:
        text = body.handle.decode("utf-8")  # the codec has checked it is UTF-8
        try:
            ident = parse(text)
        except InvalidIdentifier as exc:
            return _error(ResponseCode.INVALID_HANDLE, exc.message)
        flags = request.header
        keepable = (
            request.envelope.session_id == 0
            and not request.credential
            and flags.op_flags & KEEPABLE_FLAGS == flags.op_flags
        )
        reply = await self._resolved(
            ident, body, peer, flags.recursive, fresh or flags.authoritative
        )
        return reply if keepable else replace(reply, keep=None)

    async def _resolved(
        self, ident: Identifier, body: ResolutionRequest, peer: str, recursive: bool, fresh: bool
    ) -> Reply:
        if not recursive:  # answered here if it can be, else a referral
            answer = await self._lookup(ident, peer, recursive=False, fresh=fresh)
            if isinstance(answer, Reply):
                return answer
            if answer.source != "referral":
                return self._values(ident, answer, body)
            node = self.resolver.route(ident).node
            referral = self._referral(ident, node.name if node is not None else None)
            if referral is not None:
                return referral
            # the next node has no Handle face to refer to: this node asks it instead
        answer = await self._lookup(ident, peer, recursive=True, fresh=fresh)
        if isinstance(answer, Reply):
            return answer
        return self._values(ident, answer, body)

    async def _lookup(
        self, ident: Identifier, peer: str, *, recursive: bool, fresh: bool = False
    ) -> Answer | Reply:
        def permit() -> bool:
            now = self.clock()
            return self.all_askers.take("*", now) and self.budgets.take(peer, now)

        try:
            return await self.resolver.resolve(
                ident, recursive=recursive, permit=permit, fresh=fresh
            )
        except TooManyRequests as exc:
            return _error(ResponseCode.SERVER_TOO_BUSY, exc.message)
        except IdresError as exc:  # the next node failed, a loop
            return _error(ResponseCode.ERROR, exc.message)

    def _referral(self, ident: Identifier, node: str | None) -> Reply | None:
        """A service referral to ``node`` (RFC 3652 §3.3 / response code 302), or None
        when its delegation names no Handle face (then this node resolves for it)."""
        delegation = self.directory().by_name.get(node) if node else None
        if delegation is None or delegation.handle is None:
            return None
        site = site_info(handle_address(delegation.handle), serial=delegation.issued)
        value = HandleValue(
            index=1,
            timestamp=delegation.issued,
            type=b"HS_SITE",
            data=site.encode(),
            ttl_type=0,
            ttl=SITE_TTL,
            admin_read=True,
            admin_write=True,
            public_read=True,
            public_write=False,
            references=(),
        )
        return Reply(
            ResponseCode.SERVICE_REFERRAL,
            ServiceReferral(handle=ident.canonical.encode("utf-8"), values=(value,)),
            keep=REFERRAL_KEEP,
            about=ident.canonical,
        )

    def _values(self, ident: Identifier, answer: Answer, body: ResolutionRequest) -> Reply:
        if answer.status == 404:
            missing = _error(ResponseCode.HANDLE_NOT_FOUND, f"{ident.canonical} is not registered")
            if answer.ttl is None or answer.stale:
                return missing
            return replace(missing, keep=answer.ttl, about=ident.canonical)
        if answer.status != 200:
            message = _message(answer.body) or f"the holder answered {answer.status}"
            return _error(_BY_STATUS.get(answer.status, ResponseCode.ERROR), message)
        try:
            parsed = orjson.loads(answer.body)
            values = values_from_json({"values": parsed.get("values", [])}, now=int(time.time()))
        except (orjson.JSONDecodeError, AttributeError, IdresError):
            return _error(ResponseCode.ERROR, f"the answer for {ident.canonical} does not decode")
        chosen = tuple(
            v
            for v in values
            if (not body.indexes or v.index in body.indexes)
            and (not body.types or _type_matches(v.type, body.types))
        )
        if (body.indexes or body.types) and not chosen:
            return _error(
                ResponseCode.VALUES_NOT_FOUND,
                f"{ident.canonical} has no value of the indexes and types asked for",
            )
        return Reply(
            ResponseCode.SUCCESS,
            ResolutionResponse(handle=ident.canonical.encode("utf-8"), values=wire_values(chosen)),
            keep=_keep_for(answer, values),
            about=ident.canonical,
        )


def _keep_for(answer: Answer, values: tuple[RecordValue, ...]) -> float | None:
    """How long an answer may be kept as sent: its values' shortest relative TTL, no
    longer than the resolver may keep it, and, when its age here is not known (another
    node's answer from the cache), at most HEARD_TTL. A node's own records and its
    copies are forgotten when they change (the notice feed), as the DNS face's are."""
    if answer.stale:
        return None
    relative = [v.ttl for v in values if v.ttl_type is TtlType.RELATIVE]
    if len(relative) != len(values) or not relative:
        return None  # an absolute expiry: left to the slow path
    ttl = float(min(relative))
    if answer.ttl is not None:
        ttl = min(ttl, answer.ttl)
    elif answer.source != "local":
        ttl = min(ttl, HEARD_TTL)
    return ttl


def _type_matches(value_type: str, asked: tuple[bytes, ...]) -> bool:
    """Whether a value's type is one asked for: the same type, case aside, or a subtype
    of it (``URL`` asks for ``URL.mobile`` too; RFC 3651 §3.1)."""
    mine = value_type.casefold()
    for raw in asked:
        want = raw.decode("utf-8", "replace").casefold()
        if mine == want or mine.startswith(want + "."):
            return True
    return False


def site_info(address: tuple[str, int], *, serial: int, admin: bool = False) -> SiteInfo:
    """One server at ``address``: resolution, and with ``admin`` administration too,
    over TCP and UDP on its port (RFC 3651 §3.2.2)."""
    host, port = address
    service = ServiceType.ADMIN_AND_QUERY if admin else ServiceType.QUERY
    return SiteInfo(
        serial_number=serial & 0xFFFF,
        servers=(
            ServerInfo(
                server_id=1,
                address=ipaddress.ip_address(host),
                interfaces=(
                    Interface(service_type=service, protocol=TransportProtocol.TCP, port=port),
                    Interface(service_type=service, protocol=TransportProtocol.UDP, port=port),
                ),
            ),
        ),
    )


def _message(body: bytes) -> str | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    message = parsed.get("message") if isinstance(parsed, dict) else None
    return message if isinstance(message, str) else None


def _from_admin(reply: AdminReply) -> Reply:
    # a write's answer is never kept: keep stays None
    return Reply(
        reply.code, reply.body, session_id=reply.session_id, opcode=reply.opcode, more=reply.more
    )


def _error(code: ResponseCode, message: str) -> Reply:
    return Reply(code, ErrorResponse(message=message))
