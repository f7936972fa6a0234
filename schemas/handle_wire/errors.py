"""The one exception of the Handle wire codec: what failed, where, and the responseCode to answer.

Every decoder in this package raises ``HandleWireError`` and nothing else, whatever the
bytes. It is a ``ValueError`` whose ``code`` says how a server answers it:

    HandleWireError(ValueError)          code
    ├── truncated, lying or oversized    PROTOCOL_ERROR (4)
    │   lengths and counts; bad flags
    ├── an opcode we do not decode       OPERATION_NOT_SUPPORTED (5)
    ├── a handle that is not UTF-8 or    INVALID_HANDLE (102)
    │   is longer than MAX_HANDLE_LENGTH
    ├── a value type that is not UTF-8   INVALID_VALUE (202)
    ├── an encrypted message (sessions   SESSION_FAILED (501)
    │   are not supported)
    └── encoding what cannot be encoded  ERROR (2): a bug on our side, not the peer's
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.handle_wire.codes import ResponseCode

if TYPE_CHECKING:
    from schemas.handle_wire.header import Header


class HandleWireError(ValueError):
    """Bytes that are not a Handle message we accept, or a value we cannot encode.

    ``field`` names the wire field that failed and ``offset`` its byte offset in the
    payload (the message after its 20-byte envelope), or in the packet for envelopes.
    When a request's header was read before the failure, ``header`` holds it and
    ``request_bytes`` the header and body as received (when their length was sound), so
    a server can still answer in kind: same opcode, and the request digest the client
    asked for (see ``encode_error_reply``).
    """

    def __init__(
        self,
        code: ResponseCode,
        reason: str,
        *,
        field: str | None = None,
        offset: int | None = None,
    ) -> None:
        where = []
        if field is not None:
            where.append(f"field {field}")
        if offset is not None:
            where.append(f"offset {offset}")
        super().__init__(f"{reason} ({', '.join(where)})" if where else reason)
        self.code = code
        self.reason = reason
        self.field = field
        self.offset = offset
        self.header: Header | None = None
        self.request_bytes: bytes | None = None


def cannot_encode(reason: str, *, field: str) -> HandleWireError:
    """An encoding failure: our own value does not fit the wire (a bug, not the peer's)."""
    return HandleWireError(ResponseCode.ERROR, f"cannot encode: {reason}", field=field)
