"""Administration over the Handle protocol (RFC 3652 §3.5, §3.6): create and delete
handles, add, modify and remove values, as the CNRI client asks, under the same rules,
transaction, history and chain as a signed HTTP write.

The exchange: a write request is answered AUTHENTICATION_NEEDED with a nonce under a
new session id (``Challenges``); the client signs the nonce and the request's digest
and sends the answer (opcode 200) under that session id, on a new connection. The
answer is checked against what was kept (never against what it says of the request),
its key must be an HS_PUBKEY on this node, and then the kept request is carried out
by ``store.apply`` with the registry's policy, the signer being the answer's key.
A session id is used once; pending challenges are few and short-lived. They live in
one process: with several workers the answer must reach the worker that challenged
(a worker that does not know the session answers AUTHEN_TIMEOUT).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from registry.authz import Signer
from registry.plan import DeleteOp, PutOp, WriteOp
from registry.service import RegistryPolicy
from registry.store import PostgresStore, WriteResult
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
    AddValueRequest,
    ChallengeAnswerRequest,
    ChallengeResponse,
    CreateHandleRequest,
    CreateHandleResponse,
    DeleteHandleRequest,
    DigestAlgorithm,
    ErrorResponse,
    GenericResponse,
    HandleWireError,
    Message,
    ModifyValueRequest,
    OpCode,
    OpFlag,
    RemoveValueRequest,
    RequestDigest,
    ResponseBody,
    ResponseCode,
    decode_public_key,
    make_nonce,
    reply_version,
    verify_challenge_answer,
)
from schemas.identifiers import Identifier, RoutingKey, parse
from schemas.record import Record

CHALLENGE_TTL = 60.0  # seconds an answer may take
MAX_CHALLENGES = 10_000  # pending at once; the oldest is dropped past this
MAX_CHALLENGE_BYTES = 32 << 20  # and the requests they keep, together (one may be 256 KiB)
WRITE_OPS = frozenset(
    {
        OpCode.CREATE_HANDLE,
        OpCode.DELETE_HANDLE,
        OpCode.ADD_VALUE,
        OpCode.REMOVE_VALUE,
        OpCode.MODIFY_VALUE,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminReply:
    """What the face answers: a code, a body, and the session id or opcode the reply
    carries when they are not the request's."""

    code: ResponseCode
    body: ResponseBody
    session_id: int | None = None
    opcode: OpCode | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Pending:
    request: Message  # the write that was challenged
    nonce: bytes
    digest: bytes  # the request digest the challenge carried (no algorithm octet)
    at: float  # monotonic seconds


class Challenges:
    """Challenges waiting for their answer, by session id: used once, at most ``limit``
    of them keeping ``max_bytes`` of requests, none older than ``ttl`` seconds (the
    oldest go first). No I/O; the caller's clock."""

    def __init__(
        self,
        *,
        ttl: float = CHALLENGE_TTL,
        limit: int = MAX_CHALLENGES,
        max_bytes: int = MAX_CHALLENGE_BYTES,
        session_ids: Callable[[], int] = lambda: secrets.randbits(32),
    ) -> None:
        self.ttl = ttl
        self.limit = limit
        self.max_bytes = max_bytes
        self.session_ids = session_ids
        self._pending: OrderedDict[int, Pending] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._pending)

    def open(self, pending: Pending) -> int:
        """Keep ``pending`` under a new non-zero session id, and return the id."""
        self._expire(pending.at)
        size = len(pending.request.header_and_body)
        while self._pending and (
            len(self._pending) >= self.limit or self._bytes + size > self.max_bytes
        ):
            self._drop_oldest()
        session = 0
        while session == 0 or session in self._pending:
            session = self.session_ids()
        self._pending[session] = pending
        self._bytes += size
        return session

    def take(self, session: int, now: float) -> Pending | None:
        """The challenge of ``session``, forgotten as it is handed out; None when there is
        none (never opened, answered already, or expired)."""
        self._expire(now)
        pending = self._pending.pop(session, None)
        if pending is not None:
            self._bytes -= len(pending.request.header_and_body)
        return pending

    def _expire(self, now: float) -> None:
        while self._pending:
            oldest = next(iter(self._pending.values()))
            if now - oldest.at <= self.ttl:
                break
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, pending = self._pending.popitem(last=False)
        self._bytes -= len(pending.request.header_and_body)


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
        monotonic: Callable[[], float] = time.monotonic,
        challenges: Challenges | None = None,
    ) -> None:
        self.store = store
        self.served = served
        self.delegated = delegated
        self.clock = clock
        self.monotonic = monotonic
        self.challenges = challenges or Challenges()

    def challenge(self, request: Message) -> AdminReply:
        """AUTHENTICATION_NEEDED for a write, under a new session id."""
        pending = Pending(
            request=request,
            nonce=make_nonce(),
            digest=request_digest(request),
            at=self.monotonic(),
        )
        session = self.challenges.open(pending)
        return AdminReply(
            code=ResponseCode.AUTHENTICATION_NEEDED,
            body=ChallengeResponse(nonce=pending.nonce),
            session_id=session,
        )

    async def answer(self, message: Message) -> AdminReply:
        """The outcome of the write whose challenge ``message`` answers."""
        answer = message.body
        assert isinstance(answer, ChallengeAnswerRequest)
        session = message.envelope.session_id
        pending = self.challenges.take(session, self.monotonic())
        if pending is None:
            return _error(
                ResponseCode.AUTHEN_TIMEOUT,
                f"no challenge is open under session {session}: never sent, answered "
                f"already, or older than {CHALLENGE_TTL:.0f} s; send the request again",
            )
        opcode = pending.request.header.opcode
        key_handle = answer.key_handle.decode("utf-8")  # the codec checked the UTF-8
        keyid = f"{answer.key_index}:{key_handle}"
        key_record = await self.store.get(key_handle)
        der = key_record.public_keys().get(answer.key_index) if key_record else None
        if der is None:
            return _error(
                ResponseCode.INVALID_ADMIN, f"{keyid} names no HS_PUBKEY on this node", opcode
            )
        try:
            verified = verify_challenge_answer(
                decode_public_key(der), pending.nonce, pending.digest, answer
            )
        except HandleWireError as exc:
            return _error(exc.code, str(exc), opcode)
        if not verified:
            return _error(
                ResponseCode.AUTHENTICATION_FAILED,
                f"the answer is not signed by the key {keyid}",
                opcode,
            )
        signer = Signer(handle=key_handle, index=answer.key_index)
        try:
            return await self._write(pending.request, signer)
        except IdresError as exc:
            return _refused(exc, opcode)

    async def _write(self, request: Message, signer: Signer) -> AdminReply:
        opcode = request.header.opcode
        op = write_op(request, now=int(self.clock()))
        policy = RegistryPolicy(signer, self.served, self.delegated())
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
