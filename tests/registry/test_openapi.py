"""/openapi.json describes the server that serves it: routes exist, answers fit the schemas."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator

from tests.registry.conftest import Node, delegate

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]


def validator(spec: dict[str, Any], name: str) -> Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    return Draft202012Validator(schema)


async def test_every_documented_operation_is_served(node: Node) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(node.url + "/openapi.json") as resp:
            spec = await resp.json()
        assert spec["openapi"].startswith("3.1")
        for path, item in spec["paths"].items():
            concrete = path.replace("{identifier}", "88.100.1/DOC")
            for method in item:
                if method == "parameters":
                    continue
                async with s.request(method.upper(), node.url + concrete) as resp:
                    # an unsigned or empty request may be refused, but never as unknown
                    assert resp.status not in (404, 405) or "identifier" in path, (method, path)
                    assert resp.content_type == "application/json"
                    documented = item[method]["responses"]
                    assert str(resp.status) in documented, (method, path, resp.status)


async def test_answers_validate_against_the_documented_schemas(node: Node) -> None:
    key, key_id = await delegate(node, "88.100.1")
    async with aiohttp.ClientSession() as s, s.get(node.url + "/openapi.json") as resp:
        spec = await resp.json()
    async with node.client(key, key_id) as c:
        checks = [
            (
                "Written",
                await c.put("88.100.1/DOC", [{"index": 1, "type": "URL", "data": "https://e.x/"}]),
            ),
            ("Record", await c.get("88.100.1/DOC")),
            ("History", await c.history("88.100.1/DOC")),
            ("HandleList", await c.list("88.100.1")),
            (
                "BatchResponse",
                await c.batch(
                    [
                        {
                            "handle": "88.100.1/B",
                            "values": [{"index": 1, "type": "URL", "data": "https://e.x/"}],
                        },
                        {"handle": "bad x"},
                        {"handle": "88.100.1/C", "values": [{"index": 0}], "extra": 1},
                    ]
                ),
            ),
            ("Error", await c.get("88.100.1/NOPE")),
            ("Error", await c.put("88.100.1/DOC", [{"index": 0, "type": "URL", "data": "x"}])),
        ]
    for name, reply in checks:
        errors = list(validator(spec, name).iter_errors(reply.body))
        assert not errors, (name, reply.body, [e.message for e in errors])
    # a malformed operation is answered in its own result, so the request schema admits it
    batch = dict(checks)["BatchResponse"].body["results"]
    assert [(r["status"], r["responseCode"]) for r in batch] == [(201, 1), (400, 102), (400, 202)]
    assert {e["field"] for e in batch[2]["errors"]} >= {"operations[2].extra"}
    request_schema = validator(spec, "BatchRequest")
    assert not list(request_schema.iter_errors({"operations": [{"handle": "88.100.1/X"}]}))
    assert not list(request_schema.iter_errors({"operations": [{"handle": 1}, "x"]}))
    assert list(request_schema.iter_errors({"operations": [], "extra": 1}))
