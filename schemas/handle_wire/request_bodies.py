"""Message bodies of the requests (RFC 3652 §3), as the CNRI 9.3.1 client encodes them.

Each body reads and writes itself; ``REQUEST_BODIES`` says which body an opcode carries.
A body must fill its BodyLength exactly; the one exception is noted at SessionSetupRequest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from schemas.handle_wire.codes import OpCode, ResponseCode
from schemas.handle_wire.digest import RequestDigest
from schemas.handle_wire.limits import MAX_HANDLE_LENGTH, MAX_LIST_ITEMS, MAX_STRING
from schemas.handle_wire.values import HandleValue, read_values, write_values
from schemas.handle_wire.wire import Reader, Writer


def read_handle(r: Reader, field: str = "handle") -> bytes:
    """A handle: a UTF8-String (RFC 3652 §2.1.4) of at most MAX_HANDLE_LENGTH bytes."""
    return r.text(field, cap=MAX_HANDLE_LENGTH, code=ResponseCode.INVALID_HANDLE)


def write_handle(w: Writer, handle: bytes, field: str = "handle") -> None:
    w.octets(handle, field, cap=MAX_HANDLE_LENGTH)


def _read_indexes(r: Reader) -> tuple[int, ...]:
    count = r.count("indexes", cap=MAX_LIST_ITEMS, item_size=4)
    return tuple(r.u32("index") for _ in range(count))


def _write_indexes(w: Writer, indexes: tuple[int, ...]) -> None:
    w.count(len(indexes), "indexes", cap=MAX_LIST_ITEMS)
    for index in indexes:
        w.u32(index, "index")


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolutionRequest:
    """RFC 3652 §3.2.1: <Handle> <IndexList> <TypeList>; empty lists ask for every value."""

    handle: bytes
    indexes: tuple[int, ...] = ()
    types: tuple[bytes, ...] = ()

    def write(self, w: Writer) -> None:
        write_handle(w, self.handle)
        _write_indexes(w, self.indexes)
        w.count(len(self.types), "types", cap=MAX_LIST_ITEMS)
        for type_ in self.types:
            w.octets(type_, "type", cap=MAX_STRING)

    @classmethod
    def read(cls, r: Reader) -> ResolutionRequest:
        handle = read_handle(r)
        indexes = _read_indexes(r)
        count = r.count("types", cap=MAX_LIST_ITEMS, item_size=4)
        types = tuple(
            r.text("type", cap=MAX_STRING, code=ResponseCode.PROTOCOL_ERROR) for _ in range(count)
        )
        return cls(handle=handle, indexes=indexes, types=types)


@dataclass(frozen=True, slots=True, kw_only=True)
class _HandleOnly:
    """A body that is one handle (CNRI ``encodeGenericRequest`` and its kin)."""

    handle: bytes

    def write(self, w: Writer) -> None:
        write_handle(w, self.handle)

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(handle=read_handle(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class GetSiteInfoRequest(_HandleOnly):
    """OC_GET_SITE_INFO: CNRI sends a generic request whose handle is "/" (BLANK_HANDLE)."""

    handle: bytes = b"/"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteHandleRequest(_HandleOnly):
    """RFC 3652 §3.6.5: <Handle>."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ListHandlesRequest(_HandleOnly):
    """RFC 3652 §3.7.1: the prefix handle (e.g. b"0.NA/88.100") whose handles to list."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ListNAsRequest(_HandleOnly):
    """RFC 3652 §3.7.2 (OC_LIST_NAS, 106) and CNRI OC_LIST_HOMED_NAS (302): a prefix."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GenericRequest(_HandleOnly):
    """CNRI's handle-only requests: SESSION_TERMINATE, HOME_NA, UNHOME_NA, GET_NEXT_TXN_ID,
    BACKUP_SERVER (``Encoder.decodeGenericRequest``); the header's opcode says which."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _HandleAndValues:
    handle: bytes
    values: tuple[HandleValue, ...]

    def write(self, w: Writer) -> None:
        write_handle(w, self.handle)
        write_values(w, self.values)

    @classmethod
    def read(cls, r: Reader) -> Self:
        handle = read_handle(r)
        return cls(handle=handle, values=read_values(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateHandleRequest(_HandleAndValues):
    """RFC 3652 §3.6.4: <Handle> <ValueList>."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AddValueRequest(_HandleAndValues):
    """RFC 3652 §3.6.1: <Handle> <ValueList>."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModifyValueRequest(_HandleAndValues):
    """RFC 3652 §3.6.3: <Handle> <ValueList>; each value replaces the one at its index."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveValueRequest:
    """RFC 3652 §3.6.2: <Handle> <IndexList>."""

    handle: bytes
    indexes: tuple[int, ...]

    def write(self, w: Writer) -> None:
        write_handle(w, self.handle)
        _write_indexes(w, self.indexes)

    @classmethod
    def read(cls, r: Reader) -> RemoveValueRequest:
        handle = read_handle(r)
        return cls(handle=handle, indexes=_read_indexes(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class ChallengeAnswerRequest:
    """RFC 3652 §3.5.2 Challenge-Response (OC_CHALLENGE_RESPONSE, CNRI ``ChallengeAnswerRequest``):
    <AuthenticationType> <KeyHandle> <KeyIndex> <ChallengeResponse>."""

    auth_type: bytes  # b"HS_PUBKEY" or b"HS_SECKEY"
    key_handle: bytes
    key_index: int
    signed_response: bytes

    def write(self, w: Writer) -> None:
        w.octets(self.auth_type, "auth_type", cap=MAX_STRING)
        write_handle(w, self.key_handle, "key_handle")
        w.u32(self.key_index, "key_index")
        w.octets(self.signed_response, "signed_response", cap=MAX_STRING)

    @classmethod
    def read(cls, r: Reader) -> ChallengeAnswerRequest:
        auth_type = r.text("auth_type", cap=MAX_STRING, code=ResponseCode.PROTOCOL_ERROR)
        key_handle = read_handle(r, "key_handle")
        key_index = r.u32("key_index")
        signed_response = r.octets("signed_response", cap=MAX_STRING)
        return cls(
            auth_type=auth_type,
            key_handle=key_handle,
            key_index=key_index,
            signed_response=signed_response,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyResponseRequest:
    """RFC 3652 §3.5.3 (OC_VERIFY_RESPONSE, CNRI ``VerifyAuthRequest``): <KeyHandle>
    <KeyIndex> <Nonce> <RequestDigest> <ChallengeResponse>. CNRI writes the digest in the
    old length-prefixed form (algorithm 0)."""

    key_handle: bytes
    key_index: int
    nonce: bytes
    request_digest: RequestDigest
    signed_response: bytes

    def write(self, w: Writer) -> None:
        write_handle(w, self.key_handle, "key_handle")
        w.u32(self.key_index, "key_index")
        w.octets(self.nonce, "nonce", cap=MAX_STRING)
        self.request_digest.write(w)
        w.octets(self.signed_response, "signed_response", cap=MAX_STRING)

    @classmethod
    def read(cls, r: Reader) -> VerifyResponseRequest:
        key_handle = read_handle(r, "key_handle")
        key_index = r.u32("key_index")
        nonce = r.octets("nonce", cap=MAX_STRING)
        request_digest = RequestDigest.read(r)
        signed_response = r.octets("signed_response", cap=MAX_STRING)
        return cls(
            key_handle=key_handle,
            key_index=key_index,
            nonce=nonce,
            request_digest=request_digest,
            signed_response=signed_response,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSetupRequest:
    """RFC 3652 §3.8.1, as CNRI ``Encoder.encodeSessionSetupRequest`` writes it:
    <KeyExchangeMode> 2 octets, <Timeout> 4, <IdentityHandle>, <IdentityIndex> 4, then
    a public key (modes 1 and 4) or a key handle and index (mode 3).

    CNRI counts 4 bytes for the 2-byte mode, so its bodies end in two unused zero bytes;
    this body alone may therefore end before its BodyLength does.
    """

    key_exchange_mode: int
    timeout: int
    identity_handle: bytes
    identity_index: int
    public_key: bytes | None = None
    exchange_key_handle: bytes | None = None
    exchange_key_index: int | None = None

    def write(self, w: Writer) -> None:
        w.u16(self.key_exchange_mode, "key_exchange_mode")
        w.u32(self.timeout, "timeout")
        write_handle(w, self.identity_handle, "identity_handle")
        w.u32(self.identity_index, "identity_index")
        if self.public_key is not None:
            w.octets(self.public_key, "public_key", cap=MAX_STRING)
        if self.exchange_key_handle is not None:
            write_handle(w, self.exchange_key_handle, "exchange_key_handle")
            w.u32(self.exchange_key_index or 0, "exchange_key_index")

    @classmethod
    def read(cls, r: Reader) -> SessionSetupRequest:
        mode = r.u16("key_exchange_mode")
        timeout = r.u32("timeout")
        identity_handle = read_handle(r, "identity_handle")
        identity_index = r.u32("identity_index")
        public_key = key_handle = key_index = None
        if mode in (1, 4):  # CNRI KEY_EXCHANGE_CIPHER_CLIENT, KEY_EXCHANGE_DH
            public_key = r.octets("public_key", cap=MAX_STRING)
        elif mode == 3:  # KEY_EXCHANGE_CIPHER_HDL
            key_handle = read_handle(r, "exchange_key_handle")
            key_index = r.u32("exchange_key_index")
        return cls(
            key_exchange_mode=mode,
            timeout=timeout,
            identity_handle=identity_handle,
            identity_index=identity_index,
            public_key=public_key,
            exchange_key_handle=key_handle,
            exchange_key_index=key_index,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionExchangeKeyRequest:
    """RFC 3652 §3.8.3: the session key encrypted for the server; CNRI sends an empty body
    when it has none."""

    encrypted_key: bytes | None = None

    def write(self, w: Writer) -> None:
        if self.encrypted_key is not None:
            w.octets(self.encrypted_key, "encrypted_key", cap=MAX_STRING)

    @classmethod
    def read(cls, r: Reader) -> SessionExchangeKeyRequest:
        if r.remaining == 0:
            return cls()
        return cls(encrypted_key=r.octets("encrypted_key", cap=MAX_STRING))


RequestBody = (
    ResolutionRequest
    | GetSiteInfoRequest
    | CreateHandleRequest
    | DeleteHandleRequest
    | AddValueRequest
    | RemoveValueRequest
    | ModifyValueRequest
    | ListHandlesRequest
    | ListNAsRequest
    | ChallengeAnswerRequest
    | VerifyResponseRequest
    | SessionSetupRequest
    | SessionExchangeKeyRequest
    | GenericRequest
)

# Which body each request opcode carries (CNRI Encoder.decodeMessage). RETRIEVE_TXN_LOG
# and DUMP_HANDLES (replication between a site's own servers) are not decoded: a request
# with them is answered OPERATION_NOT_SUPPORTED.
REQUEST_BODIES: dict[OpCode, type[RequestBody]] = {
    OpCode.RESOLUTION: ResolutionRequest,
    OpCode.GET_SITE_INFO: GetSiteInfoRequest,
    OpCode.CREATE_HANDLE: CreateHandleRequest,
    OpCode.DELETE_HANDLE: DeleteHandleRequest,
    OpCode.ADD_VALUE: AddValueRequest,
    OpCode.REMOVE_VALUE: RemoveValueRequest,
    OpCode.MODIFY_VALUE: ModifyValueRequest,
    OpCode.LIST_HANDLES: ListHandlesRequest,
    OpCode.LIST_NAS: ListNAsRequest,
    OpCode.LIST_HOMED_NAS: ListNAsRequest,
    OpCode.CHALLENGE_RESPONSE: ChallengeAnswerRequest,
    OpCode.VERIFY_RESPONSE: VerifyResponseRequest,
    OpCode.SESSION_SETUP: SessionSetupRequest,
    OpCode.SESSION_EXCHANGEKEY: SessionExchangeKeyRequest,
    OpCode.SESSION_TERMINATE: GenericRequest,
    OpCode.HOME_NA: GenericRequest,
    OpCode.UNHOME_NA: GenericRequest,
    OpCode.GET_NEXT_TXN_ID: GenericRequest,
    OpCode.BACKUP_SERVER: GenericRequest,
}
