"""The OpenAPI 3.1 description of the registry API, served at /openapi.json.

Kept by hand beside the handlers; tests check it against the running server.
"""

from __future__ import annotations

from typing import Any

from schemas.identifiers import pattern
from schemas.record import KNOWN_HS_TYPES, MAX_TYPE_BYTES, MAX_VALUES


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": {
        "description": "Malformed identifier (102), invalid value (202), bad query or "
        "JSON, or a prefix this node does not hold (301; Location names the node that "
        "holds it); a request head over 16 KiB is refused before any of that, in "
        "text/plain under --front python",
        "content": {
            "application/json": {"schema": _ref("Error")},
            "text/plain": {"schema": {"type": "string"}},
        },
    },
    "401": _json(_ref("Error"), "Authentication needed (402): sign the request (RFC 9421)"),
    "403": _json(
        _ref("Error"), "The signature fails, is replayed, or the key lacks the permission (400)"
    ),
    "413": _json(_ref("Error"), "Body larger than the node allows"),
    "415": _json(_ref("Error"), "Body is not application/json"),
}
_REUSED_KEY = _json(_ref("Error"), "Idempotency-Key reused for another request")
# a write of an identifier another node holds: 400/301 with Location, or 307 on request
_PREFER = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "description": "redirect (RFC 7240): a write of an identifier another node holds is "
    "answered 307 to it (Location) instead of 400 (301) with Location",
    "schema": {"type": "string"},
}
_MISDIRECTED = {
    "307": {
        "description": "Another node holds the identifier and the client sent Prefer: "
        "redirect: the same request there (Location); sign it for the network's name",
        "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}},
        "content": {"application/json": {"schema": _ref("Error")}},
    }
}
_IDENTIFIER = {
    "name": "identifier",
    "in": "path",
    "required": True,
    "description": "Any identifier idres parses (88.100.1/ABC, 06901234567892, "
    "1.2.156.3001.1, did:bid:..., ...); '/' may stand as is, but one that ends in "
    "/history is sent with that last slash as %2F (/history after it names the history, "
    "which only GET reads: PUT and DELETE there are 405). The pattern is each scheme's "
    "syntax; an identifier that fits it is still refused (400, responseCode 102) for what "
    f"no pattern states: {pattern.NOT_IN_PATTERN}.",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": pattern.MAX_INPUT_CHARS,
        "pattern": pattern.IDENTIFIER,
    },
}
# a type name (schemas/record.py): 1 to 128 of its characters, HS_ only as the known ones
_KNOWN_HS = "|".join(sorted(t.removeprefix("HS_") for t in KNOWN_HS_TYPES))
TYPE_NAME = f"^(?!HS_(?!(?:{_KNOWN_HS})$))[A-Za-z0-9_.:/+-]{{1,{MAX_TYPE_BYTES}}}$"
# a write is signed, or carries a Handle.Net secret key where the node allows it
_SIGNED: list[dict[str, list[str]]] = [{"httpMessageSignature": []}, {"handleSecretKey": []}]
# ... or Handle.Net's Authorization: Handle: a TLS client certificate, or a session
_SIGNED += [{"handleClientCert": []}, {"handleSession": []}]
_SESSION_HEADER = {
    "name": "Authorization",
    "in": "header",
    "required": True,
    "description": 'Handle sessionId="..." naming the session; with id, type="HS_PUBKEY", '
    "cnonce, alg and signature (base64, over the nonce's bytes then the cnonce's) it "
    "authenticates the session first",
    "schema": {"type": "string"},
}
_SESSION_ERRORS = {
    "401": _json(
        _ref("Error"),
        "No session named (402), a session unknown or expired, a used nonce, a signature "
        "that does not verify, or a malformed Authorization: Handle (403); or a session "
        "in clear text across a network (402)",
    ),
}
_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Retry-safe key: a retry with the same key and request gets "
    "the first response (Idempotent-Replayed: true). Must be signed.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "idres registry API",
        "version": "0.1.0",
        "description": "Register, update, delete and read identifiers. Bodies and answers "
        "follow the Handle.Net REST API JSON; writes carry HTTP Message Signatures "
        "(RFC 9421) over @method, @path, @query and Content-Digest (RFC 9530), with the "
        "key id 'index:handle' of an HS_PUBKEY value.",
    },
    "components": {
        "securitySchemes": {
            "httpMessageSignature": {
                "type": "apiKey",
                "in": "header",
                "name": "Signature",
                "description": "RFC 9421 Signature and Signature-Input headers; alg ed25519, "
                "ecdsa-p256-sha256, rsa-v1_5-sha256 or rsa-pss-sha512; created within the "
                "node's window.",
            },
            "handleClientCert": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": 'Authorization: Handle clientCert="true" with a TLS client '
                "certificate (through the node's edge, over https): self-signed is fine; its "
                "subject's UID, or else CN, names index:handle and its key must be the "
                "HS_PUBKEY there.",
            },
            "handleSession": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": 'Authorization: Handle sessionId="..." of a session '
                "authenticated with an HS_PUBKEY (POST /api/sessions); over TLS or from "
                "loopback only. alg: Ed25519 (or EdDSA) for Ed25519 keys, SHA256 for ECDSA "
                "P-256 (DER or r||s) and RSA (PKCS#1 v1.5).",
            },
            "handleSecretKey": {
                "type": "http",
                "scheme": "basic",
                "description": "Handle.Net's secret key: user index:handle percent-encoded, "
                "password the HS_SECKEY value at that index. Only where the node's operator "
                "allows it (idres serve --allow-seckey), over TLS or from loopback.",
            },
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["responseCode", "message"],
                "properties": {
                    "responseCode": {"type": "integer"},
                    "message": {"type": "string"},
                    "position": {"type": "integer"},
                    "errors": {"type": "array", "items": _ref("FieldError")},
                },
            },
            "FieldError": {
                "type": "object",
                "required": ["field", "reason"],
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
            },
            "Data": {
                "oneOf": [
                    {"type": "string"},
                    {
                        "type": "object",
                        "required": ["value"],
                        "properties": {
                            "format": {
                                "enum": ["string", "base64", "hex", "admin", "key", "vlist"]
                            },
                            "value": {},
                        },
                        "additionalProperties": False,
                    },
                ]
            },
            "Reference": {
                "type": "object",
                "required": ["handle", "index"],
                "properties": {"handle": {"type": "string"}, "index": {"type": "integer"}},
                "additionalProperties": False,
            },
            "Value": {
                "type": "object",
                "required": ["index", "type", "data"],
                "additionalProperties": False,
                "properties": {
                    "index": {"type": "integer", "minimum": 1, "maximum": 2147483647},
                    "type": {
                        "description": "Letters, digits and _ . : / + -; HS_ names only "
                        "the known ones. Some types fix the data's format (HS_ADMIN admin, "
                        "HS_PUBKEY key) and the data's rules (a URL is a URI): broken, "
                        "400 (202) with the field",
                        "type": "string",
                        "pattern": TYPE_NAME,
                    },
                    "data": _ref("Data"),
                    "ttl": {"type": "integer", "minimum": 0},
                    "ttlType": {"enum": ["relative", "absolute"]},
                    "timestamp": {"type": "string", "format": "date-time"},
                    "permissions": {"type": "string", "pattern": "^[01]{4}$"},
                    "references": {"type": "array", "items": _ref("Reference")},
                },
            },
            "Values": {
                "type": "object",
                "required": ["values"],
                "additionalProperties": False,
                "properties": {
                    "values": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_VALUES,
                        "items": _ref("Value"),
                    }
                },
            },
            "Record": {
                "type": "object",
                "required": ["responseCode", "handle"],
                "properties": {
                    "responseCode": {"enum": [1, 200]},
                    "handle": {"type": "string"},
                    "values": {"type": "array", "items": _ref("Value")},
                    "message": {"type": "string"},
                },
            },
            "Written": {
                "type": "object",
                "required": ["responseCode", "handle", "version"],
                "properties": {
                    "responseCode": {"const": 1},
                    "handle": {"type": "string"},
                    "version": {"type": "integer"},
                },
            },
            "HandleList": {
                "type": "object",
                "required": ["responseCode", "prefix", "totalCount", "page", "pageSize", "handles"],
                "properties": {
                    "responseCode": {"const": 1},
                    "prefix": {"type": "string"},
                    "totalCount": {"type": "integer"},
                    "page": {"type": "integer"},
                    "pageSize": {"type": "integer"},
                    "handles": {"type": "array", "items": {"type": "string"}},
                },
            },
            "History": {
                "type": "object",
                "required": ["responseCode", "handle", "history"],
                "properties": {
                    "responseCode": {"const": 1},
                    "handle": {"type": "string"},
                    "history": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["version", "op", "actor", "at", "changes", "values"],
                            "properties": {
                                "version": {"type": "integer"},
                                "op": {"enum": ["create", "replace", "delete"]},
                                "actor": {"type": "string"},
                                "at": {"type": "string", "format": "date-time"},
                                "changes": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["index", "type", "change"],
                                        "properties": {
                                            "index": {"type": "integer"},
                                            "type": {"type": "string"},
                                            "change": {"enum": ["added", "modified", "removed"]},
                                        },
                                    },
                                },
                                "values": {"type": "array", "items": _ref("Value")},
                            },
                        },
                    },
                },
            },
            "BatchOperation": {
                "type": "object",
                "required": ["handle"],
                "additionalProperties": False,
                "properties": {
                    "op": {"enum": ["put", "delete"]},
                    "handle": {"type": "string"},
                    "values": {"type": "array", "items": _ref("Value")},
                    "overwrite": {"type": "boolean"},
                    "index": {"type": "array", "items": {"type": "integer"}},
                },
            },
            "BatchRequest": {
                "type": "object",
                "required": ["operations"],
                "additionalProperties": False,
                "properties": {
                    "operations": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 10000,
                        "items": {
                            "description": "A BatchOperation. Each is read on its own, as "
                            "a row of an import is: one that is not a BatchOperation does "
                            "not refuse the batch but gets its own result (status 400, "
                            "responseCode 202 with its fields in errors, or 102 for a "
                            "malformed handle), while the others are carried out.",
                            "anyOf": [_ref("BatchOperation"), {}],
                        },
                    }
                },
            },
            "BatchResponse": {
                "type": "object",
                "required": ["responseCode", "results"],
                "properties": {
                    "responseCode": {"const": 1},
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["index", "responseCode", "status"],
                            "properties": {
                                "index": {"type": "integer"},
                                "handle": {"type": "string"},
                                "responseCode": {"type": "integer"},
                                "status": {"type": "integer"},
                                "version": {"type": "integer"},
                                "message": {"type": "string"},
                                "position": {"type": "integer"},
                                "errors": {"type": "array", "items": _ref("FieldError")},
                            },
                        },
                    },
                },
            },
            "Session": {
                "type": "object",
                "required": ["responseCode", "sessionId"],
                "properties": {
                    "responseCode": {"type": "integer"},
                    "sessionId": {"type": "string"},
                    "nonce": {
                        "description": "Base64; sign its bytes followed by your cnonce's",
                        "type": "string",
                        "contentEncoding": "base64",
                    },
                    "authenticated": {"type": "boolean"},
                    "id": {"description": "index:handle it stands for", "type": "string"},
                    "ended": {"type": "boolean"},
                },
            },
            "Delegation": {
                "type": "object",
                "required": ["prefix", "publicKey"],
                "additionalProperties": False,
                "properties": {
                    "prefix": {
                        "type": "string",
                        "pattern": pattern.PREFIX,
                        "examples": ["88.100.1"],
                    },
                    "publicKey": {
                        "description": "Base64 of a DER SubjectPublicKeyInfo (idres keygen "
                        "prints it); one that is no key is refused 400 (202)",
                        "type": "string",
                        "contentEncoding": "base64",
                        "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{4}|"
                        "[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)$",
                    },
                    "keyIndex": {"type": "integer", "minimum": 101, "maximum": 2**31 - 1},
                },
            },
        },
    },
    "paths": {
        "/api/handles/{identifier}": {
            "parameters": [_IDENTIFIER],
            "get": {
                "summary": "Read a record (non-public values need an admin's signature)",
                "parameters": [
                    {"name": "type", "in": "query", "schema": {"type": "string"}},
                    {"name": "index", "in": "query", "schema": {"type": "integer"}},
                    {"name": "publicOnly", "in": "query", "schema": {"type": "boolean"}},
                ],
                "responses": {
                    "200": _json(
                        _ref("Record"),
                        "The record, or responseCode 200 when no value matches the filters",
                    ),
                    "404": _json(_ref("Error"), "Identifier not found (100)"),
                    **_ERRORS,
                },
            },
            "put": {
                "summary": "Create or replace a record, or with ?index= some of its values",
                "security": _SIGNED,
                "parameters": [
                    {
                        "name": "overwrite",
                        "in": "query",
                        "schema": {"type": "boolean"},
                        "description": "false: 409 (101) if the identifier exists",
                    },
                    {"name": "index", "in": "query", "schema": {"type": "integer"}},
                    _IDEMPOTENCY,
                    _PREFER,
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("Values")}},
                },
                "responses": {
                    "201": _json(_ref("Written"), "Created"),
                    "200": _json(_ref("Written"), "Replaced"),
                    "409": _json(_ref("Error"), "Identifier exists (101)"),
                    "422": _json(_ref("Error"), "Idempotency-Key reused for another request"),
                    **_MISDIRECTED,
                    **_ERRORS,
                },
            },
            "delete": {
                "summary": "Delete a record, or with ?index= some of its values",
                "security": _SIGNED,
                "parameters": [
                    {"name": "index", "in": "query", "schema": {"type": "integer"}},
                    _IDEMPOTENCY,
                    _PREFER,
                ],
                "responses": {
                    "422": _REUSED_KEY,
                    **_MISDIRECTED,
                    "200": _json(_ref("Written"), "Deleted"),
                    "404": _json(_ref("Error"), "Not found (100), or no value at that index (200)"),
                    **_ERRORS,
                },
            },
        },
        "/api/handles/{identifier}/history": {
            "parameters": [_IDENTIFIER],
            "get": {
                "summary": "Every version: who signed it, when, what changed",
                "responses": {
                    "200": _json(_ref("History"), "History, oldest first"),
                    "404": _json(_ref("Error"), "Never existed (100)"),
                    **_ERRORS,
                },
            },
        },
        "/api/handles": {
            "get": {
                "summary": "List the identifiers under a prefix (needs list_handles)",
                "security": _SIGNED,
                "parameters": [
                    {
                        "name": "prefix",
                        "in": "query",
                        "required": True,
                        "description": "88.100.1 (handles), gs1:690123, oid:1.2.156, "
                        "ecode:1000 or bid:ab12",
                        "schema": {
                            "type": "string",
                            "maxLength": pattern.MAX_INPUT_CHARS,
                            "pattern": pattern.PREFIX,
                        },
                    },
                    {
                        "name": "page",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 10**9},
                    },
                    {
                        "name": "pageSize",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
                    },
                ],
                "responses": {"200": _json(_ref("HandleList"), "One page"), **_ERRORS},
            }
        },
        "/api/batch": {
            "post": {
                "summary": "Many writes in one request and one transaction, each with its "
                "own result",
                "security": _SIGNED,
                "parameters": [_IDEMPOTENCY],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("BatchRequest")}},
                },
                "responses": {
                    "422": _REUSED_KEY,
                    "200": _json(
                        _ref("BatchResponse"),
                        "One result per operation, in order: each with its own status "
                        "(201, 200, or the error status a single write would get) and "
                        "responseCode; a malformed operation is one of them",
                    ),
                    **_ERRORS,
                },
            }
        },
        "/api/prefixes": {
            "post": {
                "summary": "Delegate a child prefix to a key (needs add_derived_prefix on the "
                "parent)",
                "security": _SIGNED,
                "parameters": [_IDEMPOTENCY],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("Delegation")}},
                },
                "responses": {
                    "422": _REUSED_KEY,
                    "201": _json(_ref("Written"), "Delegated: record 0.NA/{prefix}"),
                    "409": _json(_ref("Error"), "Already delegated (101)"),
                    **_ERRORS,
                },
            }
        },
        "/api/sessions": {
            "post": {
                "summary": "Open a Handle.Net REST session: its id and the nonce to sign "
                "(over TLS or from loopback)",
                "responses": {
                    "201": _json(_ref("Session"), "Opened, not yet authenticated"),
                    "200": _json(
                        _ref("Session"),
                        "The session named by an authenticating Authorization: Handle",
                    ),
                    **_SESSION_ERRORS,
                },
            }
        },
        "/api/sessions/this": {
            "get": {
                "summary": "The state of the session in Authorization: Handle",
                "parameters": [_SESSION_HEADER],
                "responses": {"200": _json(_ref("Session"), "Its state"), **_SESSION_ERRORS},
            },
            "post": {
                "summary": "Authenticate the session in Authorization: Handle, and its state",
                "parameters": [_SESSION_HEADER],
                "responses": {"200": _json(_ref("Session"), "Its state"), **_SESSION_ERRORS},
            },
            "delete": {
                "summary": "End the session in Authorization: Handle",
                "parameters": [_SESSION_HEADER],
                "responses": {"200": _json(_ref("Session"), "Ended"), **_SESSION_ERRORS},
            },
        },
        "/openapi.json": {
            "get": {
                "summary": "This description",
                "responses": {"200": {"description": "OpenAPI 3.1"}},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness, with a database round trip",
                "responses": {"200": {"description": "ok"}},
            }
        },
    },
}
