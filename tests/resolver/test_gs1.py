"""The GS1-Conformant Resolver checks (gs1/GS1DL-resolver-testsuite, Conformance1_2.txt)
over HTTP against a small network of real nodes. The URIs sent are made, checked and
compressed by GS1's own SDK, digital-link.js (deploy/gs1/digital-link.sh), not by idres.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from schemas.codec_json import values_from_json
from schemas.record import Record
from tests.resolver.conftest import Net

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]
SDK = Path(__file__).resolve().parents[2] / "deploy" / "gs1" / "digital-link.sh"
GTIN = "06901234567892"  # under gs1:690, held by the sub node; asked at the super node
UNKNOWN = "06901234567885"  # a valid GTIN no one registered
VOC = "https://gs1.org/voc/"
VALUES: list[dict[str, object]] = [
    {"index": 1, "type": "URL", "data": "https://example.com/tea"},
    {"index": 2, "type": "gs1:defaultLink", "data": "https://example.com/tea/info"},
    {"index": 3, "type": "gs1:pip:en", "data": "https://example.com/tea/pip/en"},
    {"index": 4, "type": "gs1:pip:fr", "data": "https://example.com/tea/pip/fr"},
    {"index": 5, "type": "gs1:instructions", "data": "https://example.com/tea/how?v=1"},
    {"index": 6, "type": "gs1:certificationInfo", "data": "https://example.com/c1"},
    {"index": 7, "type": "gs1:certificationInfo", "data": "https://example.com/c2"},
    {"index": 8, "type": "gs1:defaultLink:zh", "data": "https://example.com/tea/zh"},
]


async def sdk(*jobs: dict[str, Any]) -> list[dict[str, Any]]:
    """Run jobs through digital-link.js (deploy/gs1/dlprobe.js says which)."""
    proc = await asyncio.create_subprocess_exec(
        "bash",
        str(SDK),
        "run",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(json.dumps(jobs).encode())
    assert proc.returncode == 0, err.decode()
    results: list[dict[str, Any]] = json.loads(out)
    return results


async def dl(net: Net, qualifiers: dict[str, str] | None = None, gtin: str = GTIN) -> str:
    """A Digital Link URI on the super node, built and validated by the SDK."""
    build: dict[str, Any] = {"domain": net.urls["super"], "identifier": {"01": gtin}}
    if qualifiers:
        build["keyQualifiers"] = qualifiers
    (made,) = await sdk({"build": build})
    assert made["valid"], made
    uri: str = made["uri"]
    return uri


async def registered(net: Net) -> None:
    values = values_from_json({"values": VALUES}, now=int(time.time()))
    await net.stores["sub"].put(Record(handle=GTIN, values=values), actor="t")


async def call(
    url: str, method: str = "GET", **headers: str
) -> tuple[int, bytes, aiohttp.typedefs.LooseHeaders]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, url, headers=headers, allow_redirects=False) as resp,
    ):
        return resp.status, await resp.read(), resp.headers


async def test_the_resolver_description_file_is_at_its_well_known_path(net: Net) -> None:
    status, body, headers = await call(net.urls["sub"] + "/.well-known/gs1resolver")
    described = json.loads(body)
    assert (status, headers["Access-Control-Allow-Origin"]) == (200, "*")
    assert described["resolverRoot"] == "https://id.gs1.org"
    assert set(described["supportedPrimaryKeys"]) == {"01", "00", "414"}
    assert described["supportedLinkType"][0]["namespace"] == VOC
    assert described["name"]
    assert described["linkTypeDefaultCanBeLinkset"] is False


async def test_get_head_and_options_answer_with_cors_headers(net: Net) -> None:
    await registered(net)
    uri = await dl(net, {"10": "LOT7"})
    for method in ("GET", "HEAD"):
        status, body, headers = await call(uri, method)
        assert (status, headers["Location"], body) == (307, "https://example.com/tea/info", b"")
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"
    status, _, headers = await call(
        uri, "OPTIONS", Origin="https://app.example", **{"Access-Control-Request-Method": "GET"}
    )
    assert (status, headers["Access-Control-Allow-Origin"]) == (204, "*")
    assert {"GET", "HEAD", "OPTIONS"} <= set(headers["Access-Control-Allow-Methods"].split(", "))
    (compressed,) = await sdk({"compress": uri})
    for path in (compressed["uri"], net.urls["sub"] + "/.well-known/gs1resolver"):
        status, _, headers = await call(path, "OPTIONS")
        assert (status, headers["Access-Control-Allow-Origin"]) == (204, "*")
    # the Handle API's own paths are not the GS1 resolver's to describe
    status, _, _ = await call(net.urls["super"] + "/api/handles/88.100.1/X", "OPTIONS")
    assert status == 405


async def test_the_default_follows_the_readers_language_when_a_multi_default_fits(
    net: Net,
) -> None:
    await registered(net)
    uri = await dl(net)  # no query: answered by the node's front door, not aiohttp
    for language, location in [
        ("zh-CN, en;q=0.8", "https://example.com/tea/zh"),
        ("en", "https://example.com/tea/info"),
        ("", "https://example.com/tea/info"),
    ]:
        headers = {"Accept-Language": language} if language else {}
        status, _, answer = await call(uri, **headers)
        assert (status, answer["Location"]) == (307, location)
    status, body, _ = await call(uri, Accept="application/linkset+json")
    (entry,) = json.loads(body)["linkset"]
    assert entry[VOC + "defaultLinkMulti"] == [
        {"href": "https://example.com/tea/zh", "title": "Default link", "hreflang": ["zh"]}
    ]
    assert len(entry[VOC + "defaultLink"]) == 1


async def test_malformed_is_400_unknown_is_404_and_no_error_is_a_200(net: Net) -> None:
    await registered(net)
    uri = await dl(net)
    (checked,) = await sdk({"check": uri + "/foo"})
    assert not checked.get("valid")  # GS1's SDK agrees that it is malformed
    status, body, headers = await call(uri + "/foo")
    assert (status, headers["Access-Control-Allow-Origin"]) == (400, "*")
    assert b"foo" in body
    status, _, _ = await call(await dl(net, gtin=UNKNOWN))
    assert status == 404
    status, _, _ = await call(net.urls["super"] + "/01/06901234567891")  # check digit
    assert status == 400
    status, _, _ = await call(uri)
    assert status == 307


async def test_a_trailing_slash_answers_the_same(net: Net) -> None:
    await registered(net)
    for uri in (await dl(net), await dl(net, {"10": "LOT7", "21": "S1"})):
        plain = await call(uri)
        slashed = await call(uri + "/")
        assert (plain[0], plain[2]["Location"]) == (slashed[0], slashed[2]["Location"])


async def test_unknown_qualifiers_walk_up_to_the_key(net: Net) -> None:
    await registered(net)
    for qualifiers in ({"10": "KL8G"}, {"10": "KL8G", "21": "X9"}):
        status, _, headers = await call(await dl(net, qualifiers))
        assert (status, headers["Location"]) == (307, "https://example.com/tea/info")


async def test_the_linkset_is_answered_not_redirected(net: Net) -> None:
    await registered(net)
    uri = await dl(net, {"10": "LOT7"})
    answers = [
        await call(uri + "?linkType=linkset"),
        await call(uri + "?linkType=all"),  # deprecated, still served
        await call(uri, Accept="application/linkset+json"),
        await call(uri + "?linkType=gs1:linkset", Accept="application/linkset+json"),
    ]
    bodies = set()
    for status, body, headers in answers:
        assert (status, "Location" in headers) == (200, False)
        assert headers["Content-Type"].startswith("application/linkset+json")
        bodies.add(body)
    assert len(bodies) == 1
    (entry,) = json.loads(bodies.pop())["linkset"]
    assert entry["anchor"] == f"https://id.gs1.org/01/{GTIN}"
    # exactly one default link, with a title and no other attribute
    assert entry[VOC + "defaultLink"] == [
        {"href": "https://example.com/tea/info", "title": "Default link"}
    ]
    assert {link["href"] for link in entry[VOC + "pip"]} == {
        "https://example.com/tea/pip/en",
        "https://example.com/tea/pip/fr",
    }
    assert [link["hreflang"] for link in entry[VOC + "pip"]] == [["en"], ["fr"]]
    for relation, links in entry.items():
        if relation != "anchor":
            assert all(link["href"] and link["title"] for link in links), relation
    assert 'rel="http://www.w3.org/ns/json-ld#context"' in answers[0][2]["Link"]
    status, _, headers = await call(uri + "?linkType=linkset", Accept="application/json")
    assert (status, headers["Content-Type"].split(";")[0]) == (200, "application/json")


async def test_every_answer_links_to_the_linkset_even_a_redirect(net: Net) -> None:
    await registered(net)
    uri = await dl(net, {"10": "LOT7"})
    status, _, headers = await call(uri)
    assert status == 307
    link = headers["Link"]
    assert 'rel="linkset"' in link
    assert 'rel="gs1:' not in link  # all links in the header: deprecated
    target = link.split(">", 1)[0].lstrip("<")
    status, body, _ = await call(net.urls["super"] + target)
    assert status == 200
    assert json.loads(body)["linkset"][0]["anchor"] == f"https://id.gs1.org/01/{GTIN}"


async def test_the_query_string_is_passed_on_to_the_target(net: Net) -> None:
    await registered(net)
    uri = await dl(net)
    status, _, headers = await call(uri + "?foo=bar")
    assert (status, headers["Location"]) == (307, "https://example.com/tea/info?foo=bar")
    status, _, headers = await call(uri + "?linkType=gs1:instructions&foo=bar")
    assert headers["Location"] == (
        "https://example.com/tea/how?v=1&linkType=gs1:instructions&foo=bar"
    )


@pytest.mark.parametrize(
    ("link_type", "status", "location"),
    [
        ("gs1:instructions", 307, "https://example.com/tea/how?v=1"),
        ("https://gs1.org/voc/instructions", 307, "https://example.com/tea/how?v=1"),
        ("https://ref.gs1.org/voc/instructions", 307, "https://example.com/tea/how?v=1"),
        ("gs1:defaultLink", 307, "https://example.com/tea/info"),
        ("gs1:nosuchlt", 404, None),
        ("gs1:traceability", 404, None),
    ],
)
async def test_a_requested_link_type_redirects_or_is_404(
    net: Net, link_type: str, status: int, location: str | None
) -> None:
    await registered(net)
    got, _, headers = await call(await dl(net) + "?linkType=" + link_type)
    assert got == status
    if location is not None:
        passed_on = "linkType=" + link_type  # the query passes on; the suite drops it
        assert headers["Location"].replace("?" + passed_on, "").replace("&" + passed_on, "") == (
            location
        )


@pytest.mark.parametrize(
    ("link_type", "language", "status", "location"),
    [
        ("gs1:certificationInfo", "", 300, None),  # same type, same attributes
        ("gs1:pip", "", 300, None),  # two languages, no preference
        ("gs1:pip", "fr-CH, fr;q=0.9", 307, "https://example.com/tea/pip/fr"),
        ("gs1:pip", "de, en;q=0.5", 307, "https://example.com/tea/pip/en"),
        ("gs1:pip", "de", 300, None),  # none in a language the client reads
    ],
)
async def test_several_equally_fitting_links_are_300_multiple_choices(
    net: Net, link_type: str, language: str, status: int, location: str | None
) -> None:
    await registered(net)
    headers = {"Accept-Language": language} if language else {}
    got, body, answer = await call(await dl(net) + "?linkType=" + link_type, **headers)
    assert got == status
    if location is None:
        (entry,) = json.loads(body)["linkset"]
        (relation,) = (r for r in entry if r != "anchor")
        assert relation == VOC + link_type.removeprefix("gs1:")
        assert len(entry[relation]) == 2
        assert "Location" not in answer
    else:
        assert answer["Location"].partition("?")[0] == location


async def test_compressed_digital_links_resolve_as_their_uncompressed_uri(net: Net) -> None:
    await registered(net)
    base = net.urls["super"]
    plain = f"{base}/01/{GTIN}/10/ABC%26%2B1/21/S9?17=261231&foo=bar"
    (compressed,) = await sdk({"compress": plain})
    uri = compressed["uri"]
    assert uri.count("/") == 3  # one compressed segment
    (back,) = await sdk({"decompress": uri})
    status, _, headers = await call(uri)
    assert (status, headers["Location"].partition("?")[0]) == (307, "https://example.com/tea/info")
    # the data attribute and the other pair pass on, as from the uncompressed URI
    assert set(headers["Location"].partition("?")[2].split("&")) == {"17=261231", "foo=bar"}
    same_as = next(p for p in headers["Link"].split(", ") if 'rel="owl:sameAs"' in p)
    expanded = same_as.split(">", 1)[0].lstrip("<")
    assert expanded.replace("https://id.gs1.org", base) == back["uri"]
    status, body, _ = await call(uri, Accept="application/linkset+json")
    assert (status, json.loads(body)["linkset"][0]["anchor"]) == (
        200,
        f"https://id.gs1.org/01/{GTIN}",
    )
    (partial,) = await sdk({"compress": f"{base}/01/{GTIN}"})
    status, _, _ = await call(partial["uri"])
    assert status == 307
    (unknown,) = await sdk({"compress": f"{base}/01/{UNKNOWN}/10/X"})
    status, _, _ = await call(unknown["uri"])
    assert status == 404
    status, _, _ = await call(f"{base}/01/{GTIN}/zz9")  # neither a path nor compressed
    assert status == 400
