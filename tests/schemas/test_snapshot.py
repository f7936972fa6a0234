"""The snapshot file's framing: what a damaged or foreign file is told apart by."""

from __future__ import annotations

import hashlib

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.errors import EncodingError
from schemas.snapshot import (
    MAGIC,
    MAX_FRAME,
    FrameSplitter,
    SnapshotBlock,
    SnapshotEnd,
    SnapshotHeader,
    decode_item,
    encode_block,
    encode_end,
    encode_header,
)

HEADER = SnapshotHeader(node="super", taken_at=1_795_420_800_000, chains=("a", "b"))
BLOCKS = [SnapshotBlock(chain="a", message=b"\x01" * 10), SnapshotBlock(chain="b", message=b"")]


def _file() -> bytes:
    body = MAGIC + encode_header(HEADER) + b"".join(encode_block(b) for b in BLOCKS)
    return body + encode_end(SnapshotEnd(blocks=2, digest=hashlib.sha256(body).digest()))


def _items(data: bytes, chunk: int) -> list[object]:
    splitter = FrameSplitter()
    items: list[object] = []
    for i in range(0, len(data), chunk):
        items += [
            decode_item(body, n) for n, (_, body) in enumerate(splitter.feed(data[i : i + chunk]))
        ]
    splitter.finish()
    return items


@given(st.integers(min_value=1, max_value=200))
def test_the_items_come_back_whatever_the_chunk_size(chunk: int) -> None:
    items = _items(_file(), chunk)
    assert items[0] == HEADER
    assert items[1:3] == BLOCKS
    assert isinstance(items[3], SnapshotEnd)
    assert items[3].blocks == 2


def test_a_file_of_another_kind_is_refused_at_once() -> None:
    with pytest.raises(EncodingError, match="not an idres snapshot"):
        FrameSplitter().feed(b"PK\x03\x04 a zip file")
    with pytest.raises(EncodingError, match="not an idres snapshot"):
        FrameSplitter().feed(b"idres-snapshop\n")


def test_a_file_cut_inside_a_frame_says_where() -> None:
    data = _file()
    splitter = FrameSplitter()
    splitter.feed(data[:-5])
    with pytest.raises(EncodingError, match=r"ends inside a frame at byte \d+"):
        splitter.finish()
    with pytest.raises(EncodingError, match="not an idres snapshot"):
        FrameSplitter().finish()  # empty


def test_a_huge_frame_that_is_not_a_block_is_refused_undecoded() -> None:
    # one array of four million empty arrays: ~300 MB once decoded, from 4 MB
    crafted = b"\x9a" + (4_000_000).to_bytes(4, "big") + b"\x80" * 4_000_000
    with pytest.raises(EncodingError, match="not a block"):
        decode_item(crafted, 0)


def test_an_oversized_frame_is_refused_before_it_is_read() -> None:
    with pytest.raises(EncodingError, match=f"at most {MAX_FRAME}"):
        FrameSplitter().feed(MAGIC + (MAX_FRAME + 1).to_bytes(4, "big"))


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (["header", 2, "n", 0, []], "snapshot version 2 is not supported"),
        (["header", 1, "n", "yesterday", []], "wrong type"),
        (["header", 1, "n", 0, [1]], "wrong type"),
        (["block", "a"], "a block is"),
        (["block", "a", "not bytes"], "a block is"),
        (["end", True, b""], "the end is"),
        (["tail", 1], "unknown kind 'tail'"),
        ({"kind": "block"}, "must be an array"),
    ],
)
def test_a_malformed_item_is_named(item: object, message: str) -> None:
    with pytest.raises(EncodingError, match=message) as caught:
        decode_item(cbor2.dumps(item), 7)
    assert "snapshot item 7" in str(caught.value)


def test_bytes_that_are_not_cbor_are_named() -> None:
    with pytest.raises(EncodingError, match="snapshot item 0 is not CBOR"):
        decode_item(b"\xff\xff", 0)
