"""Valid inputs for every fuzz target, built with the project's own encoders.

A fuzzer that starts from real blocks, operations and signed headers mutates its way
past the outer checks (CBOR well-formed, deterministic, signed) into the code behind
them; from random bytes alone it would rarely get past the first. Keys are fixed, so
the seeds are the same on every run.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import orjson
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from registry.httpsig import public_key_der, sign_request
from resolver.topology import Delegation, Role, sign_delegation
from schemas.chain import GENESIS, Kind, Tip, anchor_of, cut_block, merkle_path
from schemas.codec_cbor import encode_data, encode_record, encode_refs
from schemas.codec_json import record_to_json
from schemas.identifiers import check_digit
from schemas.identifiers.did import b58encode
from schemas.oplog import Operation, encode_operation
from schemas.record import (
    ALL_ADMIN_PERMS,
    AdminRef,
    DataFormat,
    HandleValue,
    Permissions,
    Record,
    Reference,
    TtlType,
)
from schemas.snapshot import (
    MAGIC,
    SnapshotBlock,
    SnapshotEnd,
    SnapshotHeader,
    encode_block,
    encode_end,
    encode_header,
)

NOW = 1_795_000_000  # 2026-11-17, seconds: a fixed "now" keeps every run the same
SUPER_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
SIGNER_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
P256_KEY = ec.derive_private_key(7, ec.SECP256R1())
HANDLE = "88.100.1/FUZZ-1"


def _gtin(body: str) -> str:
    return body + str(check_digit(body))


def identifiers() -> list[str]:
    """One or more inputs of every scheme and prefix form that ``parse`` and
    ``parse_prefix`` accept."""
    suffix = b58encode(bytes(range(1, 23)))
    b64 = base64.urlsafe_b64encode(bytes(range(22))).decode().rstrip("=")
    return [
        "88.100.1/ABC-123",
        "86.1000.12/x",
        "10.1000/xyz",
        "hdl:88.100.1/a/b",
        "doi:10.1000/ABC",
        "0.NA/88.100.1",
        _gtin("0950600013435"),
        _gtin("950600013435"),
        _gtin("9506000"),
        "gtin:" + _gtin("0950600013435"),
        "gln:" + _gtin("950600013435"),
        "sscc:" + _gtin("00950600013435012"),
        "1.2.156.3001.1",
        "urn:oid:2.16.156.1",
        "oid:1.2.156",
        "ecode:10001000000000000001",
        "did:bid:ef" + suffix,
        "did:bid:ab12:zf" + suffix,
        "did:bid:es" + b64,
        "did:cn:88.100.1",
        "https://id.example.com/01/" + _gtin("0950600013435") + "/10/LOT7/21/S%2F1",
        "https://id.gs1.org/00/" + _gtin("09506000134352001"),
        "http://x.example/a/414/" + _gtin("950600013435") + "/254/7?q=1#f",
    ]


def prefixes() -> list[str]:
    return ["88.100.1", "0.NA", "gs1:690123", "oid:1.2.156", "ecode:1000", "bid:ab12"]


def handle_values() -> tuple[HandleValue, ...]:
    """One value of every data format, with references, an absolute TTL and
    non-default permissions."""
    key = SIGNER_KEY.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    ref = Reference(handle="88.100.1/OTHER", index=2)
    return (
        HandleValue(index=1, type="URL", format=DataFormat.STRING, value="https://e.com/p"),
        HandleValue(
            index=2,
            type="EMAIL",
            format=DataFormat.STRING,
            value="a@e.com",
            ttl=3600,
            ttl_type=TtlType.ABSOLUTE,
            timestamp=NOW,
            references=(ref,),
        ),
        HandleValue(index=3, type="BLOB", format=DataFormat.BASE64, value=b"\x00\xffbytes"),
        HandleValue(
            index=4,
            type="HEXD",
            format=DataFormat.HEX,
            value=b"\xde\xad",
            permissions=Permissions(public_read=False),
        ),
        HandleValue(
            index=100,
            type="HS_ADMIN",
            format=DataFormat.ADMIN,
            value=AdminRef(handle="0.NA/88.100.1", index=300, permissions=ALL_ADMIN_PERMS),
        ),
        HandleValue(index=300, type="HS_PUBKEY", format=DataFormat.KEY, value=key),
        HandleValue(index=400, type="HS_VLIST", format=DataFormat.VLIST, value=(ref, ref)),
    )


def record(handle: str = HANDLE) -> Record:
    return Record(handle=handle, values=handle_values())


def record_json() -> list[bytes]:
    """Request bodies ``{"values": [...]}`` as the REST API takes them."""
    values = record_to_json(record())["values"]
    return [
        orjson.dumps({"values": values}),
        orjson.dumps({"values": values[:1]}),
        orjson.dumps({"values": [{"index": 1, "type": "URL", "data": "https://e.com"}]}),
    ]


def cbor_record() -> list[bytes]:
    values = handle_values()
    return [
        encode_record(record()),
        encode_record(Record(handle=HANDLE, values=values[:1])),
        *(encode_data(v) for v in values if v.format in (DataFormat.ADMIN, DataFormat.VLIST)),
        encode_refs(values[1].references),
    ]


def operations() -> list[Operation]:
    """A create (its private value committed, as a holder publishes it), a replace with
    public values only, and a delete."""
    from schemas.commitment import commit_record

    committed = commit_record(record(), {v.index: bytes(16) for v in handle_values()})
    public = Record(
        handle=HANDLE, values=tuple(v for v in handle_values() if v.permissions.public_read)
    )
    actor = "300:0.NA/88.100.1"
    return [
        Operation(op="create", handle=HANDLE, version=1, actor=actor, at=NOW, record=committed),
        Operation(op="replace", handle=HANDLE, version=2, actor=actor, at=NOW, record=public),
        Operation(op="delete", handle=HANDLE, version=3, actor=actor, at=NOW, record=None),
    ]


def oplog() -> list[bytes]:
    return [encode_operation(o) for o in operations()]


def chain() -> list[bytes]:
    """Block messages, their headers and an anchor, as a chain publishes them."""
    ops: list[tuple[Kind, bytes]] = [("op", encode_operation(o)) for o in operations()]
    first = cut_block(chain="sub", alg="sha256", tip=Tip(), items=ops[:1], key=SIGNER_KEY, at=NOW)
    second = cut_block(
        chain="sub",
        alg="sha256",
        tip=Tip(height=1, block_hash=first.hash, seq=1, head=first.header.head),
        items=[*ops[1:], ("anchor", anchor_of(first).encode())],
        key=SIGNER_KEY,
        at=NOW * 1000,
    )
    return [
        first.message(),
        second.message(),
        first.header_bytes,
        second.header_bytes,
        anchor_of(second).encode(),
    ]


def snapshot() -> list[bytes]:
    """A snapshot file: magic, header, blocks, end (the digest covers all before)."""
    blocks = chain()[:2]
    body = MAGIC + encode_header(SnapshotHeader(node="sub", taken_at=NOW * 1000, chains=("sub",)))
    for message in blocks:
        body += encode_block(SnapshotBlock(chain="sub", message=message))
    whole = body + encode_end(SnapshotEnd(blocks=2, digest=hashlib.sha256(body).digest()))
    # the first byte is the chunk size the harness feeds the file in (0: all at once)
    return [b"\x00" + whole, b"\x07" + whole, b"\x01" + whole]


# Signed requests are packed one field a line (see targets.httpsig_fields):
# Signature-Input, Signature, Content-Digest, Host, Idempotency-Key, then the body.
HTTPSIG_FIELDS = 5


def httpsig() -> list[bytes]:
    out = []
    for key, extra in ((SIGNER_KEY, {}), (P256_KEY, {"Idempotency-Key": "k-1"})):
        body = b'{"values":[]}'
        headers = {"Host": "node.example", **extra}
        signed = sign_request(
            method="PUT",
            path="/api/handles/88.100.1/X",
            query="",
            headers=headers,
            body=body,
            key=key,
            keyid="300:0.NA/88.100.1",
            created=NOW,
            nonce="n-1",
            components=("@method", "@authority", "@path", "@query", "content-digest"),
        )
        lines = [
            signed["Signature-Input"],
            signed["Signature"],
            signed["Content-Digest"],
            headers["Host"],
            headers.get("Idempotency-Key", ""),
        ]
        out.append("\n".join(lines).encode() + b"\n" + body)
    return out


def httpsig_public_keys() -> list[bytes]:
    return [public_key_der(SIGNER_KEY), public_key_der(P256_KEY)]


def front() -> list[bytes]:
    """Raw requests as a client writes them to the front door (the first byte
    is the chunk size the harness feeds them in)."""
    get = b"GET /api/handles/88.100.1/FUZZ HTTP/1.1\r\nHost: x\r\n\r\n"
    return [
        b"\x00" + get,
        b"\x05" + get + get.replace(b"FUZZ", b"%FF") + b"HEAD / HTTP/1.1\r\n\r\n",
        b"\x00GET /api/handles/06901234567892 HTTP/1.0\r\n\r\n",
        b"\x00POST /api/handles/x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        b"\x00GET /api/handles/1.2.156 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"\x00GET /api/handles/x HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        b"\x03GET /api/handles/88.1/A?x HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"\x07GET /88.100.1/A?noredirect HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n",
        b"\x00GET /api/handles/x?type=URL&index=1,x HTTP/1.1\r\nIdres-Via: a,b\r\n\r\n",
        b"\x00GET /01/09506000134352/10/L HTTP/1.1\r\nAccept: application/linkset+json\r\n\r\n",
        b"\x00GET /api/handles/did:bid:x HTTP/1.1\r\nAccept: application/did-resolution\r\n\r\n",
    ]


def handle_requests() -> list[bytes]:
    """Requests as CNRI's client sent them over UDP (tests/fixtures/handle), one of them
    for a handle the fuzz directory routes (super holds 88)."""
    from pathlib import Path

    fixtures = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "handle"
    captured = [p.read_bytes() for p in sorted(fixtures.glob("*-udp-*.bin"))]
    return captured + [p.read_bytes() for p in sorted(fixtures.glob("siteinfo-udp.bin"))]


def dns_queries() -> list[bytes]:
    """DNS queries as a client sends them (the first byte's low bit: over TCP)."""
    import dns.flags
    import dns.message
    import dns.rdatatype

    zone = "idres.internal."
    out = []
    for tcp, name, rdtype, edns in [
        (0, "0.9.8.7.6.5.4.3.2.1.0.9.6.gtin.gs1.id." + zone, "NAPTR", 0),
        (1, "FUZZ._.1.100.88.handle." + zone, "URI", -1),
        (0, "b32-mfrgg._.88.handle." + zone, "TXT", 0),
        (0, "1.3001.156.2.1.oid-res." + zone, "ANY", 0),
        (0, zone, "SOA", -1),
        (1, zone, "AXFR", -1),
        (0, "88.handle." + zone, "IXFR", 0),
        (0, "super.ns." + zone, "A", 0),
        (0, "efxyz.ab12.bid." + zone, "URI", 0),
        (0, "example.com.", "A", 0),
    ]:
        query = dns.message.make_query(name, dns.rdatatype.from_text(rdtype), use_edns=edns)
        if tcp:
            query.flags &= ~dns.flags.RD
        out.append(bytes([tcp]) + query.to_wire())
    return out


def delegations() -> list[Delegation]:
    def pub(key: ed25519.Ed25519PrivateKey) -> bytes:
        return key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    root = Delegation(
        name="super",
        role=Role.SUPER,
        url="http://super.example",
        parent=None,
        prefixes=("88",),
        public_key=pub(SUPER_KEY),
        issued=NOW,
    )
    child = Delegation(
        name="sub",
        role=Role.BACKBONE,
        url="http://sub.example",
        parent="super",
        prefixes=("88.100",),
        public_key=pub(SIGNER_KEY),
        issued=NOW,
    )
    return [sign_delegation(root, SUPER_KEY), sign_delegation(child, SUPER_KEY)]


def directory() -> list[bytes]:
    from sync.directory import encode_delegation  # sync imports aiokafka: only when asked

    return [encode_delegation(d) for d in delegations()]


def proof() -> list[bytes]:
    """An answer with ``?proof=true``'s proof, as ``sync.proof.build`` lays it out: the
    operation in sub's block, anchored by a block of the super node's chain."""
    op = operations()[0]
    payload = encode_operation(op)
    block = cut_block(
        chain="sub", alg="sha256", tip=Tip(), items=[("op", payload)], key=SIGNER_KEY, at=NOW * 1000
    )
    anchor = anchor_of(block).encode()
    top = cut_block(
        chain="super",
        alg="sha256",
        tip=Tip(),
        items=[("anchor", anchor)],
        key=SUPER_KEY,
        at=NOW * 1000,
    )

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    def level(b: object, chain: str, kind: str, entry: bytes) -> dict[str, object]:
        from schemas.chain import Block

        assert isinstance(b, Block)
        return {
            "chain": chain,
            "seq": 1,
            "kind": kind,
            "prev": b64(GENESIS),
            "payload": b64(entry),
            "index": 0,
            "path": [b64(p) for p in merkle_path("sha256", [e.hash for e in b.entries], 0)],
            "header": b64(b.header_bytes),
            "signature": b64(b.signature),
        }

    public = tuple(v for v in record().values if v.permissions.public_read)
    answer = {
        **record_to_json(record(), values=public),
        "proof": {
            "v": 1,
            "levels": [level(block, "sub", "op", payload), level(top, "super", "anchor", anchor)],
            "delegations": [d.to_json() for d in delegations()],
        },
    }
    one_level = {**answer, "proof": {**answer["proof"], "levels": answer["proof"]["levels"][:1]}}
    return [orjson.dumps(answer), orjson.dumps(one_level)]


SEEDS: dict[str, Callable[[], list[bytes]]] = {
    "identifiers": lambda: [s.encode() for s in (*identifiers(), *prefixes())],
    "record_json": record_json,
    "cbor_record": cbor_record,
    "oplog": oplog,
    "chain": chain,
    "snapshot": snapshot,
    "httpsig": httpsig,
    "front": front,
    "dns": dns_queries,
    "handle": handle_requests,
    "directory": directory,
    "proof": proof,
}
