"""A record's public values as DNS resource records: NAPTR, URI and TXT.

- NAPTR (RFC 3403) for the URL values of GS1 keys, as ONS 2.0.1 lays them out (flags
  ``u``, service ``http://www.gs1.org/ons/html``, regexp ``!^.*$!<url>!``), and of
  OIDs as X.672 does (service ``ORS+UINF``);
- URI (RFC 7553) for the URL values of every scheme, priority the value's index;
- TXT for every public value: three or more strings, its index, its type and its data
  (strings over 255 bytes split in order, RFC 1035 §3.3.14; the reader joins them).

An RRset has one TTL (RFC 2181 §5.2): the least of its values'. Nothing here does I/O.
"""

from __future__ import annotations

import json
from typing import Any

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.name import Name
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.ANY.URI import URI
from dns.rdtypes.IN.NAPTR import NAPTR

from schemas.identifiers import Identifier, Scheme

ONS_SERVICE = b"http://www.gs1.org/ons/html"  # ONS 2.0.1: a web page about the item
ORS_SERVICE = b"ORS+UINF"  # X.672 Annex A, service type UINF: a URI for the node
MAX_STRING = 255  # a <character-string>, RFC 1035 §3.3
MAX_TTL = 2**31 - 1  # RFC 2181 §8
MAX_TXT = 16_384  # bytes of one value's TXT strings: a longer value is left out (HTTP has it)
_NAPTR_SERVICE = {
    Scheme.GTIN: ONS_SERVICE,
    Scheme.GLN: ONS_SERVICE,
    Scheme.SSCC: ONS_SERVICE,
    Scheme.OID: ORS_SERVICE,
}
_DELIMITERS = "!#|~%"
IN = dns.rdataclass.IN


def rrsets(
    owner: Name, ident: Identifier, body: dict[str, Any], now: float
) -> list[dns.rrset.RRset]:
    """Every RRset at ``owner`` for the values of an answer's ``body`` (Handle REST
    shape); none for a body without values."""
    values = [v for v in body.get("values", ()) if isinstance(v, dict)]
    urls = [(v, u) for v in values if (u := _url(v)) is not None]
    out = []
    service = _NAPTR_SERVICE.get(ident.scheme)
    if service is not None:
        naptr = [(v, r) for v, u in urls if (r := _regexp(u)) is not None]
        if naptr:
            rdatas = [
                NAPTR(IN, dns.rdatatype.NAPTR, order, 0, b"u", service, regexp, dns.name.root)
                for order, (_, regexp) in enumerate(naptr)
            ]
            out.append(_rrset(owner, [v for v, _ in naptr], rdatas, now))
    if urls:
        uris = [
            URI(IN, dns.rdatatype.URI, min(_index(v), 65535), 1, url.encode()) for v, url in urls
        ]
        out.append(_rrset(owner, [v for v, _ in urls], uris, now))
    strings = [(v, _strings(v)) for v in values]
    carried = [(v, parts) for v, parts in strings if sum(map(len, parts)) <= MAX_TXT]
    if carried:
        texts = [TXT(IN, dns.rdatatype.TXT, parts) for _, parts in carried]
        out.append(_rrset(owner, [v for v, _ in carried], texts, now))
    return out


def _rrset(
    owner: Name, values: list[dict[str, Any]], rdatas: list[Any], now: float
) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(owner, _ttl(values, now), rdatas)


def _index(value: dict[str, Any]) -> int:
    index = value.get("index")
    return index if isinstance(index, int) and index >= 0 else 0


def _url(value: dict[str, Any]) -> str | None:
    data = value.get("data")
    if str(value.get("type", "")).upper() != "URL" or not isinstance(data, dict):
        return None
    text = data.get("value")
    return text if data.get("format") == "string" and isinstance(text, str) and text else None


def _regexp(url: str) -> bytes | None:
    """``!^.*$!<url>!`` (RFC 3402 §3.2), with a delimiter the URL does not hold; None
    when none is free or the result outgrows a character-string."""
    free = [d for d in _DELIMITERS if d not in url]
    if not free or "\\" in url:
        return None
    regexp = f"{free[0]}^.*${free[0]}{url}{free[0]}".encode()
    return regexp if len(regexp) <= MAX_STRING else None


def _strings(value: dict[str, Any]) -> list[bytes]:
    data = value.get("data")
    text = data.get("value") if isinstance(data, dict) else None
    if not isinstance(text, str):  # admin references, key lists: as the JSON gives them
        text = json.dumps(text, separators=(",", ":"), ensure_ascii=False)
    raw = text.encode()
    chunks = [raw[i : i + MAX_STRING] for i in range(0, len(raw), MAX_STRING)] or [b""]
    return [str(_index(value)).encode(), str(value.get("type", "")).encode()[:MAX_STRING], *chunks]


def _ttl(values: list[dict[str, Any]], now: float) -> int:
    """The least TTL of ``values``: relative seconds, or an absolute expiry's remainder."""
    least: int | None = None
    for value in values:
        ttl = value.get("ttl")
        if not isinstance(ttl, int):
            continue
        left = ttl - int(now) if value.get("ttlType") == "absolute" else ttl
        least = max(0, left) if least is None else min(least, max(0, left))
    # no TTL at all (never in a record of ours): not to be kept, as resolver.cache reads it
    return 0 if least is None else min(least, MAX_TTL)
