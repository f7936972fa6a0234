"""The domain's exceptions: one base, each subclass knowing its Handle responseCode.

Only the HTTP layer turns these into responses; parsers, codecs and stores raise them.

    IdresError                       responseCode  HTTP
    ├── InvalidIdentifier            102           400
    ├── InvalidValue                 202           400   (carries every FieldError)
    ├── EncodingError                202           400   (undecodable CBOR/JSON)
    ├── IdentifierNotFound           100           404
    ├── ValuesNotFound               200           404   (no value at an index)
    ├── IdentifierExists             101           409
    ├── ValueExists                  201           409
    ├── NotResponsible               301           400
    ├── AuthenticationNeeded         402           401
    ├── AuthenticationFailed         403           401   (credentials that do not check)
    ├── Forbidden                    400           403
    └── ServerError                    2           500
        └── StoreUnavailable           2           503
"""

from __future__ import annotations

from dataclasses import dataclass


class IdresError(Exception):
    """Base of every error the domain raises on purpose."""

    response_code: int = 2
    http_status: int = 500
    retry_after: int | None = None  # seconds, for a Retry-After header (RFC 9110 §10.2.3)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidIdentifier(IdresError):
    """The input is not a well-formed identifier of any scheme we know.

    ``position`` is the 0-based character offset in ``text`` where parsing failed,
    or None when the fault is the input as a whole (too long, unknown scheme).
    """

    response_code = 102
    http_status = 400

    def __init__(
        self,
        text: str,
        reason: str,
        *,
        position: int | None = None,
        scheme: str | None = None,
    ) -> None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        where = f" at position {position}" if position is not None else ""
        what = f"invalid {scheme} identifier" if scheme else "invalid identifier"
        super().__init__(f"{what} {shown!r}{where}: {reason}")
        self.text = text
        self.reason = reason
        self.position = position
        self.scheme = scheme


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldError:
    """One field that failed validation: a JSON-pointer-like path and why."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class InvalidValue(IdresError):
    """One or more values of a record are invalid; all failures come back together."""

    response_code = 202
    http_status = 400

    MAX_REPORTED = 100  # errors listed in one answer; the message counts the rest

    def __init__(self, errors: list[FieldError] | tuple[FieldError, ...]) -> None:
        self.total = len(errors)
        self.errors = tuple(errors[: self.MAX_REPORTED])
        summary = "; ".join(str(e) for e in self.errors[:10])
        more = f" (and {self.total - 10} more)" if self.total > 10 else ""
        super().__init__(f"invalid record: {summary}{more}")

    @classmethod
    def single(cls, field: str, reason: str) -> InvalidValue:
        return cls([FieldError(field=field, reason=reason)])


class EncodingError(IdresError):
    """Bytes that do not decode to the structure they claim to be."""

    response_code = 202
    http_status = 400


class IdentifierNotFound(IdresError):
    response_code = 100
    http_status = 404

    def __init__(self, handle: str) -> None:
        super().__init__(f"identifier not found: {handle}")
        self.handle = handle


class ValuesNotFound(IdresError):
    """The record exists but has no value at the index a write names."""

    response_code = 200
    http_status = 404


class IdentifierExists(IdresError):
    response_code = 101
    http_status = 409

    def __init__(self, handle: str) -> None:
        super().__init__(f"identifier already exists: {handle}")
        self.handle = handle


class ValueExists(IdresError):
    response_code = 201
    http_status = 409


class NotResponsible(IdresError):
    response_code = 301
    http_status = 400


class AuthenticationNeeded(IdresError):
    response_code = 402
    http_status = 401


class AuthenticationFailed(IdresError):
    """Credentials were sent and are wrong (RFC 3652 §2.2.2.3, AUTHENTICATION_FAILED);
    401, as Handle.Net's REST API answers a wrong secret key."""

    response_code = 403
    http_status = 401


class Forbidden(IdresError):
    response_code = 400
    http_status = 403


class ServerError(IdresError):
    response_code = 2
    http_status = 500


class StoreUnavailable(ServerError):
    """The database could not be reached or failed; nothing was written."""

    http_status = 503


def shown(value: object, limit: int = 60) -> str:
    """A bounded repr of a decoded input for an error message, that never raises.

    A CBOR bignum decodes to an int whose str() raises ValueError past 4,300 digits
    (CPython's int_max_str_digits), so formatting it into a message would turn the
    documented EncodingError into a crash; a long value would flood the message.
    """
    if isinstance(value, int) and value.bit_length() > 64:
        return f"<an integer of {value.bit_length()} bits>"
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an oversized int or a deep list inside
        return f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
