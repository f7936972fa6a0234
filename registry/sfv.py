"""RFC 8941 structured field values: the subset that Signature, Signature-Input and
Content-Digest use (dictionaries, inner lists, parameters; RFC 9421 §4, RFC 9530 §2).
Pure: text in, values out.
"""

from __future__ import annotations

import base64
import binascii
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from schemas.errors import Forbidden


@dataclass(frozen=True, slots=True, kw_only=True)
class Token:
    """An sf-token (RFC 8941 §3.3.4), kept apart from an sf-string."""

    value: str


BareItem: TypeAlias = int | bool | str | bytes | Token


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    value: BareItem
    params: Mapping[str, BareItem]


@dataclass(frozen=True, slots=True, kw_only=True)
class InnerList:
    items: tuple[Item, ...]
    params: Mapping[str, BareItem]
    text: str  # "(" through the last parameter, exactly as received


Member: TypeAlias = Item | InnerList


class _SyntaxError(Exception):
    def __init__(self, reason: str, position: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position


_DIGITS = frozenset(string.digits)
_KEY_FIRST = frozenset(string.ascii_lowercase + "*")
_KEY_REST = _KEY_FIRST | _DIGITS | frozenset("_-.")
_TOKEN_FIRST = frozenset(string.ascii_letters + "*")
_TOKEN_REST = _TOKEN_FIRST | _DIGITS | frozenset("!#$%&'+-.^_`|~:/")
_BASE64 = frozenset(string.ascii_letters + string.digits + "+/=")


class _Parser:
    """A cursor over one field value; each method consumes one RFC 8941 §4.2 production."""

    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def fail(self, reason: str) -> _SyntaxError:
        return _SyntaxError(reason, self.pos)

    def skip(self, chars: str) -> None:
        while self.peek() and self.peek() in chars:
            self.pos += 1

    def dictionary(self) -> dict[str, Member]:
        out: dict[str, Member] = {}
        self.skip(" ")
        if not self.peek():
            return out
        while True:
            key = self.key()
            if self.peek() == "=":
                self.pos += 1
                out[key] = self.inner_list() if self.peek() == "(" else self.item()
            else:
                out[key] = Item(value=True, params=self.params())
            # §4.2.2: a repeated key overwrites the earlier value.
            self.skip(" \t")
            if not self.peek():
                return out
            if self.peek() != ",":
                raise self.fail("expected ',' after a dictionary member")
            self.pos += 1
            self.skip(" \t")
            if not self.peek():
                raise self.fail("trailing comma")

    def inner_list(self) -> InnerList:
        start = self.pos
        self.pos += 1  # "("
        items: list[Item] = []
        while True:
            self.skip(" ")
            if self.peek() == ")":
                self.pos += 1
                params = self.params()
                return InnerList(
                    items=tuple(items), params=params, text=self.text[start : self.pos]
                )
            if not self.peek():
                raise self.fail("inner list is not closed with ')'")
            items.append(self.item())
            if not self.peek():
                raise self.fail("inner list is not closed with ')'")
            if self.peek() not in (" ", ")"):
                raise self.fail("expected a space or ')' after an inner-list item")

    def item(self) -> Item:
        value = self.bare_item()
        return Item(value=value, params=self.params())

    def params(self) -> dict[str, BareItem]:
        out: dict[str, BareItem] = {}
        while self.peek() == ";":
            self.pos += 1
            self.skip(" ")
            key = self.key()
            value: BareItem = True
            if self.peek() == "=":
                self.pos += 1
                value = self.bare_item()
            out[key] = value
        return out

    def key(self) -> str:
        start = self.pos
        if self.peek() not in _KEY_FIRST:
            raise self.fail("expected a key (lowercase letter or '*')")
        while self.peek() in _KEY_REST:
            self.pos += 1
        return self.text[start : self.pos]

    def bare_item(self) -> BareItem:
        c = self.peek()
        if c == "-" or c in _DIGITS:
            return self.integer()
        if c == '"':
            return self.string()
        if c == ":":
            return self.byte_sequence()
        if c == "?":
            return self.boolean()
        if c in _TOKEN_FIRST:
            return self.token()
        raise self.fail("expected an item")

    def integer(self) -> int:
        start = self.pos
        if self.peek() == "-":
            self.pos += 1
        digits = self.pos
        while self.peek() in _DIGITS:
            self.pos += 1
        if self.pos == digits:
            raise self.fail("expected a digit")
        if self.peek() == ".":
            raise self.fail("decimals are not supported here")
        if self.pos - digits > 15:  # §3.3.1: at most 15 digits
            raise _SyntaxError("integer has more than 15 digits", start)
        return int(self.text[start : self.pos])

    def string(self) -> str:
        self.pos += 1  # opening quote
        out: list[str] = []
        while True:
            c = self.peek()
            if not c:
                raise self.fail("string is not closed with '\"'")
            self.pos += 1
            if c == '"':
                return "".join(out)
            if c == "\\":
                escaped = self.peek()
                if escaped not in ('"', "\\"):
                    raise self.fail('only \\" and \\\\ may be escaped in a string')
                self.pos += 1
                out.append(escaped)
            elif " " <= c <= "~":
                out.append(c)
            else:
                raise _SyntaxError("string holds a character outside printable ASCII", self.pos - 1)

    def token(self) -> Token:
        start = self.pos
        while self.peek() in _TOKEN_REST:
            self.pos += 1
        return Token(value=self.text[start : self.pos])

    def byte_sequence(self) -> bytes:
        start = self.pos
        end = self.text.find(":", start + 1)
        if end < 0:
            raise self.fail("byte sequence is not closed with ':'")
        encoded = self.text[start + 1 : end]
        if not set(encoded) <= _BASE64:
            raise _SyntaxError("byte sequence is not base64", start)
        try:
            value = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise _SyntaxError("byte sequence is not base64", start) from exc
        self.pos = end + 1
        return value

    def boolean(self) -> bool:
        self.pos += 1
        c = self.peek()
        if c not in ("0", "1"):
            raise self.fail("boolean must be ?0 or ?1")
        self.pos += 1
        return c == "1"


def is_key(label: str) -> bool:
    """Whether ``label`` is an sf-key (RFC 8941 §3.1.2): a dictionary member's name."""
    return bool(label) and label[0] in _KEY_FIRST and set(label) <= _KEY_REST


def parse_dictionary(text: str, field: str) -> dict[str, Member]:
    """Parse an RFC 8941 §3.2 dictionary; Forbidden names the field, reason and position."""
    try:
        return _Parser(text).dictionary()
    except _SyntaxError as exc:
        shown = text if len(text) <= 120 else text[:117] + "..."
        raise Forbidden(
            f"malformed {field} {shown!r}: {exc.reason} at position {exc.position}"
        ) from None


def serialize_string(value: str, what: str) -> str:
    if not all(" " <= c <= "~" for c in value):
        raise ValueError(f"{what} {value!r} must be printable ASCII (RFC 8941 §3.3.3)")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def serialize_params(params: Sequence[tuple[str, int | str]]) -> str:
    return "".join(
        f";{k}={v}" if isinstance(v, int) else f";{k}={serialize_string(v, k)}" for k, v in params
    )
