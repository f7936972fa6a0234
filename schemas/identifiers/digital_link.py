"""GS1 Digital Link URIs: the primary key and its qualifiers from the URI path.

After GS1 Digital Link URI Syntax 1.2: optional path info, then the primary key
AI and value, then qualifiers in their fixed order; query and fragment carry no key.
"""

from __future__ import annotations

from urllib.parse import quote, unquote_to_bytes

from schemas.errors import InvalidIdentifier
from schemas.identifiers.gs1 import parse_gs1_key
from schemas.identifiers.model import Identifier, Scheme

# primary key AI -> (scheme, qualifier AIs in the order the path must give them)
PRIMARY_KEYS: dict[str, tuple[Scheme, tuple[str, ...]]] = {
    "01": (Scheme.GTIN, ("22", "10", "21")),
    "00": (Scheme.SSCC, ()),
    "414": (Scheme.GLN, ("254",)),
}
# Qualifier values: GS1 AI encodable character set 82 (General Specifications §7.11),
# at most 20 characters for each of these AIs.
CSET82 = frozenset(
    "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
)
QUALIFIER_MAX = 20
CANONICAL_HOST = "https://id.gs1.org"


def parse_digital_link(text: str) -> Identifier:
    scheme_end = text.index("://") + 3
    path_start = text.find("/", scheme_end)
    host = text[scheme_end : path_start if path_start >= 0 else len(text)]
    if not host:
        raise InvalidIdentifier(
            text, "Digital Link URI has no host", position=scheme_end, scheme="GS1 Digital Link"
        )
    if path_start < 0:
        raise InvalidIdentifier(
            text,
            "Digital Link URI has no path with a primary key (/01/, /00/ or /414/)",
            scheme="GS1 Digital Link",
        )
    end = len(text)
    for stop in ("?", "#"):
        cut = text.find(stop, path_start)
        if cut >= 0:
            end = min(end, cut)
    # (segment, offset of the segment in text)
    segments: list[tuple[str, int]] = []
    pos = path_start + 1
    for seg in text[path_start + 1 : end].split("/"):
        segments.append((seg, pos))
        pos += len(seg) + 1

    for i, (seg, _off) in enumerate(segments):
        if seg in PRIMARY_KEYS and i + 1 < len(segments):
            return _from_segments(text, segments, i)
    raise InvalidIdentifier(
        text,
        "no primary key (/01/, /00/ or /414/ followed by a value) in the path",
        position=path_start,
        scheme="GS1 Digital Link",
    )


def _from_segments(text: str, segments: list[tuple[str, int]], i: int) -> Identifier:
    ai = segments[i][0]
    scheme, allowed = PRIMARY_KEYS[ai]
    key, key_off = segments[i + 1]
    ident = parse_gs1_key(key, scheme, offset=key_off, whole=text)
    rest = segments[i + 2 :]
    if rest and rest[-1][0] == "":
        rest = rest[:-1]  # a trailing slash adds nothing
    if len(rest) % 2:
        seg, off = rest[-1]
        raise InvalidIdentifier(
            text, f"qualifier AI {seg!r} has no value", position=off, scheme="GS1 Digital Link"
        )
    qualifiers: list[tuple[str, str]] = []
    next_allowed = 0
    for j in range(0, len(rest), 2):
        (q_ai, q_off), (raw, v_off) = rest[j], rest[j + 1]
        if q_ai not in allowed[next_allowed:]:
            why = (
                f"AI {q_ai} is not a qualifier of AI {ai}"
                if q_ai not in allowed
                else f"qualifier AI {q_ai} is out of order (order: {'/'.join(allowed)})"
            )
            raise InvalidIdentifier(text, why, position=q_off, scheme="GS1 Digital Link")
        next_allowed = allowed.index(q_ai) + 1
        qualifiers.append((q_ai, _qualifier_value(text, raw, v_off, q_ai)))
    uri = f"{CANONICAL_HOST}/{ai}/{ident.canonical.removeprefix('gln:')}" + "".join(
        f"/{q}/{quote(v, safe='')}" for q, v in qualifiers
    )
    return Identifier(
        scheme=ident.scheme,
        canonical=ident.canonical,
        routing=ident.routing,
        qualifiers=tuple(qualifiers),
        uri=uri,
    )


def _qualifier_value(text: str, raw: str, offset: int, ai: str) -> str:
    if not raw:
        raise InvalidIdentifier(
            text,
            f"qualifier AI {ai} has an empty value",
            position=offset,
            scheme="GS1 Digital Link",
        )
    try:
        value = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidIdentifier(
            text,
            f"value of AI {ai} is not UTF-8 after percent-decoding",
            position=offset,
            scheme="GS1 Digital Link",
        ) from None
    for k, ch in enumerate(value):
        if ch not in CSET82:
            raise InvalidIdentifier(
                text,
                f"{ch!r} is not allowed in AI {ai} (GS1 character set 82)",
                position=offset + min(k, len(raw) - 1),
                scheme="GS1 Digital Link",
            )
    if len(value) > QUALIFIER_MAX:
        raise InvalidIdentifier(
            text,
            f"value of AI {ai} is {len(value)} characters; at most {QUALIFIER_MAX}",
            position=offset,
            scheme="GS1 Digital Link",
        )
    return value
