"""The snapshot file: the chains a node holds, at one consistent point, for a new
node to start from instead of reading every chain from offset 0 of the log.

A snapshot carries signed blocks only (each exactly as published), so whoever
loads it checks it as it would check the log: it need not trust the node that
made it nor the way the file travelled. Layout:

    MAGIC, then frames; a frame is a 4-byte big-endian length and one CBOR item
    (RFC 8949): first ["header", 1, node, taken_at_ms, [chain, ...]], then
    ["block", chain, message] for every block of every chain in height order,
    last ["end", blocks, sha256 of every byte before this frame].

The end frame makes a truncated or spliced file fail as a whole. Framing, not a
bare CBOR sequence (RFC 8742), so a reader can refuse an oversized item before
decoding it. Codecs only: the file is read and written by ``sync.snapshot``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2

from schemas.errors import EncodingError

MAGIC = b"idres-snapshot\n"
VERSION = 1
MAX_FRAME = 64 * 1024 * 1024  # a block is at most 32 MiB on the log (sync.kafka)
# Frames other than blocks are small; they are decoded whole, blocks are not (a
# crafted frame of many tiny CBOR items would take ~70x its size in memory).
MAX_SMALL_FRAME = 1024 * 1024
_BLOCK_HEAD = b"\x83\x65block"  # an array of 3 whose first item is the text "block"


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    node: str  # the node it was taken from
    taken_at: int  # ms since the epoch
    chains: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SnapshotBlock:
    chain: str
    message: bytes  # the signed block, as published (schemas.chain.decode_block)


@dataclass(frozen=True, slots=True)
class SnapshotEnd:
    blocks: int
    digest: bytes  # sha-256 of every byte before the end frame


def _frame(item: list[Any]) -> bytes:
    body = cbor2.dumps(item)
    return len(body).to_bytes(4, "big") + body


def encode_header(h: SnapshotHeader) -> bytes:
    return _frame(["header", VERSION, h.node, h.taken_at, list(h.chains)])


def encode_block(b: SnapshotBlock) -> bytes:
    return _frame(["block", b.chain, b.message])


def encode_end(e: SnapshotEnd) -> bytes:
    return _frame(["end", e.blocks, e.digest])


def _string(body: bytes, at: int, major: int, where: str) -> tuple[bytes, int]:
    """A definite-length text (major 3) or byte (major 2) string at ``at`` and where it
    ends (RFC 8949 §3.1: the length in the additional information or the 1, 2, 4 or 8
    bytes after it)."""
    if at >= len(body) or body[at] >> 5 != major:
        raise EncodingError(f'{where}: a block is ["block", chain, message bytes]')
    info = body[at] & 0x1F
    at += 1
    if info < 24:
        size = info
    elif info <= 27:
        width = 1 << (info - 24)
        size = int.from_bytes(body[at : at + width], "big")
        at += width
    else:
        raise EncodingError(f'{where}: a block is ["block", chain, message bytes]')
    if at + size > len(body):
        raise EncodingError(f"{where}: a string runs past the end of its frame")
    return body[at : at + size], at + size


def _decode_block(body: bytes, where: str) -> SnapshotBlock:
    """A block frame, read by hand: two strings, nothing decoded that is not needed."""
    chain, at = _string(body, len(_BLOCK_HEAD), 3, where)
    message, at = _string(body, at, 2, where)
    if at != len(body):
        raise EncodingError(f"{where}: bytes after the block's message")
    try:
        return SnapshotBlock(chain=chain.decode("utf-8"), message=message)
    except UnicodeDecodeError:
        raise EncodingError(f"{where}: the chain's name is not UTF-8") from None


def decode_item(body: bytes, index: int) -> SnapshotHeader | SnapshotBlock | SnapshotEnd:
    """One frame's item; ``index`` (0-based) only names it in errors."""
    where = f"snapshot item {index}"
    if body.startswith(_BLOCK_HEAD):
        return _decode_block(body, where)
    if len(body) > MAX_SMALL_FRAME:
        raise EncodingError(
            f"{where} is {len(body)} bytes and not a block (at most {MAX_SMALL_FRAME})"
        )
    try:
        item = cbor2.loads(body)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise EncodingError(f"{where} is not CBOR: {exc}") from exc
    if not isinstance(item, list) or not item or not isinstance(item[0], str):
        raise EncodingError(f"{where} must be an array that starts with its kind")
    kind, fields = item[0], item[1:]
    if kind == "header":
        if len(fields) != 4 or not isinstance(fields[0], int) or isinstance(fields[0], bool):
            raise EncodingError(f'{where}: a header is ["header", version, node, at, chains]')
        if fields[0] != VERSION:
            raise EncodingError(
                f"{where}: snapshot version {fields[0]} is not supported (this node reads 1)"
            )
        node, at, chains = fields[1:]
        if (
            not isinstance(node, str)
            or not isinstance(at, int)
            or isinstance(at, bool)
            or not isinstance(chains, list)
            or not all(isinstance(c, str) for c in chains)
        ):
            raise EncodingError(f"{where}: the header's node, time or chains have the wrong type")
        return SnapshotHeader(node=node, taken_at=at, chains=tuple(chains))
    if kind == "block":
        if len(fields) != 2 or not isinstance(fields[0], str) or not isinstance(fields[1], bytes):
            raise EncodingError(f'{where}: a block is ["block", chain, message bytes]')
        return SnapshotBlock(chain=fields[0], message=fields[1])
    if kind == "end":
        if (
            len(fields) != 2
            or not isinstance(fields[0], int)
            or isinstance(fields[0], bool)
            or not isinstance(fields[1], bytes)
        ):
            raise EncodingError(f'{where}: the end is ["end", blocks, sha-256]')
        return SnapshotEnd(blocks=fields[0], digest=fields[1])
    raise EncodingError(f"{where} is of unknown kind {kind!r}")


class FrameSplitter:
    """Cuts a byte stream into frame bodies; fed in chunks of any size."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._magic = False
        self.consumed = 0  # bytes before the frames still buffered

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The whole frames now available, each with the offset where it starts."""
        self._buf += data
        if not self._magic:
            if len(self._buf) < len(MAGIC):
                if not MAGIC.startswith(bytes(self._buf)):
                    raise EncodingError("not an idres snapshot (the file does not start right)")
                return []
            if not self._buf.startswith(MAGIC):
                raise EncodingError("not an idres snapshot (the file does not start right)")
            del self._buf[: len(MAGIC)]
            self.consumed = len(MAGIC)
            self._magic = True
        out: list[tuple[int, bytes]] = []
        pos = 0
        while len(self._buf) - pos >= 4:
            size = int.from_bytes(self._buf[pos : pos + 4], "big")
            if size > MAX_FRAME:
                raise EncodingError(
                    f"snapshot frame at byte {self.consumed + pos} is {size} bytes"
                    f" (at most {MAX_FRAME})"
                )
            if len(self._buf) - pos - 4 < size:
                break
            out.append((self.consumed + pos, bytes(self._buf[pos + 4 : pos + 4 + size])))
            pos += 4 + size
        del self._buf[:pos]
        self.consumed += pos
        return out

    def finish(self) -> None:
        if not self._magic:
            raise EncodingError("not an idres snapshot (the file is empty or too short)")
        if self._buf:
            raise EncodingError(f"snapshot ends inside a frame at byte {self.consumed}")
