"""The registry over HTTP, as an enterprise registrant uses it, on real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import aiohttp
import pytest
from yarl import URL

from registry import httpsig
from registry.client import handle_path
from schemas.codec_json import values_from_json
from schemas.commitment import opens
from schemas.oplog import decode_operation
from tests.registry.conftest import ROOT_KEY_ID, Node, add_limited_key, delegate

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]

URL_VALUE = {
    "index": 1,
    "type": "URL",
    "data": {"format": "string", "value": "https://example.com/p/ABC"},
}


def url(n: int = 1, target: str = "https://example.com/p/ABC") -> dict[str, Any]:
    return {"index": n, "type": "URL", "data": {"format": "string", "value": target}}


async def rows(node: Node) -> tuple[int, int, int, int]:
    counts = []
    for table in ("identifiers", "handle_values", "history", "outbox"):
        counts.append(await node.pool.fetchval(f"SELECT count(*) FROM {table}"))
    return counts[0], counts[1], counts[2], counts[3]


async def test_registrant_flow_create_read_replace_history_delete(node: Node) -> None:
    key, key_id = await delegate(node, "88.100.1")
    async with node.client(key, key_id) as c:
        created = await c.put("88.100.1/ABC-123", [url()])
        assert (created.status, created.body) == (
            201,
            {"responseCode": 1, "handle": "88.100.1/ABC-123", "version": 1},
        )

        read = await c.get("88.100.1/ABC-123")
        assert read.status == 200
        # no HS_ADMIN of its own: the prefix record 0.NA/88.100.1 governs it
        assert read.body["values"] == [
            {**URL_VALUE, "ttl": 86400, "timestamp": read.body["values"][0]["timestamp"]}
        ]

        replaced = await c.put("88.100.1/ABC-123", [url(1, "https://example.com/v2")])
        assert (replaced.status, replaced.body["version"]) == (200, 2)

        deleted = await c.delete("88.100.1/ABC-123")
        assert (deleted.status, deleted.body["version"]) == (200, 3)
        gone = await c.get("88.100.1/ABC-123")
        assert (gone.status, gone.body["responseCode"]) == (404, 100)

        history = await c.history("88.100.1/ABC-123")
    assert history.status == 200
    entries = history.body["history"]
    assert [(e["version"], e["op"], e["actor"]) for e in entries] == [
        (1, "create", key_id),
        (2, "replace", key_id),
        (3, "delete", key_id),
    ]
    assert entries[1]["changes"] == [{"index": 1, "type": "URL", "change": "modified"}]
    assert entries[2]["values"] == []


async def test_an_unsigned_write_needs_authentication(node: Node) -> None:
    async with node.client() as c:
        reply = await c.put("88.100.9/X", [url()])
    assert (reply.status, reply.body["responseCode"]) == (401, 402)
    assert "sign" in reply.body["message"]
    assert await rows(node) == (3, 4, 3, 3)  # only the node admin and the prefix records


async def test_only_the_delegated_key_writes_under_its_prefix(node: Node) -> None:
    owner, owner_id = await delegate(node, "88.100.1")
    other, other_id = await delegate(node, "88.100.2")
    async with node.client(owner, owner_id) as c:
        assert (await c.put("88.100.1/A", [url()])).status == 201
    async with node.client(other, other_id) as c:
        create = await c.put("88.100.1/B", [url()])
        change = await c.put("88.100.1/A", [url(1, "https://evil.example/")])
        remove = await c.delete("88.100.1/A")
    for reply in (create, change, remove):
        assert (reply.status, reply.body["responseCode"]) == (403, 400), reply.body
        assert other_id in reply.body["message"]
    async with node.client() as c:
        assert (await c.get("88.100.1/A")).body["values"][0]["data"][
            "value"
        ] == "https://example.com/p/ABC"


async def test_a_key_the_owner_delegates_to_may_write(node: Node) -> None:
    owner = await delegate(node, "88.100.1")
    async with node.client(*owner) as c:
        assert (await c.put("88.100.1/OWNED", [url()])).status == 201
    # a second key on the prefix record: add and change values only
    helper, helper_id = await add_limited_key(node, owner, "88.100.1", "000001110001")
    async with node.client(helper, helper_id) as c:
        assert (await c.put("88.100.1/BY-HELPER", [url()])).status == 201
        changed = await c.request(
            "PUT",
            handle_path("88.100.1/OWNED"),
            query={"index": 1},
            body={"values": [url(1, "https://helper.example/")]},
        )
        refused = await c.delete("88.100.1/OWNED")
    assert changed.status == 200
    assert refused.status == 403
    assert "delete_handle" in refused.body["message"]


async def test_delegation_needs_the_parents_derived_prefix_right(node: Node) -> None:
    owner, owner_id = await delegate(node, "88.100.1")
    async with node.client(owner, owner_id) as c:
        sub = await c.delegate("88.100.1.7", httpsig.public_key_der(httpsig.generate_key()))
        sibling = await c.delegate("88.100.2", httpsig.public_key_der(httpsig.generate_key()))
        itself = await c.delegate("88.100.1", httpsig.public_key_der(httpsig.generate_key()))
    assert sub.status == 201  # the owner holds every right on its prefix record
    assert (sibling.status, sibling.body["responseCode"]) == (403, 400)
    assert (itself.status, itself.body["responseCode"]) == (409, 101)


async def test_writes_outside_the_nodes_prefixes_are_not_its_responsibility(node: Node) -> None:
    async with node.admin_client() as c:
        reply = await c.put("99.1/X", [url()])
    assert (reply.status, reply.body["responseCode"]) == (400, 301)
    assert "88.100" in reply.body["message"]


async def test_overwrite_false_on_an_existing_identifier_is_409(node: Node) -> None:
    async with node.admin_client() as c:
        assert (await c.put("88.100.5/X", [url()])).status == 201
        again = await c.put("88.100.5/X", [url()], overwrite=False)
    assert (again.status, again.body["responseCode"]) == (409, 101)


async def test_gs1_keys_register_under_a_company_prefix(node: Node) -> None:
    key, key_id = await delegate(node, "gs1:6901234")
    async with node.client(key, key_id) as c:
        created = await c.put("6901234567892", [url()])  # a GTIN-13, stored as GTIN-14
        read = await c.get("https://id.example.com/01/06901234567892")
    assert created.body["handle"] == "06901234567892"
    assert read.status == 200


# --- replay and idempotency -------------------------------------------------------------


def signed(
    node: Node,
    key: httpsig.PrivateKey,
    key_id: str,
    method: str,
    handle: str,
    body: bytes,
    *,
    created: int | None = None,
    idempotency_key: str | None = None,
) -> tuple[URL, dict[str, str]]:
    path = handle_path(handle)
    headers = {"Content-Type": "application/json"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    headers.update(
        httpsig.sign_request(
            method=method,
            path=path,
            query="",
            headers=headers,
            body=body,
            key=key,
            keyid=key_id,
            created=created or int(time.time()),
            authority=httpsig.authority_of(node.url),
        )
    )
    return URL(node.url + path, encoded=True), headers


async def test_a_replayed_signature_is_refused_and_changes_nothing(node: Node) -> None:
    body = b'{"values": [{"index": 1, "type": "URL", "data": "https://e.x/"}]}'
    target, headers = signed(node, node.admin, ROOT_KEY_ID, "PUT", "88.100.1/R", body)
    async with aiohttp.ClientSession() as s:
        async with s.put(target, data=body, headers=headers) as first:
            assert first.status == 201
        async with s.put(target, data=body, headers=headers) as second:
            assert second.status == 403
            assert "replayed" in (await second.json())["message"]
    assert len(await node.store.history("88.100.1/R")) == 1


async def test_a_retry_with_the_same_idempotency_key_gets_the_original_answer(node: Node) -> None:
    body = b'{"values": [{"index": 1, "type": "URL", "data": "https://e.x/"}]}'
    async with aiohttp.ClientSession() as s:
        answers = []
        for _ in range(3):  # three sends, each signed anew, as a client retrying a timeout
            target, headers = signed(
                node, node.admin, ROOT_KEY_ID, "PUT", "88.100.1/I", body, idempotency_key="k-1"
            )
            async with s.put(target, data=body, headers=headers) as resp:
                answers.append(
                    (resp.status, await resp.json(), resp.headers.get("Idempotent-Replayed"))
                )
        target, headers = signed(
            node,
            node.admin,
            ROOT_KEY_ID,
            "PUT",
            "88.100.1/I",
            body.replace(b"e.x", b"other.x"),
            idempotency_key="k-1",
        )
        async with s.put(target, data=body.replace(b"e.x", b"other.x"), headers=headers) as r:
            reused = (r.status, await r.json())
    assert answers[0] == (201, {"responseCode": 1, "handle": "88.100.1/I", "version": 1}, None)
    assert answers[1] == answers[2] == (201, answers[0][1], "true")
    assert reused[0] == 422
    assert "different request" in reused[1]["message"]
    assert len(await node.store.history("88.100.1/I")) == 1


async def test_concurrent_retries_with_one_idempotency_key_apply_once(node: Node) -> None:
    body = b'{"values": [{"index": 1, "type": "URL", "data": "https://e.x/"}]}'
    async with aiohttp.ClientSession() as s:

        async def send() -> int:
            target, headers = signed(
                node, node.admin, ROOT_KEY_ID, "PUT", "88.100.1/C", body, idempotency_key="same"
            )
            async with s.put(target, data=body, headers=headers) as resp:
                return resp.status

        statuses = await asyncio.gather(*[send() for _ in range(8)])
    assert statuses == [201] * 8
    assert len(await node.store.history("88.100.1/C")) == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("body", "content-digest"),
        ("stale", "created"),
        ("future", "future"),
        ("key", "does not verify"),
        ("unknown-key", "names no hs_pubkey"),
        ("method", "does not verify"),
    ],
)
async def test_bad_signatures_are_refused_with_a_reason(
    node: Node, change: str, reason: str
) -> None:
    body = b'{"values": [{"index": 1, "type": "URL", "data": "https://e.x/"}]}'
    key, key_id, created = node.admin, ROOT_KEY_ID, int(time.time())
    if change == "key":
        key = httpsig.generate_key()
    if change == "unknown-key":
        key_id = "300:0.NA/88.100.77"
    if change == "stale":
        created -= 3600
    if change == "future":
        created += 3600
    target, headers = signed(node, key, key_id, "PUT", "88.100.1/S", body, created=created)
    sent = body.replace(b"e.x", b"evil.x") if change == "body" else body
    method = "POST" if change == "method" else "PUT"
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, target, data=sent, headers=headers) as resp,
    ):
        status, answer = resp.status, await resp.json()
    if change == "method":
        assert status == 405  # no POST route for a handle; nothing is written either way
    else:
        assert (status, answer["responseCode"]) == (403, 400), answer
        assert reason in answer["message"].lower()
    assert await node.store.get("88.100.1/S") is None


async def test_a_signature_over_another_path_says_what_it_covers_and_what_the_node_computed(
    node: Node,
) -> None:
    """Issue 16: "signature does not verify" alone left the signer guessing. The answer
    names the covered components and this node's @method, @authority, @path and @query,
    and no header's value (a covered header may carry a credential)."""
    body = b'{"values": [{"index": 1, "type": "URL", "data": "https://e.x/"}]}'
    _, headers = signed(
        node, node.admin, ROOT_KEY_ID, "PUT", "88.100.1/SIGNED", body, idempotency_key="k-secret"
    )
    sent_to = URL(node.url + handle_path("88.100.1/SENT"), encoded=True)
    async with (
        aiohttp.ClientSession() as s,
        s.put(sent_to, data=body, headers=headers) as resp,
    ):
        status, answer = resp.status, await resp.json()
    assert (status, answer["responseCode"]) == (403, 400), answer
    message = answer["message"]
    assert message.startswith(
        "signature does not verify: it covers @method @authority @path @query content-digest "
        f"idempotency-key; this node computed @method PUT, @authority {sent_to.authority}, "
        "@path /api/handles/88.100.1/SENT, @query ?."
    ), message
    assert ROOT_KEY_ID in message
    for value in ("k-secret", headers["Content-Digest"], headers["Signature"].split("=", 1)[1]):
        assert value not in message
    assert await node.store.get("88.100.1/SENT") is None


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handle", "body", "ctype", "status", "code", "says"),
    [
        ("88.100.1/a b", b'{"values": []}', "application/json", 400, 102, "whitespace"),
        ("88.100.1/X", b'{"values": [', "application/json", 400, 202, "line 1 column 13"),
        ("88.100.1/X", b"\xff\xfe", "application/json", 400, 202, "not valid UTF-8"),
        ("88.100.1/X", b'{"values": []}', "text/plain", 415, 202, "application/json"),
        (
            "88.100.1/X",
            b'{"values": [], "colour": 1}',
            "application/json",
            400,
            202,
            "colour: unknown field",
        ),
        (
            "88.100.1/X",
            b'{"values": [{"index": 1, "type": "URL", "data": "x:y"},'
            b' {"index": 1, "type": "URL", "data": "x:z"}]}',
            "application/json",
            400,
            202,
            "already used",
        ),
        (
            "88.100.1/X",
            b'{"values": [{"index": 1, "type": "URL", "data": "nope"}]}',
            "application/json",
            400,
            202,
            "absolute URI",
        ),
        (
            "88.100.1/X",
            b'{"values": [{"index": 1, "type": "URL", "data": "x:' + b"a" * 300_000 + b'"}]}',
            "application/json",
            413,
            202,
            "at most",
        ),
    ],
)
async def test_bad_writes_get_a_clear_error_and_leave_nothing(
    node: Node, handle: str, body: bytes, ctype: str, status: int, code: int, says: str
) -> None:
    before = await rows(node)
    path = handle_path(handle)
    headers = {"Content-Type": ctype}
    headers.update(
        httpsig.sign_request(
            method="PUT",
            path=path,
            query="",
            headers=headers,
            body=body,
            key=node.admin,
            keyid=ROOT_KEY_ID,
            created=int(time.time()),
            authority=httpsig.authority_of(node.url),
        )
    )
    async with (
        aiohttp.ClientSession() as s,
        s.put(URL(node.url + path, encoded=True), data=body, headers=headers) as resp,
    ):
        answer = await resp.json()
        assert (resp.status, answer["responseCode"]) == (status, code), answer
    assert says in answer["message"]
    assert await rows(node) == before


async def test_field_errors_come_back_together_with_their_paths(node: Node) -> None:
    async with node.admin_client() as c:
        reply = await c.put(
            "88.100.1/X",
            [
                {"index": 0, "type": "URL", "data": "nope"},
                {"index": 2, "type": "EMAIL", "data": "x", "ttl": "long"},
            ],
        )
    assert reply.status == 400
    fields = {e["field"] for e in reply.body["errors"]}
    assert {"values[0].index", "values[0].data.value", "values[1].ttl"} <= fields


async def test_unknown_routes_and_methods_answer_json(node: Node) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(node.url + "/nothing/here") as resp:
            assert (resp.status, (await resp.json())["responseCode"]) == (404, 100)
        async with s.patch(node.url + "/api/handles/88.100.1/X") as resp:
            assert resp.status == 405
            assert "responseCode" in await resp.json()


async def test_bad_query_parameters_are_400(node: Node) -> None:
    async with node.admin_client() as c:
        bad_bool = await c.request(
            "PUT", handle_path("88.100.1/Q"), query={"overwrite": "maybe"}, body={"values": [url()]}
        )
        bad_index = await c.get("88.100.1/Q", index="two")
    assert (bad_bool.status, bad_index.status) == (400, 400)
    assert "overwrite" in bad_bool.body["message"]


# --- single values, private values, slashes ---------------------------------------------


async def test_index_parameter_changes_and_removes_single_values(node: Node) -> None:
    async with node.admin_client() as c:
        await c.put("88.100.1/V", [url(1), url(2, "https://b.example/")])
        changed = await c.request(
            "PUT",
            handle_path("88.100.1/V"),
            query={"index": 2},
            body={"values": [url(2, "https://c.example/")]},
        )
        stray = await c.request(
            "PUT", handle_path("88.100.1/V"), query={"index": 2}, body={"values": [url(3)]}
        )
        removed = await c.request("DELETE", handle_path("88.100.1/V"), query={"index": 1})
        missing = await c.request("DELETE", handle_path("88.100.1/V"), query={"index": 9})
        read = await c.get("88.100.1/V")
    assert (changed.status, stray.status, removed.status) == (200, 400, 200)
    assert (missing.status, missing.body["responseCode"]) == (404, 200)
    urls = [v["data"]["value"] for v in read.body["values"] if v["type"] == "URL"]
    assert urls == ["https://c.example/"]


async def test_non_public_values_need_an_admin_signature_to_read(node: Node) -> None:
    key, key_id = await delegate(node, "88.100.1")
    secret = {"index": 2, "type": "NOTE", "data": "internal", "permissions": "1100"}
    async with node.client(key, key_id) as c:
        await c.put("88.100.1/P", [url(), secret])
        await c.put("88.100.1/HIDDEN", [secret])
        as_admin = await c.get("88.100.1/P")
        public_only = await c.get("88.100.1/P", publicOnly="true")
    async with node.client() as anon:
        as_public = await anon.get("88.100.1/P")
        hidden = await anon.get("88.100.1/HIDDEN", type="NOTE")
    async with node.client(*await delegate(node, "88.100.3")) as stranger:
        refused = await stranger.get("88.100.1/HIDDEN", type="NOTE")
    types = lambda r: sorted(v["type"] for v in r.body["values"])  # noqa: E731
    assert types(as_admin) == ["NOTE", "URL"]
    assert types(as_public) == types(public_only) == ["URL"]
    assert (hidden.status, hidden.body["responseCode"]) == (401, 402)
    assert refused.status == 403


async def test_a_private_value_read_with_its_salt_opens_its_commitment_in_the_chain(
    node: Node,
) -> None:
    key, key_id = await delegate(node, "88.100.1")
    secret = {"index": 2, "type": "NOTE", "data": "internal", "permissions": "1100"}
    async with node.client(key, key_id) as c:
        await c.put("88.100.1/S", [url(), secret])
        shown = await c.get("88.100.1/S")
    async with node.client() as anon:
        public = await anon.get("88.100.1/S")
    (note,) = [v for v in shown.body["values"] if v["index"] == 2]
    assert "salt" not in public.body["values"][0]  # a public value has none
    payload = await node.pool.fetchval(
        "SELECT payload FROM outbox WHERE handle = '88.100.1/S' ORDER BY seq DESC LIMIT 1"
    )
    published = decode_operation(payload).record
    assert published is not None
    (committed,) = [v for v in published.values if v.index == 2]
    salt = base64.b64decode(note.pop("salt"))
    (value,) = values_from_json({"values": [note]}, now=0)
    assert opens("88.100.1/S", committed, value, salt)
    (forged,) = values_from_json({"values": [{**note, "data": "something else"}]}, now=0)
    assert not opens("88.100.1/S", committed, forged, salt)


async def test_filters_by_type_and_index(node: Node) -> None:
    async with node.admin_client() as c:
        await c.put("88.100.1/F", [url(1), {"index": 2, "type": "EMAIL", "data": "a@b.c"}])
        by_type = await c.get("88.100.1/F", type="EMAIL")
        by_index = await c.get("88.100.1/F", index=1)
        nothing = await c.get("88.100.1/F", type="NONE")
    assert [v["index"] for v in by_type.body["values"]] == [2]
    assert [v["index"] for v in by_index.body["values"]] == [1]
    assert (nothing.status, nothing.body["responseCode"]) == (200, 200)


async def test_identifiers_with_slashes_and_history_suffixes(node: Node) -> None:
    async with node.admin_client() as c:
        await c.put("88.100.1/a/b/c", [url()])
        await c.put("88.100.1/x/history", [url()])
        nested = await c.get("88.100.1/a/b/c")
        hist = await c.request("GET", "/api/handles/88.100.1/x%2Fhistory/history")
        literal = await c.request("GET", "/api/handles/88.100.1/x%2Fhistory")
    assert nested.body["handle"] == "88.100.1/a/b/c"
    assert hist.body["handle"] == "88.100.1/x/history"
    assert literal.body["handle"] == "88.100.1/x/history"


@pytest.mark.parametrize("signed_by_admin", [False, True])
@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_a_history_is_read_only_405_whether_signed_or_not(
    node: Node, method: str, signed_by_admin: bool
) -> None:
    """Issue 16: ``PUT .../history`` answered 401 (or wrote an identifier ending in
    /history) where the OpenAPI description, which has only GET there, means 405."""
    body = b'{"values": [{"index": 1, "type": "URL", "data": "https://e.x/"}]}'
    path = "/api/handles/88.100.1/H/history"
    target, headers = URL(node.url + path, encoded=True), {"Content-Type": "application/json"}
    if signed_by_admin:  # a signature good for exactly this request
        headers.update(
            httpsig.sign_request(
                method=method,
                path=path,
                query="",
                headers=headers,
                body=body,
                key=node.admin,
                keyid=ROOT_KEY_ID,
                created=int(time.time()),
                authority=httpsig.authority_of(node.url),
            )
        )
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, target, data=body, headers=headers) as resp,
    ):
        status, allow, answer = resp.status, resp.headers.get("Allow"), await resp.json()
    assert (status, answer["responseCode"], allow) == (405, 2, "GET,HEAD"), answer
    assert await node.store.get("88.100.1/H/history") is None
    assert await node.store.get("88.100.1/H") is None


# --- batches and listing ---------------------------------------------------------------


async def test_batch_gives_each_operation_its_own_result(node: Node) -> None:
    key, key_id = await delegate(node, "88.100.1")
    ops = [
        {"handle": "88.100.1/B1", "values": [url()]},
        {"handle": "88.100.1/b 2", "values": [url()]},
        {"handle": "88.100.2/NOT-MINE", "values": [url()]},
        {"handle": "88.100.1/B1", "values": [url()]},
        {"handle": "88.100.1/B4", "values": [{"index": 1, "type": "URL", "data": "no"}]},
        {"op": "delete", "handle": "88.100.1/NEVER"},
        {"handle": "88.100.1/B6", "values": [url()], "overwrite": False},
    ]
    async with node.client(key, key_id) as c:
        reply = await c.batch(ops)
        assert reply.status == 200
        results = reply.body["results"]
        assert [(r["index"], r["responseCode"], r["status"]) for r in results] == [
            (0, 1, 201),
            (1, 102, 400),
            (2, 400, 403),
            (3, 202, 400),
            (4, 202, 400),
            (5, 100, 404),
            (6, 1, 201),
        ]
        assert results[4]["errors"][0]["field"] == "operations[4].values[0].data.value"
        assert (await c.get("88.100.1/B1")).status == 200
        assert (await c.get("88.100.1/B6")).status == 200


async def test_a_large_batch_registers_every_identifier(node: Node) -> None:
    ops = [
        {"handle": f"88.100.1/P{n:05d}", "values": [url(1, f"https://e.x/{n}")]}
        for n in range(2000)
    ]
    async with node.admin_client() as c:
        reply = await c.batch(ops)
        assert reply.status == 200
        assert {r["status"] for r in reply.body["results"]} == {201}
        sample = await c.get("88.100.1/P01234")
    assert sample.body["values"][0]["data"]["value"] == "https://e.x/1234"
    identifiers, _, history, outbox = await rows(node)
    assert (identifiers, history, outbox) == (2003, 2003, 2003)


async def test_listing_a_prefix_needs_list_rights_and_pages(node: Node) -> None:
    key, key_id = await delegate(node, "88.100.1")
    async with node.client(key, key_id) as c:
        await c.batch([{"handle": f"88.100.1/L{n}", "values": [url()]} for n in range(5)])
        page0 = await c.list("88.100.1", page=0, page_size=2)
        page2 = await c.list("88.100.1", page=2, page_size=2)
    async with node.client() as anon:
        refused = await anon.list("88.100.1")
    assert page0.body["totalCount"] == 5
    assert page0.body["handles"] == ["88.100.1/L0", "88.100.1/L1"]
    assert page2.body["handles"] == ["88.100.1/L4"]
    assert (refused.status, refused.body["responseCode"]) == (401, 402)


async def test_every_write_reaches_the_outbox_in_the_same_transaction(node: Node) -> None:
    async with node.admin_client() as c:
        await c.put("88.100.1/O", [url()])
        await c.delete("88.100.1/O")
    ops = await node.pool.fetch("SELECT handle, version, op FROM outbox ORDER BY seq")
    assert [tuple(r) for r in ops][-2:] == [
        ("88.100.1/O", 1, "create"),
        ("88.100.1/O", 2, "delete"),
    ]


# --- regressions from review -------------------------------------------------------------


async def test_writes_that_change_nothing_still_need_a_signer_and_modify_rights(node: Node) -> None:
    secret = {"index": 2, "type": "EMAIL", "data": "secret@corp.cn", "permissions": "1100"}
    async with node.admin_client() as c:
        await c.put("88.100.1/SAME", [url(), secret])
    async with node.client() as anon:
        same = await anon.put("88.100.1/SAME", [url(), secret])
        guess = await anon.request(
            "PUT", handle_path("88.100.1/SAME"), query={"index": 2}, body={"values": [secret]}
        )
    async with node.client(*await delegate(node, "88.100.2")) as stranger:
        other = await stranger.put("88.100.1/SAME", [url(), secret])
    assert (same.status, guess.status) == (401, 401)  # no oracle for a right guess
    assert other.status == 403
    assert len(await node.store.history("88.100.1/SAME")) == 1


async def test_timestamps_past_year_9999_are_refused_and_records_stay_readable(node: Node) -> None:
    async with node.admin_client() as c:
        far = await c.put("88.100.1/T", [{**url(), "timestamp": "9999-12-31T23:59:59-23:59"}])
        assert (far.status, far.body["errors"][0]["field"]) == (400, "values[0].timestamp")
        await c.put("88.100.1/T", [url()])
        assert (await c.get("88.100.1/T")).status == 200


async def test_an_ecdsa_signature_in_its_other_form_is_still_a_replay(node: Node) -> None:
    p256 = httpsig.generate_key("p256")
    async with node.admin_client() as admin:
        assert (await admin.delegate("88.100.9", httpsig.public_key_der(p256))).status == 201
    body = b'{"values": [{"index": 1, "type": "URL", "data": "https://e.x/"}]}'
    target, headers = signed(node, p256, "300:0.NA/88.100.9", "PUT", "88.100.9/V", body)
    label, _, value = headers["Signature"].partition("=")
    raw = base64.b64decode(value.strip(":"))
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 order
    s_other = (n - int.from_bytes(raw[32:], "big")).to_bytes(32, "big")
    other = {**headers, "Signature": f"{label}=:{base64.b64encode(raw[:32] + s_other).decode()}:"}
    async with aiohttp.ClientSession() as s:
        async with s.put(target, data=body, headers=headers) as first:
            assert first.status == 201
        async with s.put(target, data=body, headers=other) as second:
            assert second.status == 403
            assert "replayed" in (await second.json())["message"]


async def test_replacing_a_key_needs_admin_rights_not_value_rights(node: Node) -> None:
    owner = await delegate(node, "88.100.5")
    operator, operator_id = await add_limited_key(node, owner, "88.100.5", "000001110000")
    op_der = base64.b64encode(httpsig.public_key_der(operator)).decode()
    async with node.client(operator, operator_id) as c:
        takeover = await c.request(
            "PUT",
            handle_path("0.NA/88.100.5"),
            query={"index": 300},
            body={
                "values": [
                    {"index": 300, "type": "HS_PUBKEY", "data": {"format": "key", "value": op_der}}
                ]
            },
        )
    assert takeover.status == 403
    assert "modify_admin" in takeover.body["message"]


async def test_listing_an_oid_prefix_leaves_out_its_siblings(node: Node) -> None:
    served = (
        *node.config.served,
        __import__("schemas.identifiers.prefix", fromlist=["x"]).parse_prefix("oid:1.2.156"),
    )
    object.__setattr__(node.config, "served", served)
    from registry.service import bootstrap

    await bootstrap(node.store, served, httpsig.public_key_der(node.admin), now=0)
    one, one_id = await delegate(node, "oid:1.2.156.1")
    ten, ten_id = await delegate(node, "oid:1.2.156.10")
    async with node.client(one, one_id) as c:
        await c.put("1.2.156.1.7", [url()])
    async with node.client(ten, ten_id) as c:
        await c.put("1.2.156.10.7", [url()])
    async with node.client(one, one_id) as c:
        listed = await c.list("oid:1.2.156.1")
    assert listed.body["handles"] == ["1.2.156.1.7"]


async def test_unknown_query_parameters_on_writes_are_refused(node: Node) -> None:
    async with node.admin_client() as c:
        await c.put("88.100.1/Q2", [url(1), url(2, "https://b.example/")])
        typo = await c.request("DELETE", handle_path("88.100.1/Q2"), query={"indx": 2})
        kept = await c.get("88.100.1/Q2")
    assert (typo.status, typo.body["responseCode"]) == (400, 202)
    assert "indx" in typo.body["message"]
    assert len(kept.body["values"]) == 2


async def test_a_far_future_expires_parameter_is_not_a_server_error(node: Node) -> None:
    body = b'{"values": [{"index": 1, "type": "URL", "data": "https://e.x/"}]}'
    path = handle_path("88.100.1/EXP")
    headers = {"Content-Type": "application/json"}
    headers.update(
        httpsig.sign_request(
            method="PUT",
            path=path,
            query="",
            headers=headers,
            body=body,
            key=node.admin,
            keyid=ROOT_KEY_ID,
            created=int(time.time()),
            authority=httpsig.authority_of(node.url),
        )
    )
    headers["Signature-Input"] += ";expires=999999999999999"  # not signed: refused, not 500
    async with (
        aiohttp.ClientSession() as s,
        s.put(URL(node.url + path, encoded=True), data=body, headers=headers) as resp,
    ):
        assert resp.status == 403


# --- regressions from fuzzing ------------------------------------------------------------


async def test_a_keyid_with_a_huge_index_is_refused_not_a_server_error(node: Node) -> None:
    body = b""
    headers = {
        "Content-Digest": httpsig.content_digest(body),
        "Signature-Input": f'sig1=("@method" "@path" "@query" "content-digest")'
        f';created={int(time.time())};keyid="{"9" * 4400}:0.NA/x"',
        "Signature": "sig1=:AAAA:",
    }
    async with (
        aiohttp.ClientSession() as s,
        s.get(node.url + "/api/handles/88.100/T1", headers=headers) as resp,
    ):
        assert resp.status == 403


async def test_a_body_with_a_broken_content_encoding_is_400(node: Node) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.put(
            node.url + "/api/handles/88.100.1/Z1",
            data=b"abcd",
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        ) as resp,
    ):
        assert resp.status == 400
        assert "could not read the body" in (await resp.json())["message"]


async def test_a_huge_list_of_bad_values_is_refused_cheaply_and_briefly(node: Node) -> None:
    body = b'{"values":[' + b",".join([b"{}"] * 50_000) + b"]}"
    target, headers = signed(node, node.admin, ROOT_KEY_ID, "PUT", "88.100.1/AMP", body)
    async with (
        aiohttp.ClientSession() as s,
        s.put(target, data=body, headers=headers) as resp,
    ):
        answer = await resp.read()
    assert resp.status == 400
    assert len(answer) < 10_000
    assert b"at most 1000" in answer


async def test_glns_can_be_registered_and_read(node: Node) -> None:
    key, key_id = await delegate(node, "gs1:6901")
    async with node.client(key, key_id) as c:
        created = await c.put("gln:6901234000009", [url()])
        read = await c.get("https://id.gs1.org/414/6901234000009")
    assert (created.status, created.body["handle"]) == (201, "gln:6901234000009")
    assert read.status == 200


async def test_a_405_says_what_is_allowed_and_a_newline_is_an_invalid_identifier(
    node: Node,
) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(node.url + "/api/handles/88.100.1/X") as resp:
            assert resp.status == 405
            assert "PUT" in resp.headers["Allow"]
        async with s.get(URL(node.url + "/api/handles/88.100.1/a%0Ab", encoded=True)) as resp:
            body = await resp.json()
            assert (resp.status, body["responseCode"]) == (400, 102)
