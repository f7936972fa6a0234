"""Message bodies of the responses (RFC 3652 §3), laid out as CNRI ``Encoder`` writes them.

A response body follows the <RequestDigest> when the RD flag is set (``messages.py``
handles that part); ``response_body_type`` says which body a response code and opcode
carry, as CNRI ``Encoder.decodeMessage`` decides it.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.handle_wire.codes import OpCode, ResponseCode
from schemas.handle_wire.errors import HandleWireError
from schemas.handle_wire.limits import MAX_HANDLE_LENGTH, MAX_LIST_ITEMS, MAX_STRING
from schemas.handle_wire.request_bodies import read_handle, write_handle
from schemas.handle_wire.values import HandleValue, SiteInfo, read_values, write_values
from schemas.handle_wire.wire import Reader, Writer


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolutionResponse:
    """RFC 3652 §3.2.2: <Handle> <ValueList>."""

    handle: bytes
    values: tuple[HandleValue, ...]

    def write(self, w: Writer) -> None:
        write_handle(w, self.handle)
        write_values(w, self.values)

    @classmethod
    def read(cls, r: Reader) -> ResolutionResponse:
        handle = read_handle(r)
        return cls(handle=handle, values=read_values(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteInfoResponse:
    """The answer to OC_GET_SITE_INFO: the whole body is the site's HS_SITE record
    (CNRI ``encodeGetSiteInfoResponse``)."""

    site: SiteInfo

    def write(self, w: Writer) -> None:
        w.raw(self.site.encode())

    @classmethod
    def read(cls, r: Reader) -> SiteInfoResponse:
        return cls(site=SiteInfo.read(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorResponse:
    """RFC 3652 §3.3: <ErrorMessage> [<IndexList>]. CNRI writes and reads the message only
    (and ignores anything after it), so ``indexes`` goes on the wire only when not empty."""

    message: str = ""
    indexes: tuple[int, ...] = ()

    def write(self, w: Writer) -> None:
        w.octets(self.message.encode("utf-8"), "message", cap=MAX_STRING)
        if self.indexes:
            w.count(len(self.indexes), "indexes", cap=MAX_LIST_ITEMS)
            for index in self.indexes:
                w.u32(index, "index")

    @classmethod
    def read(cls, r: Reader) -> ErrorResponse:
        # A diagnostic, not an identifier: undecodable bytes are replaced, not refused.
        message = r.octets("message", cap=MAX_STRING).decode("utf-8", errors="replace")
        indexes: tuple[int, ...] = ()
        if r.remaining:
            count = r.count("indexes", cap=MAX_LIST_ITEMS, item_size=4)
            indexes = tuple(r.u32("index") for _ in range(count))
        return cls(message=message, indexes=indexes)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceReferral:
    """RFC 3652 §3.4, for RC_SERVICE_REFERRAL and RC_PREFIX_REFERRAL: <ReferralHandle>
    [<ValueList>]. The handle names the service to ask (e.g. b"0.NA/88.100"); the values,
    if any, are its HS_SITE/HS_SERV values so the client need not resolve it first. CNRI
    writes the value list only when there are values (``values`` None leaves it out)."""

    handle: bytes
    values: tuple[HandleValue, ...] | None = None

    def write(self, w: Writer) -> None:
        write_handle(w, self.handle)
        if self.values is not None:
            write_values(w, self.values)

    @classmethod
    def read(cls, r: Reader) -> ServiceReferral:
        handle = read_handle(r)
        values = read_values(r) if r.remaining else None
        return cls(handle=handle, values=values)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChallengeResponse:
    """RFC 3652 §3.5.1, the server's challenge (RC_AUTHENTICATION_NEEDED): <Nonce>. It always
    travels with a request digest (CNRI ``ChallengeResponse`` sets returnRequestDigest)."""

    nonce: bytes

    def write(self, w: Writer) -> None:
        w.octets(self.nonce, "nonce", cap=MAX_STRING)

    @classmethod
    def read(cls, r: Reader) -> ChallengeResponse:
        return cls(nonce=r.octets("nonce", cap=MAX_STRING))


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyResponseResponse:
    """RFC 3652 §3.5.4: one octet, 1 when the challenge response verified."""

    valid: bool

    def write(self, w: Writer) -> None:
        w.u8(1 if self.valid else 0, "valid")

    @classmethod
    def read(cls, r: Reader) -> VerifyResponseResponse:
        return cls(valid=bool(r.u8("valid") & 0x01))  # CNRI reads the low bit only


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateHandleResponse:
    """CNRI ``CreateHandleResponse``: empty, or the minted handle when MINT was asked."""

    handle: bytes | None = None

    def write(self, w: Writer) -> None:
        if self.handle is not None:
            write_handle(w, self.handle)

    @classmethod
    def read(cls, r: Reader) -> CreateHandleResponse:
        return cls(handle=read_handle(r) if r.remaining else None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListHandlesResponse:
    """RFC 3652 §3.7.1 and §3.7.2: a count and that many handles."""

    handles: tuple[bytes, ...]

    def write(self, w: Writer) -> None:
        w.count(len(self.handles), "handles", cap=MAX_LIST_ITEMS)
        for handle in self.handles:
            w.octets(handle, "handle", cap=MAX_HANDLE_LENGTH)

    @classmethod
    def read(cls, r: Reader) -> ListHandlesResponse:
        count = r.count("handles", cap=MAX_LIST_ITEMS, item_size=4)
        return cls(handles=tuple(read_handle(r) for _ in range(count)))


@dataclass(frozen=True, slots=True, kw_only=True)
class GenericResponse:
    """The empty body of a successful delete, add, remove, modify or session message
    (CNRI ``encodeGenericResponse``)."""

    def write(self, w: Writer) -> None:
        del w  # nothing to write

    @classmethod
    def read(cls, r: Reader) -> GenericResponse:
        del r
        return cls()


ResponseBody = (
    ResolutionResponse
    | SiteInfoResponse
    | ErrorResponse
    | ServiceReferral
    | ChallengeResponse
    | VerifyResponseResponse
    | CreateHandleResponse
    | ListHandlesResponse
    | GenericResponse
)

# The body of a successful response, by opcode (CNRI Encoder.decodeMessage, RC_SUCCESS).
_SUCCESS_BODIES: dict[OpCode, type[ResponseBody]] = {
    OpCode.RESOLUTION: ResolutionResponse,
    OpCode.GET_SITE_INFO: SiteInfoResponse,
    OpCode.CREATE_HANDLE: CreateHandleResponse,
    OpCode.LIST_HANDLES: ListHandlesResponse,
    OpCode.LIST_NAS: ListHandlesResponse,
    OpCode.LIST_HOMED_NAS: ListHandlesResponse,
    OpCode.VERIFY_RESPONSE: VerifyResponseResponse,
    OpCode.DELETE_HANDLE: GenericResponse,
    OpCode.ADD_VALUE: GenericResponse,
    OpCode.REMOVE_VALUE: GenericResponse,
    OpCode.MODIFY_VALUE: GenericResponse,
    OpCode.SESSION_TERMINATE: GenericResponse,
    OpCode.SESSION_EXCHANGEKEY: GenericResponse,
    OpCode.HOME_NA: GenericResponse,
    OpCode.UNHOME_NA: GenericResponse,
    OpCode.BACKUP_SERVER: GenericResponse,
}


def response_body_type(
    opcode: OpCode, code: ResponseCode, version: tuple[int, int]
) -> type[ResponseBody]:
    """Which body a response carries; ``version`` is its envelope's protocol version."""
    if code == ResponseCode.SUCCESS:
        body = _SUCCESS_BODIES.get(opcode)
        if body is None:
            raise HandleWireError(
                ResponseCode.OPERATION_NOT_SUPPORTED,
                f"no successful response body is known for opcode {opcode.name}",
                field="opcode",
            )
        return body
    # CNRI: a prefix referral has a referral body from protocol 2.5 on; before that 303
    # was RC_SERVER_BACKUP's number on the wire and carried an error message.
    if code == ResponseCode.SERVICE_REFERRAL or (
        code == ResponseCode.PREFIX_REFERRAL and version >= (2, 5)
    ):
        return ServiceReferral
    if code == ResponseCode.AUTHENTICATION_NEEDED:
        return ChallengeResponse
    if code == ResponseCode.RESERVED:
        raise HandleWireError(
            ResponseCode.PROTOCOL_ERROR, "a request is not a response", field="response_code"
        )
    return ErrorResponse
