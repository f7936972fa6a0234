"""Administration over the Handle protocol (RFC 3652 §3.5-§3.7): create and delete
handles, add, modify and remove values, as the CNRI client asks, under the same rules,
transaction, history and chain as a signed HTTP write; and list the handles under a
prefix (``listing``), for whom the HTTP API lets list them.

The exchange: such a request is answered AUTHENTICATION_NEEDED with a nonce under a
new session id; the client signs the nonce and the request's digest and sends the
answer (opcode 200) under that session id, on a new connection. The challenged
request's bytes and the nonce wait in the node's PostgreSQL (registry/challenges.py),
so the answer may reach any of the node's processes; the one that takes it decodes
the request again with the codec and checks the answer against that (never against
what the answer says of the request). The key must be an HS_PUBKEY on this node; then
a write is carried out by ``store.apply`` with the registry's policy, the signer
being the answer's key. A session id is used once, and for 60 s at most.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from registry.authz import Signer
from registry.challenges import CHALLENGE_TTL, PendingChallenges
from registry.plan import DeleteOp, PutOp, WriteOp
from registry.service import RegistryPolicy, authorize_listing
from registry.store import PostgresStore, WriteResult
from resolver.handle.listing import LIST_CHUNK, Part, listed_prefix, listing
from resolver.handle.values import record_values
from schemas.errors import (
    Forbidden,
    IdentifierNotFound,
    IdresError,
    InvalidValue,
    ValueExists,
    ValuesNotFound,
)
from schemas.handle_wire import (
    CHALLENGE_NONCE_SIZE,
    ENVELOPE_SIZE,
    AddValueRequest,
    ChallengeAnswerRequest,
    ChallengeResponse,
    CreateHandleRequest,
    CreateHandleResponse,
    DeleteHandleRequest,
    DigestAlgorithm,
    Envelope,
    ErrorResponse,
    GenericResponse,
    HandleWireError,
    ListHandlesRequest,
    Message,
    ModifyValueRequest,
    OpCode,
    OpFlag,
    RemoveValueRequest,
    RequestDigest,
    ResponseBody,
    ResponseCode,
    decode_public_key,
    decode_request,
    make_nonce,
    reply_version,
    verify_challenge_answer,
)
from schemas.identifiers import Identifier, RoutingKey, parse
from schemas.record import Record

WRITE_OPS = frozenset(
    {
        OpCode.CREATE_HANDLE,
        OpCode.DELETE_HANDLE,
        OpCode.ADD_VALUE,
        OpCode.REMOVE_VALUE,
        OpCode.MODIFY_VALUE,
    }
)
ADMIN_OPS = WRITE_OPS | {OpCode.LIST_HANDLES}  # what is challenged


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminReply:
    """What the face answers: a code, a body, and the session id or opcode the reply
    carries when they are not the request's."""

    code: ResponseCode
    body: ResponseBody
    session_id: int | None = None
    opcode: OpCode | None = None
    # the parts of the answer's further messages (a list of handles), when it has some
    more: AsyncGenerator[Part, None] | None = None


def kept_bytes(request: Message) -> bytes:
    """What a challenge keeps of ``request``: its envelope and its header and body as
    received (what the digest covers); the credential, unused by a write, is left out."""
    body = request.header_and_body
    envelope = replace(request.envelope, sequence=0, truncated=False, message_length=len(body))
    return envelope.encode() + body


def kept_request(kept: bytes) -> Message | None:
    """The request ``kept_bytes`` kept, decoded again as when it arrived; None unless
    it is one a challenge is for."""
    try:
        request = decode_request(Envelope.decode(kept), kept[ENVELOPE_SIZE:])
    except HandleWireError:
        return None
    return request if request.header.opcode in ADMIN_OPS else None


def request_digest(request: Message) -> bytes:
    """The digest the challenge to ``request`` carries, as ``encode_response`` makes it:
    SHA-256 of the header and body as received from protocol 2.7 on, SHA-1 before."""
    version = reply_version(request.envelope)
    algorithm = DigestAlgorithm.SHA256 if version >= (2, 7) else DigestAlgorithm.SHA1
    return RequestDigest.of(request.header_and_body, algorithm).digest


class EditPolicy:
    """The registry's policy, with what an edit of single values needs of the record it
    finds inside the transaction: adding a value needs a record without one at its
    index (VALUE_ALREADY_EXISTS), modifying one needs it there (VALUES_NOT_FOUND).
    Pure, as every Policy."""

    def __init__(self, policy: RegistryPolicy, opcode: OpCode, indexes: frozenset[int]) -> None:
        self.policy = policy
        self.opcode = opcode
        self.indexes = indexes

    def begin(self) -> None:
        self.policy.begin()

    def prefix_handles(self, op: WriteOp) -> Iterable[str]:
        return self.policy.prefix_handles(op)

    def admissible(self, ident: Identifier) -> None:
        self.policy.admissible(ident)

    def decide(self, op: WriteOp, old: Record | None, context: Mapping[str, Record]) -> WriteOp:
        if self.opcode in (OpCode.ADD_VALUE, OpCode.MODIFY_VALUE):
            handle = op.record.handle if isinstance(op, PutOp) else op.handle
            if old is None:
                raise IdentifierNotFound(handle)
            present = self.indexes & {v.index for v in old.values}
            if self.opcode == OpCode.ADD_VALUE and present:
                raise ValueExists(
                    f"{handle} has a value at index {', '.join(map(str, sorted(present)))} "
                    "already; modify it instead"
                )
            missing = sorted(self.indexes - present)
            if self.opcode == OpCode.MODIFY_VALUE and missing:
                raise ValuesNotFound(
                    f"{handle} has no value at index {', '.join(map(str, missing))}"
                )
        return self.policy.decide(op, old, context)


def write_op(request: Message, *, now: int) -> WriteOp:
    """The store operation a write request asks for; raises IdresError (InvalidIdentifier,
    InvalidValue) for a request that cannot be one."""
    body = request.body
    if not isinstance(
        body,
        CreateHandleRequest
        | AddValueRequest
        | ModifyValueRequest
        | RemoveValueRequest
        | DeleteHandleRequest,
    ):
        raise InvalidValue.single("opcode", f"{request.header.opcode.name} is not a write")
    handle = parse(body.handle.decode("utf-8")).canonical  # the codec checked the UTF-8
    if isinstance(body, DeleteHandleRequest):
        return DeleteOp(handle=handle)
    if isinstance(body, RemoveValueRequest):
        if not body.indexes:
            raise InvalidValue.single("indexes", "name at least one index to remove")
        return DeleteOp(handle=handle, indexes=frozenset(body.indexes))
    record = Record(handle=handle, values=record_values(body.values, now=now))
    if isinstance(body, CreateHandleRequest):
        overwrite = bool(request.header.op_flags & OpFlag.OVERWRITE_WHEN_EXISTS)
        return PutOp(record=record, overwrite=overwrite)
    return PutOp(record=record, indexes=frozenset(v.index for v in record.values))


def _error(code: ResponseCode, message: str, opcode: OpCode | None = None) -> AdminReply:
    return AdminReply(code=code, body=ErrorResponse(message=message), opcode=opcode)


def _refused(exc: IdresError, opcode: OpCode) -> AdminReply:
    # A refusal by HS_ADMIN is the Handle protocol's INSUFFICIENT_PERMISSIONS (what a
    # Handle server answers); the HTTP API says 403 for it.
    if isinstance(exc, Forbidden):
        return _error(ResponseCode.INSUFFICIENT_PERMISSIONS, exc.message, opcode)
    try:
        code = ResponseCode(exc.response_code)
    except ValueError:
        code = ResponseCode.ERROR
    return _error(code, exc.message, opcode)


class Admin:
    """The writes of a node's Handle face, into ``store`` for the prefixes it serves."""

    def __init__(
        self,
        *,
        store: PostgresStore,
        served: tuple[RoutingKey, ...],
        delegated: Callable[[], tuple[tuple[RoutingKey, str], ...]],
        clock: Callable[[], float] = time.time,
        challenges: PendingChallenges | None = None,
        list_chunk: int = LIST_CHUNK,
    ) -> None:
        self.store = store
        self.served = served
        self.delegated = delegated
        self.clock = clock
        self.challenges = challenges or PendingChallenges(store.pool)
        self.list_chunk = list_chunk  # handles a message of a list carries

    def policy(self, signer: Signer | None) -> RegistryPolicy:
        return RegistryPolicy(signer, self.served, self.delegated())

    async def challenge(self, request: Message) -> AdminReply:
        """AUTHENTICATION_NEEDED for an administrative request, under a new session id.
        A list of a prefix this node cannot list for anyone is refused at once."""
        nonce = make_nonce()
        try:
            if isinstance(request.body, ListHandlesRequest):
                listed_prefix(request.body, self.policy(None))
            session = await self.challenges.open(kept_bytes(request), nonce, now=self.clock())
        except IdresError as exc:  # not a prefix, not held here; PostgreSQL is down
            return _refused(exc, request.header.opcode)
        return AdminReply(
            code=ResponseCode.AUTHENTICATION_NEEDED,
            body=ChallengeResponse(nonce=nonce),
            session_id=session,
        )

    async def answer(self, message: Message) -> AdminReply:
        """The outcome of the write whose challenge ``message`` answers."""
        answer = message.body
        assert isinstance(answer, ChallengeAnswerRequest)
        session = message.envelope.session_id
        try:
            kept = await self.challenges.take(session, now=self.clock())
        except IdresError as exc:
            return _refused(exc, OpCode.CHALLENGE_RESPONSE)
        if kept is None:
            return _error(
                ResponseCode.AUTHEN_TIMEOUT,
                f"no challenge is open under session {session}: never sent, answered "
                f"already, or older than {CHALLENGE_TTL:.0f} s; send the request again",
            )
        request = kept_request(kept.request)
        if request is None or len(kept.nonce) != CHALLENGE_NONCE_SIZE:
            return _error(
                ResponseCode.ERROR,
                f"the challenge kept under session {session} is not one this node "
                "sends; send the request again",
            )
        opcode = request.header.opcode
        try:
            signer = await self._signer(answer, kept.nonce, request_digest(request))
            if isinstance(signer, AdminReply):
                return replace(signer, opcode=opcode)
            if isinstance(request.body, ListHandlesRequest):
                return await self._list(request.body, signer)
            return await self._write(request, signer)
        except IdresError as exc:
            return _refused(exc, opcode)

    async def _signer(
        self, answer: ChallengeAnswerRequest, nonce: bytes, digest: bytes
    ) -> Signer | AdminReply:
        """The key that signed ``answer``, or the refusal when it is none of this node's
        HS_PUBKEYs or did not sign the nonce and digest."""
        key_handle = answer.key_handle.decode("utf-8")  # the codec checked the UTF-8
        keyid = f"{answer.key_index}:{key_handle}"
        key_record = await self.store.get(key_handle)
        der = key_record.public_keys().get(answer.key_index) if key_record else None
        if der is None:
            return _error(ResponseCode.INVALID_ADMIN, f"{keyid} names no HS_PUBKEY on this node")
        try:
            verified = verify_challenge_answer(decode_public_key(der), nonce, digest, answer)
        except HandleWireError as exc:
            return _error(exc.code, str(exc))
        if not verified:
            return _error(
                ResponseCode.AUTHENTICATION_FAILED, f"the answer is not signed by the key {keyid}"
            )
        return Signer(handle=key_handle, index=answer.key_index)

    async def _list(self, body: ListHandlesRequest, signer: Signer) -> AdminReply:
        prefix = listed_prefix(body, self.policy(signer))
        await authorize_listing(
            self.store, signer, prefix, what=f"list the handles under {body.handle.decode()}"
        )
        first, more = await listing(self.store, prefix, chunk=self.list_chunk)
        return AdminReply(
            code=ResponseCode.SUCCESS, body=first, opcode=OpCode.LIST_HANDLES, more=more
        )

    async def _write(self, request: Message, signer: Signer) -> AdminReply:
        opcode = request.header.opcode
        op = write_op(request, now=int(self.clock()))
        policy = self.policy(signer)
        indexes = op.indexes if op.indexes is not None else frozenset()
        applied = await self.store.apply(
            [op],
            actor=str(signer),
            policy=EditPolicy(policy, opcode, indexes),
            validated=True,  # record_values checked them
        )
        assert applied.outcomes is not None  # no idempotency key: never a replay
        outcome = applied.outcomes[0]
        if not isinstance(outcome, WriteResult):
            return _refused(outcome, opcode)
        body: ResponseBody = (
            CreateHandleResponse() if opcode == OpCode.CREATE_HANDLE else GenericResponse()
        )
        return AdminReply(code=ResponseCode.SUCCESS, body=body, opcode=opcode)
