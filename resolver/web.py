"""What a browser or a phone that scanned a code sees: a redirect to the record's URL
(302, as hdl.handle.net and doi.org do), a small HTML page of the record, or for a
GS1 Digital Link a 307 to its default link and its RFC 9264 linkset.

Pure builders: record JSON in, a location, an HTML page or a linkset out.
"""

from __future__ import annotations

import html
from typing import Any

GS1_VOC = "https://gs1.org/voc/"
DEFAULT_LINK = GS1_VOC + "defaultLink"
RELATED = "http://www.iana.org/assignments/relation/related"


def url_values(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(type, URL) of every string value that is an http(s) URL, in index order."""
    out = []
    for value in record.get("values", []):
        data = value.get("data", {})
        text = data.get("value") if isinstance(data, dict) else None
        if isinstance(text, str) and text.startswith(("http://", "https://")):
            out.append((str(value.get("type")), text))
    return out


def redirect_target(record: dict[str, Any]) -> str | None:
    """The first URL value, as the Handle proxy redirects to."""
    for type_, url in url_values(record):
        if type_ == "URL":
            return url
    return None


def default_link(record: dict[str, Any]) -> str | None:
    """A Digital Link's default link: a ``gs1:defaultLink`` value, else the first URL."""
    links = url_values(record)
    for type_, url in links:
        if type_ == "gs1:defaultLink":
            return url
    return redirect_target(record)


def linkset(anchor: str, record: dict[str, Any]) -> dict[str, Any]:
    """RFC 9264 linkset: the default link, then each ``gs1:*`` value under its GS1
    relation and other URLs as related links."""
    target = default_link(record)
    entry: dict[str, Any] = {"anchor": anchor}
    if target:
        entry[DEFAULT_LINK] = [{"href": target}]
    for type_, url in url_values(record):
        if url == target:
            continue
        relation = GS1_VOC + type_[4:] if type_.startswith("gs1:") else RELATED
        entry.setdefault(relation, []).append({"href": url, "title": type_})
    return {"linkset": [entry]}


def page(handle: str, record: dict[str, Any] | None, *, message: str = "") -> str:
    """A small HTML page of the record (or of why there is none); every field escaped."""
    rows = []
    for value in (record or {}).get("values", []):
        data = value.get("data", {})
        shown = data.get("value") if isinstance(data, dict) else data
        text = html.escape(str(shown))
        if isinstance(shown, str) and shown.startswith(("http://", "https://")):
            text = f'<a href="{html.escape(shown, quote=True)}">{text}</a>'
        rows.append(
            f"<tr><td>{value.get('index')}</td><td>{html.escape(str(value.get('type')))}"
            f"</td><td>{text}</td><td>{value.get('ttl', '')}</td></tr>"
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
