"""Decompression of compressed GS1 Digital Link URIs (GS1 Digital Link: Compression;
a conformant resolver "SHALL be able to decompress a URI").

A compressed path segment is the URI-safe base64 text of a bit string: AI after AI,
each a few hex digits (or an optimisation code standing for a fixed run of AIs), then
its value in the bits its format allows. Nothing in this file does I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from schemas.errors import InvalidIdentifier
from schemas.identifiers.digital_link import PRIMARY_KEYS

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64_RE = re.compile(r"[A-Za-z0-9_-]+")
_HEX = "0123456789ABCDEF"
SCHEME = "GS1 Digital Link (compressed)"


@dataclass(frozen=True, slots=True)
class _Part:
    numeric: bool  # N (digits) or X (GS1 character set 82)
    length: int  # the fixed length, or the maximum when ``variable``
    variable: bool


def _fmt(spec: str) -> tuple[_Part, ...]:
    """ "N14", "X..20", "N13+X..17": the AI formats of the GS1 General Specifications."""
    out = []
    for piece in spec.split("+"):
        variable = ".." in piece
        out.append(_Part(piece[0] == "N", int(piece[1:].replace("..", "")), variable))
    return tuple(out)


def _formats() -> dict[str, tuple[_Part, ...]]:
    table = {
        "00": "N18", "01": "N14", "02": "N14", "10": "X..20", "11": "N6", "12": "N6",
        "13": "N6", "15": "N6", "16": "N6", "17": "N6", "20": "N2", "21": "X..20",
        "22": "X..20", "240": "X..30", "241": "X..30", "242": "N..6", "243": "X..20",
        "250": "X..30", "251": "X..30", "253": "N13+X..17", "254": "X..20",
        "255": "N13+N..12", "30": "N..8", "37": "N..8", "400": "X..30", "401": "X..30",
        "402": "N17", "403": "X..30", "420": "X..20", "421": "N3+X..9", "422": "N3",
        "423": "N3+N..12", "424": "N3", "425": "N3+N..12", "426": "N3", "427": "X..3",
        "7001": "N13", "7002": "X..30", "7003": "N10", "7004": "N..4", "7005": "X..12",
        "7006": "N6", "7007": "N6+N..6", "7008": "X..3", "7009": "X..10", "7010": "X..2",
        "7020": "X..20", "7021": "X..20", "7022": "X..20", "7023": "X..30",
        "710": "X..20", "711": "X..20", "712": "X..20", "713": "X..20", "714": "X..20",
        "8001": "N14", "8002": "X..20", "8003": "N14+X..16", "8004": "X..30",
        "8005": "N6", "8006": "N18", "8007": "X..24", "8008": "N8+N..4", "8009": "X..50",
        "8010": "X..30", "8011": "N..12", "8012": "X..20", "8013": "X..30",
        "8017": "N18", "8018": "N18", "8019": "N..10", "8020": "X..25", "8026": "N18",
        "8110": "X..70", "8111": "N4", "8112": "X..70", "8200": "X..70", "90": "X..30",
    }  # fmt: skip
    table |= {f"41{d}": "N13" for d in "0123456"}
    # trade measures 310n-369n: six digits, n (0-5) the decimal point's place
    table |= {f"3{a}{b}{n}": "N6" for a in "1234567" for b in "0123456789" for n in "012345"}
    table |= {f"39{b}{n}": "N..15" for b in "02" for n in "0123456789"}
    table |= {f"39{b}{n}": "N3+N..15" for b in "13" for n in "0123456789"}
    table |= {f"394{n}": "N4" for n in "0123"}
    table |= {f"703{n}": "N3+X..27" for n in "0123456789"}
    table |= {f"723{n}": "X..30" for n in "0123456789"}
    table |= {f"9{n}": "X..90" for n in "123456789"}
    return {ai: _fmt(spec) for ai, spec in table.items() if not _reserved(ai)}


def _reserved(ai: str) -> bool:
    """31nn-36nn exist only for the measures the General Specifications define."""
    if len(ai) == 4 and ai[0] == "3" and ai[1] in "1234567":
        return ai[:3] not in _MEASURES
    return False


_MEASURES = frozenset(
    [f"31{i}" for i in range(7)]
    + [f"32{i}" for i in range(10)]
    + [f"33{i}" for i in range(8)]
    + [f"34{i}" for i in range(10)]
    + [f"35{i}" for i in range(8)]
    + [f"36{i}" for i in range(10)]
)
FORMATS = _formats()
# how many digits an AI beginning with these two has (the compression standard's table P)
_AI_LENGTH = {
    **dict.fromkeys(("00", "01", "02", "10", "11", "12", "13", "15", "16", "17"), 2),
    **dict.fromkeys(("20", "21", "22", "30", "37", "90", "91", "92", "93", "94"), 2),
    **dict.fromkeys(("95", "96", "97", "98", "99"), 2),
    **dict.fromkeys(("23", "24", "25", "40", "41", "42", "71"), 3),
    **dict.fromkeys(("31", "32", "33", "34", "35", "36", "39", "70", "72", "80", "81"), 4),
    "82": 4,
}
# optimisation codes: one hex pair standing for a run of AIs in a fixed order
_OPTIMISED: dict[str, tuple[str, ...]] = {
    "0A": ("01", "22"), "0B": ("01", "10"), "0C": ("01", "21"), "0D": ("01", "17"),
    "0E": ("01", "7003"), "0F": ("01", "30"), "1A": ("01", "10", "21", "17"),
    "1B": ("01", "15"), "1C": ("01", "11"), "1D": ("01", "16"), "1E": ("01", "91"),
    "1F": ("01", "10", "15"), "9A": ("8010", "8011"), "9B": ("8017", "8019"),
    "9C": ("8018", "8019"), "9D": ("414", "254"),
}  # fmt: skip
_OPTIMISED |= {f"2{b}": ("01", f"310{n}") for n, b in enumerate("ABCDEF")}
_OPTIMISED |= {f"3{b}": ("01", f"320{n}") for n, b in enumerate("ABCDEF")}
_OPTIMISED |= {f"A{n}": ("01", f"392{n}") for n in range(10)}
_OPTIMISED |= {f"C{n}": ("255", f"390{n}") for n in range(10)}
_OPTIMISED |= {f"C{b}": ("255", f"394{n}") for n, b in enumerate("ABCD")}
# The reference toolkit (GS1DigitalLinkToolkit.js, which digital-link.js ships) codes
# each run's values in the AIs' string order, whatever order the table lists them in;
# compressed URIs in the field follow it, so this decoder does too.
_OPTIMISED = {code: tuple(sorted(run)) for code, run in _OPTIMISED.items()}


def value_bits(digits: int) -> int:
    """Bits that hold a number of ``digits`` decimal digits."""
    return math.ceil(digits * math.log2(10) + 0.01)


def length_bits(maximum: int) -> int:
    """Bits of the length indicator of a value of at most ``maximum`` characters."""
    return math.ceil(math.log2(maximum) + 0.01)


def is_compressed_segment(segment: str) -> bool:
    """Whether a path segment can be compressed data: URI-safe base64, not all digits
    (those are keys and values of an uncompressed URI)."""
    return bool(_B64_RE.fullmatch(segment)) and not segment.isdigit()


class _Bits:
    def __init__(self, text: str, segment: str, offset: int) -> None:
        self.text, self.offset = text, offset
        self.bits = "".join(format(_B64.index(ch), "06b") for ch in segment)
        self.cursor = 0

    def fail(self, why: str) -> InvalidIdentifier:
        return InvalidIdentifier(
            self.text, why, position=self.offset + self.cursor // 6, scheme=SCHEME
        )

    def take(self, n: int) -> int:
        if self.cursor + n > len(self.bits):
            raise self.fail("compressed data ends in the middle of a value")
        chunk = self.bits[self.cursor : self.cursor + n]
        self.cursor += n
        return int(chunk, 2) if chunk else 0

    def left(self) -> int:
        return len(self.bits) - self.cursor

    def digits(self, n: int) -> str:
        number = self.take(value_bits(n))
        text = str(number).rjust(n, "0")
        if len(text) > n:
            raise self.fail(f"{number} does not fit in {n} digits")
        return text

    def string(self, encoding: int, n: int) -> str:
        if encoding == 0:
            return self.digits(n)
        if encoding in (1, 2):
            out = "".join(_HEX[self.take(4)] for _ in range(n))
            return out.lower() if encoding == 1 else out
        if encoding == 3:
            return "".join(_B64[self.take(6)] for _ in range(n))
        if encoding == 4:
            return "".join(chr(self.take(7)) for _ in range(n))
        raise self.fail(f"unknown value encoding {encoding}")


def decompress(text: str, segment: str, *, offset: int = 0) -> list[tuple[str, str]]:
    """The (key, value) pairs of one compressed segment, in the order they were coded:
    GS1 AIs (all digits) and other keys that were compressed with them.

    ``text`` and ``offset`` place the segment in the input, for errors.
    """
    if not is_compressed_segment(segment):
        raise InvalidIdentifier(
            text, "not compressed Digital Link data", position=offset, scheme=SCHEME
        )
    bits = _Bits(text, segment, offset)
    out: list[tuple[str, str]] = []
    while bits.left() > 8:  # the last bits pad to a whole base64 character
        h1, h2 = bits.take(4), bits.take(4)
        pair = _HEX[h1] + _HEX[h2]
        if h1 <= 9 and h2 <= 9:
            size = _AI_LENGTH.get(pair)
            if size is None:
                raise bits.fail(f"no GS1 AI begins with {pair}")
            ai = pair + "".join(_HEX[bits.take(4)] for _ in range(size - 2))
            out.append((ai, _value(bits, ai)))
        elif pair in _OPTIMISED:
            out.extend((ai, _value(bits, ai)) for ai in _OPTIMISED[pair])
        elif h1 == 0xF:
            # another key=value pair: 7 bits of key length (3 of them in h2), the key
            # in base64 characters, then an encoded value
            bits.cursor -= 4
            key = "".join(_B64[bits.take(6)] for _ in range(bits.take(7)))
            encoding, n = bits.take(3), bits.take(7)
            out.append((key, bits.string(encoding, n)))
        else:
            raise bits.fail(f"no optimisation is defined for {pair}")
    return out


def _value(bits: _Bits, ai: str) -> str:
    parts = FORMATS.get(ai)
    if parts is None:
        raise bits.fail(f"AI {ai} has no format here")
    value = ""
    for part in parts:
        if part.numeric and not part.variable:
            value += bits.digits(part.length)
        elif part.numeric:
            n = bits.take(length_bits(part.length))
            value += bits.digits(n) if n else ""
        else:
            encoding = bits.take(3)
            n = bits.take(length_bits(part.length)) if part.variable else part.length
            value += bits.string(encoding, n)
    return value


def expand_path(path: str, *, host: str) -> str | None:
    """The uncompressed Digital Link URI for a request path (after the first "/", no
    query) that is compressed, wholly (``/{data}``) or after an uncompressed primary
    key (``/01/{gtin}/{data}``); None for a path that is not compressed.

    AIs that are neither the primary key nor its qualifiers, and other keys, go to
    the query string, as the uncompressed URI carries them.
    """
    segments = path.split("/")
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash adds nothing
    if len(segments) == 1 and is_compressed_segment(segments[0]):
        pairs = decompress(path, segments[0])
    elif (
        len(segments) == 3
        and segments[0] in PRIMARY_KEYS
        and segments[1].isdigit()
        and is_compressed_segment(segments[2])
    ):
        offset = len(segments[0]) + len(segments[1]) + 2
        pairs = [(segments[0], segments[1]), *decompress(path, segments[2], offset=offset)]
    else:
        return None
    keys = [(ai, v) for ai, v in pairs if ai in PRIMARY_KEYS]
    if len(keys) != 1:
        found = ", ".join(ai for ai, _ in keys) or "none"
        raise InvalidIdentifier(
            path,
            f"compressed data holds no single primary key this resolver serves "
            f"(01, 00 or 414; found {found})",
            scheme=SCHEME,
        )
    ai, key = keys[0]
    order = PRIMARY_KEYS[ai][1]
    given = dict(pairs)
    uri = f"https://{host}/{ai}/{key}" + "".join(
        f"/{q}/{quote(given[q], safe='')}" for q in order if q in given
    )
    rest = [(k, v) for k, v in pairs if k != ai and k not in order]
    return uri + ("?" + urlencode(rest, quote_via=quote) if rest else "")
