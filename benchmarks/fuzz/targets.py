"""The fuzz targets: each feeds one input of outside bytes to a parser or decoder.

The contract every target checks: bad input raises the domain's error for bad input
(an ``IdresError`` that is not a ``ServerError``, so the HTTP layer answers 4xx with
a Handle responseCode), or, for the entry points that promise never to raise
(``sync.proof.check``, ``LiveDirectory.adopt``, the lean listener), nothing at all.
Anything else, an AssertionError from a broken round trip included, is a crash.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.errors import IdresError, ServerError

# Input limits of the real edges, so the fuzzer does not spend its time on inputs no
# caller can be handed: libFuzzer's -max_len stays at its default of 4096 bytes.
MAX_INPUT = 4096


class Crash(Exception):
    """A target broke its contract (raised for atheris and Hypothesis to report)."""


def is_bad_input(exc: BaseException) -> bool:
    """Whether ``exc`` is the documented answer to bad input (a 4xx IdresError)."""
    return isinstance(exc, IdresError) and not isinstance(exc, ServerError)


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    name: str
    what: str  # the entry points, for the README and the runner's table
    # True when the main entry point accepted the input: the seeds must all be, or
    # the fuzzer would start from inputs refused at the first check
    call: Callable[[bytes], bool]


def _text(data: bytes) -> str:
    # as aiohttp and argv hand text over: undecodable bytes become lone surrogates
    return data.decode("utf-8", "surrogateescape")


def _json(data: bytes) -> Any:
    """The JSON document in ``data``, or a marker that it is none: a body that is not
    JSON never reaches the decoders (the HTTP layer answers it first)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return _NOT_JSON


_NOT_JSON = object()


class _Refused:
    """What ``_expect_bad_input`` returns for an input refused as documented."""


REFUSED = _Refused()


def _expect_bad_input(call: Callable[[], object]) -> object:
    """The call's result, REFUSED when it refused the input with the documented error."""
    try:
        return call()
    except Exception as exc:
        if is_bad_input(exc):
            return REFUSED
        raise


# --- schemas ---------------------------------------------------------------------------


def identifiers(data: bytes) -> bool:
    return identifier_text(_text(data))


def identifier_text(text: str) -> bool:
    from schemas.identifiers import parse
    from schemas.identifiers.prefix import parse_prefix

    ident = _expect_bad_input(lambda: parse.__wrapped__(text))  # uncached: every input runs
    prefix = _expect_bad_input(lambda: parse_prefix(text))
    if ident is not REFUSED:
        from schemas.identifiers import Identifier

        assert isinstance(ident, Identifier)
        # the canonical form is what records are stored and routed under: it must
        # parse back to itself, or a stored identifier could never be looked up
        again = parse.__wrapped__(ident.canonical)
        if again.canonical != ident.canonical or again.routing != ident.routing:
            raise Crash(f"canonical form {ident.canonical!r} parses to {again.canonical!r}")
    return ident is not REFUSED or prefix is not REFUSED


def record_json(data: bytes) -> bool:
    from schemas.codec_json import value_to_json, values_from_json
    from schemas.record import Record

    body = _json(data)
    if body is _NOT_JSON:
        return False
    values = _expect_bad_input(lambda: values_from_json(body, now=1_795_000_000))
    if values is REFUSED:
        return False
    assert isinstance(values, tuple)
    shown = [value_to_json(v) for v in values]
    # what was accepted is shown as JSON that is accepted again as the same values
    if values_from_json(orjson.loads(orjson.dumps({"values": shown})), now=0) != values:
        raise Crash("values do not survive value_to_json -> values_from_json")
    Record(handle="88.1/x", values=values)
    return True


def cbor_record(data: bytes) -> bool:
    from schemas.codec_cbor import decode_data, decode_record, decode_refs, encode_record
    from schemas.record import DataFormat, Record

    record = _expect_bad_input(lambda: decode_record(data))
    if isinstance(record, Record) and encode_record(record) != data:
        raise Crash("a decoded record does not encode back to its bytes")
    accepted = [
        _expect_bad_input(lambda fmt=fmt: decode_data(fmt, data))  # type: ignore[misc]
        for fmt in (DataFormat.ADMIN, DataFormat.VLIST, DataFormat.STRING)
    ]
    refs = _expect_bad_input(lambda: decode_refs(data))
    return record is not REFUSED or refs is not REFUSED or any(a is not REFUSED for a in accepted)


def oplog(data: bytes) -> bool:
    from schemas.oplog import decode_operation

    checked = _expect_bad_input(lambda: decode_operation(data))
    _expect_bad_input(lambda: decode_operation(data, check_form=False))
    return checked is not REFUSED


def chain(data: bytes) -> bool:
    from schemas.chain import decode_anchor, decode_block, decode_header

    results = [
        _expect_bad_input(lambda: decode_block(data)),
        _expect_bad_input(lambda: decode_header(data)),
        _expect_bad_input(lambda: decode_anchor(data)),
    ]
    return any(r is not REFUSED for r in results)


def snapshot(data: bytes) -> bool:
    """The frame reader as ``sync.snapshot.load`` drives it: chunks of any size into
    the splitter, each frame decoded, then ``finish``. The first byte picks the chunk
    size, so the fuzzer also explores frames cut across reads."""
    from schemas.snapshot import FrameSplitter, decode_item

    step = (data[0] if data else 0) or len(data) or 1
    body = data[1:]
    splitter = FrameSplitter()

    def read() -> None:
        index = 0
        for at in range(0, len(body), step):
            for _offset, frame in splitter.feed(body[at : at + step]):
                decode_item(frame, index)
                index += 1
        splitter.finish()

    whole = _expect_bad_input(read)
    _expect_bad_input(lambda: decode_item(body, 0))
    return whole is not REFUSED


# --- registry: RFC 9421 signatures, RFC 9530 digests, RFC 8941 structured fields -------


def httpsig_fields(data: bytes) -> tuple[dict[str, str], bytes]:
    """Headers and body from one input: Signature-Input, Signature, Content-Digest,
    Host and Idempotency-Key, a line each (an empty line leaves the header out),
    then the body."""
    from benchmarks.fuzz.seeds import HTTPSIG_FIELDS

    parts = data.split(b"\n", HTTPSIG_FIELDS)
    body = parts[HTTPSIG_FIELDS] if len(parts) > HTTPSIG_FIELDS else b""
    names = ("Signature-Input", "Signature", "Content-Digest", "Host", "Idempotency-Key")
    headers = {n: _text(v) for n, v in zip(names, parts, strict=False) if v}
    return headers, body


def _httpsig_keys() -> list[bytes]:
    from benchmarks.fuzz.seeds import httpsig_public_keys

    return httpsig_public_keys()


_KEYS: list[bytes] = []


def httpsig(data: bytes) -> bool:
    """What ``registry.api`` runs on a write, in its order: parse, digest, freshness,
    key id, base, verify against both kinds of key."""
    from registry.httpsig import (
        SignatureParams,
        check_content_digest,
        check_freshness,
        parse_key_id,
        parse_signature,
        signature_base,
        verify,
    )

    if not _KEYS:
        _KEYS.extend(_httpsig_keys())
    headers, body = httpsig_fields(data)
    params = _expect_bad_input(lambda: parse_signature(headers))
    _expect_bad_input(lambda: check_content_digest(headers.get("Content-Digest"), body))
    if not isinstance(params, SignatureParams):
        return False
    _expect_bad_input(lambda: check_freshness(params, now=1_795_000_000))
    _expect_bad_input(lambda: parse_key_id(params.keyid))
    base = _expect_bad_input(
        lambda: signature_base(
            params, method="PUT", path="/api/handles/88.100.1/X", query="", headers=headers
        )
    )
    if not isinstance(base, bytes):
        return False
    verified = [
        _expect_bad_input(lambda key=key: verify(params, base, key))  # type: ignore[misc]
        for key in _KEYS
    ]
    return any(v is not REFUSED for v in verified)


# --- resolver: the front door's request routing -----------------------------------------


class _Capture(asyncio.Transport):
    """The transport side of one connection, in memory: what the listener wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.protocol: Any = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.closed:  # as a socket transport, bytes written after close are lost
            self.out += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 9) if name == "peername" else default

    def get_write_buffer_size(self) -> int:
        return 0

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol


class _App(asyncio.Protocol):
    """The application behind the door, in memory: what was handed to it."""

    def __init__(self) -> None:
        self.got = bytearray()

    def data_received(self, data: bytes) -> None:
        self.got += data


class _Errors(logging.Handler):
    """Counts what the listener logs as its own failure (it answers 500 for those)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass(slots=True)
class _Listener:
    loop: asyncio.AbstractEventLoop
    api: Any
    errors: _Errors


_LISTENER: list[_Listener] = []


def _listener() -> _Listener:
    """One real Resolver over a real directory (the super node holds ``88``), whose
    local store answers "not found": everything but the socket is the real thing."""
    if _LISTENER:
        return _LISTENER[0]
    from benchmarks.fuzz.seeds import SUPER_KEY, delegations
    from resolver.metrics import Metrics
    from resolver.service import Answer, Resolver, ResolverConfig, not_found
    from resolver.topology import Directory
    from schemas.identifiers import Identifier

    signed = delegations()
    directory = Directory(signed, signed[0].public_key)
    del SUPER_KEY

    async def local(ident: Identifier) -> Answer:
        return Answer(status=404, body=not_found(ident.canonical))

    class NoUpstream:
        async def get(self, url: str, *, headers: Mapping[str, str]) -> Any:
            from schemas.errors import IdentifierNotFound

            raise IdentifierNotFound(url)

        async def close(self) -> None:
            pass

    resolver = Resolver(
        config=ResolverConfig(name="super"),
        directory=lambda: directory,
        local=local,
        transport=NoUpstream(),
        metrics=Metrics("super"),
    )
    from types import SimpleNamespace

    from resolver.api import ResolverAPI

    registry: Any = SimpleNamespace()  # the door never writes: no registry behind it
    api = ResolverAPI(resolver, registry, lambda: directory, resolver.metrics, role="super")
    errors = _Errors()
    logging.getLogger("idres.front").addHandler(errors)
    logging.getLogger("idres.front").propagate = False
    _LISTENER.append(_Listener(loop=asyncio.new_event_loop(), api=api, errors=errors))
    return _LISTENER[0]


def front(data: bytes) -> bool:
    """One connection of the front door: the bytes arrive in chunks (the first byte is
    the chunk size), then the client half-closes. The door must answer every request
    it keeps with a status it means (never a 500 of its own making), never raise out
    of ``data_received``, never write after closing, and hand the application exactly
    the bytes it did not answer: a suffix of what was sent, nothing lost or repeated."""
    from resolver.front import FrontDoor, FrontProtocol

    listener = _listener()
    step = (data[0] if data else 0) or len(data) or 1
    body = data[1:]
    app = _App()

    async def connection() -> bytes:
        door = FrontDoor(listener.api, lambda: app, frozenset((b"api", b"metrics")))  # type: ignore[arg-type,return-value]
        protocol = FrontProtocol(door)
        transport = _Capture()
        transport.protocol = protocol
        protocol.connection_made(transport)
        for at in range(0, len(body), step):
            if transport.closed:
                break
            transport.protocol.data_received(body[at : at + step])  # the door's, or the app's
            await asyncio.sleep(0)
        if not transport.closed and transport.protocol is protocol:
            protocol.eof_received()
        for _ in range(100):  # lookups resolve in a few loop turns; no timers are waited on
            if transport.closed or not protocol.pending:
                break
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        return bytes(transport.out)

    listener.errors.records.clear()
    out = listener.loop.run_until_complete(connection())
    if listener.errors.records:
        raise Crash(f"door logged its own failure: {listener.errors.records[0].getMessage()}")
    if b"HTTP/1.1 500 " in out:
        raise Crash("door answered 500")
    if app.got and not body.endswith(bytes(app.got)):
        raise Crash("the application was handed bytes the client did not send last")
    return out.startswith(b"HTTP/1.1 ") or bool(app.got)


def dns_face(data: bytes) -> bool:
    """One DNS message to the DNS face (the first byte's low bit: over TCP). It answers
    every packet that has a header and is a query, with a message dnspython reads back,
    under the same ID and with QR set; it hands a zone transfer only to TCP, and never
    raises."""
    import dns.exception
    import dns.message
    import dns.name

    from resolver.dns.respond import DnsConfig, Face, Transfer

    listener = _listener()
    tcp = bool(data[0] & 1) if data else False
    wire = data[1:]
    face = Face(
        name="super",
        directory=listener.api.directory,
        resolver=listener.api.resolver,
        config=DnsConfig(zone=dns.name.from_text("idres.internal.")),
    )
    listener.errors.records.clear()
    out = listener.loop.run_until_complete(face.answer(wire, tcp=tcp, peer="127.0.0.1"))
    if listener.errors.records:
        raise Crash(f"the face logged its own failure: {listener.errors.records[0].getMessage()}")
    if out is None:
        if len(wire) >= 12 and not wire[2] & 0x80:
            raise Crash("a query went unanswered")
        return False
    if isinstance(out, Transfer):
        raise Crash("a transfer without a zone source, or over UDP")
    if out[:2] != wire[:2] or not out[2] & 0x80:
        raise Crash("an answer under another ID, or not marked a response")
    if len(out) > (65535 if tcp else 1232):
        raise Crash(f"an answer of {len(out)} bytes over {'TCP' if tcp else 'UDP'}")
    try:
        dns.message.from_wire(out)
    except dns.exception.DNSException as exc:
        raise Crash(f"an answer dnspython cannot read: {exc!r}") from exc
    return True


def handle_face(data: bytes) -> bool:
    """One UDP datagram to the Handle face (RFC 3652): the codec, then the resolution
    logic over a real Resolver and directory. A datagram with an envelope is answered
    with at most 8 packets of at most 512 bytes, under its request id, that put
    together decode as a response; one without is dropped; nothing raises."""
    from resolver.handle.respond import HandleFace
    from resolver.handle.server import MAX_UDP_PACKETS, Exchange
    from schemas.handle_wire import (
        UDP_PACKET_SIZE,
        Envelope,
        HandleWireError,
        decode_response,
        reassemble_udp,
    )

    listener = _listener()
    face = HandleFace(
        name="super",
        directory=listener.api.directory,
        resolver=listener.api.resolver,
        address=("127.0.0.1", 2641),
    )
    exchange = Exchange(face)
    listener.errors.records.clear()
    packets = listener.loop.run_until_complete(exchange.answer_datagram(data, "127.0.0.1"))
    if listener.errors.records:
        raise Crash(f"the face logged its own failure: {listener.errors.records[0].getMessage()}")
    if not packets:
        try:
            Envelope.decode(data)
        except HandleWireError:
            return False  # no envelope: nothing to answer under
        raise Crash("a request with an envelope went unanswered")
    if len(packets) > MAX_UDP_PACKETS or any(len(p) > UDP_PACKET_SIZE for p in packets):
        raise Crash(f"{len(packets)} packets, up to {max(map(len, packets))} bytes")
    try:
        envelope, payload = reassemble_udp(packets)
        decode_response(envelope, payload)
    except HandleWireError as exc:
        raise Crash(f"an answer that does not decode: {exc}") from exc
    if envelope.request_id != Envelope.decode(data).request_id:
        raise Crash("an answer under another request id")
    return True


# --- sync: the directory topic and offline proofs --------------------------------------


def directory(data: bytes) -> bool:
    from benchmarks.fuzz.seeds import delegations
    from resolver.topology import Delegation, Directory
    from sync.directory import LiveDirectory, decode_delegation

    d = _expect_bad_input(lambda: decode_delegation(data))
    if not isinstance(d, Delegation):
        return False
    signed = delegations()
    live = LiveDirectory(Directory(signed[:1], signed[0].public_key), signed[0].public_key)
    live.adopt([d])  # adopt never raises: a delegation that does not verify is ignored
    return True


def proof(data: bytes) -> bool:
    from benchmarks.fuzz.seeds import delegations
    from sync.proof import check

    answer = _json(data)
    if answer is _NOT_JSON or not isinstance(answer, dict):
        return False  # the client reads a JSON object before it looks for a proof
    anchor = delegations()[0].public_key
    check(answer, anchor)  # check never raises: every problem is in its result
    return not check(answer, None, partial=True).problems


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            name="identifiers",
            what="schemas.identifiers.parse, parse_prefix",
            call=identifiers,
        ),
        Target(name="record_json", what="schemas.codec_json.values_from_json", call=record_json),
        Target(
            name="cbor_record",
            what="schemas.codec_cbor.decode_record, decode_data, decode_refs",
            call=cbor_record,
        ),
        Target(name="oplog", what="schemas.oplog.decode_operation", call=oplog),
        Target(
            name="chain",
            what="schemas.chain.decode_block, decode_header, decode_anchor",
            call=chain,
        ),
        Target(
            name="snapshot",
            what="schemas.snapshot.FrameSplitter, decode_item",
            call=snapshot,
        ),
        Target(
            name="httpsig",
            what="registry.httpsig.parse_signature, check_content_digest, signature_base, "
            "verify, parse_key_id (RFC 8941 fields)",
            call=httpsig,
        ),
        Target(
            name="front",
            what="resolver.front.FrontProtocol.data_received, resolver.router.decide "
            "(in-memory transport and application)",
            call=front,
        ),
        Target(
            name="dns",
            what="resolver.dns.respond.Face.answer: dnspython's wire parser, then the name "
            "mapping and the zone logic (a real Resolver and directory)",
            call=dns_face,
        ),
        Target(
            name="handle",
            what="resolver.handle.server.HandleServer.answer_datagram: the Handle codec "
            "(schemas.handle_wire), then the resolution logic (a real Resolver and directory)",
            call=handle_face,
        ),
        Target(
            name="directory",
            what="sync.directory.decode_delegation, LiveDirectory.adopt",
            call=directory,
        ),
        Target(name="proof", what="sync.proof.check", call=proof),
    )
}
