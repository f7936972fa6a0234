"""Writes that reach a node not holding their identifier: 400/301 with Location, 307
for a client that prefers redirects, and a signature that holds at the holder only
when it was made for the network's name. Real clients: requests and curl."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from registry import httpsig
from tests.resolver.conftest import NETWORK, Net

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]

ADMIN_ID = "300:0.NA/node.admin"
BODY = json.dumps(
    {"values": [{"index": 1, "type": "URL", "data": "https://example.com/moved"}]}
).encode()


def signed_headers(net: Net, path: str, authority: str, **extra: str) -> dict[str, str]:
    """A PUT of BODY to ``path``, signed by the node admin for ``authority``."""
    assert net.admin is not None
    headers = {"Content-Type": "application/json", **extra}
    headers.update(
        httpsig.sign_request(
            method="PUT",
            path=path,
            query="",
            headers=headers,
            body=BODY,
            key=net.admin,
            keyid=ADMIN_ID,
            created=int(time.time()),
            nonce=uuid.uuid4().hex,
            authority=authority,
        )
    )
    return headers  # with Host: the authority signed for


def put(url: str, headers: dict[str, str], *, follow: bool) -> requests.Response:
    return requests.put(url, data=BODY, headers=headers, allow_redirects=follow, timeout=30)


def curl(url: str, headers: dict[str, str], tmp_path: Path, *flags: str) -> tuple[int, Any]:
    """``curl -X PUT`` with the headers and body; the final status and JSON body."""
    body = tmp_path / "body.json"
    body.write_bytes(BODY)
    args = ["curl", "-sS", "-X", "PUT", "--data-binary", f"@{body}", *flags]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    done = subprocess.run(
        [*args, "-w", "\n%{http_code}", url], capture_output=True, text=True, check=True
    )
    text, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(text)


async def test_a_misdirected_write_names_its_holder_in_location(net: Net) -> None:
    path = "/api/handles/88.100.1/MOVED"
    headers = signed_headers(net, path, NETWORK)
    reply = await asyncio.to_thread(put, net.urls["super"] + path, headers, follow=False)
    assert (reply.status_code, reply.json()["responseCode"]) == (400, 301)
    assert reply.headers["Location"] == net.urls["sub"] + path
    assert f"it is held at {net.urls['sub']}" in reply.json()["message"]
    assert await net.stores["sub"].get("88.100.1/MOVED") is None
    # unsigned too: where an identifier lives is no secret (referrals say it to readers)
    reply = await asyncio.to_thread(
        put, net.urls["backbone"] + path, {"Content-Type": "application/json"}, follow=False
    )
    assert (reply.status_code, reply.headers["Location"]) == (400, net.urls["sub"] + path)
    # a node that holds the identifier's prefix but handed it down names the child
    assert reply.json()["message"].startswith("88.100.1/MOVED is under handle:88.100, which is")


async def test_a_write_signed_for_the_network_name_is_redirected_to_its_holder(
    net: Net, tmp_path: Path
) -> None:
    path = "/api/handles/88.100.1/BY-REQUESTS"
    headers = signed_headers(net, path, NETWORK, Prefer="redirect")
    reply = await asyncio.to_thread(put, net.urls["super"] + path, headers, follow=True)
    assert [r.status_code for r in reply.history] == [307]
    assert reply.history[0].headers["Preference-Applied"] == "redirect"
    assert (reply.status_code, reply.json()["responseCode"]) == (201, 1), reply.text
    assert reply.url == net.urls["sub"] + path
    assert await net.stores["sub"].get("88.100.1/BY-REQUESTS") is not None

    # curl sends the Host it was given only to the first host, unless --location-trusted
    path = "/api/handles/88.100.1/BY-CURL"
    headers = signed_headers(net, path, NETWORK, Prefer="redirect")
    status, body = await asyncio.to_thread(
        curl, net.urls["super"] + path, headers, tmp_path, "-L", "--location-trusted"
    )
    assert (status, body["responseCode"]) == (201, 1), body
    record = await net.stores["sub"].get("88.100.1/BY-CURL")
    assert record is not None
    assert record.values[0].value == "https://example.com/moved"


async def test_a_write_signed_for_the_entry_node_is_refused_at_the_holder_saying_why(
    net: Net, tmp_path: Path
) -> None:
    path = "/api/handles/88.100.1/WRONG-NAME"
    entry = httpsig.authority_of(net.urls["super"])
    headers = signed_headers(net, path, entry, Prefer="redirect")
    # curl -L sends the Host it was given to the same host name on another port: the
    # holder sees the entry node's name
    status, body = await asyncio.to_thread(curl, net.urls["super"] + path, headers, tmp_path, "-L")
    assert (status, body["responseCode"]) == (403, 400)
    assert body["message"].startswith(f"signature was made for {entry!r}, not for this node")
    assert f"for the network's name {NETWORK!r}" in body["message"]
    # requests, left to write Host itself, writes the holder's: the signature cannot
    # hold over it
    del headers["Host"]
    reply = await asyncio.to_thread(put, net.urls["super"] + path, headers, follow=True)
    assert [r.status_code for r in reply.history] == [307]
    assert (reply.status_code, reply.json()["responseCode"]) == (403, 400)
    holder = httpsig.authority_of(net.urls["sub"])
    message = reply.json()["message"]
    assert message.startswith("signature does not verify: it covers")
    assert f"@authority {holder}" in message  # what the holder computed
    assert message.endswith(
        f"; a write redirected here verifies only when signed for the network's name {NETWORK!r}"
    )
    assert await net.stores["sub"].get("88.100.1/WRONG-NAME") is None
