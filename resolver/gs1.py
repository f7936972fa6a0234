"""A GS1-conformant resolver's decisions (GS1-Conformant Resolver standard 1.2.0; its
requirements are quoted as the conformance suite lists them, Conformance1_2.txt):
which of a record's links a Digital Link request gets, as a redirect, a 300 list or
the RFC 9264 linkset.

How a record's values become GS1 links (README, "idres as a GS1 resolver"):

- a string value that is an http(s) URL, of type ``gs1:{linkType}``, is a link of
  that type of the GS1 Web vocabulary (``https://gs1.org/voc/{linkType}``);
  ``gs1:{linkType}:{lang}`` is the same with ``hreflang`` (a BCP 47 tag);
- the default link is the lowest-index ``gs1:defaultLink`` value, else the first
  ``URL`` value; other ``gs1:defaultLink`` values, and language-tagged ones, are
  ``gs1:defaultLinkMulti`` links chosen by ``Accept-Language``;
- any other URL value is an IANA ``related`` link titled with its type.

Pure: no I/O; the HTTP layer (``resolver/gs1_api.py``) reads the request into a
``Request`` and sends the ``Reply``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from registry.httpio import dump
from resolver import web as web_view
from resolver.replies import HTML, LINKSET, Reply
from schemas.identifiers import Identifier
from schemas.record import HandleValue

GS1_VOC = "https://gs1.org/voc/"
DEFAULT = "defaultLink"
DEFAULT_MULTI = "defaultLinkMulti"
RELATED = "http://www.iana.org/assignments/relation/related"
# the resolver standard's context file that reads a linkset as JSON-LD
JSONLD_CONTEXT = "https://ref.gs1.org/standards/resolver/linkset-context"
# GS1 link types are named in three spellings (the suite reduces all to gs1:)
_VOC_PREFIXES = (
    "gs1:",
    "https://gs1.org/voc/",
    "https://ref.gs1.org/voc/",
    "https://www.gs1.org/voc/",
    "http://gs1.org/voc/",
)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_LANG = re.compile(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*")
# "SHALL support CORS" and "SHALL support HTTP 1.1 (or higher) GET, HEAD and OPTIONS"
CORS: tuple[tuple[str, str], ...] = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"),
    ("Access-Control-Allow-Headers", "Accept, Accept-Language"),
    ("Access-Control-Expose-Headers", "Link, Location, Content-Type"),
)
# titles of the common GS1 link types; others are titled with their name
_TITLES = {
    DEFAULT: "Default link",
    "pip": "Product information page",
    "instructions": "Instructions",
    "certificationInfo": "Certification information",
    "sustainabilityInfo": "Sustainability information",
    "traceability": "Traceability information",
    "recipeInfo": "Recipes",
    "nutritionalInfo": "Nutritional information",
    "allergenInfo": "Allergen information",
    "safetyInfo": "Safety information",
    "recallStatus": "Recall status",
    "homepage": "Home page",
    "productSustainabilityInfo": "Product sustainability information",
    "epil": "Electronic patient information leaflet",
    "smpc": "Summary of product characteristics",
}


@dataclass(frozen=True, slots=True)
class Link:
    rel: str  # a GS1 link type name (``pip``), or RELATED
    href: str
    title: str
    hreflang: str | None = None
    index: int = 0

    def relation(self) -> str:
        return self.rel if self.rel == RELATED else GS1_VOC + self.rel

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"href": self.href, "title": self.title}
        if self.hreflang:
            out["hreflang"] = [self.hreflang]
        return out


@dataclass(frozen=True, slots=True)
class Request:
    link_type: str | None = None  # the linkType query parameter, as sent
    accept: str = ""
    accept_language: str = ""
    query: str = ""  # the query string to pass on to the target (raw, without "?")
    noredirect: bool = False
    path: str = ""  # the request path after "/", for the linkset's Link header
    same_as: str | None = None  # a compressed request's uncompressed URI


def links_of(values: Sequence[HandleValue]) -> tuple[Link | None, tuple[Link, ...]]:
    """The default link and every other link of a record's values (module docstring)."""
    default: Link | None = None
    first_url: Link | None = None
    others: list[Link] = []
    for type_, href, index in _urls(values):
        rel, lang = _typed(type_)
        if rel is None:
            link = Link(RELATED, href, type_, None, index)
            if type_ == "URL" and first_url is None:
                first_url = link
                continue
            others.append(link)
            continue
        if rel == DEFAULT and lang is None and default is None:
            default = Link(DEFAULT, href, _TITLES[DEFAULT], None, index)
            continue
        if rel == DEFAULT:
            rel = DEFAULT_MULTI
        title = _TITLES.get(rel if rel != DEFAULT_MULTI else DEFAULT, rel)
        others.append(Link(rel, href, title, lang, index))
    if default is None and first_url is not None:
        default = Link(DEFAULT, first_url.href, _TITLES[DEFAULT], None, first_url.index)
    elif first_url is not None:  # not the default after all: a related link like the rest
        others.append(first_url)
        others.sort(key=lambda link: link.index)
    return default, tuple(others)


def _urls(values: Sequence[HandleValue]) -> list[tuple[str, str, int]]:
    """(type, URL, index) of every http(s) URL value, in index order."""
    out = []
    for value in sorted(values, key=lambda v: v.index):
        for type_, url in web_view.url_values((value,)):
            out.append((type_, url, value.index))
    return out


def _typed(type_: str) -> tuple[str | None, str | None]:
    """``gs1:pip`` -> ("pip", None); ``gs1:pip:fr`` -> ("pip", "fr"); else (None, None)."""
    if not type_.startswith("gs1:"):
        return None, None
    name, _, lang = type_[4:].partition(":")
    if not _NAME.fullmatch(name) or (lang and not _LANG.fullmatch(lang)):
        return None, None
    return name, lang or None


def link_type_name(raw: str) -> str:
    """A linkType parameter in any of its spellings, as a link type name."""
    for prefix in _VOC_PREFIXES:
        if raw.startswith(prefix):
            return raw[len(prefix) :]
    return raw


def linkset(anchor: str, default: Link | None, links: Sequence[Link]) -> dict[str, Any]:
    """RFC 9264 §4.2 JSON: one context object for the key, each relation with its links;
    "SHALL recognise one available link as the default": exactly one gs1:defaultLink."""
    entry: dict[str, Any] = {"anchor": anchor}
    if default is not None:
        entry[GS1_VOC + DEFAULT] = [default.to_json()]
    for link in links:
        entry.setdefault(link.relation(), []).append(link.to_json())
    return {"linkset": [entry]}


def anchor_of(ident: Identifier, host: str) -> str:
    """The Digital Link URI of the key a record belongs to, under the resolver's host:
    the record is the key's, so its links are facts about the key (qualifiers narrow
    the key; a resolver walks up from what it does not know to the key)."""
    uri = ident.uri or ""
    path = uri.split("://", 1)[-1].partition("/")[2]
    ai, _, rest = path.partition("/")
    key = rest.partition("/")[0]
    return f"https://{host}/{ai}/{key}"


def respond(
    ident: Identifier, values: Sequence[HandleValue], request: Request, *, host: str
) -> Reply:
    """The answer to a Digital Link request for a key whose record holds ``values``."""
    default, links = links_of(values)
    anchor = anchor_of(ident, host)
    headers = headers_for(request)
    wanted = request.link_type
    name = link_type_name(wanted) if wanted is not None else None
    if name in ("linkset", "all") or (name is None and LINKSET in request.accept):
        # linkType=linkset (linkType=all, deprecated) and Accept: linkset+json
        # answer the linkset itself, never a redirect
        body = dump(linkset(anchor, default, links))
        plain_json = "application/json" in request.accept and LINKSET not in request.accept
        content_type = "application/json" if plain_json else LINKSET
        return Reply(200, body, content_type, headers_for(request, linkset_body=True))
    if request.noredirect and name is None:
        return Reply(200, web_view.page(ident.canonical, values).encode(), HTML, headers)
    if name is None or name == DEFAULT:
        candidates = [default] if default is not None else []
        multi = [lk for lk in links if lk.rel == DEFAULT_MULTI]
        chosen = _by_language(multi, request.accept_language) if multi else []
        if len(chosen) == 1:
            candidates = chosen
    else:
        of_type = [lk for lk in links if lk.rel == name]
        untagged = [lk for lk in of_type if not lk.hreflang]
        candidates = _by_language(of_type, request.accept_language) or untagged or of_type
    if not candidates:
        # a link type the record lacks is 404 (the suite's specificLinkTypeNotFound)
        why = f"{ident.canonical} has no link of type {wanted}" if wanted else "no default link"
        return Reply(404, web_view.page(ident.canonical, None, message=why).encode(), HTML, headers)
    if len(candidates) > 1:
        # RFC 9110 §15.4.1: several links fit equally; list them, redirect to none
        body = dump(linkset(anchor, None, candidates))
        return Reply(300, body, LINKSET, headers)
    target = candidates[0].href
    if request.query:  # "SHALL pass on all key=value pairs in the query string"
        target += ("&" if "?" in target else "?") + request.query
    return Reply(307, b"", "", (("Location", target), *headers))


def headers_for(request: Request, *, linkset_body: bool = False) -> tuple[tuple[str, str], ...]:
    """CORS, and the Link header: the linkset ("SHOULD expose link to the linkset in an
    HTTP Link header, even when redirecting"); for a compressed request its uncompressed
    URI ("SHALL expose the uncompressed URI in the Link response header with a rel value
    of owl:sameAs"); with a linkset, the JSON-LD context that reads it as linked data."""
    links = [f'</{_path_quote(request.path)}?linkType=linkset>; rel="linkset"; type="{LINKSET}"']
    if request.same_as:
        links.append(f'<{request.same_as}>; rel="owl:sameAs"')
    if linkset_body:
        links.append(f'<{JSONLD_CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"')
    return (*CORS, ("Link", ", ".join(links)), ("Vary", "Accept, Accept-Language"))


def _path_quote(path: str) -> str:
    """The decoded request path as a URI reference again (nothing that could end the
    Link header's <...> or split the header survives)."""
    return quote(path, safe="/!$&'()*+,;=:@-._~")


def _by_language(links: Sequence[Link], accept_language: str) -> list[Link]:
    """The links of the client's most preferred language that any link has (RFC 9110
    §12.5.4 with RFC 4647 §3.3.1 basic filtering); empty if none matches."""
    for tag in _preferences(accept_language):
        if tag == "*":
            continue
        fit = [
            lk
            for lk in links
            if lk.hreflang
            and (
                lk.hreflang.lower() == tag
                or lk.hreflang.lower().startswith(tag + "-")
                or tag.startswith(lk.hreflang.lower() + "-")
            )
        ]
        if fit:
            return fit
    return []


def _preferences(header: str) -> list[str]:
    ranked: list[tuple[float, int, str]] = []
    for n, item in enumerate(header.split(",")):
        tag, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if tag and q > 0:
            ranked.append((-q, n, tag.strip().lower()))
    return [tag for _, _, tag in sorted(ranked)]


def description(host: str, *, name: str) -> dict[str, Any]:
    """The resolver description file at /.well-known/gs1resolver ("SHALL provide a
    resolver description file"), in the fields of GS1's description-file schema."""
    return {
        "name": name,
        "resolverRoot": f"https://{host}",
        "supportedPrimaryKeys": ["01", "00", "414"],
        "supportedLinkType": [{"namespace": GS1_VOC, "prefix": "gs1:"}],
        # a record cannot make the linkset its default answer: the default is a link
        "linkTypeDefaultCanBeLinkset": False,
    }
