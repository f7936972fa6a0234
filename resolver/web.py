"""What a browser or a phone that scanned a code sees: a redirect to the record's URL
(302, as hdl.handle.net and doi.org do), a small HTML page of the record, or for a
GS1 Digital Link a 307 to its default link and its RFC 9264 linkset.

Pure builders over parsed values (``HandleValue``), never over the bytes an upstream
node sent: what reaches the page is typed, and every field of it is escaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

from schemas.record import DataFormat, HandleValue

GS1_VOC = "https://gs1.org/voc/"
DEFAULT_LINK = GS1_VOC + "defaultLink"
RELATED = "http://www.iana.org/assignments/relation/related"
# A URL we redirect to or link: http(s), no whitespace or control characters (a CR or
# LF would split the Location header), no quotes or angle brackets.
_URL = re.compile(r"https?://[^\x00-\x20\x7f\"'<>\\]+")


def url_values(values: Sequence[HandleValue]) -> list[tuple[str, str]]:
    """(type, URL) of every string value that is an http(s) URL, in index order."""
    out = []
    for value in sorted(values, key=lambda v: v.index):
        if (
            value.format is DataFormat.STRING
            and isinstance(value.value, str)
            and _URL.fullmatch(value.value)
        ):
            out.append((value.type, value.value))
    return out


def redirect_target(values: Sequence[HandleValue]) -> str | None:
    """The first URL value, as the Handle proxy redirects to."""
    for type_, url in url_values(values):
        if type_ == "URL":
            return url
    return None


def default_link(values: Sequence[HandleValue]) -> str | None:
    """A Digital Link's default link: a ``gs1:defaultLink`` value, else the first URL."""
    for type_, url in url_values(values):
        if type_ == "gs1:defaultLink":
            return url
    return redirect_target(values)


def linkset(anchor: str, values: Sequence[HandleValue]) -> dict[str, Any]:
    """RFC 9264 linkset: the default link, then each ``gs1:*`` value under its GS1
    relation and other URLs as related links."""
    target = default_link(values)
    entry: dict[str, Any] = {"anchor": anchor}
    if target:
        entry[DEFAULT_LINK] = [{"href": target}]
    for type_, url in url_values(values):
        if url == target:
            continue
        relation = GS1_VOC + type_[4:] if type_.startswith("gs1:") else RELATED
        entry.setdefault(relation, []).append({"href": url, "title": type_})
    return {"linkset": [entry]}


def _shown(value: HandleValue) -> str:
    if isinstance(value.value, str):
        return value.value
    if isinstance(value.value, bytes):
        return f"({len(value.value)} bytes of {value.format.value})"
    return str(value.value)


def page(handle: str, values: Sequence[HandleValue] | None, *, message: str = "") -> str:
    """A small HTML page of the values (or of why there are none); every field escaped,
    the numbers included: they are ints here, and escaped all the same."""
    rows = []
    for value in values or ():
        text = html.escape(_shown(value))
        if isinstance(value.value, str) and _URL.fullmatch(value.value):
            text = f'<a href="{html.escape(value.value, quote=True)}">{text}</a>'
        rows.append(
            f"<tr><td>{html.escape(str(value.index))}</td><td>{html.escape(value.type)}"
            f"</td><td>{text}</td><td>{html.escape(str(value.ttl))}</td></tr>"
        )
    body = (
        f"<table><tr><th>index</th><th>type</th><th>value</th><th>ttl</th></tr>"
        f"{''.join(rows)}</table>"
        if rows
        else f"<p>{html.escape(message)}</p>"
    )
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>'
        f"{html.escape(handle)}</title></head><body><h1>{html.escape(handle)}</h1>"
        f"{body}</body></html>"
    )
