"""The GS1 resolver's decisions as plain functions: values and a request in, a reply out."""

from __future__ import annotations

import json

import pytest

from resolver import gs1
from schemas.codec_json import values_from_json
from schemas.identifiers import parse
from schemas.record import HandleValue

IDENT = parse("https://id.gs1.org/01/06901234567892/10/LOT7")


def values(*pairs: tuple[str, str]) -> tuple[HandleValue, ...]:
    raw = [{"index": i, "type": t, "data": d} for i, (t, d) in enumerate(pairs, 1)]
    return values_from_json({"values": raw}, now=0)


@pytest.mark.parametrize(
    ("pairs", "default", "rels"),
    [
        ((("URL", "https://e.x/a"),), "https://e.x/a", []),
        (
            (("URL", "https://e.x/a"), ("gs1:defaultLink", "https://e.x/d")),
            "https://e.x/d",
            [(gs1.RELATED, None)],
        ),
        (
            (("gs1:defaultLink", "https://e.x/d"), ("gs1:defaultLink", "https://e.x/d2")),
            "https://e.x/d",
            [("defaultLinkMulti", None)],
        ),
        (
            (("gs1:pip:zh-Hans", "https://e.x/p"), ("gs1:defaultLink:fr", "https://e.x/f")),
            None,
            [("pip", "zh-Hans"), ("defaultLinkMulti", "fr")],
        ),
        ((("gs1:pip", "mailto:x@e.x"), ("HOMEPAGE", "https://e.x/m")), None, [(gs1.RELATED, None)]),
        ((("gs1:p-ip", "https://e.x/bad"),), None, [(gs1.RELATED, None)]),  # not a GS1 name
    ],
)
def test_values_become_links(
    pairs: tuple[tuple[str, str], ...], default: str | None, rels: list[tuple[str, str | None]]
) -> None:
    found, links = gs1.links_of(values(*pairs))
    assert (found.href if found else None) == default
    assert [(link.rel, link.hreflang) for link in links] == rels
    assert all(link.title for link in links)


RECORD = values(
    ("gs1:defaultLink", "https://e.x/d"),
    ("gs1:pip:en", "https://e.x/en"),
    ("gs1:pip:fr", "https://e.x/fr"),
    ("gs1:pip", "https://e.x/any"),
    ("gs1:epil", "https://e.x/1"),
    ("gs1:epil", "https://e.x/2"),
)


@pytest.mark.parametrize(
    ("request_", "status", "location"),
    [
        (gs1.Request(), 307, "https://e.x/d"),
        (gs1.Request(query="a=1"), 307, "https://e.x/d?a=1"),
        (gs1.Request(link_type="gs1:pip"), 307, "https://e.x/any"),  # no language asked
        (gs1.Request(link_type="pip", accept_language="fr;q=0.4, en"), 307, "https://e.x/en"),
        (gs1.Request(link_type="gs1:pip", accept_language="de, *"), 307, "https://e.x/any"),
        (gs1.Request(link_type="gs1:epil"), 300, None),
        (gs1.Request(link_type="gs1:recallStatus"), 404, None),
        (gs1.Request(link_type="linkset"), 200, None),
        (gs1.Request(accept="application/linkset+json"), 200, None),
        (gs1.Request(noredirect=True), 200, None),
    ],
)
def test_a_request_gets_a_redirect_a_list_or_a_linkset(
    request_: gs1.Request, status: int, location: str | None
) -> None:
    reply = gs1.respond(IDENT, RECORD, request_, host="id.example.com")
    assert reply.status == status
    assert dict(reply.headers).get("Location") == location
    assert dict(reply.headers)["Access-Control-Allow-Origin"] == "*"


def test_the_linkset_is_anchored_at_the_key_under_the_resolvers_host() -> None:
    reply = gs1.respond(IDENT, RECORD, gs1.Request(link_type="all"), host="id.example.com")
    (entry,) = json.loads(reply.body)["linkset"]
    assert entry["anchor"] == "https://id.example.com/01/06901234567892"
    assert len(entry[gs1.GS1_VOC + "defaultLink"]) == 1
    assert len(entry[gs1.GS1_VOC + "pip"]) == 3


def test_the_link_header_cannot_be_split_by_the_path() -> None:
    request = gs1.Request(path='01/06901234567892/10/A>"\r\nX: y', same_as=None)
    (link,) = (v for k, v in gs1.headers_for(request) if k == "Link")
    assert "\r" not in link
    assert "\n" not in link
    assert link.startswith("</01/06901234567892/10/A%3E%22%0D%0AX:%20y?linkType=linkset>")
